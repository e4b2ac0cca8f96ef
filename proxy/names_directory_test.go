package proxy

import "testing"

// A directory behind a backend that verifies the login (Dovecot
// or Cyrus with an LDAP passdb, auth_username_chars emptied for Unicode
// names) prepares the assertion value before caseIgnoreMatch (RFC 4518
// §2.2 maps SOFT HYPHEN, ZERO WIDTH SPACE, the bidi controls U+202A-202E
// and U+FEFF to nothing; §2.3 normalises with NFKC, so fullwidth letters
// and NFD spellings are the NFC name). Each spelling below is therefore
// the entry "alice" (or "élise") to the directory, while FoldUser keeps
// it apart: a fresh lockout counter for alice's password and a policy
// identity the policy's rules for alice do not name. The proxy's own LDAP
// authenticator is covered by ldap.ownName; the backend-verified path
// only by nameProblem, which lets them through.
func TestLoginNameDirectoryPreparation(t *testing.T) {
	for _, c := range []struct{ name, reads string }{
		{"ali\u00adce", "alice"},      // SOFT HYPHEN
		{"ali\u200bce", "alice"},      // ZERO WIDTH SPACE
		{"alice\ufeff", "alice"},      // BOM / ZWNBSP
		{"al\u202eice", "alice"},      // RIGHT-TO-LEFT OVERRIDE
		{"\uff41lice", "alice"},       // FULLWIDTH LATIN SMALL LETTER A (NFKC)
		{"e\u0301lise", "\u00e9lise"}, // NFD of élise
	} {
		if FoldUser(c.name) == FoldUser(c.reads) {
			continue // one counter, one policy identity: no second reading
		}
		if p := nameProblem(c.name, DefaultUserSeparators); p == "" {
			t.Errorf("%q (%+q) is %q to an LDAP directory (RFC 4518 §2), a different user to the Limiter and the policy, and is not refused", c.name, c.name, c.reads)
		}
	}
}
