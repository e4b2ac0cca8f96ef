package main

import (
	"strings"
	"testing"
)

// TestOAuth2ClaimWarnings: the claims that name a user only on some
// issuers are said at load: allow_unverified_email (email without
// email_verified) and preferred_username warn; allow_unverified_email
// with another claim means nothing and is refused.
func TestOAuth2ClaimWarnings(t *testing.T) {
	for _, tc := range []struct {
		claim   string
		allow   bool
		warnKey string
		problem bool
	}{
		{"email", false, "", false},
		{"sub", false, "", false},
		{"email", true, "k.allow_unverified_email", false},
		{"preferred_username", false, "k.user_claim", false},
		{"sub", true, "", true},
	} {
		var p problems
		var warned []string
		v := buildOAuth2(&p, "k", &oauth2AuthConfig{Issuer: "https://sso.example.com/", Audience: "imap", UserClaim: tc.claim, AllowUnverifiedEmail: tc.allow},
			func(key, format string, args ...any) { warned = append(warned, key) })
		if v != nil {
			v.Close()
		}
		if got := strings.Join(warned, ","); got != tc.warnKey {
			t.Errorf("%s allow=%v: warned %q, want %q", tc.claim, tc.allow, got, tc.warnKey)
		}
		if (len(p) > 0) != tc.problem {
			t.Errorf("%s allow=%v: problems %v", tc.claim, tc.allow, p)
		}
	}
}
