package bench

import "syscall"

// procAttr makes the kernel kill a child when the bench dies, even by
// SIGKILL, so no API, worker or NATS server outlives a run.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// canMeasureRSS: /proc/<pid>/status is Linux's.
const canMeasureRSS = true
