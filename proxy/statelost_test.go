package proxy

import (
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
)

// TestUnknownStateEndsSession: a state-changing command (a barrier)
// answered BAD, or NO where its RFC defines no NO, leaves the session in
// a state the proxy does not know: Cyrus keeps its mailbox selected
// read-write after "BAD" to "EXAMINE box ()", Dovecot deselects
// (internal/difftest TestBadSelectLeavesStateAsBackendHasIt). The client
// gets the answer, then BYE; the command pipelined behind it never
// reaches the backend; the audit says why (ARCHITECTURE.md §8).
func TestUnknownStateEndsSession(t *testing.T) {
	cases := []struct {
		name, cmd, answer string
		ends              bool
		after             string // c's answer when the session goes on
		untagged          string // sent before the answer
	}{
		{"EXAMINE answered BAD", "b EXAMINE Keep", "BAD Invalid modifier list", true, "", ""},
		{"SELECT answered BAD", "b SELECT Keep", "BAD what", true, "", ""},
		{"CLOSE answered NO", "b CLOSE", "NO cannot", true, "", ""},
		{"CLOSE answered BAD", "b CLOSE", "BAD cannot", true, "", ""},
		{"UNSELECT answered NO", "b UNSELECT", "NO cannot", true, "", ""},
		{"ENABLE answered BAD", "b ENABLE QRESYNC", "BAD cannot", true, "", ""},
		{"ENABLE answered NO", "b ENABLE QRESYNC", "NO cannot", true, "", ""},
		// RFC 5161 §3.1: what the backend enabled is what its ENABLED
		// names. An extension the proxy does not read (hidden from the
		// client's CAPABILITY, so not one it may enable) changes the
		// responses it relays: RFC 9586's UIDONLY turns FETCH into
		// UIDFETCH.
		{"ENABLE turning on an extension the proxy does not read", "b ENABLE UIDONLY", "OK enabled", true, "", "* ENABLED UIDONLY"},
		{"ENABLE turning on an unknown extension among known ones", "b ENABLE CONDSTORE X-NEW", "OK enabled", true, "", "* ENABLED CONDSTORE X-NEW"},
		{"ENABLE of an unknown extension the backend ignores", "b ENABLE X-NEW", "OK enabled", false, "c OK", "* ENABLED"},
		{"ENABLE of an extension the proxy reads", "b ENABLE CONDSTORE", "OK enabled", false, "c OK", "* ENABLED CONDSTORE"},
		{"DELETE of the selected mailbox answered BAD", "b DELETE Victim", "BAD cannot", true, "", ""},
		// RFC 9051 §6.3.2: a failed SELECT leaves no mailbox selected.
		{"EXAMINE answered NO", "b EXAMINE Keep", "NO no such mailbox", false, "c BAD", ""},
		{"DELETE of the selected mailbox answered NO", "b DELETE Victim", "NO cannot", false, "c OK", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			verb := strings.Fields(tc.cmd)[1]
			var fetched atomic.Bool
			b := startScripted(t, func(c net.Conn, tag, line string) {
				switch {
				case strings.HasPrefix(line, "SELECT Victim"):
					fmt.Fprintf(c, "* 2 EXISTS\r\n%s OK [READ-WRITE] done\r\n", tag)
				case strings.HasPrefix(line, verb):
					if tc.untagged != "" {
						fmt.Fprintf(c, "%s\r\n", tc.untagged)
					}
					fmt.Fprintf(c, "%s %s\r\n", tag, tc.answer)
				case strings.HasPrefix(line, "FETCH"):
					fetched.Store(true)
					fmt.Fprintf(c, "* 1 FETCH (FLAGS ())\r\n%s OK done\r\n", tag)
				default:
					fmt.Fprintf(c, "%s OK fine\r\n", tag)
				}
			})
			b.caps = " UNSELECT ENABLE QRESYNC CONDSTORE"
			h := newHarness(t, func(o *Options) {
				o.Router = &StaticRouter{Default: &Backend{Name: "scripted", Addr: b.ln.Addr().String(), Security: BackendPlain, Login: LoginCommand}}
			})
			c := h.login()
			c.transact("a SELECT Victim", "a OK")
			// One write: c is read only once b completed.
			c.sendRaw(tc.cmd + "\r\nc FETCH 1 (FLAGS)\r\n")
			c.expectTagged("b", "b "+tc.answer)
			if !tc.ends {
				c.expectTagged("c", tc.after)
				if fetched.Load() != (tc.after == "c OK") {
					t.Fatalf("FETCH reached the backend: %v", fetched.Load())
				}
				return
			}
			c.expectClosed("* BYE [SERVERBUG]")
			if fetched.Load() {
				t.Fatal("the FETCH pipelined after it reached the backend")
			}
			waitFor(t, func() bool { return h.audit.hasSecurity("state-unknown") })
			waitFor(t, func() bool {
				h.audit.mu.Lock()
				defer h.audit.mu.Unlock()
				return len(h.audit.closes) == 1 && h.audit.closes[0].Reason == CloseStateUnknown
			})
			h.audit.mu.Lock()
			defer h.audit.mu.Unlock()
			for _, e := range h.audit.commands {
				if e.Command.Tag == "b" && e.Result != strings.Fields(tc.answer)[0] {
					t.Errorf("b recorded with result %q", e.Result)
				}
			}
		})
	}
}
