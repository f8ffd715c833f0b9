package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
)

// filterFlags are the FILTER flags of list, replay and purge.
type filterFlags struct {
	typ, reason, since, until *string
}

func addFilterFlags(fs *flag.FlagSet) filterFlags {
	return filterFlags{
		typ:    fs.String("type", "", "gps, gyroscope or photo"),
		reason: fs.String("reason", "", "substring of the reason, any case"),
		since:  fs.String("since", "", "dead-lettered at or after: RFC 3339, or a duration ago (2h)"),
		until:  fs.String("until", "", "dead-lettered before: RFC 3339, or a duration ago (2h)"),
	}
}

// filter reads the flags, with durations counted back from now.
func (ff filterFlags) filter(now time.Time) (messaging.DeadLetterFilter, error) {
	var f messaging.DeadLetterFilter
	if *ff.typ != "" {
		ok := false
		for _, t := range models.Types {
			ok = ok || string(t) == *ff.typ
		}
		if !ok {
			return f, fmt.Errorf("-type must be gps, gyroscope or photo, not %q", *ff.typ)
		}
		f.Type = models.Type(*ff.typ)
	}
	f.Reason = *ff.reason
	var err error
	if f.Since, err = parseWhen("-since", *ff.since, now); err != nil {
		return f, err
	}
	if f.Until, err = parseWhen("-until", *ff.until, now); err != nil {
		return f, err
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return f, errors.New("-since must be before -until")
	}
	return f, nil
}

// parseWhen reads a -since/-until value: an RFC 3339 time, or a positive
// duration meaning that long before now ("2h" and "2h ago" alike).
func parseWhen(flagName, v string, now time.Time) (time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(strings.TrimSpace(strings.TrimSuffix(v, "ago"))); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%s %q is neither an RFC 3339 time (2026-11-28T10:00:00Z) nor a duration ago (2h, 90m)", flagName, v)
}

// action is a parsed `worker dlq replay|purge`.
type action struct {
	verb   string // replay or purge
	seqs   []uint64
	filter messaging.DeadLetterFilter
	all    bool // -all or a filter: select by listing, at most n
	n      int
	yes    bool // purge: -yes given
	actor  string
}

// parseAction parses the arguments of replay or purge: sequences, or a
// filter, or -all, never two of these.
func parseAction(verb string, args []string) (action, error) {
	fs := newFlagSet("dlq " + verb)
	all := fs.Bool("all", false, "every dead letter, at most -n")
	n := fs.Int("n", 1000, "with -all or a filter: at most this many, oldest first")
	actor := fs.String("actor", "", "who does it, for the log and audit_log (default: the OS user)")
	ff := addFilterFlags(fs)
	var yes *bool
	if verb == "purge" {
		yes = fs.Bool("yes", false, "really purge; without it, only show what would be purged")
	}
	if err := fs.Parse(args); err != nil {
		return action{}, err
	}
	a := action{verb: verb, all: *all, n: *n, actor: *actor, yes: yes != nil && *yes}
	f, err := ff.filter(time.Now())
	if err != nil {
		return action{}, err
	}
	a.filter = f
	nSet := false
	fs.Visit(func(fl *flag.Flag) { nSet = nSet || fl.Name == "n" })
	byFilter := !f.IsZero()
	switch {
	case (a.all || byFilter) && fs.NArg() > 0:
		return action{}, errors.New("give sequences, a filter or -all, not several")
	case a.all && byFilter:
		return action{}, errors.New("-all selects every dead letter; drop it to use a filter")
	case !a.all && !byFilter && fs.NArg() == 0:
		return action{}, fmt.Errorf("%s needs sequences (see worker dlq list), a filter or -all", verb)
	case fs.NArg() > 0 && nSet:
		return action{}, errors.New("-n applies only with -all or a filter")
	case a.n < 1:
		return action{}, errors.New("-n must be at least 1")
	}
	a.all = a.all || byFilter
	for _, arg := range fs.Args() {
		seq, err := parseSeq(arg)
		if err != nil {
			return action{}, err
		}
		a.seqs = append(a.seqs, seq)
	}
	return a, nil
}
