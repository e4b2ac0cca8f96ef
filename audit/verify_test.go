package audit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeTrail writes n command records into a file trail and returns the
// trail's files (the active one last) and all lines in chain order.
func writeTrail(t *testing.T, n int, fo FileOptions) ([]string, []string) {
	t.Helper()
	if fo.Path == "" {
		fo.Path = filepath.Join(t.TempDir(), "audit.jsonl")
	}
	fs, err := OpenFile(fo)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(Options{Sink: fs})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		logWritten(t, tr, cmdRecord(i))
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := Files(fo.Path)
	var lines []string
	for _, f := range files {
		b, _ := os.ReadFile(f)
		lines = append(lines, strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")...)
	}
	return files, lines
}

// logWritten logs r and waits until it is written: one record a batch,
// so that size rotation happens at every record boundary.
func logWritten(t *testing.T, tr *Trail, r *Record) {
	t.Helper()
	want := tr.Stats().LastSeq + 1
	if err := tr.Log(r); err != nil {
		t.Fatal(err)
	}
	for tr.Stats().LastSeq < want {
		time.Sleep(50 * time.Microsecond)
	}
}

// tampered writes lines to a new file and verifies it.
func tampered(t *testing.T, lines []string, tail string) *Report {
	t.Helper()
	p := filepath.Join(t.TempDir(), "t.jsonl")
	os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"+tail), 0o600)
	rep, err := Verify([]string{p}, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestVerifyDetectsTampering(t *testing.T) {
	_, lines := writeTrail(t, 10, FileOptions{})
	if len(lines) != 12 {
		t.Fatalf("%d lines", len(lines))
	}
	edit := func(i int, f func(string) string) []string {
		out := append([]string(nil), lines...)
		out[i] = f(out[i])
		return out
	}
	remove := func(i int) []string {
		return append(append([]string(nil), lines[:i]...), lines[i+1:]...)
	}
	swap := func(i int) []string {
		out := append([]string(nil), lines...)
		out[i], out[i+1] = out[i+1], out[i]
		return out
	}
	for _, tc := range []struct {
		name  string
		lines []string
		tail  string
		kind  BreakKind
		line  int
		msg   string
	}{
		{"edited user", edit(4, func(s string) string { return strings.Replace(s, `"user":"alice"`, `"user":"mallory"`, 1) }), "",
			BreakEdited, 6, "previous record (" /* line 5 */},
		{"edited result", edit(4, func(s string) string { return strings.Replace(s, `"result":"OK"`, `"result":"NO"`, 1) }), "",
			BreakEdited, 6, ":5, seq 5) was changed"},
		{"edited last line", edit(11, func(s string) string { return strings.Replace(s, `"count":12`, `"count":11`, 1) }), "",
			// Nothing follows the last record: only its own prev is checked.
			"", 0, ""},
		{"broken JSON", edit(3, func(s string) string { return s[:len(s)-1] }), "", BreakCorrupt, 4, "not a valid record"},
		{"removed", remove(5), "", BreakRemoved, 6, "seq jumps from 5 to 7: 1 records are missing"},
		{"removed first", remove(0), "", "", 0, ""},
		{"reordered", swap(5), "", BreakReordered, 6, "seq 6 is at"},
		// Exact copies change nothing recorded (a syslog retry sends some
		// twice): noted, not a break (see TestVerifySyslogCopies).
		{"duplicated", append(append([]string(nil), lines[:6]...), lines[3:]...), "", "", 0, ""},
		{"copied and changed", append(append(append([]string(nil), lines[:6]...), strings.Replace(lines[3], "alice", "bob", 1)), lines[6:]...), "",
			BreakReordered, 7, "seq 4 comes after seq 6"},
		{"torn last line", lines, lines[0][:40], BreakTruncated, 13, "the 12 records before it are intact"},
		{"zeros at the end", lines, "\x00\x00\x00\x00", BreakTruncated, 13, "zero bytes"},
		{"first record's prev", edit(0, func(s string) string { return strings.Replace(s, `"prev":"0`, `"prev":"1`, 1) }), "",
			BreakEdited, 1, "does not start from zero"},
		{"forged prev", edit(5, func(s string) string {
			i := strings.Index(s, `"prev":"`) + len(`"prev":"`)
			c := "0"
			if s[i] == '0' {
				c = "1"
			}
			return s[:i] + c + s[i+1:]
		}), "",
			BreakEdited, 6, "or this record's prev was altered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := tampered(t, tc.lines, tc.tail)
			if tc.kind == "" {
				if rep.Break != nil {
					t.Fatalf("unexpected break %v", rep.Break)
				}
				return
			}
			if rep.Break == nil {
				t.Fatal("not detected")
			}
			b := rep.Break
			if b.Kind != tc.kind || b.Line != tc.line || !strings.Contains(b.Msg, tc.msg) {
				t.Errorf("got %v\nwant %s at line %d with %q", b, tc.kind, tc.line, tc.msg)
			}
		})
	}
}

func TestVerifyAcrossFiles(t *testing.T) {
	files, _ := writeTrail(t, 100, FileOptions{MaxSize: 2000})
	if len(files) < 3 {
		t.Fatalf("files %v", files)
	}
	rep := mustVerify(t, files, VerifyOptions{})
	if rep.Records != 102 || rep.FirstSeq != 1 || rep.LastSeq != 102 {
		t.Errorf("report %+v", rep)
	}
	// A rotated file in the middle is missing.
	missing := append(append([]string(nil), files[:1]...), files[2:]...)
	rep, _ = Verify(missing, VerifyOptions{})
	if rep.Break == nil || rep.Break.Kind != BreakRemoved || !strings.Contains(rep.Break.Msg, "is a rotated file missing?") {
		t.Errorf("missing middle file: %v", rep.Break)
	}
	// Old files removed by retention: the chain starts later; a note.
	rep = mustVerify(t, files[1:], VerifyOptions{})
	if len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "chain starts at seq") {
		t.Errorf("notes %q", rep.Notes)
	}
	// The newest file is gone: the audit.stop is missing; a note.
	rep = mustVerify(t, files[:len(files)-1], VerifyOptions{})
	if len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "without an audit.stop") {
		t.Errorf("notes %q", rep.Notes)
	}
	// A torn line is truncation only at the very end of the chain.
	b, _ := os.ReadFile(files[0])
	os.WriteFile(files[0], append(b, `{"ts":"20`...), 0o600)
	rep, _ = Verify(files, VerifyOptions{})
	if rep.Break == nil || rep.Break.Kind != BreakCorrupt || rep.Break.File != files[0] {
		t.Errorf("torn line inside the chain: %v", rep.Break)
	}
}

func TestVerifySyslogCopies(t *testing.T) {
	_, lines := writeTrail(t, 5, FileOptions{})
	var out []string
	for i, l := range lines {
		out = append(out, "<134>1 2026-01-02T03:04:05.000006Z host imapwarden 77 command - "+l)
		if i == 3 {
			out = append(out, "Jan  2 03:04:05 host sshd[1]: Accepted publickey for root")
			out = append(out, "<134>1 2026-01-02T03:04:05.000006Z host imapwarden 77 command - "+l) // sent twice
		}
	}
	rep := tampered(t, out, "")
	if rep.Break != nil || rep.Records != 7 {
		t.Fatalf("syslog copy: %v, %d records", rep.Break, rep.Records)
	}
	notes := strings.Join(rep.Notes, "\n")
	if !strings.Contains(notes, "repeats record seq 4") || !strings.Contains(notes, "1 lines that are not records") {
		t.Errorf("notes:\n%s", notes)
	}
}

func TestVerifyNewChainIsNoted(t *testing.T) {
	a := &memSink{}
	tr, _ := New(Options{Sink: a})
	tr.Log(cmdRecord(1))
	tr.Close()
	tr, _ = New(Options{Sink: a}) // a stdout sink: no resume
	tr.Close()
	rep := mustVerify(t, []string{a.save(t)}, VerifyOptions{})
	if len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "a new chain starts") {
		t.Errorf("notes %q", rep.Notes)
	}
}

func TestReportText(t *testing.T) {
	_, lines := writeTrail(t, 3, FileOptions{})
	var b strings.Builder
	tampered(t, lines, "").WriteText(&b)
	if !strings.HasPrefix(b.String(), "OK: 5 records, seq 1 to 5, chain intact (sha256)\n") {
		t.Errorf("report:\n%s", b.String())
	}
	b.Reset()
	tampered(t, lines[:2], lines[2][:10]).WriteText(&b)
	if !strings.HasPrefix(b.String(), "TRUNCATED: ") || !strings.Contains(b.String(), ":3: truncated: an incomplete last line (10 bytes)") {
		t.Errorf("report:\n%s", b.String())
	}
}

func writeLines(t *testing.T, path string, lines []string, tail string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"+tail), 0o600); err != nil {
		t.Fatal(err)
	}
}
