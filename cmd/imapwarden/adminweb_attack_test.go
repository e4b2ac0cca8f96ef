package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/proxy/ratelimit"
)

// TestAttackAdminTokenGuessesPerIPv6Host: admin.token_failures_per_ip
// bounds wrong tokens per address, but keys on the whole IPv6 address. One
// host holds a /64 and picks any of its 2^64 addresses per request (the
// rate limits count an IPv6 "address" as its /64 for this reason:
// rate_limits.ip_bits_v6), so after the bound is reached it moves to the
// next address and keeps guessing: the guard never locks it out, and each
// new address even writes a fresh admin-token-refused record to the trail.
func TestAttackAdminTokenGuessesPerIPv6Host(t *testing.T) {
	view := new(atomic.Pointer[adminView])
	view.Store(&adminView{tokens: adminTokens{{name: "soc", scope: scopeRead, digest: sha256.Sum256([]byte(testReadToken))}}})
	lim := defaultAdminLimits
	lim.TokenFailuresPerIP, lim.TokenFailureWindow = 3, time.Hour
	a := newAdmin(nil, prometheus.NewRegistry(), zap.NewAtomicLevel(), view, lim, zaptest.NewLogger(t))
	h := a.handler()
	do := func(remote, token string) int {
		req := httptest.NewRequest("GET", "http://admin.example/loglevel", nil)
		req.RemoteAddr = remote
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	// One host, 2001:db8:1:2::/64: each guess from a new address of it.
	for i := range 20 {
		if code := do(fmt.Sprintf("[2001:db8:1:2::%x]:40000", i+1), fmt.Sprintf("guess-%016d", i)); code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, code)
		}
	}
	// The host has made 20 wrong guesses, over 6 times the bound of 3: its
	// next token must not be compared, the right one included.
	if code := do("[2001:db8:1:2::ffff]:40000", testReadToken); code != http.StatusUnauthorized {
		t.Errorf("after 20 wrong tokens from one IPv6 /64 (admin.token_failures_per_ip 3), the right token from another address of it: %d, want 401 (locked out)", code)
	}
}

// pipeListener hands out one end of net.Pipe per queued remote address,
// as a TCP listener would hand out connections from those addresses.
type pipeListener struct {
	remotes chan *net.TCPAddr
	peers   []net.Conn
}

type remoteConn struct {
	net.Conn
	remote *net.TCPAddr
}

func (c remoteConn) RemoteAddr() net.Addr { return c.remote }

func (l *pipeListener) Accept() (net.Conn, error) {
	ra, ok := <-l.remotes
	if !ok {
		return nil, net.ErrClosed
	}
	a, b := net.Pipe()
	l.peers = append(l.peers, b)
	return remoteConn{a, ra}, nil
}
func (l *pipeListener) Close() error   { return nil }
func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv6loopback} }

// TestAttackAdminConnectionShareOfOneIPv6Host: admin.max_connections_per_ip
// gives "one address" a quarter of the pool so that one client cannot fill
// it, but counts whole IPv6 addresses. One host (a /64) opens its quarter
// from each of four of its addresses, requests under way (never shed), and
// holds every admin.max_connections slot: the kubelet's probes are shed.
func TestAttackAdminConnectionShareOfOneIPv6Host(t *testing.T) {
	t.Parallel()
	pl := &pipeListener{remotes: make(chan *net.TCPAddr)}
	ln := newLimitListener(pl, adminTimeouts{MaxConnections: 64, MaxConnectionsPerIP: 16}, zaptest.NewLogger(t))
	defer func() {
		for _, c := range pl.peers {
			c.Close()
		}
	}()
	accept := func(ip string) net.Conn {
		done := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				t.Error(err)
			}
			done <- c
		}()
		pl.remotes <- &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}
		// A shed connection makes Accept take the next one: a probe from
		// elsewhere (admitted) ends that wait.
		select {
		case c := <-done:
			return c
		case pl.remotes <- &net.TCPAddr{IP: net.ParseIP("192.0.2.200"), Port: 1}:
			(<-done).Close()
			return nil
		}
	}
	admitted := 0
	for i := range 17 {
		if c := accept(fmt.Sprintf("2001:db8:1:2::%x", i+1)); c != nil {
			defer c.Close()
			admitted++
		}
	}
	if admitted > 16 {
		t.Errorf("one IPv6 /64 (one host) holds %d admin connections, each from its own address; admin.max_connections_per_ip is 16", admitted)
	}
}

// TestAttackConsoleShowsHiddenCharactersOfAName: a client with no
// password tries LOGIN with names that read as "alice" but are not: a
// soft hyphen, a Unicode tag character, a Hangul filler (format and
// default-ignorable characters, which the front end refuses in a login
// name as "ambiguous-name", ARCHITECTURE.md §17). The refusals are
// recorded with the name as sent, and the console's audit search shows
// each as "alice": vis marks bidi controls and zero-width spaces, not
// these, so the operator reads failed logins of alice that were another
// name's, and cannot tell the three apart.
func TestAttackConsoleShowsHiddenCharactersOfAName(t *testing.T) {
	ctx := browser(t)
	f := startAdminFixture(t, "")
	for i, name := range []string{"alice\u00ad", "alice\U000E0020", "alice\u3164"} {
		loginLiteral(f.session(), fmt.Sprintf("h%d", i), name)
	}
	base := "http://" + f.admin
	step(t, ctx, chromedp.Navigate(base+"/console/"), chromedp.WaitVisible(chromedp.CSS("#login")),
		chromedp.SendKeys(chromedp.CSS("#token"), testReadToken),
		chromedp.Submit(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#sessions")),
		chromedp.Navigate(base+"/console/audit?search=1&kind=auth&user_glob=alic*"),
		chromedp.WaitVisible(chromedp.CSS("#audit")),
	)
	users := evalJS[[]string](t, ctx, `Array.from(document.querySelectorAll("#audit td.user")).map(td => td.textContent)`)
	if len(users) != 3 {
		t.Fatalf("auth records of alic*: %q, want the three refused names", users)
	}
	for _, u := range users {
		lit, _ := json.Marshal(u)
		if hidden := evalJS[bool](t, ctx, fmt.Sprintf(`/[\p{Cf}\p{Default_Ignorable_Code_Point}]/u.test(%s)`, lit)); hidden || u == "alice" {
			t.Errorf("the console shows the refused name %+q with its character raw, not marked: it reads as \"alice\"", u)
		}
	}
}

// TestAttackConsoleLockoutsPageUnbounded: an outsider with no password
// makes lockouts at will (login_failures_per_user failed LOGINs of a
// made-up name each; one IPv6 /48 holds 65,536 hosts), up to
// rate_limits.max_tracked_keys (262,144) in process and without bound in
// Redis. The console's Lockouts page, and GET /ratelimit/lockouts, list
// every one at each view, each row with its own Unlock form: at the scale
// an outsider reaches, the page the operator opens to lift the real
// victim's lockout is hundreds of megabytes. The audit search, for one,
// shows at most 1000 rows (maxSearchLimit).
func TestAttackConsoleLockoutsPageUnbounded(t *testing.T) {
	lim, err := ratelimit.New(ratelimit.Options{ConnectionsPerIP: ratelimit.Off, ConnectionsPerSubnet: ratelimit.Off,
		LoginFailuresPerUser: 1, LoginFailuresPerIP: -1, LoginFailuresPerUserIP: -1, LockoutBase: time.Hour, LockoutMax: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer lim.Close()
	const made = 5000
	for i := range made {
		s := &proxy.SessionInfo{ClientAddr: netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, byte(i >> 8), byte(i)}), 40000)}
		res, conn := lim.Connect(s)
		if res.Exceeded {
			t.Fatalf("connect %d: %+v", i, res)
		}
		res, place := conn.Login(context.Background(), fmt.Sprintf("nobody%05d", i))
		if res.Exceeded || place == nil {
			t.Fatalf("login %d: %+v", i, res)
		}
		place.Result(false)
		conn.Release()
	}
	if ls, _ := lim.Lockouts(context.Background()); len(ls) != made {
		t.Fatalf("%d lockouts, want %d", len(ls), made)
	}

	view := new(atomic.Pointer[adminView])
	view.Store(&adminView{tokens: adminTokens{{name: "oncall", scope: scopeWrite, digest: sha256.Sum256([]byte(testWriteToken))}}})
	a := newAdmin(nil, prometheus.NewRegistry(), zap.NewAtomicLevel(), view, defaultAdminLimits, zaptest.NewLogger(t))
	a.limiter.Store(lim)
	h := a.handler()
	req := httptest.NewRequest("POST", "http://admin.example/console/login", strings.NewReader(url.Values{"token": {testWriteToken}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	cookies := rec.Result().Cookies()
	if rec.Code != http.StatusSeeOther || len(cookies) != 1 {
		t.Fatalf("console sign-in: %d %s", rec.Code, rec.Body)
	}
	req = httptest.NewRequest("GET", "http://admin.example/console/lockouts", nil)
	req.AddCookie(cookies[0])
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	rows := strings.Count(rec.Body.String(), `<tr data-user=`)
	t.Logf("the lockouts page: %d rows, %d bytes (%d bytes a row)", rows, rec.Body.Len(), rec.Body.Len()/max(rows, 1))
	if rows > maxSearchLimit {
		t.Errorf("the console's lockouts page lists all %d lockouts an outsider made (%d bytes): no bound, no page", rows, rec.Body.Len())
	}
}
