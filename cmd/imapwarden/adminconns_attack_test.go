package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/proxy"
)

// TestAttackAdminListenerBoundsUnauthenticatedConnections: the admin
// listener accepts any number of connections, and a client without a
// token keeps each one open forever with a GET /healthz (no token needed)
// every idle_timeout. Each is a descriptor of the process whose IMAP
// listener bounds its own unauthenticated connections to a quarter of
// the descriptor limit (proxy.DefaultMaxPreAuthConnections) to keep the
// rest for sessions and their backends: whoever reaches the admin port
// (every pod of the cluster with the Helm chart, every local user with
// the package) can take them all, and the proxy then accepts no client
// and dials no backend.
func TestAttackAdminListenerBoundsUnauthenticatedConnections(t *testing.T) {
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Skip(err)
	}
	// A small limit keeps the test small: its bound is a quarter of it.
	lim := old
	lim.Cur = min(old.Cur, 1024)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
	bound := proxy.DefaultMaxPreAuthConnections()

	f := startAdminFixture(t, "")
	healthz := func(c net.Conn, r *bufio.Reader) bool {
		c.SetDeadline(time.Now().Add(testenv.IOTimeout()))
		if _, err := fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: imapwarden\r\n\r\n"); err != nil {
			return false
		}
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK && !resp.Close
	}
	type conn struct {
		c net.Conn
		r *bufio.Reader
	}
	var conns []conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.c.Close()
		}
	})
	for range bound + 64 {
		c, err := net.Dial("tcp", f.admin)
		if err != nil {
			break
		}
		cc := conn{c, bufio.NewReader(c)}
		conns = append(conns, cc)
		if !healthz(cc.c, cc.r) {
			break
		}
	}
	// Every one still served: each held its descriptor all along.
	held := 0
	for _, c := range conns {
		if healthz(c.c, c.r) {
			held++
		}
	}
	if held > bound {
		t.Errorf("a client without a token holds %d admin connections open (descriptor limit %d; the IMAP listener's unauthenticated bound is %d)", held, lim.Cur, bound)
	}
}
