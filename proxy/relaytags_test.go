package proxy

import (
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// A command whose tag is in flight is refused before anything of it is
// forwarded (ARCHITECTURE.md §9, RFC 9051 §2.2.1): the backend holds the
// first command's answer until the second was refused, and never sees the
// second.
func TestTagInFlightRefused(t *testing.T) {
	gotF1, answerF1 := make(chan struct{}), make(chan struct{})
	var f1s atomic.Int32
	h := scriptedHarness(t, func(c net.Conn, tag, line string) {
		if tag == "f1" && f1s.Add(1) == 1 {
			close(gotF1)
			<-answerF1
		}
		fmt.Fprintf(c, "%s OK done\r\n", tag)
	})
	answered := false
	t.Cleanup(func() {
		if !answered {
			close(answerF1)
		}
	})
	c := h.login()
	c.send("f1 NOOP")
	select {
	case <-gotF1:
	case <-time.After(testenv.IOTimeout()):
		t.Fatal("timed out waiting for f1 at the backend")
	}
	c.send("f1 NOOP")
	if got, want := c.line(), "f1 BAD [CLIENTBUG] Tag already in use"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	close(answerF1)
	answered = true
	c.expect("f1 OK done")
	c.transact("f2 NOOP", "f2 OK")
	if n := f1s.Load(); n != 1 {
		t.Errorf("the backend got %d commands tagged f1, want 1", n)
	}
	c.transact("z LOGOUT", "z OK")
}
