package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"
)

// A key is retired because it may have leaked; verifying the whole
// history still needs it (-key OLD -key NEW: "repeat for keys used over
// time"). A writer signs a chain with one key from its audit.start on
// (New refuses to resume a trail its key did not sign), so a chain whose
// records change key part-way was not written by the proxy. Here someone
// holding only the retired key edits a record of the current chain
// (another user, another mailbox) and signs it and every later record
// again with the retired key: verify must not call that trail intact.
func TestAttackRetiredKeyRewritesCurrentChain(t *testing.T) {
	oldKey := []byte("retired-key-0123456789abcdef")
	oldPath := filepath.Join(t.TempDir(), "audit.jsonl")
	fs, err := OpenFile(FileOptions{Path: oldPath})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(Options{Sink: fs, Key: oldKey})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		logWritten(t, tr, cmdRecord(i))
	}
	tr.Close()

	newPath, lines := keyedTrail(t, 4) // the current chain, testKey()
	keys := [][]byte{oldKey, testKey()}
	files := []string{oldPath, newPath}
	mustVerify(t, files, VerifyOptions{Keys: keys})

	// lines: audit.start, 4 commands, audit.stop. Rewrite the third
	// command and sign it and what follows with the retired key.
	const edit = 3
	if !strings.Contains(lines[edit], `"user":"alice"`) {
		t.Fatalf("line %d is not alice's command: %s", edit, lines[edit])
	}
	lines[edit] = strings.Replace(lines[edit], `"user":"alice"`, `"user":"bob"`, 1)
	resign(t, lines, edit, oldKey)
	forged := writeTemp(t, lines)
	mustBreak(t, []string{oldPath, forged}, VerifyOptions{Keys: keys},
		"records %d to %d of a chain signed with the current key were rewritten and signed with the retired one, and verify with both keys exits 0", edit+1, len(lines))
}

// resign signs lines[from:] again with key, each linked to the sig of
// the one before it.
func resign(t *testing.T, lines []string, from int, key []byte) {
	t.Helper()
	_, prevSig := splitSig([]byte(lines[from-1]))
	link := string(prevSig)
	for i := from; i < len(lines); i++ {
		body, sig := splitSig([]byte(lines[i]))
		if sig == nil {
			t.Fatalf("line %d not signed: %s", i, lines[i])
		}
		b := string(body)
		j := strings.Index(b, `,"hmac":"`)
		if j < 0 {
			t.Fatalf("line %d has no hmac link: %s", i, b)
		}
		j += len(`,"hmac":"`)
		b = b[:j] + link + b[j+2*sha256.Size:]
		m := hmac.New(sha256.New, key)
		m.Write([]byte(b))
		link = hex.EncodeToString(m.Sum(nil))
		lines[i] = b + `,"sig":"` + link + `"}`
	}
}

// TestVerifyKeyPerChain: trails that span keys legitimately still
// verify: a file trail restarted with its key resumes its chain, and a
// writer with a new key starts a new chain (seq 1) in the same stream;
// a record of that chain signed with the old key is a key break, named.
func TestVerifyKeyPerChain(t *testing.T) {
	oldKey, newKey := []byte("retired-key-0123456789abcdef"), testKey()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	for range 2 { // a start, and a restart that resumes the chain
		fs, err := OpenFile(FileOptions{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		tr, err := New(Options{Sink: fs, Key: oldKey})
		if err != nil {
			t.Fatal(err)
		}
		logWritten(t, tr, cmdRecord(1))
		tr.Close()
	}
	stream := &memSink{}
	for _, k := range [][]byte{oldKey, newKey} { // a stdout sink, its key changed
		tr, err := New(Options{Sink: stream, Key: k})
		if err != nil {
			t.Fatal(err)
		}
		logWritten(t, tr, cmdRecord(2))
		tr.Close()
	}
	streamFile := stream.save(t)
	keys := [][]byte{oldKey, newKey} // oldest first
	rep := mustVerify(t, []string{path, streamFile}, VerifyOptions{Keys: keys})
	if rep.Records != 12 {
		t.Errorf("verified %d records, want 12", rep.Records)
	}

	lines := readLines(t, streamFile)
	const edit = 5 // the new-key chain: audit.start at 3, its command at 4, audit.stop at 5
	resign(t, lines, edit, oldKey)
	rep = mustBreak(t, []string{writeTemp(t, lines)}, VerifyOptions{Keys: keys}, "a chain signed with the new key ends with a record of the old one")
	if b := rep.Break; b.Kind != BreakKey || b.Line != edit+1 || !strings.Contains(b.Msg, "never changes key within a chain") {
		t.Errorf("break %v, want a key break at line %d saying the key changed within a chain", b, edit+1)
	}
}
