//go:build unix

package policy

import "syscall"

// processCPU is the CPU time the process has used, in nanoseconds: on a
// shared machine a benchmark's wall time also counts the time other
// processes held the CPU.
func processCPU() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
