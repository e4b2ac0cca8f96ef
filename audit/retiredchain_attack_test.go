package audit

import (
	"path/filepath"
	"testing"
)

// TestAttackRetiredKeyStartsChainAfterCurrent (atk-msgid): the fix of
// TestAttackRetiredKeyRewritesCurrentChain makes a retired key's record a
// key break inside the current key's chain, but a holder of the retired
// key need not sign inside it: it cuts the current chain after the record
// it wants to keep and appends a chain of its own (seq 1, audit.start,
// zero link) signed with the retired key, saying what it likes. Verify
// with the trail's keys (-key OLD -key NEW) exits 0 with a note ("a new
// chain starts"), the same note a restarted stdout sink leaves, so the
// retired key still writes records that verify as the trail's. A chain of
// the retired key after the current key's chain has no honest writer: the
// writer with the new key never starts a chain with the old one.
func TestAttackRetiredKeyStartsChainAfterCurrent(t *testing.T) {
	oldKey := []byte("retired-key-0123456789abcdef")
	oldPath := filepath.Join(t.TempDir(), "audit.jsonl")
	writeWith := func(path string, key []byte, user string, n int) {
		fs, err := OpenFile(FileOptions{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		tr, err := New(Options{Sink: fs, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			r := cmdRecord(i)
			r.User = user
			logWritten(t, tr, r)
		}
		tr.Close()
	}
	writeWith(oldPath, oldKey, "alice", 3) // the history, retired key
	_, lines := keyedTrail(t, 4)           // the current chain, testKey()
	keys := [][]byte{oldKey, testKey()}

	// The forger keeps the current chain up to its second command and
	// appends a chain of the retired key in which bob did the rest.
	forgedTail := filepath.Join(t.TempDir(), "audit.jsonl")
	writeWith(forgedTail, oldKey, "bob", 2)
	forged := writeTemp(t, append(lines[:3:3], readLines(t, forgedTail)...))
	mustBreak(t, []string{oldPath, forged}, VerifyOptions{Keys: keys},
		"the current key's chain was cut and a chain signed with the retired key appended, and verify with both keys exits 0")
}
