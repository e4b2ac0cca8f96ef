package pool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/imapwarden/imapwarden/proxy"
)

// Set is the configured backends' pools, by name: what routes and hints
// may lead to.
type Set struct {
	pools    map[string]*Pool
	names    []string // sorted
	required []string // Ready's
}

// NewSet makes a Set of pools with distinct names.
func NewSet(pools ...*Pool) (*Set, error) {
	s := &Set{pools: make(map[string]*Pool, len(pools))}
	for _, p := range pools {
		if _, dup := s.pools[p.name]; dup {
			return nil, fmt.Errorf("pool: two backends named %q", p.name)
		}
		s.pools[p.name] = p
		s.names = append(s.names, p.name)
	}
	slices.Sort(s.names)
	return s, nil
}

// Pool returns the named pool, or nil.
func (s *Set) Pool(name string) *Pool { return s.pools[name] }

// Pools returns the pools sorted by name.
func (s *Set) Pools() []*Pool {
	out := make([]*Pool, len(s.names))
	for i, n := range s.names {
		out[i] = s.pools[n]
	}
	return out
}

// ErrNotFound is returned for a backend or server the Set does not have.
var ErrNotFound = errors.New("no such backend or server")

// ErrUnlisted is wrapped when a route names a place no backend lists.
var ErrUnlisted = errors.New("route names no configured backend or server")

// Resolve turns a routing hint into a backend: a backend's name (its
// servers then share the logins as usual), or one server of a configured
// backend, by its name, its host:port, or its host alone when only one
// server has that host. A server named this way is the only one tried.
// Anything else wraps ErrUnlisted: a hint never makes the proxy dial an
// address that the configuration does not list.
func (s *Set) Resolve(hint string) (*proxy.Backend, error) {
	hint = strings.TrimSpace(hint)
	if hint == "" {
		return nil, fmt.Errorf("%w: empty", ErrUnlisted)
	}
	if p := s.pools[hint]; p != nil {
		return p.Backend(), nil
	}
	type match struct {
		p *Pool
		i int
	}
	var found []match
	for _, n := range s.names {
		p := s.pools[n]
		p.mu.RLock()
		for i, sl := range p.slots {
			if sl.srv.name == hint || sameAddr(sl.srv.addr, hint) {
				found = append(found, match{p, i})
			}
		}
		p.mu.RUnlock()
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("%w: %q", ErrUnlisted, hint)
	case 1:
		m := found[0]
		m.p.mu.RLock()
		defer m.p.mu.RUnlock()
		return m.p.pin(m.i), nil
	}
	return nil, fmt.Errorf("%w: %q matches %d servers; name one by host:port or by name", ErrUnlisted, hint, len(found))
}

// sameAddr compares a server's host:port with a hint that is host:port
// or a host alone: hosts case-insensitively, IP addresses by value.
func sameAddr(addr, hint string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	hh, hp, err := net.SplitHostPort(hint)
	if err != nil {
		hh, hp = strings.Trim(hint, "[]"), ""
	}
	if hp != "" && hp != port {
		return false
	}
	if a, err := netip.ParseAddr(host); err == nil {
		b, err := netip.ParseAddr(hh)
		return err == nil && a.Unmap() == b.Unmap()
	}
	return strings.EqualFold(strings.TrimSuffix(host, "."), strings.TrimSuffix(hh, "."))
}

// BackendStatus is a backend's state for the admin API.
type BackendStatus struct {
	Name string `json:"name"`
	// Available: some server takes new logins.
	Available bool           `json:"available"`
	Servers   []ServerStatus `json:"servers"`
}

// ServerStatus is a server's state for the admin API.
type ServerStatus struct {
	Name    string  `json:"name"`
	Address string  `json:"address"`
	Weight  float64 `json:"weight"`
	// Health: unknown | up | down | unchecked (checks off).
	Health string `json:"health"`
	// Admin: enabled | drain | disabled.
	Admin     string     `json:"admin"`
	Sessions  int64      `json:"sessions"`
	Since     time.Time  `json:"since"` // of the current health
	LastCheck *time.Time `json:"last_check,omitempty"`
	LastError string     `json:"last_error,omitempty"`
}

// Status lists every backend and server.
func (s *Set) Status() []BackendStatus {
	out := make([]BackendStatus, 0, len(s.names))
	for _, p := range s.Pools() {
		bs := BackendStatus{Name: p.name}
		p.mu.RLock()
		for _, sl := range p.slots {
			st := sl.srv.status()
			st.Weight = sl.weight
			bs.Servers = append(bs.Servers, st)
			bs.Available = bs.Available || sl.srv.available()
		}
		p.mu.RUnlock()
		out = append(out, bs)
	}
	return out
}

// SetAdmin drains, disables or enables a server. It returns the previous
// state and the new status.
func (s *Set) SetAdmin(backend, server string, a Admin) (prev Admin, st ServerStatus, err error) {
	p := s.pools[backend]
	if p == nil {
		return 0, st, fmt.Errorf("%w: backend %q", ErrNotFound, backend)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, sl := range p.slots {
		if sl.srv.name == server {
			prev = sl.srv.setAdmin(a)
			st = sl.srv.status()
			st.Weight = sl.weight
			return prev, st, nil
		}
	}
	return 0, st, fmt.Errorf("%w: server %q of backend %q", ErrNotFound, server, backend)
}

// Require names the backends Ready requires (the default route's).
func (s *Set) Require(names ...string) { s.required = names }

// Ready reports an error when a required backend has no server that takes
// new logins, or when no backend at all has one: then the traffic of the
// proxy's listeners has nowhere to go. The error says why, server by
// server.
func (s *Set) Ready() error {
	required := s.required
	var problems []string
	some := false
	for _, p := range s.Pools() {
		ok := p.Available()
		some = some || ok
		if !ok && slices.Contains(required, p.name) {
			problems = append(problems, p.unavailable())
		}
	}
	if !some && len(s.names) > 0 {
		problems = problems[:0]
		for _, p := range s.Pools() {
			problems = append(problems, p.unavailable())
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func (p *Pool) unavailable() string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return fmt.Sprintf("backend %s has no server taking logins (%s)", p.name, p.whyNone(nil))
}

// CheckResult is one server's answer to Set.Check.
type CheckResult struct {
	Backend, Server, Addr string
	// Err says what failed: resolving the host, connecting, the greeting,
	// STARTTLS or CAPABILITY.
	Err  error
	Took time.Duration
}

// Check resolves and checks every server once, as the health checks do
// (connect, greeting, STARTTLS, CAPABILITY, within the backend's check
// timeout), all at once; results are in the order of Status.
func (s *Set) Check(ctx context.Context) []CheckResult {
	var out []CheckResult
	var cfgs []*checkConfig
	for _, p := range s.Pools() {
		p.mu.RLock()
		for _, sl := range p.slots {
			out = append(out, CheckResult{Backend: p.name, Server: sl.srv.name, Addr: sl.srv.addr})
			cfgs = append(cfgs, &checkConfig{be: sl.be, health: p.health})
		}
		p.mu.RUnlock()
	}
	var wg sync.WaitGroup
	for i := range out {
		wg.Go(func() {
			start := time.Now()
			out[i].Err = checkOnce(ctx, cfgs[i])
			out[i].Took = time.Since(start)
		})
	}
	wg.Wait()
	return out
}

// checkOnce resolves the server's host (so that a name that does not
// resolve says so) and probes it.
func checkOnce(ctx context.Context, c *checkConfig) error {
	ctx, cancel := context.WithTimeout(ctx, c.health.Timeout)
	defer cancel()
	host, _, err := net.SplitHostPort(c.be.Addr)
	if err != nil {
		return err
	}
	if _, err := netip.ParseAddr(host); err != nil {
		if _, err := net.DefaultResolver.LookupHost(ctx, host); err != nil {
			return fmt.Errorf("resolve: %w", err)
		}
	}
	return proxy.Probe(ctx, c.be, proxy.ProbeOptions{SkipStartTLS: c.health.NoStartTLS, Capability: !c.health.NoCapability})
}
