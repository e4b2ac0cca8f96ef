package proxy

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
)

// TestHeldCommandLeavesBeforeWait: a forwarded command the client pump
// holds back for the one pipelined behind it (flushUnlessPipelined)
// reaches the backend whatever the pump does next: it answers that one
// itself (a grammar BAD, a policy NO, a limit NO, behind a LOGOUT), waits
// for room under MaxInflight, for a barrier, for a literal's "+" (its own
// or the backend's), drains, or ends the session (ARCHITECTURE.md §5).
// Each script is one write, so that the held command's answer can come
// only from a flush the pump makes itself; before the fix the client
// waited for it until the idle limit.
func TestHeldCommandLeavesBeforeWait(t *testing.T) {
	var (
		mu      sync.Mutex
		entered = make(chan struct{}, 1)
		release = make(chan struct{})
		written bytes.Buffer // what the relay sent the backend, all sessions
	)
	h := newHarness(t, func(o *Options) {
		o.Limits.MaxInflight = 2
		// Every NOOP is over its limit (fakeLimiter allows two).
		o.Limiter = &fakeLimiter{failures: map[string]int{}, noops: 2}
		o.Decider = funcDecider(func(in *DecisionInput) Decision {
			if in.Point != PointCommand {
				return Decision{Allow: true}
			}
			switch {
			case in.Command.Name == "DELETE" && in.Command.Mailbox == "stall":
				// Held until the test has asked the session to end.
				entered <- struct{}{}
				<-release
				return Decision{Code: "NOPERM", Reason: "not this one"}
			case in.Command.Name == "DELETE":
				return Decision{Code: "NOPERM", Reason: "not this one"}
			case in.Command.Name == "RENAME":
				return Decision{Disconnect: true, Code: "NOPERM", Reason: "goodbye"}
			}
			return Decision{Allow: true}
		})
		o.wrapBackend = func(c net.Conn) net.Conn { return &recordingConn{Conn: c, mu: &mu, w: &written} }
	})
	login := func(t *testing.T) *tconn {
		c := h.login()
		c.t = t // fails the subtest, not the test
		return c
	}
	const held = "h STATUS INBOX (MESSAGES)\r\n"
	msg := testMessage(7)
	for _, c := range []struct {
		name, script string
		want         map[string]string // tag: the start of its completion
	}{
		{"bad", held + "b FETCH 1 (FLAGS)\r\n", map[string]string{"h": "OK", "b": "BAD"}},
		{"policy", held + "b DELETE Trash\r\n", map[string]string{"h": "OK", "b": "NO [NOPERM]"}},
		{"limit", held + "b NOOP\r\n", map[string]string{"h": "OK", "b": "NO [LIMIT]"}},
		{"logout", "t1 LOGOUT\r\nt2 FETCH 1 (FLAGS)\r\n", map[string]string{"t1": "OK", "t2": "BAD"}},
		{"maxinflight", held + "h2 STATUS INBOX (UIDNEXT)\r\nh3 STATUS INBOX (UNSEEN)\r\n", map[string]string{"h": "OK", "h2": "OK", "h3": "OK"}},
		{"barrier", held + "s SELECT INBOX\r\nf FETCH 1 (FLAGS)\r\n", map[string]string{"h": "OK", "s": "OK", "f": "OK"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl := login(t)
			cl.sendRaw(c.script)
			cl.completions(c.want)
		})
	}
	// A literal whose "+" the proxy gives (judged before the backend sees
	// the command), and one whose "+" the backend gives (a message).
	t.Run("own-continuation", func(t *testing.T) {
		cl := login(t)
		cl.sendRaw(held + "s SELECT {5}\r\n")
		cl.completions(map[string]string{"h": "OK", "+": ""})
		cl.sendRaw("INBOX\r\n")
		cl.completions(map[string]string{"s": "OK"})
	})
	t.Run("backend-continuation", func(t *testing.T) {
		cl := login(t)
		cl.sendRaw(held + fmt.Sprintf("a APPEND INBOX {%d}\r\n", len(msg)))
		cl.completions(map[string]string{"h": "OK", "+": ""})
		cl.sendRaw(msg + "\r\n")
		cl.completions(map[string]string{"a": "OK"})
	})
	// Asked to end while it decides on the command behind the held one:
	// the drain waits for the held one's answer, which must be sent.
	t.Run("drain", func(t *testing.T) {
		cl := login(t)
		id := h.sessionOf(cl)
		cl.sendRaw(held + "b DELETE stall\r\n")
		<-entered
		if !h.srv.EndSession(id) {
			t.Fatal("EndSession")
		}
		close(release)
		cl.completions(map[string]string{"h": "OK", "b": "NO"})
		cl.expectClosed("* BYE [UNAVAILABLE]")
	})
	// A policy's disconnect ends the session behind a held CREATE: the
	// backend still gets it, as it would have one write later. It is
	// sent before the client's connection is closed (Session.endRelay);
	// its answer may reach the client before the close.
	t.Run("end", func(t *testing.T) {
		cl := login(t)
		cl.sendRaw("h CREATE Held\r\nb RENAME INBOX Other\r\n")
		cl.expect("* BYE [NOPERM]")
		cl.readToClose()
		mu.Lock()
		defer mu.Unlock()
		if !strings.Contains(written.String(), "h CREATE Held\r\n") {
			t.Errorf("the backend never got the CREATE held behind the refused RENAME")
		}
	})
}

// recordingConn keeps a copy of what is written to it.
type recordingConn struct {
	net.Conn
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.w.Write(p)
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// completions reads until every tag of want has completed (a tag "+": a
// continuation request) and checks how each began, in any order.
func (c *tconn) completions(want map[string]string) {
	c.t.Helper()
	left := len(want)
	for left > 0 {
		l := c.line()
		tag, rest, _ := strings.Cut(l, " ")
		w, ok := want[tag]
		if !ok {
			continue // untagged data
		}
		if !strings.HasPrefix(rest, w) {
			c.t.Fatalf("%s completed %q, want %q", tag, l, w)
		}
		delete(want, tag)
		left--
	}
}

// sessionOf returns the ID of c's session.
func (h *harness) sessionOf(c *tconn) string {
	h.t.Helper()
	for _, snap := range h.srv.Sessions() {
		if snap.Client == c.c.LocalAddr().String() {
			return snap.ID
		}
	}
	h.t.Fatalf("no session of %s", c.c.LocalAddr())
	return ""
}
