package filemode

import (
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
