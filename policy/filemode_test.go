package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPollRefusesFilesOthersMayChange: a poll that finds a policy file,
// a policy directory or the groups file made writable by other users
// refuses them as a broken edit is refused (the policy in force stays,
// the failure is counted and names the file), and a poll after the mode
// is fixed loads them again.
func TestPollRefusesFilesOthersMayChange(t *testing.T) {
	dir := regoDir(t, map[string]string{"p.rego": allowAll})
	groups := filepath.Join(t.TempDir(), "groups.yaml")
	writeFile(t, groups, "admins: [alice]\n")
	e, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: dir}}, GroupsFile: groups, PollInterval: -1})
	rev := e.Revision()
	failures := 0
	for _, c := range []struct {
		path    string
		bad, ok os.FileMode
	}{
		{filepath.Join(dir, "p.rego"), 0o666, 0o644},
		{dir, 0o777, 0o755},
		{groups, 0o666, 0o644},
	} {
		if err := os.Chmod(c.path, c.bad); err != nil {
			t.Fatal(err)
		}
		e.pollOnce()
		failures++
		s := e.Stats()
		if s.ReloadFailures != int64(failures) || !strings.Contains(s.LastError, c.path) || e.Revision() != rev {
			t.Errorf("%s made mode %04o: stats %+v, revision %s (was %s)", c.path, c.bad, s, e.Revision(), rev)
		}
		if err := os.Chmod(c.path, c.ok); err != nil {
			t.Fatal(err)
		}
		e.pollOnce()
		if s := e.Stats(); s.LastError != "" {
			t.Errorf("%s back to %04o: %s", c.path, c.ok, s.LastError)
		}
	}
}
