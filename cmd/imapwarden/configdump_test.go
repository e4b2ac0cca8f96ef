package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// redactConfig hides secrets wherever a document has them, keys added
// later included, and leaves paths to secret files alone.
func TestRedactConfig(t *testing.T) {
	doc := `
password: hunter2-a
nested:
  bind_password: hunter2-b
  api_key: hunter2-c
  Client-Secret: hunter2-d
  tokens: [hunter2-e, hunter2-f]
  credentials: {user: bob, pass: hunter2-g}
  password_file: /etc/keep/one
  master_password_file: /etc/keep/two
  key: /etc/keep/three.pem
  key_type: p256
  ticket_key_rotation: 24h
  inline: "-----BEGIN PRIVATE KEY-----\nhunter2-h\n-----END PRIVATE KEY-----\n"
  url: "redis://bob:hunter2-i@redis.example:6379/0"
  plain_url: "https://acme.example/dir"
  empty_token: ""
list:
  - {name: a, secret: hunter2-j}
headers:
  Authorization: "Bearer hunter2-k"
  Proxy-Authorization: "Basic hunter2-l"
  Cookie: "sid=hunter2-m"
  X-Auth: hunter2-p
  Authentication: "hunter2-q"
  X-Api-Key: hunter2-r
  User-Agent: imapwarden-mx1
bad_url: "https://bob:hunter2-s@auth example/%zz?access_token=hunter2-t"
lookup_url: "https://auth.example/lookup?access_token=hunter2-n&site=mx1&api_key=hunter2-o"
`
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
		t.Fatal(err)
	}
	redactConfig(&n)
	out, err := yaml.Marshal(&n)
	if err != nil {
		t.Fatal(err)
	}
	got := string(out)
	if strings.Contains(got, "hunter2") {
		t.Errorf("a secret survived:\n%s", got)
	}
	for _, keep := range []string{"/etc/keep/one", "/etc/keep/two", "/etc/keep/three.pem", "p256", "24h",
		"redis://bob:REDACTED@redis.example:6379/0", "https://acme.example/dir", "user: bob", "empty_token: \"\"",
		"User-Agent: imapwarden-mx1", "site=mx1"} {
		if !strings.Contains(got, keep) {
			t.Errorf("lost %q:\n%s", keep, got)
		}
	}
}

// config dump prints the effective configuration: defaults filled in,
// valid as a configuration itself, and the same when dumped again.
func TestConfigDump(t *testing.T) {
	path := exampleConfig(t)
	code, out, errOut := runCLI("config", "dump", "-c", path)
	if code != 0 {
		t.Fatalf("config dump: %d %s", code, errOut)
	}
	for _, want := range []string{"drain_timeout: 30s", "max_line: 64KiB", "read_header_timeout: 10s", "write_timeout: 2m0s",
		"connections_per_ip: 1200/1m", "lame_duck: 5s", "connect_timeout: 10s", "lockout_reason: Authentication failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("dump lacks %q", want)
		}
	}
	cfg, err := parseConfig([]byte(out))
	if err != nil {
		t.Fatalf("the dump is not a configuration: %v\n%s", err, out)
	}
	again, err := effectiveConfigYAML(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != out {
		t.Errorf("a dump of the dump differs:\n%s\n---\n%s", out, again)
	}

	// A minimal file gets the defaults of every section.
	dir := t.TempDir()
	min := filepath.Join(dir, "min.yaml")
	os.WriteFile(min, []byte("backends: {b: {address: \"127.0.0.1:143\", security: plain}}\n"), 0o600)
	if code, out, _ := runCLI("config", "dump", "-c", min); code != 0 || !strings.Contains(out, "address: 127.0.0.1:9143") ||
		!strings.Contains(out, "login: auto") || !strings.Contains(out, "enabled: true") {
		t.Errorf("minimal dump: %d\n%s", code, out)
	}
	if code, _, _ := runCLI("config", "dump"); code != exitUsage {
		t.Errorf("config dump without -c: %d", code)
	}
	if code, _, _ := runCLI("config"); code != exitUsage {
		t.Errorf("config without dump: %d", code)
	}
	if code, _, errOut := runCLI("config", "dump", "-c", filepath.Join(dir, "none.yaml")); code != exitError || errOut == "" {
		t.Errorf("config dump of a missing file: %d %q", code, errOut)
	}
}

// With an audit trail, the dump shows the name limits the proxy runs
// with: the trail's, derived from what its records hold (ARCHITECTURE.md
// §11), not the proxy's defaults for a proxy without one.
func TestConfigDumpAuditNameLimits(t *testing.T) {
	for _, rec := range []string{"", ", max_record_bytes: 4096", ", max_record_bytes: 65536"} {
		env := newServeEnv(t)
		s, path, _, _ := env.buildFile(t, fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %s, key: %s}]}
backends: {mem: {address: %q, security: plain}}
admin: {address: ""}
audit: {path: %q%s}
`, env.cert.Cert, env.cert.Key, env.backend, filepath.Join(env.dir, "audit.jsonl"), rec))
		t.Cleanup(func() { s.close() })
		code, out, errOut := runCLI("config", "dump", "-c", path)
		if code != 0 {
			t.Fatalf("config dump: %d %s", code, errOut)
		}
		for _, want := range []string{fmt.Sprintf("max_audit_name_bytes: %d\n", s.opts.Limits.MaxAuditNameBytes),
			fmt.Sprintf("max_audit_mailbox_names: %d\n", s.opts.Limits.MaxAuditMailboxNames)} {
			if !strings.Contains(out, want) {
				t.Errorf("audit{%s}: the dump lacks %q, what the proxy runs with", rec, strings.TrimSpace(want))
			}
		}
		if rec == ", max_record_bytes: 4096" && s.opts.Limits.MaxAuditNameBytes != 1792 {
			t.Errorf("max_record_bytes 4096: names %d bytes, documented 1792", s.opts.Limits.MaxAuditNameBytes)
		}
	}
}
