package difftest

import (
	"testing"
)

// TestAttackForwardedCommandHeldBehindRefusal: a command the proxy
// forwards is held back in its write buffer while the client has more
// pipelined (clientPump.flushUnlessPipelined), but when what follows is a
// command the proxy answers itself (a grammar BAD, a policy NO), nothing
// flushes it: the client waits for an answer that never comes until it
// sends something else (found by TestAttackGeneratedState: a LOGOUT
// pipelined before commands refused in the authenticated state). Each
// script waits for the forwarded command's completion before sending more.
func TestAttackForwardedCommandHeldBehindRefusal(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *Env) {
		w := e.Worker(t, 0)
		for _, s := range []struct{ script, tag string }{
			// BAD from the proxy's grammar: no mailbox selected.
			{"a NOOP\nb FETCH 1 (FLAGS)\n!wait a\nc NOOP\n", "a"},
			// LOGOUT, as the generator found it.
			{"t1 LOGOUT\nt2 FETCH 1 (FLAGS)\n!wait t1\nt3 NOOP\n", "t1"},
			// NO from legal_hold behind a FETCH of the held mailbox.
			{"s SELECT \"$PLegal\"\n!wait s\nb FETCH 1 (FLAGS)\nc EXPUNGE\n!wait b\nd NOOP\n", "b"},
		} {
			o := script(t, w, s.script)
			if o.Stuck != nil {
				t.Errorf("%q: the client never got %s's answer: %v", s.script, s.tag, o.Stuck)
				continue
			}
			wantStatus(t, o, s.tag, "OK")
		}
	})
}
