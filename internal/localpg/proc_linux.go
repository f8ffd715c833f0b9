package localpg

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// setParentDeathSignal asks the kernel to send sig to the server when the
// process that started it dies, so a killed caller leaves no server behind.
func setParentDeathSignal(attr *syscall.SysProcAttr, sig syscall.Signal) {
	attr.Pdeathsig = sig
}

// serverAlive reports whether pid is a postgres process working in dataDir
// (the postmaster's working directory is its data directory), so a PID
// reused by an unrelated process does not count.
func serverAlive(pid int, dataDir string) bool {
	proc := filepath.Join("/proc", strconv.Itoa(pid))
	comm, err := os.ReadFile(filepath.Join(proc, "comm"))
	if err != nil || !strings.HasPrefix(strings.TrimSpace(string(comm)), "postgres") {
		return false
	}
	cwd, err := os.Readlink(filepath.Join(proc, "cwd"))
	if err != nil {
		return true // cannot tell: assume it is the server
	}
	return filepath.Clean(cwd) == filepath.Clean(dataDir)
}
