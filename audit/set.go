package audit

import (
	"slices"
	"strconv"
)

// A sequence or UID set (RFC 9051 §9) is written in one canonical form,
// whatever the client padded it with: its numeric ranges sorted and
// merged ("1:5,7"), then its "n:*" ranges ("*" alone, n:* and *:n read as
// n:*, RFC 9051 §9 seq-range), then "$" (RFC 5182). Over the cap, the
// ranges that fit are kept and the rest is written as a range covering
// it, so a cut set still names every message the set named, and perhaps
// more (the cut entry says so): a cut never hides the high end
// (ARCHITECTURE.md §11).

// setRange is lo:hi, lo <= hi; hi is 0 for "lo:*" (lo 0: "*").
type setRange struct {
	lo, hi uint32
	star   bool
}

// coverLen bounds the cover of a cut set: "4294967295:*,4294967295:*,$".
const coverLen = 28

// set writes the set k, canonical, within the identity cap. A set the
// proxy could not have accepted (not RFC 9051 syntax) is written as
// given, clipped.
func (enc *encoding) set(e *jsonLine, k, v string) {
	if v == "" {
		return
	}
	if b, ok := enc.canonSet(k, v); ok {
		e.Plain(k, b) // digits and ",:*$"
	} else {
		// Not a name: the field and identity caps (nameMax).
		enc.clipped(e, k, v, max(enc.caps.field, enc.caps.ident))
	}
}

// canonSet is set v's canonical form within the identity cap, in
// enc.setBuf, and whether v is a set; a cut is noted as field k.
func (enc *encoding) canonSet(k, v string) ([]byte, bool) {
	rs, dollar, ok := parseSet(enc.ranges[:0], v)
	enc.ranges = rs[:0]
	if !ok {
		return nil, false
	}
	rs = canonRanges(rs)
	limit := max(enc.caps.field, enc.caps.ident, coverLen)
	b := enc.setBuf[:0]
	for i, r := range rs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendRange(b, r)
	}
	dl := 0
	if dollar {
		dl = 2
	}
	cut := -1
	if len(b)+dl > limit {
		// Keep what fits beside the rest's cover and "$".
		room := limit - coverLen - 1 - dl
		b = b[:0]
		for i, r := range rs {
			n := len(b)
			if i > 0 {
				b = append(b, ',')
			}
			if b = appendRange(b, r); len(b) > room {
				b, cut = b[:n], i
				break
			}
		}
		if cut >= 0 {
			if len(b) > 0 {
				b = append(b, ',')
			}
			b = appendCover(b, rs[cut:])
		}
	}
	if dollar {
		if len(b) > 0 {
			b = append(b, ',')
		}
		b = append(b, '$')
	}
	if cut >= 0 {
		enc.cut = append(enc.cut, Cut{Field: k, Bytes: len(v), Items: len(rs)})
	}
	enc.setBuf = b[:0]
	return b, true
}

// parseSet reads set's elements into dst: ok false when set is not
// sequence-set syntax (RFC 9051 §9, RFC 5182 "$" alone as an element).
func parseSet(dst []setRange, set string) (rs []setRange, dollar, ok bool) {
	rs = dst
	for len(set) > 0 {
		elem := set
		if k := indexByte(set, ','); k >= 0 {
			elem, set = set[:k], set[k+1:]
			if set == "" {
				return rs, false, false
			}
		} else {
			set = ""
		}
		if elem == "$" {
			dollar = true
			continue
		}
		l, h := elem, elem
		if k := indexByte(elem, ':'); k >= 0 {
			l, h = elem[:k], elem[k+1:]
		}
		a, aStar, ok1 := setNumber(l)
		b, bStar, ok2 := setNumber(h)
		if !ok1 || !ok2 {
			return rs, false, false
		}
		switch {
		case aStar && bStar:
			rs = append(rs, setRange{star: true})
		case aStar:
			rs = append(rs, setRange{lo: b, star: true})
		case bStar:
			rs = append(rs, setRange{lo: a, star: true})
		default:
			rs = append(rs, setRange{lo: min(a, b), hi: max(a, b)})
		}
	}
	return rs, dollar, true
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// setNumber reads nz-number / "*".
func setNumber(s string) (n uint32, star, ok bool) {
	if s == "*" {
		return 0, true, true
	}
	if s == "" || s[0] < '1' || s[0] > '9' || len(s) > 10 {
		return 0, false, false
	}
	v, err := strconv.ParseUint(s, 10, 32)
	return uint32(v), false, err == nil
}

// canonRanges sorts rs, numeric ranges first, merging those that overlap
// or touch; "n:*" ranges are only deduplicated: with "*" below n, n:* is
// *:n, which merging with a numeric range would change.
func canonRanges(rs []setRange) []setRange {
	slices.SortFunc(rs, func(x, y setRange) int {
		switch {
		case x.star != y.star:
			if x.star {
				return 1
			}
			return -1
		case x.lo != y.lo:
			if x.lo < y.lo {
				return -1
			}
			return 1
		}
		return 0
	})
	out := rs[:0]
	for _, r := range rs {
		if k := len(out) - 1; k >= 0 && out[k].star == r.star {
			p := &out[k]
			if r.star && r.lo == p.lo {
				continue
			}
			if !r.star && uint64(r.lo) <= uint64(p.hi)+1 {
				p.hi = max(p.hi, r.hi)
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

func appendRange(b []byte, r setRange) []byte {
	switch {
	case r.star && r.lo == 0:
		return append(b, '*')
	case r.star:
		return append(strconv.AppendUint(b, uint64(r.lo), 10), ":*"...)
	}
	b = strconv.AppendUint(b, uint64(r.lo), 10)
	if r.hi != r.lo {
		b = strconv.AppendUint(append(b, ':'), uint64(r.hi), 10)
	}
	return b
}

// appendCover writes one or two elements naming every message rs names:
// lo:hi over its numbers; with an n:* range, a:*,b:* over its least and
// greatest numbers a and b, which holds [min(a,*), max(b,*)] whatever
// "*" is.
func appendCover(b []byte, rs []setRange) []byte {
	var lo, hi uint32
	star, first := false, true
	for _, r := range rs {
		star = star || r.star
		if r.star && r.lo == 0 {
			continue
		}
		h := max(r.hi, r.lo)
		if first {
			lo, hi, first = r.lo, h, false
			continue
		}
		lo, hi = min(lo, r.lo), max(hi, h)
	}
	switch {
	case star && first:
		return append(b, '*')
	case star:
		b = appendRange(b, setRange{lo: lo, star: true})
		if hi != lo {
			b = appendRange(append(b, ','), setRange{lo: hi, star: true})
		}
		return b
	}
	return appendRange(b, setRange{lo: lo, hi: hi})
}
