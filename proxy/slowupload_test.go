package proxy

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// The class of TestAttackSlowUploadBlamesBackend (ARCHITECTURE.md §13):
// the backend is not timed while the client's bytes of a command still
// come. A CATENATE whose parts (and the pauses before them) take several
// backend timeouts, and a MULTIAPPEND whose later message does, are
// stored.
func TestSlowCatenateAndMultiAppendComplete(t *testing.T) {
	const timeout = 300 * time.Millisecond
	h := newDovecotHarness(t, nil, func(o *Options) { o.Limits.BackendTimeout = timeout })
	c := h.login()
	head := "From: bob@example.com\r\nSubject: slow\r\nMessage-ID: <cat@example.com>\r\n\r\n"
	body := strings.Repeat("z", 62) + "\r\n"
	c.sendRaw(fmt.Sprintf("a APPEND INBOX CATENATE (TEXT {%d}\r\n", len(head)))
	c.expect("+")
	trickle(t, c, h.audit, head, 8, timeout/4)
	c.sendRaw(fmt.Sprintf(" TEXT {%d+}\r\n", len(body)))
	trickle(t, c, h.audit, body, 8, timeout/4)
	c.sendRaw(")\r\n")
	c.expectTagged("a", "a OK")

	first, second := testMessage(8), testMessage(9)
	c.sendRaw(fmt.Sprintf("b APPEND INBOX {%d+}\r\n%s {%d}\r\n", len(first), first, len(second)))
	c.expect("+")
	trickle(t, c, h.audit, second, 8, timeout/4)
	c.sendRaw("\r\n")
	c.expectTagged("b", "b OK")

	c.transact("c SELECT INBOX", "c OK")
	for _, id := range []string{"cat", "8", "9"} {
		c.send(fmt.Sprintf("d UID SEARCH HEADER Message-ID <%s@example.com>", id))
		if un, _ := c.tagged("d"); len(un) != 1 || strings.TrimSpace(un[0]) == "* SEARCH" {
			t.Errorf("message <%s@example.com> is not in INBOX: %q", id, un)
		}
	}
	if h.audit.hasSecurity("backend-timeout") {
		t.Errorf("backend-timeout recorded")
	}
}

// Once the backend has the whole command, or owes a literal's "+", it is
// timed again: silent after the last octet of a slow upload, or instead
// of the "+", it is cut after BackendTimeout (ARCHITECTURE.md §13), not
// before.
func TestUploadedCommandSilentBackendCut(t *testing.T) {
	const timeout = 300 * time.Millisecond
	for _, name := range []string{"sync", "nonsync", "no continuation"} {
		t.Run(name, func(t *testing.T) {
			stall := make(chan struct{})
			var mu sync.Mutex
			appending := false
			h := scriptedHarness(t, func(c net.Conn, tag, line string) {
				mu.Lock()
				isAppend, after := strings.HasPrefix(line, "APPEND "), appending
				appending = appending || isAppend
				mu.Unlock()
				switch {
				case isAppend && name == "sync":
					fmt.Fprintf(c, "+ go on\r\n")
				case isAppend && name == "no continuation", after: // silent
					<-stall
				case isAppend:
				default:
					fmt.Fprintf(c, "%s OK fine\r\n", tag)
				}
			}, func(o *Options) { o.Limits.BackendTimeout = timeout })
			t.Cleanup(func() { close(stall) }) // before the backend's own cleanup
			c := h.login()
			body := strings.Repeat("x", 40)
			// Taken before each write: the proxy may read it, and owe,
			// before the writer runs again.
			sent := time.Now()
			if name == "nonsync" {
				c.send(fmt.Sprintf("a APPEND INBOX {%d+}", len(body)))
			} else {
				c.send(fmt.Sprintf("a APPEND INBOX {%d}", len(body)))
			}
			if name != "no continuation" {
				if name == "sync" {
					c.expect("+")
				}
				trickle(t, c, h.audit, body, 8, timeout/4)
				sent = time.Now()
				c.sendRaw("\r\n")
			}
			c.expectClosed("* BYE [UNAVAILABLE] Backend not responding")
			if waited := time.Since(sent); waited < timeout {
				t.Errorf("cut %v after the backend owed its answer, before the %v timeout", waited, timeout)
			}
			waitFor(t, func() bool { return h.audit.hasSecurity("backend-timeout") })
		})
	}
}

// A backend that stops reading while the client uploads is timed by its
// writes (owedReader.uploading): the session ends after BackendTimeout
// without progress, as a backend timeout, rather than hanging on a write
// that never ends (ARCHITECTURE.md §13).
func TestBackendNotReadingUploadCut(t *testing.T) {
	const timeout = 300 * time.Millisecond
	stall := make(chan struct{})
	h := scriptedHarness(t, func(c net.Conn, tag, line string) {
		if strings.HasPrefix(line, "APPEND ") {
			<-stall // reads nothing more
			return
		}
		fmt.Fprintf(c, "%s OK fine\r\n", tag)
	}, func(o *Options) { o.Limits.BackendTimeout = timeout })
	t.Cleanup(func() { close(stall) })
	c := h.login()
	// More than the sockets between proxy and backend buffer.
	body := strings.Repeat("x", 48<<20)
	go c.c.Write([]byte(fmt.Sprintf("a APPEND INBOX {%d+}\r\n%s\r\n", len(body), body))) // the proxy stops reading; the write's error is expected
	c.expectClosed("* BYE [UNAVAILABLE] Backend not responding")
	waitFor(t, func() bool { return h.audit.hasSecurity("backend-timeout") })
}
