package main

import (
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/audit"
	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/proxy"
)

// A command the proxy carries out is recorded with its names whole; one
// whose names the record cannot hold whole is refused, NO [LIMIT]
// (ARCHITECTURE.md §11), as served from a configuration (the trail's
// MaxNameBytes reaches the proxy) in front of Dovecot. 24 CATENATE
// sources of 1000 bytes, within max_audit_mailbox_names, were carried
// out and recorded with every name cut to 64 bytes: two mailboxes sharing
// their first 64 bytes were one to the auditor.
func TestLongNamesRefusedNotCut(t *testing.T) {
	dovecottest.Require(t)
	dc := dovecottest.Start(t, dovecottest.Options{})
	s, addrs, stop, trail := serveAuditedDovecot(t, dc)
	if got := s.opts.Limits.MaxAuditNameBytes; got != proxy.DefaultMaxAuditNameBytes {
		t.Errorf("limits.max_audit_name_bytes unset: %d reached the proxy, want the trail's %d", got, proxy.DefaultMaxAuditNameBytes)
	}
	c := dialAud(t, addrs[0].String())
	c.do("l", "OK", "LOGIN alice alice-pw")
	// Two mailboxes alike in their first 150 bytes.
	prefix := "Legal-Litigation-2026-" + strings.Repeat("Case-4711-Smith-v-Jones-", 5)
	boxes := []string{prefix + "Privileged-A", prefix + "Privileged-B"}
	msg := "Subject: x\r\n\r\nx\r\n"
	var urls []string
	for i, b := range boxes {
		c.do(fmt.Sprint("c", i), "OK", fmt.Sprintf("CREATE %q", b))
		c.literal(fmt.Sprint("p", i), fmt.Sprintf("APPEND %q", b), msg, "")
		c.expect(fmt.Sprint("p", i), "OK")
		urls = append(urls, fmt.Sprintf(`URL "/%s/;UID=1"`, b))
	}
	c.literal("a1", "APPEND INBOX CATENATE ("+strings.Join(urls, " ")+" TEXT", msg, ")")
	c.expect("a1", "OK")

	// 24 sources of 1000 bytes: within the count, over the bytes.
	var long, names []string
	for i := range 24 {
		n := fmt.Sprintf("pad%02d-%s", i, strings.Repeat("p", 994))
		names = append(names, n)
		long = append(long, fmt.Sprintf(`URL "/%s/;UID=1"`, n))
	}
	if len(long) > s.trail.MaxMailboxNames() {
		t.Fatalf("%d sources, the trail holds %d", len(long), s.trail.MaxMailboxNames())
	}
	// A non-synchronizing literal: a refused one gets no continuation.
	if _, err := fmt.Fprintf(c.c, "a2 APPEND INBOX CATENATE (%s TEXT {%d+}\r\n%s)\r\n", strings.Join(long, " "), len(msg), msg); err != nil {
		t.Fatal(err)
	}
	c.expect("a2", "NO [LIMIT]")
	c.do("n1", "NO [LIMIT]", "NOTIFY SET (mailboxes ("+strings.Join(names, " ")+") (MessageNew))")
	if un := c.do("s1", "OK", "STATUS INBOX (MESSAGES)"); !strings.Contains(un, "MESSAGES 1)") {
		t.Errorf("INBOX: %q, want the one APPEND carried out", un)
	}
	c.do("o", "OK", "LOGOUT")
	stop()

	mustVerifyFile(t, trail)
	var appended, limits int
	if _, err := audit.Scan([]string{trail}, func(r *audit.Record, _ []byte) error {
		switch {
		case r.Kind == audit.KindCommand && r.Tag == "a1":
			appended++
			if !slices.Equal(r.Sources, boxes) || r.Mailbox != "INBOX" || len(r.Cut) > 0 {
				t.Errorf("the APPEND carried out is recorded with sources %q, cut %+v; want %q whole", r.Sources, r.Cut, boxes)
			}
		case r.Kind == audit.KindCommand && (r.Tag == "a2" || r.Tag == "n1") && r.Result == "OK":
			t.Errorf("%s carried out", r.Tag)
		case r.Kind == audit.KindLimit && r.Limit == "max_audit_name_bytes":
			limits++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if appended != 1 || limits != 2 {
		t.Errorf("%d records of the APPEND carried out, %d max_audit_name_bytes limits; want 1 and 2", appended, limits)
	}
}

// One mailbox name longer than max_field_bytes, in a command whose names
// total within max_audit_name_bytes, is recorded whole (ARCHITECTURE.md
// §11): a RENAME of a 1,113-byte mailbox to another that differs only
// after byte 1,024 was recorded as a RENAME to itself. Dovecot with one
// directory a level takes such names.
func TestLongMailboxNameRecordedWhole(t *testing.T) {
	dovecottest.Require(t)
	dc := dovecottest.Start(t, dovecottest.Options{LayoutFS: true})
	_, addrs, stop, trail := serveAuditedDovecot(t, dc)
	stem := "Projects" + strings.Repeat("/"+strings.Repeat("a", 219), 5) // each level under 255 bytes
	keep, gone := stem+"-keep", stem+"-gone"
	c := dialAud(t, addrs[0].String())
	c.do("l", "OK", "LOGIN alice alice-pw")
	c.do("c1", "OK", fmt.Sprintf("CREATE %q", keep))
	c.do("r1", "OK", fmt.Sprintf("RENAME %q %q", keep, gone))
	if l := c.do("s1", "OK", `LIST "" "Projects/*"`); !strings.Contains(l, gone) || strings.Contains(l, keep) {
		t.Errorf("Dovecot's mailboxes after the RENAME: %q", l)
	}
	c.do("o", "OK", "LOGOUT")
	stop()

	mustVerifyFile(t, trail)
	renamed := 0
	if _, err := audit.Scan([]string{trail}, func(r *audit.Record, _ []byte) error {
		if r.Kind == audit.KindCommand && r.Tag == "r1" {
			renamed++
			if r.Mailbox != keep || r.Destination != gone || len(r.Cut) > 0 {
				t.Errorf("RENAME recorded from %d bytes to %d (the same: %v), cut %+v; want %d and %d whole",
					len(r.Mailbox), len(r.Destination), r.Mailbox == r.Destination, r.Cut, len(keep), len(gone))
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if renamed != 1 {
		t.Errorf("%d records of the RENAME, want 1", renamed)
	}
}

// serveAuditedDovecot serves a proxy in front of dc from a configuration,
// its trail in the file trail.
func serveAuditedDovecot(t *testing.T, dc *dovecottest.Server) (s *setup, addrs []net.Addr, stop func(), trail string) {
	dir := t.TempDir()
	cf := tlsFiles(t, dir)
	trail = filepath.Join(dir, "audit.jsonl")
	s, addrs, _, stop = serveConfig(t, dir, fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %s, key: %s}]}
backends: {main: {address: %q, security: plain}}
audit: {path: %q, fsync: always}
rate_limits: {enabled: false}
`, cf.Cert, cf.Key, dc.Addr, trail))
	return s, addrs, stop, trail
}

func mustVerifyFile(t *testing.T, file string) {
	t.Helper()
	rep, err := audit.Verify([]string{file}, audit.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Break != nil {
		t.Errorf("audit verify: %s", rep.Break)
	}
}
