package proxy

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// A message literal is registered, and so owed an answer by the backend
// (relay.oweLocked), before its first octet leaves, and the backend's read
// deadline (Limits.BackendTimeout) is moved only by bytes from the
// backend. While the client uploads, the backend, reading, says nothing:
// an upload that takes longer than backend_timeout is cut with
// "* BYE [UNAVAILABLE] Backend not responding" however steadily its bytes
// flow, the message is lost, and the healthy backend is blamed (a
// "backend-timeout" security record, a fault="timeout" count). At the
// defaults (5m, max_append_literal 64 MiB) any APPEND slower than about
// 1.8 Mbit/s, a 40 MB attachment saved to Sent over a 1 Mbit/s uplink,
// always fails, and any client can write such records at will.
// What the client still owes is the client's to bound (IdleTimeout,
// WriteTimeout), not the backend's.

// trickle sends data in pieces, one every gap: a client uploading
// steadily, more slowly than the backend timeout allows for the whole. A
// write that fails fails the test with what the proxy said last and
// whether it blamed the backend.
func trickle(t *testing.T, c *tconn, a *recAuditor, data string, pieces int, gap time.Duration) {
	t.Helper()
	step := (len(data) + pieces - 1) / pieces
	for i := 0; i < len(data); i += step {
		c.c.SetWriteDeadline(time.Now().Add(gap + time.Second))
		if _, err := c.c.Write([]byte(data[i:min(i+step, len(data))])); err != nil {
			c.c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
			said, _ := io.ReadAll(c.br)
			t.Fatalf("upload cut after %d of %d octets, a piece sent every %v (%v): the proxy said %q, backend-timeout recorded: %v",
				i, len(data), gap, err, said, a.hasSecurity("backend-timeout"))
		}
		time.Sleep(gap) // the scenario: a slow uplink, not a synchronisation
	}
}

func TestAttackSlowUploadBlamesBackend(t *testing.T) {
	const timeout = 200 * time.Millisecond
	var mu sync.Mutex
	appendTag := ""
	h := scriptedHarness(t, func(c net.Conn, tag, line string) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case strings.HasPrefix(line, "APPEND "):
			appendTag = tag
			if !strings.HasSuffix(line, "+}") {
				fmt.Fprintf(c, "+ go on\r\n")
			}
		case appendTag != "":
			// The literal and the command's final CRLF, read as a line.
			fmt.Fprintf(c, "%s OK [APPENDUID 1 1] done\r\n", appendTag)
			appendTag = ""
		default:
			fmt.Fprintf(c, "%s OK fine\r\n", tag)
		}
	}, func(o *Options) { o.Limits.BackendTimeout = timeout })
	c := h.login()
	body := strings.Repeat("x", 40)
	c.send(fmt.Sprintf("a APPEND INBOX {%d+}", len(body)))
	// Eight backend timeouts in all, a piece every quarter of one.
	trickle(t, c, h.audit, body, 32, timeout/4)
	c.sendRaw("\r\n")
	_, tl := c.tagged("a")
	if !strings.HasPrefix(tl, "a OK") || h.audit.hasSecurity("backend-timeout") {
		t.Fatalf("APPEND answered %q, backend-timeout recorded: %v", tl, h.audit.hasSecurity("backend-timeout"))
	}
}

// The same against Dovecot, with a synchronizing literal and with
// LITERAL+: the message is lost.
func TestAttackSlowUploadToDovecotCut(t *testing.T) {
	const timeout = 300 * time.Millisecond
	for _, nonSync := range []bool{false, true} {
		t.Run(fmt.Sprintf("nonsync=%v", nonSync), func(t *testing.T) {
			h := newDovecotHarness(t, nil, func(o *Options) { o.Limits.BackendTimeout = timeout })
			c := h.login()
			msg := testMessage(7)
			if nonSync {
				c.send(fmt.Sprintf("a APPEND INBOX {%d+}", len(msg)))
			} else {
				c.send(fmt.Sprintf("a APPEND INBOX {%d}", len(msg)))
				c.expect("+")
			}
			trickle(t, c, h.audit, msg, 16, timeout/4)
			c.sendRaw("\r\n")
			c.expectTagged("a", "a OK")
			c.transact("b SELECT INBOX", "b OK")
			c.send("c UID SEARCH HEADER Message-ID <7@example.com>")
			if un, _ := c.tagged("c"); len(un) != 1 || strings.TrimSpace(un[0]) == "* SEARCH" {
				t.Fatalf("the message uploaded is not in INBOX: %q", un)
			}
		})
	}
}
