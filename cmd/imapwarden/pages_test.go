package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
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

// TestLockoutsAPIPaged: GET /ratelimit/lockouts answers a page of at most
// admin.page_size rows and the total that matched, filtered by user
// (folded, a part of the name) and address (its host, an IPv6 /64, or a
// prefix); paging arguments are read strictly, as adminArgs reads every
// argument: a second reading is refused, never guessed.
func TestLockoutsAPIPaged(t *testing.T) {
	lim, err := ratelimit.New(ratelimit.Options{ConnectionsPerIP: ratelimit.Off, ConnectionsPerSubnet: ratelimit.Off,
		LoginFailuresPerUser: -1, LoginFailuresPerIP: -1, LoginFailuresPerUserIP: 1, LockoutBase: time.Hour, LockoutMax: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer lim.Close()
	for i := range 7 {
		s := &proxy.SessionInfo{ClientAddr: netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, byte(i), 15: 9}), 40000)}
		_, conn := lim.Connect(s)
		_, place := conn.Login(context.Background(), fmt.Sprintf("user%d", i))
		place.Result(false)
		conn.Release()
	}
	view := new(atomic.Pointer[adminView])
	view.Store(&adminView{tokens: adminTokens{{name: "soc", scope: scopeRead, digest: sha256.Sum256([]byte(testReadToken))}}})
	l := defaultAdminLimits
	l.PageSize = 3
	a := newAdmin(nil, prometheus.NewRegistry(), zap.NewAtomicLevel(), view, l, zaptest.NewLogger(t))
	a.limiter.Store(lim)
	h := a.handler()
	type answer struct {
		Lockouts             []ratelimit.Lockout
		Total, Offset, Limit int
		Error                string
	}
	get := func(query string) (int, answer) {
		t.Helper()
		req := httptest.NewRequest("GET", "http://admin.example/ratelimit/lockouts"+query, nil)
		req.Header.Set("Authorization", "Bearer "+testReadToken)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var out answer
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s: %v: %s", query, err, rec.Body)
		}
		return rec.Code, out
	}
	users := func(ls []ratelimit.Lockout) (u []string) {
		for _, x := range ls {
			u = append(u, x.User)
		}
		return u
	}
	if code, out := get(""); code != 200 || len(out.Lockouts) != 3 || out.Total != 7 || out.Limit != 3 {
		t.Errorf("first page: %d %+v", code, out)
	}
	if code, out := get("?offset=6"); code != 200 || len(out.Lockouts) != 1 || out.Total != 7 || out.Offset != 6 {
		t.Errorf("last page: %d %+v", code, out)
	}
	if code, out := get("?limit=2&offset=2"); code != 200 || strings.Join(users(out.Lockouts), ",") != "user2,user3" {
		t.Errorf("limit=2&offset=2: %d %q", code, users(out.Lockouts))
	}
	if code, out := get("?user=USER4"); code != 200 || out.Total != 1 || strings.Join(users(out.Lockouts), ",") != "user4" {
		t.Errorf("user=USER4: %d %+v", code, out)
	}
	// Another address of user5's /64 names its host.
	if code, out := get("?ip=2001:db8:1:5::ffff"); code != 200 || out.Total != 1 || strings.Join(users(out.Lockouts), ",") != "user5" {
		t.Errorf("ip of user5's host: %d %+v", code, out)
	}
	if code, out := get("?ip=2001:db8:1::/61"); code != 200 || out.Total != 7 {
		t.Errorf("ip=a prefix of all: %d %+v", code, out)
	}
	for _, bad := range []string{"?limit=0", "?limit=4", "?limit=-1", "?limit=+2", "?limit=02", "?limit=", "?offset=x", "?offset=1e3",
		"?offset=99999999999999999999", "?user=a&user=b", "?ip=2001:db8::1/48", "?ip=host", "?ip=::ffff:192.0.2.0/120", "?sort=user", "?user=%ff"} {
		if code, out := get(bad); code != http.StatusBadRequest || out.Error == "" {
			t.Errorf("%s: %d %+v, want 400 with an error", bad, code, out)
		}
	}
}

// TestSessionsAPIPaged: GET /sessions answers a page, oldest first, with
// the total; a query it cannot read is refused.
func TestSessionsAPIPaged(t *testing.T) {
	f := startAdminFixture(t, "  page_size: 2")
	for range 3 {
		f.session()
	}
	var out struct {
		Sessions             []proxy.SessionSnapshot
		Total, Offset, Limit int
	}
	eventually(t, "three sessions", func() bool {
		code, body := f.do("GET", "/sessions", testReadToken, "", "")
		if code != 200 {
			t.Fatalf("GET /sessions: %d %s", code, body)
		}
		json.Unmarshal([]byte(body), &out)
		return out.Total >= 3
	})
	if len(out.Sessions) != 2 || out.Limit != 2 {
		t.Errorf("a page of admin.page_size 2: %+v", out)
	}
	if code, body := f.do("GET", "/sessions?limit=3", testReadToken, "", ""); code != http.StatusBadRequest {
		t.Errorf("limit over admin.page_size: %d %s", code, body)
	}
	if code, body := f.do("GET", "/sessions?ip=127.0.0.1&offset=1", testReadToken, "", ""); code != 200 || !strings.Contains(body, `"offset": 1`) {
		t.Errorf("ip and offset: %d %s", code, body)
	}
}

// TestConsoleListsPaged: the console's Lockouts and Sessions pages show at
// most admin.page_size rows, the total, links to the next page, and a
// filter that finds one user's lockout among them.
func TestConsoleListsPaged(t *testing.T) {
	ctx := browser(t)
	f := startAdminFixture(t, "  page_size: 2")
	for _, u := range []string{"bob", "carol", "dave"} {
		s := f.session()
		s.cmd("a", "NO", "LOGIN "+u+" wrong")
		s.cmd("b", "NO", "LOGIN "+u+" wrong")
	}
	for range 3 {
		f.session()
	}
	base := "http://" + f.admin
	step(t, ctx, chromedp.Navigate(base+"/console/"), chromedp.WaitVisible(chromedp.CSS("#login")),
		chromedp.SendKeys(chromedp.CSS("#token"), testReadToken),
		chromedp.Submit(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#sessions")),
	)
	if n := evalJS[int](t, ctx, `document.querySelectorAll("#sessions tbody tr").length`); n != 2 {
		t.Errorf("%d session rows, admin.page_size 2", n)
	}
	if c := textOf(t, ctx, "#session-count"); c == "2 sessions" || !strings.HasSuffix(c, " sessions") {
		t.Errorf("session count %q, want the total (at least 3)", c)
	}
	step(t, ctx, chromedp.Navigate(base+"/console/lockouts"), chromedp.WaitVisible(chromedp.CSS("#lockouts")))
	if n := evalJS[int](t, ctx, `document.querySelectorAll("#lockouts tbody tr").length`); n != 2 {
		t.Errorf("%d lockout rows, admin.page_size 2", n)
	}
	if c := textOf(t, ctx, "#lockout-count"); c != "3 lockouts" {
		t.Errorf("lockout count %q", c)
	}
	step(t, ctx, chromedp.Click(chromedp.CSS("#next")), chromedp.WaitVisible(chromedp.CSS("#prev")))
	if users := evalJS[[]string](t, ctx, `Array.from(document.querySelectorAll("#lockouts td.user")).map(td => td.textContent)`); len(users) != 1 {
		t.Errorf("the second page: %q, want the third lockout", users)
	}
	step(t, ctx, chromedp.SendKeys(chromedp.CSS("#filter-user"), "CAR"), chromedp.Submit(chromedp.CSS("#filter")),
		chromedp.WaitVisible(chromedp.CSS("#lockouts")))
	if users := evalJS[[]string](t, ctx, `Array.from(document.querySelectorAll("#lockouts td.user")).map(td => td.textContent)`); len(users) != 1 || users[0] != "carol" {
		t.Errorf("filtered by user CAR: %q, want carol", users)
	}
	step(t, ctx, chromedp.Navigate(base+"/console/lockouts?limit=x"), chromedp.WaitVisible(chromedp.CSS("#error")))
	if e := textOf(t, ctx, "#error"); !strings.Contains(e, "limit") {
		t.Errorf("a bad limit: %q", e)
	}
	step(t, ctx, chromedp.Navigate(base+"/console/?sort=user"), chromedp.WaitVisible(chromedp.CSS("#error")))
	if e := textOf(t, ctx, "#error"); !strings.Contains(e, "sort") {
		t.Errorf("an unknown argument: %q", e)
	}
}
