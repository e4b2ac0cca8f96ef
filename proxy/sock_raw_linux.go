//go:build linux && !race

package proxy

import (
	"syscall"
	"unsafe"
)

// sysRead reads a non-blocking socket without the runtime's system-call
// bookkeeping (sockConn); p is not empty.
func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), e
}

// sysWrite writes a non-blocking socket likewise; MSG_NOSIGNAL: a peer
// gone is EPIPE, never a signal. p is not empty.
func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), syscall.MSG_NOSIGNAL, 0, 0)
	return int(n), e
}
