package proxy

import (
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/internal/couriertest"
	"github.com/imapwarden/imapwarden/internal/cyrustest"
)

// TestLegacyBackends runs one session through the proxy to Cyrus and to
// Courier, over a verified STARTTLS backend leg: login, the capabilities
// the client sees, a 1 MB fetch, a synchronizing APPEND (Courier has no
// LITERAL+) and an IDLE that sees the other session's APPEND.
func TestLegacyBackends(t *testing.T) {
	type backend struct {
		addr, caFile string
		deliver      func([]byte)
	}
	for _, name := range []string{"cyrus", "courier"} {
		t.Run(name, func(t *testing.T) {
			var be backend
			switch name {
			case "cyrus":
				cyrustest.Require(t)
				s := cyrustest.Start(t, cyrustest.Options{})
				be = backend{s.Addr, s.CAFile, func(m []byte) { s.Deliver(t, "alice", "INBOX", m) }}
			case "courier":
				couriertest.Require(t)
				s := couriertest.Start(t, couriertest.Options{})
				be = backend{s.Addr, s.CAFile, func(m []byte) { s.Deliver(t, "alice", "INBOX", m) }}
			}
			big := bigMessage(1 << 20)
			be.deliver(big)
			h := newHarness(t, func(o *Options) {
				// SendID: ID pipelined with the login (dialBackend).
				o.Router = &StaticRouter{Default: &Backend{Name: name, Addr: be.addr, Security: BackendStartTLS,
					TLS: &tls.Config{RootCAs: caPool(t, be.caFile), ServerName: "localhost"}, SendID: true}}
			})
			c := h.login()
			un := c.transact("a1 CAPABILITY", "a1 OK")
			for _, bad := range []string{"STARTTLS", "LOGINDISABLED", "AUTH=", "REFERRALS", "XLIST", "X-"} {
				if strings.Contains(un[0], " "+bad) {
					t.Errorf("capabilities reach the client with %s: %s", bad, un[0])
				}
			}
			// The proxy's own COMPRESS, once, whatever the backend offers.
			if strings.Count(un[0], "COMPRESS=DEFLATE") != 1 {
				t.Errorf("COMPRESS=DEFLATE not listed once: %s", un[0])
			}
			c.transact("a2 SELECT INBOX", "a2 OK")
			if got := c.fetchBody("a3", 1); sha256.Sum256(got) != sha256.Sum256(big) {
				t.Fatalf("1 MB fetch differs (%d bytes)", len(got))
			}
			msg := testMessage(8)
			c.send(fmt.Sprintf("a4 APPEND INBOX {%d}", len(msg)))
			c.expect("+")
			c.sendRaw(msg + "\r\n")
			c.expectTagged("a4", "a4 OK")
			c.transact("a5 NOOP", "a5 OK")
			c.send("a6 IDLE")
			c.expect("+")
			other := h.login()
			other.send(fmt.Sprintf("b1 APPEND INBOX {%d}", len(msg)))
			other.expect("+")
			other.sendRaw(msg + "\r\n")
			other.expectTagged("b1", "b1 OK")
			for {
				l := c.line()
				if strings.HasPrefix(l, "* 3 EXISTS") {
					break
				}
				if !strings.HasPrefix(l, "* ") {
					t.Fatalf("in IDLE: %q", l)
				}
			}
			c.send("DONE")
			c.expectTagged("a6", "a6 OK")
			c.transact("a7 LOGOUT", "a7 OK")
		})
	}
}
