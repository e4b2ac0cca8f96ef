package proxy

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// A FETCH response the tracker cannot read never means "no content"
// (ARCHITECTURE.md §12): a scripted backend sends each way the tracker
// gives up. Given up before any of the response reached the client writer
// (not yet read, or held back while a charge may be refused): none of it
// goes out, the session ends with BYE [UNAVAILABLE] and a
// backend-protocol-error record. Given up after part of it was streamed
// (a literal longer than what is held back): the rest is charged to the
// cap and counted in the FETCH's record (its UID named), and the session
// ends after the response.
func TestUnreadableFetchFailsClosed(t *testing.T) {
	const secret = "SECRETBODY"
	const big = 70 << 10 // streamed: more than the client writer holds back
	body := strings.Repeat("b", big)
	hundred := strings.Repeat("x", 100)
	cases := []struct {
		name, resp string
		sent       bool  // part of the response goes out before the tracker gives up
		charged    int64 // at least, when sent
	}{
		{"unbalanced [ in a section", "* 1 FETCH (UID 5 BODY[HEADER.FIELDS (X[Y)] {2}\r\nab BODY[] {10}\r\n" + secret + ")\r\n", false, 0},
		{"] closing a section early", "* 1 FETCH (UID 5 BODY[HEADER.FIELDS (X] FROM)] {2}\r\nab BODY[] {10}\r\n" + secret + ")\r\n", false, 0},
		{"no attribute list", "* 1 FETCH UID 5 {10}\r\n" + secret + "\r\n", false, 0},
		{"empty item name", "* 1 FETCH (UID 5  BODY[] {10}\r\n" + secret + ")\r\n", false, 0},
		{"no value", "* 1 FETCH (UID 5 FLAGS  BODY[] {10}\r\n" + secret + ")\r\n", false, 0},
		{"bytes after a string", "* 1 FETCH (UID 5 X \"a\"b BODY[] {10}\r\n" + secret + ")\r\n", false, 0},
		{"bytes after the list", "* 1 FETCH (UID 5) BODY[] {10}\r\n" + secret + "\r\n", false, 0},
		{"literal after an atom", "* 1 FETCH (UID 5 X a{10}\r\n" + secret + ")\r\n", false, 0},
		{"literal in a name", "* 1 FETCH (UID 5 X{10}\r\n" + secret + ")\r\n", false, 0},
		{"literal in a quoted header name", "* 1 FETCH (UID 5 BODY[HEADER.FIELDS (\"X{10}\r\n" + secret + "\")] NIL)\r\n", false, 0},
		{"literal in a quoted value", "* 1 FETCH (UID 5 X \"ab{10}\r\n" + secret + "\")\r\n", false, 0},
		{"unbalanced [ after held content", "* 1 FETCH (UID 5 BODY[] {10}\r\n" + secret + " X[ {100}\r\n" + hundred + ")\r\n", false, 0},
		{"unbalanced [ after content", fmt.Sprintf("* 1 FETCH (UID 5 BODY[] {%d}\r\n%s X[ {100}\r\n%s)\r\n", big, body, hundred), true, big + 100},
		{"line ends after a literal", fmt.Sprintf("* 1 FETCH (UID 5 BODY[] {%d}\r\n%s\r\n", big, body), true, big},
		{"list cut by the line's end", fmt.Sprintf("* 1 FETCH (UID 5 BODY[] {%d}\r\n%s FLAGS (\\Seen\r\n", big, body), true, big},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fl := &fakeLimiter{failures: map[string]int{}}
			h := scriptedHarness(t, func(c net.Conn, tag, line string) {
				switch {
				case strings.HasPrefix(line, "SELECT "):
					fmt.Fprintf(c, "* 1 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n%s OK [READ-WRITE] done\r\n", tag)
				case strings.HasPrefix(line, "UID FETCH "):
					fmt.Fprintf(c, "%s%s OK done\r\n", tc.resp, tag)
				default:
					fmt.Fprintf(c, "%s OK fine\r\n", tag)
				}
			}, func(o *Options) { o.Limiter = fl })
			c := h.login()
			c.transact("s SELECT INBOX", "s OK")
			c.send("f UID FETCH 5 (BODY.PEEK[])")
			c.c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
			rest, err := io.ReadAll(c.br)
			if err != nil {
				t.Fatalf("read: %v (got %q)", err, rest)
			}
			got := string(rest)
			if !strings.HasSuffix(got, "* BYE [UNAVAILABLE] Backend error\r\n") || strings.Contains(got, "f OK") {
				t.Fatalf("the client got %q: want the session ended with BYE [UNAVAILABLE]", got)
			}
			if !tc.sent && (strings.Contains(got, secret) || strings.Contains(got, "FETCH")) || tc.sent && !strings.Contains(got, body) {
				t.Fatalf("the client got %d octets: want none of the response, or its first literal", len(got))
			}
			waitFor(t, func() bool { return h.audit.hasSecurity("backend-protocol-error") })
			var rec *CommandEvent
			waitFor(t, func() bool {
				h.audit.mu.Lock()
				defer h.audit.mu.Unlock()
				for k := range h.audit.commands {
					if h.audit.commands[k].Command.Tag == "f" {
						rec = &h.audit.commands[k]
					}
				}
				return rec != nil
			})
			h.audit.mu.Lock()
			r := *rec
			h.audit.mu.Unlock()
			fl.mu.Lock()
			charged := fl.fetched
			fl.mu.Unlock()
			if !tc.sent {
				if r.Content != 0 || len(r.UIDs) != 0 {
					t.Errorf("nothing went out, yet the record says %d octets, UIDs %v", r.Content, r.UIDs)
				}
				return
			}
			if charged < tc.charged || r.Content < tc.charged || len(r.UIDs) != 1 || r.UIDs[0] != 5 {
				t.Errorf("the client got %d octets of UID 5: %d charged; the record says %d octets, UIDs %v", tc.charged, charged, r.Content, r.UIDs)
			}
		})
	}
}
