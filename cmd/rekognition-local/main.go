// Command rekognition-local is a face-recognition service speaking the AWS
// Rekognition API, for running the photo path without an AWS account:
// faces are detected and recognised locally, in pure Go, and collections
// persist in a folder (see package rekognitionlocal and docs/rekognition.md).
//
//	rekognition-local [-addr 127.0.0.1:4566] [-data .devstack/rekognition-local]
//
// Point the worker at it with AWS_ENDPOINT_URL_REKOGNITION=http://ADDR and
// any static credentials (the signature is not checked).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/challenge-v3/challenge-v3/rekognitionlocal"
)

const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rekognition-local", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg rekognitionlocal.Config
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:4566", "listen address")
	fs.StringVar(&cfg.Dir, "data", ".devstack/rekognition-local", "folder where collections persist (created if missing)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "rekognition-local: the AWS Rekognition API, with local face recognition.\n\nusage: rekognition-local [-addr HOST:PORT] [-data DIR]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "rekognition-local: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(stdout, nil))
	if err := rekognitionlocal.Run(ctx, cfg, log); err != nil {
		log.Error("rekognition-local failed", "error", err)
		return exitFail
	}
	return exitOK
}
