package main

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/audit"
	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/tlsterm"
)

// downSink is an audit sink whose disk can fill: while full, every write
// fails with ENOSPC; failures counts them.
type downSink struct {
	mu       sync.Mutex
	full     bool
	buf      bytes.Buffer
	failures int
	failed   chan struct{} // closed at the second failed write
}

func (s *downSink) Write(p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.full {
		if s.failures++; s.failures == 2 {
			close(s.failed)
		}
		return fmt.Errorf("write audit.jsonl: %w", syscall.ENOSPC)
	}
	s.buf.Write(p)
	return nil
}
func (s *downSink) Sync() error  { return nil }
func (s *downSink) Close() error { return nil }

func (s *downSink) setFull(v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.full = v
}

// TestAttackDeleteCarriedOutWhileTrailIsDown (atk-audit): with
// audit.on_full: block ("fail closed, for compliance"), once the trail's
// disk is full (Trail.Health fails, /readyz says so), an administrator's
// act is refused before it is carried out (admin.auditReady,
// ARCHITECTURE.md §11), but a client's IMAP command is still sent to the
// backend: a DELETE of a mailbox is carried out by Dovecot while no
// record of it can be written; only the reply is held back (BYE
// [UNAVAILABLE] after ack_timeout). The record waits in the writer's
// memory, lost if the proxy is restarted to clear the disk. A command
// that changes the store, whose record cannot be written, must not reach
// the backend while the trail is known to be down.
func TestAttackDeleteCarriedOutWhileTrailIsDown(t *testing.T) {
	addr, sink, trail := trailDownProxy(t)
	c := dialAud(t, addr)
	c.do("a1", "OK", "LOGIN alice alice-pw")
	c.do("a2", "OK", "CREATE Evidence")

	// The disk fills: the next record (another client's session.open)
	// fails, and the writer's retry fails too.
	fillSinkDisk(t, addr, sink, trail)
	health := trail.Health()

	// alice deletes the mailbox while the trail is known down.
	fmt.Fprintf(c.c, "a3 DELETE Evidence\r\n")
	var answer []string
	for {
		c.c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
		l, err := c.br.ReadString('\n')
		if l != "" {
			answer = append(answer, strings.TrimSpace(l))
		}
		if err != nil || strings.HasPrefix(l, "a3 ") || strings.HasPrefix(l, "* BYE") {
			break
		}
	}

	// The disk is cleared; the trail catches up.
	clearSinkDisk(t, sink, trail)
	sink.mu.Lock()
	t.Logf("after the disk cleared, the trail holds the DELETE's record: %v", strings.Contains(sink.buf.String(), `"command":"DELETE"`))
	sink.mu.Unlock()
	d := dialAud(t, addr)
	d.do("b1", "OK", "LOGIN alice alice-pw")
	d.c.SetWriteDeadline(time.Now().Add(testenv.IOTimeout()))
	fmt.Fprintf(d.c, "b2 STATUS Evidence (MESSAGES)\r\n")
	var status string
	for {
		if l := d.line(); strings.HasPrefix(l, "b2 ") {
			status = l
			break
		}
	}
	if !strings.HasPrefix(status, "b2 OK") {
		t.Errorf("while the trail was down (health: %v), the proxy answered DELETE with %q and Dovecot carried it out: STATUS of the mailbox now says %q", health, answer, status)
	}
}

// trailDownProxy starts Dovecot and the proxy with a trail on a sink
// whose disk can fill (block mode, the default), and returns the proxy's
// address.
func trailDownProxy(t *testing.T) (string, *downSink, *audit.Trail) {
	t.Helper()
	addr, sink, trail, _ := trailDownDovecot(t)
	return addr, sink, trail
}

// trailDownDovecot is trailDownProxy that also returns its Dovecot.
func trailDownDovecot(t *testing.T) (string, *downSink, *audit.Trail, *dovecottest.Server) {
	t.Helper()
	dovecottest.Require(t)
	dc := dovecottest.Start(t, dovecottest.Options{})
	sink := &downSink{failed: make(chan struct{})}
	trail, err := audit.New(audit.Options{Sink: sink, Logger: zap.NewNop(), Software: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { trail.Close() })
	certPEM, keyPEM, err := tlsterm.SelfSigned([]string{"localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.NewServer(proxy.Options{
		Listeners: []proxy.ListenerOptions{{Name: "imaps", Addr: "127.0.0.1:0", Mode: proxy.ImplicitTLS,
			TLS: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"imap"}}}},
		Router:  &proxy.StaticRouter{Default: dovecotBackend(t, dc)},
		Auditor: newAuditWire(trail),
		Logger:  zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv.Addrs()[0].String(), sink, trail, dc
}

// fillSinkDisk fills the sink's disk and waits until the trail knows it:
// another client's session.open fails to be written, and the retry too.
func fillSinkDisk(t *testing.T, addr string, sink *downSink, trail *audit.Trail) {
	t.Helper()
	sink.setFull(true)
	dialAud(t, addr)
	select {
	case <-sink.failed:
	case <-testenv.Context(t).Done():
		t.Fatal("the trail never wrote to its full disk")
	}
	if trail.Health() == nil {
		t.Fatal("the trail's health is fine on a full disk")
	}
}

// clearSinkDisk clears the disk and waits until the trail writes again.
func clearSinkDisk(t *testing.T, sink *downSink, trail *audit.Trail) {
	t.Helper()
	sink.setFull(false)
	probe := audit.NewRecord()
	probe.Kind = audit.KindCommand
	if err := trail.LogWait(probe, testenv.IOTimeout()); err != nil {
		t.Fatalf("the trail did not recover: %v", err)
	}
}

// TestTrailDownRefusesBeforeBackend: while the trail is known down
// (fail closed), every command with an effect in the command table gets
// NO [UNAVAILABLE] before it reaches Dovecot, an APPEND before its "+",
// and the session goes on; once the sink writes again the same session's
// commands are carried out and recorded (ARCHITECTURE.md §11).
func TestTrailDownRefusesBeforeBackend(t *testing.T) {
	addr, sink, trail := trailDownProxy(t)
	c := dialAud(t, addr)
	c.do("a1", "OK", "LOGIN alice alice-pw")
	c.do("a2", "OK", "CREATE Evidence")
	c.do("a3", "OK", "SELECT Evidence")

	fillSinkDisk(t, addr, sink, trail)
	for i, cmd := range []string{"DELETE Evidence", "RENAME Evidence Gone", "EXPUNGE", "STORE 1:* +FLAGS (\\Deleted)",
		"UID FETCH 1:* (BODY.PEEK[])", "FETCH 1:* (FLAGS)", "CLOSE", "APPEND Evidence {5}"} {
		tag := fmt.Sprintf("d%d", i)
		c.do(tag, "NO [UNAVAILABLE]", cmd)
	}

	clearSinkDisk(t, sink, trail)
	c.do("b1", "OK", "CLOSE")
	if un := c.do("b2", "OK", "STATUS Evidence (MESSAGES)"); !strings.Contains(un, "Evidence") {
		t.Errorf("STATUS of the mailbox after the trail recovered: %q", un)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	for _, w := range []string{`"tag":"b2","command":"STATUS"`} {
		if !strings.Contains(sink.buf.String(), w) {
			t.Errorf("the recovered trail lacks %s", w)
		}
	}
	if strings.Contains(sink.buf.String(), `"command":"DELETE"`) {
		t.Errorf("the trail records a DELETE that was refused before the backend")
	}
}
