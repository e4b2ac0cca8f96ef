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
	dir := t.TempDir()
	tlsFiles(t, dir)
	groups := filepath.Join(dir, "groups.yaml")
	if err := os.WriteFile(groups, []byte("contractors: [kate]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	shipped, err := filepath.Abs(filepath.Join("..", "..", "policies"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfig([]byte(testConfig(dir) + `
policy:
  dirs: [{path: ` + shipped + `}]
  groups_file: ` + groups + `
rate_limits:
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
	open := func(user, addr string) proxy.LimitResult {
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
