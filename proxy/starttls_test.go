package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// holdConn passes its first write (the ClientHello) through and holds the
// rest until flush, after which it passes everything, so that the client's Finished and the commands after
// it reach the proxy in one TCP segment, as a fast client sends them.
type holdConn struct {
	net.Conn
	mu      sync.Mutex
	writes  int
	held    []byte
	flushed bool
}

func (c *holdConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	if c.writes == 1 || c.flushed {
		return c.Conn.Write(p)
	}
	c.held = append(c.held, p...)
	return len(p), nil
}

func (c *holdConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.Conn.Write(c.held)
	c.held, c.flushed = nil, true
	return err
}

// Commands sent in the same segment as the client's TLS Finished are
// decrypted by crypto/tls while it completes the handshake and wait in its
// buffer, not in the socket: the proxy must answer them without waiting
// for more bytes (the suspect of the offlineimap STARTTLS hang, issue 13).
func TestStartTLSCommandsInTheFinishedSegment(t *testing.T) {
	for _, tc := range []struct{ name, cmds string }{
		{"one", "a1 CAPABILITY\r\n"},
		{"pipelined", "a1 CAPABILITY\r\na2 NOOP\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			c := dialPlain(t, h.starttls)
			c.expect("* OK")
			c.transact("st STARTTLS", "st OK")
			hc := &holdConn{Conn: c.c}
			cfg := clientTLS("imap")
			cfg.MaxVersion = tls.VersionTLS13
			tc2 := tls.Client(hc, cfg)
			if err := tc2.Handshake(); err != nil {
				t.Fatal(err)
			}
			if _, err := tc2.Write([]byte(tc.cmds)); err != nil {
				t.Fatal(err)
			}
			if err := hc.flush(); err != nil {
				t.Fatal(err)
			}
			c.c, c.br = tc2, bufio.NewReader(tc2)
			c.expectTagged("a1", "a1 OK")
			if strings.Contains(tc.cmds, "a2") {
				c.expectTagged("a2", "a2 OK")
			}
			c.transact("a3 LOGOUT", "a3 OK")
		})
	}
}

// imaplib2, offlineimap's IMAP library, through STARTTLS: the pattern of
// the hang in issue 13. It reads with one thread and writes with another
// on the same TLS socket; when its reader thread is inside OpenSSL's
// SSL_read (taking the TLS 1.3 session tickets the proxy sends after the
// handshake) as its writer thread calls SSL_write with CAPABILITY, the
// command can vanish inside the client: the proxy's socket receives no
// byte after the handshake (measured: 615 bytes read at the handshake's
// end and still 615 when the client gave up) while imaplib2's writer
// thread is back waiting for work and its reader blocks in SSL_read. A
// single SSL object must not be used by two threads at once (OpenSSL's
// threads(3ossl)): the bug is the client's. Without session tickets
// (tls.ticket_key_rotation: -1) nothing arrives after the handshake for
// the client's reader to race with. This test proves that workaround and
// records the rate with tickets on.
func TestImaplib2StartTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a few hundred imaplib2 sessions")
	}
	py := imaplib2Python(t)
	// wait bounds each answer the client waits for: past it the run
	// counts as a hang.
	run := func(t *testing.T, tickets bool, runs string, wait time.Duration) (string, error) {
		h := newHarness(t, func(o *Options) {
			o.Listeners[1].TLS.SessionTicketsDisabled = !tickets
		})
		host, port, _ := strings.Cut(h.starttls, ":")
		secs := strconv.FormatFloat(wait.Seconds(), 'f', -1, 64)
		cmd := exec.CommandContext(testenv.Context(t), py, "testdata/imaplib2_starttls.py", host, port, runs, secs)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	// The last line is the count; any before it say what ended a run.
	last := func(out string) string { return out[strings.LastIndexByte(out, '\n')+1:] }
	t.Run("tickets", func(t *testing.T) {
		// Only a rate, asserted nothing: a short wait keeps its real
		// hangs cheap, and counts a slow answer as one.
		out, err := run(t, true, "50", 5*time.Second)
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			// The same race in the client can corrupt the SSL object
			// and kill it (seen: SIGSEGV): an outcome, as a hang is.
			// Not SIGKILL: that is the test's context ending it.
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() != syscall.SIGKILL {
				t.Logf("session tickets on: the client died: %v\n%s", err, out)
				return
			}
		}
		if err != nil {
			t.Fatalf("imaplib2: %v\n%s", err, out)
		}
		t.Logf("session tickets on: %s", last(out))
	})
	t.Run("no-tickets", func(t *testing.T) {
		// A hang is an answer that never comes: only a broken session
		// waits IOTimeout, a slow one on a busy machine does not.
		out, err := run(t, false, "100", testenv.IOTimeout())
		if err != nil {
			t.Fatalf("imaplib2: %v\n%s", err, out)
		}
		t.Logf("session tickets off: %s", last(out))
		if !strings.HasSuffix(out, " hangs 0") {
			t.Errorf("imaplib2 without session tickets:\n%s", out)
		}
	})
}

// imaplib2Python returns a Python that has imaplib2: Debian's, whatever
// python3 comes first in PATH (a pyenv one lacks Debian's modules).
func imaplib2Python(t *testing.T) string {
	var err error
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		out, perr := exec.Command(py, "-c", "import imaplib2").CombinedOutput()
		if perr == nil {
			return py
		}
		err = fmt.Errorf("%s: %v: %s", py, perr, bytes.TrimSpace(out))
	}
	testenv.Require(t, "python3-imaplib2", err, ".ci/run installs python3-imaplib2")
	return ""
}
