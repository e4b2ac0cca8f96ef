package ratelimit

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// fakeClock is the injected clock: time moves only when a test says so.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newTest returns a Limiter on a fake clock; set adjusts the options.
func newTest(t testing.TB, set func(o *Options)) (*Limiter, *fakeClock) {
	t.Helper()
	clk := newClock()
	o := Options{Now: clk.Now}
	if set != nil {
		set(&o)
	}
	l, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, clk
}

var sessionSeq atomic.Int64

func info(ip string) *proxy.SessionInfo {
	n := sessionSeq.Add(1)
	return &proxy.SessionInfo{ID: fmt.Sprint("s", n), ClientAddr: netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(40000+n%20000))}
}

// allowedKeys are the only words a LimitResult.Key may hold.
var allowedKeys = map[string]bool{"": true, "ip": true, "subnet": true, "user": true, "user_ip": true, "session": true, "store": true}

// checkResult fails when a result would leak a user or an address into a
// metric label.
func checkResult(t testing.TB, r proxy.LimitResult) {
	t.Helper()
	if !allowedKeys[r.Key] {
		t.Errorf("LimitResult.Key %q is not a key kind", r.Key)
	}
	if strings.ContainsAny(r.Limit, ".:@") || strings.Contains(r.Limit, "alice") {
		t.Errorf("LimitResult.Limit %q looks like a value", r.Limit)
	}
}

// wantExceeded checks a refusal's limit, key and code.
func wantExceeded(t testing.TB, r proxy.LimitResult, limit, key, code string) {
	t.Helper()
	checkResult(t, r)
	if !r.Exceeded || r.Limit != limit || r.Key != key || r.Code != code {
		t.Fatalf("got %+v, want exceeded %s/%s [%s]", r, limit, key, code)
	}
}

func wantOK(t testing.TB, r proxy.LimitResult) {
	t.Helper()
	checkResult(t, r)
	if r.Exceeded {
		t.Fatalf("got %+v, want within limits", r)
	}
}

// connect opens a connection from ip and returns its info and release.
func connect(t testing.TB, l *Limiter, ip string) (*proxy.SessionInfo, func()) {
	t.Helper()
	s := info(ip)
	r, release := l.connectInfo(s)
	wantOK(t, r)
	return s, release
}

// login connects from ip and logs user in (Login, LoginResult ok,
// Session); it returns the info and a release for both.
func login(t testing.TB, l *Limiter, ip, user string) (*proxy.SessionInfo, func()) {
	t.Helper()
	s, rc := connect(t, l, ip)
	s.User = user
	wantOK(t, l.Login(s, user))
	l.LoginResult(s, user, true)
	r, rs := l.Session(s)
	wantOK(t, r)
	return s, func() { rs(); rc() }
}

// fail makes one failed login attempt of user from ip; it returns the
// Login result (a lockout) or the failure delay.
func fail(t testing.TB, l *Limiter, ip, user string) (proxy.LimitResult, time.Duration) {
	t.Helper()
	s, rc := connect(t, l, ip)
	defer rc()
	s.User = user
	if r := l.Login(s, user); r.Exceeded {
		checkResult(t, r)
		return r, 0
	}
	return proxy.LimitResult{}, l.LoginResult(s, user, false)
}

// parsed reads a command as the proxy does, effects included; with lit > 0
// it stops at a literal of that size (an APPEND's decision point).
func parsed(line string, lit int64) *imapwire.Command {
	var p imapwire.CommandParser
	var err error
	if lit > 0 {
		err = p.Line([]byte(line+"\r\n"), imapwire.Literal{Size: lit}, true)
	} else {
		err = p.Line([]byte(line+"\r\n"), imapwire.Literal{}, false)
	}
	if err == nil {
		err = p.Check(&imapwire.Context{State: imapwire.StateSelected, Delim: '/', Caps: ^imapwire.Cap(0)})
	}
	if err != nil {
		panic(fmt.Sprintf("%q: %v", line, err))
	}
	c := *p.Command()
	return &c
}

func fetchBody() *imapwire.Command { return parsed("a UID FETCH 1:* (UID BODY.PEEK[])", 0) }

func fetchFlags() *imapwire.Command { return parsed("a FETCH 1:* (FLAGS)", 0) }

// appendOf is an APPEND at its decision point: n octets announced.
func appendOf(n int64) *imapwire.Command {
	return parsed("a APPEND INBOX {"+strconv.FormatInt(n, 10)+"}", n)
}

var noop = parsed("a NOOP", 0)
