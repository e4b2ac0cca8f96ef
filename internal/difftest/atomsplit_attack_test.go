package difftest

import (
	"fmt"
	"testing"

	"github.com/imapwarden/imapwarden/internal/couriertest"
)

// TestAttackAtomCourierSplitsForwarded: RFC 9051 lets "[", "]", "}" and
// "~" stand in an atom (ASTRING-CHAR = ATOM-CHAR / resp-specials; none is
// an atom-special), and the proxy forwards mailbox names and flags spelled
// with them. Courier's tokenizer ends an atom at each of them
// (imaptoken.c: "[", "]", "{", "}" and "~" stop the atom, "~" starts a
// literal8): "DELETE INBOX.Legal]" is to Courier DELETE of INBOX.Legal
// followed by a stray "]" token, to the proxy DELETE of a mailbox named
// "INBOX.Legal]", which no policy protects. Courier refuses the stray
// token today ("NO Error in IMAP command received by server."), but the
// command the proxy judged is not the one the backend read: input with
// more than one reading must get BAD from the proxy, never reach a
// backend (ARCHITECTURE.md §7, one reading).
func TestAttackAtomCourierSplitsForwarded(t *testing.T) {
	couriertest.Require(t)
	Binary(t)
	w := StartEnv(t, "courier").Worker(t, 0)
	for _, c := range []string{"]", "[", "}", "~"} {
		for _, s := range []string{
			"m DELETE $PLegal" + c + "\n",
			"m RENAME $PVictim $PLegal" + c + "\n",
			"m CREATE $PNew" + c + "\n",
			"m SUBSCRIBE $PVictim" + c + "\n",
			"s SELECT $PVictim\n!wait s\nm STORE 1:* +FLAGS (\\Deleted" + c + ")\n",
		} {
			o := script(t, w, s)
			if got := status(o, "m"); got != "BAD" {
				text := ""
				if r := o.Done["m"]; r != nil {
					text = r.Text
				}
				t.Errorf("%q: the proxy forwarded an atom Courier splits at %q: %s", s, c, text)
			}
		}
	}
}

// TestQuotedSplitCharsDifferential: quoted, a name with "[", "]", "}" or
// "~" is one name to every backend, and the proxy relays it: only the
// unquoted word has two readings (ARCHITECTURE.md §7).
func TestQuotedSplitCharsDifferential(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *Env) {
		w := e.Worker(t, 0)
		for i, c := range []string{"]", "[", "}", "~"} {
			box := fmt.Sprintf("$PQ%d%sx", i, c)
			// One command a step, each from the same mailboxes: the
			// harness holds what the backend did to what the proxy
			// decided; the answer is the backend's (one may refuse some
			// of these names), never the proxy's BAD.
			for _, cmd := range []string{"CREATE", "SELECT", "DELETE", "SUBSCRIBE"} {
				o := script(t, w, "m "+cmd+" \""+box+"\"\n")
				if st := status(o, "m"); st != "OK" && st != "NO" {
					t.Errorf("%s %q: %q, want the backend's OK or NO", cmd, box, st)
				}
			}
		}
	})
}
