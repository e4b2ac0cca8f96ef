package deploytest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/imapwarden/imapwarden/internal/dovecottest"
)

// The packaged configurations must be secure as installed: the shipped
// policies enforced and an HMAC-chained audit trail written, without
// editing a file. These helpers run imapwarden from such a configuration in
// front of a real Dovecot and check both.

// startWait bounds the wait for "imapwarden started" on a loaded CI
// machine; the proxy is up in well under a second.
const startWait = 2 * time.Minute

// runningProxy is imapwarden started by a test from a shipped
// configuration.
type runningProxy struct {
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	log  bytes.Buffer
	// addrs are the bound addresses from the start log: listener names
	// and "admin".
	addrs map[string]string
}

// startProxy runs argv (imapwarden serve -c ..., maybe behind setpriv)
// and waits until it logs "imapwarden started" (JSON logs). It is stopped
// with SIGTERM at cleanup if the test did not stop it.
func startProxy(t *testing.T, argv ...string) *runningProxy {
	t.Helper()
	p := &runningProxy{cmd: exec.Command(argv[0], argv[1:]...), done: make(chan struct{})}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan map[string]any, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.log.Write(sc.Bytes())
			p.log.WriteByte('\n')
			p.mu.Unlock()
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "imapwarden started" {
				started <- rec
			}
		}
		io.Copy(io.Discard, stderr)
		p.cmd.Wait()
	}()
	t.Cleanup(func() { p.stop(t) })
	select {
	case rec := <-started:
		p.addrs = map[string]string{}
		for k, v := range rec {
			if s, ok := v.(string); ok && strings.Contains(s, ":") && k != "ts" && k != "msg" && k != "caller" {
				p.addrs[k] = s
			}
		}
	case <-p.done:
		t.Fatalf("%s exited before starting:\n%s", strings.Join(argv, " "), p.logs())
	case <-time.After(startWait):
		t.Fatalf("%s did not start within %v:\n%s", strings.Join(argv, " "), startWait, p.logs())
	}
	return p
}

func (p *runningProxy) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// stop sends SIGTERM and waits for the drain (after the lame-duck period)
// to end.
func (p *runningProxy) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(startWait):
		p.cmd.Process.Kill()
		<-p.done
		t.Errorf("imapwarden did not stop within %v of SIGTERM:\n%s", startWait, p.logs())
	}
}

// imapLine reads one line; the connection's deadline bounds it.
func imapLine(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	l, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v (after %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// imapCommand sends "tag cmd" and returns the tagged completion.
func imapCommand(t *testing.T, c net.Conn, r *bufio.Reader, tag, cmd string) string {
	t.Helper()
	if _, err := fmt.Fprintf(c, "%s %s\r\n", tag, cmd); err != nil {
		t.Fatal(err)
	}
	for {
		if l := imapLine(t, r); strings.HasPrefix(l, tag+" ") {
			return l
		}
	}
}

// checkRefusesDeleteInbox logs in through the proxy's implicit-TLS
// listener and checks that DELETE INBOX is refused by a shipped policy
// while an ordinary command goes through.
func checkRefusesDeleteInbox(t *testing.T, addr, user, password string) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // the package's self-signed certificate
	if err != nil {
		t.Fatalf("TLS to the proxy at %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(startWait))
	r := bufio.NewReader(c)
	if g := imapLine(t, r); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting %q", g)
	}
	if l := imapCommand(t, c, r, "a", fmt.Sprintf("LOGIN %s %s", user, password)); !strings.HasPrefix(l, "a OK") {
		t.Fatalf("LOGIN: %q", l)
	}
	if l := imapCommand(t, c, r, "b", "DELETE INBOX"); !strings.HasPrefix(l, "b NO [NOPERM]") {
		t.Errorf("DELETE INBOX: %q, want a refusal by the shipped policies", l)
	} else {
		t.Logf("DELETE INBOX: %s", l)
	}
	if l := imapCommand(t, c, r, "c", "SELECT INBOX"); !strings.HasPrefix(l, "c OK") {
		t.Errorf("SELECT INBOX: %q", l)
	}
	imapCommand(t, c, r, "d", "LOGOUT")
}

// checkHMACTrail checks that trail is an HMAC chain under key (verify
// passes with the key and refuses to go on without it) that holds the
// refused DELETE.
func checkHMACTrail(t *testing.T, bin, key, trail string) {
	t.Helper()
	out, errOut, err := tryCmd("", nil, bin, "audit", "verify", "-key", key, trail)
	if err != nil {
		t.Fatalf("audit verify -key: %v\n%s%s", err, out, errOut)
	}
	t.Logf("audit verify -key %s %s: %s", key, trail, strings.TrimSpace(out))
	if out, errOut, err := tryCmd("", nil, bin, "audit", "verify", trail); err == nil {
		t.Errorf("audit verify without the key passed: not an HMAC chain\n%s%s", out, errOut)
	}
	q := runCmd(t, "", nil, bin, "audit", "query", trail, "--command", "DELETE", "--format", "json")
	if !strings.Contains(q, `"INBOX"`) || !strings.Contains(q, "protected_folders") {
		t.Errorf("audit query --command DELETE lacks the refused DELETE INBOX:\n%s", q)
	}
	t.Logf("audit query %s --command DELETE:\n%s", trail, q)
}

// forward accepts on listen and copies each connection to target, for a
// backend that must answer on a fixed address (the package's 127.0.0.1:143).
func forward(t *testing.T, listen, target string) {
	t.Helper()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatalf("listen on %s for the backend: %v", listen, err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				b, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer b.Close()
				go func() { io.Copy(b, c); b.(*net.TCPConn).CloseWrite() }()
				io.Copy(c, b)
			})
		}
	})
}

// shippedRoot lays out what a packaged configuration expects under / in a
// temporary directory: the TLS files, the repository's policies (as the
// image and the package ship them) and the writable directories. It
// returns the root and rewrites cfg's absolute paths into it.
func shippedRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"etc/imapwarden/tls", "etc/imapwarden/admin", "etc/imapwarden/metrics", "etc/imapwarden/audit", "var/log/imapwarden", "var/lib/imapwarden"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeTLSFiles(t, filepath.Join(root, "etc/imapwarden/tls"))
	copyTree(t, filepath.Join(repoRoot, "policies"), filepath.Join(root, "etc/imapwarden/policies"))
	return root
}

// rootConfig rewrites a shipped configuration to run from root: its paths
// moved under root, its listeners on 127.0.0.1 ephemeral ports, and its
// backend "main" at a Dovecot of the test (with that Dovecot's CA). Nothing
// else changes: what is enforced and audited is what ships.
func rootConfig(t *testing.T, text, root string, d *dovecottest.Server) string {
	t.Helper()
	for _, dir := range []string{"/etc/imapwarden/", "/var/log/imapwarden/", "/var/lib/imapwarden/"} {
		text = strings.ReplaceAll(text, dir, filepath.Join(root, dir)+"/")
	}
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
		t.Fatal(err)
	}
	for _, l := range cfg["listeners"].([]any) {
		l.(map[string]any)["address"] = "127.0.0.1:0"
	}
	if a, ok := cfg["admin"].(map[string]any); ok {
		a["address"] = "127.0.0.1:0"
	}
	main := cfg["backends"].(map[string]any)["main"].(map[string]any)
	main["address"] = d.Addr
	if main["security"] != "plain" {
		main["tls"] = map[string]any{"ca_file": d.CAFile}
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestHelmSecureDefaults: "helm template" with the default values gives a
// proxy that enforces the shipped policies (the image's, as no policies are
// in the chart) and writes an HMAC-chained trail under the key of the
// Secret the chart generated. The rendered files run from a temporary
// root; only the backend's address and CA (where the test's Dovecot is)
// and the listeners' ports are changed.
func TestHelmSecureDefaults(t *testing.T) {
	dovecottest.Require(t)
	bin := needBinary(t)
	r := mustTemplate(t, filepath.Join(repoRoot, chartPath))
	cfgText, _ := get(r.find("ConfigMap", "rel-imapwarden"), "data").(obj)["imapwarden.yaml"].(string)
	root := shippedRoot(t)
	secrets := map[string]string{
		"rel-imapwarden-admin-token":   "etc/imapwarden/admin/token",
		"rel-imapwarden-metrics-token": "etc/imapwarden/metrics/token",
		"rel-imapwarden-audit-key":     "etc/imapwarden/audit/key",
	}
	for name, file := range secrets {
		sec := r.find("Secret", name)
		if sec == nil {
			t.Fatalf("no Secret %s: %v", name, r.kinds())
		}
		for _, v := range get(sec, "data").(obj) {
			b, err := base64.StdEncoding.DecodeString(v.(string))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, file), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The Secret is mounted where the configuration reads the key.
	dep := r.find("Deployment", "rel-imapwarden")
	var cfg obj
	if err := yaml.Unmarshal([]byte(cfgText), &cfg); err != nil {
		t.Fatal(err)
	}
	keyFile := getString(cfg, "audit.key_file")
	mounted := false
	for _, m := range getList(dep, "spec.template.spec.containers")[0].(obj)["volumeMounts"].([]any) {
		if getString(m, "mountPath") == filepath.Dir(keyFile) {
			v := named(getList(dep, "spec.template.spec.volumes"), getString(m, "name"))
			mounted = getString(v, "secret.secretName") == "rel-imapwarden-audit-key"
		}
	}
	if !mounted || keyFile == "" || len(getList(cfg, "policy.dirs")) == 0 || getString(cfg, "audit.path") == "" {
		t.Fatalf("the chart's configuration is not secure by default: audit %v, policy %v, key mounted %v", get(cfg, "audit"), get(cfg, "policy"), mounted)
	}

	d := dovecottest.Start(t, dovecottest.Options{})
	path := filepath.Join(root, "etc/imapwarden/config/imapwarden.yaml")
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, []byte(rootConfig(t, cfgText, root, d)), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, bin, "serve", "-c", path)
	checkRefusesDeleteInbox(t, p.addrs["imaps"], "alice", dovecottest.DefaultUsers()["alice"])
	checkAdminTokens(t, p.addrs["admin"], filepath.Join(root, secrets["rel-imapwarden-admin-token"]), filepath.Join(root, secrets["rel-imapwarden-metrics-token"]))
	p.stop(t)
	checkHMACTrail(t, bin, filepath.Join(root, "etc/imapwarden/audit/key"), filepath.Join(root, "var/log/imapwarden/audit.jsonl"))
}

// imageConfig is the configuration the image ships as
// /etc/imapwarden/imapwarden.yaml.
const imageConfig = "deploy/image/imapwarden.yaml"

// TestImageSecureDefaults: the image's own configuration enforces the
// shipped policies and writes an HMAC-chained trail, whose key the proxy
// makes at its first start (a container has no install step), and the
// Dockerfile installs that configuration where CMD reads it.
func TestImageSecureDefaults(t *testing.T) {
	dovecottest.Require(t)
	bin := needBinary(t)
	if !strings.Contains(readFile(t, "deploy/Dockerfile"), "cp "+imageConfig+" /out/etc/imapwarden/imapwarden.yaml") {
		t.Errorf("deploy/Dockerfile does not install %s as /etc/imapwarden/imapwarden.yaml", imageConfig)
	}
	text := readFile(t, imageConfig)
	if stderr, err := validateConfig(t, "imapwarden.yaml", text); err != nil || stderr != "" {
		t.Errorf("validate %s: %v\n%s", imageConfig, err, stderr)
	}
	root := shippedRoot(t)
	d := dovecottest.Start(t, dovecottest.Options{})
	path := filepath.Join(root, "etc/imapwarden/imapwarden.yaml")
	if err := os.WriteFile(path, []byte(rootConfig(t, text, root, d)), 0o644); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(root, "var/lib/imapwarden/audit.key")
	p := startProxy(t, bin, "serve", "-c", path)
	fi, err := os.Stat(key)
	if err != nil || fi.Mode() != 0o600 {
		t.Fatalf("the first start made no key readable by its owner only: %v %v", fi, err)
	}
	k := mustRead(t, key)
	checkRefusesDeleteInbox(t, p.addrs["imaps"], "alice", dovecottest.DefaultUsers()["alice"])
	p.stop(t)
	checkHMACTrail(t, bin, key, filepath.Join(root, "var/log/imapwarden/audit.jsonl"))

	// A restart keeps the key: the trail goes on under it.
	p = startProxy(t, bin, "serve", "-c", path)
	p.stop(t)
	if !bytes.Equal(mustRead(t, key), k) {
		t.Error("a restart replaced the audit key")
	}
	checkHMACTrail(t, bin, key, filepath.Join(root, "var/log/imapwarden/audit.jsonl"))
}

var registry struct {
	once    sync.Once
	metrics map[string]metric
}

// registryMetrics runs the proxy from the image's configuration (policies,
// audit trail and rate limits on) in front of Dovecot, drives one session
// through it so that histograms have observations, and reads /metrics:
// the families, their kinds and label names. Every counter is initialised,
// so a family missing here is one the proxy does not export.
func registryMetrics(t *testing.T) map[string]metric {
	t.Helper()
	registry.once.Do(func() {
		dovecottest.Require(t)
		bin := needBinary(t)
		root := shippedRoot(t)
		d := dovecottest.Start(t, dovecottest.Options{})
		path := filepath.Join(root, "etc/imapwarden/imapwarden.yaml")
		if err := os.WriteFile(path, []byte(rootConfig(t, readFile(t, imageConfig), root, d)), 0o644); err != nil {
			t.Fatal(err)
		}
		p := startProxy(t, bin, "serve", "-c", path)
		checkRefusesDeleteInbox(t, p.addrs["imaps"], "alice", dovecottest.DefaultUsers()["alice"])
		resp, err := http.Get("http://" + p.addrs["admin"] + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("/metrics: %d %v", resp.StatusCode, err)
		}
		registry.metrics = parseExposition(string(body))
	})
	if registry.metrics == nil {
		t.Fatal("no registry (an earlier test failed to read it)")
	}
	return registry.metrics
}

// parseExposition reads the families of the text format: kind from # TYPE,
// label names (but le) from the series.
func parseExposition(text string) map[string]metric {
	out := map[string]metric{}
	kinds := map[string]string{}
	labelRe := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="`)
	for _, l := range strings.Split(text, "\n") {
		if f := strings.Fields(l); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			kinds[f[2]] = f[3]
			out[f[2]] = metric{kind: f[3]}
			continue
		}
		if l == "" || l[0] == '#' {
			continue
		}
		name, labels, _ := strings.Cut(l, "{")
		name = strings.Fields(name)[0]
		base := name
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suf); ok && kinds[b] == "histogram" {
				base = b
			}
		}
		m := out[base]
		for _, lm := range labelRe.FindAllStringSubmatch(labels, -1) {
			if lm[1] != "le" && !slices.Contains(m.labels, lm[1]) {
				m.labels = append(m.labels, lm[1])
			}
		}
		out[base] = m
	}
	return out
}

// TestAlertRules: deploy/prometheus/imapwarden-rules.yaml is valid rule
// YAML whose every expression uses metrics and labels of the registry.
func TestAlertRules(t *testing.T) {
	exported = registryMetrics(t)
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(strings.NewReader(readFile(t, "deploy/prometheus/imapwarden-rules.yaml")))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %+v lacks alert, expr, severity or summary", r)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for %q: %v", r.Alert, r.For, err)
				}
			}
			if used := exprMetrics(t, "alert "+r.Alert, r.Expr); len(used) == 0 {
				t.Errorf("%s uses no imapwarden metric: %s", r.Alert, r.Expr)
			}
		}
	}
	if n < 4 {
		t.Errorf("%d rules", n)
	}
}
