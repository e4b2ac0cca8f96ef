package filemode

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// TestAttackReadOnlyBindOfWritableDirectory: readOnlyFS trusts any
// directory on a mount flagged read-only, owner and mode unchecked, and a
// file there whatever its bits. A read-only bind mount is only a view: a
// directory of another user, writable by all, bind-mounted read-only into
// /etc changes whenever they write it at its source, and Trusted passes
// what the proxy reads through the view (the owner of the source, uid
// 65534 here, rewrites the policy at will). Needs root to mount.
func TestAttackReadOnlyBindOfWritableDirectory(t *testing.T) {
	testenv.NeedRoot(t, "bind mount")
	root := t.TempDir()
	src := filepath.Join(root, "home-nobody-policies")
	dst := filepath.Join(root, "etc-policies")
	for _, d := range []string{src, dst} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(src, "policy.rego")
	if err := os.WriteFile(file, []byte("package a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Another user's directory and file, which everyone may write.
	for _, p := range []string{src, file} {
		if err := os.Chown(p, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(src, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(src, dst, "", syscall.MS_BIND, ""); err != nil {
		testenv.Require(t, "bind mount", err, "needs CAP_SYS_ADMIN")
	}
	t.Cleanup(func() { syscall.Unmount(dst, syscall.MNT_DETACH) })
	if err := syscall.Mount("", dst, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		testenv.Require(t, "read-only remount", err, "needs CAP_SYS_ADMIN")
	}
	if Trusted(file) == nil {
		t.Fatal("the source itself is trusted: the base contract changed")
	}
	view := filepath.Join(dst, "policy.rego")
	// Whoever may write the source changes what the view reads.
	if err := os.WriteFile(file, []byte("package b\n"), 0o666); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(view); err != nil || string(got) != "package b\n" {
		t.Fatalf("the view does not follow its source: %q %v", got, err)
	}
	if err := Trusted(view); err == nil {
		t.Errorf("Trusted(%s) = nil: a read-only bind mount of %s (uid 65534, mode 0777; file 0666) is trusted, and its owner or anyone rewrites the policy read through it", view, src)
	}
	if err := Trusted(dst); err == nil {
		t.Errorf("Trusted(%s) = nil for the directory too", dst)
	}
}
