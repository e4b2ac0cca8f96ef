package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// parkHarness is a proxy in front of a fixedBackend whose backend pumps
// park after 1 ms of silence (newHarness's limits).
func parkHarness(t *testing.T, opts ...harnessOption) (*harness, *fixedBackend) {
	t.Helper()
	b := startFixedBackend(t, map[string][2]string{
		"SELECT INBOX": {"* 3 EXISTS\r\n", "OK [READ-WRITE] done\r\n"},
		"NOOP":         {"", "OK done\r\n"},
	})
	h := newHarness(t, append([]harnessOption{func(o *Options) {
		o.Router = &StaticRouter{Default: &Backend{Name: "fixed", Addr: b.ln.Addr().String(), Security: BackendPlain, Login: LoginCommand}}
	}}, opts...)...)
	return h, b
}

// waitParked waits until n backend pumps are parked.
func waitParked(t *testing.T, h *harness, n int) {
	t.Helper()
	waitParkedKind(t, h, parkBackend, n)
}

// waitClientsParked waits until n client pumps are parked.
func waitClientsParked(t *testing.T, h *harness, n int) {
	t.Helper()
	waitParkedKind(t, h, parkClient, n)
}

func waitParkedKind(t *testing.T, h *harness, kind parkKind, n int) {
	t.Helper()
	deadline := time.Now().Add(testenv.IOTimeout())
	for h.srv.parker.parked(kind) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d pumps of kind %d parked, want %d", h.srv.parker.parked(kind), kind, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitNoPumpGoroutines waits until no goroutine runs a session (its front
// end or a pump): a pump that just parked may still be returning.
func waitNoPumpGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(testenv.IOTimeout())
	for {
		var left []string
		for _, g := range ourGoroutines() {
			if strings.Contains(g, "(*clientPump)") || strings.Contains(g, "(*Session)") || strings.Contains(g, "(*backendPump)") {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d session goroutines with every session parked, want 0:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(time.Millisecond)
	}
}

// waitRunnersWaiting waits until n runners block in their select: a
// runner whose pump just returned is not yet there, and a pump resumed
// in that moment starts a goroutine of its own (runners.run), as it may.
func waitRunnersWaiting(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(testenv.IOTimeout())
	for {
		waiting := 0
		for _, g := range ourGoroutines() {
			if strings.Contains(g, "(*runners).loop") && strings.Contains(g, " [select") {
				waiting++
			}
		}
		if waiting >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d runners waiting, want %d", waiting, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// An idle session, in IDLE or between commands, keeps no goroutine
// (ARCHITECTURE.md §5): both pumps park; what the backend sends while they
// are parked still reaches the client, and commands after it are
// answered.
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
	waitClientsParked(t, h, sessions)
	waitNoPumpGoroutines(t)
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
	waitClientsParked(t, h, sessions)
	for _, c := range clients {
		c.transact("n2 NOOP", "n2 OK")
		c.transact("z LOGOUT", "z OK")
	}
	waitParked(t, h, 0)
	waitClientsParked(t, h, 0)
}

// A session in IDLE parks both pumps at once, whatever Limits.ParkAfter
// says (RFC 9051 §6.3.13: the client has said it will be silent), and
// lingers again once the IDLE is over: a backend push wakes the backend
// pump for one response, DONE ends the IDLE.
func TestIdleParksAtOnce(t *testing.T) {
	h, b := parkHarness(t, func(o *Options) { o.Limits.ParkAfter = time.Hour })
	c := h.login()
	c.transact("s SELECT INBOX", "s OK")
	c.send("i IDLE")
	c.expect("+ ")
	back := <-b.conns
	waitParked(t, h, 1)
	waitClientsParked(t, h, 1)
	if _, err := back.Write([]byte("* 4 EXISTS\r\n")); err != nil {
		t.Fatal(err)
	}
	c.expect("* 4 EXISTS")
	// Still idling: parked again at once.
	waitParked(t, h, 1)
	// A push longer than what the waking read takes (backendPrefix):
	// the rest is read with the backend's timeout, not lingered on.
	var push strings.Builder
	for i := 1; push.Len() <= 4*backendPrefix; i++ {
		fmt.Fprintf(&push, "* %d FETCH (FLAGS (\\Seen \\Answered $Label%d))\r\n", i, i)
	}
	if _, err := back.Write([]byte(push.String())); err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.SplitAfter(push.String(), "\r\n") {
		if l != "" {
			c.expect(strings.TrimSuffix(l, "\r\n"))
		}
	}
	waitParked(t, h, 1)
	c.send("DONE")
	c.expectTagged("i", "i OK")
	c.transact("n NOOP", "n OK")
	// Between commands the hour's lingering applies: neither pump is
	// parked (both were resumed to relay DONE and its answer).
	if n, m := h.srv.parker.parked(parkBackend), h.srv.parker.parked(parkClient); n != 0 || m != 0 {
		t.Fatalf("after IDLE: %d backend and %d client pumps parked, want none within ParkAfter", n, m)
	}
	c.transact("z LOGOUT", "z OK")
}

// A parked client pump resumes on commands that come in one TLS record
// larger than the session's read buffer: the plaintext left in the TLS
// connection is read before the pump parks again, and parking does not
// wait on a socket with nothing more to come.
func TestParkedClientReadsTLSBufferedData(t *testing.T) {
	h, _ := parkHarness(t)
	c := h.login()
	waitClientsParked(t, h, 1)
	var batch strings.Builder
	const n = 600 // ~6.6 KB: more than clientReadBuf, one TLS record
	for i := range n {
		fmt.Fprintf(&batch, "n%d NOOP\r\n", i)
	}
	if batch.Len() <= clientReadBuf || batch.Len() > 16<<10 {
		t.Fatalf("batch of %d bytes: want one TLS record beyond the read buffer", batch.Len())
	}
	c.sendRaw(batch.String())
	for i := range n {
		c.expectTagged(fmt.Sprintf("n%d", i), fmt.Sprintf("n%d OK", i))
	}
	c.transact("z LOGOUT", "z OK")
}

// splitConn writes the next Write in two halves when split is set, the
// second once released: the proxy sees half a TLS record.
type splitConn struct {
	net.Conn
	split         atomic.Bool
	half, release chan struct{}
}

func (c *splitConn) Write(p []byte) (int, error) {
	if !c.split.CompareAndSwap(true, false) || len(p) < 2 {
		return c.Conn.Write(p)
	}
	n, err := c.Conn.Write(p[:len(p)/2])
	if err != nil {
		return n, err
	}
	c.half <- struct{}{}
	<-c.release
	m, err := c.Conn.Write(p[len(p)/2:])
	return n + m, err
}

// A client pump parks again with half a TLS record read, and the rest of
// the record resumes it: the timeout that ended its lingering read left
// the TLS connection usable.
func TestParkedClientResumesMidRecord(t *testing.T) {
	h, _ := parkHarness(t)
	raw, err := net.Dial("tcp", h.imaps)
	if err != nil {
		t.Fatal(err)
	}
	sc := &splitConn{Conn: raw, half: make(chan struct{}), release: make(chan struct{})}
	tc := tls.Client(sc, clientTLS("imap"))
	t.Cleanup(func() { tc.Close() })
	c := &tconn{t: t, c: tc, br: bufio.NewReader(tc)}
	c.expect("* OK")
	c.transact("l1 LOGIN alice alice-pw", "l1 OK")
	waitClientsParked(t, h, 1)
	parks := h.srv.parker.parksSoFar(parkClient)
	sc.split.Store(true)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		tc.Write([]byte("n NOOP\r\n"))
	}()
	<-sc.half
	// The half record resumes the pump, which parks again without it.
	deadline := time.Now().Add(testenv.IOTimeout())
	for h.srv.parker.parksSoFar(parkClient) == parks || h.srv.parker.parked(parkClient) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the client pump did not park again on half a record")
		}
		time.Sleep(time.Millisecond)
	}
	close(sc.release)
	<-sent
	c.expectTagged("n", "n OK")
	c.transact("z LOGOUT", "z OK")
}

// A command that comes slowly after a parked session wakes is read
// against the idle limit, not against the lingering read's ParkAfter
// deadline (1 ms here): the slow client is answered.
func TestParkedClientSlowCommand(t *testing.T) {
	h, _ := parkHarness(t)
	c := h.login()
	waitClientsParked(t, h, 1)
	c.sendRaw("n NO")
	// A slow client (not synchronisation): far beyond ParkAfter.
	time.Sleep(50 * time.Millisecond)
	c.sendRaw("OP\r\n")
	c.expectTagged("n", "n OK")
	c.transact("z LOGOUT", "z OK")
}

// Server.Close ends sessions whose pumps are both parked, and Wait
// returns: nothing stays parked.
func TestParkedSessionServerClose(t *testing.T) {
	h, _ := parkHarness(t)
	c := h.login()
	c.transact("s SELECT INBOX", "s OK")
	waitParked(t, h, 1)
	waitClientsParked(t, h, 1)
	h.srv.Close()
	c.expectClosed()
	done := make(chan struct{})
	go func() { h.srv.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(testenv.IOTimeout()):
		t.Fatal("Wait did not return with a parked session")
	}
	waitClosed(t, h.audit, 1)
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
		{"idle limit", func(t *testing.T, h *harness, c *tconn, be net.Conn) {
			// The client's idle limit passes while the client pump is
			// parked: the parker's timer runs it, and its read times out.
			// (The limit is set below; waitParked came first.)
			expectEndOfIdle(c)
			c.expectClosed("* BYE")
		}, CloseIdleTimeout},
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
				var opts []harnessOption
				if tc.wantReason == CloseIdleTimeout {
					// Long enough to see both pumps parked first on a
					// busy machine; the idle limit ends the session.
					opts = append(opts, func(o *Options) { o.Limits.AuthIdle, o.Limits.IdleTimeout = 2*time.Second, 2*time.Second })
				}
				h, b := parkHarness(t, opts...)
				c := h.login()
				c.transact("s SELECT INBOX", "s OK")
				if idle {
					c.send("i IDLE")
					c.expect("+ ")
				}
				be := <-b.conns
				waitParked(t, h, 1)
				waitClientsParked(t, h, 1)
				waitNoPumpGoroutines(t)
				tc.end(t, h, c, be)
				waitClosed(t, h.audit, 1)
				h.audit.mu.Lock()
				got := h.audit.closes[0].Reason
				h.audit.mu.Unlock()
				if got != tc.wantReason {
					t.Errorf("close reason %v, want %v", got, tc.wantReason)
				}
				waitParked(t, h, 0)
				waitClientsParked(t, h, 0)
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

// loopbackPair is a connected TCP pair on the loopback interface.
func loopbackPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
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

// resumeFunc makes a func a parked pump.
type resumeFunc func()

func (f resumeFunc) resume() { f() }

// The parker resumes a pump exactly once, whichever comes first: the
// connection becoming readable, wake before arm, wake after, or close.
func TestParkerResumesOnce(t *testing.T) {
	pk, err := newParker()
	if err != nil {
		t.Skipf("no parker here: %v", err)
	}
	defer pk.close()
	pair := func() (net.Conn, net.Conn) { return loopbackPair(t) }
	park := func(c net.Conn) (*parkedPump, *atomic.Int32, chan struct{}) {
		rc, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var n atomic.Int32
		ran := make(chan struct{}, 4)
		pp := pk.prepare(rc, parkBackend, time.Time{}, resumeFunc(func() { n.Add(1); ran <- struct{}{} }))
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
	if got := pk.parked(parkBackend); got != 1 {
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
	// A deadline resumes a pump nothing else wakes, once.
	a, _ = pair()
	var n7 atomic.Int32
	ran7 := make(chan struct{}, 4)
	rc7, _ := a.(*net.TCPConn).SyscallConn()
	pk7, _ := newParker()
	defer pk7.close()
	pp7 := pk7.prepare(rc7, parkClient, time.Now().Add(time.Millisecond), resumeFunc(func() { n7.Add(1); ran7 <- struct{}{} }))
	if !pp7.arm() {
		t.Fatal("arm refused")
	}
	wait("deadline", ran7)
	pp7.wake()
	// Woken before its deadline: the timer is stopped.
	a, b = pair()
	rc8, _ := a.(*net.TCPConn).SyscallConn()
	var n8 atomic.Int32
	ran8 := make(chan struct{}, 4)
	pp8 := pk7.prepare(rc8, parkClient, time.Now().Add(time.Hour), resumeFunc(func() { n8.Add(1); ran8 <- struct{}{} }))
	pp8.arm()
	if got := pk7.parked(parkClient); got != 1 {
		t.Errorf("client pumps parked %d, want 1", got)
	}
	b.Write([]byte("z"))
	wait("readable before deadline", ran8)
	pk7.mu.Lock()
	if pp8.at >= 0 || len(pk7.deadlines) != 0 {
		t.Error("deadline still pending after the pump resumed")
	}
	pk7.mu.Unlock()
	for i, c := range []*atomic.Int32{n, n2, n3, n4, n5, &n7, &n8} {
		if got := c.Load(); got != 1 {
			t.Errorf("case %d resumed %d times, want once", i+1, got)
		}
	}
	if got := n6.Load(); got != 0 {
		t.Errorf("refused parking resumed %d times", got)
	}
}

// The parker's one timer resumes parked pumps in the order of their
// deadlines, and a pump resumed otherwise leaves the order (ARCHITECTURE.md
// §5): the soonest deadline, parked last, resumes its pump alone, the
// next is then the soonest, and a pump woken early takes its deadline
// with it.
func TestParkerDeadlinesInOrder(t *testing.T) {
	pk, err := newParker()
	if err != nil {
		t.Skipf("no parker here: %v", err)
	}
	defer pk.close()
	type parked struct {
		pp  *parkedPump
		n   atomic.Int32
		ran chan struct{}
	}
	park := func(in time.Duration) *parked {
		a, _ := loopbackPair(t)
		rc, _ := a.(*net.TCPConn).SyscallConn()
		p := &parked{ran: make(chan struct{}, 4)}
		p.pp = pk.prepare(rc, parkClient, time.Now().Add(in), resumeFunc(func() { p.n.Add(1); p.ran <- struct{}{} }))
		if !p.pp.arm() {
			t.Fatal("arm refused")
		}
		return p
	}
	wait := func(what string, p *parked) {
		t.Helper()
		select {
		case <-p.ran:
		case <-time.After(testenv.IOTimeout()):
			t.Fatalf("%s: not resumed", what)
		}
	}
	heads := func() []*parkedPump {
		pk.mu.Lock()
		defer pk.mu.Unlock()
		return slices.Clone(pk.deadlines)
	}
	hour, twoHours, soon := park(time.Hour), park(2*time.Hour), park(time.Millisecond)
	wait("soonest deadline", soon)
	if hour.n.Load() != 0 || twoHours.n.Load() != 0 {
		t.Fatal("a pump resumed hours before its deadline")
	}
	if d := heads(); len(d) != 2 || d[0] != hour.pp || d[0].at != 0 || d[1].at != 1 {
		t.Fatalf("deadlines left %v, want the hour's first, then the two hours'", d)
	}
	hour.pp.wake()
	wait("woken", hour)
	if d := heads(); len(d) != 1 || d[0] != twoHours.pp || d[0].at != 0 || hour.pp.at != -1 {
		t.Fatalf("deadlines left %v after the hour's pump was woken, want the two hours' alone", d)
	}
	pk.close()
	wait("close", twoHours)
	for i, p := range []*parked{hour, twoHours, soon} {
		if got := p.n.Load(); got != 1 {
			t.Errorf("pump %d resumed %d times, want once", i, got)
		}
	}
}

// A parked pump's slot is reused once it was resumed, under another id:
// a late event for the old pump (its readiness reported before its wake
// took it out of the set) finds no pump rather than the new one.
func TestParkerDropsStaleEvents(t *testing.T) {
	pk, err := newParker()
	if err != nil {
		t.Skipf("no parker here: %v", err)
	}
	defer pk.close()
	a, _ := loopbackPair(t)
	rc, _ := a.(*net.TCPConn).SyscallConn()
	ran := make(chan struct{}, 2)
	old := pk.prepare(rc, parkBackend, time.Time{}, resumeFunc(func() { ran <- struct{}{} }))
	old.wake()
	<-ran
	next := pk.prepare(rc, parkBackend, time.Time{}, resumeFunc(func() { ran <- struct{}{} }))
	if uint32(next.id) != uint32(old.id) {
		t.Fatalf("slot %d not reused (%d)", uint32(old.id), uint32(next.id))
	}
	pk.mu.Lock()
	stale, found := pk.byIDLocked(old.id), pk.byIDLocked(next.id)
	pk.mu.Unlock()
	if stale != nil || found != next {
		t.Errorf("the old id finds %p, the new one %p; want none and %p", stale, found, next)
	}
	next.wake()
	<-ran
}

// With the default Limits.ParkAfter (no longer than hotLinger), a pump
// that did work parks from the goroutine that did it once the hot linger
// passed: no fresh goroutine is started to linger on (ARCHITECTURE.md §5,
// §16). A session a few seconds between commands so runs no goroutine
// but for hotLinger after each; lingering hand-over goroutines (about a
// sixth of 2,000 sessions with a NOOP every 3 s at 500 ms, each started
// at the runtime's adaptive stack size) were most of what an active
// session cost more than an idle one.
func TestHotPumpsParkWithoutHandOver(t *testing.T) {
	h, _ := parkHarness(t, func(o *Options) { o.Limits.ParkAfter = DefaultParkAfter })
	c := h.login()
	c.transact("s SELECT INBOX", "s OK")
	for round := range 3 {
		clients, backends := h.srv.parker.parksSoFar(parkClient), h.srv.parker.parksSoFar(parkBackend)
		c.transact(fmt.Sprintf("n%d NOOP", round), fmt.Sprintf("n%d OK", round))
		// Each pump did work (the command, its response) and parks again.
		waitParksSoFar(t, h, parkClient, clients+1)
		waitParksSoFar(t, h, parkBackend, backends+1)
	}
	waitNoPumpGoroutines(t)
	if n := h.srv.handOvers.Load(); n != 0 {
		t.Errorf("%d hand-overs to a fresh goroutine with ParkAfter %v (hotLinger %v), want none: the hot linger already waited all of it", n, DefaultParkAfter, hotLinger)
	}
	// Still served after parking from a hot goroutine.
	c.transact("e NOOP", "e OK")
}

// While the backend owes an answer, the client pump lingers on instead of
// parking: its client sends the next command right after the answer, and
// a pump parked for it would resume on a fresh goroutine whose stack grows
// again (ARCHITECTURE.md §5). Once nothing is owed it parks as before.
func TestClientPumpLingersWhileAnswerOwed(t *testing.T) {
	gate := make(chan struct{})
	b := startHeldBackend(t, map[string][2]string{"NOOP": {"", "OK done\r\n"}}, map[string]chan struct{}{"NOOP": gate})
	var lingered atomic.Int64
	h := newHarness(t, func(o *Options) {
		o.Router = &StaticRouter{Default: &Backend{Name: "fixed", Addr: b.ln.Addr().String(), Security: BackendPlain, Login: LoginCommand}}
		o.lingerOwed = func() { lingered.Add(1) }
	})
	release := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release) // first: a held answer would hold the backend's end
	c := h.login()
	waitClientsParked(t, h, 1)
	parks := h.srv.parker.parksSoFar(parkClient)
	c.sendRaw("c NOOP\r\n")
	// The pump lingered ParkAfter (1 ms) twice with the NOOP owed, or
	// parked.
	deadline := time.Now().Add(testenv.IOTimeout())
	for lingered.Load() < 2 && h.srv.parker.parksSoFar(parkClient) == parks {
		if time.Now().After(deadline) {
			t.Fatal("the client pump neither lingered nor parked with the NOOP owed")
		}
		time.Sleep(time.Millisecond)
	}
	if n := h.srv.parker.parksSoFar(parkClient) - parks; n != 0 {
		t.Fatalf("the client pump parked %d times with the NOOP owed, want 0", n)
	}
	release()
	c.expectTagged("c", "c OK")
	waitParksSoFar(t, h, parkClient, parks+1)
	c.transact("n NOOP", "n OK")
}

// waitParksSoFar waits until pumps of a kind were parked n times so far.
func waitParksSoFar(t *testing.T, h *harness, kind parkKind, n int64) {
	t.Helper()
	deadline := time.Now().Add(testenv.IOTimeout())
	for h.srv.parker.parksSoFar(kind) < n {
		if time.Now().After(deadline) {
			t.Fatalf("pumps of kind %d parked %d times so far, want %d", kind, h.srv.parker.parksSoFar(kind), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// A parked pump resumes on a runner, whose stack grew already, not on a
// new goroutine whose stack grows again through each command after a
// parking (ARCHITECTURE.md §5): the goroutines the parked pumps left are
// taken again.
func TestResumedPumpsRunOnRunners(t *testing.T) {
	h, _ := parkHarness(t)
	c := h.login()
	c.transact("s SELECT INBOX", "s OK")
	const cycles = 5
	var reused int64
	for i := range cycles {
		waitParked(t, h, 1)
		waitClientsParked(t, h, 1)
		waitNoPumpGoroutines(t)
		waitRunnersWaiting(t, 2)
		before := h.srv.runners.reused.Load()
		c.transact(fmt.Sprintf("n%d NOOP", i), fmt.Sprintf("n%d OK", i))
		reused += h.srv.runners.reused.Load() - before
	}
	// Each NOOP resumed the client pump and the backend pump.
	if reused < 2*cycles {
		t.Errorf("%d of %d resumed pumps ran on a waiting runner", reused, 2*cycles)
	}
	c.transact("z LOGOUT", "z OK")
}
