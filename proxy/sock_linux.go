//go:build linux

package proxy

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// sockConn is a TCP connection whose reads and writes are non-blocking
// system calls made without the runtime's system-call bookkeeping
// (ARCHITECTURE.md §16). The runtime wakes its monitor thread on the first
// system call it enters after the whole process was idle: on a relay of
// short commands, where the process idles between each client read and
// backend reply, that was a futex wake and two thread switches per half
// round trip, about a tenth of the CPU of a NOOP. A read or write with
// MSG_DONTWAIT never sleeps, whatever mode the socket is in, so the
// bookkeeping buys nothing here; when the socket has nothing to give or
// no room, the runtime's poller waits for it as it does for net.Conn
// (syscall.RawConn), with the same deadlines and the same wake on Close.
// The thread keeps its P for the copy, as for any computation.
//
// rmu and wmu make each side's fields one caller's at a time: net.Conn
// allows concurrent calls, which the descriptor's own locks serialize.
//
// The fields are ordered and sized to fit 128 bytes (ARCHITECTURE.md
// §16): a read is at most maxRW, and an errno fits 32 bits.
type sockConn struct {
	*net.TCPConn
	rc syscall.RawConn

	rmu    sync.Mutex
	rn     int32
	rerr   uint32 // a syscall.Errno
	rp     []byte
	readFn func(uintptr) bool

	wmu     sync.Mutex
	werr    uint32 // a syscall.Errno
	raw     bool   // raw system calls (not under the race detector: sock_race_linux.go)
	wp      []byte
	wn      int
	writeFn func(uintptr) bool
}

// maxRW bounds one system call, as internal/poll does for streams.
const maxRW = 1 << 30

// wrapSock returns c as a sockConn when it is a plain TCP connection, and
// c itself otherwise: a wrapper (tests, PROXY header readers) may hold
// bytes of its own that a read of the socket would skip.
func wrapSock(c net.Conn) net.Conn { return newSockConn(c, !raceEnabled) }

func newSockConn(c net.Conn, raw bool) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return &sockConn{TCPConn: tc, rc: rc, raw: raw}
}

// idle lets go of the functions the reads and writes hand the poller
// (method values: 16 bytes each, made again by the next read or write):
// an idle session keeps none (ARCHITECTURE.md §16). The pump that parks
// on c calls it; a side in use keeps its own, and idle never waits.
func (c *sockConn) idle() {
	if c.rmu.TryLock() {
		c.readFn = nil
		c.rmu.Unlock()
	}
	if c.wmu.TryLock() {
		c.writeFn = nil
		c.wmu.Unlock()
	}
}

// idleSock is sockConn.idle for c, if it is one.
func idleSock(c net.Conn) {
	if s, ok := c.(*sockConn); ok {
		s.idle()
	}
}

// SyscallConn is the RawConn the reads and writes use: one per
// connection, not one more for the parker's each (ARCHITECTURE.md §16).
func (c *sockConn) SyscallConn() (syscall.RawConn, error) { return c.rc, nil }

// tcpOf is the TCP connection under c, if any.
func tcpOf(c net.Conn) (*net.TCPConn, bool) {
	if s, ok := c.(*sockConn); ok {
		return s.TCPConn, true
	}
	tc, ok := c.(*net.TCPConn)
	return tc, ok
}

func (c *sockConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return c.TCPConn.Read(p) // its closed and deadline checks, no system call
	}
	if len(p) > maxRW {
		p = p[:maxRW]
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rp, c.rn, c.rerr = p, 0, 0
	if c.readFn == nil {
		c.readFn = c.read
	}
	err := c.opError("read", c.rc.Read(c.readFn), syscall.Errno(c.rerr))
	n := int(c.rn)
	c.rp = nil
	switch {
	case err != nil:
		return 0, err
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// read is one read: false asks the poller to wait for data.
func (c *sockConn) read(fd uintptr) bool {
	for {
		n, e := c.sysRead(fd, c.rp)
		switch e {
		case 0:
			c.rn = int32(n) // at most maxRW
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			c.rerr = uint32(e)
			return true
		}
	}
}

func (c *sockConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return c.TCPConn.Write(p)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wp, c.wn, c.werr = p, 0, 0
	if c.writeFn == nil {
		c.writeFn = c.write
	}
	err := c.opError("write", c.rc.Write(c.writeFn), syscall.Errno(c.werr))
	n := c.wn
	c.wp = nil
	return n, err
}

// write writes what is left of c.wp; false asks the poller to wait for
// room.
func (c *sockConn) write(fd uintptr) bool {
	for c.wn < len(c.wp) {
		chunk := min(len(c.wp)-c.wn, maxRW)
		n, e := c.sysWrite(fd, c.wp[c.wn:c.wn+chunk])
		switch e {
		case 0:
			c.wn += n
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			c.werr = uint32(e)
			return true
		}
	}
	return true
}

func (c *sockConn) sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	if !c.raw {
		return raceRead(fd, p)
	}
	// recvfrom with MSG_DONTWAIT: never a sleep holding the P, even on a
	// socket something set blocking (TCPConn.File does).
	n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), syscall.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

func (c *sockConn) sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	if !c.raw {
		return raceWrite(fd, p)
	}
	// MSG_NOSIGNAL: a peer gone is EPIPE, never a signal.
	n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), syscall.MSG_DONTWAIT|syscall.MSG_NOSIGNAL, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

// opError gives the poller's error (err) or the system call's (e) the
// shape net.Conn's has, nil when neither failed: a *net.OpError whose Err
// is a deadline's, net.ErrClosed or the *os.SyscallError, so that
// errors.Is and net.Error work on it as on the net package's own.
func (c *sockConn) opError(op string, err error, e syscall.Errno) error {
	switch oe, ok := err.(*net.OpError); {
	case ok:
		err = oe.Err // RawConn's "raw-read": the poller's error inside
	case err == nil && e != 0:
		err = os.NewSyscallError(op, e)
	case err == nil:
		return nil
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
