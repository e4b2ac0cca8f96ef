package ratelimit

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// An IPv4 client reaching an IPv6-only proxy through a stateless
// translator (SIIT-DC, RFC 7755) has the source address of the
// well-known prefix (RFC 6052 §2.1: 64:ff9b::/96, the IPv4 address in the
// last 32 bits), as it has through the IPv4-translated prefix of RFC 2765
// (::ffff:0:0/96). Masked to ip_bits_v6 (/64), every IPv4 host of the
// Internet shares one "ip" key: one of them locks all out by its login
// failures (login_failures_per_ip). Such an address is its IPv4 host,
// masked to ip_bits_v4 (attack46d). The well-known prefix is
// ipv4_translators' default; the RFC 2765 one (obsoleted by RFC 6145) is
// keyed so when the operator lists it.
func TestTranslatedIPv4ClientsAreKeyedByTheirHost(t *testing.T) {
	for _, prefix := range []string{"64:ff9b::", "::ffff:0:"} {
		t.Run(prefix, func(t *testing.T) {
			forEachStore(t, func(t *testing.T, newTest newFunc) {
				l, _ := newTest(t, func(o *Options) {
					if prefix == "::ffff:0:" {
						o.IPv4Translators = []netip.Prefix{netip.MustParsePrefix("::ffff:0:0:0/96")}
					}
					o.LoginFailuresPerIP = 3
					o.LoginFailuresPerUser = 1000
					o.LoginFailuresPerUserIP = 1000
				})
				attacker, victim := prefix+"c000:201", prefix+"c633:6407" // 192.0.2.1, 198.51.100.7
				for i := range 4 {
					fail(t, l, attacker, fmt.Sprintf("guess%d", i))
				}
				if r, _ := fail(t, l, victim, "carol"); r.Exceeded {
					t.Errorf("198.51.100.7 (%s) is locked out by 192.0.2.1's (%s) failures: %+v", victim, attacker, r)
				}
			})
		})
	}
}

// connections_per_subnet is the coarser count above a host's: /24 over
// /32 for IPv4. For IPv6 its default (subnet_bits_v6 64) is now the
// host's own prefix (ip_bits_v6 64), so it never counts more than one
// host: an end site's /48 (RFC 6177) opens from 65536 hosts, each with
// its full rate, and the subnet limit does not bite (attack46d).
func TestIPv6SubnetCountsMoreThanOneHost(t *testing.T) {
	forEachStore(t, func(t *testing.T, newTest newFunc) {
		l, _ := newTest(t, func(o *Options) {
			o.ConnectionsPerSubnet = Rate{N: 3, Per: time.Hour}
		})
		for i := 1; i <= 3; i++ {
			connect(t, l, fmt.Sprintf("2001:db8:1:%x::1", i))
		}
		r, _ := l.connectInfo(info("2001:db8:1:4::1"))
		if !r.Exceeded {
			t.Errorf("a 4th /64 of one /48 opened within connections_per_subnet 3 (subnet_bits_v6 %d, ip_bits_v6 %d)",
				DefaultSubnetBitsV6, DefaultIPBitsV6)
		}
	})
}
