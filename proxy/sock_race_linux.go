//go:build linux && race

package proxy

import "syscall"

// Under the race detector, sockConn reads and writes through syscall.Read
// and Write (raceRead, raceWrite) unless a test asks for the raw calls:
// they tell the detector that what one side writes to a socket happens
// before what the other reads from it, which a raw system call does not,
// so tests would see races that are not.
const raceEnabled = true

func raceRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Read(int(fd), p)
	return max(n, 0), errnoOf(err)
}

func raceWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Write(int(fd), p)
	return max(n, 0), errnoOf(err)
}

func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	return err.(syscall.Errno)
}
