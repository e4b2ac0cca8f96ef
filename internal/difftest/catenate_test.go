package difftest

import (
	"slices"
	"testing"
)

// TestCatenateURLSourceIsRead: APPEND ... CATENATE (URL ...) (RFC 4469 §3)
// copies a message of another mailbox, here the held Legal, into Keep: the
// command reads Legal. Its record names Legal as a source with a
// read-content effect, as the decision input does (policy TestInputNamesEveryMailbox),
// so that a policy can refuse reading Legal this way and the trail says it
// was read (attack40 finding 4: the URL was counted, not parsed). URLs the
// proxy cannot read as one mailbox of this server get BAD and never reach
// the backend.
func TestCatenateURLSourceIsRead(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *Env) {
		if !e.B.Caps["CATENATE"] {
			t.Skipf("%s has no CATENATE (RFC 4469)", e.B.Name)
		}
		w := e.Worker(t, 0)
		o := script(t, w, "a APPEND \"$PKeep\" CATENATE (URL \"/$PLegal/;UID=1\")\n")
		wantStatus(t, o, "a", "OK")
		legal := w.B.Canonical("Legal")
		found := false
		for _, r := range o.Recs {
			if r.Tag != "a" {
				continue
			}
			found = true
			if !hasEffect(r, "read-content") || !slices.Equal(r.Sources, []string{legal}) {
				t.Errorf("APPEND CATENATE copied %s's UID 1; its record (mailbox %q, effects %v, sources %q) names no read of it", legal, r.Mailbox, r.Effects, r.Sources)
			}
		}
		if !found {
			t.Error("no record of a")
		}
		for _, u := range []string{
			"imap://alice@127.0.0.1/$PLegal/;UID=1",                 // absolute: another server, or this one by a name
			"/$PLegal/;UID=1;URLAUTH=anonymous:internal:0123456789", // URLAUTH (RFC 4467): not checkable here
			"/$PLegal",         // a mailbox, not a message
			"/$PLegal;UID=1",   // no "/" before ;UID=
			"/Le%2Fgal/;UID=1", // an encoded separator
		} {
			o := script(t, w, "b APPEND \"$PKeep\" CATENATE (URL \""+u+"\")\n")
			refused(t, o, "b")
			kept(t, w, o, "Keep")
			if n, m := len(o.After.Boxes[w.B.Canonical("Keep")].Msgs), len(o.Before.Boxes[w.B.Canonical("Keep")].Msgs); n != m {
				t.Errorf("%s: Keep holds %d messages, held %d", u, n, m)
			}
		}
	})
}
