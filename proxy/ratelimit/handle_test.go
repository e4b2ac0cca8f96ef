package ratelimit

import (
	"sync"
	"time"

	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// The tests ask the Limiter about a session by its *proxy.SessionInfo,
// as the proxy did before connections had a handle (proxy.LimitConn):
// these test-only methods find the handle Connect returned.
var testConns sync.Map // *proxy.SessionInfo -> *Conn

// connectInfo is Connect, keeping the handle for the methods below.
func (l *Limiter) connectInfo(s *proxy.SessionInfo) (proxy.LimitResult, func()) {
	r, lc := l.Connect(s)
	if lc == nil {
		return r, nil
	}
	testConns.Store(s, lc)
	return r, func() { lc.Release(); testConns.Delete(s) }
}

// handle returns the handle of s; a session that never connected (a
// test asking a second Limiter) gets one of its own, unconnected.
func (l *Limiter) handle(s *proxy.SessionInfo) *Conn {
	if v, ok := testConns.Load(s); ok && v.(*Conn).l == l {
		return v.(*Conn)
	}
	return &Conn{l: l, st: &connState{ip: s.ClientAddr.Addr().Unmap()}, s: s}
}

func (l *Limiter) Login(s *proxy.SessionInfo, user string) proxy.LimitResult {
	return l.handle(s).Login(user)
}

func (l *Limiter) LoginResult(s *proxy.SessionInfo, user string, ok bool) time.Duration {
	return l.handle(s).LoginResult(user, ok)
}

func (l *Limiter) Session(s *proxy.SessionInfo) (proxy.LimitResult, func()) {
	h := l.handle(s)
	testConns.LoadOrStore(s, h)
	return h.Session()
}

func (l *Limiter) Command(s *proxy.SessionInfo, cmd *imapwire.Command) proxy.LimitResult {
	return l.handle(s).Command(cmd)
}

func (l *Limiter) Delivered(s *proxy.SessionInfo, octets int64, messages int) proxy.LimitResult {
	return l.handle(s).Delivered(octets, messages)
}

func (l *Limiter) Snapshot(s *proxy.SessionInfo) map[string]int64 {
	if v, ok := testConns.Load(s); ok && v.(*Conn).l == l {
		return v.(*Conn).Snapshot()
	}
	return map[string]int64{}
}
