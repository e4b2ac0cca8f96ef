package difftest

import (
	"strconv"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/audit"
)

// TestAttackSavedResultHidesDestroyedMessages (atk-msgs): CLOSE reports
// nothing of what it expunges (RFC 9051 §6.4.1), so the trail names the
// messages it destroyed through "the records that set the flag (STORE,
// APPEND)" (audit/README.md). A STORE of "$" (SEARCHRES, RFC 5182) names
// none: its set is "$", the SEARCH RETURN (SAVE) that filled it records no
// matches, and the STORE's answer carries no UID. So SEARCH RETURN (SAVE),
// UID STORE $ +FLAGS.SILENT (\Deleted), CLOSE destroys messages that no
// record of the session names by UID or sequence number, where the same
// with the UIDs written out names every one. The backend's state says
// which went.
func TestAttackSavedResultHidesDestroyedMessages(t *testing.T) {
	Binary(t)
	for _, name := range Backends {
		t.Run(name, func(t *testing.T) {
			b := StartBackend(t, name)
			if !b.Caps["SEARCHRES"] {
				t.Skipf("%s offers no SEARCHRES", name)
			}
			p := StartProxy(t, ProxyFor(b))
			direct := b.Login(t, "alice")
			defer direct.Close()
			box := b.Wire("Victim")
			if _, err := direct.OK("c", "CREATE %s", Quote(box)); err != nil {
				t.Fatal(err)
			}
			for _, subj := range []string{"keep one", "target", "keep two"} {
				if err := b.Append(direct, box, "", Message(subj, 200)); err != nil {
					t.Fatal(err)
				}
			}
			uids := func() map[uint32]bool {
				t.Helper()
				if _, err := direct.OK("e", "EXAMINE %s", Quote(box)); err != nil {
					t.Fatal(err)
				}
				rs, err := direct.OK("u", "UID SEARCH ALL")
				if err != nil {
					t.Fatal(err)
				}
				m := map[uint32]bool{}
				for _, r := range rs {
					if rest, ok := strings.CutPrefix(r.Text, "* SEARCH"); ok {
						for _, f := range strings.Fields(rest) {
							n, _ := strconv.ParseUint(f, 10, 32)
							m[uint32(n)] = true
						}
					}
				}
				if _, err := direct.OK("x", "UNSELECT"); err != nil {
					t.Fatal(err)
				}
				return m
			}
			before := uids()
			cn := p.Login(t, "alice")
			trail := p.Audit()
			// The proxy may refuse the STORE of "$" (BAD or NO [CANNOT]):
			// then nothing may go. If it carries it out, the target goes
			// and a record must name it.
			refused := false
			for _, c := range []string{"SELECT " + Quote(box), "UID SEARCH RETURN (SAVE) SUBJECT target",
				"UID STORE $ +FLAGS.SILENT (\\Deleted)", "CLOSE"} {
				rs, err := cn.Cmd("a", "%s", c)
				if err != nil {
					t.Fatalf("%s: %v", c, err)
				}
				last := rs[len(rs)-1]
				if strings.HasPrefix(c, "UID STORE") && strings.Contains(last.Text, "[CANNOT]") && last.Status != "OK" {
					t.Logf("%s: refused: %s", c, last.Text)
					refused = true
					continue
				}
				if last.Status != "OK" {
					t.Fatalf("%s: %s", c, last.Text)
				}
			}
			after := uids()
			var gone []uint32
			for u := range before {
				if !after[u] {
					gone = append(gone, u)
				}
			}
			if refused {
				if len(gone) != 0 {
					t.Fatalf("the STORE of $ was refused, yet the backend lost UIDs %v", gone)
				}
				// The refusal, an attempt on messages the trail cannot
				// name, is on the trail.
				for _, r := range trail.Read() {
					if r.Kind == audit.KindPolicyDeny && r.Command == "STORE" && r.Set == "$" && r.Code == "CANNOT" {
						return
					}
				}
				t.Error("the refused STORE of $ has no policy.deny record")
				return
			}
			if len(gone) != 1 {
				t.Fatalf("the backend lost UIDs %v, want the target's alone", gone)
			}
			recs := trail.Read()
			for _, r := range recs {
				if r.Kind == audit.KindCommand {
					t.Logf("record: %s uid %v set %q uids %v expunged %d seqs %v", r.Command, r.UID, r.Set, r.UIDs, r.Expunged, r.ExpungedSeqs)
				}
			}
			if !named(recs, gone[0]) {
				t.Errorf("UID %d was destroyed (UID STORE $ +FLAGS \\Deleted, CLOSE) and no record of the session names it", gone[0])
			}
		})
	}
}

// named reports whether a record names UID u: in its uids, or in a UID set.
func named(recs []*audit.Record, u uint32) bool {
	for _, r := range recs {
		for _, x := range append(r.UIDs, r.ExpungedUIDs...) {
			if x == u {
				return true
			}
		}
		if !r.UID || r.Set == "" {
			continue
		}
		for _, e := range strings.Split(r.Set, ",") {
			lo, hi, _ := strings.Cut(e, ":")
			if hi == "" {
				hi = lo
			}
			a, errA := strconv.ParseUint(lo, 10, 32)
			b, errB := strconv.ParseUint(hi, 10, 32)
			if hi == "*" || lo == "*" {
				return true // may name it
			}
			if errA == nil && errB == nil && min(a, b) <= uint64(u) && uint64(u) <= max(a, b) {
				return true
			}
		}
	}
	return false
}
