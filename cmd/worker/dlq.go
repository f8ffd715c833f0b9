package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/messaging"
)

const dlqUsage = `usage:
  worker dlq list [-n 50] [FILTER]            list the oldest dead letters of TELEMETRY_DLQ
  worker dlq show SEQ                         one dead letter: headers, reason, the reading's fields
  worker dlq replay SEQ... | FILTER | -all    put dead letters back on TELEMETRY [-n 1000] [-actor NAME]
  worker dlq purge SEQ... | FILTER | -all -yes
                                              delete dead letters for good [-n 1000] [-actor NAME]
FILTER (any combination; all must match):
  -type gps|gyroscope|photo   -reason TEXT (substring, any case)
  -since T   -until T         T: RFC 3339 (2026-11-28T10:00:00Z) or a duration ago (2h, 30m)
purge without -yes prints what it would delete and exits 2, deleting nothing.`

// dlqHelp prints what the dlq commands are, their usage and their
// environment.
func dlqHelp(out io.Writer) {
	fmt.Fprintf(out, "worker dlq: inspect and replay the dead letters of TELEMETRY_DLQ, or purge them (see docs/worker.md).\n"+
		"Every replay and purge is logged to stderr and, with DATABASE_URL, audited in audit_log.\n\n%s\n\nenvironment:\n", dlqUsage)
	config.WriteVars(out, config.CommandDLQ)
}

// Exit codes of the commands.
const (
	exitOK    = 0
	exitFail  = 1 // NATS unreachable, a replay failed, …
	exitUsage = 2 // bad arguments or environment; purge without -yes
)

// dlqCallTimeout bounds each JetStream request of the dlq commands (one
// message fetched, published or deleted; a photo's is ~8 MiB). There is no
// bound on a whole command: listing or replaying 1000 photos moves gigabytes.
// Ctrl-C stops it between requests.
const dlqCallTimeout = 30 * time.Second

// dlqEnv is what a dlq command runs with once its arguments are parsed.
type dlqEnv struct {
	js     jetstream.JetStream
	cfg    config.DLQ
	out    io.Writer
	errOut io.Writer
}

// runDLQ runs `worker dlq ARGS...` and returns the exit code. getenv is
// handed to config.LoadDLQ; out gets the results, errOut the usage, errors
// and the log of replays and purges.
func runDLQ(ctx context.Context, args []string, getenv config.Getenv, out, errOut io.Writer) int {
	usage := func(format string, a ...any) int {
		fmt.Fprintf(errOut, "worker dlq: "+format+"\n%s\n", append(a, dlqUsage)...)
		return exitUsage
	}
	parseFailed := func(err error) int {
		if errors.Is(err, flag.ErrHelp) {
			dlqHelp(out)
			return exitOK
		}
		return usage("%v", err)
	}
	if len(args) == 0 {
		return usage("missing subcommand")
	}
	var run func(context.Context, dlqEnv) int
	switch sub, rest := args[0], args[1:]; sub {
	case "list":
		fs := newFlagSet("dlq list")
		n := fs.Int("n", 50, "how many dead letters to list, oldest first")
		ff := addFilterFlags(fs)
		if err := fs.Parse(rest); err != nil {
			return parseFailed(err)
		}
		if fs.NArg() > 0 {
			return usage("list takes no arguments, got %q", fs.Args())
		}
		if *n < 1 {
			return usage("-n must be at least 1")
		}
		f, err := ff.filter(time.Now())
		if err != nil {
			return usage("%v", err)
		}
		run = func(ctx context.Context, e dlqEnv) int { return dlqList(ctx, e, f, *n) }
	case "show":
		fs := newFlagSet("dlq show")
		if err := fs.Parse(rest); err != nil {
			return parseFailed(err)
		}
		if fs.NArg() != 1 {
			return usage("show takes one sequence (see worker dlq list)")
		}
		seq, err := parseSeq(fs.Arg(0))
		if err != nil {
			return usage("%v", err)
		}
		run = func(ctx context.Context, e dlqEnv) int { return dlqShow(ctx, e, seq) }
	case "replay", "purge":
		act, err := parseAction(sub, rest)
		if errors.Is(err, flag.ErrHelp) {
			return parseFailed(err)
		}
		if err != nil {
			return usage("%v", err)
		}
		run = func(ctx context.Context, e dlqEnv) int { return dlqAct(ctx, e, act) }
	case "-h", "-help", "--help", "help":
		dlqHelp(out)
		return exitOK
	default:
		return usage("unknown subcommand %q", sub)
	}

	cfg, err := config.LoadDLQ(getenv)
	if err != nil {
		fmt.Fprintln(errOut, err) // "worker dlq configuration: NATS_URL: …"
		return exitUsage
	}
	js, closeNATS, code := connectJetStream(ctx, "worker dlq", "worker-dlq", cfg, errOut)
	if code != exitOK {
		return code
	}
	defer closeNATS()
	return run(ctx, dlqEnv{js: js, cfg: cfg, out: out, errOut: errOut})
}

// connectJetStream reaches NATS for command cmd, or says in a sentence on
// errOut why it could not and returns exitFail.
func connectJetStream(ctx context.Context, cmd, name string, cfg config.DLQ, errOut io.Writer) (jetstream.JetStream, func(), int) {
	nc, err := messaging.Connect(ctx, cfg.NATSURL, name, cfg.NATSConnectWait)
	if err != nil {
		var e *ierr.Error
		if errors.As(err, &e) && e.Err != nil {
			err = e.Err // "connecting to nats://…: nats: no servers available for connection"
		}
		fmt.Fprintf(errOut, "%s: cannot reach NATS within NATS_CONNECT_TIMEOUT (%s): %v\n", cmd, cfg.NATSConnectWait, err)
		return nil, nil, exitFail
	}
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(dlqCallTimeout))
	if err != nil {
		nc.Close()
		fmt.Fprintf(errOut, "%s: %v\n", cmd, err)
		return nil, nil, exitFail
	}
	return js, nc.Close, exitOK
}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // the caller prints the error and the usage once
	return fs
}

func parseSeq(a string) (uint64, error) {
	seq, err := strconv.ParseUint(a, 10, 64)
	if err != nil || seq == 0 {
		return 0, fmt.Errorf("%q is not a dead-letter sequence (a number from worker dlq list)", a)
	}
	return seq, nil
}

func dlqList(ctx context.Context, e dlqEnv, f messaging.DeadLetterFilter, n int) int {
	list, err := messaging.FindDeadLetters(ctx, e.js, f, n)
	if err != nil {
		fmt.Fprintf(e.errOut, "worker dlq list: %s\n", explain(0, err))
		return exitFail
	}
	if err := writeDeadLetters(e.out, list); err != nil {
		fmt.Fprintf(e.errOut, "worker dlq list: %v\n", err)
		return exitFail
	}
	total := uint64(len(list))
	if s, err := e.js.Stream(ctx, messaging.DLQStreamName); err == nil {
		total = max(total, s.CachedInfo().State.Msgs)
	}
	if f.IsZero() {
		fmt.Fprintf(e.out, "%d of %d dead letters, oldest first\n", len(list), total)
	} else {
		fmt.Fprintf(e.out, "%d matching of %d dead letters, oldest first\n", len(list), total)
	}
	return exitOK
}

// writeDeadLetters prints list as the table of `worker dlq list`.
func writeDeadLetters(w io.Writer, list []messaging.DeadLetterInfo) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tDEAD-LETTERED-AT\tORIGINAL-SUBJECT\tDELIVERIES\tSIZE\tREASON")
	for _, d := range list {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\n", d.Sequence, d.DeadLetteredAt.UTC().Format(time.RFC3339),
			oneLine(d.OriginalSubject), d.Deliveries, d.Size, oneLine(d.Reason))
	}
	return tw.Flush()
}

// explain is the sentence an operator reads for a failed request about dead
// letter seq (0: the listing), by error kind. Kinds without a row keep the
// whole chain behind a short sentence: when NATS misbehaves, its own words
// are what the operator needs.
func explain(seq uint64, err error) string {
	var e *ierr.Error
	if !errors.As(err, &e) {
		return err.Error()
	}
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Sprintf("this NATS server has no %s stream; the API and the worker create it when they start (is NATS_URL the one they use?)", messaging.DLQStreamName)
	case e.Kind == ierr.NotFound:
		return fmt.Sprintf("no dead letter with sequence %d (worker dlq list shows those there are)", seq)
	case e.Kind == ierr.Invalid && e.Err != nil:
		return e.Err.Error() // ReplayDeadLetter's own sentence: why it refused
	case e.Kind == ierr.Unavailable:
		return fmt.Sprintf("NATS did not answer or refused the request, try again (%v)", err)
	}
	return err.Error()
}

// oneLine keeps a header value on its table row.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
