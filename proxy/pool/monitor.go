package pool

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Event is a server's change of health.
type Event struct {
	Backend, Server, Addr string
	Health                Health // Up or Down
	// Err is the failure that took the server down.
	Err string
}

// MonitorOptions configure a Monitor.
type MonitorOptions struct {
	Logger *zap.Logger
	// OnEvent, when set, hears every health change (for the audit trail);
	// it is called from checkers and sessions and must not block for long.
	OnEvent func(Event)
}

// Monitor runs the health checks of the current Set's servers and keeps
// their state across reloads.
type Monitor struct {
	log     *zap.Logger
	onEvent func(Event)

	mu      sync.Mutex
	set     *Set
	running map[string]*runner // by runKey
	closed  bool
	wg      sync.WaitGroup
}

// runner is one server's checker.
type runner struct {
	srv    *server
	cancel context.CancelFunc
}

// NewMonitor returns a Monitor with no Set yet.
func NewMonitor(o MonitorOptions) *Monitor {
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	return &Monitor{log: log, onEvent: o.OnEvent, running: map[string]*runner{}}
}

func runKey(backend, name, addr string) string { return backend + "\x00" + name + "\x00" + addr }

// Apply makes set current. A server of set whose backend, name and
// address were in the previous one takes over its state (health, admin
// state, sessions, checker), with set's settings; new servers start
// their checks at once; servers no longer listed stop theirs (their open
// sessions go on).
func (m *Monitor) Apply(set *Set) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	keep := map[string]bool{}
	for _, p := range set.Pools() {
		p.mu.Lock()
		p.onEvent = m.event
		for i := range p.slots {
			sl := &p.slots[i]
			k := runKey(p.name, sl.srv.name, sl.srv.addr)
			keep[k] = true
			if r, ok := m.running[k]; ok {
				r.srv.cfg.Store(&checkConfig{be: sl.be, health: p.health})
				sl.srv = r.srv
				r.srv.wake(r.srv.adminChanged) // settings may have changed
				continue
			}
			ctx, cancel := context.WithCancel(context.Background())
			m.running[k] = &runner{srv: sl.srv, cancel: cancel}
			m.wg.Add(1)
			go m.check(ctx, sl.srv)
		}
		p.mu.Unlock()
	}
	for k, r := range m.running {
		if !keep[k] {
			r.cancel()
			delete(m.running, k)
		}
	}
	m.set = set
}

// Set returns the current Set (nil before Apply).
func (m *Monitor) Set() *Set {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.set
}

// Close stops every check and waits for them.
func (m *Monitor) Close() {
	m.mu.Lock()
	m.closed = true
	for k, r := range m.running {
		r.cancel()
		delete(m.running, k)
	}
	m.mu.Unlock()
	m.wg.Wait()
}

func (m *Monitor) event(e Event) {
	if e.Health == Down {
		m.log.Warn("backend server down", zap.String("backend", e.Backend), zap.String("server", e.Server), zap.String("error", e.Err))
	} else {
		m.log.Info("backend server up", zap.String("backend", e.Backend), zap.String("server", e.Server))
	}
	if m.onEvent != nil {
		m.onEvent(e)
	}
}

// check runs srv's active checks until ctx ends: one at once, then every
// Interval, every FastInterval while the server is changing state, and at
// once after a failed connection of a session.
func (m *Monitor) check(ctx context.Context, srv *server) {
	defer m.wg.Done()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		cfg := srv.cfg.Load()
		h := cfg.health
		srv.mu.Lock()
		paused := h.Disabled || srv.admin == Disabled
		srv.mu.Unlock()
		wait := time.Duration(-1)
		if !paused {
			err := checkOnce(ctx, cfg)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				srv.checksFailed.Add(1)
				m.log.Debug("backend health check failed", zap.String("backend", srv.backend), zap.String("server", srv.name), zap.Error(err))
			} else {
				srv.checksOK.Add(1)
			}
			if tr := srv.observe(err, true, h.Rise, h.Fall); tr != nil {
				m.event(Event{Backend: srv.backend, Server: srv.name, Addr: srv.addr, Health: tr.to, Err: tr.err})
			}
			srv.mu.Lock()
			changing := (srv.health != Down && srv.failRun > 0) || (srv.health == Down && srv.okRun > 0)
			srv.mu.Unlock()
			wait = h.Interval
			if changing {
				wait = h.FastInterval
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		var tick <-chan time.Time
		if wait >= 0 {
			timer.Reset(wait)
			tick = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case <-tick:
		case <-srv.checkNow:
		case <-srv.adminChanged:
		}
	}
}

// Collector exports the current Set's servers: health, admin state,
// sessions and check counters. Labels are the configured backend and
// server names only.
func (m *Monitor) Collector() prometheus.Collector { return collector{m} }

type collector struct{ m *Monitor }

var (
	upDesc = prometheus.NewDesc("imapwarden_backend_up",
		"1 while the backend server passes its health checks (or has not been checked yet, or checks are off), 0 when it is down.",
		[]string{"backend", "server"}, nil)
	adminDesc = prometheus.NewDesc("imapwarden_backend_admin_state",
		"The operator's state of the backend server: 1 for the current one of enabled, drain, disabled.",
		[]string{"backend", "server", "state"}, nil)
	sessionsDesc = prometheus.NewDesc("imapwarden_backend_sessions",
		"Sessions logged in to the backend server now.", []string{"backend", "server"}, nil)
	checksDesc = prometheus.NewDesc("imapwarden_backend_health_checks_total",
		"Active health checks of the backend server, by result (ok, failed).", []string{"backend", "server", "result"}, nil)
	connFailDesc = prometheus.NewDesc("imapwarden_backend_connect_failures_total",
		"Logins that could not connect to the backend server (and failed over when another server was left).",
		[]string{"backend", "server"}, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{upDesc, adminDesc, sessionsDesc, checksDesc, connFailDesc} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	set := c.m.Set()
	if set == nil {
		return
	}
	for _, p := range set.Pools() {
		p.mu.RLock()
		for _, sl := range p.slots {
			s := sl.srv
			s.mu.Lock()
			health, admin := s.health, s.admin
			s.mu.Unlock()
			up := 1.0
			if health == Down {
				up = 0
			}
			ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, up, p.name, s.name)
			for _, a := range []Admin{Enabled, Draining, Disabled} {
				v := 0.0
				if a == admin {
					v = 1
				}
				ch <- prometheus.MustNewConstMetric(adminDesc, prometheus.GaugeValue, v, p.name, s.name, a.String())
			}
			ch <- prometheus.MustNewConstMetric(sessionsDesc, prometheus.GaugeValue, float64(s.sessions.Load()), p.name, s.name)
			ch <- prometheus.MustNewConstMetric(checksDesc, prometheus.CounterValue, float64(s.checksOK.Load()), p.name, s.name, "ok")
			ch <- prometheus.MustNewConstMetric(checksDesc, prometheus.CounterValue, float64(s.checksFailed.Load()), p.name, s.name, "failed")
			ch <- prometheus.MustNewConstMetric(connFailDesc, prometheus.CounterValue, float64(s.passiveFailed.Load()), p.name, s.name)
		}
		p.mu.RUnlock()
	}
}
