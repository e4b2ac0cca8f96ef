//go:build !linux

package proxy

import (
	"errors"
	"syscall"
	"time"
)

// parker is Linux's (parker_linux.go); elsewhere pumps keep their
// goroutine while idle.
type parker struct{ start func(func()) }

type parkKind uint8

const (
	parkBackend parkKind = iota
	parkClient
)

type parkedPump struct{}

func newParker() (*parker, error) { return nil, errors.New("proxy: parking needs epoll") }

type resumer interface{ resume() }

func (*parker) prepare(syscall.RawConn, parkKind, time.Time, resumer) *parkedPump {
	return &parkedPump{}
}
func (*parker) parked(parkKind) int       { return 0 }
func (*parker) parksSoFar(parkKind) int64 { return 0 }
func (*parker) close()                    {}
func (*parkedPump) arm() bool             { return false }
func (*parkedPump) wake()                 {}
