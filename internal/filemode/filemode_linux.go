package filemode

import (
	"encoding/binary"
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
// owning group, the operator's choice. 0 when there is no extended ACL
// or it cannot be read (the reader reports a file it cannot open).
func aclUsers(path string) (rights uint16, uid uint32) {
	var buf [1024]byte
	n, err := syscall.Getxattr(path, "system.posix_acl_access", buf[:])
	if err != nil || n < 4 || n > len(buf) || binary.LittleEndian.Uint32(buf[:4]) != 2 {
		return 0, 0
	}
	mask, named := uint16(7), uint16(0)
	var first uint32
	for b := buf[4:n]; len(b) >= 8; b = b[8:] {
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
	return named & mask & 6, first
}
