package ratelimit

import (
	"context"
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
	st := &connState{ip: s.ClientAddr.Addr().Unmap()}
	st.place.l, st.place.s, st.place.st = l, s, st
	return &Conn{l: l, st: st, s: s}
}

// noWait is the context of the tests' Login: done, so that a login that
// would wait for a place is refused at once (UNAVAILABLE) instead of
// hanging a test that asks one question after another.
var noWait = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// Login asks as the proxy does. A connected session keeps its place for
// LoginResult (or its next Login, or its Release); one that never
// connected gives it back at once: a check only.
func (l *Limiter) Login(s *proxy.SessionInfo, user string) proxy.LimitResult {
	h := l.handle(s)
	r, p := h.Login(noWait, user)
	if v, ok := testConns.Load(s); (!ok || v.(*Conn) != h) && p != nil {
		p.Release()
	}
	return r
}

// LoginResult records a check: in the place of the session's login in
// flight, else plainly.
func (l *Limiter) LoginResult(s *proxy.SessionInfo, user string, ok bool) time.Duration {
	h := l.handle(s)
	if h.st.place.holding() {
		return h.st.place.Result(ok)
	}
	return l.loginResult(s, h.st, user, ok, nil)
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

// holding reports whether the place is held.
func (p *loginPlace) holding() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held
}
