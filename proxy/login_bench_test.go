package proxy

import (
	"testing"

	"go.uber.org/zap"
)

// BenchmarkLogin is one login as BenchmarkVsHAProxy's "logins" workload
// makes it (internal/loadtest): a new TLS connection, LOGIN replayed to
// Dovecot (plaintext, ID sent), LOGOUT. Allocations are the client's and
// the proxy's together, in this process:
//
//	go test -run '^$' -bench 'BenchmarkLogin$' -benchmem ./proxy/
func BenchmarkLogin(b *testing.B) {
	h := newDovecotHarness(b, func(dc *dovecottestServer) *Backend {
		return &Backend{Name: "dovecot", Addr: dc.Addr, Security: BackendPlain, SendID: true}
	}, func(o *Options) { o.Logger = zap.NewNop() })
	login := func() {
		c := dialTLS(b, h.imaps)
		c.expect("* OK")
		c.transact("a1 LOGIN alice alice-pw", "a1 OK")
		c.transact("a2 LOGOUT", "a2 OK")
		c.c.Close()
	}
	for range 10 { // warm: pools
		login()
	}
	b.ReportAllocs()
	for b.Loop() {
		login()
	}
}
