package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/tlsterm"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"os/exec"
	"regexp"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestValidateCommand(t *testing.T) {
	example := exampleConfig(t)
	code, out, errOut := runCLI("validate", "-c", example)
	if code != 0 || out != "ok\n" {
		t.Fatalf("validate example: code %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, example+": warning: backends.legacy.tls.insecure:") {
		t.Errorf("no warning for the insecure backend:\n%s", errOut)
	}

	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("listeners: [{address: \":993\", mode: ssl}]\nbackends: {main: {address: \"h:993\", security: tls}}\nroutes: {default: other}\n"), 0o644)
	code, out, errOut = runCLI("validate", "-c", bad)
	if code != 1 || out != "" {
		t.Errorf("bad config: code %d, stdout %q", code, out)
	}
	for _, want := range []string{bad + ": 3 problems", "listeners[0].mode", "tls.certificates", `routes.default: no backend named "other"`} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}

	os.WriteFile(bad, []byte("hostname: x\nlistener: []\n"), 0o644)
	if code, _, errOut = runCLI("validate", "-c", bad); code != 1 || !strings.Contains(errOut, bad+`:2: listener: unknown key (did you mean "listeners"?)`) {
		t.Errorf("unknown key: code %d, stderr %q", code, errOut)
	}
	if code, _, errOut = runCLI("validate", "-c", filepath.Join(dir, "missing.yaml")); code != 1 || !strings.Contains(errOut, "missing.yaml") {
		t.Errorf("missing file: code %d, stderr %q", code, errOut)
	}
	if code, _, errOut = runCLI("validate"); code != 2 || !strings.Contains(errOut, "-c FILE is required") {
		t.Errorf("no -c: code %d, stderr %q", code, errOut)
	}
}

func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		code       int
		stdout     []string
		stderr     []string
		stdoutNone bool
	}{
		{args: nil, code: 2, stderr: []string{"Commands:", "serve", "validate", "demo", "version"}},
		{args: []string{"help"}, code: 0, stdout: []string{"Commands:", "serve", "demo"}},
		{args: []string{"-h"}, code: 0, stdout: []string{"Commands:"}},
		{args: []string{"help", "serve"}, code: 0, stdout: []string{"imapwarden serve -c FILE", "-backend", "imap+starttls://", "SIGHUP", "-send-id"}},
		{args: []string{"serve", "-h"}, code: 0, stdout: []string{"imapwarden serve -c FILE", "-starttls ADDR"}},
		{args: []string{"demo", "--help"}, code: 0, stdout: []string{"demo-password", "-imaps ADDR", "127.0.0.1:9993"}},
		{args: []string{"help", "validate"}, code: 0, stdout: []string{"without listening"}},
		{args: []string{"help", "nope"}, code: 2, stderr: []string{`unknown command "nope"`}},
		{args: []string{"nope"}, code: 2, stderr: []string{`unknown command "nope"`, "Commands:"}},
		{args: []string{"serve", "--bogus"}, code: 2, stderr: []string{"flag provided but not defined: -bogus", "imapwarden help serve"}, stdoutNone: true},
		{args: []string{"serve", "extra"}, code: 2, stderr: []string{`unexpected argument "extra"`}},
		{args: []string{"serve"}, code: 2, stderr: []string{"need -c FILE"}},
		{args: []string{"serve", "-c", "x.yaml", "--imaps", ":993"}, code: 2, stderr: []string{"mutually exclusive"}},
		{args: []string{"serve", "-c", "x.yaml", "--admin", ""}, code: 2, stderr: []string{"mutually exclusive"}},
		{args: []string{"serve", "--imaps", ":993"}, code: 2, stderr: []string{"--backend URL is required", "--cert FILE"}},
		{args: []string{"serve", "--log-level", "loud", "-c", "x.yaml"}, code: 2, stderr: []string{`--log-level: unknown level "loud"`}},
		{args: []string{"serve", "-c", "/nonexistent/imapwarden.yaml"}, code: 1, stderr: []string{"read config", "/nonexistent/imapwarden.yaml"}},
		{args: []string{"version"}, code: 0, stdout: []string{"imapwarden ", runtime.Version()}},
		{args: []string{"--version"}, code: 0, stdout: []string{"imapwarden "}},
		{args: []string{"demo", "--imaps", "", "--starttls", ""}, code: 1, stderr: []string{"both listeners are off"}},
		{args: []string{"demo", "--log-level", "loud"}, code: 2, stderr: []string{"unknown level"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := runCLI(tc.args...)
			if code != tc.code {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errOut)
			}
			for _, w := range tc.stdout {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.stderr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			if tc.stdoutNone && out != "" {
				t.Errorf("stdout not empty: %s", out)
			}
		})
	}
}

func TestVersionFromLdflags(t *testing.T) {
	defer func(v, c, d string) { version, commit, date = v, c, d }(version, commit, date)
	version, commit, date = "v9.8.7", "0123456789abcdef0123456789abcdef01234567", "2026-12-06T10:00:00Z"
	want := "imapwarden v9.8.7\ncommit 0123456789abcdef0123456789abcdef01234567\ndate 2026-12-06T10:00:00Z\n" + runtime.Version()
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		if code, out, _ := runCLI(args...); code != 0 || !strings.HasPrefix(out, want) {
			t.Errorf("%v: code %d, out %q, want %q...", args, code, out, want)
		}
	}
	// build_info carries the revision too.
	if body := gatherText(t, newRegistry()); !strings.Contains(body, `imapwarden_build_info{goversion="`+runtime.Version()+`",revision="0123456789abcdef0123456789abcdef01234567",version="v9.8.7"} 1`) {
		t.Errorf("build_info:\n%s", body)
	}
}

// TestVersionFromBuildInfo: without -ldflags, a binary built from a git
// checkout reports the commit and its date from the toolchain's VCS stamp.
func TestVersionFromBuildInfo(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git")
	}
	head, err := exec.Command(git, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	// The toolchain stamps only a checkout whose .git is a directory, not a
	// "git worktree" (.git is a file there).
	if st, err := os.Stat("../../.git"); err != nil || !st.IsDir() {
		t.Skip("not a plain git checkout (a worktree?): the toolchain records no VCS data")
	}
	bin := filepath.Join(t.TempDir(), "imapwarden")
	if out, err := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "\ncommit "+strings.TrimSpace(string(head))) || !regexp.MustCompile(`\ndate \d{4}-\d\d-\d\dT`).Match(out) {
		t.Errorf("--version of a checkout build:\n%s\nwant commit %s and its date", out, head)
	}
}

// imapConn is a minimal IMAP client for transcripts in tests.
type imapConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func (c *imapConn) line() string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	return l
}

// cmd sends a tagged command and returns the lines up to its completion,
// which must start with "tag want".
func (c *imapConn) cmd(tag, want, command string) []string {
	c.t.Helper()
	fmt.Fprintf(c.c, "%s %s\r\n", tag, command)
	var lines []string
	for {
		l := c.line()
		lines = append(lines, l)
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" "+want) {
				c.t.Fatalf("%s: got %q, want %s", command, l, want)
			}
			return lines
		}
	}
}

func leafSerial(t *testing.T, addr string) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"imap"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// TestServe runs the configuration path end to end: a config file with
// listeners on free ports in front of the in-memory backend, a login
// through it, certificate reloads on SIGHUP, and a drain.
func TestServe(t *testing.T) {
	baseline := runtime.NumGoroutine()
	backendAddr, stopBackend, err := startDemoBackend(zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer stopBackend()

	dir := t.TempDir()
	cf := tlsFiles(t, dir)
	cfgText := fmt.Sprintf(`
listeners:
  - {address: "127.0.0.1:0", mode: tls}
  - {address: "127.0.0.1:0", mode: starttls}
tls:
  certificates: [{cert: %s, key: %s}]
  reload_interval: 1h
backends:
  mem: {address: %q, security: plain}
drain_timeout: 5s
admin: {address: "127.0.0.1:0"}
`, cf.Cert, cf.Key, backendAddr)
	cfgFile := filepath.Join(dir, "imapwarden.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfigFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(zapcore.NewTee(core, zaptest.NewLogger(t).Core()))
	s, err := build(cfg, log)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hup := make(chan os.Signal)
	addrsc := make(chan []net.Addr, 1)
	var adminAddr net.Addr
	done := make(chan error, 1)
	reload := func() (*setup, error) {
		cfg, err := loadConfigFile(cfgFile)
		if err != nil {
			return nil, err
		}
		return build(cfg, log)
	}
	go func() {
		done <- runServe(ctx, s, log, hup, reload, func(a []net.Addr, adm net.Addr) { adminAddr = adm; addrsc <- a })
	}()
	var addrs []net.Addr
	select {
	case addrs = <-addrsc:
	case err := <-done:
		t.Fatalf("runServe: %v", err)
	}
	if len(addrs) != 2 {
		t.Fatalf("addresses %v", addrs)
	}
	if logs.FilterMessage("imapwarden started").Len() != 1 {
		t.Error("no start message")
	}

	// A session through the implicit TLS listener.
	tc, err := tls.Dial("tcp", addrs[0].String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	c := &imapConn{t: t, c: tc, r: bufio.NewReader(tc)}
	if g := c.line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting %q", g)
	}
	c.cmd("a", "OK", `LOGIN demo "demo-password"`)
	if lines := c.cmd("b", "OK", "SELECT INBOX"); !strings.Contains(strings.Join(lines, ""), "* 3 EXISTS") {
		t.Errorf("SELECT: %q", lines)
	}

	// The admin listener sees the session and counts it.
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
	if code, body := get("/sessions"); code != 200 || !strings.Contains(body, `"user": "demo"`) || !strings.Contains(body, `"selected": "INBOX"`) {
		t.Errorf("/sessions: %d %s", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, `imapwarden_connections_total{listener="imaps"} 1`) || !strings.Contains(body, "imapwarden_build_info{") {
		t.Errorf("/metrics: %d\n%s", code, body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	if code, body := get("/readyz"); code != 200 {
		t.Errorf("/readyz: %d %s", code, body)
	}
	if code, body := get("/loglevel"); code != 200 || !strings.Contains(body, "debug") && !strings.Contains(body, "info") {
		t.Errorf("/loglevel: %d %s", code, body)
	}
	c.cmd("c", "OK", "LOGOUT")
	tc.Close()

	// SIGHUP re-reads the configuration: a broken file keeps the running
	// one; a good one changes routing for new sessions.
	os.WriteFile(cfgFile, []byte(cfgText+"bogus_key: 1\n"), 0o600)
	hup <- os.Interrupt
	waitLog(t, logs, "configuration reload failed, keeping the running configuration")
	os.WriteFile(cfgFile, []byte(strings.Replace(cfgText, "mem: {address", "mem: {send_id: true, address", 1)), 0o600)
	hup <- os.Interrupt
	waitLog(t, logs, "configuration reloaded")

	// The STARTTLS listener refuses LOGIN before TLS (RFC 9051 §6.2.3).
	pc, err := net.Dial("tcp", addrs[1].String())
	if err != nil {
		t.Fatal(err)
	}
	p := &imapConn{t: t, c: pc, r: bufio.NewReader(pc)}
	p.line()
	p.cmd("a", "NO [PRIVACYREQUIRED]", `LOGIN demo "demo-password"`)
	pc.Close()

	// SIGHUP with new files: new handshakes get the new certificate.
	before := leafSerial(t, addrs[0].String())
	if _, err := tlsterm.WriteSelfSigned(dir, []string{"localhost"}); err != nil {
		t.Fatal(err)
	}
	n := logs.FilterMessage("tls certificates reloaded").Len()
	hup <- os.Interrupt // any signal value: runServe only receives
	for deadline := time.Now().Add(testenv.IOTimeout()); logs.FilterMessage("tls certificates reloaded").Len() == n; {
		if time.Now().After(deadline) {
			t.Fatal("no certificate reload")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if after := leafSerial(t, addrs[0].String()); after == before {
		t.Error("certificate not replaced after SIGHUP")
	}
	// SIGHUP with a broken file keeps the current certificate.
	current := leafSerial(t, addrs[0].String())
	os.WriteFile(cf.Cert, []byte("not a certificate"), 0o644)
	hup <- os.Interrupt
	waitLog(t, logs, "tls certificate reload failed, keeping the current certificates")
	if got := leafSerial(t, addrs[0].String()); got != current {
		t.Error("certificate changed after a failed reload")
	}

	// Shutting down with a session still in its TLS handshake is the
	// proxy's business (and races there today): wait for those to end, and
	// keep one logged-in session to be drained.
	waitSessionsClosed(t, logs)
	tc, err = tls.Dial("tcp", addrs[0].String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	c = &imapConn{t: t, c: tc, r: bufio.NewReader(tc)}
	c.line()
	c.cmd("a", "OK", `LOGIN demo "demo-password"`)
	c.cmd("b", "OK", "SELECT INBOX")
	cancel()
	if l := c.line(); !strings.HasPrefix(l, "* BYE [UNAVAILABLE]") {
		t.Errorf("drained session got %q, want * BYE [UNAVAILABLE]", l)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("runServe: %v", err)
		}
	case <-time.After(testenv.IOTimeout()):
		t.Fatal("runServe did not return")
	}
	if logs.FilterMessage("imapwarden stopped").Len() != 1 {
		t.Error("no stop message")
	}
	stopBackend()
	checkGoroutines(t, baseline)
}

func waitLog(t *testing.T, logs *observer.ObservedLogs, msg string) {
	t.Helper()
	deadline := time.Now().Add(testenv.IOTimeout())
	for logs.FilterMessage(msg).Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no log %q", msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitSessionsClosed waits until every session the audit log saw open was
// closed too.
func waitSessionsClosed(t *testing.T, logs *observer.ObservedLogs) {
	t.Helper()
	deadline := time.Now().Add(testenv.IOTimeout())
	for {
		opened, closed := logs.FilterMessage("session open").Len(), logs.FilterMessage("session close").Len()
		if opened == closed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions opened, %d closed", opened, closed)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gatherText renders a registry in the text exposition format.
func gatherText(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}
