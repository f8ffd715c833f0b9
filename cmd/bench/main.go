// Command bench is `make bench`: it measures each stage of the ingest
// pipeline against the baselines that bound it, in one process on
// loopback, and prints one table of ratios (see docs/performance.md).
//
//	go run ./cmd/bench                 # every section, about 5 minutes
//	go run ./cmd/bench -only api,batch # some sections
//	go run ./cmd/bench -json           # the table as JSON on stdout
//	go run ./cmd/bench -only memory -soak 5m # make soak: RSS over 5 minutes
//
// It brings up what it needs (embedded NATS servers, a throwaway
// PostgreSQL cluster from the machine's binaries) and removes it on exit.
// The exit code is 0 when every section ran, whether or not its targets
// were met (the table says); 1 when a section failed; 2 for bad flags.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/challenge-v3/challenge-v3/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var names []string
	for _, s := range bench.Sections() {
		names = append(names, s.Name)
	}
	only := fs.String("only", "", "comma-separated sections to run ("+strings.Join(names, ", ")+"); default all")
	rounds := fs.Int("rounds", 3, "alternated rounds per comparison (the median is reported)")
	round := fs.Duration("round", 4*time.Second, "length of one measured round")
	warmup := fs.Duration("warmup", time.Second, "load before each round, not measured")
	conns := fs.Int("c", 64, "keep-alive connections of the load generator")
	syncAlways := fs.Bool("sync-always", false, "NATS fsyncs every write, as deploy/nats.conf does (measures the disk)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
	asJSON := fs.Bool("json", false, "print the table as JSON on stdout (progress stays on stderr)")
	soak := fs.Duration("soak", 0, "memory section: length of its half-rate load, up to 30m (make soak: 5m); 0: the short run")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: bench [flags]\n\nSections:")
		for _, s := range bench.Sections() {
			fmt.Fprintf(stderr, "  %-8s %s\n", s.Name, s.About)
		}
		fmt.Fprintln(stderr, "\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 || *rounds < 1 || *rounds > 9 || *round <= 0 || *round > time.Minute || *conns < 1 || *conns > 1024 {
		fmt.Fprintln(stderr, "bench: bad arguments: -rounds 1–9, -round up to 1m, -c 1–1024, no positional arguments")
		return 2
	}
	if *soak < 0 || *soak > 30*time.Minute {
		fmt.Fprintln(stderr, "bench: bad arguments: -soak 0–30m")
		return 2
	}
	var selected []bench.Section
	want := strings.Split(*only, ",")
	for _, s := range bench.Sections() {
		if s.Name == "memory" && *soak > 0 {
			s = bench.MemorySection(*soak)
		}
		if *only == "" || slices.Contains(want, s.Name) {
			selected = append(selected, s)
		}
	}
	if len(selected) == 0 {
		fmt.Fprintf(stderr, "bench: -only %q names no section (have %s)\n", *only, strings.Join(names, ", "))
		return 2
	}

	env, err := bench.NewEnv(bench.Options{
		Rounds: *rounds, Round: *round, Warmup: *warmup, Connections: *conns,
		SyncAlways: *syncAlways, Log: stderr,
	})
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	defer env.Close()

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}

	var rep bench.Report
	code := 0
	start := time.Now()
	for _, s := range selected {
		if ctx.Err() != nil {
			break
		}
		env.Logf("section %s: %s", s.Name, s.About)
		t0 := time.Now()
		if err := s.Run(ctx, env, &rep); err != nil {
			fmt.Fprintf(stderr, "bench: section %s failed: %v\n", s.Name, err)
			code = 1
			continue
		}
		env.Logf("section %s done in %s", s.Name, time.Since(t0).Round(time.Second))
	}
	if *asJSON {
		_ = rep.WriteJSON(stdout)
	} else {
		fmt.Fprintf(stdout, "\nchallenge-v3 bench: %d rounds of %s, %d connections, NATS sync-always=%t, %s total\n\n",
			*rounds, *round, *conns, *syncAlways, time.Since(start).Round(time.Second))
		_ = rep.WriteTable(stdout)
		if missed := rep.Missed(); len(missed) > 0 {
			fmt.Fprintln(stdout, "\nTargets missed:")
			for _, m := range missed {
				fmt.Fprintln(stdout, "  "+m)
			}
		}
	}
	if ctx.Err() != nil {
		return 1
	}
	return code
}
