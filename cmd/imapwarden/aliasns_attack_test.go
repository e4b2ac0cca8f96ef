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
// IMAP gives no way to discover it (RFC 2342 lets a server announce only
// some namespaces), so the contract is that the operator declares it
// (backends.*.namespaces, kind alias; ARCHITECTURE.md §8): the proxy then
// judges "mail/Legal" as Legal, and legal_hold and protected_folders
// refuse. Undeclared, the proxy reads "mail/Legal" and "mail/Sent" as
// mailboxes nothing holds or protects and Dovecot expunges and deletes
// the held Legal and the protected Sent: the undeclared subtest pins that,
// so that a mechanism catching it without a declaration shows here.
func TestAttackHiddenAliasNamespaceEscapesHold(t *testing.T) {
	dovecottest.Require(t)
	for _, declared := range []bool{true, false} {
		t.Run(fmt.Sprintf("declared=%v", declared), func(t *testing.T) {
			dc := dovecottest.Start(t, dovecottest.Options{Separator: "/", ExtraNamespaces: mailAliasNamespace})
			decl := ""
			if declared {
				decl = `namespaces: [{prefix: "mail/", delimiter: "/", kind: alias}]`
			}
			addrs, stop := serveShippedPolicies(t, dc, decl)
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

			// The same mailboxes through the hidden alias.
			var got []string
			for i, cmd := range []string{"SELECT mail/Legal", "STORE 1 +FLAGS.SILENT (\\Deleted)", "EXPUNGE",
				"UNSELECT", "DELETE mail/Legal", "DELETE mail/Sent", "DELETE MAIL/Sent"} {
				r := c.try(fmt.Sprintf("t%d", i), cmd)
				t.Logf("%s: %s", cmd, r)
				got = append(got, r)
			}
			st := c.do("s2", "", "STATUS Legal (MESSAGES)")
			l := c.do("ls", "OK", `LIST "" "*"`)
			c.do("o", "OK", "LOGOUT")
			intact := strings.Contains(st, "MESSAGES 1)") && strings.Contains(l, "Sent")
			if !declared {
				if intact {
					t.Errorf("undeclared, the alias no longer destroys held or protected mail: update the contract (README, ARCHITECTURE.md §8): STATUS %q, LIST %q", st, l)
				}
				return
			}
			if !intact {
				t.Errorf("through mail/, Dovecot destroyed the held message or deleted the protected Sent: STATUS %q, LIST %q", st, l)
			}
			// Refused by the policies, as the personal names are; the
			// prefix in another case has no one reading.
			for i, want := range []string{"OK", "NO [NOPERM]", "", "OK", "NO [NOPERM]", "NO [NOPERM]", "BAD [CANNOT]"} {
				if !strings.HasPrefix(got[i], fmt.Sprintf("t%d %s", i, want)) {
					t.Errorf("command %d answered %q, want %s", i, got[i], want)
				}
			}
		})
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
// yes): undeclared, the proxy reads "shared/bob/Legal" as alice's own
// mailbox, which nothing holds, and alice, given rights by bob, expunges
// bob's held Legal (pinned: the contract is the declaration). Announced,
// or declared (backends.*.namespaces, kind other), the proxy reads bob as
// the owner and refuses.
func TestAttackHiddenSharedNamespaceEscapesOwnersHold(t *testing.T) {
	dovecottest.Require(t)
	for _, tc := range []struct{ hidden, decl string }{
		{"no", ""},
		{"yes", `namespaces: [{prefix: "shared/", delimiter: "/", kind: other}]`},
		{"yes", ""},
	} {
		t.Run(fmt.Sprintf("hidden=%s/declared=%v", tc.hidden, tc.decl != ""), func(t *testing.T) {
			dc := dovecottest.Start(t, dovecottest.Options{Separator: "/", ACL: true, ExtraNamespaces: `namespace shared {
  type = shared
  separator = /
  prefix = shared/%%u/
  location = maildir:%%h/Maildir:INDEXPVT=~/Maildir/shared/%%u
  subscriptions = no
  list = children
  hidden = ` + tc.hidden + `
}`})
			dc.Deliver(t, "bob", "Legal", []byte("Subject: held\r\n\r\nevidence\r\n"))
			// Read by Dovecot's imap processes, which run as another user.
			acl := filepath.Join(dc.Dir, "home", "bob", "Maildir", ".Legal", "dovecot-acl")
			if err := os.WriteFile(acl, []byte("user=alice lrwstipekxa\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			addrs, stop := serveShippedPolicies(t, dc, tc.decl)
			defer stop()

			c := dialAud(t, addrs[0].String())
			c.do("l", "OK", "LOGIN alice alice-pw")
			if st := c.do("s0", "OK", "STATUS shared/bob/Legal (MESSAGES)"); !strings.Contains(st, "MESSAGES 1)") {
				t.Fatalf("bob's Legal as alice sees it: %q", st)
			}
			var store string
			for i, cmd := range []string{"SELECT shared/bob/Legal", "STORE 1 +FLAGS.SILENT (\\Deleted)", "EXPUNGE", "UNSELECT"} {
				r := c.try(fmt.Sprintf("t%d", i), cmd)
				t.Logf("%s: %s", cmd, r)
				if i == 1 {
					store = r
				}
			}
			st := c.do("s1", "", "STATUS shared/bob/Legal (MESSAGES)")
			c.do("o", "OK", "LOGOUT")
			intact := strings.Contains(st, "MESSAGES 1)")
			switch {
			case tc.hidden == "yes" && tc.decl == "":
				if intact {
					t.Errorf("undeclared, the hidden namespace no longer lets alice expunge bob's held Legal: update the contract (README, ARCHITECTURE.md §8): STATUS %q", st)
				}
			case !intact:
				t.Errorf("alice expunged bob's held Legal through a shared namespace (hidden = %s): STATUS now %q", tc.hidden, st)
			case !strings.HasPrefix(store, "t1 NO [NOPERM]"):
				t.Errorf("STORE \\Deleted in bob's held Legal answered %q, want NO [NOPERM]", store)
			}
		})
	}
}

// serveShippedPolicies serves a proxy in front of dc with the shipped
// policies; backend is more of the backend's configuration.
func serveShippedPolicies(t *testing.T, dc *dovecottest.Server, backend string) ([]net.Addr, func()) {
	dir := t.TempDir()
	cf := tlsFiles(t, dir)
	pol, err := filepath.Abs("../../policies")
	if err != nil {
		t.Fatal(err)
	}
	if backend != "" {
		backend = ", " + backend
	}
	_, addrs, _, stop := serveConfig(t, dir, fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %q, key: %q}]}
backends: {main: {address: %q, security: plain%s}}
policy: {dirs: [{path: %q}]}
rate_limits: {enabled: false}
`, cf.Cert, cf.Key, dc.Addr, backend, pol))
	return addrs, stop
}
