package main

import (
	"os"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/audit"
	"github.com/imapwarden/imapwarden/internal/dovecottest"
)

// An unauthenticated client's ID field names are map keys of the records'
// client_id (RFC 2971 §3.1). The proxy lower-cases them (strings.ToLower),
// but the trail's readers take a record holding a key twice "as
// encoding/json compares them" (bytes.EqualFold, after unescaping) to be
// forged: verify stops at it (corrupt) and query skips it. Two names the
// proxy keeps apart are one key to the readers when they fold together
// ("s" and U+017F LATIN SMALL LETTER LONG S, both lower case, the second
// a quoted UTF-8 string the proxy accepts). So any client, before
// logging in, writes a record that makes "audit verify" report the trail
// BROKEN from there on (nothing after it is verified) and that "audit
// query" never shows: its failed logins disappear from the query.
func TestAttackIDKeysBreakVerify(t *testing.T) {
	dovecottest.Require(t)
	dc := dovecottest.Start(t, dovecottest.Options{})
	for _, tc := range []struct{ name, id string }{
		{"fold", "ID (\"s\" \"one\" \"\u017f\" \"two\")"},
		{"fold-sigma", "ID (\"\u03c3\" \"one\" \"\u03c2\" \"two\")"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startAudProxy(t, dovecotBackend(t, dc))
			m := dialAud(t, p.addr)
			m.do("m1", "", tc.id) // OK, or BAD should the proxy refuse such names
			m.do("m2", "NO", `LOGIN mallory wrong`)
			m.do("m3", "OK", "LOGOUT")
			// Someone else's session afterwards: it must still be covered.
			c := dialAud(t, p.addr)
			c.do("a1", "OK", "LOGIN alice alice-pw")
			c.do("a2", "OK", "LOGOUT")
			p.stop()

			rep, err := audit.Verify([]string{p.file}, audit.VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Break != nil {
				t.Errorf("audit verify of a trail nobody edited: %s", rep.Break)
			}
			var mallory int
			skipped, err := audit.Query([]string{p.file}, &audit.Filter{User: "mallory"}, func(r *audit.Record, _ []byte) error {
				mallory++
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if skipped > 0 || mallory == 0 {
				t.Errorf("audit query --user mallory: %d records, %d lines skipped; the failed login is not shown", mallory, skipped)
			}
			if t.Failed() {
				for _, r := range p.records(t) {
					if r.User == "mallory" {
						t.Logf("mallory's record as Scan reads it: %v", r.ClientID)
					}
				}
				b, _ := os.ReadFile(p.file)
				for _, l := range strings.Split(string(b), "\n") {
					if strings.Contains(l, "client_id") {
						t.Logf("%.300s", l)
						break
					}
				}
			}
		})
	}
}
