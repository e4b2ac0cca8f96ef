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
	type backend struct{ addr, caFile string }
	starts := map[string]func(t *testing.T) backend{
		"dovecot": func(t *testing.T) backend {
			dovecottest.Require(t)
			s := dovecottest.Start(t, dovecottest.Options{})
			return backend{s.Addr, s.CAFile}
		},
		"cyrus": func(t *testing.T) backend {
			cyrustest.Require(t)
			s := cyrustest.Start(t, cyrustest.Options{})
			return backend{s.Addr, s.CAFile}
		},
		"courier": func(t *testing.T) backend {
			couriertest.Require(t)
			s := couriertest.Start(t, couriertest.Options{})
			return backend{s.Addr, s.CAFile}
		},
	}
	for _, name := range []string{"dovecot", "cyrus", "courier"} {
		t.Run(name, func(t *testing.T) {
			be := starts[name](t)
			h := newHarness(t, func(o *Options) {
				o.Router = &StaticRouter{Default: &Backend{Name: name, Addr: be.addr, Security: BackendStartTLS,
					TLS: &tls.Config{RootCAs: caPool(t, be.caFile), ServerName: "localhost"}}}
			})
			c := h.login()
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
