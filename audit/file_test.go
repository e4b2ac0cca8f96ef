package audit

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for time rotation.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestRotateBySize(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	fs, err := OpenFile(FileOptions{Path: path, MaxSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(Options{Sink: fs})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		logWritten(t, tr, cmdRecord(i))
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := Files(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 15 || files[len(files)-1] != path {
		t.Fatalf("files %v", files)
	}
	for _, f := range files {
		fi, _ := os.Stat(f)
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v", f, fi.Mode())
		}
		if fi.Size() > 4096 {
			t.Errorf("%s: %d bytes", f, fi.Size())
		}
		if b, _ := os.ReadFile(f); !bytes.HasSuffix(b, []byte("\n")) {
			t.Errorf("%s does not end with a whole record", f)
		}
	}
	// Given in any order, the files form one chain.
	rev := append([]string(nil), files...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	rep := mustVerify(t, rev, VerifyOptions{})
	if rep.Records != 202 || len(rep.Files) != len(files) {
		t.Errorf("report: %d records in %d files", rep.Records, len(rep.Files))
	}
}

func TestFileSinkSizeLimitPerBatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.jsonl")
	fs, err := OpenFile(FileOptions{Path: path, MaxSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	line := []byte(strings.Repeat("x", 39) + "\n")
	for range 5 {
		if err := fs.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	// A batch larger than MaxSize still goes whole into one file.
	if err := fs.Write(bytes.Repeat(line, 4)); err != nil {
		t.Fatal(err)
	}
	fs.Close()
	files, _ := Files(path)
	var sizes []int64
	for _, f := range files {
		fi, _ := os.Stat(f)
		sizes = append(sizes, fi.Size())
	}
	if want := []int64{80, 80, 40, 160}; len(sizes) != len(want) || sizes[0] != 80 || sizes[1] != 80 || sizes[2] != 40 || sizes[3] != 160 {
		t.Errorf("sizes %v, want %v", sizes, want)
	}
}

func TestRotateByTime(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	clock := &fakeClock{t: time.Date(2026, 3, 1, 23, 59, 0, 0, time.UTC)}
	fs, err := OpenFile(FileOptions{Path: path, RotateEvery: 24 * time.Hour, now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Write([]byte("{}\n")); err != nil {
		t.Fatal(err)
	}
	clock.add(30 * time.Second)
	fs.Write([]byte("{}\n")) // same day
	clock.add(time.Minute)   // 2026-03-02T00:00:30
	fs.Write([]byte("{}\n"))
	fs.Close()
	files, _ := Files(path)
	if len(files) != 2 || filepath.Base(files[0]) != "audit-20260302T000030.000000000Z.jsonl" {
		t.Fatalf("files %v", files)
	}
	if b, _ := os.ReadFile(files[0]); string(b) != "{}\n{}\n" {
		t.Errorf("rotated file %q", b)
	}

	// A file last written yesterday is rotated at the first write today.
	old := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	os.Chtimes(path, old, old)
	fs, _ = OpenFile(FileOptions{Path: path, RotateEvery: 24 * time.Hour, now: clock.now})
	fs.Write([]byte("{}\n"))
	fs.Close()
	if files, _ = Files(path); len(files) != 3 {
		t.Errorf("files %v", files)
	}
}

func TestTornLineCutAtOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	fs, _ := OpenFile(FileOptions{Path: path})
	tr, _ := New(Options{Sink: fs})
	for i := range 5 {
		tr.Log(cmdRecord(i))
	}
	tr.Close()
	whole, _ := os.ReadFile(path)
	torn := `{"ts":"2026-01-01T00:00:00Z","kind":"command","v":1,"seq":8,"pr`
	os.WriteFile(path, append(bytes.Clone(whole), torn...), 0o600)

	rep, _ := Verify([]string{path}, VerifyOptions{})
	if rep.Break == nil || rep.Break.Kind != BreakTruncated || rep.Break.Line != 8 {
		t.Fatalf("torn tail: %+v", rep.Break)
	}

	fs, err := OpenFile(FileOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	last, n, _ := fs.LastRecord()
	if n != int64(len(torn)) || !bytes.HasSuffix(whole, append(last, '\n')) {
		t.Fatalf("LastRecord: %d torn bytes, last %s", n, last)
	}
	tr, err = New(Options{Sink: fs})
	if err != nil {
		t.Fatal(err)
	}
	tr.Close()
	rep = mustVerify(t, []string{path}, VerifyOptions{})
	if rep.Records != 9 {
		t.Errorf("%d records", rep.Records)
	}
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	r, _ := ParseRecord([]byte(lines[7]))
	if r.Kind != KindAuditStart || r.Torn != int64(len(torn)) {
		t.Errorf("restart record %+v", r)
	}
}

func TestResumeFromRotatedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	fs, _ := OpenFile(FileOptions{Path: path})
	tr, _ := New(Options{Sink: fs})
	tr.Log(cmdRecord(1))
	tr.Close()
	// An operator (or logrotate) moved the active file away.
	os.Rename(path, rotatedName(path, time.Now()))
	fs, _ = OpenFile(FileOptions{Path: path})
	tr, _ = New(Options{Sink: fs})
	tr.Close()
	files, _ := Files(path)
	rep := mustVerify(t, files, VerifyOptions{})
	if rep.Records != 5 || len(rep.Files) != 2 {
		t.Errorf("%d records in %d files", rep.Records, len(rep.Files))
	}
}

func TestDamagedLastRecordRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	os.WriteFile(path, []byte("this is not a record\n"), 0o600)
	fs, err := OpenFile(FileOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	if _, err := New(Options{Sink: fs}); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("New on a damaged trail: %v", err)
	}
}

func TestSecondWriterRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	fs, err := OpenFile(FileOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFile(FileOptions{Path: path}); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Errorf("second OpenFile: %v", err)
	}
	fs.Close()
	fs, err = OpenFile(FileOptions{Path: path})
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	fs.Close()
}
