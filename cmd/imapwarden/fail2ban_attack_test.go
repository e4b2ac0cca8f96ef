package main

import (
	"fmt"
	"path/filepath"
	"testing"
)

// TestAttackFail2banBansTheVictimOfAUserLockout: the shipped filter bans
// on limit records of login_failures_per_user, whose lockout another
// address causes. The owner of an account mistypes once from the office
// (127.0.0.2); an attacker elsewhere (127.0.0.1) guesses the account's
// password until the user is locked out, which then reaches the office
// (the pair failed once, ratelimit's lockResult). The owner's mail
// clients keep retrying with the right password, each refusal a limit
// record with the office's address: the jail (maxretry 10) bans the
// office's NAT address, everyone behind it, for what an outsider did.
// Only what an address did itself (its own failures, the ip and user_ip
// lockouts) may count toward banning it.
func TestAttackFail2banBansTheVictimOfAUserLockout(t *testing.T) {
	env := newServeEnv(t)
	trail := filepath.Join(env.dir, "audit.jsonl")
	s, _, log, _ := env.buildFile(t, fmt.Sprintf(`
listeners: [{name: imaps, address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %s, key: %s}]}
backends: {mem: {address: %q, security: plain}}
routes: {default: mem}
limits: {max_auth_failures: 50}
admin: {address: ""}
rate_limits: {login_failures_per_user: 3, login_failures_per_user_ip: 5, login_failures_per_ip: 50, lockout_base: 1h, lockout_max: 2h, login_failure_delay: 1ms}
audit: {path: %q, fsync: always}
lame_duck: 0s
`, env.cert.Cert, env.cert.Key, env.backend, trail))
	addrs, _, cancel, done := serve(t, s, log, nil, nil)

	const office, attacker = "127.0.0.2", "127.0.0.1"
	dial := func(from string) (*imapConn, func()) { return dialFrom(t, addrs[0].String(), from) }

	// The owner mistypes once at the office: one failure of its own.
	c, end := dial(office)
	c.cmd("a", "NO", "LOGIN demo typo")
	end()
	// The attacker guesses from elsewhere until demo is locked out.
	c, end = dial(attacker)
	for i := range 3 {
		c.cmd(fmt.Sprintf("g%d", i), "NO", fmt.Sprintf("LOGIN demo guess%d", i))
	}
	end()
	// The owner's clients retry with the right password, as they do.
	const retries = 12
	c, end = dial(office)
	for i := range retries {
		c.cmd(fmt.Sprintf("r%d", i), "NO", `LOGIN demo "demo-password"`)
	}
	end()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	hits := shippedFilterHits(t, trail)
	t.Logf("filter matches by address: %v", hits)
	// The office did one thing wrong itself: one match at most, far
	// below the jail's maxretry.
	if hits[office] > 1 {
		t.Errorf("the filter matched %d records of the office %s, which failed once itself: its refusals during a lockout the attacker %s caused count toward banning it (the jail's maxretry is 10)",
			hits[office], office, attacker)
	}
	if hits[attacker] < 3 {
		t.Errorf("the attacker's %d guesses matched %d times", 3, hits[attacker])
	}

	// fail2ban's own engine agrees.
	if n := fail2banRegexHits(t, trail)[office]; n > 1 {
		t.Errorf("fail2ban-regex found the office %s %d times", office, n)
	}
}
