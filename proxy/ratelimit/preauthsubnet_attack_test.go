package ratelimit

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/imapwarden/imapwarden/proxy"
)

// TestAttackOneSubnetHoldsEveryPreAuthSlot: the server-wide cap on
// connections awaiting login (max_preauth_connections, 4096 under the
// shipped unit) is shared by everyone, and the only concurrency limit on
// unauthenticated connections is per host (100). There is none per
// subnet, so 41 hosts of one /24 (or 41 /64s of one IPv6 end site's /48,
// RFC 6177) hold every slot with connections that say nothing (each
// reconnect within connections_per_ip's 1200/1m, or a NOOP a minute for
// 16 minutes), and every other client of the server is turned away with
// "* BYE [UNAVAILABLE]" before its greeting. One subnet should hold at
// most a share of the slots, so that a client from elsewhere is greeted.
func TestAttackOneSubnetHoldsEveryPreAuthSlot(t *testing.T) {
	const slots = 4096 // README: max_preauth_connections under the shipped unit
	l, err := New(Options{Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	addr := preAuthServer(t, l, proxy.Limits{MaxPreAuthConnections: slots})

	// The attacker: hosts 127.0.0.2, .3, ... of one /24, each up to its
	// per-host limit, until the proxy turns a connection away.
	held := 0
attack:
	for host := 2; host < 255; host++ {
		from := net.IPv4(127, 0, 0, byte(host)).String()
		for range 100 {
			if line := greeting(t, addr, from); !strings.HasPrefix(line, "* OK") {
				break attack
			}
			held++
		}
	}
	t.Logf("one /24 holds %d connections awaiting login (cap %d)", held, slots)

	// Someone else, from another subnet.
	if line := greeting(t, addr, "127.0.1.1"); !strings.HasPrefix(line, "* OK") {
		t.Fatalf("a client of another subnet got %q while one /24 held %d of %d pre-login slots; want a greeting",
			strings.TrimSpace(line), held, slots)
	}
}

func tlsConfig(t *testing.T) *tls.Config {
	cert, err := testCert()
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"imap"}}
}
