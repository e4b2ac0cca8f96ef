package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/audit"
	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/internal/testenv"
)

// Issue 13.3 against a real Dovecot frozen (SIGSTOP) after login: a
// command it owes an answer to ends the session after
// limits.backend_timeout with "* BYE [UNAVAILABLE]" and the audit says
// why, while an IDLE begun earlier, which is owed nothing, outlives the
// deadline and ends normally once Dovecot runs again. Nothing is left
// open on either side.
func TestBackendTimeoutFrozenDovecot(t *testing.T) {
	dovecottest.Require(t)
	dc := dovecottest.Start(t, dovecottest.Options{})
	const timeout = 2 * time.Second
	p := startAuthProxy(t, t.TempDir(), fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %%[1]s, key: %%[2]s}]}
backends:
  dovecot:
    address: %s
    security: starttls
    tls: {ca_file: %s, server_name: localhost}
limits: {backend_timeout: %s}
audit: {path: %%[3]s, fsync: always}
log: {sessions: on}
admin: {address: ""}
drain_timeout: 5s
`, dc.Addr, dc.CAFile, timeout))

	idle := p.session()
	idle.cmd("i0", "OK", `LOGIN alice alice-pw`)
	idle.cmd("i1", "OK", "SELECT INBOX")
	fmt.Fprintf(idle.c, "i2 IDLE\r\n")
	if l := idle.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE: got %q", l)
	}
	cut := p.session()
	cut.cmd("c0", "OK", `LOGIN alice alice-pw`)
	cut.cmd("c1", "OK", "SELECT INBOX")

	dc.Freeze()
	t.Cleanup(dc.Thaw) // before Dovecot's own cleanup, should the test fail
	start := time.Now()
	fmt.Fprintf(cut.c, "c2 NOOP\r\n")
	// Without the deadline this read waits for the frozen Dovecot until
	// the test's I/O timeout and fails.
	if l := cut.line(); !strings.HasPrefix(l, "* BYE [UNAVAILABLE] ") {
		t.Fatalf("NOOP to a frozen Dovecot: got %q, want BYE [UNAVAILABLE]", l)
	}
	if waited := time.Since(start); waited < timeout {
		t.Errorf("BYE after %v, before the %v backend_timeout", waited, timeout)
	}
	cut.c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
	if l, err := cut.r.ReadString('\n'); err == nil {
		t.Errorf("after the BYE: %q, want the connection closed", l)
	}

	// The IDLE was owed nothing since before the NOOP was sent: a
	// deadline wrongly armed for it would have fired first. It still
	// stands: Dovecot, running again, ends it normally.
	dc.Thaw()
	fmt.Fprintf(idle.c, "DONE\r\n")
	for {
		l := idle.line()
		if strings.HasPrefix(l, "i2 ") {
			if !strings.HasPrefix(l, "i2 OK") {
				t.Fatalf("IDLE's end: %q", l)
			}
			break
		}
		if strings.HasPrefix(l, "* BYE") {
			t.Fatalf("the IDLE was cut: %q", l)
		}
	}
	idle.cmd("i3", "OK", "NOOP")
	idle.cmd("i4", "OK", "LOGOUT")

	// The audit: the cut session closed for backend-timeout, with a
	// backend record naming Dovecot; the idle one by its LOGOUT.
	closes := map[string]string{}
	eventually(t, "both sessions' close records", func() bool {
		for _, r := range p.records(audit.KindSessionClose) {
			closes[r.Session] = r.Reason
		}
		return len(closes) == 2
	})
	reasons := []string{}
	for _, r := range closes {
		reasons = append(reasons, r)
	}
	if !strings.Contains(strings.Join(reasons, " "), "backend-timeout") {
		t.Errorf("close reasons %v, want one backend-timeout", reasons)
	}
	var timeouts []*audit.Record
	for _, r := range p.records(audit.KindBackend) {
		if r.Event == "timeout" {
			timeouts = append(timeouts, r)
		}
	}
	if len(timeouts) != 1 || timeouts[0].Backend != "dovecot" || closes[timeouts[0].Session] != "backend-timeout" {
		t.Errorf("backend timeout records %+v, closes %v", timeouts, closes)
	}

	// Nothing leaks: the proxy closed both sessions, and Dovecot, thawed,
	// saw both backend connections end (one imap process each).
	waitSessionsClosed(t, p.logs)
	eventually(t, "Dovecot to see both connections closed", func() bool {
		return countLines(dc.Log(), "imap(alice)", "Disconnected") == 2
	})
}

// countLines counts the lines of log holding every one of subs.
func countLines(log string, subs ...string) int {
	n := 0
	for _, l := range strings.Split(log, "\n") {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(l, s)
		}
		if all {
			n++
		}
	}
	return n
}
