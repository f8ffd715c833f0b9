//go:build !linux

package bench

import "time"

// procCPU needs /proc; elsewhere the worker section omits CPU per reading.
func procCPU(int) (time.Duration, bool) { return 0, false }
