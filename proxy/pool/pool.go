package pool

import (
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/imapwarden/imapwarden/proxy"
)

// ServerOptions is one server of a pool.
type ServerOptions struct {
	// Name identifies the server in the admin API, metrics and audit;
	// default Addr.
	Name string
	Addr string // host:port
	// Weight is the server's share of the users relative to the others;
	// default 1.
	Weight int
	// TLS is the server's own client configuration (its name to verify);
	// nil takes the template's.
	TLS *tls.Config
}

// HealthOptions configure the active checks. The zero value checks every
// 5 s with the defaults below.
type HealthOptions struct {
	// Disabled turns checks off: servers are never marked down, and a
	// failed connection only fails the login over.
	Disabled bool
	// Interval between checks of a healthy (or down) server; default 5 s.
	Interval time.Duration
	// FastInterval between checks while a server is failing but not down
	// yet, or down but answering again; default 1 s.
	FastInterval time.Duration
	// Timeout of one check, from connecting to the answer to CAPABILITY;
	// default 5 s.
	Timeout time.Duration
	// Rise successful checks in a row bring a down server up (default 2);
	// Fall failures in a row take it down (default 3).
	Rise, Fall int
	// NoStartTLS ends a starttls backend's check at its greeting;
	// NoCapability skips CAPABILITY.
	NoStartTLS, NoCapability bool
}

// Health check defaults.
const (
	DefaultInterval     = 5 * time.Second
	DefaultFastInterval = time.Second
	DefaultTimeout      = 5 * time.Second
	DefaultRise         = 2
	DefaultFall         = 3
)

func (h HealthOptions) withDefaults() HealthOptions {
	if h.Interval <= 0 {
		h.Interval = DefaultInterval
	}
	if h.FastInterval <= 0 {
		h.FastInterval = min(DefaultFastInterval, h.Interval)
	}
	if h.Timeout <= 0 {
		h.Timeout = DefaultTimeout
	}
	if h.Rise <= 0 {
		h.Rise = DefaultRise
	}
	if h.Fall <= 0 {
		h.Fall = DefaultFall
	}
	return h
}

// Options configure a Pool.
type Options struct {
	// Backend is the template every server shares: name, security, TLS,
	// login mode, timeouts. Its Addr, Server and Servers are ignored.
	Backend *proxy.Backend
	Servers []ServerOptions
	Health  HealthOptions
	// MaxLoad bounds a server's sessions to this factor times its
	// weighted share of all sessions (consistent hashing with bounded
	// load); a user whose server is full goes to their next one. 0 (the
	// default) is no bound; otherwise at least 1.
	MaxLoad float64
}

// Pool is one backend's servers. It implements proxy.Balancer; its
// Backend is what routers hand to the proxy.
type Pool struct {
	name    string
	backend *proxy.Backend // the template, Servers = this pool
	health  HealthOptions  // defaults applied
	maxLoad float64

	mu    sync.RWMutex // guards slots' servers (Monitor.Apply swaps them)
	slots []slot

	// onEvent reports health transitions (set by the Monitor).
	onEvent func(Event)
}

// slot is a server's place in the pool: its configuration and its
// (long-lived) state.
type slot struct {
	srv    *server
	weight float64
	be     *proxy.Backend // the server's own Backend
}

var _ proxy.Balancer = (*Pool)(nil)

// New checks o and makes the pool; nothing runs until a Monitor applies
// it.
func New(o Options) (*Pool, error) {
	if o.Backend == nil || o.Backend.Name == "" {
		return nil, errors.New("pool: a named Backend is required")
	}
	if len(o.Servers) == 0 {
		return nil, fmt.Errorf("pool %s: no servers", o.Backend.Name)
	}
	if o.MaxLoad != 0 && (o.MaxLoad < 1 || math.IsNaN(o.MaxLoad) || math.IsInf(o.MaxLoad, 0)) {
		return nil, fmt.Errorf("pool %s: MaxLoad %v: want 0 (off) or at least 1", o.Backend.Name, o.MaxLoad)
	}
	tmpl := *o.Backend
	p := &Pool{name: tmpl.Name, health: o.Health.withDefaults(), maxLoad: o.MaxLoad}
	tmpl.Servers, tmpl.Server, tmpl.Addr = p, "", ""
	p.backend = &tmpl
	names := map[string]bool{}
	for i, so := range o.Servers {
		if so.Addr == "" {
			return nil, fmt.Errorf("pool %s: server %d has no address", p.name, i)
		}
		if _, _, err := net.SplitHostPort(so.Addr); err != nil {
			return nil, fmt.Errorf("pool %s: server %q: want host:port", p.name, so.Addr)
		}
		name := so.Name
		if name == "" {
			name = so.Addr
		}
		if names[name] {
			return nil, fmt.Errorf("pool %s: two servers named %q", p.name, name)
		}
		names[name] = true
		if so.Weight < 0 {
			return nil, fmt.Errorf("pool %s: server %s: negative weight", p.name, name)
		}
		w := so.Weight
		if w == 0 {
			w = 1
		}
		be := tmpl
		be.Servers, be.Server, be.Addr = nil, name, so.Addr
		if so.TLS != nil {
			be.TLS = so.TLS
		}
		srv := newServer(p.name, name, so.Addr)
		srv.cfg.Store(&checkConfig{be: &be, health: p.health})
		p.slots = append(p.slots, slot{srv: srv, weight: float64(w), be: &be})
	}
	return p, nil
}

// Name is the backend's name.
func (p *Pool) Name() string { return p.name }

// Backend is the backend that routes to this pool (Servers is the pool).
func (p *Pool) Backend() *proxy.Backend { return p.backend }

// Pick implements proxy.Balancer: the available server not in tried with
// the highest rendezvous score for user (case-insensitive), within the
// load bound when there is one.
func (p *Pool) Pick(_ *proxy.SessionInfo, user string, tried []string) (*proxy.Backend, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	key := strings.ToLower(user)
	type cand struct {
		i     int
		score float64
	}
	cands := make([]cand, 0, len(p.slots))
	for i, sl := range p.slots {
		if slices.Contains(tried, sl.srv.name) || !sl.srv.available() {
			continue
		}
		cands = append(cands, cand{i, score(key, sl.srv.name, sl.weight)})
	}
	if len(cands) == 0 {
		return nil, fmt.Errorf("%w: backend %s: %s", proxy.ErrNoServer, p.name, p.whyNone(tried))
	}
	slices.SortFunc(cands, func(a, b cand) int {
		switch {
		case a.score > b.score:
			return -1
		case a.score < b.score:
			return 1
		}
		return strings.Compare(p.slots[a.i].srv.name, p.slots[b.i].srv.name)
	})
	if p.maxLoad > 0 && len(cands) > 1 {
		// Bounded load (Mirrokni et al.): capacity of server i is
		// ceil(c * (sessions+1) * w_i / sum(w)).
		var total int64
		var wsum float64
		for _, c := range cands {
			total += p.slots[c.i].srv.sessions.Load()
			wsum += p.slots[c.i].weight
		}
		for _, c := range cands {
			sl := p.slots[c.i]
			capacity := math.Ceil(p.maxLoad * float64(total+1) * sl.weight / wsum)
			if float64(sl.srv.sessions.Load()) < capacity {
				return sl.be, nil
			}
		}
	}
	return p.slots[cands[0].i].be, nil
}

// whyNone says why no server is available, for the log and the error.
// Called with p.mu held.
func (p *Pool) whyNone(tried []string) string {
	var parts []string
	for _, sl := range p.slots {
		st := sl.srv.status()
		why := st.Health
		switch {
		case slices.Contains(tried, sl.srv.name):
			why = "failed just now"
		case st.Admin != "enabled":
			why = st.Admin
		case st.LastError != "":
			why += ": " + st.LastError
		}
		parts = append(parts, sl.srv.name+" "+why)
	}
	return strings.Join(parts, "; ")
}

// Result implements proxy.Balancer: a failure counts toward taking the
// server down and asks for an active check at once.
func (p *Pool) Result(server *proxy.Backend, err error) {
	srv := p.server(server.Server)
	if srv == nil {
		return
	}
	if err != nil {
		srv.passiveFailed.Add(1)
	}
	cfg := srv.cfg.Load()
	if cfg.health.Disabled {
		return
	}
	if tr := srv.observe(err, false, cfg.health.Rise, cfg.health.Fall); tr != nil {
		p.report(srv, tr)
	}
	if err != nil {
		srv.wake(srv.checkNow)
	}
}

// Acquire implements proxy.Balancer.
func (p *Pool) Acquire(server *proxy.Backend) (release func()) {
	srv := p.server(server.Server)
	if srv == nil {
		return func() {}
	}
	srv.sessions.Add(1)
	var once sync.Once
	return func() { once.Do(func() { srv.sessions.Add(-1) }) }
}

func (p *Pool) server(name string) *server {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, sl := range p.slots {
		if sl.srv.name == name {
			return sl.srv
		}
	}
	return nil
}

func (p *Pool) report(srv *server, tr *transition) {
	p.mu.RLock()
	on := p.onEvent
	p.mu.RUnlock()
	if on != nil {
		on(Event{Backend: p.name, Server: srv.name, Addr: srv.addr, Health: tr.to, Err: tr.err})
	}
}

// Available reports whether some server takes new logins.
func (p *Pool) Available() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, sl := range p.slots {
		if sl.srv.available() {
			return true
		}
	}
	return false
}

// pinned is a Balancer that offers one server of a pool: a route that
// names the server (a directory's mailHost) cannot fail over.
type pinned struct {
	p  *Pool
	be *proxy.Backend
}

func (b pinned) Pick(_ *proxy.SessionInfo, _ string, tried []string) (*proxy.Backend, error) {
	srv := b.p.server(b.be.Server)
	if srv == nil || slices.Contains(tried, srv.name) || !srv.available() {
		b.p.mu.RLock()
		defer b.p.mu.RUnlock()
		return nil, fmt.Errorf("%w: backend %s, server %s named by the route: %s", proxy.ErrNoServer, b.p.name, b.be.Server, b.p.whyNone(tried))
	}
	return b.be, nil
}

func (b pinned) Result(server *proxy.Backend, err error)        { b.p.Result(server, err) }
func (b pinned) Acquire(server *proxy.Backend) (release func()) { return b.p.Acquire(server) }

// pin returns a Backend of the pool restricted to the server in slot i.
func (p *Pool) pin(i int) *proxy.Backend {
	tmpl := *p.backend
	tmpl.Servers = pinned{p: p, be: p.slots[i].be}
	return &tmpl
}

// score is the weighted rendezvous score of (key, server): -w / ln(u)
// with u uniform in (0, 1) from a hash stable across processes.
func score(key, server string, w float64) float64 {
	h := fnv64(key, server)
	u := (float64(h>>11) + 0.5) / (1 << 53)
	return -w / math.Log(u)
}

// fnv64 is FNV-1a over key, a zero byte and server, finished with
// SplitMix64's mixer so that near keys spread.
func fnv64(key, server string) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(key); i++ {
		h = (h ^ uint64(key[i])) * prime
	}
	h *= prime // the separator, a zero byte
	for i := 0; i < len(server); i++ {
		h = (h ^ uint64(server[i])) * prime
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
