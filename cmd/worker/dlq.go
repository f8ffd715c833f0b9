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
  worker dlq list [-n 50]              list the oldest dead letters of TELEMETRY_DLQ
  worker dlq replay SEQ [SEQ...]       put these dead letters back on TELEMETRY
  worker dlq replay -all [-n 1000]     replay the oldest dead letters, at most -n of them`

// dlqHelp prints what the dlq commands are, their usage and their
// environment.
func dlqHelp(out io.Writer) {
	fmt.Fprintf(out, "worker dlq: inspect and replay the dead letters of TELEMETRY_DLQ (see docs/worker.md).\n\n%s\n\nenvironment (only NATS):\n", dlqUsage)
	config.WriteVars(out, config.CommandDLQ)
}

// Exit codes of the dlq commands.
const (
	exitOK    = 0
	exitFail  = 1 // NATS unreachable, a replay failed, …
	exitUsage = 2 // bad arguments or environment
)

// dlqCallTimeout bounds each JetStream request of the dlq commands (one
// message fetched, published or deleted; a photo's is ~8 MiB). There is no
// bound on a whole command: listing or replaying 1000 photos moves gigabytes.
// Ctrl-C stops it between requests.
const dlqCallTimeout = 30 * time.Second

// runDLQ runs `worker dlq ARGS...` and returns the exit code. getenv is
// handed to config.LoadDLQ; out gets the results, errOut the usage and errors.
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
	var run func(context.Context, jetstream.JetStream) int
	switch sub, rest := args[0], args[1:]; sub {
	case "list":
		fs := newFlagSet("dlq list")
		n := fs.Int("n", 50, "how many dead letters to list, oldest first")
		if err := fs.Parse(rest); err != nil {
			return parseFailed(err)
		}
		if fs.NArg() > 0 {
			return usage("list takes no arguments, got %q", fs.Args())
		}
		if *n < 1 {
			return usage("-n must be at least 1")
		}
		run = func(ctx context.Context, js jetstream.JetStream) int { return dlqList(ctx, js, *n, out, errOut) }
	case "replay":
		fs := newFlagSet("dlq replay")
		all := fs.Bool("all", false, "replay the oldest dead letters, at most -n")
		n := fs.Int("n", 1000, "with -all: at most this many")
		if err := fs.Parse(rest); err != nil {
			return parseFailed(err)
		}
		nSet := false
		fs.Visit(func(f *flag.Flag) { nSet = nSet || f.Name == "n" })
		switch {
		case *all && fs.NArg() > 0:
			return usage("give either -all or sequences, not both")
		case !*all && fs.NArg() == 0:
			return usage("replay needs sequences (see worker dlq list) or -all")
		case !*all && nSet:
			return usage("-n applies only with -all")
		case *n < 1:
			return usage("-n must be at least 1")
		}
		var seqs []uint64
		for _, a := range fs.Args() {
			seq, err := strconv.ParseUint(a, 10, 64)
			if err != nil || seq == 0 {
				return usage("%q is not a dead-letter sequence (a number from worker dlq list)", a)
			}
			seqs = append(seqs, seq)
		}
		run = func(ctx context.Context, js jetstream.JetStream) int {
			if *all {
				return dlqReplayAll(ctx, js, *n, out, errOut)
			}
			return dlqReplay(ctx, js, seqs, out, errOut)
		}
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
	nc, err := messaging.Connect(ctx, cfg.NATSURL, "worker-dlq", cfg.NATSConnectWait)
	if err != nil {
		var e *ierr.Error
		if errors.As(err, &e) && e.Err != nil {
			err = e.Err // "connecting to nats://…: nats: no servers available for connection"
		}
		fmt.Fprintf(errOut, "worker dlq: cannot reach NATS within NATS_CONNECT_TIMEOUT (%s): %v\n", cfg.NATSConnectWait, err)
		return exitFail
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(dlqCallTimeout))
	if err != nil {
		fmt.Fprintf(errOut, "worker dlq: %v\n", err)
		return exitFail
	}
	return run(ctx, js)
}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // runDLQ prints the error and the usage once
	return fs
}

func dlqList(ctx context.Context, js jetstream.JetStream, n int, out, errOut io.Writer) int {
	list, err := messaging.ListDeadLetters(ctx, js, n)
	if err != nil {
		fmt.Fprintf(errOut, "worker dlq list: %s\n", explain(0, err))
		return exitFail
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tDEAD-LETTERED-AT\tORIGINAL-SUBJECT\tDELIVERIES\tSIZE\tREASON")
	for _, d := range list {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\n", d.Sequence, d.DeadLetteredAt.UTC().Format(time.RFC3339),
			oneLine(d.OriginalSubject), d.Deliveries, d.Size, oneLine(d.Reason))
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintf(errOut, "worker dlq list: %v\n", err)
		return exitFail
	}
	total := uint64(len(list))
	if s, err := js.Stream(ctx, messaging.DLQStreamName); err == nil {
		total = max(total, s.CachedInfo().State.Msgs)
	}
	fmt.Fprintf(out, "%d of %d dead letters, oldest first\n", len(list), total)
	return exitOK
}

func dlqReplay(ctx context.Context, js jetstream.JetStream, seqs []uint64, out, errOut io.Writer) int {
	replayed := 0
	for _, seq := range seqs {
		err := replayOne(ctx, js, seq, out)
		if err == nil {
			replayed++
			continue
		}
		fmt.Fprintf(errOut, "worker dlq replay: %s\n", explain(seq, err))
		if ierr.Is(err, ierr.Unavailable) || errors.Is(err, jetstream.ErrStreamNotFound) {
			break // NATS is down, the stream full or missing: the rest would fail too
		}
	}
	if replayed < len(seqs) {
		fmt.Fprintf(errOut, "worker dlq replay: %d of %d not replayed\n", len(seqs)-replayed, len(seqs))
		return exitFail
	}
	return exitOK
}

// dlqReplayAll replays the oldest n dead letters as listed before the first
// replay: a message that fails again while this runs is dead-lettered under
// a new sequence and is not replayed a second time.
func dlqReplayAll(ctx context.Context, js jetstream.JetStream, n int, out, errOut io.Writer) int {
	list, err := messaging.ListDeadLetters(ctx, js, n)
	if err != nil {
		fmt.Fprintf(errOut, "worker dlq replay: %s\n", explain(0, err))
		return exitFail
	}
	if len(list) == 0 {
		fmt.Fprintln(out, "no dead letters")
		return exitOK
	}
	seqs := make([]uint64, 0, len(list))
	for _, d := range list {
		seqs = append(seqs, d.Sequence)
	}
	return dlqReplay(ctx, js, seqs, out, errOut)
}

func replayOne(ctx context.Context, js jetstream.JetStream, seq uint64, out io.Writer) error {
	d, err := messaging.ReplayDeadLetter(ctx, js, seq)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "replayed %d to %s (%d bytes, was TELEMETRY sequence %d)\n", seq, d.OriginalSubject, d.Size, d.OriginalSequence)
	return nil
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
