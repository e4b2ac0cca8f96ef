package difftest

import (
	"fmt"
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
		if _, had := a.Msgs[uid]; !had && strings.Contains(fl, `\Deleted`) {
			out = append(out, uid)
		}
	}
	return out
}

// TestDeletedIntoHeldMailbox (attack44a): legal_hold refuses to mark
// messages \Deleted in a held mailbox (the mark-deleted effect), but only
// STORE carries that effect. APPEND with a \Deleted flag (RFC 9051
// §6.3.12) and COPY of a \Deleted message (RFC 9051 §6.4.7: flags are
// preserved) put \Deleted messages into Legal with create-messages as the
// only effect the policy saw; the trail records no mark-deleted. The test
// wants either a policy refusal or no new \Deleted message in Legal.
func TestDeletedIntoHeldMailbox(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *Env) {
		t.Run("append", func(t *testing.T) {
			w := e.Worker(t, 0)
			msg := Message("held-deleted append", 200)
			o := script(t, w, fmt.Sprintf("a APPEND \"$PLegal\" (\\Deleted) {%d}\n%s\n", len(msg), msg))
			if ids := newDeleted(w, o, "Legal"); len(ids) > 0 {
				t.Errorf("APPEND %s: Legal gained \\Deleted messages %v; the policy saw no mark-deleted (records: %s)",
					status(o, "a"), ids, recSummary(o, "a"))
			}
		})
		t.Run("copy", func(t *testing.T) {
			w := e.Worker(t, 0)
			// Keep's last message (6) is \Deleted (Fixtures).
			o := script(t, w, "a SELECT \"$PKeep\"\n!wait a\nb COPY 6 \"$PLegal\"\n")
			if ids := newDeleted(w, o, "Legal"); len(ids) > 0 {
				t.Errorf("COPY %s: Legal gained \\Deleted messages %v; the policy saw no mark-deleted (records: %s)",
					status(o, "b"), ids, recSummary(o, "b"))
			}
		})
		t.Run("rename", func(t *testing.T) {
			w := e.Worker(t, 0)
			// RENAME moves Keep, \Deleted message 6 with it, to a name
			// under Legal: held from then on (legal_hold's mailbox_under).
			o := script(t, w, "a RENAME \"$PKeep\" \"$PLegal$DKept\"\n")
			c := w.B.Canonical("Legal/Kept")
			if b := o.After.Boxes[c]; b != nil && status(o, "a") == "OK" {
				for uid, fl := range b.Msgs {
					if strings.Contains(fl, `\Deleted`) {
						t.Errorf("RENAME OK: held %q holds \\Deleted message %d; the policy saw no mark-deleted (records: %s)",
							c, uid, recSummary(o, "a"))
					}
				}
			}
		})
	})
}

func recSummary(o *Outcome, tag string) string {
	var parts []string
	for _, r := range o.Recs {
		if r.Tag == tag && (r.Kind == audit.KindCommand || r.Kind == audit.KindPolicyDeny) {
			parts = append(parts, fmt.Sprintf("%s %s %q dest %q", r.Kind, r.Command, r.Mailbox, r.Destination))
		}
	}
	return strings.Join(parts, "; ")
}
