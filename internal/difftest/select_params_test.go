package difftest

import (
	"testing"

	"github.com/imapwarden/imapwarden/audit"
)

// TestBadSelectLeavesStateAsBackendHasIt (attack46a): an EXAMINE or SELECT
// with an empty select-params list, "EXAMINE mailbox ()", has two readings:
// RFC 4466 §2.1 requires at least one select-param, Dovecot opens the
// mailbox (OK), Cyrus answers BAD "Invalid modifier list" and keeps the
// mailbox selected before it, read-write. The proxy forwards it and, on
// any non-OK completion, takes no mailbox as selected (backendPump.completed),
// so its reading of the session's state is no longer the backend's: the
// backend still has Victim open read-write while the proxy refuses every
// command of the selected state and records none as selected. Either the
// proxy refuses the line itself (one reading, ARCHITECTURE.md §7), or its
// state after the backend's BAD is the backend's (§8).
func TestBadSelectLeavesStateAsBackendHasIt(t *testing.T) {
	Binary(t)
	for _, name := range []string{"cyrus", "dovecot"} {
		t.Run(name, func(t *testing.T) {
			b := StartBackend(t, name)
			b.Setup(t, "alice")
			w := newEnv(t, b, StartProxy(t, ProxyFor(b)), "alice", &received{octets: map[string]int64{}, msgs: map[string]int64{}})
			o := script(t, w, "a SELECT \"$PVictim\"\nb EXAMINE \"$PKeep\" ()\nc FETCH 1 (FLAGS)\n")
			wantStatus(t, o, "a", "OK")
			forwarded := false
			for _, r := range o.Recs {
				if r.Tag == "b" && r.Kind == audit.KindCommand {
					forwarded = true
				}
			}
			if !forwarded {
				return // refused by the proxy: one reading
			}
			// What the backend did with b decides what c meets there: a
			// mailbox is selected either way (Victim read-write after
			// Cyrus's BAD, Keep after Dovecot's OK), so c must reach it.
			if st := status(o, "c"); st != "OK" {
				t.Errorf("b %q was forwarded and answered %q by %s, which keeps a mailbox selected; the proxy then answered c %q (%q): its session state is not the backend's",
					"EXAMINE \"...Keep\" ()", status(o, "b"), name, st, o.Done["c"].Text)
			}
			for _, r := range o.Recs {
				if r.Tag == "c" && r.Kind == audit.KindCommand && r.Selected == "" {
					t.Errorf("c recorded with no mailbox selected; the backend had one")
				}
			}
		})
	}
}
