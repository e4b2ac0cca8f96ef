//go:build unix

package proxy

import "syscall"

// openFileLimit is the process's limit on open descriptors (RLIMIT_NOFILE;
// Go raises the soft limit to the hard one at start), 0 when unknown.
func openFileLimit() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	return int(min(r.Cur, 1<<30))
}
