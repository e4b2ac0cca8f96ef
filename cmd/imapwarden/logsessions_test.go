package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/audit"
	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/internal/testenv"
)

// log.sessions: with an audit trail the operational log leaves out the
// session events the trail records (open, TLS, a successful login, close)
// and keeps a failed login; the trail holds them all either way. "on"
// logs them as before.
func TestLogSessions(t *testing.T) {
	dovecottest.Require(t)
	dc := dovecottest.Start(t, dovecottest.Options{})
	for _, mode := range []string{"auto", "on"} {
		t.Run(mode, func(t *testing.T) {
			p := startAuthProxy(t, t.TempDir(), fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %%[1]s, key: %%[2]s}]}
backends:
  dovecot: {address: %s, security: plain}
audit: {path: %%[3]s, fsync: always}
log: {sessions: %s}
admin: {address: ""}
`, dc.Addr, mode))
			c := p.session()
			c.cmd("a1", "NO", "LOGIN alice wrong-pw")
			c.cmd("a2", "OK", "LOGIN alice alice-pw")
			c.cmd("a3", "OK", "LOGOUT")
			for deadline := time.Now().Add(testenv.IOTimeout()); len(p.records(audit.KindSessionClose)) == 0; {
				if time.Now().After(deadline) {
					t.Fatal("no session.close record")
				}
				time.Sleep(10 * time.Millisecond)
			}
			// The trail: every fact, whatever the log keeps.
			for _, k := range []audit.Kind{audit.KindSessionOpen, audit.KindTLS, audit.KindSessionClose} {
				if n := len(p.records(k)); n != 1 {
					t.Errorf("%d %s records, want 1", n, k)
				}
			}
			var results []string
			for _, r := range p.authRecords() {
				results = append(results, string(r.Result)+" "+r.User+" "+r.Mechanism)
			}
			if fmt.Sprint(results) != "[failure alice LOGIN success alice LOGIN]" {
				t.Errorf("auth records %q", results)
			}
			if mode == "on" {
				waitLog(t, p.logs, "session close")
			}
			want := map[string]int{"session open": 1, "tls": 1, "session close": 1}
			wantAuth := 2
			if mode == "auto" {
				want = map[string]int{"session open": 0, "tls": 0, "session close": 0}
				wantAuth = 1
			}
			for msg, n := range want {
				if got := p.logs.FilterMessage(msg).Len(); got != n {
					t.Errorf("%d %q log lines, want %d", got, msg, n)
				}
			}
			auths := p.logs.FilterMessage("auth").All()
			if len(auths) != wantAuth {
				t.Fatalf("%d auth log lines, want %d", len(auths), wantAuth)
			}
			if ok, _ := auths[0].ContextMap()["success"].(bool); ok {
				t.Errorf("first auth log line is a success: %v", auths[0].ContextMap())
			}
		})
	}
}

func TestLogSessionsValue(t *testing.T) {
	for _, c := range []struct {
		sessions, path string
		want, bad      bool
	}{
		{"", "", true, false}, {"", "/a", false, false}, {"auto", "/a", false, false}, {"on", "/a", true, false},
		{"off", "", false, false}, {"yes", "", true, true},
	} {
		var p problems
		cfg := &fileConfig{Log: logConfig{Sessions: c.sessions}, Audit: auditConfig{Path: c.path}}
		if got := logSessions(&p, cfg); got != c.want || (len(p) > 0) != c.bad {
			t.Errorf("sessions %q, path %q: %v, problems %v", c.sessions, c.path, got, p)
		}
	}
}
