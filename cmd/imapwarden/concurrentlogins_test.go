package main

import (
	"strings"
	"sync"
	"testing"
)

// TestConcurrentHonestLoginsOfOneUser: one user's clients log in together
// from one address (a mail client's several connections, a phone behind
// the same NAT), with the default rate limits: every login succeeds. A
// lockout that counted logins in flight as failures to come refused the
// sixth (login_failures_per_user_ip is 5), which only the load test saw.
func TestConcurrentHonestLoginsOfOneUser(t *testing.T) {
	dir, _, common := demoServeConfig(t)
	srv := startServeText(t, dir, common+"admin: {address: \"\"}\n")
	const n = 12
	conns := make([]*imapConn, n)
	for i := range conns {
		conns[i] = dialIMAPS(t, srv.imaps) // greeted: every session is open before any login
	}
	got := make([]string, n)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = last(c.send("l", `LOGIN demo "demo-password"`))
		}()
	}
	wg.Wait()
	for i, l := range got {
		if !strings.HasPrefix(l, "l OK") {
			t.Errorf("login %d of %d sent together: %q", i+1, n, l)
		}
	}
}
