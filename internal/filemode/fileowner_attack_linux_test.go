package filemode

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// The file read itself may be another user's: its owner may always
// chmod and rewrite it (chmod(2) needs only ownership), and read it. A
// directory of uid 54321 on the way is refused, the file of uid 54321 in
// a root directory is not: a policy or configuration owned by another
// account (0644) passes Trusted, a key of another account (0600) passes
// Secret. sshd's StrictModes refuses a key file not owned by root or the
// user for this reason.
func TestAttackFileOfAnotherUserTrusted(t *testing.T) {
	testenv.NeedRoot(t, "another user's file")
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join(dir, "policy.rego")
	key := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(policy, []byte("package imapwarden\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{policy, key} {
		if err := os.Chown(p, 54321, 54321); err != nil {
			t.Fatal(err)
		}
	}
	// What uid 54321 may do to it: chmod, then write; no directory is
	// involved, so no directory check could stop it.
	for c, err := range map[string]error{
		"Trusted(policy of uid 54321, 0644)": Trusted(policy),
		"Secret(key of uid 54321, 0600)":     Secret(key),
	} {
		if err == nil || !strings.Contains(err.Error(), "another user") {
			t.Errorf("%s = %v, want a refusal naming another user (they own it: they may change or read it)", c, err)
		}
	}
}
