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

// maxHosts (admin.token_failure_hosts) bounds the hosts tokenGuard remembers. Past it, a new
// host takes the place of a window that ended, else of the oldest host
// not locked out; a lockout is never forgotten before its window ends.
// When every remembered host is locked out, the hosts not remembered
// share one count (overflow) with the same bound: memory stays at
// maxHosts+1 windows, and guessing from more hosts than that gains
// one bound's worth per window, not one per host.

// tokenGuard bounds wrong admin tokens per client host, the bearer
// header's and the console sign-in's alike (ARCHITECTURE.md §12): after
// admin.token_failures_per_ip in admin.token_failure_window, the host's
// tokens are not even compared until the window ends, so guessing costs a
// window per few guesses. A host is keyed as the rate limits key it
// (ratelimit.Hosts: an IPv6 /64 by default), or its addresses would each
// guess anew. Each failure is logged and counted; the trail gets a
// security record at a host's first failure of a window and when it is
// locked out, never one per attempt.
type tokenGuard struct {
	max      int
	window   time.Duration
	maxHosts int
	now      func() time.Time

	mu       sync.Mutex
	hosts    map[netip.Addr]*guesses
	overflow guesses // of the hosts not remembered while all are locked out

	failures *prometheus.CounterVec // by outcome: wrong, locked_out
}

type guesses struct {
	start time.Time // of the window
	n     int
}

func newTokenGuard(max int, window time.Duration, maxHosts int, reg *prometheus.Registry) *tokenGuard {
	g := &tokenGuard{max: max, window: window, maxHosts: maxHosts, now: time.Now, hosts: map[netip.Addr]*guesses{},
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

// clientHost is the host r comes from, keyed as the rate limits key it
// (rate_limits.ip_bits_v4/v6); the zero Addr when unparsable.
func (a *admin) clientHost(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return a.view.Load().hosts.Of(ap)
}

// entry is host's count, the shared overflow one for a host not
// remembered while every remembered one is locked out; nil when it has
// none.
func (g *tokenGuard) entry(host netip.Addr, now time.Time) *guesses {
	if e := g.hosts[host]; e != nil {
		return e
	}
	if len(g.hosts) >= g.maxHosts && g.live(&g.overflow, now) {
		return &g.overflow
	}
	return nil
}

func (g *tokenGuard) live(e *guesses, now time.Time) bool {
	return e.n > 0 && now.Before(e.start.Add(g.window))
}

// lockedOut reports whether host has used up its failures: until when.
func (g *tokenGuard) lockedOut(host netip.Addr) (time.Time, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	e := g.entry(host, now)
	if e == nil || e.n < g.max || !g.live(e, now) {
		return time.Time{}, false
	}
	return e.start.Add(g.window), true
}

// fail counts a wrong token of host: its failures in the window so far.
func (g *tokenGuard) fail(host netip.Addr) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	e := g.hosts[host]
	if e == nil && len(g.hosts) >= g.maxHosts {
		g.evict(now)
		if len(g.hosts) >= g.maxHosts {
			e = &g.overflow
		}
	}
	if e == nil {
		e = &guesses{}
		g.hosts[host] = e
	}
	if !g.live(e, now) {
		*e = guesses{start: now}
	}
	e.n++
	return e.n
}

// evict drops the windows that ended, else the oldest one not locked
// out; it drops no lockout whose window is running.
func (g *tokenGuard) evict(now time.Time) {
	var oldest netip.Addr
	var at time.Time
	for host, e := range g.hosts {
		if !g.live(e, now) {
			delete(g.hosts, host)
			continue
		}
		if e.n < g.max && (at.IsZero() || e.start.Before(at)) {
			oldest, at = host, e.start
		}
	}
	if len(g.hosts) >= g.maxHosts && !at.IsZero() {
		delete(g.hosts, oldest)
	}
}

// refuseToken is a wrong token of r (its header or a console sign-in,
// where): logged, counted, and recorded in the trail at the host's first
// failure of a window and at its lockout.
func (a *admin) refuseToken(r *http.Request, where string) {
	n := a.guard.fail(a.clientHost(r))
	a.guard.failures.WithLabelValues("wrong").Inc()
	a.log.Warn("admin token refused", zap.String("remote", r.RemoteAddr), zap.String("path", r.URL.Path),
		zap.String("via", where), zap.Int("failures", n), zap.Int("max", a.guard.max))
	switch n {
	case 1:
		a.securityRecord(r, "admin-token-refused", fmt.Sprintf("%s %s (via %s): the first wrong token from this host in %v", r.Method, r.URL.Path, where, a.guard.window))
	case a.guard.max:
		a.log.Warn("admin tokens locked out for a host: admin.token_failures_per_ip reached", zap.String("remote", r.RemoteAddr),
			zap.Int("max", a.guard.max), zap.Duration("window", a.guard.window))
		a.securityRecord(r, "admin-token-lockout", fmt.Sprintf("%d wrong tokens from this host in %v: its tokens are refused until the window ends", n, a.guard.window))
	}
}

// identify is tokens.authenticate with wrong tokens bounded per host:
// a presented token that matches none is refused (refuseToken); a
// host that used up its failures has its token not compared at all,
// and lockedUntil says until when. A request without a token is no
// guess. With no tokens configured (loopback only) there is nothing to
// guess.
func (a *admin) identify(r *http.Request) (id identity, ok bool, lockedUntil time.Time) {
	tokens := a.view.Load().tokens
	if len(tokens) == 0 || r.Header.Get("Authorization") == "" {
		id, ok = tokens.authenticate(r)
		return id, ok, time.Time{}
	}
	if end, locked := a.guard.lockedOut(a.clientHost(r)); locked {
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
