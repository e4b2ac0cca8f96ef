package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/proxy"
)

// TestAttackGroupLimitsFollowLoginSpelling: the groups file's members are
// folded (policy.LoadGroups lower-cases them, and the policy input looks
// users up so), and the Limiter's keys are folded (ARCHITECTURE.md §17:
// one name per login), so "KATE" is kate for the session count. Her
// group's limits must then hold for "KATE" too: a contractor limited to
// one session must not get a second by typing her name in capitals (the
// backend authenticator keeps the spelling typed; Dovecot's default
// auth_username_format %Lu logs "KATE" in as kate).
func TestAttackGroupLimitsFollowLoginSpelling(t *testing.T) {
	s, _ := contractorSetup(t, "contractors: [kate]\n", "")
	open := func(user, addr string) proxy.LimitResult { return openSession(t, s, user, addr) }
	if res := open("kate", "192.0.2.1:1000"); res.Exceeded {
		t.Fatalf("kate's first session refused: %+v", res)
	}
	if res := open("kate", "192.0.2.2:1000"); !res.Exceeded {
		t.Fatal("the group limit does not hold at all: the test proves nothing")
	}
	if res := open("KATE", "192.0.2.3:1000"); !res.Exceeded {
		t.Fatalf("a contractor limited to one session got a second as \"KATE\": group_limits looked up by the spelling typed (%+v)", res)
	}
}

// TestAttackGroupLimitsFollowGroupsFileChange: the policy engine re-reads
// policy.groups_file when it changes (poll_interval: "files checked for
// changes"), so input.session.groups follows an edit at once; the limiter's
// group_limits are read from the same file and must follow it too, not
// keep the groups of the last SIGHUP. A user moved into a group limited to
// one session gets one, as the policies already treat her as in it.
func TestAttackGroupLimitsFollowGroupsFileChange(t *testing.T) {
	s, groups := contractorSetup(t, "contractors: [bob]\n", "  poll_interval: -1s\n")
	before := s.engine.Revision()
	// kate joins the contractors; the engine's poll reloads the file.
	if err := os.WriteFile(groups, []byte("contractors: [bob, kate]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.engine.Reload(); err != nil {
		t.Fatal(err)
	}
	if s.engine.Revision() == before {
		t.Fatal("the engine did not take the new groups file: the test proves nothing")
	}
	open := func(user, addr string) proxy.LimitResult { return openSession(t, s, user, addr) }
	if res := open("kate", "192.0.2.1:1000"); res.Exceeded {
		t.Fatalf("kate's first session refused: %+v", res)
	}
	if res := open("kate", "192.0.2.2:1000"); !res.Exceeded {
		t.Fatal("kate, a contractor for the policies since the groups file changed, got a second session: the limiter keeps the groups of the last SIGHUP")
	}
}

// contractorSetup builds a configuration with the shipped policies, a
// groups file holding members, and contractors limited to one session
// (the others to 30). policyExtra is more of the policy section.
func contractorSetup(t *testing.T, members, policyExtra string) (*setup, string) {
	t.Helper()
	dir := t.TempDir()
	tlsFiles(t, dir)
	groups := filepath.Join(dir, "groups.yaml")
	if err := os.WriteFile(groups, []byte(members), 0o600); err != nil {
		t.Fatal(err)
	}
	shipped, err := filepath.Abs(filepath.Join("..", "..", "policies"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfig([]byte(testConfig(dir) + `
policy:
  dirs: [{path: ` + shipped + `}]
  groups_file: ` + groups + "\n" + policyExtra + `rate_limits:
  sessions_per_user: 30
  group_limits: {contractors: {sessions_per_user: 1}}
`))
	if err != nil {
		t.Fatal(err)
	}
	s, err := build(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	return s, groups
}

// openSession connects as user from addr and starts a session with the
// Limiter, released at the test's end; it returns the session's result.
func openSession(t *testing.T, s *setup, user, addr string) proxy.LimitResult {
	t.Helper()
	info := &proxy.SessionInfo{User: user, ClientAddr: netip.MustParseAddrPort(addr)}
	res, conn := s.limiter.Connect(info)
	if res.Exceeded {
		t.Fatalf("connect %s: %+v", user, res)
	}
	t.Cleanup(conn.Release)
	res, release := conn.Session()
	if release != nil {
		t.Cleanup(release)
	}
	return res
}
