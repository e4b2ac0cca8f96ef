package proxy

import (
	"fmt"
	"net"
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
