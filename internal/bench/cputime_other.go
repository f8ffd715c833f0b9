//go:build !unix

package bench

import "time"

// cpuTime is not read on this system; the table then omits CPU per request.
func cpuTime() (time.Duration, bool) { return 0, false }
