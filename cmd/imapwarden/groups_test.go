package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/proxy"
)

// TestGroupLimitsFollowEngineAcrossReload: after a SIGHUP that loads a new
// policy engine, group_limits read that engine's groups, and follow its
// later re-reads of the groups file (ARCHITECTURE.md §12).
func TestGroupLimitsFollowEngineAcrossReload(t *testing.T) {
	dir := t.TempDir()
	tlsFiles(t, dir)
	groups := filepath.Join(dir, "groups.yaml")
	members := func(m string) {
		t.Helper()
		if err := os.WriteFile(groups, []byte("contractors: ["+m+"]\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	shipped, err := filepath.Abs(filepath.Join("..", "..", "policies"))
	if err != nil {
		t.Fatal(err)
	}
	conf := func(cacheSize int) *fileConfig {
		t.Helper()
		cfg, err := parseConfig([]byte(testConfig(dir) + fmt.Sprintf(`
policy: {dirs: [{path: %s}], groups_file: %s, poll_interval: -1s, cache_size: %d}
rate_limits:
  sessions_per_user: 30
  group_limits: {contractors: {sessions_per_user: 1}}
`, shipped, groups, cacheSize)))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	log := zap.NewNop()
	members("bob")
	s, err := build(conf(100), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	srv, _, as := reloadTarget(t, s, log)

	members("bob, kate")
	old := s.engine
	ns, err := check(conf(200), log)
	if err != nil {
		t.Fatal(err)
	}
	if err := applyReload(s, ns, srv, as, log); err != nil {
		t.Fatal(err)
	}
	if s.engine == old {
		t.Fatal("the changed policy section kept the engine: the test proves nothing")
	}
	open := func(user, addr string) proxy.LimitResult { return openSession(t, s, user, addr) }
	if res := open("kate", "192.0.2.1:1000"); res.Exceeded {
		t.Fatalf("kate's first session refused: %+v", res)
	}
	if res := open("Kate", "192.0.2.2:1000"); !res.Exceeded {
		t.Fatal("kate, a contractor in the reloaded engine's groups, got a second session")
	}
	members("bob")
	if err := s.engine.Reload(); err != nil {
		t.Fatal(err)
	}
	if res := open("kate", "192.0.2.3:1000"); res.Exceeded {
		t.Fatalf("kate, no longer a contractor, refused a second session: %+v", res)
	}
}
