package ratelimit

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// The examples of RFC 6052 §2.4: 192.0.2.33 embedded under each prefix
// length.
func TestEmbeddedIPv4(t *testing.T) {
	for _, c := range []struct{ prefix, addr string }{
		{"2001:db8::/32", "2001:db8:c000:221::"},
		{"2001:db8:100::/40", "2001:db8:1c0:2:21::"},
		{"2001:db8:122::/48", "2001:db8:122:c000:2:2100::"},
		{"2001:db8:122:300::/56", "2001:db8:122:3c0:0:221::"},
		{"2001:db8:122:344::/64", "2001:db8:122:344:c0:2:2100:0"},
		{"2001:db8:122:344::/96", "2001:db8:122:344::192.0.2.33"},
		{"64:ff9b::/96", "64:ff9b::192.0.2.33"},
	} {
		p := netip.MustParsePrefix(c.prefix)
		if err := checkTranslator(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
		if got := embeddedIPv4(netip.MustParseAddr(c.addr), p.Bits()); got != netip.MustParseAddr("192.0.2.33") {
			t.Errorf("%s in %s: %s, want 192.0.2.33", c.addr, p, got)
		}
	}
}

// A client of a translator counts as its IPv4 host, the one it shares
// with the same host reaching the proxy over IPv4, and its subnet is the
// IPv4 one; any suffix past the embedded address is the same host.
func TestTranslatedClientIsItsIPv4Host(t *testing.T) {
	forEachStore(t, func(t *testing.T, newTest newFunc) {
		l, _ := newTest(t, func(o *Options) {
			o.ConnectionsPerIP = Rate{N: 2, Per: time.Hour}
			o.ConnectionsPerSubnet = Rate{N: 4, Per: time.Hour}
			o.IPv4Translators = append(DefaultIPv4Translators(), netip.MustParsePrefix("64:ff9b:1::/48"))
		})
		connect(t, l, "192.0.2.33")
		connect(t, l, "64:ff9b::192.0.2.33")
		r, _ := l.connectInfo(info("64:ff9b:1:c000:2:2100::7")) // 192.0.2.33 under the /48, a suffix
		wantExceeded(t, r, LimitConnectionsPerIP, keyIP, codeLimit)
		connect(t, l, "64:ff9b::192.0.2.34")
		connect(t, l, "64:ff9b:1:c000:2:2300::") // 192.0.2.35
		r, _ = l.connectInfo(info("192.0.2.36"))
		wantExceeded(t, r, LimitConnectionsPerSubnet, keySubnet, codeLimit)

		l, _ = newTest(t, func(o *Options) { o.LoginFailuresPerUserIP = 1 })
		fail(t, l, "64:ff9b::198.51.100.7", "alice")
		r, _ = fail(t, l, "198.51.100.7", "alice")
		wantExceeded(t, r, LimitLoginFailuresPerUserIP, keyUserIP, codeAuthFailed)
		ls, err := l.Lockouts(t.Context())
		if err != nil || len(ls) != 1 || !strings.HasSuffix(ls[0].IP, "198.51.100.7") {
			t.Fatalf("lockouts: %+v %v", ls, err)
		}
		if n, err := l.Unlock(t.Context(), "alice", "64:ff9b::198.51.100.7"); err != nil || n == 0 {
			t.Fatalf("unlock: %d %v", n, err)
		}
		if r, _ := fail(t, l, "198.51.100.7", "alice"); r.Exceeded {
			t.Errorf("still locked after the unlock: %+v", r)
		}
	})
}

// Embeddings a client picks (6to4, RFC 3056; Teredo, RFC 4380), prefixes
// not listed (RFC 2765's ::ffff:0:0:0/96) and every prefix with
// ipv4_translators empty are IPv6: keyed by their /64, never as the IPv4
// host they name. A Teredo /64 is its server's (RFC 4380 §4): its clients
// share it, as the clients of one NAT share an IPv4 address.
func TestUntrustedEmbeddingsStayIPv6(t *testing.T) {
	forEachStore(t, func(t *testing.T, newTest newFunc) {
		for _, translators := range [][]netip.Prefix{nil, {}} {
			l, _ := newTest(t, func(o *Options) {
				o.ConnectionsPerIP = Rate{N: 1, Per: time.Hour}
				o.ConnectionsPerSubnet = Off
				o.IPv4Translators = translators
			})
			connect(t, l, "192.0.2.1")
			connect(t, l, "2002:c000:201::1")                     // 6to4 of 192.0.2.1
			connect(t, l, "2001:0:4136:e378:8000:63bf:3fff:fdfe") // Teredo, client 192.0.2.1
			connect(t, l, "::ffff:0:c000:201")
			r, _ := l.connectInfo(info("2001:0:4136:e378:8000:63bf:3f57:fdfd")) // another client of the server
			wantExceeded(t, r, LimitConnectionsPerIP, keyIP, codeLimit)
			r, _ = l.connectInfo(info("64:ff9b::c000:201"))
			if translators == nil {
				wantExceeded(t, r, LimitConnectionsPerIP, keyIP, codeLimit)
			} else {
				wantOK(t, r)
			}
		}
	})
}

// A subnet is a group of hosts: its prefix is not longer than the host's;
// a translator prefix is IPv6, of an RFC 6052 length, with no host bits.
func TestIPKeyOptionsChecked(t *testing.T) {
	for _, o := range []Options{
		{SubnetBitsV6: 64, IPBitsV6: 56},
		{SubnetBitsV6: 128},
		{SubnetBitsV4: 32, IPBitsV4: 24},
		{IPBitsV4: 16},
		{IPv4Translators: []netip.Prefix{netip.MustParsePrefix("2002::/16")}},
		{IPv4Translators: []netip.Prefix{netip.MustParsePrefix("64:ff9b::1/96")}},
		{IPv4Translators: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}},
		{IPv4Translators: []netip.Prefix{netip.MustParsePrefix("::ffff:0:0/96")}},
		{IPv4Translators: []netip.Prefix{{}}},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("accepted: %+v", o)
		}
	}
	for _, o := range []Options{{}, {SubnetBitsV6: 64}, {IPBitsV6: 48}, {SubnetBitsV4: 32}, {IPBitsV6: 128, SubnetBitsV6: 128}} {
		l, err := New(o)
		if err != nil {
			t.Errorf("%+v: %v", o, err)
			continue
		}
		l.Close()
	}
}
