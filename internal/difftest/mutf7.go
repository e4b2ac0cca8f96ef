package difftest

import (
	"encoding/base64"
	"errors"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// The harness has its own modified UTF-7 codec (RFC 3501 §5.1.3) rather
// than the proxy's: it reads the names the backends list, and a bug shared
// with the proxy's decoder would hide the very differences it looks for.

// b64 is modified BASE64: "," for "/", no padding (RFC 3501 §5.1.3).
var b64 = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").WithPadding(base64.NoPadding)

// EncodeMUTF7 encodes a UTF-8 name: printable ASCII stands for itself,
// "&" is "&-", every other run of characters is "&" + modified BASE64 of
// its UTF-16 + "-".
func EncodeMUTF7(s string) string {
	var b strings.Builder
	var run []rune
	flush := func() {
		if len(run) == 0 {
			return
		}
		u := utf16.Encode(run)
		raw := make([]byte, 0, 2*len(u))
		for _, c := range u {
			raw = append(raw, byte(c>>8), byte(c))
		}
		b.WriteByte('&')
		b.WriteString(b64.EncodeToString(raw))
		b.WriteByte('-')
		run = run[:0]
	}
	for _, r := range s {
		switch {
		case r == '&':
			flush()
			b.WriteString("&-")
		case r >= 0x20 && r < 0x7f:
			flush()
			b.WriteRune(r)
		default:
			run = append(run, r)
		}
	}
	flush()
	return b.String()
}

var errMUTF7 = errors.New("not modified UTF-7")

// DecodeMUTF7 decodes a name the way RFC 3501 §5.1.3 defines it, strictly:
// 8-bit bytes, bad base64, non-zero padding bits, an encoded printable
// ASCII character, an empty or unterminated shift, adjacent shifts and
// broken surrogates are errors.
func DecodeMUTF7(s string) (string, error) {
	var b strings.Builder
	prevShift := false
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x80 || c < 0x20 || c == 0x7f {
			return "", errMUTF7
		}
		if c != '&' {
			b.WriteByte(c)
			i++
			prevShift = false
			continue
		}
		j := strings.IndexByte(s[i+1:], '-')
		if j < 0 {
			return "", errMUTF7
		}
		enc := s[i+1 : i+1+j]
		i += j + 2
		if enc == "" {
			b.WriteByte('&')
			prevShift = false
			continue
		}
		if prevShift {
			return "", errMUTF7 // "&AAA-&BBB-" must have been one shift
		}
		raw, err := b64.DecodeString(enc)
		if err != nil || len(raw)%2 != 0 || len(raw) == 0 {
			return "", errMUTF7
		}
		// Non-zero bits after the last whole octet: a second reading.
		if b64.EncodeToString(raw) != enc {
			return "", errMUTF7
		}
		u := make([]uint16, len(raw)/2)
		for k := range u {
			u[k] = uint16(raw[2*k])<<8 | uint16(raw[2*k+1])
		}
		for k := 0; k < len(u); k++ {
			r := rune(u[k])
			if utf16.IsSurrogate(r) {
				if k+1 >= len(u) {
					return "", errMUTF7
				}
				r = utf16.DecodeRune(r, rune(u[k+1]))
				if r == utf8.RuneError {
					return "", errMUTF7
				}
				k++
			} else if r >= 0x20 && r < 0x7f {
				return "", errMUTF7 // printable ASCII stands for itself
			}
			b.WriteRune(r)
		}
		prevShift = true
	}
	return b.String(), nil
}
