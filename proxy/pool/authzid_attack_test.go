package pool

import (
	"encoding/base64"
	"sync"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/couriertest"
	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/proxy"
)

// With auth.allow_authzid on, an unauthenticated client's AUTHENTICATE
// PLAIN naming an authorization identity is replayed to the backend; a
// backend the proxy logs in to with LOGIN (Courier over plain IMAP offers
// no AUTH=PLAIN, so LoginAuto picks LOGIN) cannot carry it, and
// backendConn.login returns a plain error that backendLogin reports to the
// Balancer as the server's failure (Pool.Result). No credential is
// checked before: Fall such logins take the server down for every user,
// and again each time the checks bring it back. The client's choice of
// mechanism is not the server's health (ARCHITECTURE.md §13).
func TestAttackAuthzidLoginTakesServerDown(t *testing.T) {
	couriertest.Require(t)
	cs := couriertest.Start(t, couriertest.Options{})
	p, err := New(Options{Backend: &proxy.Backend{Name: "courier", Security: proxy.BackendPlain, Login: proxy.LoginAuto,
		ConnectTimeout: testenv.IOTimeout(), LoginTimeout: testenv.IOTimeout()},
		Servers: []ServerOptions{{Name: "c0", Addr: cs.Addr}},
		Health:  HealthOptions{Interval: time.Hour, FastInterval: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	set := mustSet(t, p)
	_, events := monitor(t, set)
	_, addr := startProxy(t, &Router{Set: set, Next: &proxy.StaticRouter{Default: p.Backend()}},
		func(o *proxy.Options) { o.AllowAuthzid = true })
	// The attacker: no password of anyone's, a few connections at once.
	ir := base64.StdEncoding.EncodeToString([]byte("bob\x00mallory\x00guess"))
	answers := make([]string, 6)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Go(func() {
			c, err := dial(addr)
			if err != nil {
				answers[i] = err.Error()
				return
			}
			defer c.close()
			_, st, err := c.do("AUTHENTICATE PLAIN " + ir)
			answers[i] = st
			if err != nil {
				answers[i] = err.Error()
			}
		})
	}
	wg.Wait()
	t.Logf("the attacker's logins were answered %q", answers)
	if e, _, ok := events.find(0, "c0", Down); ok {
		t.Errorf("an unauthenticated client's AUTHENTICATE PLAIN with an authzid took server c0 down: %s", e.Err)
	}
	aliceLogsIn(t, addr)
}
