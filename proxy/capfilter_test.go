package proxy

import (
	"fmt"
	"net"
	"testing"
)

// Capability lists the backend sends after login, untagged or in a
// completion's response code, reach the client without what the proxy
// owns or cannot relay (ARCHITECTURE.md §7), filtered from the line's one
// parse (backendPump.filterCaps).
func TestRelayFiltersCapabilities(t *testing.T) {
	h := scriptedHarness(t, func(c net.Conn, tag, line string) {
		fmt.Fprintf(c, "* CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN IDLE\r\n%s OK [CAPABILITY IMAP4rev1 LOGINDISABLED IDLE SASL-IR] done\r\n", tag)
	})
	c := h.login()
	c.send("n1 NOOP")
	if got, want := c.line(), "* CAPABILITY IMAP4rev1 IDLE COMPRESS=DEFLATE"; got != want {
		t.Errorf("untagged: got %q, want %q", got, want)
	}
	if got, want := c.line(), "n1 OK [CAPABILITY IMAP4rev1 IDLE] done"; got != want {
		t.Errorf("completion: got %q, want %q", got, want)
	}
	c.transact("z LOGOUT", "z OK")
}
