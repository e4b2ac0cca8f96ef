package main

import (
	"fmt"
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
	dir := t.TempDir()
	cf := tlsFiles(t, dir)
	pol, _ := filepath.Abs("../../policies")
	_, addrs, _, stop := serveConfig(t, dir, fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %s, key: %s}]}
backends: {main: {address: %q, security: plain}}
policy: {dirs: [{path: %q}]}
rate_limits: {enabled: false}
`, cf.Cert, cf.Key, dc.Addr, pol))
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
