package ratelimit

import (
	"context"
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

// redisServer is a private redis-server for one test: loopback, an
// ephemeral port, no persistence, a temporary directory, stopped by PID.
type redisServer struct {
	t    testing.TB
	bin  string
	dir  string
	Addr string
	port int

	extra []string // more arguments

	mu  sync.Mutex
	cmd *exec.Cmd
}

// requireRedis returns the redis-server binary, or skips the test; with
// CI=true a missing binary fails it (.ci/install-redis.sh installs it).
func requireRedis(t testing.TB) string {
	t.Helper()
	return testenv.NeedTool(t, "redis-server")
}

func startRedis(t testing.TB) *redisServer { return startRedisArgs(t) }

// startRedisArgs starts a redis-server with more arguments, e.g.
// "--cluster-enabled", "yes"; or, with "--sentinel" first, a Sentinel.
func startRedisArgs(t testing.TB, extra ...string) *redisServer {
	t.Helper()
	bin := requireRedis(t)
	r := &redisServer{t: t, bin: bin, dir: t.TempDir(), extra: extra}
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

func (r *redisServer) launch() error {
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
		if err == nil {
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
func (r *redisServer) Kill() {
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
func (r *redisServer) Restart() {
	r.t.Helper()
	r.Kill()
	if err := r.launch(); err != nil {
		r.t.Fatal(err)
	}
}

// testRedisTimeout bounds each Redis call of the tests' Limiters: a killed
// redis-server refuses at once, and a busy machine must not make a live
// one look down (the default, 250ms, is for production).
const testRedisTimeout = 10 * time.Second

// client returns a client made as the lead would make it.
func (r *redisServer) client(t testing.TB) redis.UniversalClient {
	// A killed redis-server refuses connections at once; the timeout only
	// has to outlast a busy machine (two race-enabled suites at once),
	// where a short one marks a live Redis down and fails the test.
	c := NewRedisClient(RedisOptions{Addr: r.Addr, Timeout: testRedisTimeout})
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond (a state that arrives asynchronously, such as the
// prober noticing a restarted Redis) up to a generous deadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testenv.IOTimeout())
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type newFunc func(t testing.TB, set func(o *Options)) (*Limiter, *fakeClock)

var prefixSeq struct {
	sync.Mutex
	n int
}

// forEachStore runs f with Limiters on the in-process store, then on
// Redis (a private redis-server; each Limiter its own key prefix).
func forEachStore(t *testing.T, f func(t *testing.T, newTest newFunc)) {
	t.Run("local", func(t *testing.T) { f(t, newTest) })
	t.Run("redis", func(t *testing.T) {
		srv := startRedis(t)
		c := srv.client(t)
		f(t, func(t testing.TB, set func(o *Options)) (*Limiter, *fakeClock) {
			prefixSeq.Lock()
			prefixSeq.n++
			p := fmt.Sprintf("test%d:{rl}:", prefixSeq.n)
			prefixSeq.Unlock()
			return newTest(t, func(o *Options) {
				o.Redis, o.RedisPrefix, o.RedisTimeout = c, p, testRedisTimeout
				o.OnStoreError = func(err error) { t.Errorf("redis error: %v", err) }
				if set != nil {
					set(o)
				}
			})
		})
	})
}
