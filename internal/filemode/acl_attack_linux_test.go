package filemode

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

// aclEntry is one entry of an access ACL as the kernel stores it.
type aclEntry struct {
	tag, perm uint16
	id        uint32
}

// encodeACL encodes entries as the system.posix_acl_access xattr (acl(5),
// version 2), sorted by tag as the kernel takes them.
func encodeACL(es ...aclEntry) []byte {
	es = slices.Clone(es)
	slices.SortStableFunc(es, func(a, b aclEntry) int { return int(a.tag) - int(b.tag) })
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range es {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, e.id)
	}
	return b
}

// posixACL is what "setfacl -m u:uid:rw" (or a directory's default ACL)
// leaves on a 0600 file: owner rw, user uid rw, group none, mask rw,
// other none.
func posixACL(uid uint32) []byte {
	return encodeACL(aclEntry{0x01, 6, 0xffffffff}, aclEntry{0x02, 6, uid}, aclEntry{0x04, 0, 0xffffffff},
		aclEntry{0x10, 6, 0xffffffff}, aclEntry{0x20, 0, 0xffffffff})
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

// The class: an ACL's named users are judged wherever the mode is, on the
// file (read for a secret, write for what decides) and on each directory
// of the path (write: they may replace what it holds); a named group is as
// the owning group, the operator's choice.
func TestACLNamedUsersJudged(t *testing.T) {
	acl := func(tag uint16, perm uint16, id uint32) []byte {
		return encodeACL(aclEntry{0x01, 7, 0xffffffff}, aclEntry{tag, perm, id}, aclEntry{0x04, 5, 0xffffffff},
			aclEntry{0x10, 7, 0xffffffff}, aclEntry{0x20, 0, 0xffffffff})
	}
	set := func(p string, v []byte) {
		t.Helper()
		if err := syscall.Setxattr(p, "system.posix_acl_access", v, 0); err != nil {
			if errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EOPNOTSUPP) {
				t.Skipf("no POSIX ACLs: %v", err)
			}
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name      string
		onDir     bool
		tag, perm uint16
		secret    bool // Secret refuses
		trusted   bool // Trusted refuses
	}{
		{"file, named user r", false, 0x02, 4, true, false},
		{"file, named user w", false, 0x02, 2, true, true},
		{"file, named group rw", false, 0x08, 6, false, false},
		{"dir, named user rwx", true, 0x02, 7, true, true},
		{"dir, named user rx", true, 0x02, 5, false, false},
		{"dir, named group rwx", true, 0x08, 7, false, false},
	} {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "f")
		if err := os.WriteFile(p, []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if tc.onDir {
			set(dir, acl(tc.tag, tc.perm, 54321))
		} else {
			set(p, acl(tc.tag, tc.perm, 54321)) // mode 0770: group bits, which the checks take
		}
		if err := Secret(p); (err != nil) != tc.secret {
			t.Errorf("%s: Secret: %v, want refused %v", tc.name, err, tc.secret)
		}
		if err := Trusted(p); (err != nil) != tc.trusted {
			t.Errorf("%s: Trusted: %v, want refused %v", tc.name, err, tc.trusted)
		}
	}
}
