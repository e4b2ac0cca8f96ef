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
// TestSIGKILLLosesAtMostTheSyncInterval; its value is the trail's
// directory.
const killChildEnv = "IMAPWARDEN_AUDIT_KILL_CHILD"

const killSyncInterval = 200 * time.Millisecond

// TestKillChild is not a test on its own: run by the test below in a
// child process, it logs records as fast as the trail takes them and
// reports on stdout, every few milliseconds, how many Log has accepted.
func TestKillChild(t *testing.T) {
	dir := os.Getenv(killChildEnv)
	if dir == "" {
		t.Skip("the writer process of TestSIGKILLLosesAtMostTheSyncInterval")
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
		if err := tr.Log(cmdRecord(i)); err != nil {
			t.Fatal(err)
		}
		acked.Store(int64(i))
	}
}

type ackReport struct {
	n  int64
	at time.Time
}

func TestSIGKILLLosesAtMostTheSyncInterval(t *testing.T) {
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

	// What the child had acknowledged one sync interval before the kill
	// must all be in the files.
	mu.Lock()
	var must, last ackReport
	for _, r := range reports {
		if !r.at.After(killedAt.Add(-killSyncInterval)) {
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
	t.Logf("%d files, %d records; acknowledged %d at the last report, %d one interval before the kill; %d stored; break: %v",
		len(files), rep.Records, last.n, must.n, stored, rep.Break)
	if stored < must.n {
		t.Errorf("lost records acknowledged more than %v before the kill: stored up to %d, acknowledged %d", killSyncInterval, stored, must.n)
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
