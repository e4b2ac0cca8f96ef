package audit

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
)

// The proxy lower-cases an ID's field names (strings.ToLower) and writes
// them as the keys of client_id; the readers compare keys with
// bytes.EqualFold, under which "s" and U+017F (both lower case) are one
// key. A record the writer itself wrote then has "no reading": when it is
// the last line of the trail (the proxy was killed after an
// unauthenticated client's failed login, before audit.stop), the next
// start refuses to continue the chain, and the proxy does not start until
// an operator moves the trail aside.
func TestAttackResumeAfterFoldedClientIDKeys(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	fs, err := OpenFile(FileOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(Options{Sink: fs, Logger: zap.NewNop(), Software: "test", SyncInterval: SyncAlways})
	if err != nil {
		t.Fatal(err)
	}
	// As the proxy records an ID ("s" "one" "ſ" "two") and a failed LOGIN.
	r := &Record{Time: time.Now(), Kind: KindAuth, Session: "S1", User: "mallory", Mechanism: "LOGIN",
		Attempt: 1, Result: "failure", Reason: "credentials", ClientID: map[string]string{"s": "one", "\u017f": "two"}}
	if err := tr.LogWait(r, time.Minute); err != nil {
		t.Fatal(err)
	}
	// The process is killed here: what the file holds now is what a
	// restart finds (no audit.stop after it).
	killed, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tr.Close()
	path2 := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := os.WriteFile(path2, killed, 0o600); err != nil {
		t.Fatal(err)
	}
	fs2, err := OpenFile(FileOptions{Path: path2})
	if err != nil {
		t.Fatal(err)
	}
	tr2, err := New(Options{Sink: fs2, Logger: zap.NewNop(), Software: "test"})
	if err != nil {
		fs2.Close()
		t.Fatalf("restart after a record the writer wrote itself: %v", err)
	}
	tr2.Close()
}
