//go:build !linux

package bench

import "syscall"

// procAttr: only Linux kills children with their parent; elsewhere stop
// and Env.Close are the only clean-up.
func procAttr() *syscall.SysProcAttr { return nil }

// canMeasureRSS: the memory section reads /proc/<pid>/status, which only
// Linux has.
const canMeasureRSS = false
