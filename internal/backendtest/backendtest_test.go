package backendtest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// startScript runs script in fresh namespaces, with its output in the test's
// directory.
func startScript(t *testing.T, script string) *Proc {
	t.Helper()
	Require(t, "backendtest", CheckRoot())
	dir := t.TempDir()
	path := filepath.Join(dir, "launch.sh")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	p, err := StartNamespaced(path, dir, ChildEnv(), out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return p
}

// waitSurvivors waits until p's namespace holds n processes and returns them.
func waitSurvivors(t *testing.T, p *Proc, n int) []int {
	t.Helper()
	deadline := time.Now().Add(testenv.IOTimeout())
	for {
		pids := p.Survivors()
		if len(pids) == n {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("namespace holds %v, want %d processes", pids, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A daemon that leaves its session and process group (as gam_server does)
// still dies with the namespace.
func TestKillTakesDaemonsAlong(t *testing.T) {
	t.Parallel()
	p := startScript(t, "setsid sleep 300 &\nsleep 300 &\nwait\n")
	pids := waitSurvivors(t, p, 3) // sh, sleep, setsid sleep
	p.Kill()
	if left := p.Survivors(); len(left) > 0 {
		t.Fatalf("left after Kill: %v", left)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("process %d still exists", pid)
		}
	}
}

func TestStopSignalsLauncher(t *testing.T) {
	t.Parallel()
	p := startScript(t, "trap 'exit 0' TERM\nsleep 300 &\nwait\n")
	waitSurvivors(t, p, 2)
	start := time.Now()
	p.Stop(30 * time.Second)
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Stop took %v: the launcher's TERM trap did not end it", d)
	}
	if p.Err() != nil {
		t.Fatalf("launcher exit: %v, want 0 from its trap", p.Err())
	}
	if left := p.Survivors(); len(left) > 0 {
		t.Fatalf("left after Stop: %v", left)
	}
}

func TestNamespacesArePrivate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	// The script's PID is 1 and its mounts stay inside.
	p := startScript(t, fmt.Sprintf("mount -t tmpfs x %s\necho $$ >%s/pid\nsleep 300\n", sub, dir))
	waitSurvivors(t, p, 2)
	var b []byte
	var err error
	for deadline := time.Now().Add(testenv.IOTimeout()); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if b, err = os.ReadFile(filepath.Join(dir, "pid")); err == nil && len(b) > 0 {
			break
		}
	}
	if err != nil || strings.TrimSpace(string(b)) != "1" {
		t.Fatalf("the launcher's PID in its namespace: %q, %v; want 1", b, err)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), " "+sub+" ") {
		t.Fatalf("the namespace's mount on %s is visible outside", sub)
	}
}

// fakeServer accepts one connection on loopback and runs script against it.
func fakeServer(t *testing.T, script func(r *bufio.Reader, w io.Writer)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { l.Close(); <-done })
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		script(bufio.NewReader(c), c)
	}()
	return l.Addr().String()
}

func TestClient(t *testing.T) {
	t.Parallel()
	msg := []byte("Subject: x\r\n\r\nbody with {5}\r\nand CRLF\r\n")
	got := make(chan string, 1)
	addr := fakeServer(t, func(r *bufio.Reader, w io.Writer) {
		fmt.Fprintf(w, "* OK ready\r\n")
		r.ReadString('\n') // a1 FETCH
		fmt.Fprintf(w, "* 1 FETCH (BODY[] {%d}\r\n%s)\r\na1 OK done\r\n", len(msg), msg)
		line, _ := r.ReadString('\n') // a2 APPEND "x \"y\"" {n}
		fmt.Fprintf(w, "+ go\r\n")
		body := make([]byte, len(msg)+2)
		io.ReadFull(r, body)
		got <- line + string(body)
		fmt.Fprintf(w, "a2 NO [OVERQUOTA] full\r\n")
	})
	c := Dial(t, addr, nil)
	u := c.MustOK("FETCH 1 BODY[]")
	if len(u) != 1 || u[0] != fmt.Sprintf("* 1 FETCH (BODY[] {%d}%s)", len(msg), msg) {
		t.Fatalf("FETCH: %q", u)
	}
	err := c.Append(`x "y"`, msg)
	if err == nil || !strings.Contains(err.Error(), "OVERQUOTA") {
		t.Fatalf("Append: %v, want the NO", err)
	}
	if want := fmt.Sprintf("a2 APPEND \"x \\\"y\\\"\" {%d}\r\n%s\r\n", len(msg), msg); <-got != want {
		t.Fatalf("server got a different APPEND, want %q", want)
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"alice":      `"alice"`,
		`a"b\c`:      `"a\"b\\c"`,
		"":           `""`,
		"with space": `"with space"`,
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
}
