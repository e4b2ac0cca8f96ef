package main

import (
	"bufio"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// Every spelling under a declared Dovecot alias namespace, generated from
// the levels that have more than one reading (INBOX in any case, the
// alias's own prefix, another case of a personal name): through the
// proxy, each is either refused BAD, or the mailbox Dovecot acts on for
// it is the one the proxy's reading names (the personal name, sent to
// Dovecot directly: same UIDVALIDITY after a CREATE of the alias name).
// Before the fix "mail/INBOX" was read as INBOX and was another mailbox
// (ARCHITECTURE.md §8).
func TestAliasSpellingsDovecot(t *testing.T) {
	dovecottest.Require(t)
	dc := dovecottest.Start(t, dovecottest.Options{Separator: "/", ExtraNamespaces: mailAliasNamespace})
	addrs, stop := serveShippedPolicies(t, dc, `namespaces: [{prefix: "mail/", delimiter: "/", kind: alias}]`)
	defer stop()

	c := dialAud(t, addrs[0].String())
	c.do("l", "OK", "LOGIN alice alice-pw")
	conn, err := net.Dial("tcp", dc.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	d := &audClient{t: t, c: conn, br: bufio.NewReader(conn)}
	if l := d.line(); !strings.HasPrefix(l, "* OK") {
		t.Fatalf("Dovecot's greeting %q", l)
	}
	d.do("l", "OK", "LOGIN alice alice-pw")
	d.do("c0", "OK", "CREATE Legal")
	d.do("c1", "OK", "CREATE INBOX/sub")

	announced, ok, err := imapwire.ParseNamespace([]byte(d.do("n", "OK", "NAMESPACE") + "\r\n"))
	if !ok || err != nil {
		t.Fatalf("Dovecot's NAMESPACE: %v", err)
	}
	declared := &imapwire.Declared{List: []imapwire.Namespace{{Kind: imapwire.NSAlias, Prefix: "mail/", Delim: '/'}}}
	ctx := imapwire.Context{State: imapwire.StateAuth, Delim: '/', Names: &imapwire.Names{NS: declared.Over(announced), User: "alice"}}
	var names []string
	for _, pre := range []string{"mail/", "MAIL/", "Mail/"} {
		for _, l1 := range []string{"INBOX", "inbox", "Inbox", "mail", "MAIL", "Legal", "legal", "INBOXes", "New"} {
			for _, l2 := range []string{"", "/sub", "/INBOX"} {
				names = append(names, pre+l1+l2)
			}
		}
	}
	names = append(names, "mail", "MAIL", "mail/")
	refused := 0
	for i, name := range names {
		r := c.try(fmt.Sprintf("p%d", i), fmt.Sprintf("CREATE %q", name))
		if strings.HasPrefix(r, fmt.Sprintf("p%d BAD", i)) {
			refused++
			continue
		}
		// Allowed: the proxy's reading, as its audit and policies see it.
		st := c.do(fmt.Sprintf("s%d", i), "", fmt.Sprintf("STATUS %q (UIDVALIDITY)", name))
		read, err := ctx.Canonical(name)
		if err != nil {
			t.Errorf("%q: the proxy allowed CREATE (%q), its name model refuses it: %v", name, r, err)
			continue
		}
		got := statusUV(d, fmt.Sprintf("a%d", i), name)
		want := statusUV(d, fmt.Sprintf("b%d", i), read)
		t.Logf("%q: CREATE %q; read as %q; Dovecot %s, %s", name, r, read, got, want)
		if got == "" || got != want {
			t.Errorf("%q, read by the proxy as %q, is another mailbox to Dovecot: UIDVALIDITY %q vs %q (through the proxy %q)", name, read, got, want, st)
		}
	}
	c.do("o", "OK", "LOGOUT")
	if refused == 0 || refused == len(names) {
		t.Errorf("%d of %d spellings refused", refused, len(names))
	}
}

var statusUIDValidity = regexp.MustCompile(`UIDVALIDITY (\d+)`)

// statusUV is name's UIDVALIDITY as Dovecot reports it to c, "" when
// STATUS fails (no such mailbox).
func statusUV(c *audClient, tag, name string) string {
	c.t.Helper()
	fmt.Fprintf(c.c, "%s STATUS %q (UIDVALIDITY)\r\n", tag, name)
	var un []string
	for {
		l := c.line()
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" OK") {
				return ""
			}
			break
		}
		un = append(un, l)
	}
	m := statusUIDValidity.FindStringSubmatch(strings.Join(un, "\n"))
	if m == nil {
		c.t.Fatalf("STATUS %q: %q", name, un)
	}
	return m[1]
}
