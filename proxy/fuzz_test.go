package proxy

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/zap"
)

// FuzzSession sends arbitrary client bytes to a session before login and
// after it (the STYLE rule: every input against a server in every state).
// The session must never panic and must answer or close: once the client
// stops sending, the proxy closes within the deadline, or answers and
// waits for more.
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
	} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	h := newHarness(f, func(o *Options) {
		o.Logger = zap.NewNop()
		o.Limits.PreAuthIdle = 2 * time.Second
		o.Limits.MaxAppendLiteral = 1 << 16
		// Plaintext login from loopback, so the fuzzer skips TLS.
		o.Listeners[1].PlaintextAuthFrom = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	f.Fuzz(func(t *testing.T, input string, login bool) {
		c, err := net.Dial("tcp", h.starttls)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		prefix := ""
		if login {
			prefix = "l LOGIN alice alice-pw\r\n"
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
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
	})
}
