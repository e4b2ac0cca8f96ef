package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/audit"
)

// TestAdminTokenFailuresBoundedPerAddress: after
// admin.token_failures_per_ip wrong tokens, an address's tokens are not
// compared until the window ends (the right one is refused too, API and
// console alike), while another address's are; the trail holds one
// security record at the first failure and one at the lockout, not one
// per guess, and the metric counts every refusal. No token is recorded.
func TestAdminTokenFailuresBoundedPerAddress(t *testing.T) {
	f := startAdminFixture(t, "  token_failures_per_ip: 3\n  token_failure_window: 1h")
	from := func(ip string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, n, a string) (net.Conn, error) {
			return d.DialContext(ctx, n, a)
		}}}
	}
	get := func(c *http.Client, path, token string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+f.admin+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	guesser, other := from("127.0.0.2"), from("127.0.0.3")
	const guess = "guess-guess-guess-guess"
	for i := range 5 {
		if code, _, _ := get(guesser, "/sessions", guess); code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, code)
		}
	}
	code, h, body := get(guesser, "/sessions", testReadToken)
	if code != http.StatusUnauthorized || h.Get("Retry-After") == "" {
		t.Errorf("the right token from an address past its wrong ones: %d %q %s, want 401 with Retry-After", code, h.Get("Retry-After"), body)
	}
	form := url.Values{"token": {testReadToken}}.Encode()
	req, _ := http.NewRequest("POST", "http://"+f.admin+"/console/login", strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://"+f.admin)
	if resp, err := guesser.Do(req); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("console sign-in with the right token from the locked address: %d, want 429", resp.StatusCode)
	}
	if code, _, body := get(other, "/sessions", testReadToken); code != http.StatusOK {
		t.Errorf("another address's right token: %d %s", code, body)
	}
	_, _, metrics := get(other, "/metrics", testReadToken)
	for _, want := range []string{`imapwarden_admin_token_failures_total{outcome="wrong"} 3`, `imapwarden_admin_token_failures_total{outcome="locked_out"} 4`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	var recs []*audit.Record
	eventually(t, "two security records", func() bool {
		files, err := audit.Files(f.auditPath)
		if err != nil {
			t.Fatal(err)
		}
		recs = nil
		if _, err := audit.Query(files, &audit.Filter{Kinds: []string{string(audit.KindSecurity)}}, func(r *audit.Record, line []byte) error {
			if strings.Contains(string(line), "guess-") || strings.Contains(string(line), testReadToken) {
				t.Errorf("a token in the trail: %s", line)
			}
			recs = append(recs, r)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return len(recs) >= 2
	})
	if len(recs) != 2 || recs[0].Event != "admin-token-refused" || recs[1].Event != "admin-token-lockout" || recs[0].IP.String() != "127.0.0.2" {
		for _, r := range recs {
			t.Logf("%s %s %s", r.Event, r.IP, r.Detail)
		}
		t.Errorf("want one admin-token-refused and one admin-token-lockout record of 127.0.0.2, got %d records", len(recs))
	}
}

// TestTokenGuardKeepsLockouts: past maxHosts remembered hosts, a new
// host takes the place of the oldest one not locked out, never of a
// lockout whose window runs; once every remembered host is locked out,
// the others share one count with the same bound, which locks them out
// together. Memory stays bounded throughout.
func TestTokenGuardKeepsLockouts(t *testing.T) {
	const maxGuessHosts = 64 // admin.token_failure_hosts, lowered
	g := newTokenGuard(2, time.Hour, maxGuessHosts, nil)
	now := time.Unix(1e9, 0)
	g.now = func() time.Time { return now }
	host := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}) }
	g.fail(host(0))
	g.fail(host(0))
	for i := 1; i <= 2*maxGuessHosts; i++ {
		now = now.Add(time.Millisecond)
		g.fail(host(i))
	}
	if _, locked := g.lockedOut(host(0)); !locked {
		t.Fatalf("the first host's lockout was forgotten after %d other hosts' failures", 2*maxGuessHosts)
	}
	if len(g.hosts) > maxGuessHosts {
		t.Fatalf("%d hosts remembered, bound %d", len(g.hosts), maxGuessHosts)
	}
	// Every remembered host locked out: the rest share one count.
	for i := 1; i < maxGuessHosts; i++ {
		g.fail(host(3*maxGuessHosts + i))
		g.fail(host(3*maxGuessHosts + i))
	}
	if len(g.hosts) > maxGuessHosts {
		t.Fatalf("%d hosts remembered, bound %d", len(g.hosts), maxGuessHosts)
	}
	if _, locked := g.lockedOut(host(0)); !locked {
		t.Fatal("the first host's lockout was forgotten")
	}
	fresh := host(5 * maxGuessHosts)
	if _, locked := g.lockedOut(fresh); locked {
		t.Fatal("a host never seen is locked out before the overflow count is used up")
	}
	g.fail(fresh)
	g.fail(host(5*maxGuessHosts + 1))
	if _, locked := g.lockedOut(host(5*maxGuessHosts + 2)); !locked {
		t.Error("two wrong tokens (the bound) from hosts not remembered while all are locked out: a third host's not locked out")
	}
	if len(g.hosts) > maxGuessHosts {
		t.Fatalf("%d hosts remembered, bound %d", len(g.hosts), maxGuessHosts)
	}
	// The windows end: all is forgotten and counted anew.
	now = now.Add(2 * time.Hour)
	if _, locked := g.lockedOut(host(0)); locked {
		t.Error("a lockout past its window")
	}
	if n := g.fail(fresh); n != 1 {
		t.Errorf("a fresh window's first failure counted %d", n)
	}
}
