package difftest

import (
	"slices"
	"testing"

	"github.com/imapwarden/imapwarden/audit"
)

// TestAuditNamesExpungedMessages (attack46a): the trail is "who read or
// changed which mailbox and which messages" (audit/README.md), and its
// FETCH records name the UIDs read, but an EXPUNGE or a CLOSE, which
// destroy messages, names none: no set, no UIDs, though the backend says
// which went (* n EXPUNGE, RFC 9051 §7.5.1; the proxy adds the UID item to
// a FETCH for this very reason, ARCHITECTURE.md §7). Victim's last message
// is \Deleted: the backend's own state shows which UID went; the record of
// the command that destroyed it must name it.
func TestAuditNamesExpungedMessages(t *testing.T) {
	Binary(t)
	for _, name := range Backends {
		t.Run(name, func(t *testing.T) {
			b := StartBackend(t, name)
			b.Setup(t, "alice")
			w := newEnv(t, b, StartProxy(t, ProxyFor(b)), "alice", &received{octets: map[string]int64{}, msgs: map[string]int64{}})
			for _, cmd := range []string{"EXPUNGE", "CLOSE"} {
				o := script(t, w, "a SELECT \"$PVictim\"\nb "+cmd+"\n")
				wantStatus(t, o, "b", "OK")
				var gone []uint32
				for _, c := range Diff(o.Before, o.After) {
					if c.Kind == MsgRemoved && c.Box == b.Canonical("Victim") {
						gone = append(gone, c.UID)
					}
				}
				if len(gone) == 0 {
					t.Fatalf("%s: the backend expunged nothing", cmd)
				}
				for _, r := range o.Recs {
					if r.Tag != "b" || r.Kind != audit.KindCommand {
						continue
					}
					for _, u := range gone {
						if !slices.Contains(r.UIDs, u) {
							t.Errorf("%s destroyed UID %d of %q (the backend's state); its record names uids %v, set %q: the trail cannot say which message went", cmd, u, r.Selected, r.UIDs, r.Set)
						}
					}
				}
			}
		})
	}
}
