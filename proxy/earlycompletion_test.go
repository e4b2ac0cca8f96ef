package proxy

import (
	"crypto/tls"
	"fmt"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/internal/couriertest"
	"github.com/imapwarden/imapwarden/internal/cyrustest"
	"github.com/imapwarden/imapwarden/internal/dovecottest"
)

// TestCompletionRightAfterPlus: a backend may answer a command's "+" for
// one literal and complete the command at once, before the proxy has
// sent the line announcing the next (Courier does so for APPEND with an
// empty mailbox name: "+ OK", then "NO Invalid mailbox name." with no
// wait). The proxy swallowed that "+" (it had sent its own for the
// buffered literal) and armed the next literal's hand-over only after
// the completion was relayed: the refusal went unseen and the session
// hung waiting for a "+" that would never come (internal/difftest, seed
// 1796588450470658050). Each backend answers as it does; the session
// must go on and the next command be answered.
func TestCompletionRightAfterPlus(t *testing.T) {
	msg := testMessage(1)
	for _, name := range []string{"dovecot", "cyrus", "courier"} {
		t.Run(name, func(t *testing.T) {
			c := realBackendHarness(t, name).login()
			// Many times over: the completion may come in the same read
			// as the "+" or in the next.
			for i := range 20 {
				tag := fmt.Sprintf("a%d", i)
				c.send(tag + " APPEND {0}")
				c.expect("+ ")
				c.sendRaw(fmt.Sprintf(" {%d}\r\n", len(msg)))
				if l := c.line(); strings.HasPrefix(l, "+") {
					// This backend takes it: the message follows.
					c.sendRaw(msg + "\r\n")
					c.expectTagged(tag, tag+" ")
				} else if !strings.HasPrefix(l, tag+" NO") && !strings.HasPrefix(l, tag+" BAD") {
					t.Fatalf("APPEND to an empty name: %q", l)
				}
				c.transact(fmt.Sprintf("n%d NOOP", i), fmt.Sprintf("n%d OK", i))
			}
		})
	}
}

// realBackendHarness is a proxy in front of a real Dovecot, Cyrus or
// Courier, over STARTTLS (personal mailboxes under "INBOX.").
func realBackendHarness(t *testing.T, name string) *harness {
	var addr, caFile string
	switch name {
	case "dovecot":
		dovecottest.Require(t)
		s := dovecottest.Start(t, dovecottest.Options{})
		addr, caFile = s.Addr, s.CAFile
	case "cyrus":
		cyrustest.Require(t)
		s := cyrustest.Start(t, cyrustest.Options{})
		addr, caFile = s.Addr, s.CAFile
	case "courier":
		couriertest.Require(t)
		s := couriertest.Start(t, couriertest.Options{})
		addr, caFile = s.Addr, s.CAFile
	}
	return newHarness(t, func(o *Options) {
		o.Router = &StaticRouter{Default: &Backend{Name: name, Addr: addr, Security: BackendStartTLS,
			TLS: &tls.Config{RootCAs: caPool(t, caFile), ServerName: "localhost"}}}
	})
}

// TestRefusedCommandLiteralNotRun: after a backend refused an APPEND
// right after the "+" for its first literal, the message the client
// sends as a {n+} literal is never read as commands: a client could
// otherwise smuggle a command past the policy inside it. The backend
// reads it as the refused command's rest (RFC 7888: a non-synchronizing
// literal is always read), or the proxy refuses {n+} to a backend without
// LITERAL+ and counts the octets away.
func TestRefusedCommandLiteralNotRun(t *testing.T) {
	for _, name := range []string{"dovecot", "cyrus", "courier"} {
		t.Run(name, func(t *testing.T) {
			c := realBackendHarness(t, name).login()
			c.transact("p0 CREATE INBOX.Victim", "p0 OK")
			payload := "x1 DELETE INBOX.Victim\r\n"
			c.send("a1 APPEND {0}")
			c.expect("+ ")
			c.sendRaw(fmt.Sprintf(" {%d+}\r\n%s\r\n", len(payload), payload))
			un, tl := c.tagged("a1")
			if strings.HasPrefix(tl, "a1 OK") {
				t.Fatalf("APPEND to an empty name: %q", tl)
			}
			un = append(un, c.transact("n1 NOOP", "n1 OK")...)
			for _, l := range un {
				if strings.HasPrefix(l, "x1") {
					t.Fatalf("the literal ran as a command: %q", l)
				}
			}
			if list := c.transact(`l1 LIST "" INBOX.Victim`, "l1 OK"); len(list) != 1 {
				t.Fatalf("Victim after the refused APPEND: %q", list)
			}
		})
	}
}
