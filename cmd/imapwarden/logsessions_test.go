package main

import (
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/imapwarden/imapwarden/audit"
	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/internal/testenv"
)

// log.sessions: with an audit trail the operational log leaves out the
// session events the trail records (open, TLS, a successful login, close)
// and keeps a failed login; the trail holds them all either way. "on"
// logs them as before, and so does auto when the trail may drop records
// (on_full: drop). No start warning about log.sessions.
func TestLogSessions(t *testing.T) {
	dovecottest.Require(t)
	dc := dovecottest.Start(t, dovecottest.Options{})
	for _, c := range []struct{ mode, onFull string }{{"auto", "block"}, {"on", "block"}, {"auto", "drop"}} {
		mode := c.mode
		t.Run(mode+"-"+c.onFull, func(t *testing.T) {
			p := startAuthProxy(t, t.TempDir(), fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %%[1]s, key: %%[2]s}]}
backends:
  dovecot: {address: %s, security: plain}
audit: {path: %%[3]s, fsync: always, on_full: %s}
log: {sessions: %s}
admin: {address: ""}
`, dc.Addr, c.onFull, mode))
			if n := sessionsWarnings(p.logs); n != 0 {
				t.Errorf("%d log.sessions warnings", n)
			}
			if c.onFull == "drop" {
				mode = "on" // the trail may lose what the log leaves out
			}
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

// sessionsWarnings counts the start warnings about log.sessions.
func sessionsWarnings(logs *observer.ObservedLogs) int {
	return logs.FilterMessage("configuration warning").FilterField(zap.String("key", "log.sessions")).Len()
}

// TestLogSessionsValue: auto logs the session events without a trail, or
// with one that drops records when full; off without a trail is warned
// about (records logins nowhere), with one it is not.
func TestLogSessionsValue(t *testing.T) {
	for _, c := range []struct {
		sessions, sink, path, onFull string
		want, bad, warned            bool
	}{
		{"", "", "", "", true, false, false}, {"", "", "/a", "", false, false, false},
		{"auto", "", "/a", "", false, false, false}, {"auto", "", "/a", "block", false, false, false},
		{"", "", "/a", "drop", true, false, false}, {"auto", "", "/a", "drop", true, false, false},
		{"auto", "stdout", "", "drop", true, false, false}, {"on", "", "/a", "", true, false, false},
		{"off", "", "", "", false, false, true}, {"off", "", "/a", "", false, false, false},
		{"off", "syslog", "", "", false, false, false}, {"off", "", "/a", "drop", false, false, false},
		{"yes", "", "", "", true, true, false},
	} {
		var p problems
		var warnings []string
		warn := func(key, format string, args ...any) {
			warnings = append(warnings, key+": "+fmt.Sprintf(format, args...))
		}
		cfg := &fileConfig{Log: logConfig{Sessions: c.sessions}, Audit: auditConfig{Sink: c.sink, Path: c.path, OnFull: c.onFull}}
		if got := logSessions(&p, cfg, warn); got != c.want || (len(p) > 0) != c.bad || (len(warnings) > 0) != c.warned {
			t.Errorf("%+v: %v, problems %v, warnings %q", c, got, p, warnings)
		}
	}
}

// TestLogSessionsOffWarned: log.sessions off without an audit trail is
// served, with one start warning saying that logins are recorded nowhere.
func TestLogSessionsOffWarned(t *testing.T) {
	dovecottest.Require(t)
	dc := dovecottest.Start(t, dovecottest.Options{})
	p := startAuthProxy(t, t.TempDir(), fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %%[1]s, key: %%[2]s}]}
backends:
  dovecot: {address: %s, security: plain}
log: {sessions: off}
admin: {address: ""}
`, dc.Addr))
	if n := sessionsWarnings(p.logs); n != 1 {
		t.Fatalf("%d log.sessions warnings, want 1", n)
	}
	c := p.session()
	c.cmd("a1", "OK", "LOGIN alice alice-pw")
	c.cmd("a2", "OK", "LOGOUT")
}
