package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
)

// TestServePolicyAndLimits runs serve with the shipped policies and tight
// lockout settings: the policy refuses deleting INBOX, failed logins lock
// the user out even with the right password, and the admin API lists and
// lifts the lockout.
func TestServePolicyAndLimits(t *testing.T) {
	backendAddr, stopBackend, err := startDemoBackend(zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer stopBackend()
	dir := t.TempDir()
	cf := tlsFiles(t, dir)
	repoPolicies, _ := filepath.Abs("../../policies")
	cfgText := fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %s, key: %s}]}
backends: {mem: {address: %q, security: plain}}
admin: {address: "127.0.0.1:0"}
policy: {dirs: [{path: %q}]}
rate_limits: {login_failures_per_user: 2, lockout_base: 1m, login_failure_delay: 1ms}
audit: {path: %q, fsync: always}
`, cf.Cert, cf.Key, backendAddr, repoPolicies, filepath.Join(dir, "audit.jsonl"))
	s, addrs, adminAddr, stop := serveConfig(t, dir, cfgText)

	session := func() *imapConn {
		tc, err := tls.Dial("tcp", addrs[0].String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tc.Close() })
		c := &imapConn{t: t, c: tc, r: bufio.NewReader(tc)}
		c.line()
		return c
	}
	c := session()
	c.cmd("a", "NO [AUTHENTICATIONFAILED]", "LOGIN demo wrong")
	c.cmd("b", "NO [AUTHENTICATIONFAILED]", "LOGIN demo wrong")
	c.cmd("c", "NO [AUTHENTICATIONFAILED]", `LOGIN demo "demo-password"`) // locked out
	admin := func(method, path, body string) string {
		req, _ := http.NewRequest(method, "http://"+adminAddr.String()+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		return string(b)
	}
	if got := admin("GET", "/ratelimit/lockouts", ""); !strings.Contains(got, "demo") {
		t.Fatalf("lockouts: %s", got)
	}
	admin("POST", "/ratelimit/unlock", `{"user":"demo"}`)
	c = session() // three failures closed the first connection
	c.cmd("d", "OK", `LOGIN demo "demo-password"`)
	c.cmd("e", "NO [NOPERM] INBOX is protected", "DELETE INBOX")
	if got := admin("GET", "/metrics", ""); !strings.Contains(got, `imapwarden_policy_denies_total{mode="enforced",policy="protected_folders"} 1`) ||
		!strings.Contains(got, `imapwarden_limit_hits_total{key="user",limit="login_failures_per_user"}`) ||
		!strings.Contains(got, "imapwarden_policy_evaluation_duration_seconds_count") {
		t.Errorf("metrics lack the policy deny or the limit hit:\n%s", got)
	}
	// The whole registry (proxy, policy, limiter, audit, certificates,
	// runtime) follows Prometheus' naming rules.
	problems, err := testutil.GatherAndLint(s.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric lint: %s: %s", p.Metric, p.Text)
	}
	c.cmd("f", "OK", "SELECT INBOX")
	c.cmd("g", "OK", "FETCH 1 (BODY.PEEK[])")
	c.cmd("h", "OK", "LOGOUT")

	// The trail, once closed, verifies and answers an auditor's question.
	stop()
	var out, errOut strings.Builder
	if code := runAudit([]string{"verify", filepath.Join(dir, "audit.jsonl")}, &out, &errOut); code != 0 {
		t.Fatalf("audit verify: %d\n%s%s", code, out.String(), errOut.String())
	}
	out.Reset()
	if code := runAudit([]string{"query", filepath.Join(dir, "audit.jsonl"), "--user", "demo", "--format", "json"}, &out, &errOut); code != 0 {
		t.Fatalf("audit query: %d %s", code, errOut.String())
	}
	for _, want := range []string{`"kind":"policy.deny"`, `"kind":"limit"`, `"command":"FETCH"`, `"kind":"auth"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("audit query lacks %s:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "demo-password") {
		t.Error("the password reached the audit trail")
	}
}
