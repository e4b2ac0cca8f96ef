package proxy

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// authFunc is an Authenticator made of a function.
type authFunc func(ctx context.Context, s *SessionInfo, c *Credentials) (*Identity, error)

func (f authFunc) Authenticate(ctx context.Context, s *SessionInfo, c *Credentials) (*Identity, error) {
	return f(ctx, s, c)
}

// Every way out of a login gives back the place the Limiter gave it
// among the logins in flight (ARCHITECTURE.md §12): a success, a wrong
// password, an authenticator or a backend that cannot answer, the
// session ending while the login runs.
func TestLoginGivesItsPlaceBack(t *testing.T) {
	closedAddr := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := ln.Addr().String()
		ln.Close()
		return a
	}
	entered := make(chan struct{}, 1)
	for _, tc := range []struct {
		name, login, want string
		set               func(o *Options)
		end               bool // the session ends while the authenticator runs
	}{
		{name: "success", login: "alice alice-pw", want: "OK"},
		{name: "wrong password", login: "alice wrong", want: "NO [AUTHENTICATIONFAILED]"},
		{name: "authenticator unavailable", login: "alice alice-pw", want: "NO [UNAVAILABLE]", set: func(o *Options) {
			o.Authenticator = authFunc(func(context.Context, *SessionInfo, *Credentials) (*Identity, error) {
				return nil, errors.New("directory down")
			})
		}},
		{name: "backend unavailable", login: "alice alice-pw", want: "NO [UNAVAILABLE]", set: func(o *Options) {
			o.Router = &StaticRouter{Default: &Backend{Name: "gone", Addr: closedAddr(), Security: BackendPlain, Login: LoginCommand}}
		}},
		{name: "session ended", login: "alice alice-pw", end: true, set: func(o *Options) {
			o.Authenticator = authFunc(func(ctx context.Context, _ *SessionInfo, _ *Credentials) (*Identity, error) {
				entered <- struct{}{}
				<-ctx.Done()
				return nil, ctx.Err()
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fl := &fakeLimiter{failures: map[string]int{}}
			h := newHarness(t, func(o *Options) {
				o.Limiter = fl
				if tc.set != nil {
					tc.set(o)
				}
			})
			c := dialTLS(t, h.imaps)
			c.expect("* OK")
			if tc.end {
				c.send("a1 LOGIN " + tc.login)
				<-entered
				h.srv.Close()
			} else {
				c.transact("a1 LOGIN "+tc.login, "a1 "+tc.want)
			}
			waitFor(t, func() bool {
				fl.mu.Lock()
				defer fl.mu.Unlock()
				return fl.places == 0
			})
		})
	}
}

// waitingLimiter's logins wait for a place until their context ends, as
// the ratelimit Limiter's do when every place is held.
type waitingLimiter struct {
	fakeLimiter
	mu       sync.Mutex
	entered  chan struct{}
	deadline time.Duration // what was left of the wait's deadline at its start
}

func (w *waitingLimiter) Connect(s *SessionInfo) (LimitResult, LimitConn) {
	r, c := w.fakeLimiter.Connect(s)
	if c == nil {
		return r, nil
	}
	return r, &waitingConn{fakeConn: c.(*fakeConn), w: w}
}

type waitingConn struct {
	*fakeConn
	w *waitingLimiter
}

func (c *waitingConn) Login(ctx context.Context, _ string) (LimitResult, LoginPlace) {
	dl, ok := ctx.Deadline()
	c.w.mu.Lock()
	if ok {
		c.w.deadline = time.Until(dl)
	}
	c.w.mu.Unlock()
	c.w.entered <- struct{}{}
	<-ctx.Done()
	return LimitResult{Exceeded: true, Limit: "login_failures_per_user_ip", Key: "user_ip", Code: "UNAVAILABLE"}, nil
}

// A login waiting for a place waits at most preauth_idle, and no longer
// than its session: a server closing ends the wait.
func TestLoginWaitBounded(t *testing.T) {
	wl := &waitingLimiter{fakeLimiter: fakeLimiter{failures: map[string]int{}}, entered: make(chan struct{}, 1)}
	h := newHarness(t, func(o *Options) {
		o.Limiter = wl
		o.Limits.PreAuthIdle = time.Hour
	})
	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	c.send("a1 LOGIN alice alice-pw")
	<-wl.entered
	wl.mu.Lock()
	if wl.deadline <= 0 || wl.deadline > time.Hour {
		t.Errorf("the wait's deadline is %v away, want within preauth_idle (1h)", wl.deadline)
	}
	wl.mu.Unlock()
	h.srv.Close()
	c.readToClose() // the refusal or the shutdown's BYE may come first
}
