//go:build unix && !linux

package localpg

import "syscall"

// setParentDeathSignal is Linux-only; elsewhere a killed caller can leave the
// server running, and the next Start reports it.
func setParentDeathSignal(*syscall.SysProcAttr, syscall.Signal) {}

// serverAlive reports whether a process with pid exists.
func serverAlive(pid int, _ string) bool {
	return syscall.Kill(pid, 0) == nil
}
