package filemode

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"syscall"
)

// readOnlyFS says whether path is on a filesystem mounted read-only.
func readOnlyFS(path string) bool {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return false
	}
	return st.Flags&1 != 0 // ST_RDONLY, statfs(2)
}

func ownedBySelfOrRoot(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && (st.Uid == 0 || int(st.Uid) == os.Geteuid())
}

// dirOwnerOK says whether a directory's (or a file's) owner is root or this user.
func dirOwnerOK(fi fs.FileInfo) bool { return ownedBySelfOrRoot(fi) }

func owner(fi fs.FileInfo) string {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return "uid " + strconv.FormatUint(uint64(st.Uid), 10)
	}
	return "unknown"
}

// aclUsers returns the rights (4 read, 2 write) path's POSIX access ACL
// grants users by name (ACL_USER entries, under the mask), and the first
// such user: they show in the mode only as the group bits (acl(5)), so a
// 0600 key with "u:54321:rw" reads as 0660. Named groups are as the
// owning group, the operator's choice. 0 when there is no extended ACL;
// an error when there is one that cannot be read whole (never taken for
// none).
func aclUsers(path string) (rights uint16, uid uint32, err error) {
	const name = "system.posix_acl_access"
	var buf []byte
	for range 3 {
		n, err := syscall.Getxattr(path, name, nil)
		switch {
		case errors.Is(err, syscall.ENODATA) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOENT):
			return 0, 0, nil
		case err != nil:
			return 0, 0, fmt.Errorf("reading its ACL: %w", err)
		case n > 1<<20:
			return 0, 0, fmt.Errorf("its ACL of %d bytes is too long to judge", n)
		}
		buf = make([]byte, n)
		if n, err = syscall.Getxattr(path, name, buf); errors.Is(err, syscall.ERANGE) {
			continue // it grew meanwhile
		} else if err != nil {
			return 0, 0, fmt.Errorf("reading its ACL: %w", err)
		}
		buf = buf[:n]
		break
	}
	if len(buf) < 4 || binary.LittleEndian.Uint32(buf[:4]) != 2 || (len(buf)-4)%8 != 0 {
		return 0, 0, fmt.Errorf("its ACL of %d bytes is not one this check reads", len(buf))
	}
	mask, named := uint16(7), uint16(0)
	var first uint32
	for b := buf[4:]; len(b) >= 8; b = b[8:] {
		tag, perm, id := binary.LittleEndian.Uint16(b), binary.LittleEndian.Uint16(b[2:]), binary.LittleEndian.Uint32(b[4:])
		switch tag {
		case 0x02: // ACL_USER
			if perm&6 != 0 && named == 0 {
				first = id
			}
			named |= perm
		case 0x10: // ACL_MASK
			mask = perm
		}
	}
	return named & mask & 6, first, nil
}
