package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/internal/dovecottest"
)

// TestAttackGroupLimitsEscapedByCase: rate_limits.group_limits reads the
// user's groups from policy.groups_file, whose names LoadGroups
// lower-cases, by the session's user as typed (buildRateLimits:
// groups[user]). bob, a contractor limited to one session, logs in a
// second time as "BOB": Dovecot opens bob's mailbox, the policy reads bob's
// groups (input.session.groups lower-cases), but the Limiter finds no
// group for "BOB" and applies the defaults. Any group limit (the
// contractors' fetch cap, their command rates) goes the same way.
func TestAttackGroupLimitsEscapedByCase(t *testing.T) {
	dovecottest.Require(t)
	dc := dovecottest.Start(t, dovecottest.Options{})
	tmp := t.TempDir()
	pol := frameworkPolicyDir(t, tmp)
	groups := filepath.Join(tmp, "groups.yaml")
	os.WriteFile(groups, []byte("contractors: [bob]\n"), 0o644)
	p := startAuthProxy(t, tmp, `
listeners: [{address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %[1]s, key: %[2]s}]}
backends:
  dovecot: {address: `+dc.Addr+`, security: starttls, tls: {ca_file: `+dc.CAFile+`, server_name: localhost}}
policy: {dirs: [{path: `+pol+`}], groups_file: `+groups+`}
rate_limits:
  login_failure_delay: 1ms
  group_limits: {contractors: {sessions_per_user: 1}}
audit: {path: %[3]s, fsync: always}
admin: {address: ""}
drain_timeout: 5s
`)
	first := p.session()
	first.cmd("a1", "OK", "LOGIN bob bob-pw")
	// Control: bob's second session is over his group's limit.
	c := p.session()
	c.cmd("b1", "NO", "LOGIN bob bob-pw")
	c = p.session()
	got := c.cmd("c1", "", "LOGIN BOB bob-pw")
	if last := got[len(got)-1]; strings.HasPrefix(last, "c1 OK") {
		c.cmd("c2", "OK", "SELECT INBOX")
		t.Errorf("a second session of bob (sessions_per_user 1 for contractors) as \"BOB\": %q", last)
	}
}
