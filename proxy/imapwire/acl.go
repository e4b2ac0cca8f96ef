package imapwire

import "strings"

// RightSet is a set of ACL rights (RFC 4314 §2.1: lower-case letters and
// digits), as bits: 'a'..'z' then '0'..'9'.
type RightSet uint64

// rightBit is the bit of right c, 0 for a character that is no right.
func rightBit(c byte) RightSet {
	switch {
	case 'a' <= c && c <= 'z':
		return 1 << (c - 'a')
	case '0' <= c && c <= '9':
		return 1 << (26 + c - '0')
	}
	return 0
}

// standardRights are RFC 4314 §2.1's: l r s w i p k x t e a. The
// obsolete c and d of RFC 2086 are not among them: RFC 4314 §2.1.1 lets
// each server map them onto its own set, so they have no one reading.
var standardRights = func() RightSet {
	var s RightSet
	for i := 0; i < len("lrswipkxtea"); i++ {
		s |= rightBit("lrswipkxtea"[i])
	}
	return s
}()

// BackendRights returns the rights a backend's RIGHTS= capabilities name
// (RFC 4314 §2.1: "RIGHTS=" followed by the rights it supports beyond
// RFC 2086's; Cyrus adds its own "n").
func BackendRights(caps []string) RightSet {
	var s RightSet
	for _, c := range caps {
		if len(c) > 7 && strings.EqualFold(c[:7], "RIGHTS=") {
			for i := 7; i < len(c); i++ {
				s |= rightBit(c[i])
			}
		}
	}
	return s
}

// Errors of ACL arguments.
var (
	errACLRights     = &SyntaxError{Msg: "rights must be letters RFC 4314 §2.1 or the server's RIGHTS= names, each once"}
	errACLIdentifier = &SyntaxError{Msg: "bad ACL identifier (RFC 4314 §2: a name, \"-\" before it for negative rights)"}
	errQuotaResource = &SyntaxError{Msg: "quota resource named twice (RFC 9208 §4.1)"}
)

// aclIdentifier checks an identifier (RFC 4314 §2): not empty, not "-"
// alone, no control character (a name that reads as another on a
// terminal or in the trail). Its case is kept: backends differ in
// folding it.
func (k *checker) aclIdentifier(id string) {
	name := strings.TrimPrefix(id, "-")
	if name == "" || strings.HasPrefix(name, "-") {
		k.fail(errACLIdentifier)
		return
	}
	for i := 0; i < len(name); i++ {
		if name[i] < ' ' || name[i] == 0x7f {
			k.fail(errACLIdentifier)
			return
		}
	}
}

// aclRights checks a SETACL's mod-rights (RFC 4314 §3.1): an optional
// "+" or "-", then rights, each a right of RFC 4314 §2.1 or of the
// backend's RIGHTS= (ctx.Names.Rights) and each once: a letter the proxy
// does not know, an upper-case one or a repeated one is read
// differently by servers (refused, ignored, mapped), so it is refused.
func (k *checker) aclRights(mod string) {
	r := mod
	if r != "" && (r[0] == '+' || r[0] == '-') {
		r = r[1:]
	}
	known := standardRights
	if n := k.ctx.Names; n != nil {
		known |= n.Rights
	}
	var seen RightSet
	for i := 0; i < len(r); i++ {
		b := rightBit(r[i])
		if b == 0 || b&known == 0 || b&seen != 0 {
			k.fail(errACLRights)
			return
		}
		seen |= b
	}
}
