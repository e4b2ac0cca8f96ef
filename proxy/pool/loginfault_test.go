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

// With max_credential_bytes raised past what Dovecot holds, the long
// logins reach it and it ends each connection ("* BYE Input buffer
// full" to LOGIN, a close to AUTHENTICATE PLAIN): each is a failed login
// for the client (NO [AUTHENTICATIONFAILED], counted by the lockouts) and
// nothing for the server's health, which stays Up for every other user
// (ARCHITECTURE.md §13).
func TestDroppedLoginsKeepServerUp(t *testing.T) {
	dovecottest.Require(t)
	dc := dovecottest.Start(t, dovecottest.Options{})
	for name, mode := range map[string]proxy.LoginMode{"auto": proxy.LoginAuto, "login": proxy.LoginCommand} {
		t.Run(name, func(t *testing.T) {
			answers, events, addr := longLogins(t, dc, mode, func(o *proxy.Options) { o.Limits.MaxCredentialBytes = 64 << 10 })
			for _, a := range answers {
				if !strings.HasPrefix(a, "NO [AUTHENTICATIONFAILED]") {
					t.Errorf("a login Dovecot dropped was answered %q, want NO [AUTHENTICATIONFAILED]", a)
				}
			}
			if e, _, ok := events.find(0, "d0", Down); ok {
				t.Errorf("logins Dovecot dropped took server d0 down: %s", e.Err)
			}
			aliceLogsIn(t, addr)
		})
	}
}

// longLogins runs a pool of one server, dc, behind a proxy (opts applied)
// and sends it six LOGINs at once with a wrong 9,000-byte password. It
// returns their answers, the pool's events and the proxy's address.
func longLogins(t *testing.T, dc *dovecottest.Server, mode proxy.LoginMode, opts ...func(*proxy.Options)) ([]string, *eventLog, string) {
	p, err := New(Options{Backend: &proxy.Backend{Name: "dovecot", Security: proxy.BackendPlain, Login: mode,
		ConnectTimeout: testenv.IOTimeout(), LoginTimeout: testenv.IOTimeout()},
		Servers: []ServerOptions{{Name: "d0", Addr: dc.Addr}},
		Health:  HealthOptions{Interval: time.Hour, FastInterval: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	set := mustSet(t, p)
	_, events := monitor(t, set)
	_, addr := startProxy(t, &Router{Set: set, Next: &proxy.StaticRouter{Default: p.Backend()}}, opts...)
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
	return answers, events, addr
}

// aliceLogsIn fails the test unless alice, with her password, logs in
// through the proxy at addr.
func aliceLogsIn(t *testing.T, addr string) {
	t.Helper()
	c, st, err := login(addr, "alice", "alice-pw")
	if err != nil {
		t.Fatal(err)
	}
	if st != "" {
		t.Fatalf("alice's login refused after the attack: %s", st)
	}
	c.close()
}
