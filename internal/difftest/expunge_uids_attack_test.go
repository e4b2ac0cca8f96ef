package difftest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/audit"
)

// TestAttackExpungeRecordNamesMessageThatStays (atk-msgs): in the record of
// a command that expunges, with QRESYNC enabled, "uids" are the UIDs the
// backend reported destroyed (* VANISHED, audit/README.md: "uids holds
// the UIDs themselves"). The same field holds the UIDs of content
// responses credited to the command (backendPump.delivered credits
// content that arrives with no content FETCH in flight to the oldest
// command): a message NOTIFY pushes (RFC 5465 §5.2) while an EXPUNGE runs
// is named in the EXPUNGE's uids beside the expunged one. The trail then
// says a message was destroyed that the backend still holds; one field,
// two readings. Dovecot (QRESYNC and NOTIFY): another session appends
// the message; the EXPUNGE's own sync reports it.
func TestAttackExpungeRecordNamesMessageThatStays(t *testing.T) {
	Binary(t)
	for _, name := range Backends {
		t.Run(name, func(t *testing.T) {
			b := StartBackend(t, name)
			if !b.Caps["NOTIFY"] || !b.Caps["QRESYNC"] {
				t.Skipf("%s offers no NOTIFY or no QRESYNC", name)
			}
			p := StartProxy(t, ProxyFor(b))
			direct := b.Login(t, "alice")
			defer direct.Close()
			box := b.Wire("Watched")
			if _, err := direct.OK("c", "CREATE %s", Quote(box)); err != nil {
				t.Fatal(err)
			}
			if err := b.Append(direct, box, "\\Deleted", Message("doomed", 200)); err != nil {
				t.Fatal(err)
			}
			if err := b.Append(direct, box, "", Message("kept", 200)); err != nil {
				t.Fatal(err)
			}
			cn := p.Login(t, "alice")
			for _, c := range []string{"ENABLE QRESYNC", "SELECT " + Quote(box),
				"NOTIFY SET (SELECTED (MessageNew (UID BODY.PEEK[]) MessageExpunge))"} {
				if _, err := cn.OK("s", "%s", c); err != nil {
					t.Fatalf("%s: %v", c, err)
				}
			}
			trail := p.Audit()
			if err := b.Append(direct, box, "", Message("new", 300)); err != nil {
				t.Fatal(err)
			}
			rs, err := cn.OK("x", "EXPUNGE")
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rs {
				t.Logf("%.100q", r.Text)
			}
			var rec *audit.Record
			for _, r := range trail.Read() {
				if r.Kind == audit.KindCommand && r.Tag == "x" {
					rec = r
				}
			}
			if rec == nil {
				t.Fatal("no record of the EXPUNGE")
			}
			t.Logf("record: expunged %d uids %v messages %d fetch %q", rec.Expunged, rec.UIDs, rec.Messages, rec.Fetch)
			// What the backend holds now.
			if _, err := direct.OK("e", "EXAMINE %s", Quote(box)); err != nil {
				t.Fatal(err)
			}
			rs, err = direct.OK("u", "UID SEARCH ALL")
			if err != nil {
				t.Fatal(err)
			}
			var held []string
			for _, r := range rs {
				if rest, ok := strings.CutPrefix(r.Text, "* SEARCH"); ok {
					held = strings.Fields(rest)
				}
			}
			// uids (read) and expunged_uids (destroyed) alike: neither
			// may name a kept message as this command's.
			for _, u := range append(rec.UIDs, rec.ExpungedUIDs...) {
				for _, h := range held {
					if h == fmt.Sprint(u) {
						t.Errorf("EXPUNGE record (expunged %d) names UID %d among the UIDs it destroyed; the backend still holds it (UIDs %v)", rec.Expunged, u, held)
					}
				}
			}
			if fmt.Sprint(rec.ExpungedUIDs) != "[1]" {
				t.Errorf("EXPUNGE record's expunged_uids %v: want [1], the message it destroyed", rec.ExpungedUIDs)
			}
		})
	}
}
