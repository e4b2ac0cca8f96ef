package audit

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// jsonLine appends one record, a JSON object, to a buffer: the bytes
// zapcore's JSON encoder wrote for records with the trail's encoder
// configuration (time and kind first, no level, caller or name), written
// directly, without its per-field interface calls, its buffer pool and a
// copy of every line. The readers, verify and the chain depend only on
// the bytes, which TestLineMatchesZap holds equal to zapcore's for
// generated records (ARCHITECTURE.md §16).
type jsonLine struct{ b []byte }

// sep writes the comma before a member or an element: none after an
// opening bracket, as zapcore decides by the last byte written.
func (l *jsonLine) sep() {
	if n := len(l.b); n > 0 {
		switch l.b[n-1] {
		case '{', '[', ':', ',', ' ':
		default:
			l.b = append(l.b, ',')
		}
	}
}

// key writes a member's name: one of the schema's, which need no escape.
func (l *jsonLine) key(k string) {
	l.sep()
	l.b = append(l.b, '"')
	l.b = append(l.b, k...)
	l.b = append(l.b, '"', ':')
}

// outsideKey writes a member's name from outside the proxy (a map's key).
func (l *jsonLine) outsideKey(k string) {
	l.sep()
	l.quote(k)
	l.b = append(l.b, ':')
}

func (l *jsonLine) quote(s string) {
	l.b = append(l.b, '"')
	l.b = appendEscaped(l.b, s, utf8.DecodeRuneInString)
	l.b = append(l.b, '"')
}

// String writes k and the string v, escaped.
func (l *jsonLine) String(k, v string) {
	l.key(k)
	l.quote(v)
}

// ByteString writes k and the string v, escaped.
func (l *jsonLine) ByteString(k string, v []byte) {
	l.key(k)
	l.b = append(l.b, '"')
	l.b = appendEscaped(l.b, v, utf8.DecodeRune)
	l.b = append(l.b, '"')
}

func (l *jsonLine) Int(k string, v int64) {
	l.key(k)
	l.b = strconv.AppendInt(l.b, v, 10)
}

func (l *jsonLine) Uint(k string, v uint64) {
	l.key(k)
	l.b = strconv.AppendUint(l.b, v, 10)
}

func (l *jsonLine) True(k string) {
	l.key(k)
	l.b = append(l.b, "true"...)
}

// Millis writes us microseconds as milliseconds, byte for byte as Float
// writes float64(us)/1000 (a duration or a delay), without its shortest-
// digits search (670 instructions under callgrind, 230 here, of the
// 5,000 that marshal a NOOP's record): below 10^15
// in magnitude us/1000 is exact in decimal with at most 15 significant
// digits, float64(us)/1000 is that decimal correctly rounded, and no
// decimal of as few digits or fewer lies within half a unit in the last
// place of it (10^-15 apart at least, relative, against 2^-53), so its
// shortest form is that decimal itself (TestMillisMatchesFloat).
func (l *jsonLine) Millis(k string, us int64) {
	if us <= -1e15 || us >= 1e15 {
		l.Float(k, float64(us)/1000)
		return
	}
	l.key(k)
	if us < 0 {
		l.b = append(l.b, '-')
		us = -us
	}
	l.b = strconv.AppendInt(l.b, us/1000, 10)
	if f := us % 1000; f != 0 {
		l.b = append(l.b, '.', byte('0'+f/100), byte('0'+f/10%10), byte('0'+f%10))
		for l.b[len(l.b)-1] == '0' {
			l.b = l.b[:len(l.b)-1]
		}
	}
}

// Float writes v as zapcore does: NaN and infinities as strings.
func (l *jsonLine) Float(k string, v float64) {
	l.key(k)
	switch {
	case math.IsNaN(v):
		l.b = append(l.b, `"NaN"`...)
	case math.IsInf(v, 1):
		l.b = append(l.b, `"+Inf"`...)
	case math.IsInf(v, -1):
		l.b = append(l.b, `"-Inf"`...)
	default:
		l.b = strconv.AppendFloat(l.b, v, 'f', -1, 64)
	}
}

// Plain writes k and the string v, which needs no escape (hex,
// canonical sets).
func (l *jsonLine) Plain(k string, v []byte) {
	l.key(k)
	l.b = append(l.b, '"')
	l.b = append(l.b, v...)
	l.b = append(l.b, '"')
}

// Raw writes k and v, JSON that encoding/json wrote, as it is.
func (l *jsonLine) Raw(k string, v []byte) {
	l.key(k)
	l.b = append(l.b, v...)
}

// Time writes t in the layout, quoted.
func (l *jsonLine) Time(k string, t time.Time, layout string) {
	l.key(k)
	l.b = append(l.b, '"')
	if layout == time.RFC3339Nano {
		l.b = appendRFC3339Nano(l.b, t)
	} else {
		l.b = t.AppendFormat(l.b, layout)
	}
	l.b = append(l.b, '"')
}

// maxRFC3339Unix is 10000-01-01T00:00:00Z: appendRFC3339Nano's years
// have four digits.
const maxRFC3339Unix = 253402300800

// appendRFC3339Nano appends t as t.AppendFormat(b, time.RFC3339Nano)
// does, a record's time, in a fraction of its instructions for a time in
// UTC from 1970 to 9999; others go to AppendFormat.
func appendRFC3339Nano(b []byte, t time.Time) []byte {
	sec := t.Unix()
	if t.Location() != time.UTC || sec < 0 || sec >= maxRFC3339Unix {
		return t.AppendFormat(b, time.RFC3339Nano)
	}
	days, rem := uint64(sec)/86400, uint32(uint64(sec)%86400)
	// The civil date of a day count (H. Hinnant, "chrono-compatible
	// low-level date algorithms"), in 400-year eras from 0000-03-01.
	z := days + 719468
	era := z / 146097
	doe := uint32(z - era*146097)
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	day := doy - (153*mp+2)/5 + 1
	month, year := mp+3, yoe+uint32(era)*400
	if mp >= 10 {
		month, year = mp-9, year+1
	}
	d := [30]byte{4: '-', 7: '-', 10: 'T', 13: ':', 16: ':', 19: '.'}
	two := func(at int, v uint32) { d[at], d[at+1] = byte('0'+v/10), byte('0'+v%10) }
	two(0, year/100)
	two(2, year%100)
	two(5, month)
	two(8, day)
	two(11, rem/3600)
	two(14, rem/60%60)
	two(17, rem%60)
	n := 19
	if ns := uint32(t.Nanosecond()); ns != 0 {
		// ".999999999": nine digits without the trailing zeros.
		for i := 28; i > 19; i-- {
			d[i] = byte('0' + ns%10)
			ns /= 10
		}
		n = 29
		for d[n-1] == '0' {
			n--
		}
	}
	d[n] = 'Z'
	return append(b, d[:n+1]...)
}

// open and close bracket an array or object member k.
func (l *jsonLine) open(k string, bracket byte) {
	l.key(k)
	l.b = append(l.b, bracket)
}

func (l *jsonLine) close(bracket byte) { l.b = append(l.b, bracket) }

// elem writes an array's string element.
func (l *jsonLine) elem(s string) {
	l.sep()
	l.quote(s)
}

// elemUint writes an array's number element.
func (l *jsonLine) elemUint(u uint64) {
	l.sep()
	l.b = strconv.AppendUint(l.b, u, 10)
}

// appendEscaped appends s escaped as zapcore escapes strings: `\"`,
// `\\`, `\n`, `\r`, `\t`, `\u00XX` for other control characters, `\ufffd`
// for each byte that is not UTF-8; everything else as it is (clip counts
// the same).
func appendEscaped[S string | []byte](b []byte, s S, decodeRune func(S) (rune, int)) []byte {
	i := 0
	for i < len(s) && plainByte[s[i]] {
		i++
	}
	if i == len(s) {
		return append(b, s...) // most strings
	}
	last := 0
	for i < len(s) {
		c := s[i]
		if c >= utf8.RuneSelf {
			if r, size := decodeRune(s[i:]); r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			b = append(b, s[last:i]...)
			b = append(b, `\ufffd`...)
			i++
			last = i
			continue
		}
		if c >= 0x20 && c != '\\' && c != '"' {
			i++
			continue
		}
		b = append(b, s[last:i]...)
		switch c {
		case '\\', '"':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		last = i
	}
	return append(b, s[last:]...)
}

const hexDigits = "0123456789abcdef"

// plainByte tells the bytes written as they are without a look at the
// next: printable ASCII but `"` and `\`.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()
