package backendtest

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// orphanEnv names, in a test binary CheckNoOrphans runs, the file its
// helper test writes the launcher's PID to.
const orphanEnv = "BACKENDTEST_ORPHAN_PIDFILE"

// OrphanHelper is the body of a fixture's helper test for CheckNoOrphans:
// run as its child, it starts a server (start returns its launcher),
// writes the launcher's PID and waits to be killed; otherwise it skips.
func OrphanHelper(t *testing.T, start func(t *testing.T) *Proc) {
	pidFile := os.Getenv(orphanEnv)
	if pidFile == "" {
		t.Skip("runs only as CheckNoOrphans' child")
	}
	p := start(t)
	tmp := pidFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(p.Pid())), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, pidFile); err != nil {
		t.Fatal(err)
	}
	// Killed here; should the parent die first, stdin ends and the
	// cleanups run.
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// CheckNoOrphans runs the test named helper (calling OrphanHelper) in a
// child test binary, SIGKILLs that binary once its server is up, as go
// test's fuzz coordinator kills its workers (no cleanup runs), and
// requires every process of the server's PID namespace to die with it:
// the launcher's parent-death signal (StartNamespaced) must survive the
// start, that is, the launcher must not change its credentials.
func CheckNoOrphans(t *testing.T, helper string) {
	t.Helper()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	out, err := os.Create(filepath.Join(dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^"+helper+"$", "-test.v")
	cmd.Env = append(os.Environ(), orphanEnv+"="+pidFile)
	cmd.Stdout, cmd.Stderr = out, out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	childOut := func() string { b, _ := os.ReadFile(out.Name()); return Tail(string(b), 30) }

	ctx := testenv.Context(t)
	var pid int
	for pid == 0 {
		if b, err := os.ReadFile(pidFile); err == nil {
			pid, _ = strconv.Atoi(string(bytes.TrimSpace(b)))
			break
		}
		select {
		case <-exited:
			t.Fatalf("the helper %s ended before its server was up:\n%s", helper, childOut())
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-exited
			t.Fatalf("the helper %s did not start its server:\n%s", helper, childOut())
		case <-time.After(20 * time.Millisecond):
		}
	}
	// Held open, so that the kernel does not give a later namespace the
	// same inode while we look.
	nsPath := fmt.Sprintf("/proc/%d/ns/pid", pid)
	ref, err := os.Open(nsPath)
	if err != nil {
		t.Fatalf("the launcher %d is gone before its test binary: %v", pid, err)
	}
	defer ref.Close()
	ns, err := os.Readlink(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
	for {
		left := nsMembers(ns)
		if len(left) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			var b strings.Builder
			for _, p := range left {
				cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
				fmt.Fprintf(&b, "\n  %d %s", p, bytes.ReplaceAll(cl, []byte{0}, []byte{' '}))
			}
			// PID 1 of the namespace takes the rest with it.
			_ = syscall.Kill(left[0], syscall.SIGKILL)
			t.Fatalf("processes of the server outlived its killed test binary:%s", b.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// nsMembers lists the host PIDs of the processes in the PID namespace ns
// (as readlink /proc/PID/ns/pid shows it), lowest first.
func nsMembers(ns string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "pid")); err == nil && l == ns {
			pids = append(pids, pid)
		}
	}
	return pids
}
