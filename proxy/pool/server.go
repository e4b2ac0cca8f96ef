package pool

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/imapwarden/imapwarden/proxy"
)

// Health is what the checks say of a server.
type Health int

const (
	// Unknown: not checked yet (or checks are off); it takes logins.
	Unknown Health = iota
	Up
	Down
)

func (h Health) String() string {
	switch h {
	case Up:
		return "up"
	case Down:
		return "down"
	}
	return "unknown"
}

// Admin is the operator's state of a server.
type Admin int

const (
	// Enabled: takes new logins when healthy.
	Enabled Admin = iota
	// Draining: takes no new login; its sessions go on (or are ended on
	// request). Health checks go on.
	Draining
	// Disabled: out of service for maintenance: no new login, and no
	// health checks (its failures are expected).
	Disabled
)

func (a Admin) String() string {
	switch a {
	case Draining:
		return "drain"
	case Disabled:
		return "disabled"
	}
	return "enabled"
}

// ParseAdmin reads "enabled", "drain" or "disabled".
func ParseAdmin(s string) (Admin, bool) {
	switch s {
	case "enabled", "enable":
		return Enabled, true
	case "drain", "draining":
		return Draining, true
	case "disabled", "disable":
		return Disabled, true
	}
	return 0, false
}

// checkConfig is what a server's checker needs; replaced as a whole on
// reload.
type checkConfig struct {
	be     *proxy.Backend // the server's own, as sessions dial it
	health HealthOptions  // defaults applied
}

// server is one server of a pool and its state. The state survives
// reloads (Monitor.Apply moves it to the new pool).
type server struct {
	backend, name, addr string
	cfg                 atomic.Pointer[checkConfig]
	sessions            atomic.Int64
	// Counters for metrics.
	checksOK, checksFailed, passiveFailed atomic.Uint64

	mu       sync.Mutex
	health   Health
	admin    Admin
	okRun    int // consecutive successful active checks
	failRun  int // consecutive failures, active or passive
	lastErr  string
	since    time.Time // of the current health
	lastSeen time.Time // of the last check

	// checkNow asks the checker for a check at once (a passive failure).
	checkNow chan struct{}
	// adminChanged wakes the checker of a disabled server.
	adminChanged chan struct{}
}

func newServer(backend, name, addr string) *server {
	return &server{backend: backend, name: name, addr: addr, since: time.Now(),
		checkNow: make(chan struct{}, 1), adminChanged: make(chan struct{}, 1)}
}

// available reports whether the server takes new logins.
func (s *server) available() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.admin == Enabled && s.health != Down
}

// transition is a change of health worth telling (Event).
type transition struct {
	to  Health
	err string
}

// observe records a check result; active says it came from a health
// check rather than from a session's connection. It returns the
// transition, if any.
func (s *server) observe(err error, active bool, rise, fall int) *transition {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if active {
		s.lastSeen = now
	}
	if err == nil {
		s.failRun = 0
		if !active {
			return nil // a session's success says nothing new of a down server
		}
		s.okRun++
		s.lastErr = ""
		switch {
		case s.health == Unknown:
			s.health, s.since = Up, now
		case s.health == Down && s.okRun >= rise:
			s.health, s.since = Up, now
			return &transition{to: Up}
		}
		return nil
	}
	s.okRun = 0
	s.failRun++
	s.lastErr = err.Error()
	// The first check decides; afterwards fall failures in a row do.
	if s.health != Down && ((s.health == Unknown && active) || s.failRun >= fall) {
		s.health, s.since = Down, now
		return &transition{to: Down, err: s.lastErr}
	}
	return nil
}

// setAdmin changes the admin state; leaving Disabled forgets the health,
// which the next check decides again.
func (s *server) setAdmin(a Admin) (prev Admin) {
	s.mu.Lock()
	prev = s.admin
	s.admin = a
	if prev == Disabled && a != Disabled {
		s.health, s.okRun, s.failRun, s.lastErr, s.since = Unknown, 0, 0, "", time.Now()
	}
	s.mu.Unlock()
	select {
	case s.adminChanged <- struct{}{}:
	default:
	}
	return prev
}

// status is a snapshot of the server for the admin API.
func (s *server) status() ServerStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := ServerStatus{
		Name: s.name, Address: s.addr, Health: s.health.String(), Admin: s.admin.String(),
		Sessions: s.sessions.Load(), Since: s.since, LastError: s.lastErr,
	}
	if !s.lastSeen.IsZero() {
		t := s.lastSeen
		st.LastCheck = &t
	}
	if c := s.cfg.Load(); c != nil && c.health.Disabled {
		st.Health = "unchecked"
	}
	return st
}

func (s *server) wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
