package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/internal/testenv"
)

// A Dovecot namespace that aliases the personal one (alias_for) under
// another prefix, hidden from NAMESPACE (Dovecot's documented way to keep
// names working for clients that came from a server with a "mail/"
// prefix), is a second spelling of every mailbox: "mail/Legal" is Legal.
// The proxy reads names only by the namespaces announced, so legal_hold
// and protected_folders judge "mail/Legal" and "mail/Sent" as mailboxes
// nothing holds or protects, and Dovecot expunges and deletes the held
// Legal and the protected Sent.
func TestAttackHiddenAliasNamespaceEscapesHold(t *testing.T) {
	dovecottest.Require(t)
	dc := dovecottest.Start(t, dovecottest.Options{Separator: "/", ExtraNamespaces: `namespace compat {
  prefix = mail/
  separator = /
  hidden = yes
  list = no
  alias_for =
}`})
	addrs, stop := serveShippedPolicies(t, dc)
	defer stop()

	c := dialAud(t, addrs[0].String())
	c.do("l", "OK", "LOGIN alice alice-pw")
	c.do("c1", "OK", "CREATE Legal")
	c.do("c2", "OK", "CREATE Sent")
	c.literal("a1", "APPEND Legal", "Subject: held\r\n\r\nevidence\r\n", "")
	c.expect("a1", "OK")
	// The hold and the protection as the proxy reads them.
	c.do("d0", "NO", "DELETE Legal")
	c.do("d1", "NO", "DELETE Sent")

	// The same mailboxes through the hidden alias: refused or not, the
	// held message and both mailboxes must stay.
	for i, cmd := range []string{"SELECT mail/Legal", "STORE 1 +FLAGS.SILENT (\\Deleted)", "EXPUNGE",
		"UNSELECT", "DELETE mail/Legal", "DELETE mail/Sent"} {
		t.Logf("%s: %s", cmd, c.try(fmt.Sprintf("t%d", i), cmd))
	}
	st := c.do("s2", "", "STATUS Legal (MESSAGES)")
	l := c.do("ls", "OK", `LIST "" "*"`)
	c.do("o", "OK", "LOGOUT")
	if !strings.Contains(st, "MESSAGES 1)") || !strings.Contains(l, "Sent") {
		t.Errorf("through mail/, Dovecot destroyed the held message or deleted the protected Sent: STATUS %q, LIST %q", st, l)
	}
}

// try sends a command and returns its tagged reply, whatever it is.
func (c *audClient) try(tag, cmd string) string {
	c.t.Helper()
	c.c.SetWriteDeadline(time.Now().Add(testenv.IOTimeout()))
	if _, err := fmt.Fprintf(c.c, "%s %s\r\n", tag, cmd); err != nil {
		c.t.Fatal(err)
	}
	for {
		if l := c.line(); strings.HasPrefix(l, tag+" ") {
			return l
		}
	}
}

// The same with Dovecot's namespace of other users' mailboxes
// (type = shared, "shared/bob/Legal") kept out of NAMESPACE (hidden =
// yes): the proxy reads "shared/bob/Legal" as alice's own mailbox, which
// nothing holds, and alice, given rights by bob, expunges bob's held
// Legal. Announced, the proxy reads bob as the owner and refuses.
func TestAttackHiddenSharedNamespaceEscapesOwnersHold(t *testing.T) {
	dovecottest.Require(t)
	for _, hidden := range []string{"no", "yes"} {
		t.Run("hidden="+hidden, func(t *testing.T) {
			dc := dovecottest.Start(t, dovecottest.Options{Separator: "/", ACL: true, ExtraNamespaces: `namespace shared {
  type = shared
  separator = /
  prefix = shared/%%u/
  location = maildir:%%h/Maildir:INDEXPVT=~/Maildir/shared/%%u
  subscriptions = no
  list = children
  hidden = ` + hidden + `
}`})
			dc.Deliver(t, "bob", "Legal", []byte("Subject: held\r\n\r\nevidence\r\n"))
			// Read by Dovecot's imap processes, which run as another user.
			acl := filepath.Join(dc.Dir, "home", "bob", "Maildir", ".Legal", "dovecot-acl")
			if err := os.WriteFile(acl, []byte("user=alice lrwstipekxa\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			addrs, stop := serveShippedPolicies(t, dc)
			defer stop()

			c := dialAud(t, addrs[0].String())
			c.do("l", "OK", "LOGIN alice alice-pw")
			if st := c.do("s0", "OK", "STATUS shared/bob/Legal (MESSAGES)"); !strings.Contains(st, "MESSAGES 1)") {
				t.Fatalf("bob's Legal as alice sees it: %q", st)
			}
			for i, cmd := range []string{"SELECT shared/bob/Legal", "STORE 1 +FLAGS.SILENT (\\Deleted)", "EXPUNGE", "UNSELECT"} {
				t.Logf("%s: %s", cmd, c.try(fmt.Sprintf("t%d", i), cmd))
			}
			st := c.do("s1", "", "STATUS shared/bob/Legal (MESSAGES)")
			c.do("o", "OK", "LOGOUT")
			if !strings.Contains(st, "MESSAGES 1)") {
				t.Errorf("alice expunged bob's held Legal through a shared namespace (hidden = %s): STATUS now %q", hidden, st)
			}
		})
	}
}

// serveShippedPolicies serves a proxy in front of dc with the shipped
// policies.
func serveShippedPolicies(t *testing.T, dc *dovecottest.Server) ([]net.Addr, func()) {
	dir := t.TempDir()
	cf := tlsFiles(t, dir)
	pol, err := filepath.Abs("../../policies")
	if err != nil {
		t.Fatal(err)
	}
	_, addrs, _, stop := serveConfig(t, dir, fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %s, key: %s}]}
backends: {main: {address: %q, security: plain}}
policy: {dirs: [{path: %q}]}
rate_limits: {enabled: false}
`, cf.Cert, cf.Key, dc.Addr, pol))
	return addrs, stop
}
