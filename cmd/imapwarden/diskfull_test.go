package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/audit"
	"github.com/imapwarden/imapwarden/internal/testenv"
)

// serveChildEnv makes TestServeChild a proxy process serving the config
// file it names, for tests that kill it.
const serveChildEnv = "IMAPWARDEN_SERVE_CHILD"

// TestServeChild is not a test on its own: run in a child process by the
// tests below, it serves a config and prints its addresses.
func TestServeChild(t *testing.T) {
	cfgFile := os.Getenv(serveChildEnv)
	if cfgFile == "" {
		t.Skip("the proxy process of TestAuditDiskFullKill9")
	}
	cfg, err := loadConfigFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	log, _ := zap.NewDevelopment()
	s, err := build(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	// Never outlive a lost parent for long.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	err = runServe(ctx, s, log, make(chan os.Signal), func() (*setup, error) { return s, nil }, func(a []net.Addr, adm net.Addr) {
		fmt.Printf("listening %s %s\n", a[0], adm)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// startServeChild starts the proxy process and returns its IMAP and admin
// addresses.
func startServeChild(t *testing.T, cfgFile string) (cmd *exec.Cmd, imapAddr, adminAddr string) {
	t.Helper()
	cmd = exec.Command(os.Args[0], "-test.run=^TestServeChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), serveChildEnv+"="+cfgFile)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	got := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "listening" {
				got <- f[1:]
			}
		}
		close(got)
	}()
	select {
	case a, ok := <-got:
		if !ok {
			t.Fatal("the proxy process ended before listening")
		}
		return cmd, a[0], a[1]
	case <-testenv.Context(t).Done():
		t.Fatal("the proxy process did not start")
	}
	return nil, "", ""
}

// loadClient logs in and FETCHes until the session ends, then starts
// over, until stop. Every tagged OK it reads is an acknowledged command.
type loadClient struct {
	id    int
	addr  string
	acked *sync.Map // tag → true
	byes  *atomic.Int64
}

// load is n loadClients running until stop (or the test's end).
type load struct {
	acked    sync.Map
	byes     atomic.Int64
	done     chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once
}

func startLoad(t *testing.T, addr string, n int) *load {
	l := &load{done: make(chan struct{})}
	for i := range n {
		c := &loadClient{id: i, addr: addr, acked: &l.acked, byes: &l.byes}
		l.wg.Go(func() { c.run(l.done) })
	}
	t.Cleanup(l.stop)
	return l
}

// stop ends the clients and waits for them.
func (l *load) stop() { l.stopOnce.Do(func() { close(l.done); l.wg.Wait() }) }

func (c *loadClient) run(stop <-chan struct{}) {
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		c.session(n, stop)
	}
}

func (c *loadClient) session(n int, stop <-chan struct{}) {
	conn, err := tls.Dial("tcp", c.addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	defer conn.Close()
	go func() { <-stop; conn.Close() }()
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil {
		return
	}
	send := func(tag, cmd string) bool {
		if _, err := fmt.Fprintf(conn, "%s %s\r\n", tag, cmd); err != nil {
			return false
		}
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return false
			}
			// Told the trail is down: BYE for a command in flight when
			// it failed, NO for one refused before the backend after.
			if strings.HasPrefix(l, "* BYE [UNAVAILABLE]") || strings.HasPrefix(l, tag+" NO [UNAVAILABLE]") {
				c.byes.Add(1)
			}
			if strings.HasPrefix(l, tag+" ") {
				if strings.HasPrefix(l, tag+" OK") {
					c.acked.Store(tag, true)
					return true
				}
				return false
			}
		}
	}
	if !send(fmt.Sprintf("l%d.%d", c.id, n), `LOGIN demo "demo-password"`) {
		return
	}
	for i := 0; ; i++ {
		cmd := "UID FETCH 1:* (FLAGS BODY.PEEK[HEADER])"
		if i == 0 {
			cmd = "SELECT INBOX"
		}
		if !send(fmt.Sprintf("c%d.%d.%d", c.id, n, i), cmd) {
			return
		}
	}
}

// tinyTmpfs mounts a 256 KiB tmpfs for an audit trail to fill, until
// the test ends.
func tinyTmpfs(t *testing.T) string {
	t.Helper()
	testenv.NeedRoot(t, "mount a tiny tmpfs for the audit trail")
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=256k,mode=0700"); err != nil {
		testenv.Require(t, "tmpfs mount", err, "needs CAP_SYS_ADMIN")
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// demoBackend serves the demo's in-memory IMAP server until the test
// ends and returns its address.
func demoBackend(t *testing.T) string {
	t.Helper()
	addr, stop, err := startDemoBackend(zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return addr
}

func readyz(adminAddr string) (int, string) {
	resp, err := http.Get("http://" + adminAddr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The experiment, automated: a proxy with audit.on_full: block
// writes its trail to a tiny tmpfs under load until the disk is full,
// then is killed with SIGKILL. Every command a client saw acknowledged
// must be in the trail, /readyz must have said why it was not ready,
// clients must have been told BYE [UNAVAILABLE], and verify with the
// checkpoint must not call the trail short.
func TestAuditDiskFullKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a disk under load and kills a proxy")
	}
	trailDir := tinyTmpfs(t)
	backendAddr := demoBackend(t)
	dir := t.TempDir()
	cf := tlsFiles(t, dir)
	keyFile, cpFile := filepath.Join(dir, "audit.key"), filepath.Join(dir, "audit.checkpoint")
	os.WriteFile(keyFile, []byte("a-key-of-more-than-sixteen-bytes\n"), 0o600)
	trail := filepath.Join(trailDir, "audit.jsonl")
	cfgFile := filepath.Join(dir, "imapwarden.yaml")
	os.WriteFile(cfgFile, fmt.Appendf(nil, `
listeners:
  - {address: "127.0.0.1:0", mode: tls}
tls:
  certificates: [{cert: %s, key: %s}]
backends:
  mem: {address: %q, security: plain}
admin: {address: "127.0.0.1:0"}
audit:
  path: %s
  fsync: interval
  fsync_interval: 50ms
  on_full: block
  ack_timeout: 2s
  key_file: %s
  checkpoint_file: %s
`, cf.Cert, cf.Key, backendAddr, trail, keyFile, cpFile), 0o600)

	child, imapAddr, adminAddr := startServeChild(t, cfgFile)
	if code, body := readyz(adminAddr); code != http.StatusOK {
		t.Fatalf("/readyz before the load: %d %s", code, body)
	}
	ld := startLoad(t, imapAddr, 8)
	acked, byes := &ld.acked, &ld.byes

	// Load until readiness fails, then until clients are told BYE.
	ctx := testenv.Context(t)
	var body503 string
	for body503 == "" || byes.Load() < 8 {
		if ctx.Err() != nil {
			t.Fatalf("readyz %q, %d told UNAVAILABLE (BYE or NO): the disk never filled or nobody was told", body503, byes.Load())
		}
		if body503 == "" {
			if code, body := readyz(adminAddr); code == http.StatusServiceUnavailable {
				body503 = body
			}
		}
		time.Sleep(20 * time.Millisecond) // polling the probe, as a balancer does
	}
	if !strings.Contains(body503, "no space left on device") {
		t.Errorf("/readyz said %q, want the sink's ENOSPC", body503)
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	ld.stop()

	// Acknowledged vs recorded.
	recorded := map[string]bool{}
	files, err := audit.Files(trail)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Scan(files, func(r *audit.Record, _ []byte) error {
		if r.Kind == audit.KindCommand {
			recorded[r.Tag] = true
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	nAcked, lost := 0, 0
	acked.Range(func(k, _ any) bool {
		tag := k.(string)
		if tag[0] == 'c' {
			nAcked++
			if !recorded[tag] {
				lost++
			}
		}
		return true
	})
	key, _ := audit.LoadKey(keyFile)
	cp, err := audit.ReadCheckpoint(cpFile, [][]byte{key})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(files, audit.VerifyOptions{Keys: [][]byte{key}, Checkpoint: cp})
	if err != nil {
		t.Fatal(err)
	}
	var verdict strings.Builder
	rep.WriteText(&verdict)
	t.Logf("acknowledged %d commands, %d command records in the trail, %d acknowledged but not recorded; %d BYE [UNAVAILABLE]; /readyz: %s; checkpoint seq %d; verify -checkpoint:\n%s",
		nAcked, len(recorded), lost, byes.Load(), strings.TrimSpace(body503), cp.Seq, verdict.String())
	if lost != 0 {
		t.Errorf("%d acknowledged commands are not in the trail", lost)
	}
	if nAcked == 0 {
		t.Error("no command was acknowledged: the load never ran")
	}
	if rep.Break != nil && rep.Break.Kind != audit.BreakTruncated {
		t.Errorf("verify after SIGKILL: %v", rep.Break)
	}

	// And verify catches the same trail cut short of its checkpoint: the
	// records from the checkpoint's on removed (one file, from seq 1).
	b, _ := os.ReadFile(files[len(files)-1])
	lines := strings.SplitAfter(string(b), "\n")
	cut := filepath.Join(dir, "cut.jsonl")
	os.WriteFile(cut, []byte(strings.Join(lines[:cp.Seq-1], "")), 0o600)
	code, out, _ := runCLI("audit", "verify", "-key", keyFile, "-checkpoint", cpFile, cut)
	t.Logf("verify -checkpoint on the trail cut before seq %d: exit %d: %s", cp.Seq, code, strings.SplitN(out, "\n", 2)[0])
	if code != auditExitBroken || !strings.HasPrefix(out, "SHORT:") {
		t.Errorf("verify of a cut trail: exit %d\n%s", code, out)
	}
}
