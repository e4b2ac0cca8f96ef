package difftest

import (
	"fmt"
	"slices"
	"testing"

	"github.com/imapwarden/imapwarden/audit"
)

// TestAuditNamesExpungedMessages (attack46a): the trail is "who read or
// changed which mailbox and which messages" (audit/README.md), and its
// FETCH records name the UIDs read, but an EXPUNGE, a UID EXPUNGE, a MOVE
// or a CLOSE, which destroy messages, named none: no count, no UIDs,
// though the backend says how many went and which (* n EXPUNGE, RFC 9051
// §7.5.1; * VANISHED with QRESYNC, RFC 7162 §3.2.10). Victim's last
// message is \Deleted: the backend's own state shows which UID went, and
// the record of the command that destroyed it must say what the backend
// said: the count, the sequence numbers (which, read against the mailbox
// as it was, are exactly the UIDs gone) or the UIDs themselves.
func TestAuditNamesExpungedMessages(t *testing.T) {
	Binary(t)
	for _, name := range Backends {
		t.Run(name, func(t *testing.T) {
			b := StartBackend(t, name)
			b.Setup(t, "alice")
			w := newEnv(t, b, StartProxy(t, ProxyFor(b)), "alice", &received{octets: map[string]int64{}, msgs: map[string]int64{}})
			victim := b.Canonical("Victim")
			steps := []struct{ label, script string }{
				{"EXPUNGE", "a SELECT \"$PVictim\"\nb EXPUNGE\n"},
				{"UID EXPUNGE", "a SELECT \"$PVictim\"\nb UID EXPUNGE 1:*\n"},
				{"STORE \\Deleted 1:2; EXPUNGE", "a SELECT \"$PVictim\"\nx STORE 1:2 +FLAGS.SILENT (\\Deleted)\nb EXPUNGE\n"},
				{"CLOSE", "a SELECT \"$PVictim\"\nb CLOSE\n"},
			}
			if b.Caps["MOVE"] {
				steps = append(steps, struct{ label, script string }{"MOVE", "a SELECT \"$PVictim\"\nb MOVE 2:3 \"$PKeep\"\n"})
			}
			if b.Caps["QRESYNC"] {
				steps = append(steps, struct{ label, script string }{"ENABLE QRESYNC; EXPUNGE", "q ENABLE QRESYNC\na SELECT \"$PVictim\"\nb EXPUNGE\n"})
			}
			for _, st := range steps {
				o := script(t, w, st.script)
				wantStatus(t, o, "b", "OK")
				var gone []uint32
				for _, c := range Diff(o.Before, o.After) {
					if c.Kind == MsgRemoved && c.Box == victim {
						gone = append(gone, c.UID)
					}
				}
				if len(gone) == 0 {
					t.Fatalf("%s: the backend expunged nothing", st.label)
				}
				slices.Sort(gone)
				var rec *audit.Record
				for i, r := range o.Recs {
					if r.Tag == "b" && r.Kind == audit.KindCommand {
						rec = o.Recs[i]
					}
				}
				if rec == nil {
					t.Fatalf("%s: no record of b", st.label)
				}
				if rec.Selected != victim || rec.UIDValidity == 0 || !slices.Contains(rec.Effects, "expunge") {
					t.Errorf("%s: record names selected %q, uidvalidity %d, effects %v: not which mailbox lost messages", st.label, rec.Selected, rec.UIDValidity, rec.Effects)
				}
				if st.label == "CLOSE" {
					// CLOSE expunges silently (RFC 9051 §6.4.1): the
					// backend names nothing, and the record claims nothing.
					if rec.Expunged != 0 || len(rec.ExpungedSeqs) != 0 {
						t.Errorf("CLOSE: record says expunged %d %v; the backend reported none", rec.Expunged, rec.ExpungedSeqs)
					}
					continue
				}
				if rec.Expunged != len(gone) {
					t.Errorf("%s destroyed UIDs %v of %q; its record says expunged %d (seqs %v, uids %v)", st.label, gone, victim, rec.Expunged, rec.ExpungedSeqs, rec.ExpungedUIDs)
					continue
				}
				named := slices.Clone(rec.ExpungedUIDs)
				if len(rec.ExpungedSeqs) > 0 {
					// Each sequence number as the backend numbered it when
					// it sent it: read against the mailbox as it was.
					box := o.Before.Boxes[victim]
					var uids []uint32
					for u := range box.Msgs {
						uids = append(uids, u)
					}
					slices.Sort(uids)
					for _, n := range rec.ExpungedSeqs {
						if n == 0 || int(n) > len(uids) {
							t.Fatalf("%s: sequence number %d of %d messages", st.label, n, len(uids))
						}
						named = append(named, uids[n-1])
						uids = slices.Delete(uids, int(n-1), int(n))
					}
				}
				slices.Sort(named)
				if fmt.Sprint(named) != fmt.Sprint(gone) {
					t.Errorf("%s destroyed UIDs %v; its record names %v (seqs %v, uids %v)", st.label, gone, named, rec.ExpungedSeqs, rec.ExpungedUIDs)
				}
			}
		})
	}
}
