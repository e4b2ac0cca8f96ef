package ratelimit

import (
	"strings"
	"testing"
)

// TestAttackListedLockoutCannotBeLifted: a lockout lists its user cut to
// 128 bytes (label, maxLabel), but Unlock keys the user by the whole
// name, so the name the listing shows, the one the console's Unlock
// button posts (console.html sends the row's user), lifts nothing: "0
// removed" and the user stays locked out. A login of up to
// max_credential_bytes (480) carries such a name (a long address at a
// long domain). A lockout the operator sees must be one the operator can
// lift by what is shown.
func TestAttackListedLockoutCannotBeLifted(t *testing.T) {
	forEachStore(t, func(t *testing.T, newTest newFunc) {
		l, _ := newTest(t, func(o *Options) {
			o.LoginFailuresPerUser = 3
			o.LoginFailuresPerUserIP = 100
			o.LoginFailuresPerIP = 100
		})
		user := "maria.del.carmen.fernandez-de-la-concepcion.rodriguez-villanueva" + "@" +
			strings.Repeat("research-department.", 4) + "university.example.org"
		if len(user) <= 128 {
			t.Fatalf("user %d bytes", len(user))
		}
		for _, ip := range []string{"192.0.2.1", "198.51.100.1", "203.0.113.1"} {
			fail(t, l, ip, user)
		}
		r, _ := fail(t, l, "192.0.2.1", user)
		wantExceeded(t, r, "login_failures_per_user", "user", "AUTHENTICATIONFAILED")

		var listed string
		for _, lo := range mustLockouts(t, l) {
			if lo.Kind == "user" {
				listed = lo.User
			}
		}
		if listed == "" {
			t.Fatalf("no user lockout listed: %+v", mustLockouts(t, l))
		}
		n, err := l.Unlock(t.Context(), listed, "")
		if err != nil {
			t.Fatal(err)
		}
		s, rc := connect(t, l, "192.0.2.1")
		defer rc()
		if r := l.Login(s, user); r.Exceeded {
			t.Errorf("unlock of the listed user %q (%d bytes) removed %d records; the %d-byte user is still locked out (%s)",
				listed, len(listed), n, len(user), r.Limit)
		}
	})
}
