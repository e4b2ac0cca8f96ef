// Package redistest starts a private redis-server (or redis-sentinel) for
// one test: loopback, an ephemeral port, no persistence, a temporary
// directory, stopped by PID. With CI=true a missing binary fails the test
// (.ci/install-redis.sh installs it). Test support.
package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// Server is one redis-server.
type Server struct {
	Addr string
	t    testing.TB
	bin  string
	dir  string
	port int

	extra []string // more arguments

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Require returns the redis-server binary, or skips the test; with
// CI=true a missing binary fails it.
func Require(t testing.TB) string {
	t.Helper()
	return testenv.NeedTool(t, "redis-server")
}

// Start starts a redis-server with more arguments, e.g.
// "--cluster-enabled", "yes"; or, with "--sentinel" first, a Sentinel
// whose configuration lines follow ("sentinel monitor ..."). The test's
// cleanup kills it.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	bin := Require(t)
	r := &Server{t: t, bin: bin, dir: t.TempDir(), extra: extra}
	for attempt := 0; ; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		r.port = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		r.Addr = fmt.Sprintf("127.0.0.1:%d", r.port)
		// Another process may take the port between Close and the start:
		// rare; retry with a new one.
		if err := r.launch(); err == nil {
			break
		} else if attempt == 2 {
			t.Fatal(err)
		}
	}
	t.Cleanup(r.Kill)
	return r
}

// Port is the server's TCP port.
func (r *Server) Port() string { return strconv.Itoa(r.port) }

func (r *Server) launch() error {
	args := []string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir, "--daemonize", "no",
		"--logfile", filepath.Join(r.dir, "redis.log")}
	if len(r.extra) > 0 && r.extra[0] == "--sentinel" {
		// A Sentinel rewrites its config file: it needs one of its own,
		// and takes no persistence options.
		conf := filepath.Join(r.dir, "sentinel.conf")
		text := strings.Join(r.extra[1:], "\n") + "\n"
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			return err
		}
		args = []string{conf, "--sentinel", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
			"--dir", r.dir, "--daemonize", "no", "--logfile", filepath.Join(r.dir, "redis.log")}
	} else {
		args = append(args, r.extra...)
	}
	cmd := exec.Command(r.bin, args...)
	// A test binary killed without its cleanups (go test's fuzz
	// coordinator kills its workers) takes the server along.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(testenv.IOTimeout())
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		// A refusal such as NOAUTH (requirepass) is an answer too.
		if err == nil || errors.As(err, new(redis.Error)) {
			break
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
			return fmt.Errorf("redis-server exited: %s", lastLines(string(log), 5))
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-done
			return fmt.Errorf("redis-server on %s not answering: %w", r.Addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.mu.Lock()
	r.cmd = cmd
	r.mu.Unlock()
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Kill sends SIGKILL to the server (by its PID) and waits for it to exit.
func (r *Server) Kill() {
	r.mu.Lock()
	cmd := r.cmd
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
	cmd.Process.Wait()
}

// Restart starts a new server on the same port (empty: no persistence).
func (r *Server) Restart() {
	r.t.Helper()
	r.Kill()
	if err := r.launch(); err != nil {
		r.t.Fatal(err)
	}
}
