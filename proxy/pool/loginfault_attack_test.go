package pool

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/proxy"
)

// A login the backend refuses by closing is counted against the server's
// health (Pool.Result: every error but errBackendAuth is a passive
// failure), and Fall (3) in a row take the server down for every user.
// What the backend does with a login is the client's to choose: Dovecot's
// login process holds 4 KiB of input, so a LOGIN with a 9,000-byte
// password, which the proxy accepts before login (max_preauth_command_bytes
// 64 KiB) and replays, is answered "* BYE Input buffer full" (LOGIN) or a
// silent close (AUTHENTICATE PLAIN with SASL-IR, what LoginAuto sends).
// Such a login is not even a failed login for the lockouts (fail, not
// failed): an unauthenticated client takes every server of a pool down,
// again each time the checks bring it back.
func TestAttackUnauthenticatedLoginTakesServerDown(t *testing.T) {
	dovecottest.Require(t)
	dc := dovecottest.Start(t, dovecottest.Options{})
	p, err := New(Options{Backend: &proxy.Backend{Name: "dovecot", Security: proxy.BackendPlain, Login: proxy.LoginAuto,
		ConnectTimeout: testenv.IOTimeout(), LoginTimeout: testenv.IOTimeout()},
		Servers: []ServerOptions{{Name: "d0", Addr: dc.Addr}},
		Health:  HealthOptions{Interval: time.Hour, FastInterval: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	set := mustSet(t, p)
	_, events := monitor(t, set)
	_, addr := startProxy(t, &Router{Set: set, Next: &proxy.StaticRouter{Default: p.Backend()}})

	// The attacker: no valid credential, a long password, a few
	// connections at once.
	long := strings.Repeat("p", 9000)
	var wg sync.WaitGroup
	answers := make([]string, 6)
	for i := range answers {
		wg.Go(func() {
			c, err := dial(addr)
			if err != nil {
				answers[i] = err.Error()
				return
			}
			defer c.close()
			_, st, err := c.do(`LOGIN alice "` + long + `"`)
			answers[i] = st
			if err != nil {
				answers[i] = err.Error()
			}
		})
	}
	wg.Wait()
	t.Logf("the attacker's logins were answered %q", answers)
	if e, _, ok := events.find(0, "d0", Down); ok {
		t.Errorf("an unauthenticated client's logins took server d0 down: %s", e.Err)
	}
	// Alice, with her password, right after.
	c, st, err := login(addr, "alice", "alice-pw")
	if err != nil {
		t.Fatal(err)
	}
	if st != "" {
		t.Fatalf("alice's login refused after the attack: %s", st)
	}
	c.close()
}
