package imapwire

import "strings"

// CATENATE's URL parts (RFC 4469 §3) make the backend copy a message, or
// a part of one, from a mailbox the URL names: the command reads that
// mailbox's content, so the mailbox is a source of the command, named in
// its effects, the policy input and the audit (ARCHITECTURE.md §10). The
// proxy accepts only the one form it can read exactly, a relative IMAP URL
// of this server (RFC 5092 §6 imapurl-rel, iabsolute-path with an
// imessagepart):
//
//	"/" enc-mailbox [";UIDVALIDITY=" nz-number] "/;UID=" nz-number
//	    ["/;SECTION=" enc-section] ["/;PARTIAL=" number ["." nz-number]]
//
// Anything else has more than one reading or reaches past the proxy, and
// is refused (ARCHITECTURE.md §7): an absolute URL (imap://host/..., another
// server or this one by a name the proxy cannot check), a URL relative to
// something other than the server's root, URLAUTH (";EXPIRE=", ";URLAUTH=",
// RFC 4467: the proxy cannot check the authorisation it carries).

// Errors of CATENATE URLs.
var (
	errURLForm     = &SyntaxError{Msg: `CATENATE URL must be "/mailbox/;UID=n" (RFC 4469 §3, RFC 5092): other forms are refused`}
	errURLAbsolute = &SyntaxError{Msg: "absolute IMAP URL refused: only URLs relative to this server (RFC 5092 §6)"}
	errURLAuth     = &SyntaxError{Msg: "URLAUTH in a CATENATE URL refused (RFC 4467): the proxy cannot check it"}
	errURLPct      = &SyntaxError{Msg: "bad percent-encoding in IMAP URL (RFC 3986 §2.1)"}
	errURLPctDelim = &SyntaxError{Msg: `percent-encoded "/" or ";" in an IMAP URL mailbox has two readings`, Code: "CANNOT"}
	errURLChar     = &SyntaxError{Msg: "character not allowed in an IMAP URL (RFC 5092 §11 bchar)"}
	errURLName     = &SyntaxError{Msg: `non-ASCII or "&" in an IMAP URL mailbox has two readings (RFC 5092 §3.2 UTF-8, RFC 3501 §5.1.3 modified UTF-7)`, Code: "CANNOT"}
	errURLNumber   = &SyntaxError{Msg: "bad number in IMAP URL (RFC 5092 nz-number)"}
	// errURLSlash: Cyrus drops a "/" that ends the mailbox before
	// ";UIDVALIDITY=" and copies from the mailbox without it, which the
	// proxy would have judged as another name (found by internal/difftest).
	errURLSlash = &SyntaxError{Msg: `"/" in an IMAP URL mailbox other than as the hierarchy delimiter between two levels has two readings: refused`, Code: "CANNOT"}
)

// URLSource returns the canonical name of the mailbox a CATENATE URL reads
// (RFC 4469 §3), as Canonical makes any other name, or a *SyntaxError when
// the URL is not of the one form the proxy reads (see above).
func (ctx *Context) URLSource(url string) (string, error) {
	if len(url) > 0 && url[0] != '/' {
		if i := strings.IndexByte(url, ':'); i > 0 && !strings.ContainsAny(url[:i], "/;") {
			return "", errURLAbsolute // scheme ":" ...
		}
		return "", errURLForm
	}
	if len(url) < 2 || url[1] == '/' {
		// "//host/..." is a network-path reference: another server.
		if strings.HasPrefix(url, "//") {
			return "", errURLAbsolute
		}
		return "", errURLForm
	}
	rest := url[1:]
	semi := strings.IndexByte(rest, ';')
	if semi < 0 {
		return "", errURLForm // a mailbox, not a message
	}
	enc := rest[:semi]
	params := rest[semi:]
	// enc-mailbox [uidvalidity] "/" iuid-only: the mailbox ends at its
	// UIDVALIDITY or at the "/" before ";UID=".
	if p, ok := cutWord(params, ";UIDVALIDITY="); ok {
		var n string
		n, params = cutNumber(p)
		if !nzNumber(n) {
			return "", errURLNumber
		}
	} else {
		var found bool
		if enc, found = strings.CutSuffix(enc, "/"); !found {
			return "", errURLForm
		}
		params = "/" + params
	}
	if err := checkParams(params); err != nil {
		return "", err
	}
	name, err := pctDecode(enc)
	if err != nil {
		return "", err
	}
	if name == "" {
		return "", errURLForm
	}
	// RFC 5092 §6 lets "/" stand in enc-mailbox; the backends read it
	// as a separator of the URL's path, or strip it, or as the hierarchy
	// delimiter. So it is taken only as the delimiter of a "/" hierarchy,
	// between two non-empty levels.
	if ctx.Delim != '/' && strings.IndexByte(name, '/') >= 0 ||
		strings.HasSuffix(name, "/") || strings.Contains(name, "//") {
		return "", errURLSlash
	}
	if !ctx.UTF8 {
		for i := 0; i < len(name); i++ {
			if c := name[i]; c >= 0x80 || c == '&' {
				return "", errURLName
			}
		}
	}
	return ctx.Canonical(name)
}

// checkParams checks "/;UID=" nz-number ["/;SECTION=" enc-section]
// ["/;PARTIAL=" partial-range], in that order, and nothing after.
func checkParams(s string) error {
	if hasURLAuth(s) {
		return errURLAuth
	}
	p, ok := cutWord(s, "/;UID=")
	if !ok {
		return errURLForm
	}
	n, s := cutNumber(p)
	if !nzNumber(n) {
		return errURLNumber
	}
	if p, ok := cutWord(s, "/;SECTION="); ok {
		i := strings.Index(p, "/;")
		if i < 0 {
			i = len(p)
		}
		if i == 0 {
			return errURLForm
		}
		if _, err := pctDecode(p[:i]); err != nil {
			return err
		}
		s = p[i:]
	}
	if p, ok := cutWord(s, "/;PARTIAL="); ok {
		var n string
		n, s = cutNumber(p)
		if n == "" || len(n) > 1 && n[0] == '0' {
			return errURLNumber
		}
		if len(s) > 0 && s[0] == '.' {
			n, s = cutNumber(s[1:])
			if !nzNumber(n) {
				return errURLNumber
			}
		}
	}
	if s != "" {
		return errURLForm
	}
	return nil
}

func hasURLAuth(s string) bool {
	u := strings.ToUpper(s)
	return strings.Contains(u, ";EXPIRE=") || strings.Contains(u, ";URLAUTH=")
}

// cutWord cuts the keyword w (upper case; RFC 5234 strings are
// case-insensitive) from the start of s.
func cutWord(s, w string) (string, bool) {
	if len(s) < len(w) || !strings.EqualFold(s[:len(w)], w) {
		return s, false
	}
	return s[len(w):], true
}

// cutNumber cuts the digits at the start of s.
func cutNumber(s string) (digits, rest string) {
	i := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	return s[:i], s[i:]
}

// nzNumber: nz-number, 32 bits (RFC 9051 §9), no leading zero.
func nzNumber(s string) bool {
	if s == "" || s[0] == '0' || len(s) > 10 {
		return false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		n = n*10 + uint64(s[i]-'0')
	}
	return n <= 1<<32-1
}

// pctDecode decodes 1*bchar (RFC 5092 §11: unreserved, pct-encoded,
// sub-delims-sh, "&", "=", ":", "@", "/"). A percent-encoded "/" or ";"
// is refused: a server that decodes before splitting reads another name.
func pctDecode(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			if i+2 >= len(s) {
				return "", errURLPct
			}
			h, l := unhex(s[i+1]), unhex(s[i+2])
			if h < 0 || l < 0 {
				return "", errURLPct
			}
			d := byte(h<<4 | l)
			if d == '/' || d == ';' {
				return "", errURLPctDelim
			}
			b.WriteByte(d)
			i += 2
			continue
		}
		if !isBchar(c) {
			return "", errURLChar
		}
		b.WriteByte(c)
	}
	return b.String(), nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// isBchar: bchar without pct-encoded (RFC 5092 §11, RFC 3986 §2.3).
func isBchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$'()*+,&=:@/", c) >= 0
}
