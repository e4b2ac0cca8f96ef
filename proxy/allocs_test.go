package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/netip"
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
}

func startFixedBackend(t testing.TB, answers map[string][2]string) *fixedBackend {
	t.Helper()
	b := &fixedBackend{answers: map[string][2][]byte{}, conns: make(chan net.Conn, 16)}
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
	body := strings.Repeat("x", 1000) + "\r\n"
	var flags strings.Builder
	for i := 1; i <= 100; i++ {
		fmt.Fprintf(&flags, "* %d FETCH (UID %d FLAGS (\\Seen))\r\n", i, i)
	}
	b := startFixedBackend(t, map[string][2]string{
		"NOOP":                      {"* 3 EXISTS\r\n", "OK NOOP completed\r\n"},
		"SELECT INBOX":              {"* 3 EXISTS\r\n* FLAGS (\\Seen \\Deleted)\r\n* OK [UIDVALIDITY 1] x\r\n", "OK [READ-WRITE] SELECT completed\r\n"},
		"UID FETCH 1:* (FLAGS)":     {flags.String(), "OK FETCH completed\r\n"},
		"UID FETCH 1 (BODY.PEEK[])": {fmt.Sprintf("* 1 FETCH (UID 1 BODY[] {%d}\r\n%s)\r\n", len(body), body), "OK FETCH completed\r\n"},
		"STORE 1 +FLAGS (\\Seen)":   {"* 1 FETCH (FLAGS (\\Seen))\r\n", "OK STORE completed\r\n"},
	})
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	h := newHarness(t, func(o *Options) {
		o.Router = &StaticRouter{Default: &Backend{Name: "fixed", Addr: b.ln.Addr().String(), Security: BackendPlain, Login: LoginCommand}}
		o.Listeners[1].PlaintextAuthFrom = loopback
		o.Auditor = nopAuditor{}
		o.Decider = funcDecider(func(*DecisionInput) Decision { return Decision{Allow: true} })
		o.Logger = zap.NewNop()
		o.Limits.ParkAfter = DefaultParkAfter // busy: never parks
	})
	conn, err := net.Dial("tcp", h.starttls)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReaderSize(conn, 64<<10)
	// untilTagged reads responses up to the tagged one, without allocating.
	untilTagged := func(tag []byte) []byte {
		for {
			l, err := r.ReadSlice('\n')
			if err != nil {
				t.Fatalf("reading: %v", err)
			}
			if bytes.HasPrefix(l, tag) && len(l) > len(tag) && l[len(tag)] == ' ' {
				return l
			}
		}
	}
	send := func(s []byte) {
		if _, err := conn.Write(s); err != nil {
			t.Fatal(err)
		}
	}
	if l, _ := r.ReadSlice('\n'); !bytes.HasPrefix(l, []byte("* OK")) {
		t.Fatalf("greeting %q", l)
	}
	send([]byte("l LOGIN alice alice-pw\r\n"))
	if l := untilTagged([]byte("l")); !bytes.HasPrefix(l, []byte("l OK")) {
		t.Fatalf("login: %q", l)
	}
	for _, c := range []struct{ name, cmd string }{
		{"SELECT", "s SELECT INBOX"},
		{"NOOP", "n NOOP"},
		{"FETCH FLAGS", "f UID FETCH 1:* (FLAGS)"},
		{"FETCH BODY", "b UID FETCH 1 (BODY.PEEK[])"},
		{"STORE", "w STORE 1 +FLAGS (\\Seen)"},
	} {
		line := []byte(c.cmd + "\r\n")
		tag := line[:bytes.IndexByte(line, ' ')]
		ok := append(append([]byte(nil), tag...), " OK"...)
		round := func() {
			send(line)
			if l := untilTagged(tag); !bytes.HasPrefix(l, ok) {
				t.Fatalf("%s: %q", c.name, l)
			}
		}
		for range 50 { // warm: buffers grown, records pooled
			round()
		}
		if n := testing.AllocsPerRun(500, round); n != 0 {
			t.Errorf("%s: %v allocations per command", c.name, n)
		}
	}
}
