package proxy

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// parkHarness is a proxy in front of a fixedBackend whose backend pumps
// park after 1 ms of silence (newHarness's limits).
func parkHarness(t *testing.T) (*harness, *fixedBackend) {
	t.Helper()
	b := startFixedBackend(t, map[string][2]string{
		"SELECT INBOX": {"* 3 EXISTS\r\n", "OK [READ-WRITE] done\r\n"},
		"NOOP":         {"", "OK done\r\n"},
	})
	h := newHarness(t, func(o *Options) {
		o.Router = &StaticRouter{Default: &Backend{Name: "fixed", Addr: b.ln.Addr().String(), Security: BackendPlain, Login: LoginCommand}}
	})
	return h, b
}

// waitParked waits until n backend pumps are parked.
func waitParked(t *testing.T, h *harness, n int) {
	t.Helper()
	deadline := time.Now().Add(testenv.IOTimeout())
	for h.srv.parker.parked() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d pumps parked, want %d", h.srv.parker.parked(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// backendPumps counts goroutines running a backend pump.
func backendPumps() int {
	n := 0
	for _, g := range ourGoroutines() {
		if strings.Contains(g, "(*backendPump)") {
			n++
		}
	}
	return n
}

// An idle session, in IDLE or between commands, keeps no backend pump
// goroutine (ARCHITECTURE.md §5); what the backend sends while it is
// parked still reaches the client, and commands after it are answered.
func TestIdleSessionParksBackendPump(t *testing.T) {
	h, b := parkHarness(t)
	const sessions = 5
	var clients []*tconn
	var backs []net.Conn
	for range sessions {
		c := h.login()
		c.transact("s SELECT INBOX", "s OK")
		c.send("i IDLE")
		c.expect("+ ")
		clients = append(clients, c)
		backs = append(backs, <-b.conns)
	}
	waitParked(t, h, sessions)
	if n := backendPumps(); n != 0 {
		t.Fatalf("%d backend pump goroutines with every session parked, want 0", n)
	}
	// The backend's pushes wake each pump in turn.
	for i, c := range clients {
		if _, err := backs[i].Write([]byte("* 4 EXISTS\r\n* 1 RECENT\r\n")); err != nil {
			t.Fatal(err)
		}
		c.expect("* 4 EXISTS")
		c.expect("* 1 RECENT")
		c.send("DONE")
		c.expectTagged("i", "i OK")
		c.transact("n NOOP", "n OK")
	}
	// Silent again: parked again, and still answering.
	waitParked(t, h, sessions)
	for _, c := range clients {
		c.transact("n2 NOOP", "n2 OK")
		c.transact("z LOGOUT", "z OK")
	}
	waitParked(t, h, 0)
}

// A session ends cleanly while its backend pump is parked, however it
// ends: the backend closing the connection, BYE from the backend, the
// administrator, the client going away, and the server shutting down.
func TestParkedSessionEnds(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(t *testing.T, h *harness, c *tconn, be net.Conn)
		// wantReason is the audited close reason.
		wantReason CloseReason
	}{
		{"backend closes", func(t *testing.T, h *harness, c *tconn, be net.Conn) {
			be.Close()
			c.expectClosed("* BYE [UNAVAILABLE]")
		}, CloseBackendLost},
		{"backend says BYE", func(t *testing.T, h *harness, c *tconn, be net.Conn) {
			be.Write([]byte("* BYE shutting down\r\n"))
			be.Close()
			c.expectClosed("* BYE shutting down")
		}, CloseBackendBye},
		{"administrator", func(t *testing.T, h *harness, c *tconn, be net.Conn) {
			var id string
			for _, s := range h.srv.Sessions() {
				id = s.ID
			}
			if !h.srv.EndSession(id) {
				t.Fatal("EndSession: no such session")
			}
			expectEndOfIdle(c)
			c.expectClosed("* BYE")
		}, CloseEndedByAdmin},
		{"client goes", func(t *testing.T, h *harness, c *tconn, be net.Conn) {
			c.c.Close()
		}, CloseClientClosed},
		{"shutdown", func(t *testing.T, h *harness, c *tconn, be net.Conn) {
			ctx, cancel := context.WithTimeout(context.Background(), testenv.IOTimeout())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- h.srv.Shutdown(ctx) }()
			expectEndOfIdle(c)
			c.expectClosed("* BYE")
			if err := <-done; err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
		}, CloseServerShutdown},
	} {
		for _, idle := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/idle=%v", tc.name, idle), func(t *testing.T) {
				h, b := parkHarness(t)
				c := h.login()
				c.transact("s SELECT INBOX", "s OK")
				if idle {
					c.send("i IDLE")
					c.expect("+ ")
				}
				be := <-b.conns
				waitParked(t, h, 1)
				tc.end(t, h, c, be)
				waitClosed(t, h.audit, 1)
				h.audit.mu.Lock()
				got := h.audit.closes[0].Reason
				h.audit.mu.Unlock()
				if got != tc.wantReason.String() {
					t.Errorf("close reason %q, want %q", got, tc.wantReason)
				}
				waitParked(t, h, 0)
			})
		}
	}
}

// expectEndOfIdle reads the completion of IDLE if the session was in it:
// the proxy ends IDLE (DONE) before it says BYE.
func expectEndOfIdle(c *tconn) {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
	if l, err := c.br.Peek(2); err == nil && string(l) == "i " {
		c.expect("i OK")
	}
}

// waitClosed waits until the auditor saw n sessions close.
func waitClosed(t *testing.T, a *recAuditor, n int) {
	t.Helper()
	deadline := time.Now().Add(testenv.IOTimeout())
	for {
		a.mu.Lock()
		got := len(a.closes)
		a.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions closed, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// The parker resumes a pump exactly once, whichever comes first: the
// connection becoming readable, wake before arm, wake after, or close.
func TestParkerResumesOnce(t *testing.T) {
	pk, err := newParker()
	if err != nil {
		t.Skipf("no parker here: %v", err)
	}
	defer pk.close()
	pair := func() (net.Conn, net.Conn) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		a, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		b, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close(); b.Close() })
		return a, b
	}
	park := func(c net.Conn) (*parkedPump, *atomic.Int32, chan struct{}) {
		rc, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var n atomic.Int32
		ran := make(chan struct{}, 4)
		pp := pk.prepare(rc, func() { n.Add(1); ran <- struct{}{} })
		return pp, &n, ran
	}
	wait := func(what string, ran chan struct{}) {
		t.Helper()
		select {
		case <-ran:
		case <-time.After(testenv.IOTimeout()):
			t.Fatalf("%s: not resumed", what)
		}
	}

	// Readable: data from the peer.
	a, b := pair()
	pp, n, ran := park(a)
	if !pp.arm() {
		t.Fatal("arm refused")
	}
	b.Write([]byte("x"))
	wait("readable", ran)
	pp.wake() // late: no second run
	// The peer closing.
	a, b = pair()
	pp2, n2, ran2 := park(a)
	pp2.arm()
	b.Close()
	wait("peer closed", ran2)
	// Wake before arm: resumed by wake, arm then owns nothing.
	a, _ = pair()
	pp3, n3, ran3 := park(a)
	pp3.wake()
	wait("wake before arm", ran3)
	if !pp3.arm() {
		t.Error("arm after wake refused: the pump would run twice")
	}
	// Wake after arm, then data: one run.
	a, b = pair()
	pp4, n4, ran4 := park(a)
	pp4.arm()
	pp4.wake()
	wait("wake", ran4)
	b.Write([]byte("y"))
	// Close with one still parked.
	a, _ = pair()
	pp5, n5, ran5 := park(a)
	pp5.arm()
	if got := pk.parked(); got != 1 {
		t.Errorf("parked %d, want 1", got)
	}
	pk.close()
	wait("close", ran5)
	// After close nothing is armed: the pump waits itself.
	a, _ = pair()
	pp6, n6, _ := park(a)
	if pp6.arm() {
		t.Error("armed on a closed parker")
	}
	for i, c := range []*atomic.Int32{n, n2, n3, n4, n5} {
		if got := c.Load(); got != 1 {
			t.Errorf("case %d resumed %d times, want once", i+1, got)
		}
	}
	if got := n6.Load(); got != 0 {
		t.Errorf("refused parking resumed %d times", got)
	}
}
