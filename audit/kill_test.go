package audit

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// killChildEnv makes TestKillChild the writer process of
// TestSIGKILLLosesNothingAcknowledged; its value is the trail's
// directory.
const killChildEnv = "IMAPWARDEN_AUDIT_KILL_CHILD"

const killSyncInterval = 200 * time.Millisecond

// TestKillChild is not a test on its own: run by the test below in a
// child process, it logs records as fast as the trail takes them and
// reports on stdout, every few milliseconds, how many LogWait has
// acknowledged (durable: written to the OS).
func TestKillChild(t *testing.T) {
	dir := os.Getenv(killChildEnv)
	if dir == "" {
		t.Skip("the writer process of TestSIGKILLLosesNothingAcknowledged")
	}
	fs, err := OpenFile(FileOptions{Path: filepath.Join(dir, "audit.jsonl"), MaxSize: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(Options{Sink: fs, SyncInterval: killSyncInterval, QueueSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	var acked atomic.Int64
	go func() {
		for {
			fmt.Printf("acked %d %d\n", acked.Load(), time.Now().UnixNano())
			time.Sleep(2 * time.Millisecond)
		}
	}()
	deadline := time.Now().Add(time.Minute) // never outlive a lost parent for long
	for i := 1; time.Now().Before(deadline); i++ {
		if err := tr.LogWait(cmdRecord(i), time.Minute); err != nil {
			t.Fatal(err)
		}
		acked.Store(int64(i))
	}
}

type ackReport struct {
	n  int64
	at time.Time
}

func TestSIGKILLLosesNothingAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a writer process under load")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), killChildEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	var mu sync.Mutex
	var reports []ackReport
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 3 || f[0] != "acked" {
				continue
			}
			n, _ := strconv.ParseInt(f[1], 10, 64)
			ns, _ := strconv.ParseInt(f[2], 10, 64)
			mu.Lock()
			reports = append(reports, ackReport{n, time.Unix(0, ns)})
			mu.Unlock()
		}
	}()
	// Let it run under load: past several sync intervals and rotations.
	deadline := time.Now().Add(testenv.IOTimeout())
	for {
		mu.Lock()
		var n int64
		if len(reports) > 0 {
			n = reports[len(reports)-1].n
		}
		mu.Unlock()
		if n > 20000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the writer process logged only %d records", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(3 * killSyncInterval)
	killedAt := time.Now()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	// Everything the child acknowledged before the kill must be in the
	// files: LogWait returns once a record is written, and a killed
	// process loses nothing the kernel holds (the sync interval bounds
	// only what a crash of the machine loses).
	mu.Lock()
	var must, last ackReport
	for _, r := range reports {
		if !r.at.After(killedAt) {
			must = r
		}
		last = r
	}
	mu.Unlock()

	files, err := Files(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(files, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Break != nil && rep.Break.Kind != BreakTruncated {
		t.Fatalf("after SIGKILL: %v", rep.Break)
	}
	// The newest records are in the newest file (or the one before it,
	// when the kill came right after a rotation).
	var stored int64
	if _, err := Scan(files[max(0, len(files)-2):], func(r *Record, _ []byte) error {
		stored = max(stored, int64(r.Attempt))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d files, %d records; acknowledged %d at the last report, %d at the last before the kill; %d stored; break: %v",
		len(files), rep.Records, last.n, must.n, stored, rep.Break)
	if stored < must.n {
		t.Errorf("lost acknowledged records: stored up to %d, acknowledged %d before the kill", stored, must.n)
	}

	// The next writer cuts a torn line off and continues the chain.
	fs, err := OpenFile(FileOptions{Path: filepath.Join(dir, "audit.jsonl")})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(Options{Sink: fs})
	if err != nil {
		t.Fatal(err)
	}
	tr.Log(cmdRecord(0))
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ = Files(filepath.Join(dir, "audit.jsonl"))
	mustVerify(t, files, VerifyOptions{})
}
