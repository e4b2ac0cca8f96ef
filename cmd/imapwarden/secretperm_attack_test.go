package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// TestAttackWorldReadableSecretFilesAccepted: the admin API's write token
// and the audit trail's HMAC key are read from files whose mode nothing
// checks. docs/admin-api.md says "chmod 600"; a file made without it
// (umask 022) is 0644 and every local user, the webmail's PHP included,
// reads the write token (end sessions, lift lockouts, profiles) or the
// key (sign a forged trail). validate and serve say nothing, where ssh,
// for one, refuses such a key. A secret file that others can read should
// be a problem, or at least a warning, naming it.
func TestAttackWorldReadableSecretFilesAccepted(t *testing.T) {
	dir := t.TempDir()
	tlsFiles(t, dir)
	token := filepath.Join(dir, "admin.token")
	key := filepath.Join(dir, "audit.key")
	for _, f := range []string{token, key} {
		if err := os.WriteFile(f, []byte("0123456789abcdef0123456789abcdef\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chmod(f, 0o644) // whatever the umask
	}
	text := "listeners: [{address: \"127.0.0.1:0\", mode: tls}]\ntls: {certificates: [{cert: " + dir + "/cert.pem, key: " + dir + "/key.pem}]}\n" +
		"backends: {main: {address: \"127.0.0.1:143\", security: plain}}\n" +
		"admin: {address: \"127.0.0.1:9143\", token_file: " + token + "}\n" +
		"audit: {path: " + filepath.Join(dir, "audit.jsonl") + ", key_file: " + key + "}\n"
	cfg, err := parseConfig([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	s, err := check(cfg, zap.NewNop())
	for _, f := range []string{token, key} {
		said := err != nil && strings.Contains(err.Error(), f)
		if s != nil {
			for _, w := range s.warnings {
				said = said || strings.Contains(w.String(), f)
			}
		}
		if !said {
			t.Errorf("%s is mode 0644 (readable by every local user): no problem or warning names it (err %v)", f, err)
		}
	}
}
