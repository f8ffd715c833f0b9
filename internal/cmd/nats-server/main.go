// Command nats-server is nats-server's own main (v2.10, server.ConfigureOptions
// and server.Run, so the same flags and configuration file) built from the
// module's nats-server requirement, for the memory section of `make bench` and the e2e cluster test that SIGKILLs nodes,
// which need the server as a process of its own.
//
// It exists because nats-server's main package imports
// go.uber.org/automaxprocs, which is not in this module's go.sum: building
// it would need the module proxy, and `make bench` must run offline. The
// only difference is that GOMAXPROCS is not adjusted to a cgroup CPU quota
// (there is none on a benchmark machine).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/nats-io/nats-server/v2/server"
)

func main() {
	const exe = "nats-server"
	fs := flag.NewFlagSet(exe, flag.ExitOnError)
	opts, err := server.ConfigureOptions(fs, os.Args[1:], server.PrintServerAndExit, fs.Usage, server.PrintTLSHelpAndDie)
	if err != nil {
		server.PrintAndDie(fmt.Sprintf("%s: %s", exe, err))
	}
	s, err := server.NewServer(opts)
	if err != nil {
		server.PrintAndDie(fmt.Sprintf("%s: %s", exe, err))
	}
	s.ConfigureLogger()
	if err := server.Run(s); err != nil {
		server.PrintAndDie(err.Error())
	}
	s.WaitForShutdown()
}
