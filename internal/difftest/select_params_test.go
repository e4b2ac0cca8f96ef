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
// state after the backend's BAD is the backend's (§8). Courier answers the
// line NO and deselects: three backends, three readings.
func TestBadSelectLeavesStateAsBackendHasIt(t *testing.T) {
	Binary(t)
	for _, name := range Backends {
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
			// What the backend did with b decides what c meets there: the
			// same three lines sent to the backend directly show whether
			// it still has a mailbox selected (Dovecot: Keep, Cyrus:
			// Victim, Courier: none).
			direct := b.Login(t, "alice")
			defer direct.Close()
			var want string
			for _, l := range []string{`a SELECT "` + b.Wire("Victim") + `"`, `b EXAMINE "` + b.Wire("Keep") + `" ()`, `c FETCH 1 (FLAGS)`} {
				tag := l[:1]
				rs, err := direct.Cmd(tag, "%s", l[2:])
				if err != nil {
					t.Fatal(err)
				}
				want = rs[len(rs)-1].Status
			}
			if got := status(o, "c"); (got == "OK") != (want == "OK") {
				t.Errorf("b %q was forwarded and answered %q by %s; c then got %q from the backend directly but %q (%q) through the proxy: the proxy's session state is not the backend's",
					`EXAMINE "...Keep" ()`, status(o, "b"), name, want, got, o.Done["c"].Text)
			}
			if want != "OK" {
				return
			}
			for _, r := range o.Recs {
				if r.Tag == "c" && r.Kind == audit.KindCommand && r.Selected == "" {
					t.Errorf("c recorded with no mailbox selected; the backend had one")
				}
			}
		})
	}
}

// TestEmptyAndRepeatedParams runs every step of paramsCase (empty,
// repeated and malformed optional parameter lists of SELECT, EXAMINE,
// FETCH, STORE, SEARCH, LIST, GETMETADATA, CREATE, NOTIFY) on each
// backend: what the backend did must be what the proxy decided and
// audited (check.go), and no such line reaches a backend that reads it
// otherwise (ARCHITECTURE.md §7).
func TestEmptyAndRepeatedParams(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *Env) {
		w := e.Worker(t, 0)
		for _, st := range NewGen(e.B, 1).paramsCase().Steps {
			_, probs := w.Run(st)
			for _, p := range probs {
				t.Errorf("%s: %s", st.Label, p)
			}
		}
	})
}
