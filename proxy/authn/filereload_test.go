package authn

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/proxy"
)

// TestFileReloadFailureRefusesEveryLogin: a changed users file that does
// not load refuses every login through the authenticator, the user the
// edit kept as much as the one it removed, and says so once through
// OnReload; the file loading again restores the logins it lists.
func TestFileReloadFailureRefusesEveryLogin(t *testing.T) {
	hash, err := HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "users")
	write := func(content string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	write("alice:"+hash+"\nbob:"+hash+"\n", 0o600)
	f, err := NewFile(FileOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	var reports []error
	f.OnReload(func(p string, err error) {
		if p != path {
			t.Errorf("reported %s", p)
		}
		reports = append(reports, err)
	})
	login := func(user string) error {
		f.mu.Lock()
		f.checked = time.Time{} // the next Verify looks at the file
		f.mu.Unlock()
		_, err := f.Verify(context.Background(), &proxy.Credentials{Mechanism: "PLAIN", User: user, Password: "pw"})
		return err
	}
	for name, bad := range map[string]struct {
		content string
		mode    os.FileMode
	}{
		"unparsable": {"# alice revoked\nbob:" + hash + "\ncarol:{SSHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", 0o600},
		"readable":   {"bob:" + hash + "\n", 0o644},
	} {
		reports = nil
		write(bad.content, bad.mode)
		for _, u := range []string{"alice", "bob", "alice"} {
			err := login(u)
			if err == nil || errors.Is(err, proxy.ErrAuthFailed) || !strings.Contains(err.Error(), path) {
				t.Errorf("%s: %s logs in through a users file not in force, or is told a failed login: %v", name, u, err)
			}
		}
		if len(reports) != 1 || reports[0] == nil {
			t.Errorf("%s: reported %v, want one error", name, reports)
		}
		reports = nil
		write("bob:"+hash+"\n", 0o600)
		if err := login("bob"); err != nil {
			t.Errorf("%s: fixed, bob: %v", name, err)
		}
		if err := login("alice"); !errors.Is(err, ErrUnknownUser) {
			t.Errorf("%s: fixed without alice, alice: %v", name, err)
		}
		if len(reports) != 1 || reports[0] != nil {
			t.Errorf("%s: fixed, reported %v, want one nil", name, reports)
		}
		write("alice:"+hash+"\nbob:"+hash+"\n", 0o600)
		if err := login("alice"); err != nil {
			t.Fatal(err)
		}
	}
}
