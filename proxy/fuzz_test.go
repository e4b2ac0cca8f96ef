package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// tapBackend sits between the proxy and the in-memory backend and keeps
// every byte the proxy sent, per connection, so that a test can check what
// reached the backend.
type tapBackend struct {
	ln   net.Listener
	to   string
	mu   sync.Mutex
	seen []*bytes.Buffer
	wg   sync.WaitGroup
}

func startTap(t testing.TB, to string) *tapBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tb := &tapBackend{ln: ln, to: to}
	tb.wg.Add(1)
	go func() {
		defer tb.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			buf := &bytes.Buffer{}
			tb.mu.Lock()
			tb.seen = append(tb.seen, buf)
			tb.mu.Unlock()
			tb.wg.Add(2)
			go func() {
				defer tb.wg.Done()
				io.Copy(c, b)
				c.Close()
			}()
			go func() {
				defer tb.wg.Done()
				io.Copy(io.MultiWriter(b, lockedWriter{&tb.mu, buf}), c)
				b.Close()
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); tb.wg.Wait() })
	return tb
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// take returns and forgets what the backend received so far.
func (tb *tapBackend) take() [][]byte {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	var out [][]byte
	for _, b := range tb.seen {
		out = append(out, bytes.Clone(b.Bytes()))
	}
	tb.seen = nil
	return out
}

// checkReached holds what one backend connection received to the one
// reading the proxy promises (ARCHITECTURE.md §7): after the proxy's own login
// commands (tags "iw..."), every command is well-formed for the grammar,
// and whatever the client sent that was refused never reached it.
func checkReached(t *testing.T, input string, stream []byte) {
	t.Helper()
	sc := imapwire.NewScanner(bufio.NewReader(bytes.NewReader(stream)), 0)
	ctx := imapwire.Context{State: imapwire.StateSelected, Delim: '/', Caps: ^imapwire.Cap(0)}
	var p imapwire.CommandParser
	for {
		line, lit, hasLit, err := sc.ReadLine()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return // the session ended, perhaps mid-command
		}
		if err != nil {
			t.Fatalf("input %q: the backend got an unsplittable stream: %v\n%q", input, err, stream)
		}
		if bytes.HasPrefix(line, []byte("iw")) || bytes.EqualFold(bytes.TrimRight(line, "\r\n"), []byte("DONE")) {
			// The proxy's own login (credentials may come as literals), or
			// the end of an IDLE.
			for hasLit {
				if sc.DiscardLiteral() != nil {
					return
				}
				if _, _, hasLit, err = sc.ReadLine(); err != nil {
					return
				}
			}
			continue
		}
		p.Reset()
		for {
			if err := imapwire.CheckCommandLine(line); err != nil {
				t.Fatalf("input %q: the backend got a malformed line %q: %v", input, line, err)
			}
			if err := p.Line(line, lit, hasLit); err != nil {
				t.Fatalf("input %q: the backend got %q: %v", input, line, err)
			}
			if !hasLit {
				break
			}
			if p.PendingIsMessage() {
				n := sc.LiteralRemaining()
				if err := sc.DiscardLiteral(); err != nil {
					return
				}
				p.LiteralStreamed(n)
			} else {
				b, err := sc.ReadLiteral(nil, 1<<20)
				if err != nil {
					return
				}
				p.Literal(b)
			}
			if line, lit, hasLit, err = sc.ReadLine(); err != nil {
				return
			}
		}
		if err := p.Check(&ctx); err != nil {
			t.Fatalf("input %q: the backend got a command the grammar refuses (%v): %q", input, err, stream)
		}
	}
}

// FuzzSession sends arbitrary client bytes to a session in every state
// (every input against a server in every state): before
// login, logged in, with a mailbox selected read-write or read-only, and
// in IDLE. The session must never panic and must answer or close; and
// what reached the backend must be exactly what the proxy's one reading
// allows (checkReached): no ambiguous byte leaves the proxy.
func FuzzSession(f *testing.F) {
	for _, seed := range []string{
		"a NOOP\r\n",
		"a SELECT INBOX\r\nb FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n",
		"a APPEND INBOX {5+}\r\nhello\r\n",
		"a APPEND INBOX {5}\r\n",
		"a CREATE {3+}\r\nabc\r\nb LIST \"\" *\r\n",
		"a IDLE\r\nDONE\r\n",
		"a IDLE\r\nb NOOP\r\n",
		"a STORE 1 +FLAGS.SILENT (\\Deleted)\r\na EXPUNGE\r\n",
		"a FETCH {18446744073709551621}\r\n",
		"a LOGIN x {3+}\r\nabc\r\n",
		"\x16\x03\x01\x00\x05hello",
		"a UID MOVE 1:* Trash\r\n",
		"a SELECT \"a\\\"b\"\r\n",
		"a ID (\"name\" {2+}\r\nab)\r\n",
		// The attacks of issue 11 that a single session can carry.
		"a SELECT \"Lega\\l\"\r\nb RENAME \"Sen\\t\" X\r\n",
		"a SELECT INBOX\r\nb CLOSE\r\n",
		"a SELECT INBOX\r\nb SELECT Legal\r\nc STORE 1:* +FLAGS (\\Deleted)\r\nd EXPUNGE\r\n",
		"t2 SELECT INBOX\r\na]b SELECT Trash\r\nc EXPUNGE\r\n",
		"a APPEND Keep CATENATE (URL \"/INBOX/;UID=1\" TEXT {3+}\r\nabc)\r\n",
		"a SELECT  INBOX \r\nb NOOP x\r\nc DELETE \"Sent/\"\r\nd DELETE \"INBOX/../Sent\"\r\n",
		"a CREATE \"&Jjo\"\r\nb SELECT [a b]\r\n",
	} {
		for state := range uint8(5) {
			f.Add(seed, state)
		}
	}
	h := newHarness(f, func(o *Options) {
		o.Logger = zap.NewNop()
		o.Limits.PreAuthIdle = 2 * time.Second
		o.Limits.MaxAppendLiteral = 1 << 16
		// Plaintext login from loopback, so the fuzzer skips TLS.
		o.Listeners[1].PlaintextAuthFrom = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	// The tap in front of the harness's backend, stopped before the
	// harness checks for leaked goroutines.
	tap := startTap(f, h.backend.addr)
	d := *h.srv.dyn.Load()
	d.Router = &StaticRouter{Default: &Backend{Name: "tap", Addr: tap.ln.Addr().String(), Security: BackendPlain, Login: LoginCommand}}
	if err := h.srv.Update(d); err != nil {
		f.Fatal(err)
	}
	prefixes := []string{
		"",                           // before login
		"l LOGIN alice alice-pw\r\n", // logged in
		"l LOGIN alice alice-pw\r\ns SELECT INBOX\r\n",
		"l LOGIN alice alice-pw\r\ns EXAMINE INBOX\r\n",
		"l LOGIN alice alice-pw\r\ns SELECT INBOX\r\ni IDLE\r\n",
	}
	f.Fuzz(func(t *testing.T, input string, state uint8) {
		tap.take()
		c, err := net.Dial("tcp", h.starttls)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		prefix := prefixes[int(state)%len(prefixes)]
		c.SetDeadline(time.Now().Add(testenv.IOTimeout()))
		go func() {
			c.Write([]byte(prefix + input))
			c.(*net.TCPConn).CloseWrite()
		}()
		// EOF from the client ends the session: the proxy must close.
		if _, err := io.Copy(io.Discard, c); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("session neither answered nor closed for %q", input)
			}
		}
		// The session ended: its backend connection too (the tap copies
		// until both sides close).
		for _, stream := range tap.take() {
			if strings.Contains(input, "\x00") && bytes.IndexByte(stream, 0) >= 0 {
				t.Fatalf("input %q: a NUL reached the backend", input)
			}
			checkReached(t, input, stream)
		}
	})
}
