package imapwire

import (
	"cmp"
	"errors"
	"math"
	"slices"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Errors of DecodeMailbox and SetCount.
var (
	errUTF7Byte       = errors.New("imapwire: mailbox name: byte outside printable US-ASCII")
	errUTF7Open       = errors.New(`imapwire: mailbox name: "&" without closing "-"`)
	errUTF7Base64     = errors.New("imapwire: mailbox name: bad modified BASE64")
	errUTF7Surrogate  = errors.New("imapwire: mailbox name: unpaired UTF-16 surrogate")
	errUTF7Printable  = errors.New("imapwire: mailbox name: printable US-ASCII in BASE64")
	errUTF7Adjacent   = errors.New(`imapwire: mailbox name: BASE64 run right after another ("-&" joins them)`)
	errSetEmpty       = errors.New("imapwire: empty sequence set")
	errSetSyntax      = errors.New("imapwire: malformed sequence set")
	errSetZeroOrRange = errors.New("imapwire: sequence number 0 or over 2^32-1")
)

// DecodeMailbox decodes a mailbox name in modified UTF-7 (RFC 3501 §5.1.3)
// to UTF-8. Decoding is strict, so that one mailbox has one spelling for
// policies: bytes outside printable US-ASCII, an unterminated or malformed
// BASE64 run, non-zero padding bits, unpaired surrogates and printable
// US-ASCII characters encoded in BASE64 (which "MUST NOT" be, RFC 3501
// §5.1.3) are errors, as is a BASE64 run right after another ("&AOQ-&AOQ-"):
// an encoder writes one run, Dovecot and Cyrus refuse the name, Courier
// reads it as "&AOQA5A-".
func DecodeMailbox(name string) (string, error) {
	i := strings.IndexByte(name, '&')
	if i < 0 {
		for j := 0; j < len(name); j++ {
			if name[j] < 0x20 || name[j] > 0x7e {
				return "", errUTF7Byte
			}
		}
		return name, nil
	}
	out := make([]byte, 0, len(name)+len(name)/2)
	run := false // the last thing read was a BASE64 run
	for i := 0; i < len(name); {
		c := name[i]
		if c < 0x20 || c > 0x7e {
			return "", errUTF7Byte
		}
		if c != '&' {
			out = append(out, c)
			i++
			run = false
			continue
		}
		j := strings.IndexByte(name[i+1:], '-')
		if j < 0 {
			return "", errUTF7Open
		}
		enc := name[i+1 : i+1+j]
		i += j + 2
		if enc == "" {
			out = append(out, '&') // "&-" is "&"
			run = false
			continue
		}
		if run {
			return "", errUTF7Adjacent
		}
		var err error
		if out, err = decodeUTF7Run(out, enc); err != nil {
			return "", err
		}
		run = true
	}
	return string(out), nil
}

// decodeUTF7Run decodes one modified BASE64 run ("," for "/", no padding)
// of UTF-16BE and appends it as UTF-8.
func decodeUTF7Run(out []byte, enc string) ([]byte, error) {
	var bits uint32
	var nbits uint
	var high rune // pending high surrogate
	for k := 0; k < len(enc); k++ {
		v := b64val(enc[k])
		if v < 0 {
			return nil, errUTF7Base64
		}
		bits = bits<<6 | uint32(v)
		nbits += 6
		if nbits < 16 {
			continue
		}
		nbits -= 16
		u := rune(bits >> nbits & 0xffff)
		bits &= 1<<nbits - 1
		switch {
		case high != 0:
			r := utf16.DecodeRune(high, u)
			if r == utf8.RuneError {
				return nil, errUTF7Surrogate
			}
			out = utf8.AppendRune(out, r)
			high = 0
		case utf16.IsSurrogate(u):
			if u >= 0xdc00 {
				return nil, errUTF7Surrogate
			}
			high = u
		case 0x20 <= u && u <= 0x7e:
			return nil, errUTF7Printable
		default:
			out = utf8.AppendRune(out, u)
		}
	}
	if high != 0 {
		return nil, errUTF7Surrogate
	}
	// What is left must be padding: fewer than 6 bits, all zero.
	if nbits >= 6 || bits != 0 {
		return nil, errUTF7Base64
	}
	return out, nil
}

func b64val(c byte) int {
	switch {
	case 'A' <= c && c <= 'Z':
		return int(c - 'A')
	case 'a' <= c && c <= 'z':
		return int(c-'a') + 26
	case '0' <= c && c <= '9':
		return int(c-'0') + 52
	case c == '+':
		return 62
	case c == ',':
		return 63
	}
	return -1
}

// AppendQuoted appends s as an IMAP quoted string, escaping DQUOTE and "\"
// (RFC 9051 §4.3). ok is false, and dst unchanged, if s needs a literal: it
// contains CR, LF, NUL or an 8-bit byte (quoted strings are 7-bit TEXT-CHARs
// unless UTF8=ACCEPT was enabled, which the proxy's own messages do not
// assume).
func AppendQuoted(dst []byte, s string) (out []byte, ok bool) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == 0 || c == '\r' || c == '\n' || c >= 0x80 {
			return dst, false
		}
	}
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			dst = append(dst, '\\')
		}
		dst = append(dst, s[i])
	}
	return append(dst, '"'), true
}

// AppendAString appends s as an astring (RFC 9051 §9): an atom when every
// byte is an ASTRING-CHAR and s is not "NIL" (which could be read as nil
// where an nstring is allowed), else a quoted string as AppendQuoted, with
// the same ok.
func AppendAString(dst []byte, s string) (out []byte, ok bool) {
	atom := s != "" && !strings.EqualFold(s, "NIL")
	for i := 0; atom && i < len(s); i++ {
		atom = isAtomChar(s[i]) || s[i] == ']'
	}
	if atom {
		return append(dst, s...), true
	}
	return AppendQuoted(dst, s)
}

// SetCount returns how many messages a sequence-set names (RFC 9051 §9:
// sequence-set = (seq-number / seq-range) ["," sequence-set]), overlapping
// ranges counted once, or -1 when the count is not known from the set
// alone: it contains "*" (the last message) or is "$" (the saved result,
// RFC 5182). A malformed set is an error. The count cannot overflow: it is
// at most 2^32-1.
func SetCount(set string) (int64, error) {
	if set == "" {
		return 0, errSetEmpty
	}
	if set == "$" {
		return -1, nil
	}
	var small [32]uint64
	ranges := small[:0]
	star := false
	for len(set) > 0 {
		elem := set
		if k := strings.IndexByte(set, ','); k >= 0 {
			elem, set = set[:k], set[k+1:]
			if set == "" {
				return 0, errSetSyntax // trailing ","
			}
		} else {
			set = ""
		}
		lo, hi := elem, elem
		if k := strings.IndexByte(elem, ':'); k >= 0 {
			lo, hi = elem[:k], elem[k+1:]
		}
		a, aStar, err := seqNumber(lo)
		if err != nil {
			return 0, err
		}
		b, bStar, err := seqNumber(hi)
		if err != nil {
			return 0, err
		}
		if aStar || bStar {
			star = true
			continue
		}
		if a > b {
			a, b = b, a // "seq-range ... 4:2 is equivalent to 2:4"
		}
		ranges = append(ranges, uint64(a)<<32|uint64(b))
	}
	if star {
		return -1, nil
	}
	// Count the union: sort by start and merge.
	slices.Sort(ranges)
	var n int64
	var curLo, curHi uint32
	for k, r := range ranges {
		lo, hi := uint32(r>>32), uint32(r)
		if k > 0 && lo <= curHi {
			curHi = max(curHi, hi)
			continue
		}
		if k > 0 {
			n += int64(curHi-curLo) + 1
		}
		curLo, curHi = lo, hi
	}
	n += int64(curHi-curLo) + 1
	return min(n, math.MaxInt64), nil
}

// seqNumber parses seq-number = nz-number / "*" (RFC 9051 §9).
func seqNumber(s string) (n uint32, star bool, err error) {
	if s == "*" {
		return 0, true, nil
	}
	if s == "" || s[0] < '1' || s[0] > '9' {
		if s == "0" {
			return 0, false, errSetZeroOrRange
		}
		return 0, false, errSetSyntax
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false, errSetSyntax
		}
		v = v*10 + uint64(c-'0')
		if v > math.MaxUint32 {
			return 0, false, errSetZeroOrRange
		}
	}
	return uint32(v), false, nil
}

// SetMayContain reports whether the sequence set or uid set (RFC 9051 §9),
// as written, may name message n: "*" is the largest number in the
// mailbox, which n may be, and "$" (RFC 5182) a saved result the proxy
// does not know, so a set with either may name any. It does not allocate.
func SetMayContain(set string, n uint32) bool {
	for len(set) > 0 {
		var elem string
		elem, set = nextSetElem(set)
		a, b, all := setElem(elem)
		if all || (a <= n && n <= b) {
			return true
		}
	}
	return false
}

// nextSetElem splits the first element off a sequence set.
func nextSetElem(set string) (elem, rest string) {
	if k := strings.IndexByte(set, ','); k >= 0 {
		return set[:k], set[k+1:]
	}
	return set, ""
}

// setElem is the range lo:hi one element of a set names, lo <= hi; all
// when it may name any message ("*", "$", or not a number: SetMayContain).
func setElem(elem string) (lo, hi uint32, all bool) {
	l, h := elem, elem
	if k := strings.IndexByte(elem, ':'); k >= 0 {
		l, h = elem[:k], elem[k+1:]
	}
	a, aStar, err1 := seqNumber(l)
	b, bStar, err2 := seqNumber(h)
	if elem == "$" || aStar || bStar || err1 != nil || err2 != nil {
		return 0, 0, true
	}
	return min(a, b), max(a, b), false
}

// SetRange is the numbers Lo to Hi, both included.
type SetRange struct{ Lo, Hi uint32 }

// SetRanges reads set into sorted, disjoint ranges appended to dst[:0],
// for RangesContain to answer SetMayContain's question in O(log n) where
// a set is asked about many times; all when the set may name any message
// (then the ranges are not read).
func SetRanges(dst []SetRange, set string) (ranges []SetRange, all bool) {
	rs := dst[:0]
	for len(set) > 0 {
		var elem string
		elem, set = nextSetElem(set)
		a, b, all := setElem(elem)
		if all {
			return rs[:0], true
		}
		rs = append(rs, SetRange{a, b})
	}
	slices.SortFunc(rs, func(x, y SetRange) int { return cmp.Compare(x.Lo, y.Lo) })
	out := rs[:0]
	for _, r := range rs {
		if k := len(out) - 1; k >= 0 && uint64(r.Lo) <= uint64(out[k].Hi)+1 {
			out[k].Hi = max(out[k].Hi, r.Hi)
			continue
		}
		out = append(out, r)
	}
	return out, false
}

// RangesContain reports whether ranges from SetRanges hold n.
func RangesContain(ranges []SetRange, n uint32) bool {
	i, _ := slices.BinarySearchFunc(ranges, n, func(r SetRange, n uint32) int {
		if r.Hi < n {
			return -1
		}
		return 0 // r.Hi >= n: the first such range is the only one that may hold n
	})
	return i < len(ranges) && ranges[i].Lo <= n
}
