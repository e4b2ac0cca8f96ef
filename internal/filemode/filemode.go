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
	"strings"
)

// Secret refuses a secret file (a token, a password, password hashes, a
// private key) that other users may read or write: a 0644 file made under
// umask 022 hands it to every local account; so may its owner, if not
// root or this user. Group access stays allowed
// (the Debian package's 0640 root:imapwarden). No directory on the way to
// it may let others replace it (Trusted). A file that cannot be read is
// left to its reader to report.
func Secret(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	if m := fi.Mode().Perm(); m&0o007 != 0 {
		return fmt.Errorf("%s is mode %04o: other users may read or change it; chmod 600 %s (or 640 with the service's group)", path, m, path)
	}
	if err := fileOwner(path, fi); err != nil {
		return err
	}
	if r, uid, err := aclUsers(path); err != nil || r != 0 {
		return aclRefusal(path, "read or change it", uid, err)
	}
	return pathTrusted(path)
}

// Trusted refuses a file or directory that decides what the proxy does
// (the configuration, a policy, the groups file) when other users may
// change it: it is writable by others or another user's, or a directory on the way to it
// lets others replace it (pathTrusted). A read-only mount does not excuse
// its bits: it may be a view of a source others write. A file that cannot
// be read is left to its reader to report.
func Trusted(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	if m := fi.Mode().Perm(); m&0o002 != 0 {
		what := "file"
		if fi.IsDir() {
			what = "directory"
		}
		return fmt.Errorf("%s is a %s of mode %04o: other users may change it; chmod o-w %s", path, what, m, path)
	}
	if err := fileOwner(path, fi); err != nil {
		return err
	}
	if r, uid, err := aclUsers(path); err != nil || r&2 != 0 {
		return aclRefusal(path, "change it", uid, err)
	}
	return pathTrusted(path)
}

// aclRefusal says why path's ACL is refused: a named user may do what
// (shown only as group bits), or the ACL could not be read whole.
func aclRefusal(path, what string, uid uint32, err error) error {
	if err != nil {
		return fmt.Errorf("%s has an ACL that cannot be judged (%v): another user may %s; setfacl -b %s", path, err, what, path)
	}
	return fmt.Errorf("%s has an ACL that lets user %d %s (shown as group bits); setfacl -b %s", path, uid, what, path)
}

// fileOwner refuses a file (or directory) that is neither root's nor this
// user's: its owner may chmod it and then change or read it whatever its
// mode (chmod(2)), as sshd's StrictModes refuses such a key file.
func fileOwner(path string, fi fs.FileInfo) error {
	if dirOwnerOK(fi) {
		return nil
	}
	return fmt.Errorf("%s is owned by another user (%s): they may change or read it; chown root %s", path, owner(fi), path)
}

// maxLinks bounds the symbolic links followed, as the kernel's ELOOP does
// (path_resolution(7)).
const maxLinks = 40

// pathTrusted refuses a path that a directory looked up in while resolving
// it lets others replace. As sshd's StrictModes, that is every directory up
// to / of the path itself, of each symbolic link's target (a Kubernetes
// volume's "..data" links), and of the file finally read: whoever may
// write one renames what it holds away and puts their own in its place.
// Each must be root's or this user's and not writable by others, unless it
// is sticky or on a read-only mount and the entry looked up is root's or
// this user's (/tmp; the kubelet's ConfigMap volume, a 0777 root directory
// holding root's "..data" chain). Group write stays the operator's choice.
func pathTrusted(path string) error {
	// Not filepath.Abs: it cleans "link/.." lexically, while the kernel
	// resolves the link first and takes ".." in its target
	// (path_resolution(7)); the walk below does so.
	abs := path
	if !filepath.IsAbs(path) {
		wd, err := os.Getwd()
		if err != nil {
			return nil // no working directory: the reader reports it
		}
		abs = wd + "/" + path
	}
	rest := split(abs)
	cur, links := "/", 0
	dirs := map[string]fs.FileInfo{}
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		if name == ".." {
			cur = filepath.Dir(cur) // cur is resolved: its parent was looked up in already
			continue
		}
		next := filepath.Join(cur, name)
		fi, err := os.Lstat(next)
		if err != nil {
			return nil
		}
		if err := dirGuards(path, cur, fi, dirs); err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxLinks {
			return nil // ELOOP: the reader reports it
		}
		target, err := os.Readlink(next)
		if err != nil {
			return nil
		}
		if filepath.IsAbs(target) {
			cur = "/"
		}
		rest = append(split(target), rest...)
	}
	return nil
}

// split is a path's names, without the empty and "." ones.
func split(p string) []string {
	var out []string
	for _, n := range strings.Split(p, "/") {
		if n != "" && n != "." {
			out = append(out, n)
		}
	}
	return out
}

// dirGuards refuses directory dir, looked up in for entry while resolving
// path, when others may replace entry in it.
func dirGuards(path, dir string, entry fs.FileInfo, seen map[string]fs.FileInfo) error {
	di, ok := seen[dir]
	if !ok {
		var err error
		if di, err = os.Stat(dir); err != nil {
			return nil
		}
		seen[dir] = di
	}
	if !dirOwnerOK(di) {
		return fmt.Errorf("%s is under directory %s of another user (%s): they may replace it; chown root %s", path, dir, owner(di), dir)
	}
	if r, uid, err := aclUsers(dir); err != nil || r&2 != 0 {
		return fmt.Errorf("%s is under directory %s: %w", path, dir, aclRefusal(dir, "replace what it holds", uid, err))
	}
	if di.Mode().Perm()&0o002 == 0 {
		return nil
	}
	// Sticky: only the entry's owner may rename or remove it. A read-only
	// mount is only a view of a source that may be writable (a bind mount),
	// so it is excused no more than sticky is: owner checked, entry ours.
	if (di.Mode()&fs.ModeSticky != 0 || readOnlyFS(dir)) && ownedBySelfOrRoot(entry) {
		return nil
	}
	return fmt.Errorf("%s is under directory %s of mode %04o: other users may replace it; chmod o-w %s", path, dir, di.Mode().Perm(), dir)
}
