package difftest

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/audit"
)

// newDeleted returns the messages of logical that carry \Deleted after
// the step and were not in it before.
func newDeleted(w *Env, o *Outcome, logical string) []uint32 {
	c := w.B.Canonical(logical)
	a, b := o.Before.Boxes[c], o.After.Boxes[c]
	if a == nil || b == nil {
		return nil
	}
	var out []uint32
	for uid, fl := range b.Msgs {
		if _, had := a.Msgs[uid]; !had && hasFlag(fl, `\Deleted`) {
			out = append(out, uid)
		}
	}
	return out
}

// deniedMarkDeleted fails unless tag's refusal is audited as a
// policy.deny on Legal whose effects list mark-deleted, and Legal gained
// no \Deleted message.
func deniedMarkDeleted(t *testing.T, w *Env, o *Outcome, tag string) {
	t.Helper()
	if ids := newDeleted(w, o, "Legal"); len(ids) > 0 {
		t.Errorf("%s %s: Legal gained \\Deleted messages %v (records: %s)", tag, status(o, tag), ids, recSummary(o, tag))
	}
	for _, r := range o.Recs {
		if r.Tag == tag && r.Kind == audit.KindPolicyDeny {
			if r.Mailbox != w.B.Canonical("Legal") || !hasEffect(r, "mark-deleted") {
				t.Errorf("%s denied as %s %q effects %v, want mark-deleted on %q", tag, r.Command, r.Mailbox, r.Effects, w.B.Canonical("Legal"))
			}
			return
		}
	}
	t.Errorf("%s %s: no policy.deny record (records: %s)", tag, status(o, tag), recSummary(o, tag))
}

// TestDeletedIntoHeldMailboxIsDecided (attack44a): a message APPENDed with
// \Deleted (any case, RFC 9051 §2.3.2) has the mark-deleted effect on its
// mailbox, as a STORE of \Deleted has, in every form of APPEND: legal_hold
// refuses it on a held mailbox and the trail names the effect. A later
// message of a MULTIAPPEND (RFC 3502) is decided when its flags are read,
// after the first message was streamed: the session ends, which aborts
// the whole command. COPY and MOVE into a held mailbox keep the source's
// flags, which the proxy cannot know from the bytes; they stay allowed
// (ARCHITECTURE.md §10) and their record names the source messages (the
// selected mailbox, its UIDVALIDITY, the set; COPYUID) and the
// destination.
func TestDeletedIntoHeldMailboxIsDecided(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *Env) {
		msg := Message("held-deleted append", 200)
		lit := fmt.Sprintf("{%d}\n%s", len(msg), msg)
		appends := []struct{ name, cap, script string }{
			{"plain", "", `a APPEND "$PLegal" (\Deleted) ` + lit + "\n"},
			{"any case", "", `a APPEND "$PLegal" (\Seen \dELETED) "01-Jan-2024 00:00:00 +0000" ` + lit + "\n"},
			{"literal8", "BINARY", `a APPEND "$PLegal" (\Deleted) ~` + lit + "\n"},
			{"catenate", "CATENATE", `a APPEND "$PLegal" (\Deleted) CATENATE (TEXT ` + lit + ")\n"},
			{"utf8", "UTF8=ACCEPT", "e ENABLE UTF8=ACCEPT\n!wait e\n" + `a APPEND "$PLegal" (\Deleted) UTF8 (~` + lit + ")\n"},
		}
		for _, c := range appends {
			t.Run(c.name, func(t *testing.T) {
				if c.cap != "" && !e.B.Caps[c.cap] {
					t.Skipf("the backend does not offer %s", c.cap)
				}
				w := e.Worker(t, 0)
				deniedMarkDeleted(t, w, script(t, w, c.script), "a")
			})
		}
		t.Run("multiappend later message", func(t *testing.T) {
			if !e.B.Caps["MULTIAPPEND"] {
				t.Skip("the backend does not offer MULTIAPPEND")
			}
			w := e.Worker(t, 0)
			o := script(t, w, `a APPEND "$PLegal" (\Seen) `+lit+` (\Deleted) `+lit+"\n")
			deniedMarkDeleted(t, w, o, "a")
			if !o.Closed {
				t.Error("the session went on after a refusal mid-MULTIAPPEND")
			}
			kept(t, w, o, "Legal")
			if b, a := o.After.Boxes[w.B.Canonical("Legal")], o.Before.Boxes[w.B.Canonical("Legal")]; b != nil && a != nil && len(b.Msgs) != len(a.Msgs) {
				t.Errorf("Legal went from %d to %d messages: the refused MULTIAPPEND was not aborted whole", len(a.Msgs), len(b.Msgs))
			}
		})
		t.Run("multiappend catenate URL later", func(t *testing.T) {
			if !e.B.Caps["MULTIAPPEND"] || !e.B.Caps["CATENATE"] {
				t.Skip("the backend does not offer MULTIAPPEND and CATENATE")
			}
			w := e.Worker(t, 0)
			o := script(t, w, `a APPEND "$PLegal" `+lit+` (\Deleted) CATENATE (URL "/$PLegal/;UID=1")`+"\n")
			deniedMarkDeleted(t, w, o, "a")
		})
		t.Run("append without deleted", func(t *testing.T) {
			w := e.Worker(t, 0)
			o := script(t, w, `a APPEND "$PLegal" (\Seen $Deleted) `+lit+"\n")
			wantStatus(t, o, "a", "OK")
			for _, r := range o.Recs {
				if r.Tag == "a" && hasEffect(r, "mark-deleted") {
					t.Errorf("APPEND without \\Deleted audited with mark-deleted: %v", r.Effects)
				}
			}
		})
		// Keep's last message, 6, is \Deleted (Fixtures).
		for _, verb := range []string{"COPY", "MOVE"} {
			t.Run(strings.ToLower(verb), func(t *testing.T) {
				if verb == "MOVE" && !e.B.Caps["MOVE"] {
					t.Skip("the backend does not offer MOVE")
				}
				w := e.Worker(t, 0)
				o := script(t, w, "s SELECT \"$PKeep\"\n!wait s\nb "+verb+" 6 \"$PLegal\"\n")
				wantStatus(t, o, "b", "OK")
				keep := o.Before.Boxes[w.B.Canonical("Keep")]
				if keep == nil {
					t.Fatal("no Keep before the step")
				}
				var src uint32
				for uid, fl := range keep.Msgs {
					if hasFlag(fl, `\Deleted`) {
						src = uid
					}
				}
				var rec *audit.Record
				for _, r := range o.Recs {
					if r.Tag == "b" && r.Kind == audit.KindCommand {
						rec = r
					}
				}
				switch {
				case rec == nil:
					t.Fatalf("no record of %s (records: %s)", verb, recSummary(o, "b"))
				case rec.Command != verb || rec.Selected != w.B.Canonical("Keep") || rec.Destination != w.B.Canonical("Legal"):
					t.Errorf("%s recorded as %s from %q to %q", verb, rec.Command, rec.Selected, rec.Destination)
				case rec.UIDValidity != keep.UIDValidity || rec.Set != "6" || rec.SetCount != 1:
					t.Errorf("%s recorded set %q (%d) in UIDVALIDITY %d, want 6 (1) in %d", verb, rec.Set, rec.SetCount, rec.UIDValidity, keep.UIDValidity)
				case slices.Contains(rec.Effects, "mark-deleted"):
					t.Errorf("%s recorded mark-deleted: the source's flags are not known from the bytes", verb)
				}
				// COPYUID (RFC 4315 §3) names the source UID by UIDVALIDITY.
				if f := strings.Fields(rec.CodeArgs); verb == "COPY" && len(f) == 3 && f[1] != strconv.FormatUint(uint64(src), 10) {
					t.Errorf("COPYUID %q names source %s, want %d", rec.CodeArgs, f[1], src)
				}
				if ids := newDeleted(w, o, "Legal"); len(ids) != 1 {
					t.Errorf("Legal gained \\Deleted messages %v, want the one copied", ids)
				}
			})
		}
	})
}

func recSummary(o *Outcome, tag string) string {
	var parts []string
	for _, r := range o.Recs {
		if r.Tag == tag && (r.Kind == audit.KindCommand || r.Kind == audit.KindPolicyDeny) {
			parts = append(parts, fmt.Sprintf("%s %s %q dest %q effects %v", r.Kind, r.Command, r.Mailbox, r.Destination, r.Effects))
		}
	}
	return strings.Join(parts, "; ")
}
