package difftest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/audit"
)

// TestAttackOtherSessionsExpungesCreditedToPipelinedCommand (atk-msgs):
// the record of a command that expunges takes every "* n EXPUNGE" and
// "* VANISHED" the backend sends while it is the oldest such command in
// flight (relay.expunger), even when the backend sent them as the answer
// to an earlier command (a NOOP) pipelined before it, which it had not
// begun to run: another session's expunge, reported to this one by its
// NOOP (RFC 9051 §7.5.1), lands in the record of a CLOSE after EXAMINE
// with no message \Deleted (it reports nothing, audit/README.md) or of a UID EXPUNGE
// whose set names no message the backend removed. The trail then says
// this user destroyed messages another session destroyed, by UID with
// QRESYNC. The backend's state shows who did: the messages were gone
// before the command ran.
func TestAttackOtherSessionsExpungesCreditedToPipelinedCommand(t *testing.T) {
	Binary(t)
	for _, name := range Backends {
		t.Run(name, func(t *testing.T) {
			b := StartBackend(t, name)
			p := StartProxy(t, ProxyFor(b))
			direct := b.Login(t, "alice")
			defer direct.Close()
			box := b.Wire("Victim")
			if _, err := direct.OK("c", "CREATE %s", Quote(box)); err != nil {
				t.Fatal(err)
			}
			for i := range 4 {
				if err := b.Append(direct, box, "", Message(fmt.Sprintf("victim %d", i+1), 200)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := direct.OK("s", "SELECT %s", Quote(box)); err != nil {
				t.Fatal(err)
			}
			cn := p.Login(t, "alice")
			qresync := b.Caps["QRESYNC"]
			if qresync {
				if _, err := cn.OK("q", "ENABLE QRESYNC"); err != nil {
					t.Fatal(err)
				}
			}
			trail := p.Audit()
			// The other session expunges message n of Victim (the proxied
			// session has Victim open), then the proxied session pipelines
			// a NOOP, which reports it, and the command under test.
			otherExpunges := func(n int) {
				t.Helper()
				if _, err := direct.OK("d", "STORE %d +FLAGS.SILENT (\\Deleted)", n); err != nil {
					t.Fatal(err)
				}
				if _, err := direct.OK("e", "EXPUNGE"); err != nil {
					t.Fatal(err)
				}
			}
			run := func(label, open, cmd string) *audit.Record {
				t.Helper()
				if _, err := cn.OK("o", "%s %s", open, Quote(box)); err != nil {
					t.Fatal(err)
				}
				otherExpunges(1)
				if err := cn.Write([]byte("n NOOP\r\nb " + cmd + "\r\n")); err != nil {
					t.Fatal(err)
				}
				rs, err := cn.Until("b")
				if err != nil {
					t.Fatalf("%s: %v", label, err)
				}
				var seen []string
				for _, r := range rs {
					seen = append(seen, r.Text)
				}
				t.Logf("%s: %s", label, strings.Join(seen, " | "))
				for _, r := range trail.Read() {
					if r.Kind == audit.KindCommand && r.Tag == "b" {
						return r
					}
				}
				t.Fatalf("%s: no record of b", label)
				return nil
			}
			// CLOSE with no message \Deleted expunges nothing (RFC 9051
			// §6.4.1); after EXAMINE it is not an expunger at all.
			rec := run("EXAMINE; NOOP+CLOSE", "EXAMINE", "CLOSE")
			if rec.Expunged != 0 || len(rec.ExpungedSeqs) != 0 || len(rec.UIDs) != 0 || len(rec.ExpungedUIDs) != 0 {
				t.Errorf("CLOSE of a mailbox opened by EXAMINE: record says expunged %d, seqs %v, uids %v; it expunged nothing",
					rec.Expunged, rec.ExpungedSeqs, append(rec.UIDs, rec.ExpungedUIDs...))
			}
			rec = run("SELECT; NOOP+CLOSE", "SELECT", "CLOSE")
			if rec.Expunged != 0 || len(rec.ExpungedSeqs) != 0 || len(rec.UIDs) != 0 || len(rec.ExpungedUIDs) != 0 {
				t.Errorf("CLOSE with no message \\Deleted: record says expunged %d, seqs %v, uids %v; it expunged nothing (another session's expunge, reported by the NOOP before it)",
					rec.Expunged, rec.ExpungedSeqs, append(rec.UIDs, rec.ExpungedUIDs...))
			}
			// UID EXPUNGE of a UID no message has.
			rec = run("SELECT; NOOP+UID EXPUNGE 4000000000", "SELECT", "UID EXPUNGE 4000000000")
			if rec.Expunged != 0 || len(rec.ExpungedSeqs) != 0 || len(rec.UIDs) != 0 || len(rec.ExpungedUIDs) != 0 {
				t.Errorf("UID EXPUNGE 4000000000 (no such message): record says expunged %d, seqs %v, uids %v; it expunged nothing (another session's expunge, reported by the NOOP before it)",
					rec.Expunged, rec.ExpungedSeqs, append(rec.UIDs, rec.ExpungedUIDs...))
			}
			rs, err := direct.OK("st", "STATUS %s (MESSAGES)", Quote(box))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("backend after: %s", rs[0].Text)
			// Another session's expunges are recorded as such, never
			// dropped: the session's close record counts them.
			if _, err := cn.OK("z", "LOGOUT"); err != nil {
				t.Fatal(err)
			}
			if r := sessionClose(t, trail); r.OthersExpunged != 3 {
				t.Errorf("session.close says others_expunged %d; another session expunged 3 messages this one had open, each reported to it by a NOOP", r.OthersExpunged)
			}
		})
	}
}
