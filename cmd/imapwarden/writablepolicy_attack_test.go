package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// TestAttackWorldWritablePolicyAccepted: secret files that other users
// may read or write are refused (secretMode), but the files that decide
// what the proxy allows are taken whatever their mode: the configuration
// file, a policy's Rego and data, and policy.groups_file. The policy
// directory and the groups file are polled (policy.poll_interval, 2s),
// so with any of them writable by others every local user rewrites the
// rules in force with no restart and no operator: "allow" everything,
// or put themselves in the group a policy trusts. Integrity matters as
// much as secrecy here: o+w should be refused (or at least warned), as
// it is for a token.
func TestAttackWorldWritablePolicyAccepted(t *testing.T) {
	dir := t.TempDir()
	cf := tlsFiles(t, dir)
	pol := frameworkPolicyDir(t, dir)
	rego := filepath.Join(pol, "imapwarden.rego")
	groups := filepath.Join(dir, "groups.yaml")
	if err := os.WriteFile(groups, []byte("admins: [alice]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "imapwarden.yaml")
	if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %s, key: %s}]}
backends: {mem: {address: "127.0.0.1:143", security: plain}}
admin: {address: ""}
policy: {dirs: [{path: %s}], groups_file: %s}
`, cf.Cert, cf.Key, pol, groups)), 0o600); err != nil {
		t.Fatal(err)
	}
	// As a careless umask 000, or a "chmod -R a+w" to fix a deploy, leaves
	// them, in directories every user may enter.
	for _, d := range []string{filepath.Dir(dir), dir, pol} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{cfgFile, rego, groups} {
		if err := os.Chmod(f, 0o666); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := loadConfigFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	s, err := build(cfg, zap.NewNop())
	said := ""
	if err != nil {
		said = err.Error()
	} else {
		defer s.close()
		for _, w := range s.warnings {
			said += w.Key + ": " + w.Msg + "\n"
		}
	}
	for _, f := range []string{cfgFile, rego, groups} {
		if !strings.Contains(said, f) {
			t.Errorf("%s is writable by every user (0666), and the configuration is built without a word about it", filepath.Base(f))
		}
	}
}
