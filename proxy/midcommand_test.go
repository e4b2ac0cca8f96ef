package proxy

import (
	"net"
	"testing"

	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// TestRefusedMidCommandRecord: a part read after a streamed literal adds
// effects (a vendor SETMETADATA entry after a streamed value), and the
// policy refuses it while the backend holds the command's start
// (clientPump.redecide). No tagged NO can answer it: the client hears BYE
// and the command is aborted. The trail says so: the refusal is recorded
// as answered by BYE, with the close reason refused-mid-command (the
// session's close reason too), and the aborted command gets no second
// record claiming the session ended before the backend answered it.
func TestRefusedMidCommandRecord(t *testing.T) {
	got := make(chan string, 4)
	b := &scriptedBackend{caps: " METADATA", script: func(c net.Conn, tag, line string) {
		got <- line // the command's start at most: it is aborted
	}}
	b.ln = serveEach(t, b.serve)
	h := newHarness(t, func(o *Options) {
		o.Router = &StaticRouter{Default: &Backend{Name: "scripted", Addr: b.ln.Addr().String(), Security: BackendPlain, Login: LoginCommand}}
		o.Decider = funcDecider(func(in *DecisionInput) Decision {
			if in.Point == PointCommand && in.Command.Name == "SETMETADATA" && in.Command.Effects.Has(imapwire.EffExpunge) {
				return Decision{Reason: "mailbox on hold", Code: "NOPERM"}
			}
			return Decision{Allow: true}
		})
	})
	c := h.login()
	c.sendRaw("s SETMETADATA box (/private/comment {3+}\r\nabc /shared/vendor/cmu/cyrus-imapd/expire \"1\")\r\n")
	c.expectClosed("* BYE [NOPERM] mailbox on hold")
	waitClosed(t, h.audit, 1)
	// The start of the command, if it left the write buffer before the
	// reset; never its end.
	select {
	case l := <-got:
		if l != "SETMETADATA box (/private/comment {3+}" {
			t.Errorf("the backend got %q", l)
		}
	default:
	}
	a := h.audit
	a.mu.Lock()
	defer a.mu.Unlock()
	var recs []CommandEvent
	for _, e := range a.commands {
		if e.Command.Tag == "s" {
			recs = append(recs, e)
		}
	}
	if len(recs) != 1 {
		t.Fatalf("%d records of the aborted command, want 1: %+v", len(recs), recs)
	}
	e := recs[0]
	if !e.Denied || e.Result != "BYE" || e.Code != "NOPERM" || e.Close != CloseRefusedMidCommand ||
		e.Decision == nil || !e.Decision.Disconnect || e.Decision.Reason != "mailbox on hold" {
		t.Errorf("record: denied %v, result %q, code %q, close %v, decision %+v; want a refusal answered by BYE (refused-mid-command)",
			e.Denied, e.Result, e.Code, e.Close, e.Decision)
	}
	if r := a.closes[0].Reason; r != CloseRefusedMidCommand {
		t.Errorf("session closed as %q", r)
	}
}
