package difftest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/audit"
	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/tlsterm"
)

// The proxy under test is the imapwarden binary itself, built from this
// tree (with the race detector when the tests have it) and run with
// "serve -c" on a configuration file: proxy.NewServer with the shipped
// policies under policy.Engine, the rate limiter and the hash-chained audit
// trail exactly as a deployment wires them. The harness reads the trail the
// binary writes and runs "imapwarden audit query" on it.

// BinEnv names a prebuilt imapwarden binary to test instead of building
// this tree's, and PoliciesEnv the policies directory to load instead of
// this tree's policies/: how the harness and the attacks are run against
// the code of another commit (the policies must match its binary).
const (
	BinEnv      = "IMAPWARDEN_DIFFTEST_BIN"
	PoliciesEnv = "IMAPWARDEN_DIFFTEST_POLICIES"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

// Binary returns the imapwarden binary under test, building it once per
// test process.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(BinEnv); p != "" {
		return p
	}
	buildOnce.Do(func() {
		goBin, err := testenv.LookTool("go")
		if err != nil {
			goBin = "/usr/local/go/bin/go"
		}
		buildDir, buildErr = os.MkdirTemp("", "difftest-bin")
		if buildErr != nil {
			return
		}
		bin := filepath.Join(buildDir, "imapwarden")
		args := []string{"build", "-o", bin}
		if testenv.Race() {
			args = append(args, "-race")
		}
		args = append(args, "github.com/imapwarden/imapwarden/cmd/imapwarden")
		cmd := exec.Command(goBin, args...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		buildBin = bin
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

// CleanupBinary removes the binary Binary built (TestMain calls it).
func CleanupBinary() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// ProxyConfig is what differs between the proxies the tests run.
type ProxyConfig struct {
	BackendAddr string // implicit TLS
	BackendCA   string // PEM file
	// PolicyData replaces the data.yaml of shipped policies, by directory.
	PolicyData map[string]string
	// Policies adds files to the policy tree, by path under it
	// ("nocontent/nocontent.rego"): a policy of the test's own.
	Policies map[string]string
	// Groups is the groups file: group -> users.
	Groups map[string][]string
	// RateLimits is YAML for rate_limits, added to the harness's own
	// (per-session and per-user command rates and connection rates off).
	RateLimits string
}

// Proxy is a running imapwarden.
type Proxy struct {
	Addr      string // implicit TLS listener
	AuditPath string
	Dir       string
	bin       string
	cmd       *exec.Cmd
	logPath   string
	done      chan struct{}
}

// policiesDir is the repository's policies/, from this package.
const policiesDir = "../../policies"

// StartProxy writes a configuration and runs imapwarden serve; the test's
// cleanup stops it and fails the test if the proxy reported a data race or
// a panic.
func StartProxy(t testing.TB, pc ProxyConfig) *Proxy {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	p := &Proxy{Dir: dir, bin: bin, AuditPath: filepath.Join(dir, "audit.jsonl"), logPath: filepath.Join(dir, "proxy.log"), done: make(chan struct{})}

	// The shipped policies, with this test's data.
	pol := filepath.Join(dir, "policies")
	src := policiesDir
	if p := os.Getenv(PoliciesEnv); p != "" {
		src = p
	}
	if err := os.CopyFS(pol, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	for f, text := range pc.Policies {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(pol, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pol, f), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for d, data := range pc.PolicyData {
		if err := os.WriteFile(filepath.Join(pol, d, "data.yaml"), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var groups strings.Builder
	for _, g := range slices.Sorted(maps.Keys(pc.Groups)) {
		fmt.Fprintf(&groups, "%s: [%s]\n", g, strings.Join(pc.Groups[g], ", "))
	}
	groupsFile := filepath.Join(dir, "groups.yaml")
	if err := os.WriteFile(groupsFile, []byte(groups.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := tlsterm.SelfSigned([]string{"localhost", "127.0.0.1"}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	rl := "rate_limits:\n  connections_per_ip: off\n  connections_per_subnet: off\n  commands_per_session: off\n  commands_per_user: off\n  login_failure_delay: 1ms\n"
	for _, l := range strings.Split(strings.TrimSpace(pc.RateLimits), "\n") {
		if l != "" {
			rl += "  " + l + "\n"
		}
	}
	cfg := fmt.Sprintf(`hostname: difftest
log: {level: info, format: json}
drain_timeout: 2s
listeners: [{name: imaps, address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %q, key: %q}]}
backends:
  be: {address: %q, security: tls, tls: {ca_file: %q, server_name: localhost}}
admin: {address: ""}
policy: {dirs: [{path: %q}], groups_file: %q, poll_interval: -1s}
audit: {path: %q, fsync: interval, on_full: block}
%s`, certFile, keyFile, pc.BackendAddr, pc.BackendCA, pol, groupsFile, p.AuditPath, rl)
	cfgFile := filepath.Join(dir, "imapwarden.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "serve", "-c", cfgFile)
	p.cmd.Env = append(os.Environ(), "GORACE=halt_on_error=0")
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pipe, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The log is copied to a file; the start line gives the address.
	started := make(chan string, 1)
	go func() {
		defer logf.Close()
		br := bufio.NewReader(pipe)
		for {
			l, err := br.ReadBytes('\n')
			logf.Write(l)
			if a := startedAddr(l); a != "" {
				started <- a
			}
			if err != nil {
				break
			}
		}
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t) })
	select {
	case p.Addr = <-started:
	case <-p.done:
		t.Fatalf("imapwarden ended before listening:\n%s", p.Log())
	case <-time.After(testenv.IOTimeout()):
		t.Fatalf("imapwarden did not start:\n%s", p.Log())
	}
	return p
}

// startedAddr returns the listener's address if l is the "imapwarden
// started" log line.
func startedAddr(l []byte) string {
	var m map[string]any
	if json.Unmarshal(l, &m) != nil || m["msg"] != "imapwarden started" {
		return ""
	}
	a, _ := m["imaps"].(string)
	return a
}

// Log returns the proxy's log.
// Login dials the proxy, logs user in with the fixtures' password
// (user + "-pw") and closes the connection when the test ends.
func (p *Proxy) Login(t testing.TB, user string) *Conn {
	t.Helper()
	cn, _, err := Dial(p.Addr, &tls.Config{InsecureSkipVerify: true}, testenv.IOTimeout())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cn.Close)
	if _, err := cn.OK("l", "LOGIN %s %s-pw", user, user); err != nil {
		t.Fatal(err)
	}
	return cn
}

func (p *Proxy) Log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// SessionLog returns the proxy's log lines that name session id.
func (p *Proxy) SessionLog(id string) string {
	var b strings.Builder
	for line := range strings.Lines(p.Log()) {
		if strings.Contains(line, id) {
			b.WriteString(line)
		}
	}
	return b.String()
}

func (p *Proxy) stop(t testing.TB) {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(testenv.IOTimeout()):
		p.cmd.Process.Kill()
		<-p.done
	}
	l := p.Log()
	for _, bad := range []string{"WARNING: DATA RACE", "panic:", "fatal error:"} {
		if i := strings.Index(l, bad); i >= 0 {
			t.Errorf("imapwarden reported %q:\n%s", bad, firstLines(l[i:], 120))
			return
		}
	}
}

// firstLines returns the first n lines of s.
func firstLines(s string, n int) string {
	l := strings.SplitN(s, "\n", n+1)
	return strings.Join(l[:min(n, len(l))], "\n")
}

// AuditReader reads the trail as the proxy appends to it.
type AuditReader struct {
	path string
	off  int64
	part []byte
}

// Audit returns a reader of the proxy's trail from its current end.
func (p *Proxy) Audit() *AuditReader {
	r := &AuditReader{path: p.AuditPath}
	r.Read()
	return r
}

// Read returns the records appended since the last Read.
func (r *AuditReader) Read() []*audit.Record {
	f, err := os.Open(r.path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(r.off, io.SeekStart); err != nil {
		return nil
	}
	b, _ := io.ReadAll(f)
	r.off += int64(len(b))
	b = append(r.part, b...)
	var out []*audit.Record
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break
		}
		if rec, err := audit.ParseRecord(b[:i]); err == nil {
			out = append(out, rec)
		}
		b = b[i+1:]
	}
	r.part = append([]byte(nil), b...)
	return out
}

// Wait waits until the trail grows past what was read, up to d; it
// reports whether it did.
func (r *AuditReader) Wait(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if fi, err := os.Stat(r.path); err == nil && fi.Size() > r.off {
			return true
		}
		time.Sleep(5 * time.Millisecond) // polls the file for growth
	}
	return false
}

// AuditQuery runs "imapwarden audit query FILE --format json args..." and
// returns the records it printed.
func (p *Proxy) AuditQuery(t testing.TB, args ...string) []*audit.Record {
	t.Helper()
	cmd := exec.Command(p.bin, append([]string{"audit", "query", p.AuditPath, "--format", "json"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || errb.Len() > 0 {
			t.Fatalf("audit query %v: %v\n%s", args, err, errb.String())
		}
	}
	var recs []*audit.Record
	sc := bufio.NewScanner(&out)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		rec, err := audit.ParseRecord(sc.Bytes())
		if err != nil {
			t.Fatalf("audit query printed %q: %v", sc.Text(), err)
		}
		recs = append(recs, rec)
	}
	return recs
}
