// Package termsafe writes untrusted text so that a terminal shows it and
// never acts on it.
//
// Client-chosen strings (user names, mailboxes, ID values, tags, SNI)
// reach audit tables, logs and reports. A terminal interprets some of
// their characters: C0 controls (ESC starts sequences that move the
// cursor, erase lines, set the title or hide text), DEL, C1 controls
// (U+009B is a one-character CSI on many terminals), U+2028 and U+2029
// (line breaks to some viewers), and the bidirectional formatting
// controls that reorder what a reader sees (CVE-2021-42574). And a
// reader sees nothing of a format or default-ignorable character (Hidden:
// a soft hyphen, a tag character, a Hangul filler), so "alice\u00ad"
// reads as "alice". Each of them, and each byte of invalid UTF-8, is
// written as a visible escape instead. Backslashes are left alone: the aim is that nothing is
// hidden or forged, not a reversible encoding (JSON output is exact).
//
// Standard library only, so that every package and tool can use it.
package termsafe

import (
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// String returns s with every character a terminal could act on written
// as an escape: \t, \n and \r for those, \xHH for the other C0 controls,
// DEL and each byte of invalid UTF-8, and \uXXXX (\UXXXXXXXX past
// U+FFFF) for C1 controls, U+2028, U+2029 and Hidden characters (bidi
// controls among them). Use it for one value in a line or a table.
func String(s string) string {
	if clean(s, false) {
		return s
	}
	return string(appendEscaped(make([]byte, 0, len(s)+16), s, false))
}

// AppendText appends src to dst escaped for a whole text the program laid
// out itself (a JSON document, a log line, a report), whose values were
// already quoted: tab and line feed pass as they are, and the escapes are
// JSON's (\u00XX, a surrogate pair past U+FFFF; U+FFFD for invalid
// UTF-8), so that JSON stays valid and keeps its value while its DEL, C1,
// U+2028, U+2029 and Hidden characters, which JSON encoders write raw,
// become visible.
func AppendText(dst, src []byte) []byte {
	s := unsafe.String(unsafe.SliceData(src), len(src)) // only read, never kept
	if clean(s, true) {
		return append(dst, src...)
	}
	return appendEscaped(dst, s, true)
}

// clean reports whether s has nothing to escape; with layout, tab and
// line feed are allowed. It is the fast path: printable ASCII is decided
// byte by byte, only other bytes are decoded.
func clean(s string, layout bool) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f || layout && (c == '\t' || c == '\n') {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			return false
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 || unsafeRune(r) {
			return false
		}
		i += n
	}
	return true
}

// unsafeRune reports whether a terminal or viewer may act on r or show
// nothing of it.
func unsafeRune(r rune) bool {
	switch {
	case r < 0x20, r >= 0x7f && r <= 0x9f: // C0, DEL, C1
		return true
	case r == 0x2028, r == 0x2029: // line and paragraph separators
		return true
	}
	return Hidden(r)
}

// Hidden reports a format character (general category Cf: soft hyphen,
// zero-width characters, bidi controls, tags) or a default-ignorable one
// (Other_Default_Ignorable_Code_Point, variation selectors: a Hangul
// filler, U+034F): text shows nothing of it (Unicode §5.21), so two
// strings that differ by one read the same. The one definition: the
// proxy refuses such a login name (ARCHITECTURE.md §17), and String and
// AppendText escape it.
func Hidden(r rune) bool {
	if r < 0xa0 {
		return false
	}
	return unicode.Is(unicode.Cf, r) || unicode.In(r, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector)
}

const hexDigits = "0123456789abcdef"

// appendU appends \uXXXX of r, at most U+FFFF.
func appendU(dst []byte, r rune) []byte {
	return append(dst, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
}

// appendEscaped is the one escaping routine behind String and AppendText.
// layout keeps tab and line feed and selects JSON's escape forms.
func appendEscaped(dst []byte, s string, layout bool) []byte {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			if layout {
				dst = append(dst, `\ufffd`...)
			} else {
				dst = append(dst, '\\', 'x', hexDigits[s[i]>>4], hexDigits[s[i]&0xf])
			}
		case !unsafeRune(r), layout && (r == '\t' || r == '\n'):
			dst = append(dst, s[i:i+n]...)
		case r == '\t':
			dst = append(dst, `\t`...)
		case r == '\n':
			dst = append(dst, `\n`...)
		case r == '\r':
			dst = append(dst, `\r`...)
		case r < 0x80 && !layout:
			dst = append(dst, '\\', 'x', hexDigits[r>>4], hexDigits[r&0xf])
		case r > 0xffff && layout:
			hi, lo := utf16.EncodeRune(r)
			dst = appendU(appendU(dst, hi), lo)
		case r > 0xffff:
			dst = append(dst, '\\', 'U')
			for sh := 28; sh >= 0; sh -= 4 {
				dst = append(dst, hexDigits[r>>sh&0xf])
			}
		default:
			dst = appendU(dst, r)
		}
		i += n
	}
	return dst
}
