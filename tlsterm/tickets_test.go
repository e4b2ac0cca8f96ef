package tlsterm

import (
	"crypto/tls"
	"sync"
	"testing"
	"time"
)

// fakeClock is a Server's clock that a test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestTicketRotation: keys rotate every TicketKeyRotation, lazily on the
// next handshake; a ticket resumes for one more period after the key that
// sealed it was replaced, and not after two.
func TestTicketRotation(t *testing.T) {
	ca, a, _ := twoCerts(t)
	const period = time.Hour
	s := newServer(t, ServerOptions{Certificates: []CertFile{a}, TicketKeyRotation: period})
	clock := &fakeClock{t: time.Now()}
	s.now = clock.now
	// Keys from NewServer were drawn on the real clock; start from a fresh
	// set on the fake one.
	s.tickets = newTicketKeys(period, clock.now())
	s.tickets.register(s.cfg, "")
	ts := serveTLS(t, s.TLSConfig(), echo)

	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(versionName(v), func(t *testing.T) {
			// ticket returns a client holding one fresh ticket.
			ticket := func() *tls.Config {
				cfg := clientCfg(ca.Pool(), "mail.example.com", "imap")
				cfg.MaxVersion = v
				cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
				mustDial(t, ts.addr, cfg)
				ts.result(t)
				return cfg
			}
			resumes := func(cfg *tls.Config) bool {
				t.Helper()
				c := mustDial(t, ts.addr, cfg)
				ts.result(t)
				return c.ConnectionState().DidResume
			}

			// A resumption brings a new ticket, so each check uses its own
			// client: old1 and old2 hold tickets sealed with the same key.
			old1, old2 := ticket(), ticket()
			if fresh := ticket(); !resumes(fresh) {
				t.Fatal("no resumption before any rotation")
			}
			clock.add(period) // rotation on the next handshake: the old key becomes the previous one
			if !resumes(old1) {
				t.Error("a ticket one rotation old did not resume")
			}
			clock.add(period) // and now it is gone
			if resumes(old2) {
				t.Error("a ticket two rotations old resumed")
			}
			// After an idle stretch of several periods, both keys are new.
			last := ticket()
			clock.add(5 * period)
			if resumes(last) {
				t.Error("a ticket from before a long pause resumed")
			}
		})
	}
}

func TestTicketKeysLabels(t *testing.T) {
	tk := newTicketKeys(time.Hour, time.Now())
	tk.mu.Lock()
	defer tk.mu.Unlock()
	a, b := tk.keysLocked("a"), tk.keysLocked("b")
	if len(a) != 1 || a[0] == b[0] {
		t.Errorf("labels share keys or there is a previous key at birth: %x %x", a, b)
	}
	if again := tk.keysLocked("a"); again[0] != a[0] {
		t.Error("derivation is not deterministic")
	}
}

func TestSessionTicketsOff(t *testing.T) {
	ca, a, _ := twoCerts(t)
	s := newServer(t, ServerOptions{Certificates: []CertFile{a}, TicketKeyRotation: -1})
	ts := serveTLS(t, s.TLSConfig(), echo)
	cfg := clientCfg(ca.Pool(), "mail.example.com")
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	mustDial(t, ts.addr, cfg)
	if mustDial(t, ts.addr, cfg).ConnectionState().DidResume {
		t.Error("resumed with session tickets off")
	}
}
