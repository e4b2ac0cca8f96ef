package proxy

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// TestOwnerUnreadRefusedAndAudited: a name in an other-users namespace
// whose owner level has no one login reading (imapwire.OwnerLogin: "bob"
// to alice@example.com is bob@example.com to Cyrus with virtdomains, bob
// to a backend without domains) is answered BAD [CANNOT], audited as a
// refusal and never reaches the backend; the owner's login spelled out is
// forwarded (ARCHITECTURE.md §17).
func TestOwnerUnreadRefusedAndAudited(t *testing.T) {
	var selects atomic.Int32
	b := startScripted(t, func(c net.Conn, tag, line string) {
		if strings.HasPrefix(line, "SELECT ") {
			selects.Add(1)
		}
		fmt.Fprintf(c, "%s OK done\r\n", tag)
	})
	b.ns = `(("INBOX." ".")) (("user." ".")) (("" "."))`
	h := newHarness(t, func(o *Options) {
		o.Router = &StaticRouter{Default: &Backend{Name: "scripted", Addr: b.ln.Addr().String(), Security: BackendPlain, Login: LoginCommand}}
	})
	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	c.transact(`l1 LOGIN "alice@example.com" pw`, "l1 OK")
	c.transact(`a1 SELECT "user.bob.Legal"`, "a1 BAD [CANNOT]")
	if n := selects.Load(); n != 0 {
		t.Errorf("%d SELECTs reached the backend", n)
	}
	waitFor(t, func() bool {
		h.audit.mu.Lock()
		defer h.audit.mu.Unlock()
		for _, e := range h.audit.commands {
			if e.Command.Tag == "a1" && e.Denied && e.Result == "BAD" && e.Code == "CANNOT" && e.Command.Mailbox == "user.bob.Legal" {
				return true
			}
		}
		return false
	})
	c.transact(`a2 SELECT "user.bob@example^com.Legal"`, "a2 OK")
	if n := selects.Load(); n != 1 {
		t.Errorf("%d SELECTs reached the backend, want 1", n)
	}
}

// TestDeclaredAliasJudgedByPersonalName: a name under a declared alias of
// the personal namespace (ARCHITECTURE.md §8) reaches the backend as sent
// and the policies and audit as its personal name; one with no one
// personal name is refused and audited, the backend never asked.
func TestDeclaredAliasJudgedByPersonalName(t *testing.T) {
	var mu sync.Mutex
	var selects []string
	b := startScripted(t, func(c net.Conn, tag, line string) {
		if strings.HasPrefix(line, "SELECT ") {
			mu.Lock()
			selects = append(selects, line)
			mu.Unlock()
		}
		fmt.Fprintf(c, "%s OK done\r\n", tag)
	})
	h := newHarness(t, func(o *Options) {
		o.Router = &StaticRouter{Default: &Backend{Name: "scripted", Addr: b.ln.Addr().String(), Security: BackendPlain, Login: LoginCommand,
			Namespaces: &imapwire.Declared{List: []imapwire.Namespace{{Kind: imapwire.NSAlias, Prefix: "mail/", Delim: '/'}}}}}
	})
	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	c.transact(`l1 LOGIN alice pw`, "l1 OK")
	c.transact(`a1 SELECT "MAIL/Legal"`, "a1 BAD [CANNOT]")
	c.transact(`a2 SELECT "mail/Legal"`, "a2 OK")
	mu.Lock()
	if !slices.Equal(selects, []string{`SELECT "mail/Legal"`}) {
		t.Errorf("the backend got %q, want the one SELECT as sent", selects)
	}
	mu.Unlock()
	waitFor(t, func() bool {
		h.audit.mu.Lock()
		defer h.audit.mu.Unlock()
		var refused, judged bool
		for _, e := range h.audit.commands {
			refused = refused || e.Command.Tag == "a1" && e.Denied && e.Result == "BAD" && e.Code == "CANNOT" && e.Command.Mailbox == "MAIL/Legal"
			judged = judged || e.Command.Tag == "a2" && !e.Denied && e.Command.Mailbox == "Legal"
		}
		return refused && judged
	})
}
