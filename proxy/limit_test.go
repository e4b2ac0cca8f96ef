package proxy

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// fakeLimiter refuses by simple rules and records what it was asked.
type fakeLimiter struct {
	mu          sync.Mutex
	refuseConn  bool
	conns, live int
	failures    map[string]int
	sessions    int
	noops       int
	fetched     int64
	// messages counts the messages Delivered was told of; past
	// maxMessages (when set) it refuses.
	messages, maxMessages int
	// maxBytes (when set) refuses content that would take fetched past
	// it, uncharged.
	maxBytes int64
	// places: logins let through and not yet given back (LoginPlace).
	places int
}

func (f *fakeLimiter) Connect(s *SessionInfo) (LimitResult, LimitConn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.conns++
	if f.refuseConn {
		return LimitResult{Exceeded: true, Limit: "connections_per_ip", Key: "ip", Reason: "Too many connections"}, nil
	}
	f.live++
	return LimitResult{}, &fakeConn{f: f, s: s}
}

// fakeConn is a fakeLimiter's handle on one connection.
type fakeConn struct {
	f *fakeLimiter
	s *SessionInfo
}

func (c *fakeConn) Release()                   { c.f.mu.Lock(); c.f.live--; c.f.mu.Unlock() }
func (c *fakeConn) Snapshot() map[string]int64 { return nil }
func (c *fakeConn) Login(_ context.Context, user string) (LimitResult, LoginPlace) {
	r := c.f.Login(c.s, user)
	if r.Exceeded {
		return r, nil
	}
	c.f.mu.Lock()
	c.f.places++
	c.f.mu.Unlock()
	return r, &fakePlace{c: c, user: user}
}

// fakePlace is a login in flight of a fakeLimiter: given back once.
type fakePlace struct {
	c    *fakeConn
	user string
	done bool
}

func (p *fakePlace) Result(ok bool) time.Duration {
	if p.done {
		return 0
	}
	p.Release()
	return p.c.f.LoginResult(p.c.s, p.user, ok)
}

func (p *fakePlace) Release() {
	if p.done {
		return
	}
	p.done = true
	p.c.f.mu.Lock()
	p.c.f.places--
	p.c.f.mu.Unlock()
}
func (c *fakeConn) Session() (LimitResult, func())            { return c.f.Session(c.s) }
func (c *fakeConn) Command(cmd *imapwire.Command) LimitResult { return c.f.Command(c.s, cmd) }
func (c *fakeConn) Delivered(o int64, m int) LimitResult      { return c.f.Delivered(c.s, o, m) }

func (f *fakeLimiter) Login(_ *SessionInfo, user string) LimitResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failures[user] >= 2 {
		return LimitResult{Exceeded: true, Limit: "login_failures_per_user", Key: "user", Code: "AUTHENTICATIONFAILED", Reason: "Authentication failed"}
	}
	return LimitResult{}
}

func (f *fakeLimiter) LoginResult(_ *SessionInfo, user string, ok bool) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !ok {
		f.failures[user]++
		return time.Millisecond
	}
	return 0
}

func (f *fakeLimiter) Session(s *SessionInfo) (LimitResult, func()) {
	if s.User == "bob" {
		return LimitResult{Exceeded: true, Limit: "sessions_per_user", Key: "user"}, nil
	}
	f.mu.Lock()
	f.sessions++
	f.mu.Unlock()
	return LimitResult{}, func() { f.mu.Lock(); f.sessions--; f.mu.Unlock() }
}

func (f *fakeLimiter) Command(_ *SessionInfo, cmd *imapwire.Command) LimitResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	if cmd.Name == "NOOP" {
		if f.noops++; f.noops > 2 {
			return LimitResult{Exceeded: true, Limit: "commands_per_second", Key: "session"}
		}
	}
	return LimitResult{}
}

func (f *fakeLimiter) Delivered(_ *SessionInfo, bytes int64, msgs int) LimitResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.maxBytes > 0 && f.fetched+bytes > f.maxBytes {
		return LimitResult{Exceeded: true, Limit: "fetch_bytes_per_user", Key: "user"}
	}
	f.fetched += bytes
	f.messages += msgs
	if f.maxMessages > 0 && f.messages > f.maxMessages {
		return LimitResult{Exceeded: true, Limit: "fetch_messages_per_user", Key: "user"}
	}
	return LimitResult{Alert: true, Limit: "fetch_bytes_per_user", Key: "user"}
}

// A message whose content items are empty (BODY[] {0}, a partial fetch
// past the end) is still a message fetched: the message cap counts it as
// the audit does, or a client could list a mailbox's messages past the
// cap (found by FuzzDifferential: 43 such messages against a cap of 10).
func TestMessageCapCountsEmptyContent(t *testing.T) {
	b := startFixedBackend(t, map[string][2]string{
		"SELECT INBOX": {"* 3 EXISTS\r\n", "OK [READ-WRITE] done\r\n"},
		// The proxy asks for UID too (imapwire.FetchEdit).
		"FETCH 1:3 (UID BODY.PEEK[]<500.10>)": {"* 1 FETCH (BODY[]<500> \"\")\r\n* 2 FETCH (BODY[]<500> {0}\r\n)\r\n* 3 FETCH (BODY[]<500> \"\")\r\n",
			"OK done\r\n"},
	})
	fl := &fakeLimiter{failures: map[string]int{}, maxMessages: 2}
	h := newHarness(t, func(o *Options) {
		o.Limiter = fl
		o.Router = &StaticRouter{Default: &Backend{Name: "fixed", Addr: b.ln.Addr().String(), Security: BackendPlain, Login: LoginCommand}}
	})
	c := h.login()
	c.transact("s SELECT INBOX", "s OK")
	c.send("f FETCH 1:3 (BODY.PEEK[]<500.10>)")
	c.expect("* 1 FETCH")
	c.expect("* 2 FETCH")
	c.expect(")")
	c.expectClosed("* BYE [LIMIT]")
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.messages != 3 {
		t.Errorf("the limiter was told of %d messages, want 3 (the third refused)", fl.messages)
	}
}

func TestLimiterHooks(t *testing.T) {
	fl := &fakeLimiter{failures: map[string]int{}}
	h := newHarness(t, func(o *Options) { o.Limiter = fl })

	// Failed logins lock the user out before the backend is asked again.
	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	c.transact("a1 LOGIN alice wrong", "a1 NO [AUTHENTICATIONFAILED]")
	c.transact("a2 LOGIN alice wrong", "a2 NO [AUTHENTICATIONFAILED]")
	c.c.Close()
	c = dialTLS(t, h.imaps)
	c.expect("* OK")
	c.transact("a3 LOGIN alice alice-pw", "a3 NO [AUTHENTICATIONFAILED]")
	fl.mu.Lock()
	fl.failures["alice"] = 0
	fl.mu.Unlock()

	// Sessions per user.
	c.transact("a4 LOGIN bob bob-pw", "a4 NO [LIMIT]")
	// Commands: the third NOOP is refused, the session goes on.
	c.transact("a5 LOGIN alice alice-pw", "a5 OK")
	c.transact("b1 NOOP", "b1 OK")
	c.transact("b2 NOOP", "b2 OK")
	c.transact("b3 NOOP", "b3 NO [LIMIT]")
	c.transact("b4 SELECT INBOX", "b4 OK")
	c.transact("b5 FETCH 1 (BODY.PEEK[])", "b5 OK")
	c.send("b6 LOGOUT")
	c.expectClosed("* BYE", "b6 OK")

	// Connections.
	fl.mu.Lock()
	fl.refuseConn = true
	fl.mu.Unlock()
	p := dialPlain(t, h.starttls)
	p.expectClosed("* BYE [LIMIT] Too many connections")

	waitFor(t, func() bool {
		fl.mu.Lock()
		defer fl.mu.Unlock()
		return fl.live == 0 && fl.sessions == 0
	})
	fl.mu.Lock()
	if fl.fetched < int64(len(testMessage(1))) {
		t.Errorf("fetched %d bytes", fl.fetched)
	}
	fl.mu.Unlock()
	h.audit.mu.Lock()
	defer h.audit.mu.Unlock()
	var kinds []string
	for _, r := range h.audit.limits {
		kinds = append(kinds, r.Limit)
	}
	for _, want := range []string{"login_failures_per_user", "sessions_per_user", "commands_per_second", "fetch_bytes_per_user", "connections_per_ip"} {
		if !strings.Contains(strings.Join(kinds, ","), want) {
			t.Errorf("limit %s not audited (got %v)", want, kinds)
		}
	}
}
