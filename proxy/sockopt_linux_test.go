package proxy

import (
	"net"
	"sync/atomic"
	"syscall"
	"testing"
)

// TestKeepAliveFromListener: the proxy's listeners carry the client
// keep-alive options themselves (listen_linux.go), and every connection
// they accept has them, with the values Go would have set on each
// connection (15 s idle, 15 s interval, 9 probes).
func TestKeepAliveFromListener(t *testing.T) {
	var client atomic.Pointer[net.Conn]
	h := newHarness(t, func(o *Options) {
		o.wrapClient = func(c net.Conn) net.Conn { client.Store(&c); return c }
	})
	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	c.transact("a1 LOGIN alice alice-pw", "a1 OK")
	h.srv.mu.Lock()
	ln := h.srv.listeners[0]
	h.srv.mu.Unlock()
	want := []struct {
		name       string
		level, opt int
		v          int
	}{
		{"SO_KEEPALIVE", syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
		{"TCP_KEEPIDLE", syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, 15},
		{"TCP_KEEPINTVL", syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, 15},
		{"TCP_KEEPCNT", syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, 9},
	}
	for _, s := range []struct {
		name string
		sc   any
	}{{"listener", ln}, {"client connection", *client.Load()}} {
		sc, ok := s.sc.(syscall.Conn)
		if !ok {
			t.Fatalf("%s: not a socket", s.name)
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range want {
			var v int
			var gerr error
			rc.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), o.level, o.opt) })
			if gerr != nil || v != o.v {
				t.Errorf("%s %s: %d %v, want %d", s.name, o.name, v, gerr, o.v)
			}
		}
	}
}
