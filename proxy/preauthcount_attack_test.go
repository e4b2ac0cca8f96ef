package proxy

import (
	"fmt"
	"strings"
	"testing"
)

// TestAttackPreAuthCommandsAnsweredEarlyNeverEndSession: commands the
// proxy answers while reading them (a syntax error after the first
// command, a literal it refuses: "Unexpected literal", "[TOOBIG]",
// "[PRIVACYREQUIRED]") count towards max_preauth_commands, but the count
// is compared with the limit only after a command that parsed
// (frontEnd). A client that sends nothing else is never held to the
// limit: it talks before login without end, one line under each
// preauth_idle keeping its pre-login slot for good (and the unauthenticated
// count of its address), which the limit of 16 commands of 60 s each was
// to bound. Each kind of such command, sent past the limit, must end the
// session with "* BYE [LIMIT]" as a NOOP does.
func TestAttackPreAuthCommandsAnsweredEarlyNeverEndSession(t *testing.T) {
	const limit = 3
	h := newHarness(t, func(o *Options) { o.Limits.MaxPreAuthCommands = limit })
	for name, spell := range map[string]func(i int) string{
		"syntax error":       func(i int) string { return fmt.Sprintf("b%d NOOP \"unterminated\r\n", i) },
		"unexpected literal": func(i int) string { return fmt.Sprintf("b%d NOOP {1+}\r\nx\r\n", i) },
		"literal too big":    func(i int) string { return fmt.Sprintf("b%d LOGIN {99999}\r\n", i) },
	} {
		c := dialPlain(t, h.starttls)
		c.expect("* OK")
		c.transact("a1 NOOP", "a1 OK") // not the first command: no BYE for a non-IMAP peer
		answered := 0
		for i := range 4 * limit {
			c.sendRaw(spell(i))
			l := c.line()
			if strings.HasPrefix(l, "* BYE") {
				break
			}
			answered++
		}
		if answered >= limit {
			t.Errorf("%s: %d such commands answered after a NOOP with max_preauth_commands %d, session still open; want BYE [LIMIT] past the limit",
				name, answered, limit)
		}
	}
}

// TestAttackPrivacyRefusedLoginLiteralsUnbounded: a LOGIN whose user name
// is a literal, sent before STARTTLS, is refused "NO [PRIVACYREQUIRED]"
// before the "+" and counted as a failed login with a record in the trail
// (Session.readPreAuthCommand), but neither max_auth_failures nor
// max_preauth_commands is compared on that path. An unauthenticated client
// writes an auth record for every 22 bytes it sends, without end: the
// trail (fsync'd, fail-closed by default) fills at many times the
// attacker's bandwidth. Past max_auth_failures the session must end.
func TestAttackPrivacyRefusedLoginLiteralsUnbounded(t *testing.T) {
	h := newHarness(t)
	c := dialPlain(t, h.starttls)
	c.expect("* OK")
	const sent = 200
	answered := 0
	for i := range sent {
		c.sendRaw(fmt.Sprintf("b%d LOGIN {5}\r\n", i))
		l := c.line()
		if strings.HasPrefix(l, "* BYE") {
			break
		}
		if !strings.Contains(l, "PRIVACYREQUIRED") {
			t.Fatalf("got %q", l)
		}
		answered++
	}
	h.audit.mu.Lock()
	records := len(h.audit.auths)
	h.audit.mu.Unlock()
	if answered > DefaultMaxAuthFailures {
		t.Errorf("%d LOGIN literals refused PRIVACYREQUIRED on one connection, %d auth records, no BYE; want BYE after max_auth_failures (%d)",
			answered, records, DefaultMaxAuthFailures)
	}
}
