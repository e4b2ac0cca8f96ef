package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/policy"
	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/proxy/imapwire"
	"github.com/imapwarden/imapwarden/tlsterm"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

// TestReloadFailureKeepsServingAndReady: a broken policy data file pushed
// to every replica must not take them out of their load balancers. The
// reload fails, the old policy keeps deciding, /readyz stays 200 and the
// failure is a metric. Then SIGTERM: /readyz turns 503 at once while the
// proxy still accepts for the lame-duck period, and only then drains.
func TestReloadFailureKeepsServingAndReady(t *testing.T) {
	env := newServeEnv(t)
	pdir := filepath.Join(env.dir, "policies", "protected_folders")
	for _, f := range []string{"protected_folders.rego", "data.yaml"} {
		b, err := os.ReadFile(filepath.Join("../../policies/protected_folders", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(pdir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pdir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	goodData, _ := os.ReadFile(filepath.Join(pdir, "data.yaml"))
	s, cfgFile, log, logs := env.buildFile(t, fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %s, key: %s}]}
backends: {mem: {address: %q, security: plain}}
admin: {address: "127.0.0.1:0"}
policy: {dirs: [{path: %q}], poll_interval: -1s}
lame_duck: 1h
`, env.cert.Cert, env.cert.Key, env.backend, pdir))
	if s.lameDuck != time.Hour {
		t.Fatalf("lame duck %v", s.lameDuck)
	}
	endLameDuck := make(chan struct{})
	s.endLameDuck = endLameDuck
	reload := func() (*setup, error) {
		cfg, err := loadConfigFile(cfgFile)
		if err != nil {
			return nil, err
		}
		return check(cfg, log)
	}
	hup := make(chan os.Signal)
	addrs, adminAddr, cancel, done := serve(t, s, log, hup, reload)

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + adminAddr.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	metric := func(series string) string {
		t.Helper()
		_, body := get("/metrics")
		for _, l := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(l, series+" "); ok {
				return v
			}
		}
		t.Fatalf("no series %s in /metrics", series)
		return ""
	}
	session := func() *imapConn {
		tc, err := tls.Dial("tcp", addrs[0].String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tc.Close() })
		c := &imapConn{t: t, c: tc, r: bufio.NewReader(tc)}
		if g := c.line(); !strings.HasPrefix(g, "* OK") {
			t.Fatalf("greeting %q", g)
		}
		return c
	}
	for _, c := range []string{"config", "policy", "tls"} {
		if v := metric(`imapwarden_reload_success{component="` + c + `"}`); v != "1" {
			t.Errorf("reload_success %s = %s at start", c, v)
		}
	}

	// A broken data file: the reload fails, nothing else changes.
	os.WriteFile(filepath.Join(pdir, "data.yaml"), []byte("mailboxes: [\n"), 0o644)
	hup <- os.Interrupt
	waitLog(t, logs, "configuration reload failed, keeping the running configuration")
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after a failed reload: %d %s", code, body)
	}
	if v := metric(`imapwarden_reload_success{component="config"}`); v != "0" {
		t.Errorf("reload_success config = %s after a failed reload", v)
	}
	// The poller (off here) finds the same file broken.
	if err := s.engine.Reload(); err == nil {
		t.Fatal("policy reload of a broken data file succeeded")
	}
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after a failed policy reload: %d %s", code, body)
	}
	if v := metric(`imapwarden_reload_success{component="policy"}`); v != "0" {
		t.Errorf("reload_success policy = %s after a failed reload", v)
	}
	if v := metric(`imapwarden_reloads_total{component="policy",result="failed"}`); v != "1" {
		t.Errorf("policy reloads failed = %s", v)
	}
	c := session()
	c.cmd("a", "OK", `LOGIN demo "demo-password"`)
	c.cmd("b", "NO [NOPERM]", "DELETE INBOX") // the policy in force still decides

	os.WriteFile(filepath.Join(pdir, "data.yaml"), goodData, 0o644)
	hup <- os.Interrupt
	waitLog(t, logs, "configuration reloaded")
	for _, comp := range []string{"config", "policy"} {
		if v := metric(`imapwarden_reload_success{component="` + comp + `"}`); v != "1" {
			t.Errorf("reload_success %s = %s after a good reload", comp, v)
		}
	}

	// SIGTERM: not ready at once, still serving during the lame duck.
	cancel()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := get("/readyz")
		if code == http.StatusServiceUnavailable && strings.Contains(body, "draining") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %s after SIGTERM", code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	late := session() // a client its balancer sent before noticing
	late.cmd("a", "OK", `LOGIN demo "demo-password"`)
	c.cmd("c", "OK", "NOOP")
	select {
	case err := <-done:
		t.Fatalf("runServe returned during the lame duck: %v", err)
	default:
	}
	close(endLameDuck)
	if l := c.line(); !strings.HasPrefix(l, "* BYE [UNAVAILABLE]") {
		t.Errorf("after the lame duck: %q, want * BYE [UNAVAILABLE]", l)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestAuditCreateKey: audit.create_key makes the key at serve's start
// (0600, 32 random bytes in hex), never at validate, and never replaces
// one.
func TestAuditCreateKey(t *testing.T) {
	dir := t.TempDir()
	cf := tlsFiles(t, dir)
	key := filepath.Join(dir, "keys", "audit.key")
	os.Mkdir(filepath.Dir(key), 0o700)
	cfgFile := filepath.Join(dir, "imapwarden.yaml")
	os.WriteFile(cfgFile, fmt.Appendf(nil, `
listeners: [{address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %s, key: %s}]}
backends: {mem: {address: "127.0.0.1:143", security: plain}}
audit: {path: %q, key_file: %q, create_key: true}
`, cf.Cert, cf.Key, filepath.Join(dir, "audit.jsonl"), key), 0o600)
	if code, out, errOut := runCLI("validate", "-c", cfgFile); code != 0 || out != "ok\n" {
		t.Fatalf("validate: %d %s %s", code, out, errOut)
	}
	if _, err := os.Stat(key); err == nil {
		t.Fatal("validate made the key")
	}
	cfg, err := loadConfigFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	s, err := build(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	s.close()
	fi, err := os.Stat(key)
	if err != nil || fi.Mode() != 0o600 || fi.Size() != 65 {
		t.Fatalf("key after build: %v %v", fi, err)
	}
	first, _ := os.ReadFile(key)
	if s, err = build(cfg, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	s.close()
	if again, _ := os.ReadFile(key); string(again) != string(first) {
		t.Error("a second start replaced the key")
	}
	os.WriteFile(cfgFile, []byte(strings.Replace(mustReadFile(t, cfgFile), "key_file: "+strconv.Quote(key)+", ", "", 1)), 0o600)
	if code, _, errOut := runCLI("validate", "-c", cfgFile); code != 1 || !strings.Contains(errOut, "audit.create_key: needs audit.key_file") {
		t.Errorf("create_key without key_file: %d %s", code, errOut)
	}
}

func mustReadFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestMetricsInitialised: every counter and gauge an alert or the
// dashboard reads is there, at 0, before its first event (a counter that
// appears at 1 hides that event from rate()), and labels are bounded.
func TestMetricsInitialised(t *testing.T) {
	dir := t.TempDir()
	cf := tlsFiles(t, dir)
	policies, _ := filepath.Abs("../../policies")
	key := filepath.Join(dir, "audit.key")
	os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef\n"), 0o600)
	cfg, err := parseConfig(fmt.Appendf(nil, `
listeners: [{name: imaps, address: "127.0.0.1:0", mode: tls}, {name: imap, address: "127.0.0.1:0", mode: starttls}]
tls: {certificates: [{cert: %s, key: %s}]}
backends: {main: {address: "127.0.0.1:143", security: plain}}
policy: {dirs: [{path: %q}], poll_interval: -1s}
audit: {path: %q, key_file: %q}
`, cf.Cert, cf.Key, policies, filepath.Join(dir, "audit.jsonl"), key))
	if err != nil {
		t.Fatal(err)
	}
	s, err := build(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	text := gatherText(t, s.reg)
	for _, want := range []string{
		`imapwarden_connections_total{listener="imap"} 0`,
		`imapwarden_sessions_active{listener="imaps"} 0`,
		`imapwarden_tls_handshakes_total{listener="imaps",result="failed",version=""} 0`,
		`imapwarden_auth_attempts_total{mechanism="PLAIN",result="limit"} 0`,
		`imapwarden_commands_total{command="DELETE",result="denied"} 0`,
		`imapwarden_limit_hits_total{key="ip",limit="login_failures_per_ip"} 0`,
		`imapwarden_limit_hits_total{key="session",limit="max_buffered_literal"} 0`,
		`imapwarden_backend_dials_total{backend="main",result="failed"} 0`,
		`imapwarden_security_events_total{kind="starttls-injection"} 0`,
		`imapwarden_security_events_total{kind="backend-protocol-error"} 0`,
		`imapwarden_security_events_total{kind="backend-timeout"} 0`,
		`imapwarden_backend_protocol_errors_total{backend="main",fault="protocol"} 0`,
		`imapwarden_backend_protocol_errors_total{backend="main",fault="timeout"} 0`,
		`imapwarden_policy_denies_total{mode="enforced",policy="protected_folders"} 0`,
		`imapwarden_policy_denies_total{mode="shadow",policy="legal_hold"} 0`,
		`imapwarden_policy_errors_total 0`,
		`imapwarden_reloads_total{component="policy",result="failed"} 0`,
		`imapwarden_reload_success{component="config"} 1`,
		`imapwarden_lockouts_active{key="user_ip"} 0`,
		`imapwarden_audit_healthy 1`,
		`imapwarden_audit_dropped_total 0`,
		`imapwarden_certificate_expiry_timestamp_seconds{name="imap.example.com",source="file"} `,
		`imapwarden_build_info{goversion="`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// Bounded labels: no value from a client (addresses, users, mailboxes).
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, "127.0.0.1") || strings.Contains(l, "INBOX") || strings.Contains(l, "alice") {
			t.Errorf("unbounded label value: %s", l)
		}
	}
	problems, err := testutil.GatherAndLint(s.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric lint: %s: %s", p.Metric, p.Text)
	}
}

// TestPolicyDeniesLabelBounded: the policy label takes the names Rego
// writes, but at most policy.MaxPolicyNames of them.
func TestPolicyDeniesLabelBounded(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p.rego"), []byte(`package imapwarden
deny contains {"policy": sprintf("p%s", [input.command.mailbox])} if input.command.name == "DELETE"
`), 0o644)
	cf := tlsFiles(t, dir)
	cfg, err := parseConfig(fmt.Appendf(nil, `
listeners: [{address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %s, key: %s}]}
backends: {main: {address: "127.0.0.1:143", security: plain}}
policy: {dirs: [{path: %q}], poll_interval: -1s, cache_size: -1}
`, cf.Cert, cf.Key, dir))
	if err != nil {
		t.Fatal(err)
	}
	s, err := build(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	for i := range 3 * policy.MaxPolicyNames {
		var cp imapwire.CommandParser
		if err := cp.Line(fmt.Appendf(nil, "a DELETE m%d\r\n", i), imapwire.Literal{}, false); err != nil {
			t.Fatal(err)
		}
		cmd := cp.Command()
		s.engine.Decide(context.Background(), &proxy.DecisionInput{Point: proxy.PointCommand, Session: &proxy.SessionInfo{User: "u", TLS: &proxy.TLSInfo{}}, Command: cmd})
	}
	n := strings.Count(gatherText(t, s.reg), `imapwarden_policy_denies_total{mode="enforced"`)
	if n > policy.MaxPolicyNames+1 {
		t.Errorf("%d policy label values after %d distinct names", n, 3*policy.MaxPolicyNames)
	}
	if !strings.Contains(gatherText(t, s.reg), `imapwarden_policy_denies_total{mode="enforced",policy="other"}`) {
		t.Error("no other bucket")
	}
}

// serveEnv is what the serve tests start from: the demo backend, a
// directory with self-signed TLS files, and the backend's address.
type serveEnv struct {
	dir, backend string
	cert         tlsterm.CertFile
}

func newServeEnv(t *testing.T) serveEnv {
	t.Helper()
	backendAddr, stopBackend, err := startDemoBackend(zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopBackend)
	dir := t.TempDir()
	return serveEnv{dir: dir, backend: backendAddr, cert: tlsFiles(t, dir)}
}

// buildFile writes text to dir/imapwarden.yaml, loads and builds it with a
// logger the test observes.
func (e serveEnv) buildFile(t *testing.T, text string) (s *setup, path string, log *zap.Logger, logs *observer.ObservedLogs) {
	t.Helper()
	path = filepath.Join(e.dir, "imapwarden.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	log = zap.New(zapcore.NewTee(core, zaptest.NewLogger(t).Core()))
	if s, err = build(cfg, log); err != nil {
		t.Fatal(err)
	}
	return s, path, log, logs
}

// serve runs s until the returned stop, which waits for runServe.
func serve(t *testing.T, s *setup, log *zap.Logger, hup <-chan os.Signal, reload func() (*setup, error)) (addrs []net.Addr, admin net.Addr, cancel func(), done <-chan error) {
	t.Helper()
	ctx, cancelCtx := context.WithCancel(context.Background())
	t.Cleanup(cancelCtx)
	d := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		d <- runServe(ctx, s, log, hup, reload, func(a []net.Addr, adm net.Addr) { addrs, admin = a, adm; close(started) })
	}()
	select {
	case <-started:
	case err := <-d:
		t.Fatalf("runServe: %v", err)
	}
	return addrs, admin, cancelCtx, d
}
