package difftest

import (
	"crypto/tls"
	"slices"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// TestAttackNotifiedContentHiddenInMetadataFetch (atk-msgs): content a
// backend pushes under NOTIFY (RFC 5465 §5.2, MessageNew with fetch
// attributes) is recorded "fetch: body" (or a delivery record of its own
// for headers), so that "audit query --fetch body" finds every message
// whose content left (audit/README.md). But when the push arrives while a
// FETCH of flags alone is the command in flight, backendPump.answering
// credits it to that FETCH (one FETCH in flight: no fit check), whose
// record keeps the class of its own items, "metadata": the message's text
// went to the client and the trail files it under a flags fetch, where
// --fetch body does not look. Dovecot syncs the selected mailbox at the
// end of a FETCH and sends the new message's NOTIFY data before the
// FETCH's completion; another session (here a direct one) appends it.
func TestAttackNotifiedContentHiddenInMetadataFetch(t *testing.T) {
	Binary(t)
	for _, name := range Backends {
		t.Run(name, func(t *testing.T) {
			b := StartBackend(t, name)
			if !b.Caps["NOTIFY"] {
				t.Skipf("%s offers no NOTIFY", name)
			}
			p := StartProxy(t, ProxyFor(b))
			direct := b.Login(t, "alice")
			defer direct.Close()
			box := b.Wire("Watched")
			if _, err := direct.OK("c", "CREATE %s", Quote(box)); err != nil {
				t.Fatal(err)
			}
			if err := b.Append(direct, box, "", Message("first", 200)); err != nil {
				t.Fatal(err)
			}
			cn, _, err := Dial(p.Addr, &tls.Config{InsecureSkipVerify: true}, testenv.IOTimeout())
			if err != nil {
				t.Fatal(err)
			}
			defer cn.Close()
			if _, err := cn.OK("l", "LOGIN alice alice-pw"); err != nil {
				t.Fatal(err)
			}
			if _, err := cn.OK("s", "SELECT %s", Quote(box)); err != nil {
				t.Fatal(err)
			}
			if _, err := cn.OK("n", "NOTIFY SET (SELECTED (MessageNew (UID BODY.PEEK[]) MessageExpunge))"); err != nil {
				t.Fatal(err)
			}
			trail := p.Audit()
			if err := b.Append(direct, box, "", Message("secret second", 300)); err != nil {
				t.Fatal(err)
			}
			rs, err := cn.OK("f", "FETCH 1 (FLAGS)")
			if err != nil {
				t.Fatal(err)
			}
			pushed := false
			for _, r := range rs {
				if strings.Contains(r.Text, "BODY[]") {
					pushed = true
				}
				t.Logf("%.120q", r.Text)
			}
			if !pushed {
				t.Skipf("%s pushed no content during the FETCH", name)
			}
			recs := trail.Read()
			for _, r := range recs {
				t.Logf("record: kind %s tag %s command %s fetch %q messages %d content %d uids %v", r.Kind, r.Tag, r.Command, r.Fetch, r.Messages, r.ContentBytes, r.UIDs)
			}
			// What an auditor runs to find whose text left the server.
			var uids []uint32
			for _, r := range p.AuditQuery(t, "--fetch", "body", "--user", "alice") {
				uids = append(uids, r.UIDs...)
			}
			if !slices.Contains(uids, 2) {
				t.Errorf("audit query --fetch body names UIDs %v: not UID 2, whose text (BODY[]) the backend pushed to the client during FETCH 1 (FLAGS)", uids)
			}
		})
	}
}
