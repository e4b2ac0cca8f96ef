package ratelimit

import (
	"errors"
	"fmt"
	"net/netip"
)

// Hosts keys client addresses by host as every "ip" key of the limiter
// is keyed (ip_bits_v4, ip_bits_v6, ipv4_translators), for what counts
// per client outside the limiter (the admin listener's token guard and
// connection share), so that one host is one key everywhere
// (ARCHITECTURE.md §12). The zero Hosts keys by the defaults.
type Hosts struct {
	ipBitsV4, ipBitsV6 int
	translators        []netip.Prefix
	set                bool // else the defaults
}

// NewHosts is the keying of ip_bits_v4, ip_bits_v6 and ipv4_translators
// as Options has them: zero bits and nil translators are the defaults,
// empty translators none.
func NewHosts(ipBitsV4, ipBitsV6 int, translators []netip.Prefix) (Hosts, error) {
	defInt(&ipBitsV4, DefaultIPBitsV4)
	defInt(&ipBitsV6, DefaultIPBitsV6)
	if translators == nil {
		translators = DefaultIPv4Translators()
	}
	h := Hosts{ipBitsV4: ipBitsV4, ipBitsV6: ipBitsV6, translators: append([]netip.Prefix{}, translators...), set: true}
	var errs []error
	if ipBitsV4 < 0 || ipBitsV4 > 32 || ipBitsV6 < 0 || ipBitsV6 > 128 {
		errs = append(errs, errors.New("ratelimit: ip bits out of range"))
	}
	for _, p := range translators {
		if err := checkTranslator(p); err != nil {
			errs = append(errs, fmt.Errorf("ratelimit: ipv4_translators: %w", err))
		}
	}
	return h, errors.Join(errs...)
}

// Of is the address every "ip" key counts for ap: its IP unmapped (an
// IPv4-mapped IPv6 address is its IPv4 one), an address of an
// ipv4_translators prefix the IPv4 client embedded in it (RFC 6052
// §2.2), then masked to ip_bits_v4 or ip_bits_v6, so that the addresses
// of one host's IPv6 /64 share one counter and the IPv4 clients of a
// translator do not. The zero Addr when ap has none.
func (h Hosts) Of(ap netip.AddrPort) netip.Addr {
	h = h.orDefault()
	ip := ap.Addr().Unmap()
	if !ip.IsValid() {
		return ip
	}
	if p, ok := h.translator(ip); ok {
		ip = embeddedIPv4(ip, p.Bits())
	}
	return subnetOf(ip, h.ipBitsV4, h.ipBitsV6)
}

// Whole reports whether Of(ap) stands for ap's address alone: no bits
// masked off (ip_bits_v4 32, ip_bits_v6 128), and a translated client's
// IPv4 address embedded in all of the address (a /96 prefix, RFC 6052
// §2.2). Otherwise a host key counts other addresses too (a host's /64).
func (h Hosts) Whole(ap netip.AddrPort) bool {
	h = h.orDefault()
	ip := ap.Addr().Unmap()
	switch p, ok := h.translator(ip); {
	case !ip.IsValid():
		return false
	case ok:
		return p.Bits() == 96 && h.ipBitsV4 == 32
	case ip.Is6():
		return h.ipBitsV6 == 128
	}
	return h.ipBitsV4 == 32
}

// orDefault is h, or the defaults when h is the zero Hosts.
func (h Hosts) orDefault() Hosts {
	if !h.set {
		h, _ = NewHosts(0, 0, nil)
	}
	return h
}

// translator is the ipv4_translators prefix holding ip, if any.
func (h Hosts) translator(ip netip.Addr) (netip.Prefix, bool) {
	if ip.Is6() {
		for _, p := range h.translators {
			if p.Contains(ip) {
				return p, true
			}
		}
	}
	return netip.Prefix{}, false
}
