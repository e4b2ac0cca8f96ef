// Package filemode is the one place that says whether a file is safe to
// trust: a secret that no other user may read, or a file that decides what
// the proxy allows (configuration, policies, groups, users) that no other
// user may change, as sshd's StrictModes judges a key file.
//
// Standard library only, so that the packages reading such files can use it.
package filemode

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Secret refuses a secret file (a token, a password, password hashes, a
// private key) that other users may read or write: a 0644 file made under
// umask 022 hands it to every local account. Group access stays allowed
// (the Debian package's 0640 root:imapwarden). Its directory must not let
// others replace it (Trusted). A file that cannot be read is left to its
// reader to report.
func Secret(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	if m := fi.Mode().Perm(); m&0o007 != 0 {
		return fmt.Errorf("%s is mode %04o: other users may read or change it; chmod 600 %s (or 640 with the service's group)", path, m, path)
	}
	return dirTrusted(path, fi)
}

// Trusted refuses a file or directory that decides what the proxy does
// (the configuration, a policy, the groups file) when other users may
// change it: it is writable by others, or sits in a directory writable by
// others (who may rename another file over it), unless that directory is
// sticky and the file is the service's or root's. A read-only filesystem
// (a Kubernetes ConfigMap) changes nothing whatever its bits. A file that
// cannot be read is left to its reader to report.
func Trusted(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	if m := fi.Mode().Perm(); m&0o002 != 0 && !readOnlyFS(path) {
		what := "file"
		if fi.IsDir() {
			what = "directory"
		}
		return fmt.Errorf("%s is a %s of mode %04o: other users may change it; chmod o-w %s", path, what, m, path)
	}
	return dirTrusted(path, fi)
}

// dirTrusted refuses a file whose directory lets others replace it.
func dirTrusted(path string, fi fs.FileInfo) error {
	dir := filepath.Dir(path)
	di, err := os.Stat(dir)
	if err != nil || di.Mode().Perm()&0o002 == 0 || readOnlyFS(dir) {
		return nil
	}
	if di.Mode()&fs.ModeSticky != 0 && ownedBySelfOrRoot(fi) {
		return nil // only the file's owner may rename or remove it
	}
	return fmt.Errorf("%s is in directory %s of mode %04o: other users may replace it; chmod o-w %s", path, dir, di.Mode().Perm(), dir)
}
