package audit

import (
	"os"
	"syscall"
)

// Filesystem magic numbers (statfs(2)) whose writes can wait on a server
// or a user-space daemon: never written by a LogWait caller itself
// (writeDirect).
var remoteFS = map[int64]bool{
	0x6969:     true, // NFS
	0x517b:     true, // SMB
	0xff534d42: true, // CIFS
	0xfe534d42: true, // SMB2
	0x65735546: true, // FUSE
	0x00c36400: true, // Ceph
	0x01021997: true, // 9P
	0x5346414f: true, // AFS
	0x6b414653: true, // kAFS
	0x01161970: true, // GFS2
	0x7461636f: true, // OCFS2
	0x0bd00bd0: true, // Lustre
	0x47504653: true, // GPFS
	0x73757245: true, // Coda
}

// localFS says whether f is on a local filesystem. When it cannot tell,
// it says no.
func localFS(f *os.File) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	var st syscall.Statfs_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.Fstatfs(int(fd), &st) }); err != nil || serr != nil {
		return false
	}
	return !remoteFS[int64(st.Type)]
}
