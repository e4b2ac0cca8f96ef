package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/internal/testenv"
)

// TestAttackGroupsFileEditSplitsMembership: policy.groups_file is polled
// (policy.poll_interval) and the policies see an edit at once, but
// rate_limits.group_limits reads the map buildRateLimits loaded at start:
// after bob is added to "contractors" (one session), the policy treats
// him as a contractor and the Limiter does not, until a SIGHUP. Removing
// someone from a group with larger limits (a bulk-export fetch cap) does
// not take either. One file, two memberships.
func TestAttackGroupsFileEditSplitsMembership(t *testing.T) {
	dovecottest.Require(t)
	dc := dovecottest.Start(t, dovecottest.Options{})
	tmp := t.TempDir()
	pol := frameworkPolicyDir(t, tmp)
	// "probe" members are refused: it shows when the policies read the edit.
	os.WriteFile(filepath.Join(pol, "probe.rego"), []byte(`package imapwarden

deny contains {"policy": "probe", "code": "AUTHORIZATIONFAILED", "reason": "probe"} if {
	input.point == "auth"
	"probe" in input.session.groups
}
`), 0o644)
	groups := filepath.Join(tmp, "groups.yaml")
	os.WriteFile(groups, []byte("staff: [bob]\n"), 0o644)
	p := startAuthProxy(t, tmp, `
listeners: [{address: "127.0.0.1:0", mode: tls}]
tls: {certificates: [{cert: %[1]s, key: %[2]s}]}
backends:
  dovecot: {address: `+dc.Addr+`, security: starttls, tls: {ca_file: `+dc.CAFile+`, server_name: localhost}}
policy: {dirs: [{path: `+pol+`}], groups_file: `+groups+`, poll_interval: 50ms}
rate_limits:
  login_failure_delay: 1ms
  login_failures_per_user: 1000
  login_failures_per_user_ip: 1000
  login_failures_per_ip: 1000
  sessions_per_user: 1000
  group_limits: {contractors: {sessions_per_user: 1}}
audit: {path: %[3]s, fsync: always}
admin: {address: ""}
drain_timeout: 5s
`)
	p.session().cmd("a0", "OK", "LOGIN alice alice-pw")
	os.WriteFile(groups, []byte("contractors: [bob]\nprobe: [alice]\n"), 0o644)
	// Until the policies read the new file (the probe is refused).
	for deadline := time.Now().Add(testenv.IOTimeout()); ; {
		got := p.session().cmd("a1", "", "LOGIN alice alice-pw")
		if strings.HasPrefix(got[len(got)-1], "a1 NO") {
			if r := p.lastAuth("alice-pw"); r.Reason != "policy" {
				t.Fatalf("alice refused for %q, not by the probe policy", r.Reason)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the policies never read the edited groups file")
		}
	}
	first := p.session()
	first.cmd("b1", "OK", "LOGIN bob bob-pw")
	c := p.session()
	got := c.cmd("b2", "", "LOGIN bob bob-pw")
	if last := got[len(got)-1]; strings.HasPrefix(last, "b2 OK") {
		t.Errorf("bob, a contractor to the policies (sessions_per_user 1), opened a second session: the Limiter still reads the groups file as it was at start")
	}
}
