package main

import (
	"fmt"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/audit"
)

// maxGuessAddrs bounds the addresses tokenGuard remembers: a flood from
// many addresses forgets the oldest, never grows memory.
const maxGuessAddrs = 4096

// tokenGuard bounds wrong admin tokens per client address, the bearer
// header's and the console sign-in's alike (ARCHITECTURE.md §12): after
// admin.token_failures_per_ip in admin.token_failure_window, the address's
// tokens are not even compared until the window ends, so guessing costs a
// window per few guesses. Each failure is logged and counted; the trail
// gets a security record at an address's first failure of a window and
// when it is locked out, never one per attempt.
type tokenGuard struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu    sync.Mutex
	addrs map[netip.Addr]*guesses

	failures *prometheus.CounterVec // by outcome: wrong, locked_out
}

type guesses struct {
	start time.Time // of the window
	n     int
}

func newTokenGuard(max int, window time.Duration, reg *prometheus.Registry) *tokenGuard {
	g := &tokenGuard{max: max, window: window, now: time.Now, addrs: map[netip.Addr]*guesses{},
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imapwarden_admin_token_failures_total",
			Help: "Admin requests and console sign-ins refused for their token: wrong, or locked_out (admin.token_failures_per_ip reached).",
		}, []string{"outcome"})}
	g.failures.WithLabelValues("wrong")
	g.failures.WithLabelValues("locked_out")
	if reg != nil {
		if err := reg.Register(g.failures); err != nil {
			// Another admin on the same registry (tests, demo): share it.
			if are, ok := err.(prometheus.AlreadyRegisteredError); ok {
				g.failures = are.ExistingCollector.(*prometheus.CounterVec)
			}
		}
	}
	return g
}

// clientAddr is r's peer address; the zero Addr when unparsable.
func clientAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// lockedOut reports whether ip has used up its failures: until when.
func (g *tokenGuard) lockedOut(ip netip.Addr) (time.Time, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.addrs[ip]
	if e == nil || e.n < g.max {
		return time.Time{}, false
	}
	end := e.start.Add(g.window)
	if !g.now().Before(end) {
		delete(g.addrs, ip)
		return time.Time{}, false
	}
	return end, true
}

// fail counts a wrong token of ip: its failures in the window so far.
func (g *tokenGuard) fail(ip netip.Addr) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	e := g.addrs[ip]
	if e == nil || !now.Before(e.start.Add(g.window)) {
		if e == nil && len(g.addrs) >= maxGuessAddrs {
			g.evict(now)
		}
		e = &guesses{start: now}
		g.addrs[ip] = e
	}
	e.n++
	return e.n
}

// evict drops the windows that ended, else the oldest one.
func (g *tokenGuard) evict(now time.Time) {
	var oldest netip.Addr
	var at time.Time
	for ip, e := range g.addrs {
		if !now.Before(e.start.Add(g.window)) {
			delete(g.addrs, ip)
			continue
		}
		if at.IsZero() || e.start.Before(at) {
			oldest, at = ip, e.start
		}
	}
	if len(g.addrs) >= maxGuessAddrs {
		delete(g.addrs, oldest)
	}
}

// refuse is a wrong token of r (its header or a console sign-in, where):
// logged, counted, and recorded in the trail at the address's first
// failure of a window and at its lockout.
func (a *admin) refuseToken(r *http.Request, where string) {
	ip := clientAddr(r)
	n := a.guard.fail(ip)
	a.guard.failures.WithLabelValues("wrong").Inc()
	a.log.Warn("admin token refused", zap.String("remote", r.RemoteAddr), zap.String("path", r.URL.Path),
		zap.String("via", where), zap.Int("failures", n), zap.Int("max", a.guard.max))
	switch n {
	case 1:
		a.securityRecord(r, "admin-token-refused", fmt.Sprintf("%s %s (via %s): the first wrong token from this address in %v", r.Method, r.URL.Path, where, a.guard.window))
	case a.guard.max:
		a.log.Warn("admin tokens locked out for an address: admin.token_failures_per_ip reached", zap.String("remote", r.RemoteAddr),
			zap.Int("max", a.guard.max), zap.Duration("window", a.guard.window))
		a.securityRecord(r, "admin-token-lockout", fmt.Sprintf("%d wrong tokens from this address in %v: its tokens are refused until the window ends", n, a.guard.window))
	}
}

// identify is tokens.authenticate with wrong tokens bounded per address:
// a presented token that matches none is refused (refuseToken); an
// address that used up its failures has its token not compared at all,
// and lockedUntil says until when. A request without a token is no
// guess. With no tokens configured (loopback only) there is nothing to
// guess.
func (a *admin) identify(r *http.Request) (id identity, ok bool, lockedUntil time.Time) {
	tokens := a.view.Load().tokens
	if len(tokens) == 0 || r.Header.Get("Authorization") == "" {
		id, ok = tokens.authenticate(r)
		return id, ok, time.Time{}
	}
	if end, locked := a.guard.lockedOut(clientAddr(r)); locked {
		a.guard.failures.WithLabelValues("locked_out").Inc()
		return identity{}, false, end
	}
	if id, ok = tokens.authenticate(r); !ok {
		a.refuseToken(r, "bearer")
	}
	return id, ok, time.Time{}
}

// securityRecord writes a security record of the admin listener (best
// effort: a refusal does not wait for the trail).
func (a *admin) securityRecord(r *http.Request, event, detail string) {
	w := a.wire.Load()
	if w == nil {
		return
	}
	rec := &audit.Record{Kind: audit.KindSecurity, Event: event, Detail: detail}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		rec.IP, rec.Port = ap.Addr().Unmap(), ap.Port()
	}
	w.log(rec)
}
