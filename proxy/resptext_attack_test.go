package proxy

import (
	"fmt"
	"net"
	"strings"
	"testing"
)

// TestAttackRespTextEndingInBracesKeepsSession: "{...}" at the end of a
// status response or a continuation request is resp-text, never a literal
// (RFC 9051 §7.1, §9: resp-text = ["[" resp-text-code "]" SP] [text], and
// text may hold "{" and "}"). The relay knows it for a well-formed marker
// ("{5}": Response.MayHaveLiteral, IgnoreLiteral), but a brace group that
// is no valid marker ("{x}", "{}", more than 19 digits) makes
// Scanner.ReadLinePart return a marker SyntaxError, which the backend
// pump takes for a lost backend: the session ends with BYE [UNAVAILABLE]
// on a response a backend may legally send. Servers echo names a client
// gave (Dovecot: "NO Mailbox doesn't exist: NAME"), so text ending so is a
// way to have any session cut; the reply must reach the client and the
// session go on.
func TestAttackRespTextEndingInBracesKeepsSession(t *testing.T) {
	for _, text := range []string{
		"Mailbox doesn't exist: x{y}",
		"Mailbox doesn't exist: x{}",
		"Mailbox doesn't exist: x{99999999999999999999}",
		"Mailbox doesn't exist: x{5}", // a valid marker: relayed as text today
	} {
		t.Run(text, func(t *testing.T) {
			h := scriptedHarness(t, func(c net.Conn, tag, line string) {
				switch line {
				case "NOOP":
					fmt.Fprintf(c, "* NO %s\r\n%s NO %s\r\n", text, tag, text)
				default:
					fmt.Fprintf(c, "%s OK fine\r\n", tag)
				}
			})
			c := h.login()
			c.send("a1 NOOP")
			if l := c.line(); l != "* NO "+text {
				t.Fatalf("untagged reply: got %q, want %q", l, "* NO "+text)
			}
			if l := c.line(); l != "a1 NO "+text {
				t.Fatalf("tagged reply: got %q, want %q", l, "a1 NO "+text)
			}
			c.transact("a2 CHECK", "a2 BAD") // the session goes on
		})
	}
}

// The same at login and for "+": the greeting and the LOGIN reply are
// status responses, a continuation request is resp-text too (RFC 9051
// §7.1, §7.6), so text ending in a brace group of any content neither
// fails the login nor ends the session; one longer than a read buffer
// ends in a later piece of the line (backendPump.readRest).
func TestRespTextEndingInBracesAtLoginAndContinuation(t *testing.T) {
	for _, end := range []string{"x{y}", "x{}", "x{99999999999999999999}", "x{5}"} {
		t.Run(end, func(t *testing.T) {
			long := strings.Repeat("x", 70000) + end
			b := &scriptedBackend{greet: "hi " + end, in: "in " + end}
			b.script = func(c net.Conn, tag, line string) {
				switch line {
				case "IDLE":
					fmt.Fprintf(c, "+ idling %s\r\n", end)
				case "": // DONE, read as a tag
					fmt.Fprintf(c, "a1 OK idled %s\r\n", end)
				case "NOOP":
					fmt.Fprintf(c, "* OK %s\r\n%s OK %s\r\n", long, tag, long)
				default:
					fmt.Fprintf(c, "%s OK fine\r\n", tag)
				}
			}
			b.start(t)
			h := newHarness(t, func(o *Options) {
				o.Router = &StaticRouter{Default: &Backend{Name: "scripted", Addr: b.ln.Addr().String(), Security: BackendPlain, Login: LoginCommand}}
			})
			c := h.login()
			exact := func(want string) {
				t.Helper()
				if l := c.line(); l != want {
					t.Fatalf("got %.80q, want %.80q", l, want)
				}
			}
			c.send("a1 IDLE")
			exact("+ idling " + end)
			c.sendRaw("DONE\r\n")
			exact("a1 OK idled " + end)
			c.send("a2 NOOP")
			exact("* OK " + long)
			exact("a2 OK " + long)
			c.transact("a3 CHECK", "a3 BAD") // the session goes on
		})
	}
}
