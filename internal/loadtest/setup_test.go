package loadtest

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/internal/testenv"
)

// TestDeployedSetup checks that BenchmarkVsHAProxy measures what it says:
// imapwarden enforces the shipped policies and writes a keyed, verifiable
// audit trail, its rate limits are out of the load's reach, haproxy relays
// over TLS, and both processes' CPU and memory can be read.
func TestDeployedSetup(t *testing.T) {
	haproxy := testenv.NeedTool(t, "haproxy")
	dc := dovecottest.Start(t, dovecottest.Options{})
	d := newDeployment(t, dc.Addr)
	iw, hp := d.startImapwarden(t), d.startHAProxy(t, haproxy)
	// With the systemd unit's environment, as deployed.
	if !slices.ContainsFunc(d.env, func(kv string) bool { return strings.HasPrefix(kv, "GODEBUG=") }) {
		t.Fatalf("no GODEBUG in the systemd unit's environment %q", d.env)
	}
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", iw.pid()))
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range d.env {
		if !slices.Contains(strings.Split(string(environ), "\x00"), kv) {
			t.Errorf("imapwarden runs without %s", kv)
		}
	}

	c, err := session(iw.addr, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if _, _, err := c.do("CREATE Sent"); err != nil {
		t.Fatal(err)
	}
	// Dovecot would delete it: only protected_folders refuses.
	if _, _, err := c.do("DELETE Sent"); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("DELETE Sent: %v, want the protected_folders policy's NO [NOPERM]", err)
	}
	// sessions_per_user is 30 by default.
	var more []*conn
	defer func() { closeAll(more) }()
	for i := range 31 {
		c, err := session(iw.addr, "")
		if err != nil {
			t.Fatalf("session %d of alice: %v", i+2, err)
		}
		more = append(more, c)
	}
	out, err := exec.Command(imapwardenBinary(t), "audit", "verify", "-key", filepath.Join(iw.dir, "audit.key"),
		filepath.Join(iw.dir, "audit.jsonl")).CombinedOutput()
	if err != nil {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
	trail, err := os.ReadFile(filepath.Join(iw.dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(trail), "protected_folders") {
		t.Errorf("the audit trail does not record the refusal:\n%s", trail)
	}

	h, err := session(hp.addr, "INBOX")
	if err != nil {
		t.Fatalf("through haproxy: %v", err)
	}
	defer h.close()
	if _, _, err := h.do("NOOP"); err != nil {
		t.Fatalf("through haproxy: %v", err)
	}
	for _, s := range []*server{iw, hp} {
		if cpu := cpuTime(t, s.pid()); cpu <= 0 {
			t.Errorf("%s: CPU time %v", s.name, cpu)
		}
		if rss := rssKiB(t, s.pid()); rss <= 0 {
			t.Errorf("%s: RSS %d KiB", s.name, rss)
		}
	}
}

// TestConfigMirrorsPackage keeps the measured configuration the one the
// Debian package installs: every key of deploy/deb/imapwarden.yaml, with
// its value where it is not a path or an address of this machine; the only
// additions are pprof, the audit fsync settings (their defaults, spelled
// out) and the raised rate limits.
func TestConfigMirrorsPackage(t *testing.T) {
	pkg, err := os.ReadFile(filepath.Join("..", "..", "deploy", "deb", "imapwarden.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	d := &deployment{backend: "127.0.0.1:1430", policies: "/p"}
	dir := t.TempDir()
	ours := d.imapwardenConfig(t, dir, "127.0.0.1:9930", "127.0.0.1:9143")
	want, got := flatten(t, pkg), flatten(t, []byte(ours))
	local := map[string]bool{
		"listeners.0.address": true, "tls.certificates.0.cert": true, "tls.certificates.0.key": true,
		"backends.main.address": true, "admin.address": true, "policy.dirs.0.path": true,
		"audit.path": true, "audit.key_file": true, "admin.token_file": true, "admin.tokens.0.file": true,
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("%s: in the package's configuration, not in the benchmark's", k)
		case !local[k] && g != want[k]:
			t.Errorf("%s: %s in the benchmark, %s in the package", k, g, want[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok && k != "admin.pprof" && k != "audit.fsync" && k != "audit.fsync_interval" && !strings.HasPrefix(k, "rate_limits.") {
			t.Errorf("%s: only in the benchmark's configuration", k)
		}
	}
	if got["policy.dirs.0.path"] != d.policies {
		t.Errorf("policy.dirs: %s, want the whole policies tree %s", got["policy.dirs.0.path"], d.policies)
	}
}

// flatten maps each leaf of a YAML document to its value: "a.b.0.c" → "v".
func flatten(t *testing.T, doc []byte) map[string]string {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(doc, &v); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				walk(strings.TrimPrefix(prefix+"."+k, "."), e)
			}
		case []any:
			for i, e := range v {
				walk(fmt.Sprintf("%s.%d", prefix, i), e)
			}
		default:
			out[prefix] = fmt.Sprint(v)
		}
	}
	walk("", v)
	return out
}

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and parentheses; utime 250, stime 50.
	stat := []byte("4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 0 0")
	d, err := parseStatCPU(stat, 100)
	if err != nil || d != 3*time.Second {
		t.Fatalf("parseStatCPU: %v, %v; want 3s", d, err)
	}
	if _, err := parseStatCPU([]byte("4242 (x) S 1"), 100); err == nil {
		t.Error("a short stat line parsed")
	}
	if d, err := parseStatCPU(stat, 1000); err != nil || d != 300*time.Millisecond {
		t.Errorf("at 1000 Hz: %v, %v", d, err)
	}
}
