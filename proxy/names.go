package proxy

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/imapwarden/imapwarden/internal/termsafe"
)

// One name per login (ARCHITECTURE.md §17): the name the policies, the
// router, the Limiter and the audit read must be the user the
// authenticator or the backend checks. The proxy refuses login names that
// some component would read as another name, and compares names with one
// equivalence, FoldUser.

// DefaultUserSeparators are what a backend may read in a login name as
// "user<sep>master" or another authorization split when Options.
// UserSeparators is nil: Dovecot's auth_master_user_separator is "*" in
// its documentation and in most deployments.
var DefaultUserSeparators = []string{"*"}

// FoldUser is the one equivalence of user names: the Limiter's keys, the
// policy's user lists (strings.ToLower too), the file authenticator's
// lookup and the check that an authenticator verified the name typed all
// fold with it. It is a Unicode lower-casing (KELVIN SIGN U+212A is "k"),
// so it is at least as wide as the ASCII folding of backends.
func FoldUser(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf || 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// SameUser reports whether a and b are one user under FoldUser.
func SameUser(a, b string) bool { return a == b || FoldUser(a) == FoldUser(b) }

// nameProblem says why a login name has more than one reading, or "":
// what is not valid UTF-8 (FoldUser would map every invalid byte to
// U+FFFD), control characters (LDAP maps them to nothing or to a space,
// RFC 4518 §2.2), leading, trailing or repeated spaces (insignificant to
// LDAP's caseIgnoreMatch, RFC 4518 §2.6.1), format and ignorable
// characters (mapped to nothing, §2.2: SOFT HYPHEN, ZERO WIDTH SPACE, the
// bidi controls), names NFKC changes (§2.3), and a backend's user
// separator ("rouser*master" is rouser to Dovecot, with master rights).
func nameProblem(name string, seps []string) string {
	if !utf8.ValidString(name) {
		return "not valid UTF-8"
	}
	for i, r := range name {
		switch {
		case r < 0x20 || r == 0x7f || 0x80 <= r && r < 0xa0:
			return "control character"
		case r == ' ' && (i == 0 || i == len(name)-1 || name[i-1] == ' '):
			return "leading, trailing or repeated space"
		case termsafe.Hidden(r):
			return "format or ignorable character"
		}
	}
	if !norm.NFKC.IsNormalString(name) {
		// Fullwidth letters, ligatures, decomposed accents: the NFKC
		// name to a directory (RFC 4518 §2.3), another to FoldUser.
		return "not in Unicode normalization form NFKC"
	}
	for _, sep := range seps {
		if sep != "" && strings.Contains(name, sep) {
			return "contains the backend user separator " + sep
		}
	}
	return ""
}

// userSeparators is the set in force: Dynamic.UserSeparators, or the
// default when it was never set.
func (d *Dynamic) userSeparators() []string {
	if d.UserSeparators == nil {
		return DefaultUserSeparators
	}
	return d.UserSeparators
}
