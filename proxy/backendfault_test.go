package proxy

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"math"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// scriptedBackend is an IMAP server that logs anyone in, answers LIST "" "",
// NAMESPACE and CAPABILITY, and hands every other command to its script, which
// writes whatever it likes: a misbehaving or compromised backend.
type scriptedBackend struct {
	ln     net.Listener
	script func(c net.Conn, tag, line string)
	caps   string // more capabilities after LOGIN ("METADATA")
	ns     string // the NAMESPACE answer's data; one personal "" "/" if empty
	greet  string // the greeting's text; "scripted" if empty
	in     string // the LOGIN reply's text; "in" if empty
}

func startScripted(t testing.TB, script func(c net.Conn, tag, line string)) *scriptedBackend {
	t.Helper()
	b := &scriptedBackend{script: script}
	b.start(t)
	return b
}

// start serves b, its fields set.
func (b *scriptedBackend) start(t testing.TB) { b.ln = serveEach(t, b.serve) }

func (b *scriptedBackend) serve(c net.Conn) {
	r := bufio.NewReader(c)
	fmt.Fprintf(c, "* OK [CAPABILITY IMAP4rev1 LITERAL+ IDLE] %s\r\n", cmp.Or(b.greet, "scripted"))
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return
		}
		l = strings.TrimRight(l, "\r\n")
		tag, rest, _ := strings.Cut(l, " ")
		switch {
		case strings.HasPrefix(rest, "LOGIN "):
			fmt.Fprintf(c, "%s OK [CAPABILITY IMAP4rev1 LITERAL+ IDLE UIDPLUS%s] %s\r\n", tag, b.caps, cmp.Or(b.in, "in"))
		case rest == `LIST "" ""`:
			fmt.Fprintf(c, "* LIST (\\Noselect) \"/\" \"\"\r\n%s OK done\r\n", tag)
		case rest == "CAPABILITY":
			fmt.Fprintf(c, "* CAPABILITY IMAP4rev1 LITERAL+ IDLE UIDPLUS%s\r\n%s OK done\r\n", b.caps, tag)
		case rest == "NAMESPACE":
			ns := b.ns
			if ns == "" {
				ns = `(("" "/")) NIL NIL`
			}
			fmt.Fprintf(c, "* NAMESPACE %s\r\n%s OK done\r\n", ns, tag)
		case rest == "LOGOUT":
			fmt.Fprintf(c, "* BYE bye\r\n%s OK done\r\n", tag)
			return
		default:
			b.script(c, tag, rest)
		}
	}
}

func scriptedHarness(t *testing.T, script func(c net.Conn, tag, line string), opts ...harnessOption) *harness {
	b := startScripted(t, script)
	return newHarness(t, append([]harnessOption{func(o *Options) {
		o.Router = &StaticRouter{Default: &Backend{Name: "scripted", Addr: b.ln.Addr().String(), Security: BackendPlain, Login: LoginCommand}}
	}}, opts...)...)
}

// The backend pump holds the backend to the protocol: each misbehaviour
// ends the session with BYE [UNAVAILABLE] to the client, an audit record
// naming the backend's fault, and no further byte of it relayed (issue 17).
func TestBackendProtocolFaults(t *testing.T) {
	cases := map[string]string{
		"tag not in flight":     "zz OK [ALERT] forged login ok\r\n",
		"unasked continuation":  "+ go on\r\n",
		"NUL in text":           "* OK hello\x00world\r\n",
		"bare CR in text":       "* OK a\rb\r\n",
		"bare LF line end":      "* OK a\n",
		"untagged BAD":          "* BAD could not read that\r\n",
		"response after BYE":    "* BYE leaving\r\n* 1 EXISTS\r\n",
		"ANSI after BYE in tag": "* BYE leaving\r\n* OK \x1b[2J\r\n",
		"garbage":               "hello world\r\n",
		// Untagged data may end in a literal: a brace group there that is
		// no size is a fault, not text (imapwire.Scanner.ResponseMarker).
		"malformed literal size": "* 1 FETCH (BODY[] {1x}\r\n",
		"empty literal size":     "* 1 FETCH (BODY[] {}\r\n",
		"literal size too long":  "* 1 FETCH (BODY[] {99999999999999999999}\r\n",
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			m, err := NewMetrics(prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			h := scriptedHarness(t, func(c net.Conn, tag, line string) {
				if line == "NOOP" {
					c.Write([]byte(bad))
					return
				}
				fmt.Fprintf(c, "%s OK fine\r\n", tag)
			}, func(o *Options) { o.Metrics = m })
			c := h.login()
			c.transact("a1 CHECK", "a1 BAD") // nothing selected: the proxy answers
			c.send("a2 NOOP")
			for {
				l := c.line()
				if strings.HasPrefix(l, "* BYE [UNAVAILABLE]") {
					break
				}
				if strings.Contains(l, "forged") || strings.Contains(l, "\x1b") || strings.HasPrefix(l, "+") {
					t.Fatalf("relayed %q", l)
				}
			}
			c.expectClosed()
			waitFor(t, func() bool { return h.audit.hasSecurity("backend-protocol-error") })
			// Counted against its backend (after the audit record).
			waitFor(t, func() bool { return testutil.ToFloat64(m.backendFaults.WithLabelValues("scripted", "protocol")) == 1 })
		})
	}
}

// A response line over Limits.MaxResponseLine ends the session.
func TestBackendLineTooLong(t *testing.T) {
	h := scriptedHarness(t, func(c net.Conn, tag, line string) {
		fmt.Fprintf(c, "* OK %s\r\n%s OK fine\r\n", strings.Repeat("x", 5000), tag)
	}, func(o *Options) { o.Limits.MaxResponseLine = 4096 })
	c := h.login()
	c.send("a1 NOOP")
	c.expectClosed("* BYE [UNAVAILABLE]")
	waitFor(t, func() bool { return h.audit.hasSecurity("backend-protocol-error") })
}

// A backend that stops answering, before a reply or in the middle of a
// literal it announced, ends the session after Limits.BackendTimeout
// (issue 13). Nothing else is owed in these sessions, so a busy machine
// can only delay the cut, never cause one (what is owed when, and that a
// slow backend that keeps sending is never cut: TestBackendDeadlines).
func TestBackendTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	stall := make(chan struct{})
	h := scriptedHarness(t, func(c net.Conn, tag, line string) {
		switch line {
		case "NOOP": // frozen
			<-stall
		case "STATUS INBOX (MESSAGES)": // a literal cut short
			fmt.Fprintf(c, "* 1 FETCH (BODY[] {100}\r\n0123456789")
			<-stall
		default:
			fmt.Fprintf(c, "%s OK fine\r\n", tag)
		}
	}, func(o *Options) { o.Limits.BackendTimeout = timeout; o.Metrics = m })
	t.Cleanup(func() { close(stall) }) // before the backend's own cleanup

	c := h.login()
	c.send("b1 NOOP")
	c.expectClosed("* BYE [UNAVAILABLE] Backend not responding")

	c = h.login()
	c.send("c1 STATUS INBOX (MESSAGES)")
	c.expect("* 1 FETCH (BODY[] {100}")
	// Cut inside the literal: no BYE, whose octets the client would read
	// as the literal's (ARCHITECTURE.md §15); the connection closes.
	if rest := c.readToClose(); string(rest) != "0123456789" {
		t.Fatalf("after the literal's first octets: %q", rest)
	}
	waitFor(t, func() bool { return h.audit.hasSecurity("backend-timeout") })
	// Two sessions cut for silence, each counted against its backend.
	waitFor(t, func() bool { return testutil.ToFloat64(m.backendFaults.WithLabelValues("scripted", "timeout")) == 2 })
}

// A DONE the client sent before IDLE's "+" came waits for it (doneIdle);
// once forwarded, the completion is owed: a backend silent after it is cut
// by its deadline, it does not hold the session (and its backend
// connection) for ever (ARCHITECTURE.md §13).
func TestDoneBeforeIdleContinuationKeepsDeadline(t *testing.T) {
	const timeout = 300 * time.Millisecond
	stall := make(chan struct{})
	h := scriptedHarness(t, func(c net.Conn, tag, line string) {
		switch line {
		case "IDLE":
			fmt.Fprintf(c, "+ idling\r\n")
		case "": // DONE: then silence
			<-stall
		default:
			fmt.Fprintf(c, "%s OK fine\r\n", tag)
		}
	}, func(o *Options) { o.Limits.BackendTimeout = timeout })
	t.Cleanup(func() { close(stall) }) // before the backend's own cleanup

	c := h.login()
	c.sendRaw("a1 IDLE\r\nDONE\r\n")
	c.expect("+ idling")
	c.expectClosed("* BYE [UNAVAILABLE] Backend not responding")
	waitFor(t, func() bool { return h.audit.hasSecurity("backend-timeout") })
}

// A client may pipeline IDLE, DONE and the next IDLE before the first
// "+" came. Each "+" is the IDLE's in flight: the client pump holds the
// DONE, and what follows it, until that IDLE's "+" (RFC 9051 §6.3.13).
// Before, the second IDLE took the first's "+", the second "+" was taken
// for a backend fault, and any user could end sessions with a false
// security event against the backend. Against a scripted server and
// Dovecot, 20 times each (whether the proxy had read the second IDLE when
// the first "+" came was a race).
func TestPipelinedIdleDoneIdle(t *testing.T) {
	run := func(t *testing.T, h *harness, selectFirst bool) {
		for i := range 20 {
			c := h.login()
			if selectFirst {
				c.transact("s SELECT INBOX", "s OK")
			}
			c.sendRaw("a1 IDLE\r\nDONE\r\na2 IDLE\r\n")
			c.expect("+ idling")
			c.expectTagged("a1", "a1 OK")
			if l := c.line(); l != "+ idling" {
				t.Fatalf("round %d: after a1's completion %q, want a2's \"+ idling\"", i, l)
			}
			c.send("DONE")
			c.expectTagged("a2", "a2 OK")
			c.transact("a3 LOGOUT", "a3 OK")
		}
		if h.audit.hasSecurity("backend-protocol-error") {
			t.Fatal("a backend fault was recorded")
		}
	}
	t.Run("scripted", func(t *testing.T) {
		var idleTag string
		h := scriptedHarness(t, func(c net.Conn, tag, line string) {
			switch line {
			case "IDLE":
				idleTag = tag
				fmt.Fprintf(c, "+ idling\r\n")
			case "": // DONE
				fmt.Fprintf(c, "%s OK idle done\r\n", idleTag)
			default:
				fmt.Fprintf(c, "%s OK fine\r\n", tag)
			}
		})
		run(t, h, false)
	})
	t.Run("dovecot", func(t *testing.T) {
		run(t, newDovecotHarness(t, nil).harness, true)
	})
}

// An IDLE the backend refused, whose DONE the client had already sent: the
// DONE is dropped, not read by the backend as a command (Dovecot answers
// such a line "DONE BAD", which the proxy would take for a completion of
// nothing it sent: a false backend fault, and the session ended).
func TestRefusedIdleDropsItsDone(t *testing.T) {
	h := scriptedHarness(t, func(c net.Conn, tag, line string) {
		switch {
		case line == "IDLE":
			fmt.Fprintf(c, "%s NO [UNAVAILABLE] no idle now\r\n", tag)
		case tag == "DONE":
			fmt.Fprintf(c, "DONE BAD Error in IMAP command received by server.\r\n")
		default:
			fmt.Fprintf(c, "%s OK fine\r\n", tag)
		}
	})
	c := h.login()
	c.sendRaw("a1 IDLE\r\nDONE\r\n")
	c.expect("a1 NO [UNAVAILABLE]")
	c.transact("a2 NOOP", "a2 OK")
	if h.audit.hasSecurity("backend-protocol-error") {
		t.Fatal("a backend fault was recorded")
	}
}

// What the backend owes decides the deadline of each read (owedReader):
// every read of a response that keeps coming gets a fresh one, so a slow
// backend that keeps sending is never cut; an IDLE waiting for DONE owes
// nothing (its pump parks); after DONE its completion is owed. Told by the
// deadlines the pump sets, with a timeout no run reaches, not by waiting
// for one to pass.
func TestBackendDeadlines(t *testing.T) {
	const timeout = time.Hour
	reads := make(chan time.Time, 1024) // the deadline of each read as it begins
	drain := func() {
		for {
			select {
			case <-reads:
			default:
				return
			}
		}
	}
	var mu sync.Mutex
	var mid []time.Time // reads begun inside the trickled literal
	h := scriptedHarness(t, func(c net.Conn, tag, line string) {
		switch line {
		case "IDLE":
			fmt.Fprintf(c, "+ idling\r\n")
		case "": // DONE
			fmt.Fprintf(c, "a2 OK idle done\r\n")
		default: // a literal trickled a byte per read of the proxy
			fmt.Fprintf(c, "* 1 FETCH (BODY[] {20}\r\n")
			for i := 0; i < 20; i++ {
				drain()
				c.Write([]byte("x"))
				select {
				case d := <-reads:
					mu.Lock()
					mid = append(mid, d)
					mu.Unlock()
				case <-time.After(testenv.IOTimeout()): // the test fails below
				}
			}
			fmt.Fprintf(c, ")\r\n%s OK slow\r\n", tag)
		}
	}, func(o *Options) {
		o.Limits.BackendTimeout = timeout
		o.wrapBackend = func(c net.Conn) net.Conn {
			return &deadlineConn{Conn: c, reading: func(d time.Time) { reads <- d }}
		}
	})
	c := h.login()
	begun := time.Now()
	c.transact("a1 STATUS INBOX (MESSAGES)", "a1 OK slow")
	mu.Lock()
	got := mid
	mu.Unlock()
	if len(got) != 20 {
		t.Fatalf("%d reads inside the literal, want 20", len(got))
	}
	for i, d := range got {
		if d.Before(begun.Add(timeout - time.Minute)) {
			t.Fatalf("read %d inside the literal: deadline %v, want about %v ahead", i, d, timeout)
		}
		if i > 0 && !d.After(got[i-1]) {
			t.Fatalf("read %d inside the literal kept the deadline of the read before: a backend that keeps sending would be cut", i)
		}
	}

	c.send("a2 IDLE")
	c.expect("+ idling")
	waitParked(t, h, 1) // nothing owed while idling: the pump parks
	drain()
	c.send("DONE")
	select {
	case d := <-reads:
		if d.Before(time.Now().Add(timeout - time.Minute)) {
			t.Fatalf("after DONE the IDLE's completion is owed, and the read waiting for it has deadline %v", d)
		}
	case <-time.After(testenv.IOTimeout()):
		t.Fatal("the backend pump did not read after DONE")
	}
	c.expect("a2 OK idle done")
	c.transact("a3 LOGOUT", "a3 OK")
}

// A drain past its deadline ends a FETCH after the message being sent,
// with BYE, never inside one (issue 13).
func TestDrainCutsAtMessageBoundary(t *testing.T) {
	msg := strings.Repeat("m", 2000)
	h := scriptedHarness(t, func(c net.Conn, tag, line string) {
		if line == "SELECT INBOX" {
			fmt.Fprintf(c, "%s OK [READ-WRITE] selected\r\n", tag)
			return
		}
		// An endless FETCH: one message every 50 ms, each sent in two
		// halves so that a cut inside one would show.
		for i := 1; ; i++ {
			if _, err := fmt.Fprintf(c, "* %d FETCH (UID %d BODY[] {%d}\r\n%s", i, i, len(msg), msg[:1000]); err != nil {
				return
			}
			time.Sleep(25 * time.Millisecond)
			if _, err := fmt.Fprintf(c, "%s)\r\n", msg[1000:]); err != nil {
				return
			}
			time.Sleep(25 * time.Millisecond)
		}
	}, func(o *Options) { o.CutGrace = time.Minute })
	c := h.login()
	c.transact("a1 SELECT INBOX", "a1 OK")
	c.send("a2 UID FETCH 1:* BODY.PEEK[]")
	c.expect("* 1 FETCH")
	ctx, cancel := contextWithTimeout(200 * time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.srv.Shutdown(ctx) }()
	// Whole messages, then BYE.
	c.br.Discard(len(msg) + 3) // the first message's literal and ")\r\n"
	for {
		l := c.line()
		if strings.HasPrefix(l, "* BYE [UNAVAILABLE]") {
			break
		}
		if !strings.HasPrefix(l, "* ") || !strings.HasSuffix(l, fmt.Sprintf("{%d}", len(msg))) {
			t.Fatalf("got %q: not a whole message before BYE", l)
		}
		if n, err := c.br.Discard(len(msg)); err != nil || n != len(msg) {
			t.Fatalf("literal: %d, %v", n, err)
		}
		if l := c.line(); l != ")" {
			t.Fatalf("after the literal %q", l)
		}
	}
	c.expectClosed()
	<-done
	waitFor(t, func() bool {
		h.audit.mu.Lock()
		defer h.audit.mu.Unlock()
		return len(h.audit.closes) == 1 && h.audit.closes[0].Reason == CloseDrained
	})
}

// Pipelining is bounded: with MaxInflight commands at a backend that holds
// its answers, the proxy reads the client no further; nothing is dropped
// or reordered once it answers (issue 17). The backend answers only when
// it holds MaxInflight unanswered commands, one at a time: a proxy sending
// more would show as more unanswered at once.
func TestInflightBackPressure(t *testing.T) {
	const limit, total = 20, 500
	var got, held []string
	over := 0
	h := scriptedHarness(t, func(c net.Conn, tag, line string) {
		got = append(got, tag)
		held = append(held, tag)
		if len(held) > limit {
			over = max(over, len(held))
		}
		for len(held) == limit || (len(got) == total && len(held) > 0) {
			fmt.Fprintf(c, "%s OK noop\r\n", held[0])
			held = held[1:]
		}
	}, func(o *Options) { o.Limits.MaxInflight = limit })
	c := h.login()
	var b strings.Builder
	for i := 0; i < total; i++ {
		fmt.Fprintf(&b, "n%d NOOP\r\n", i)
	}
	go c.c.Write([]byte(b.String()))
	for i := 0; i < total; i++ {
		c.expect(fmt.Sprintf("n%d OK", i))
	}
	if len(got) != total || over > 0 {
		t.Fatalf("backend got %d commands, up to %d unanswered at once", len(got), over)
	}
}

// A client that pipelines NOOPs without end, towards a backend that holds
// its answers, costs the proxy the default MaxInflight commands' records
// and no more, and the memory is returned when the session ends (issue 17:
// 1M such NOOPs once took the proxy from 58 to 517 MiB, for good). Heap
// figures are the whole test process's, after a collection.
func TestPipelinedNoopsMemoryBounded(t *testing.T) {
	const total = 100 * DefaultMaxInflight
	var held []string
	h := scriptedHarness(t, func(c net.Conn, tag, line string) {
		// Answered only once the proxy sent all it may: a proxy
		// reading the client on would grow on it.
		if held = append(held, tag); len(held) == DefaultMaxInflight {
			for _, tg := range held {
				fmt.Fprintf(c, "%s OK noop\r\n", tg)
			}
			held = held[:0]
		}
	}, func(o *Options) { o.Auditor = countingAuditor{o.Auditor.(*recAuditor)} })
	heap := func() int64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	var b bytes.Buffer
	for i := range total {
		fmt.Fprintf(&b, "n%d NOOP\r\n", i)
	}
	c := h.login()
	base := heap()
	go c.c.Write(b.Bytes())
	peak := int64(math.MinInt64)
	for i := range total {
		c.expect(fmt.Sprintf("n%d OK", i))
		if i%10_000 == 5_000 {
			peak = max(peak, heap()-base)
		}
	}
	c.transact("z LOGOUT", "z OK")
	waitFor(t, func() bool {
		h.audit.mu.Lock()
		defer h.audit.mu.Unlock()
		return len(h.audit.closes) == 1
	})
	after := heap() - base
	t.Logf("heap over the logged-in session's: %d KiB at most while %d NOOPs were pipelined, %d KiB once it ended", peak>>10, total, after>>10)
	if peak > 4<<20 { // about 0.4 MiB bounded; 16 MiB once MaxInflight was lifted
		t.Errorf("the proxy grew by %d KiB while NOOPs were pipelined: pipelining is not bounded", peak>>10)
	}
	if after > 2<<20 {
		t.Errorf("%d KiB more than before the NOOPs after the session ended: not returned", after>>10)
	}
}

// countingAuditor is a recAuditor that keeps no command record (it would
// hold what a test measures).
type countingAuditor struct{ *recAuditor }

func (countingAuditor) Command(*SessionInfo, CommandEvent) error { return nil }

// A command's record is recycled once its reply is out; the next command
// may take it while the backend pump is still finishing the reply. A
// synchronizing literal armed in that window must still get its "+"
// (CI: Cyrus's "+" for an APPEND right after a CREATE was called unasked).
func TestLiteralArmedWhileReplyEnds(t *testing.T) {
	armed := make(chan struct{})
	var appendTag string
	h := scriptedHarness(t, func(c net.Conn, tag, line string) {
		switch {
		case strings.HasPrefix(line, "CREATE "):
			fmt.Fprintf(c, "%s OK created\r\n", tag)
		case strings.HasPrefix(line, "APPEND "):
			// The proxy arms before it sends the command.
			appendTag = tag
			close(armed)
			fmt.Fprintf(c, "+ go ahead\r\n")
		default: // the literal's line
			fmt.Fprintf(c, "%s OK [APPENDUID 1 1] appended\r\n", appendTag)
		}
	}, func(o *Options) {
		var once sync.Once
		o.afterReply = func() {
			// Hold the pump after the CREATE's reply until the APPEND
			// that follows it is armed and at the backend.
			once.Do(func() { <-armed })
		}
	})
	c := h.login()
	c.transact("c1 CREATE box", "c1 OK")
	c.send("c2 APPEND box {5}")
	c.expect("+")
	c.sendRaw("hello\r\n")
	c.expect("c2 OK")
	c.transact("c3 LOGOUT", "c3 OK")
}

// A client may send its next IDLE right behind the DONE of the last one:
// the old IDLE's completion must not take the new IDLE's "+" for
// unasked. The backend holds the first completion until it has the
// second IDLE, so the proxy has registered it when the completion comes.
func TestIdleAfterDonePipelined(t *testing.T) {
	var idles, dones int
	h := scriptedHarness(t, func(c net.Conn, tag, line string) {
		switch line {
		case "IDLE":
			if idles++; idles == 1 {
				fmt.Fprintf(c, "+ idling\r\n")
				return
			}
			fmt.Fprintf(c, "a1 OK idle done\r\n+ idling\r\n")
		case "": // DONE
			if dones++; dones == 2 {
				fmt.Fprintf(c, "a2 OK idle done\r\n")
			}
		default:
			fmt.Fprintf(c, "%s OK fine\r\n", tag)
		}
	})
	c := h.login()
	c.send("a1 IDLE")
	c.expect("+ idling")
	c.sendRaw("DONE\r\na2 IDLE\r\n")
	c.expect("a1 OK")
	c.expect("+ idling")
	c.send("DONE")
	c.expect("a2 OK")
	c.transact("a3 LOGOUT", "a3 OK")
}

// A client that ends IDLE before its "+" came and goes on with a
// synchronizing literal: the first "+" is IDLE's (RFC 9051 §6.3.13), the
// next the literal's.
func TestIdleContinuationBeforeLiteral(t *testing.T) {
	h := scriptedHarness(t, func(c net.Conn, tag, line string) {
		switch {
		case tag == "hello": // the literal and the command's end
			fmt.Fprintf(c, "a2 OK [APPENDUID 1 1] appended\r\n")
		case line == "IDLE":
			fmt.Fprintf(c, "+ idling\r\n")
		case line == "": // DONE
			fmt.Fprintf(c, "a1 OK idle done\r\n")
		case strings.HasPrefix(line, "APPEND "):
			fmt.Fprintf(c, "+ go ahead\r\n")
		default:
			fmt.Fprintf(c, "%s OK fine\r\n", tag)
		}
	})
	c := h.login()
	c.sendRaw("a1 IDLE\r\nDONE\r\na2 APPEND box {5}\r\n")
	c.expect("+ idling")
	c.expect("a1 OK")
	c.expect("+ go ahead")
	c.sendRaw("hello\r\n")
	c.expect("a2 OK")
	c.transact("a3 LOGOUT", "a3 OK")
}

// writeHook is a backend connection that runs a hook once each write is
// out.
type writeHook struct {
	net.Conn
	after func(p []byte)
}

func (w *writeHook) Write(p []byte) (int, error) {
	n, err := w.Conn.Write(p)
	w.after(p[:n])
	return n, err
}

// A synchronizing literal's "+" may come as soon as the line announcing
// it leaves the proxy, and a line longer than the write buffer leaves
// within the write itself, before any flush: the literal is armed before
// its line is written. The client pump is held right after the line left
// until the client heard what came of it.
func TestLiteralArmedBeforeLongLineLeaves(t *testing.T) {
	var flags strings.Builder
	for i := range 1500 {
		fmt.Fprintf(&flags, " $k%04d", i)
	}
	cmd := "a1 APPEND box (" + flags.String()[1:] + ") {5}"
	if len(cmd) <= backendWriteBuf {
		t.Fatalf("the line (%d bytes) fits the write buffer", len(cmd))
	}
	heard := make(chan struct{})
	release := sync.OnceFunc(func() { close(heard) })
	h := scriptedHarness(t, func(c net.Conn, tag, line string) {
		switch {
		case tag == "hello": // the literal and the command's end
			fmt.Fprintf(c, "a1 OK [APPENDUID 1 1] appended\r\n")
		case strings.HasPrefix(line, "APPEND "):
			fmt.Fprintf(c, "+ go ahead\r\n")
		default:
			fmt.Fprintf(c, "%s OK fine\r\n", tag)
		}
	}, func(o *Options) {
		o.wrapBackend = func(c net.Conn) net.Conn {
			return &writeHook{Conn: c, after: func(p []byte) {
				if strings.HasSuffix(string(p), "{5}\r\n") {
					<-heard
				}
			}}
		}
	})
	t.Cleanup(release) // before the harness's: a failed test lets the pump go
	c := h.login()
	c.send(cmd)
	l := c.line()
	release()
	if !strings.HasPrefix(l, "+ go ahead") {
		t.Fatalf("got %q, want the backend's \"+\"", l)
	}
	c.sendRaw("hello\r\n")
	c.expect("a1 OK")
	c.transact("a2 LOGOUT", "a2 OK")
}

// deadlineConn is a backend connection that tells each read the read
// deadline in force when it began.
type deadlineConn struct {
	net.Conn
	mu      sync.Mutex
	last    time.Time
	reading func(deadline time.Time)
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = t
	return c.Conn.SetReadDeadline(t)
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	d := c.last
	c.mu.Unlock()
	c.reading(d)
	return c.Conn.Read(p)
}

// A command registered while the backend pump clears the deadline of a
// read with nothing owed any more must keep its deadline: the backend
// owes it an answer (Limits.BackendTimeout). The pump is held right
// before the clear until the backend has the command.
func TestOwedWhileDeadlineClears(t *testing.T) {
	got := make(chan struct{})    // the backend has a2
	window := make(chan struct{}) // the pump is about to clear
	var once sync.Once
	var watch atomic.Bool
	began := make(chan time.Time, 1)
	h := scriptedHarness(t, func(c net.Conn, tag, line string) {
		if tag == "a2" {
			close(got) // and never answered
			return
		}
		fmt.Fprintf(c, "%s OK fine\r\n", tag)
	}, func(o *Options) {
		o.Limits.ParkAfter = -1             // no deadline while nothing is owed
		o.Limits.BackendTimeout = time.Hour // its presence is checked, not its expiry
		o.unarming = func() {
			once.Do(func() {
				close(window)
				<-got
				watch.Store(true)
			})
		}
		o.wrapBackend = func(c net.Conn) net.Conn {
			return &deadlineConn{Conn: c, reading: func(d time.Time) {
				if watch.CompareAndSwap(true, false) {
					began <- d
				}
			}}
		}
	})
	c := h.login()
	c.transact("a1 NOOP", "a1 OK")
	select {
	case <-window:
	case <-time.After(testenv.IOTimeout()):
		t.Fatal("the deadline of a1's answer was never cleared")
	}
	c.send("a2 NOOP")
	select {
	case d := <-began:
		if d.IsZero() {
			t.Fatal("the backend owes a2 its answer, and the read waiting for it has no deadline")
		}
	case <-time.After(testenv.IOTimeout()):
		t.Fatal("the backend pump did not read again")
	}
}

// With parking off, a read with nothing owed has no deadline, even after
// a command whose deadline was set while the pump was already reading:
// an idle session is not "backend not responding" BackendTimeout later.
func TestIdleReadHasNoDeadline(t *testing.T) {
	var watch atomic.Bool
	began := make(chan time.Time, 1)
	h := scriptedHarness(t, func(c net.Conn, tag, line string) {
		fmt.Fprintf(c, "%s OK fine\r\n", tag)
	}, func(o *Options) {
		o.Limits.ParkAfter = -1
		o.afterReply = func() { watch.Store(true) }
		o.wrapBackend = func(c net.Conn) net.Conn {
			return &deadlineConn{Conn: c, reading: func(d time.Time) {
				if watch.CompareAndSwap(true, false) {
					began <- d
				}
			}}
		}
	})
	c := h.login()
	c.transact("a1 NOOP", "a1 OK") // owed while the pump waited with no deadline
	select {
	case d := <-began:
		if !d.IsZero() {
			t.Fatalf("nothing is owed, and the read after a1's answer has a deadline %v ahead", time.Until(d).Round(time.Second))
		}
	case <-time.After(testenv.IOTimeout()):
		t.Fatal("the backend pump did not read again")
	}
}

// With parking off (limits.park_after: 0 is ParkAfter -1), the client
// pump reads its commands: a negative lingering deadline would be past at
// once, and the pump would spin without ever reading one.
func TestNeverParkReadsCommands(t *testing.T) {
	h := scriptedHarness(t, func(c net.Conn, tag, line string) {
		fmt.Fprintf(c, "%s OK fine\r\n", tag)
	}, func(o *Options) { o.Limits.ParkAfter = -1 })
	c := h.login()
	c.transact("a1 NOOP", "a1 OK")
	c.transact("a2 LOGOUT", "a2 OK")
}

// A command owed while the backend pump lingers briefly between two
// answers sets no deadline of its own: the lingering read ends within
// hotLinger and the pump, seeing the answer owed, reads again with
// BackendTimeout's (relay.oweLocked). That is a timer change less per
// command. The backend still gets its deadline when it is silent:
// TestBackendTimeout, TestOwedWhileDeadlineClears.
func TestOwedDuringShortLingerSetsNoDeadline(t *testing.T) {
	var reading, during atomic.Int32 // reads under way; deadlines set meanwhile
	h := scriptedHarness(t, func(c net.Conn, tag, line string) {
		fmt.Fprintf(c, "%s OK fine\r\n", tag)
	}, func(o *Options) {
		o.Limits.ParkAfter = hotLinger
		o.Limits.BackendTimeout = time.Hour
		o.wrapBackend = func(c net.Conn) net.Conn {
			return &countingDeadlineConn{Conn: c, reading: &reading, during: &during}
		}
	})
	c := h.login()
	const n = 50
	for i := range n {
		tag := fmt.Sprintf("a%d", i)
		c.transact(tag+" NOOP", tag+" OK")
	}
	if d := during.Load(); d != 0 {
		t.Fatalf("%d of %d NOOPs set the backend's deadline while the pump lingered in a read", d, n)
	}
}

// countingDeadlineConn counts the read deadlines set while a read is
// under way.
type countingDeadlineConn struct {
	net.Conn
	reading, during *atomic.Int32
}

func (c *countingDeadlineConn) SetReadDeadline(t time.Time) error {
	if c.reading.Load() > 0 {
		c.during.Add(1)
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *countingDeadlineConn) Read(p []byte) (int, error) {
	c.reading.Add(1)
	defer c.reading.Add(-1)
	return c.Conn.Read(p)
}
