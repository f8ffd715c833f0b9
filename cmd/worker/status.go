package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/storage"
)

const statusAbout = `worker status: one screen to read first. Per telemetry type: messages not yet
delivered (PENDING), delivered but not yet acknowledged (ACK-PENDING), redelivered
ones, pull requests waiting (WAITING-PULLS: idle workers asking for more; a busy
worker holds none, so 0 does not prove none is running) and the age of the
oldest message not yet acknowledged. Then the dead letters and, with
DATABASE_URL, whether PostgreSQL answers. Exits 1 when a check fails.

` + statusUsage

const statusUsage = `usage:
  worker status
`

func statusHelp(out io.Writer) {
	fmt.Fprintf(out, "%s\nenvironment:\n", statusAbout)
	config.WriteVars(out, config.CommandStatus)
}

// runStatus runs `worker status`.
func runStatus(ctx context.Context, args []string, getenv config.Getenv, out, errOut io.Writer) int {
	fs := newFlagSet("status")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			statusHelp(out)
			return exitOK
		}
		fmt.Fprintf(errOut, "worker status: %v\n%s", err, statusUsage)
		return exitUsage
	}
	if fs.NArg() == 1 && config.IsHelp(fs.Arg(0)) {
		statusHelp(out)
		return exitOK
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(errOut, "worker status: unexpected argument %q\n%s", fs.Arg(0), statusUsage)
		return exitUsage
	}
	cfg, err := config.LoadDLQ(getenv)
	if err != nil {
		fmt.Fprintf(errOut, "%v\n(worker status -h lists its variables)\n", err)
		return exitUsage
	}
	js, closeNATS, code := connectJetStream(ctx, "worker status", "worker-status", cfg, errOut)
	if code != exitOK {
		return code
	}
	defer closeNATS()
	return status(ctx, js, cfg.DatabaseURL, time.Now(), out, errOut)
}

func status(ctx context.Context, js jetstream.JetStream, dsn string, now time.Time, out, errOut io.Writer) int {
	code := exitOK
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	stream, err := js.Stream(ctx, messaging.StreamName)
	if err != nil {
		fmt.Fprintf(errOut, "worker status: %s\n", streamProblem(messaging.StreamName, err))
		code = exitFail
	} else {
		st := stream.CachedInfo().State
		fmt.Fprintf(tw, "%s\t%d messages, %d bytes\n", messaging.StreamName, st.Msgs, st.Bytes)
		fmt.Fprintln(tw, "TYPE\tPENDING\tACK-PENDING\tREDELIVERED\tWAITING-PULLS\tOLDEST-UNACKED")
		for _, t := range models.Types {
			c, err := stream.Consumer(ctx, messaging.ConsumerName(t))
			if err != nil {
				fmt.Fprintf(tw, "%s\t(consumer %s: %v)\n", t, messaging.ConsumerName(t), err)
				code = exitFail
				continue
			}
			ci := c.CachedInfo()
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\n", t, ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.NumWaiting,
				oldestUnacked(ctx, stream, t, now))
		}
	}
	if dlq, err := js.Stream(ctx, messaging.DLQStreamName); err != nil {
		fmt.Fprintf(tw, "dead letters\t(%s)\n", streamProblem(messaging.DLQStreamName, err))
		code = exitFail
	} else {
		st := dlq.CachedInfo().State
		line := fmt.Sprintf("%d in %s, %d bytes", st.Msgs, messaging.DLQStreamName, st.Bytes)
		if st.Msgs > 0 {
			line += fmt.Sprintf(", oldest %s ago (worker dlq list)", now.Sub(st.FirstTime).Round(time.Second))
		}
		fmt.Fprintf(tw, "dead letters\t%s\n", line)
	}
	switch db := databaseStatus(ctx, dsn); {
	case db == "":
		fmt.Fprintf(tw, "database\tnot checked (DATABASE_URL unset)\n")
	case db != "reachable":
		code = exitFail
		fallthrough
	default:
		fmt.Fprintf(tw, "database\t%s\n", db)
	}
	if err := tw.Flush(); err != nil {
		return exitFail
	}
	return code
}

// oldestUnacked is the age of the oldest message of type t not yet
// acknowledged (messaging.OldestUnacked), "-" for none.
func oldestUnacked(ctx context.Context, s jetstream.Stream, t models.Type, now time.Time) string {
	age, ok, err := messaging.OldestUnacked(ctx, s, t, now)
	switch {
	case err != nil:
		return "unknown (" + err.Error() + ")"
	case !ok:
		return "-"
	}
	return age.Round(time.Second).String()
}

// databaseStatus is "" without a DSN, "reachable", or a sentence.
func databaseStatus(ctx context.Context, dsn string) string {
	if dsn == "" {
		return ""
	}
	octx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := storage.Open(octx, dsn)
	if err != nil {
		return "unreachable: " + dbProblem(err)
	}
	s.Close()
	return "reachable"
}

func streamProblem(name string, err error) string {
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Sprintf("this NATS server has no %s stream; the API and the worker create it when they start (is NATS_URL the one they use?)", name)
	}
	return fmt.Sprintf("cannot read %s: %v", name, err)
}
