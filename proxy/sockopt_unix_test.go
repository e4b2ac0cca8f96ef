//go:build unix

package proxy

import (
	"net"
	"sync/atomic"
	"syscall"
	"testing"
)

// TestSocketOptions: the client's and the backend's TCP connections have
// TCP_NODELAY (small replies must not wait for delayed ACKs), the
// client's keep-alives too, as Go sets them: the proxy does not set them
// again.
func TestSocketOptions(t *testing.T) {
	var client, backend atomic.Pointer[net.Conn]
	h := newDovecotHarness(t, func(dc *dovecottestServer) *Backend {
		return &Backend{Name: "dovecot", Addr: dc.Addr, Security: BackendPlain}
	}, func(o *Options) {
		o.wrapClient = func(c net.Conn) net.Conn { client.Store(&c); return c }
		o.wrapBackend = func(c net.Conn) net.Conn { backend.Store(&c); return c }
	})
	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	c.transact("a1 LOGIN alice alice-pw", "a1 OK")
	c.transact("a2 NOOP", "a2 OK")
	for _, o := range []struct {
		name       string
		conn       *atomic.Pointer[net.Conn]
		level, opt int
	}{
		{"client TCP_NODELAY", &client, syscall.IPPROTO_TCP, syscall.TCP_NODELAY},
		{"client SO_KEEPALIVE", &client, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE},
		{"backend TCP_NODELAY", &backend, syscall.IPPROTO_TCP, syscall.TCP_NODELAY},
	} {
		sc, ok := (*o.conn.Load()).(syscall.Conn)
		if !ok {
			t.Fatalf("%s: not a socket", o.name)
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var v int
		var gerr error
		rc.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), o.level, o.opt) })
		if gerr != nil || v == 0 {
			t.Errorf("%s: %d %v, want on", o.name, v, gerr)
		}
	}
}
