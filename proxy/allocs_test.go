package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// fixedBackend answers a few commands from prepared bytes, allocating
// nothing once a session is logged in, so that a test of the proxy's
// allocations counts the proxy's alone.
type fixedBackend struct {
	ln net.Listener
	// answers maps a command (without its tag) to the responses before
	// the tagged completion, and the completion's text after the tag.
	answers map[string][2][]byte
	// conns receives the first connections accepted, so that a test can
	// push responses or close one.
	conns chan net.Conn
	// held: the answer to a command here waits until its channel is
	// closed.
	held map[string]chan struct{}
}

func startFixedBackend(t testing.TB, answers map[string][2]string) *fixedBackend {
	t.Helper()
	return startHeldBackend(t, answers, nil)
}

// startHeldBackend is startFixedBackend whose answers to the commands in
// held wait for their channel to close.
func startHeldBackend(t testing.TB, answers map[string][2]string, held map[string]chan struct{}) *fixedBackend {
	t.Helper()
	b := &fixedBackend{answers: map[string][2][]byte{}, conns: make(chan net.Conn, 16), held: held}
	for k, v := range answers {
		b.answers[k] = [2][]byte{[]byte(v[0]), []byte(v[1])}
	}
	b.ln = serveEach(t, func(c net.Conn) {
		select {
		case b.conns <- c:
		default:
		}
		b.serve(c)
	})
	return b
}

func (b *fixedBackend) serve(c net.Conn) {
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	w.WriteString("* OK [CAPABILITY IMAP4rev1 LITERAL+ IDLE UIDPLUS] fixed\r\n")
	w.Flush()
	var idleTag []byte
	for {
		l, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		l = bytes.TrimSuffix(l, []byte("\r\n"))
		tag, rest, _ := bytes.Cut(l, []byte(" "))
		if idleTag != nil && string(l) == "DONE" {
			w.Write(idleTag)
			w.WriteString(" OK IDLE done\r\n")
			idleTag = nil
		} else if a, ok := b.answers[string(rest)]; ok { // no allocation: map lookup
			if ch, ok := b.held[string(rest)]; ok {
				w.Flush()
				<-ch
			}
			w.Write(a[0])
			w.Write(tag)
			w.WriteByte(' ')
			w.Write(a[1])
		} else {
			switch {
			case bytes.HasPrefix(rest, []byte("LOGIN ")):
				fmt.Fprintf(w, "%s OK [CAPABILITY IMAP4rev1 LITERAL+ IDLE UIDPLUS] in\r\n", tag)
			case string(rest) == `LIST "" ""`:
				fmt.Fprintf(w, "* LIST (\\Noselect) \".\" \"\"\r\n%s OK done\r\n", tag)
			case string(rest) == "IDLE":
				idleTag = append(idleTag[:0], tag...)
				w.WriteString("+ idling\r\n")
			case string(rest) == "LOGOUT":
				fmt.Fprintf(w, "* BYE bye\r\n%s OK done\r\n", tag)
				w.Flush()
				return
			default:
				fmt.Fprintf(w, "%s BAD not in the script\r\n", tag)
			}
		}
		if r.Buffered() == 0 {
			w.Flush()
		}
	}
}

// nopAuditor keeps nothing.
type nopAuditor struct{}

func (nopAuditor) SessionOpen(*SessionInfo)                 {}
func (nopAuditor) TLSStarted(*SessionInfo)                  {}
func (nopAuditor) Auth(*SessionInfo, AuthEvent)             {}
func (nopAuditor) Command(*SessionInfo, CommandEvent) error { return nil }
func (nopAuditor) Security(*SessionInfo, string, string)    {}
func (nopAuditor) Limit(*SessionInfo, LimitResult)          {}
func (nopAuditor) Delivered(*SessionInfo, DeliveryEvent)    {}
func (nopAuditor) SessionClose(*SessionInfo, CloseEvent)    {}

// fixedRelay is a logged-in plaintext session through the proxy to a
// fixedBackend, with a client that allocates nothing either: the proxy's
// own costs are what testing.AllocsPerRun and the relay benchmarks see.
type fixedRelay struct {
	tb   testing.TB
	be   *fixedBackend
	conn net.Conn
	r    *bufio.Reader
}

// newFixedRelay starts the backend (flags: the number of "* n FETCH (UID n
// FLAGS (\\Seen))" lines answering UID FETCH 1:* (FLAGS)), the proxy (no
// audit, every command allowed, never parking, then opts) and a client
// logged in.
func newFixedRelay(tb testing.TB, flags int, opts ...harnessOption) *fixedRelay {
	tb.Helper()
	body := strings.Repeat("x", 1000) + "\r\n"
	big := strings.Repeat(strings.Repeat("x", 998)+"\r\n", 1<<10)
	var fl strings.Builder
	for i := 1; i <= flags; i++ {
		fmt.Fprintf(&fl, "* %d FETCH (UID %d FLAGS (\\Seen))\r\n", i, i)
	}
	return newFixedRelayAnswers(tb, map[string][2]string{
		"NOOP":                      {"* 3 EXISTS\r\n", "OK NOOP completed\r\n"},
		"SELECT INBOX":              {"* 3 EXISTS\r\n* FLAGS (\\Seen \\Deleted)\r\n* OK [UIDVALIDITY 1] x\r\n", "OK [READ-WRITE] SELECT completed\r\n"},
		"UID FETCH 1:* (FLAGS)":     {fl.String(), "OK FETCH completed\r\n"},
		"UID FETCH 1 (BODY.PEEK[])": {fmt.Sprintf("* 1 FETCH (UID 1 BODY[] {%d}\r\n%s)\r\n", len(body), body), "OK FETCH completed\r\n"},
		"UID FETCH 2 (BODY.PEEK[])": {fmt.Sprintf("* 2 FETCH (UID 2 BODY[] {%d}\r\n%s)\r\n", len(big), big), "OK FETCH completed\r\n"},
		"STORE 1 +FLAGS (\\Seen)":   {"* 1 FETCH (FLAGS (\\Seen))\r\n", "OK STORE completed\r\n"},
		// The client's "FETCH 1 BODY.PEEK[]" with the UID item the proxy
		// adds (imapwire.FetchEdit).
		"FETCH 1 (UID BODY.PEEK[])": {fmt.Sprintf("* 1 FETCH (UID 1 BODY[] {%d}\r\n%s)\r\n", len(body), body), "OK FETCH completed\r\n"},
		// Headers by sequence number get the UID item too.
		"FETCH 1:* (UID ENVELOPE)": {"* 1 FETCH (UID 1 ENVELOPE (\"Mon, 7 Dec 2026 10:00:00 +0000\" \"test 1\" ((NIL NIL \"bob\" \"example.com\")) NIL NIL ((NIL NIL \"alice\" \"example.com\")) NIL NIL NIL \"<1@example.com>\"))\r\n" +
			"* 2 FETCH (UID 2 ENVELOPE (NIL {6}\r\ntest 2 NIL NIL NIL NIL NIL NIL NIL NIL))\r\n", "OK FETCH completed\r\n"},
	}, opts...)
}

// newFixedRelayAnswers is newFixedRelay with a backend answering from
// answers (startFixedBackend).
func newFixedRelayAnswers(tb testing.TB, answers map[string][2]string, opts ...harnessOption) *fixedRelay {
	tb.Helper()
	b := startFixedBackend(tb, answers)
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	h := newHarness(tb, func(o *Options) {
		o.Router = &StaticRouter{Default: &Backend{Name: "fixed", Addr: b.ln.Addr().String(), Security: BackendPlain, Login: LoginCommand}}
		o.Listeners[1].PlaintextAuthFrom = loopback
		o.Auditor = nopAuditor{}
		o.Decider = funcDecider(func(*DecisionInput) Decision { return Decision{Allow: true} })
		o.Logger = zap.NewNop()
		o.Limits.ParkAfter = DefaultParkAfter // busy: never parks
		for _, f := range opts {
			f(o)
		}
	})
	conn, err := net.Dial("tcp", h.starttls)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	c := &fixedRelay{tb: tb, be: b, conn: conn, r: bufio.NewReaderSize(conn, 64<<10)}
	if l, _ := c.r.ReadSlice('\n'); !bytes.HasPrefix(l, []byte("* OK")) {
		tb.Fatalf("greeting %q", l)
	}
	c.send([]byte("l LOGIN alice alice-pw\r\n"))
	if l := c.untilTagged([]byte("l")); !bytes.HasPrefix(l, []byte("l OK")) {
		tb.Fatalf("login: %q", l)
	}
	return c
}

func (c *fixedRelay) send(s []byte) {
	if _, err := c.conn.Write(s); err != nil {
		c.tb.Fatal(err)
	}
}

// untilTagged reads responses up to the tagged one, without allocating.
func (c *fixedRelay) untilTagged(tag []byte) []byte {
	for {
		l, err := c.r.ReadSlice('\n')
		if err != nil {
			c.tb.Fatalf("reading: %v", err)
		}
		if bytes.HasPrefix(l, tag) && len(l) > len(tag) && l[len(tag)] == ' ' {
			return l
		}
	}
}

// rounder returns a function that sends cmd ("tag COMMAND ...") and reads
// its responses up to its OK completion.
func (c *fixedRelay) rounder(cmd string) func() {
	line := []byte(cmd + "\r\n")
	tag := line[:bytes.IndexByte(line, ' ')]
	ok := append(append([]byte(nil), tag...), " OK"...)
	return func() {
		c.send(line)
		if l := c.untilTagged(tag); !bytes.HasPrefix(l, ok) {
			c.tb.Fatalf("%s: %q", cmd, l)
		}
	}
}

// The relay allocates nothing per command once warm (issue 12): a command
// read, checked, decided and forwarded; its responses read, parsed once,
// counted (FETCH content and UIDs) and relayed; its completion matched,
// audited and answered. The client and the backend here allocate nothing
// either, so testing.AllocsPerRun counts the proxy's own allocations.
// TLS is left out: crypto/tls allocates a small reader per record read
// (Conn.readFromUntil), which is the standard library's.
func TestRelaySteadyStateAllocates(t *testing.T) {
	if testenv.Race() {
		t.Skip("the race detector drops pooled buffers; .ci/run runs this test without it")
	}
	c := newFixedRelay(t, 100)
	for _, cc := range []struct{ name, cmd string }{
		{"SELECT", "s SELECT INBOX"},
		{"NOOP", "n NOOP"},
		{"FETCH FLAGS", "f UID FETCH 1:* (FLAGS)"},
		{"FETCH BODY", "b UID FETCH 1 (BODY.PEEK[])"},
		{"FETCH BODY by sequence number", "q FETCH 1 BODY.PEEK[]"},
		{"FETCH ENVELOPE by sequence number", "e FETCH 1:* ENVELOPE"},
		{"STORE", "w STORE 1 +FLAGS (\\Seen)"},
	} {
		round := c.rounder(cc.cmd)
		for range 50 { // warm: buffers grown, records pooled
			round()
		}
		if n := testing.AllocsPerRun(500, round); n != 0 {
			t.Errorf("%s: %v allocations per command", cc.name, n)
		}
	}
}

// With a Limiter, FETCH content is charged and each response held back
// while a charge may be refused, in the client writer's own buffer
// (ARCHITECTURE.md §12): still nothing allocated per command.
func TestRelaySteadyStateAllocatesLimited(t *testing.T) {
	if testenv.Race() {
		t.Skip("the race detector drops pooled buffers; .ci/run runs this test without it")
	}
	c := newFixedRelay(t, 100, func(o *Options) { o.Limiter = &blockingLimiter{} })
	for _, cc := range []struct{ name, cmd string }{
		{"SELECT", "s SELECT INBOX"},
		{"limited FETCH BODY", "b UID FETCH 1 (BODY.PEEK[])"},
		{"limited FETCH ENVELOPE by sequence number", "e FETCH 1:* ENVELOPE"},
	} {
		round := c.rounder(cc.cmd)
		for range 50 {
			round()
		}
		if n := testing.AllocsPerRun(500, round); n != 0 {
			t.Errorf("%s: %v allocations per command", cc.name, n)
		}
	}
}

// A read that lingers before a parking (ARCHITECTURE.md §5) ends in a
// deadline's error, which isTimeout tells without an allocation: it
// allocated its errors.As target at each call, once per parking.
func TestIsTimeoutAllocatesNothing(t *testing.T) {
	deadline := error(&net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded})
	if !isTimeout(deadline) || isTimeout(io.EOF) {
		t.Fatal("isTimeout does not tell a deadline from the end of a stream")
	}
	if n := testing.AllocsPerRun(100, func() { isTimeout(deadline) }); n != 0 {
		t.Errorf("%v allocations per deadline's error", n)
	}
}
