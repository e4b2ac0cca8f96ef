package deploytest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestExampleConfigs runs the real configuration loader (imapwarden
// validate) on every example under deploy/examples/ and on the
// configuration the Debian package installs. Each must be accepted without
// a warning: an example that warns teaches a risky setting.
func TestExampleConfigs(t *testing.T) {
	entries, err := os.ReadDir(filepath.Join(repoRoot, "deploy/examples"))
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".yaml") {
			found = append(found, e.Name())
		}
	}
	if !slices.Equal(found, examples) {
		t.Errorf("deploy/examples has %v, want %v", found, examples)
	}

	files := []string{"deploy/deb/imapwarden.yaml"}
	for _, name := range found {
		files = append(files, "deploy/examples/"+name)
	}
	for _, rel := range files {
		t.Run(rel, func(t *testing.T) {
			text := readFile(t, rel)
			stderr, err := validateConfig(t, filepath.Base(rel), text)
			if err != nil {
				t.Fatalf("imapwarden validate: %v\n%s", err, stderr)
			}
			if strings.Contains(stderr, "warning") || strings.Contains(stderr, "WARN") {
				t.Errorf("validate warns:\n%s", stderr)
			}
		})
	}
}

// TestExampleBackends checks that each example shows what its backend
// needs, beyond being valid.
func TestExampleBackends(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"dovecot.yaml", []string{"login_trusted_networks", "haproxy_trusted_networks", "haproxy = yes", "send_id: true", "send_proxy", "security: starttls"}},
		{"cyrus.yaml", []string{"imapd.conf", "cyrus.conf", "security: tls", "login: plain"}},
		{"courier.yaml", []string{"IMAP_TLS_REQUIRED", "MAXPERIP", "security: starttls"}},
		{"exchange.yaml", []string{"Set-ImapSettings", `address: "10.0.0.8:993"`, "security: tls", "login: plain", "ca_file:", "server_name:"}},
	} {
		text := readFile(t, "deploy/examples/"+tc.file)
		for _, w := range tc.want {
			if !strings.Contains(text, w) {
				t.Errorf("%s lacks %q", tc.file, w)
			}
		}
		if strings.Contains(stripComments(text), "insecure: true") {
			t.Errorf("%s turns off backend certificate verification", tc.file)
		}
	}
}

// stripComments drops YAML comment lines.
func stripComments(text string) string {
	var b strings.Builder
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}
