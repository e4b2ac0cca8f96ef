package ratelimit

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/maphash"
	"math/bits"
	"net/netip"
	"strings"
	"unicode/utf8"

	"github.com/imapwarden/imapwarden/proxy"
)

// kind says what a key counts; it is part of the key's hash, so the same
// user or IP under two kinds are two keys.
type kind uint8

const (
	kindConnRateIP kind = iota + 1
	kindConnRateSubnet
	kindFailIP
	kindFailUser
	kindFailUserIP
	kindCmdUser
	kindFetchBytes
	kindFetchMsgs
	kindAppend
	kindConnIP       // concurrent connections
	kindUnauthIP     // concurrent unauthenticated connections
	kindSessUser     // concurrent sessions
	kindUnauthSubnet // concurrent unauthenticated connections of a subnet
)

// Key kinds of LimitResult.Key: what was counted, never who.
const (
	keyIP      = "ip"
	keySubnet  = "subnet"
	keyUser    = "user"
	keyUserIP  = "user_ip"
	keySession = "session"
	keyStore   = "store"
)

// failKinds are the kinds of failed-login keys, in the order of the arrays
// that hold one of each.
var failKinds = [3]kind{kindFailIP, kindFailUser, kindFailUserIP}

func (k kind) keyName() string {
	switch k {
	case kindFailIP, kindConnRateIP, kindConnIP, kindUnauthIP:
		return keyIP
	case kindConnRateSubnet, kindUnauthSubnet:
		return keySubnet
	case kindFailUserIP:
		return keyUserIP
	}
	return keyUser
}

// hasher maps (kind, user, IP) to the uint64 keys of the in-process store.
// The seed is random per process, so nobody can aim collisions at a
// victim's key. User names are compared under proxy.FoldUser, the one
// equivalence the policy and the authenticators keep to (ARCHITECTURE.md
// §17): "KATE", "kate" and "\u212Aate" (KELVIN SIGN) share their failures.
type hasher struct{ seed maphash.Seed }

func newHasher() hasher { return hasher{seed: maphash.MakeSeed()} }

func (h hasher) sum(k kind, user string, ip netip.Addr) uint64 {
	return mix(k, h.user(user), h.ip(ip))
}

// user hashes a folded user name ("" hashes to 0). Lower-case ASCII (the
// usual case) is hashed as is, other ASCII folded through a stack buffer:
// no allocation on the login path. Anything else takes proxy.FoldUser.
func (h hasher) user(user string) uint64 {
	if user == "" {
		return 0
	}
	upper := false
	for i := 0; i < len(user); i++ {
		c := user[i]
		if c >= utf8.RuneSelf {
			return maphash.String(h.seed, proxy.FoldUser(user))
		}
		upper = upper || 'A' <= c && c <= 'Z'
	}
	if !upper {
		return maphash.String(h.seed, user)
	}
	var buf [256]byte
	if len(user) <= len(buf) {
		return maphash.Bytes(h.seed, foldInto(buf[:len(user)], user))
	}
	var mh maphash.Hash
	mh.SetSeed(h.seed)
	for len(user) > 0 {
		n := min(len(user), len(buf))
		mh.Write(foldInto(buf[:n], user[:n]))
		user = user[n:]
	}
	return mh.Sum64()
}

// foldInto folds ASCII s into dst: proxy.FoldUser for an ASCII name.
func foldInto(dst []byte, s string) []byte {
	for i := range dst {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst[i] = c
	}
	return dst
}

// ip hashes an address (the invalid one hashes to 0).
func (h hasher) ip(ip netip.Addr) uint64 {
	if !ip.IsValid() {
		return 0
	}
	b := ip.As16()
	return maphash.Bytes(h.seed, b[:])
}

// mix combines a kind and two seeded hashes into a key. Both inputs are
// secret-seeded 64-bit hashes, so a client can aim neither; the finalizer
// (MurmurHash3's fmix64, a bijection) spreads the result over the shards.
func mix(k kind, u, ip uint64) uint64 {
	x := u ^ bits.RotateLeft64(ip, 29) ^ (uint64(k) * 0x9e3779b97f4a7c15)
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// foldString is proxy.FoldUser: the same key on every instance.
func foldString(s string) string { return proxy.FoldUser(s) }

// userID is the user's part of shared (Redis) keys: the same on every
// instance, fixed in length, free of glob characters, and not the name
// itself (the name is kept as a field of failure entries, for the admin
// listing). A cryptographic hash, so no one can craft a name that shares a
// victim's counters.
func userID(user string) string {
	sum := sha256.Sum256([]byte(foldString(user)))
	return hex.EncodeToString(sum[:16])
}

// subnetOf is the client's subnet (/24, /48 by default), or its host
// (ip_bits_v4, ip_bits_v6: /32, /64 by default): the first address of the
// prefix. ip is a host (config.hostOf).
func subnetOf(ip netip.Addr, v4, v6 int) netip.Addr {
	bits := v6
	if ip.Is4() {
		bits = v4
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return ip
	}
	return p.Addr()
}

// maxLabel caps the user name kept with a failure entry: a 4 KiB name
// (the proxy's buffered literal limit) times a flood of them would make
// the memory per tracked key unbounded.
const maxLabel = 128

// cutMark joins the head of a name too long to keep whole to its userID,
// so that what Lockouts lists, Unlock lifts (listedID). Two spaces: no
// login name holds them (the proxy refuses repeated spaces as a name of
// more than one reading, ARCHITECTURE.md §17), so a listed cut name is
// never also another user's whole name.
const cutMark = "  #"

// label is the user as Lockouts lists it: the folded name, or, past
// maxLabel bytes, its head, cutMark and its userID.
func label(user string) string {
	f := foldString(user)
	if len(f) <= maxLabel {
		return strings.Clone(f) // a copy: never pin the session's buffers
	}
	n := maxLabel - len(cutMark) - 32
	for n > 0 && !utf8.RuneStart(f[n]) {
		n--
	}
	return f[:n] + cutMark + userID(user)
}

// listedID returns the userID of a cut label (label), as listed.
func listedID(name string) (string, bool) {
	i := strings.LastIndex(name, cutMark)
	if i < 0 || len(name)-i-len(cutMark) != 32 {
		return "", false
	}
	id := name[i+len(cutMark):]
	for _, c := range []byte(id) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", false
		}
	}
	return id, true
}

// DefaultIPv4Translators is ipv4_translators' default: the well-known
// prefix of RFC 6052 §2.1, 64:ff9b::/96.
func DefaultIPv4Translators() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("64:ff9b::/96")}
}

// checkTranslator accepts an IPv6 prefix of one of the lengths RFC 6052
// §2.2 defines, with no bits set past its length.
func checkTranslator(p netip.Prefix) error {
	a := p.Addr()
	switch {
	case !p.IsValid() || !a.Is6() || a.Is4In6() || a.Zone() != "":
		return fmt.Errorf("%s: not an IPv6 prefix (an IPv4-mapped address is IPv4 already)", p)
	case p != p.Masked():
		return fmt.Errorf("%s: bits set past the prefix, did you mean %s?", p, p.Masked())
	}
	switch p.Bits() {
	case 32, 40, 48, 56, 64, 96:
		return nil
	}
	return fmt.Errorf("%s: an RFC 6052 prefix is /32, /40, /48, /56, /64 or /96", p)
}

// embeddedIPv4 is the IPv4 address a translator with a prefix of n bits
// (checkTranslator) embedded in ip, in the layout of RFC 6052 §2.2: the 32
// bits after the prefix, skipping bits 64 to 71 (the "u" octet).
func embeddedIPv4(ip netip.Addr, n int) netip.Addr {
	a := ip.As16()
	var v [4]byte
	switch n {
	case 32:
		copy(v[:], a[4:8])
	case 40:
		copy(v[:3], a[5:8])
		v[3] = a[9]
	case 48:
		copy(v[:2], a[6:8])
		copy(v[2:], a[9:11])
	case 56:
		v[0] = a[7]
		copy(v[1:], a[9:12])
	case 64:
		copy(v[:], a[9:13])
	default: // 96
		copy(v[:], a[12:16])
	}
	return netip.AddrFrom4(v)
}
