package imapwire

import (
	"strings"
	"unicode/utf8"
)

// Context is what the proxy knows of the session that changes how a
// command reads: the state and selected mailbox as the backend's answers
// left them (ARCHITECTURE.md §8), the hierarchy delimiter and the extensions in
// effect.
type Context struct {
	// State is StateNotAuth, StateAuth or StateSelected.
	State State
	// ReadOnly: the selected mailbox was opened read-only.
	ReadOnly bool
	// Delim is the hierarchy delimiter of the personal namespace, from the
	// backend's LIST "" "" (RFC 9051 §6.3.9); 0 when flat or unknown.
	Delim byte
	// Caps are the capabilities the client was offered.
	Caps Cap
	// UTF8: ENABLE UTF8=ACCEPT is in effect; mailbox names are UTF-8
	// rather than modified UTF-7 (RFC 6855 §3).
	UTF8 bool
	// QRESYNC: ENABLE QRESYNC is in effect (RFC 7162 §3.2.3).
	QRESYNC bool
}

// Errors of mailbox names: each name must mean one mailbox to the proxy
// and to every backend, so anything a backend might read otherwise is
// refused (ARCHITECTURE.md §10).
var (
	errNameUTF7      = &SyntaxError{Msg: "mailbox name is not valid modified UTF-7 (RFC 3501 §5.1.3)"}
	errNameUTF8      = &SyntaxError{Msg: "mailbox name is not valid UTF-8 (RFC 6855 §3)"}
	errNameAmp       = &SyntaxError{Msg: `"&" in a mailbox name after UTF8=ACCEPT has two readings`}
	errNameCTL       = &SyntaxError{Msg: "control character in mailbox name"}
	errNameEmptyPart = &SyntaxError{Msg: "empty hierarchy level in mailbox name"}
	errNameDots      = &SyntaxError{Msg: `"." or ".." as a hierarchy level in mailbox name`}
	errNameNIL       = &SyntaxError{Msg: "NIL is not a mailbox name (quote it)"}
)

// Canonical returns a mailbox name as policies, limits and the audit see
// it: decoded from modified UTF-7 (RFC 3501 §5.1.3; UTF-8 as sent after
// UTF8=ACCEPT), "INBOX" in upper case as its first hierarchy level however
// it was spelled (RFC 9051 §5.1: INBOX is case-insensitive; Dovecot, Cyrus
// and Courier all fold "inbox.x" to "INBOX.x"). Names with empty levels
// (a trailing delimiter included, also in CREATE), "." or ".." levels, or
// controls are refused: the backends answer them differently, or reach
// other names through them. RFC 9051 §6.3.4 lets CREATE "foo/" create
// "foo", and Dovecot and Cyrus do; Courier answers OK and creates nothing
// (found by internal/difftest).
func (ctx *Context) Canonical(raw string) (string, error) {
	name, err := ctx.decodeName(raw)
	if err != nil {
		return "", err
	}
	for _, r := range name {
		// C0, DEL and C1 controls: no backend agrees on them, and no name
		// needs them.
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) {
			return "", errNameCTL
		}
	}
	d := ctx.Delim
	if d == 0 || name == "" {
		return foldInbox(name, 0), nil
	}
	start := 0
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != d {
			continue
		}
		part := name[start:i]
		switch {
		case part == "":
			return "", errNameEmptyPart
		case d != '.' && (part == "." || part == ".."):
			return "", errNameDots
		}
		start = i + 1
	}
	return foldInbox(name, d), nil
}

// decodeName decodes a name as the backend will.
func (ctx *Context) decodeName(raw string) (string, error) {
	if ctx.UTF8 {
		if !utf8.ValidString(raw) {
			return "", errNameUTF8
		}
		if strings.IndexByte(raw, '&') >= 0 {
			return "", errNameAmp
		}
		return raw, nil
	}
	name, err := DecodeMailbox(raw)
	if err != nil {
		return "", errNameUTF7
	}
	return name, nil
}

// foldInbox upper-cases a first hierarchy level spelled "inbox" in any
// case.
func foldInbox(name string, d byte) string {
	if len(name) < 5 || !strings.EqualFold(name[:5], "INBOX") || name[:5] == "INBOX" {
		return name
	}
	if len(name) == 5 || (d != 0 && name[5] == d) {
		return "INBOX" + name[5:]
	}
	return name
}

// Pattern decodes a LIST pattern or reference (RFC 9051 §6.3.9) for
// policies: modified UTF-7 decoded, wildcards and delimiters kept.
func (ctx *Context) Pattern(raw string) (string, error) {
	return ctx.decodeName(raw)
}
