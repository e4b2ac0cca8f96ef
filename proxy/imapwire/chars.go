package imapwire

import "bytes"

// Byte classes of RFC 9051 §9.
const (
	// cAtom: ATOM-CHAR = <any CHAR except atom-specials>, where
	// atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards /
	// quoted-specials / resp-specials.
	cAtom uint8 = 1 << iota
	// cTag: the tag characters the proxy accepts. RFC 9051 §9 allows
	// tag = 1*<any ASTRING-CHAR except "+">, but the backends disagree on
	// the rest (Dovecot refuses "]", Courier cuts the tag at "[", "}" and
	// "~" and answers with what came before): a tag must mean the same to
	// every backend, so only ATOM-CHARs all of them accept are taken
	// (ARCHITECTURE.md §7), probed in internal/difftest.
	cTag
	// cAtomX: the bytes an atom token may hold before the grammar of its
	// argument judges it: ATOM-CHAR, list-wildcards ("%", "*" in LIST
	// patterns and sequence sets), "]" (resp-specials, allowed in astring)
	// and "\" (flags such as \Seen).
	cAtomX
	// cSplit: ASTRING-CHARs a supported backend ends an unquoted word at
	// (Courier: "[", "]", "}", and "~", which starts a literal8 to it;
	// Dovecot and Cyrus end one only at SP, CTL, "(", ")" and DQUOTE).
	// An atom holding one outside a FETCH section has two readings: it is
	// refused, never relayed (ARCHITECTURE.md §7).
	cSplit
)

var class = func() (t [256]uint8) {
	for c := 0x21; c < 0x7f; c++ {
		switch c {
		case '(', ')', '{', '"':
		case '%', '*', '\\', ']':
			t[c] |= cAtomX
		default:
			t[c] |= cAtom | cAtomX | cTag
		}
	}
	for _, c := range []byte("+[}~") {
		t[c] &^= cTag
	}
	for _, c := range []byte("[]}~") {
		t[c] |= cSplit
	}
	return t
}()

func isAtomChar(c byte) bool  { return class[c]&cAtom != 0 }
func isTagChar(c byte) bool   { return class[c]&cTag != 0 }
func isAtomX(c byte) bool     { return class[c]&cAtomX != 0 }
func isSplitChar(c byte) bool { return class[c]&cSplit != 0 }

// isCTL reports CTL = %x00-1F / %x7F (RFC 5234 B.1).
func isCTL(c byte) bool { return c < 0x20 || c == 0x7f }

// atomLen returns the length of the run of ATOM-CHARs at the start of b.
func atomLen(b []byte) int {
	i := 0
	for i < len(b) && isAtomChar(b[i]) {
		i++
	}
	return i
}

// equalFold compares b with an upper-case ASCII word, ignoring case,
// without allocating.
func equalFold(b []byte, upper string) bool {
	if len(b) != len(upper) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != upper[i] {
			return false
		}
	}
	return true
}

// Syntax errors of CheckCommandLine.
var (
	errMissingCRLF = &SyntaxError{Msg: "missing CRLF"}
	errBareLF      = &SyntaxError{Msg: "bare LF"}
	errBareCR      = &SyntaxError{Msg: "bare CR"}
	errNULCommand  = &SyntaxError{Msg: "NUL in command"}
	errNULLiteral  = &SyntaxError{Msg: "NUL in literal"}
)

// CheckCommandLine validates one line of a client command as returned by
// ReadLine: it must end with CRLF and contain no NUL and no CR or LF other
// than that final CRLF. RFC 9051 §9: CHAR8 excludes NUL, and every line ends
// with CRLF; a server that accepted a bare LF or CR as a line end could be
// made to see a different command boundary than the proxy. The error is a
// *SyntaxError. The relay does not call it: CommandParser.Line holds every
// line to the same rules in its one pass over the line; tests hold what
// reached a backend to it.
func CheckCommandLine(line []byte) error {
	n := len(line)
	if n == 0 || line[n-1] != '\n' {
		return errMissingCRLF
	}
	if n < 2 || line[n-2] != '\r' {
		return errBareLF
	}
	body := line[:n-2]
	if bytes.IndexByte(body, 0) >= 0 {
		return errNULCommand
	}
	if bytes.IndexByte(body, '\n') >= 0 {
		return errBareLF
	}
	if bytes.IndexByte(body, '\r') >= 0 {
		return errBareCR
	}
	return nil
}

// LineTag returns the tag at the start of a command line, if it is one the
// proxy accepts (cTag, at most maxTag characters) followed by SP.
func LineTag(line []byte, maxTag int) ([]byte, bool) {
	i := 0
	for i < len(line) && i <= maxTag && isTagChar(line[i]) {
		i++
	}
	if i == 0 || i > maxTag || i >= len(line) || line[i] != ' ' {
		return nil, false
	}
	return line[:i], true
}
