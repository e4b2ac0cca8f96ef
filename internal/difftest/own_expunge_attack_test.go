package difftest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/audit"
	"github.com/imapwarden/imapwarden/internal/testenv"
)

// TestAttackOwnExpungeCreditedToNoCommand: a session's own EXPUNGE (or
// MOVE), pipelined right after a NOOP, destroys a message it flagged
// itself, and the record of that EXPUNGE must say so. The relay credits
// an expunge only to the oldest command in flight (relay.expunger); a
// backend that runs the two together (RFC 9051 §5.5: Dovecot runs
// commands that use no sequence numbers at once and answers both from
// one mailbox sync) sends the EXPUNGE's "* n EXPUNGE" before the NOOP's
// tagged OK, so the record of the command that destroyed the message
// says it expunged nothing and the message is counted as another
// session's (others_expunged): the trail names no one for it.
func TestAttackOwnExpungeCreditedToNoCommand(t *testing.T) {
	Binary(t)
	for _, name := range Backends {
		t.Run(name, func(t *testing.T) {
			b := StartBackend(t, name)
			p := StartProxy(t, ProxyFor(b))
			direct := b.Login(t, "alice")
			defer direct.Close()
			box, keep := b.Wire("Doomed"), b.Wire("Keep")
			for _, mb := range []string{box, keep} {
				if _, err := direct.OK("c", "CREATE %s", Quote(mb)); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 4 {
				if err := b.Append(direct, box, "", Message(fmt.Sprintf("doomed %d", i+1), 200)); err != nil {
					t.Fatal(err)
				}
			}
			cn := p.Login(t, "alice")
			if _, err := cn.OK("o", "SELECT %s", Quote(box)); err != nil {
				t.Fatal(err)
			}
			trail := p.Audit()
			var recs []*audit.Record
			run := func(label, before, cmd string) *audit.Record {
				t.Helper()
				if before != "" {
					if _, err := cn.OK("f", "%s", before); err != nil {
						t.Fatal(err)
					}
				}
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
				deadline := time.Now().Add(testenv.IOTimeout())
				for {
					recs = append(recs, trail.Read()...)
					for i := len(recs) - 1; i >= 0; i-- {
						if r := recs[i]; r.Kind == audit.KindCommand && r.Tag == "b" && r.Command == strings.Fields(cmd)[0] {
							recs = recs[:0]
							return r
						}
					}
					if !trail.Wait(time.Until(deadline)) {
						t.Fatalf("%s: no record of b", label)
					}
				}
			}
			rec := run("STORE 1 \\Deleted; NOOP+EXPUNGE", "STORE 1 +FLAGS.SILENT (\\Deleted)", "EXPUNGE")
			if rec.Expunged != 1 {
				t.Errorf("EXPUNGE of the message this session flagged \\Deleted: record says expunged %d (seqs %v), want 1",
					rec.Expunged, rec.ExpungedSeqs)
			}
			if b.Caps["MOVE"] {
				rec = run("NOOP+MOVE 1", "", "MOVE 1 "+Quote(keep))
				if rec.Expunged != 1 {
					t.Errorf("MOVE 1: record says expunged %d (seqs %v), want 1", rec.Expunged, rec.ExpungedSeqs)
				}
			}
			if b.Caps["MOVE"] && b.Caps["UIDPLUS"] {
				// An EXPUNGE with nothing \Deleted, run together with a UID
				// MOVE pipelined after it: the message moved (kept, in
				// Keep) must not be recorded as the EXPUNGE's.
				uids, err := cn.OK("u", "UID SEARCH ALL")
				if err != nil {
					t.Fatal(err)
				}
				f := strings.Fields(uids[0].Text)
				uid := f[len(f)-1]
				if err := cn.Write([]byte("a EXPUNGE\r\nb UID MOVE " + uid + " " + Quote(keep) + "\r\n")); err != nil {
					t.Fatal(err)
				}
				rs, err := cn.Until("b")
				if err != nil {
					t.Fatal(err)
				}
				var seen []string
				for _, r := range rs {
					seen = append(seen, r.Text)
				}
				t.Logf("EXPUNGE+UID MOVE %s: %s", uid, strings.Join(seen, " | "))
				deadline := time.Now().Add(testenv.IOTimeout())
				var exp *audit.Record
				for exp == nil {
					for _, r := range trail.Read() {
						if r.Kind == audit.KindCommand && r.Tag == "a" {
							exp = r
						}
					}
					if exp == nil && !trail.Wait(time.Until(deadline)) {
						t.Fatal("no record of a")
					}
				}
				if exp.Expunged != 0 {
					t.Errorf("EXPUNGE with no message \\Deleted: record says expunged %d (seqs %v); the UID MOVE after it moved that message", exp.Expunged, exp.ExpungedSeqs)
				}
			}
			rs, err := direct.OK("st", "STATUS %s (MESSAGES)", Quote(box))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("backend after: %s", rs[0].Text)
			if _, err := cn.OK("z", "LOGOUT"); err != nil {
				t.Fatal(err)
			}
			if r := sessionClose(t, trail); r.OthersExpunged != 0 {
				t.Errorf("session.close says others_expunged %d; no other session expunged anything", r.OthersExpunged)
			}
		})
	}
}

// sessionClose waits for the session.close record of the one session on
// trail and returns it.
func sessionClose(t *testing.T, trail *AuditReader) *audit.Record {
	t.Helper()
	deadline := time.Now().Add(testenv.IOTimeout())
	for {
		for _, r := range trail.Read() {
			if r.Kind == audit.KindSessionClose {
				return r
			}
		}
		if !trail.Wait(time.Until(deadline)) {
			t.Fatal("no session.close record")
		}
	}
}
