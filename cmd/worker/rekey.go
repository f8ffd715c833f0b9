package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/user"
	"slices"
	"time"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/crypto"
	"github.com/challenge-v3/challenge-v3/storage"
)

const rekeyAbout = `worker rekey: re-seal with the active key (the first of ENCRYPTION_KEYS) every
photo sealed under an older one, in batches of -batch rows, one transaction and
one audit_log row (photo.rekeyed) each, at most -rate rows per second. It is
resumable: interrupted (Ctrl-C, a crash), run it again and it continues, since
it selects only the rows still under another key. Once it reports that no
photo is left under the old keys, they may be removed from ENCRYPTION_KEYS of
the API and the workers. See docs/worker.md.

` + rekeyUsage

const rekeyUsage = `usage:
  worker rekey [-batch 100] [-rate 500] [-actor NAME]
`

func rekeyHelp(out io.Writer) {
	fmt.Fprintf(out, "%s\nenvironment:\n", rekeyAbout)
	config.WriteVars(out, config.CommandRekey)
}

// runRekey runs `worker rekey ARGS...`: progress on out, the log of each
// batch and errors on errOut.
func runRekey(ctx context.Context, args []string, getenv config.Getenv, out, errOut io.Writer) int {
	usage := func(format string, a ...any) int {
		fmt.Fprintf(errOut, "worker rekey: "+format+"\n%s", append(a, rekeyUsage)...)
		return exitUsage
	}
	fs := newFlagSet("rekey")
	size := fs.Int("batch", 100, "photos per transaction (1 to 10000)")
	rate := fs.Float64("rate", 500, "photos per second at most; 0 for no limit")
	actor := fs.String("actor", "", "who does it, for the log and audit_log (default: the OS user)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			rekeyHelp(out)
			return exitOK
		}
		return usage("%v", err)
	}
	switch {
	case fs.NArg() == 1 && config.IsHelp(fs.Arg(0)):
		rekeyHelp(out)
		return exitOK
	case fs.NArg() > 0:
		return usage("rekey takes no arguments, got %q", fs.Args())
	case *size < 1 || *size > 10000:
		return usage("-batch must be between 1 and 10000")
	case *rate < 0:
		return usage("-rate must be 0 (no limit) or positive")
	}
	if *actor == "" {
		u, err := user.Current()
		if err != nil || u.Username == "" {
			return usage("cannot tell who you are from the system; name yourself with -actor")
		}
		*actor = u.Username
	}
	cfg, err := config.LoadRekey(getenv)
	if err != nil {
		fmt.Fprintf(errOut, "%v\n(worker rekey -h lists its variables)\n", err)
		return exitUsage
	}
	sealer, err := crypto.NewSealer(cfg.EncryptionKeys)
	if err != nil {
		fmt.Fprintf(errOut, "worker rekey: %v\n", err)
		return exitUsage
	}
	octx, cancel := context.WithTimeout(ctx, dbOpenTimeout)
	store, err := storage.Open(octx, cfg.DatabaseURL)
	cancel()
	if err != nil {
		fmt.Fprintf(errOut, "worker rekey: cannot reach PostgreSQL (DATABASE_URL): %s\n", dbProblem(err))
		return exitFail
	}
	defer store.Close()
	return rekey(ctx, store, sealer, *size, *rate, *actor, cfg.Log, out, errOut)
}

func rekey(ctx context.Context, store *storage.Store, sealer *crypto.Sealer, size int, rate float64, actor string,
	logCfg config.Log, out, errOut io.Writer) int {
	active := sealer.ActiveKeyID()
	total, err := store.CountPhotosToRekey(ctx, active)
	if err != nil {
		fmt.Fprintf(errOut, "worker rekey: cannot count the photos to re-seal: %s\n", dbProblem(err))
		return exitFail
	}
	if total == 0 {
		fmt.Fprintf(out, "every photo is sealed under the active key %q; nothing to do\n", active)
		return exitOK
	}
	fmt.Fprintf(out, "re-sealing %d photos under %q, %d per batch\n", total, active, size)
	log := logCfg.Logger(errOut)
	start := time.Now()
	var done int64
	var after int64
	from := map[string]int{}
	for {
		b, err := store.RekeyPhotos(ctx, sealer, after, size, actor)
		if err != nil {
			if ctx.Err() != nil {
				return interrupted(out, errOut, done, total)
			}
			fmt.Fprintf(errOut, "worker rekey: stopped after %d of %d photos: %s\n", done, total, dbProblem(err))
			return exitFail
		}
		if b.Rows == 0 {
			break
		}
		done += int64(b.Rows)
		after = b.LastID
		for k, n := range b.FromKey {
			from[k] += n
		}
		log.Info("photos re-sealed", "rows", b.Rows, "last_id", b.LastID, "to_key", active, "actor", actor)
		fmt.Fprintf(out, "re-sealed %d of %d photos (%d%%)\n", done, total, done*100/max(total, done))
		if rate > 0 {
			wait := time.Until(start.Add(time.Duration(float64(done) / rate * float64(time.Second))))
			select {
			case <-ctx.Done():
				return interrupted(out, errOut, done, total)
			case <-time.After(wait):
			}
		}
	}
	keys := make([]string, 0, len(from))
	for k := range from {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	fmt.Fprintf(out, "done: %d photos re-sealed under %q in %s (from %v); no photo is sealed under another key\n",
		done, active, time.Since(start).Round(time.Millisecond), keys)
	return exitOK
}

func interrupted(out, errOut io.Writer, done, total int64) int {
	fmt.Fprintf(errOut, "worker rekey: interrupted after %d of %d photos; every finished batch is committed, run worker rekey again to continue\n", done, total)
	return exitFail
}
