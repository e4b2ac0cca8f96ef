package main

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/internal/dovecottest"
)

// Under a Dovecot alias namespace (alias_for, hidden; declared kind
// alias), the alias's "INBOX" is not the user's INBOX: the alias has no
// inbox = yes, so Dovecot reads "mail/INBOX" as an ordinary mailbox named
// INBOX (Maildir++ ".INBOX", which no personal name reaches), and the
// alias's root "mail" as the INBOX. The proxy canonicalises "mail/INBOX"
// to "INBOX" (unalias, then the INBOX fold), so policies and the trail
// judge and record the user's INBOX while Dovecot acts on another
// mailbox: an APPEND recorded as into INBOX lands elsewhere. "mail/INBOX"
// has no one personal name and should be refused BAD [CANNOT] as the
// alias's root is (or reach the INBOX).
// mailAliasNamespace is Dovecot's hidden "mail/" alias of the personal
// namespace.
const mailAliasNamespace = `namespace compat {
  prefix = mail/
  separator = /
  hidden = yes
  list = no
  alias_for =
}`

func TestAttackAliasInboxIsAnotherMailbox(t *testing.T) {
	dovecottest.Require(t)
	dc := dovecottest.Start(t, dovecottest.Options{Separator: "/", ExtraNamespaces: mailAliasNamespace})
	dc.Deliver(t, "alice", "INBOX", []byte("Subject: first\r\n\r\nbody\r\n"))
	addrs, stop := serveShippedPolicies(t, dc, `namespaces: [{prefix: "mail/", delimiter: "/", kind: alias}]`)
	defer stop()

	c := dialAud(t, addrs[0].String())
	c.do("l", "OK", "LOGIN alice alice-pw")
	uv := regexp.MustCompile(`UIDVALIDITY (\d+)`)
	inbox := c.do("s0", "OK", "STATUS INBOX (MESSAGES UIDVALIDITY)")
	msg := "Subject: second\r\n\r\nbody\r\n"
	fmt.Fprintf(c.c, "a1 APPEND \"mail/INBOX\" {%d}\r\n", len(msg))
	if l := c.line(); strings.HasPrefix(l, "a1 BAD [CANNOT]") {
		return // refused: no one personal name
	} else if !strings.HasPrefix(l, "+") {
		t.Fatalf("APPEND \"mail/INBOX\": %q", l)
	}
	fmt.Fprintf(c.c, "%s\r\n", msg)
	r := c.expect("a1", "")
	after := c.do("s1", "OK", "STATUS INBOX (MESSAGES UIDVALIDITY)")
	alias := c.do("s2", "", `STATUS "mail/INBOX" (MESSAGES UIDVALIDITY)`)
	c.do("o", "OK", "LOGOUT")
	t.Logf("INBOX before %q, after %q; APPEND mail/INBOX untagged %q; STATUS mail/INBOX %q", inbox, after, r, alias)
	if strings.Contains(after, "MESSAGES 2") {
		return // reached the INBOX, as the proxy read it
	}
	t.Errorf("APPEND \"mail/INBOX\", judged and recorded as into INBOX (UIDVALIDITY %s), was carried out by Dovecot in another mailbox (%q): INBOX still %q; want it refused BAD [CANNOT] (no one personal name)",
		uv.FindStringSubmatch(inbox)[1], alias, after)
}
