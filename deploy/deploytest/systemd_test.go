package deploytest

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// unitFile is a parsed systemd unit: section → key → values in order.
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, text string) unitFile {
	t.Helper()
	u := unitFile{}
	section := ""
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		case section == "":
			t.Fatalf("line %d: %q outside a section", i+1, line)
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("line %d: %q is not key=value", i+1, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

// one returns the single value of a key, failing when it is missing or set
// more than once.
func (u unitFile) one(t *testing.T, section, key string) string {
	t.Helper()
	v := u[section][key]
	if len(v) != 1 {
		t.Errorf("[%s] %s set %d times, want once", section, key, len(v))
		return ""
	}
	return v[0]
}

const unitPath = "deploy/systemd/imapwarden.service"

// drainTimeouts are the lame_duck plus drain_timeout values of every
// configuration that ships (the Debian package's, the image's and the
// examples), and the default.
func drainTimeouts(t *testing.T) map[string]time.Duration {
	t.Helper()
	// The time SIGTERM takes is lame_duck (default 5s) then drain_timeout
	// (default 30s).
	out := map[string]time.Duration{"default": 35 * time.Second}
	files := []string{"deploy/deb/imapwarden.yaml", imageConfig}
	for _, e := range examples {
		files = append(files, "deploy/examples/"+e)
	}
	for _, f := range files {
		text := readFile(t, f)
		total := time.Duration(0)
		for key, def := range map[string]time.Duration{"drain_timeout": 30 * time.Second, "lame_duck": 5 * time.Second} {
			d := def
			if m := regexp.MustCompile(`(?m)^` + key + `:\s*(\S+)`).FindStringSubmatch(text); m != nil {
				var err error
				if d, err = time.ParseDuration(m[1]); err != nil {
					t.Fatalf("%s: %s %q: %v", f, key, m[1], err)
				}
			}
			total += d
		}
		out[f] = total
	}
	return out
}

// TestSystemdUnitProperties checks the unit's hardening and lifecycle by
// reading it, so that it holds even where systemd-analyze is missing.
func TestSystemdUnitProperties(t *testing.T) {
	u := parseUnit(t, readFile(t, unitPath))
	const svc = "Service"
	for key, want := range map[string]string{
		"User":                    "imapwarden",
		"Group":                   "imapwarden",
		"ExecStart":               "/usr/bin/imapwarden serve -c /etc/imapwarden/imapwarden.yaml",
		"ExecStartPre":            "/usr/bin/imapwarden validate -c /etc/imapwarden/imapwarden.yaml",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"NoNewPrivileges":         "yes",
		"CapabilityBoundingSet":   "CAP_NET_BIND_SERVICE",
		"AmbientCapabilities":     "CAP_NET_BIND_SERVICE",
		"StateDirectory":          "imapwarden",
		"LogsDirectory":           "imapwarden",
		"ConfigurationDirectory":  "imapwarden",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"KillSignal":              "SIGTERM",
	} {
		if got := u.one(t, svc, key); got != want {
			t.Errorf("%s=%s, want %s", key, got, want)
		}
	}
	if got := u[svc]["ExecReload"]; len(got) == 0 || got[len(got)-1] != "/bin/kill -HUP $MAINPID" {
		t.Errorf("ExecReload=%v: the last must be /bin/kill -HUP $MAINPID", got)
	}
	if got := u[svc]["SystemCallFilter"]; !slices.Contains(got, "@system-service") {
		t.Errorf("SystemCallFilter=%v lacks @system-service", got)
	}
	if u.one(t, svc, "LimitNOFILE") == "" {
		t.Error("no LimitNOFILE")
	}
	if got := u[svc]["DynamicUser"]; len(got) > 0 {
		t.Errorf("DynamicUser=%v: the package creates a static user, and TLS keys are readable by its group", got)
	}

	stop, err := time.ParseDuration(u.one(t, svc, "TimeoutStopSec"))
	if err != nil {
		t.Fatalf("TimeoutStopSec: %v", err)
	}
	for f, d := range drainTimeouts(t) {
		// The drain, then closing what is left and exiting.
		if stop < d+10*time.Second {
			t.Errorf("TimeoutStopSec=%v leaves under 10s after drain_timeout %v (%s)", stop, d, f)
		}
	}
	if got := u.one(t, "Install", "WantedBy"); got != "multi-user.target" {
		t.Errorf("WantedBy=%s", got)
	}
}

// TestSystemdAnalyze runs systemd-analyze verify on the unit, with
// /usr/bin/imapwarden replaced by the binary the tests built, and
// systemd-analyze security to keep the exposure level at 2.0 ("OK") or
// below. It also checks the sysusers.d file with systemd-sysusers in a
// scratch root.
func TestSystemdAnalyze(t *testing.T) {
	analyze := needCommand(t, "systemd-analyze", "systemd")
	bin := needBinary(t)
	dir := t.TempDir()
	text := strings.ReplaceAll(readFile(t, unitPath), "/usr/bin/imapwarden", bin)
	unit := filepath.Join(dir, "imapwarden.service")
	if err := os.WriteFile(unit, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	// --man=no: no man page lookups for Documentation=.
	out, errOut, err := tryCmd(dir, nil, analyze, "verify", "--man=no", unit)
	if err != nil || strings.TrimSpace(out+errOut) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s%s", err, out, errOut)
	}
	out, errOut, err = tryCmd(dir, nil, analyze, "security", "--offline=true", "--threshold=20", unit)
	if err != nil {
		t.Errorf("systemd-analyze security: exposure above 2.0 (%v)\n%s%s", err, out, errOut)
	}
	if m := regexp.MustCompile(`Overall exposure level for \S+: (\S+ \S+)`).FindStringSubmatch(out); m != nil {
		t.Logf("systemd-analyze security: %s", m[1])
	}

	sysusers := needCommand(t, "systemd-sysusers", "systemd")
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	runCmd(t, dir, nil, sysusers, "--root="+root, filepath.Join(repoRoot, "deploy/systemd/imapwarden.sysusers"))
	passwd, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^imapwarden:x:\d+:\d+:[^:]*:/var/lib/imapwarden:\S*nologin$`).Match(passwd) {
		t.Errorf("systemd-sysusers made no imapwarden system user:\n%s", passwd)
	}
}
