//go:build linux && !race

package proxy

import "syscall"

// raceEnabled: sock_race_linux.go.
const raceEnabled = false

func raceRead(uintptr, []byte) (int, syscall.Errno)  { panic("proxy: raceRead without -race") }
func raceWrite(uintptr, []byte) (int, syscall.Errno) { panic("proxy: raceWrite without -race") }
