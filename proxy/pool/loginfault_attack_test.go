package pool

import (
	"testing"

	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/proxy"
)

// A login the backend refuses by closing is counted against the server's
// health (Pool.Result: every error but errBackendAuth is a passive
// failure), and Fall (3) in a row take the server down for every user.
// What the backend does with a login is the client's to choose: Dovecot's
// login process holds 4 KiB of input, so a LOGIN with a 9,000-byte
// password, which the proxy accepts before login (max_preauth_command_bytes
// 64 KiB) and replays, is answered "* BYE Input buffer full" (LOGIN) or a
// silent close (AUTHENTICATE PLAIN with SASL-IR, what LoginAuto sends).
// Such a login is not even a failed login for the lockouts (fail, not
// failed): an unauthenticated client takes every server of a pool down,
// again each time the checks bring it back.
func TestAttackUnauthenticatedLoginTakesServerDown(t *testing.T) {
	dovecottest.Require(t)
	dc := dovecottest.Start(t, dovecottest.Options{})
	// The attacker: no valid credential, a long password, a few
	// connections at once.
	answers, events, addr := longLogins(t, dc, proxy.LoginAuto)
	t.Logf("the attacker's logins were answered %q", answers)
	if e, _, ok := events.find(0, "d0", Down); ok {
		t.Errorf("an unauthenticated client's logins took server d0 down: %s", e.Err)
	}
	// Alice, with her password, right after.
	aliceLogsIn(t, addr)
}
