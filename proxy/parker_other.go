//go:build !linux

package proxy

import (
	"errors"
	"syscall"
)

// parker is Linux's (parker_linux.go); elsewhere backend pumps keep their
// goroutine while idle.
type parker struct{}

type parkedPump struct{}

func newParker() (*parker, error) { return nil, errors.New("proxy: parking needs epoll") }

func (*parker) prepare(syscall.RawConn, func()) *parkedPump { return &parkedPump{} }
func (*parker) parked() int                                 { return 0 }
func (*parker) close()                                      {}
func (*parkedPump) arm() bool                               { return false }
func (*parkedPump) wake()                                   {}
