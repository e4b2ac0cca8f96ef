package filemode

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// bigACL encodes an access ACL (acl(5), version 2, entries in tag order,
// named users by id) that gives uid 54321 read and write and names pad
// more users with no rights: a longer xattr than aclUsers' 1024-byte
// buffer once pad is 127 or more.
func bigACL(pad int) []byte {
	es := []aclEntry{{0x01, 6, 0xffffffff}, {0x02, 6, 54321}}
	for i := range pad {
		es = append(es, aclEntry{0x02, 0, 60000 + uint32(i)})
	}
	return encodeACL(append(es, aclEntry{0x04, 0, 0xffffffff}, aclEntry{0x10, 6, 0xffffffff}, aclEntry{0x20, 0, 0xffffffff})...)
}

// aclUsers reads system.posix_acl_access into a 1024-byte buffer and takes
// any error as "no extended ACL": an ACL of 127 or more entries does not
// fit (getxattr(2) ERANGE), so a 0600 key that "setfacl -m u:54321:rw"
// plus enough other named entries hands to another user passes Secret,
// and a policy that user may rewrite passes Trusted, exactly what
// TestAttackACLGrantedUserPassesSecretAndTrusted refuses with a short
// ACL. An ACL that cannot be read must be refused (or read whole).
func TestAttackLongACLPassesSecretAndTrusted(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "key.pem")
	policy := filepath.Join(dir, "policy.rego")
	acl := bigACL(200)
	for _, p := range []string{key, policy} {
		if err := os.WriteFile(p, []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Setxattr(p, "system.posix_acl_access", acl, 0); err != nil {
			if errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.E2BIG) {
				t.Skipf("no room for a %d-byte ACL on %s: %v", len(acl), dir, err)
			}
			t.Fatal(err)
		}
	}
	t.Logf("ACL of %d bytes", len(acl))
	if err := Secret(key); err == nil {
		t.Errorf("Secret(%s) passed a key whose %d-byte ACL lets uid 54321 read and write it", key, len(acl))
	}
	if err := Trusted(policy); err == nil {
		t.Errorf("Trusted(%s) passed a policy whose %d-byte ACL lets uid 54321 rewrite it", policy, len(acl))
	}
	// The same ACL on a directory of the path: uid 54321 may replace
	// what it holds.
	sub := filepath.Join(dir, "conf")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(sub, "policy.rego")
	if err := os.WriteFile(f, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Setxattr(sub, "system.posix_acl_access", bigACL(200), 0); err != nil {
		t.Fatal(err)
	}
	if err := Trusted(f); err == nil {
		t.Errorf("Trusted(%s) passed a file under a directory whose long ACL lets uid 54321 write it", f)
	}
}
