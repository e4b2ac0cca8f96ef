package filemode

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// posixACL encodes an access ACL as the kernel's system.posix_acl_access
// xattr (acl(5), version 2): owner rw, user uid rw, group none, mask rw,
// other none, as "setfacl -m u:uid:rw" (or a directory's default ACL)
// leaves on a 0600 file.
func posixACL(uid uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range []struct {
		tag, perm uint16
		id        uint32
	}{
		{0x01, 6, 0xffffffff}, // ACL_USER_OBJ rw
		{0x02, 6, uid},        // ACL_USER uid rw
		{0x04, 0, 0xffffffff}, // ACL_GROUP_OBJ ---
		{0x10, 6, 0xffffffff}, // ACL_MASK rw
		{0x20, 0, 0xffffffff}, // ACL_OTHER ---
	} {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, e.id)
	}
	return b
}

// A POSIX ACL entry naming another user shows in the mode only as the
// group bits (its mask, acl(5)): a 0600 key given to uid 54321 by
// "setfacl -m u:54321:rw" reads as 0660, which Secret takes for "group
// access", and Trusted for "group write, the operator's choice". Yet that
// user, in no group of the file, may read the key and rewrite the
// policy. Group bits on a file with an extended ACL are not the group's:
// such a file must be refused (or its ACL read).
func TestAttackACLGrantedUserPassesSecretAndTrusted(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "key.pem")
	policy := filepath.Join(dir, "policy.rego")
	for _, p := range []string{key, policy} {
		if err := os.WriteFile(p, []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Setxattr(p, "system.posix_acl_access", posixACL(54321), 0); err != nil {
			if errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EOPNOTSUPP) {
				t.Skipf("no POSIX ACLs on %s: %v", dir, err)
			}
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(key)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mode with the ACL: %04o", fi.Mode().Perm())
	if err := Secret(key); err == nil {
		t.Errorf("Secret(%s) passed a key whose ACL lets uid 54321 read and write it", key)
	}
	if err := Trusted(policy); err == nil {
		t.Errorf("Trusted(%s) passed a policy whose ACL lets uid 54321 rewrite it", policy)
	}
}
