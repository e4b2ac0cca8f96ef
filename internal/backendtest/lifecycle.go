package backendtest

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// LaunchSpec says how to start a namespaced server (cyrustest,
// couriertest); the fixture builds it at each start, ports included.
type LaunchSpec struct {
	Script, Dir string
	Env         []string
	// Output opens the file the server's processes write to.
	Output func() (*os.File, error)
	// Log reads the server's log; Bad lists what in the lines logged
	// during this start means it failed, reported as Label logged it.
	Log   func() string
	Bad   []string
	Label string
	// The server is ready once both ports greet (TLSAddr verified with
	// Pool) within Timeout.
	Addr, TLSAddr string
	Pool          *x509.CertPool
	Timeout       time.Duration
}

// Lifecycle runs one namespaced server: start, stop, kill. Safe for
// concurrent use.
type Lifecycle struct {
	mu    sync.Mutex
	proc  *Proc
	addrs []string // of the last start, for Kill
}

// Launch starts the server and waits until it is ready. It must be stopped.
func (l *Lifecycle) Launch(s LaunchSpec) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.proc != nil {
		return errors.New("already running")
	}
	// Only log lines written from now on count for readiness (the log
	// keeps growing across Kill and Restart).
	logOffset := len(s.Log())
	out, err := s.Output()
	if err != nil {
		return err
	}
	defer out.Close() // the children have their own copies
	p, err := StartNamespaced(s.Script, s.Dir, s.Env, out)
	if err != nil {
		return err
	}
	l.proc, l.addrs = p, []string{s.Addr, s.TLSAddr}
	failed := func() error {
		if log := s.Log(); len(log) > logOffset {
			log = log[logOffset:]
			for _, bad := range s.Bad {
				if strings.Contains(log, bad) {
					return fmt.Errorf("%s logged %q during start", s.Label, bad)
				}
			}
		}
		return nil
	}
	err = WaitReady(p, s.Addr, s.TLSAddr, s.Pool, s.Timeout, failed)
	if err == nil {
		err = p.keptCredentials()
	}
	if err != nil {
		l.proc = nil
		p.Kill()
		return err
	}
	return nil
}

// keptCredentials reports an error when the launcher no longer has the
// test binary's user and group: the kernel then cleared its parent-death
// signal (prctl(2)), and its namespace would outlive a killed test binary.
func (p *Proc) keptCredentials() error {
	want, err := credentials("self")
	if err != nil {
		return err
	}
	got, err := credentials(strconv.Itoa(p.Pid()))
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("the launcher changed its credentials (%s, the test's %s), which clears its parent-death signal: keep the shell as PID 1, the server its child", got, want)
	}
	return nil
}

// credentials returns the Uid and Gid lines of /proc/PID/status.
func credentials(pid string) (string, error) {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return "", err
	}
	var ids []string
	for l := range strings.Lines(string(b)) {
		if strings.HasPrefix(l, "Uid:") || strings.HasPrefix(l, "Gid:") {
			ids = append(ids, strings.Join(strings.Fields(l), " "))
		}
	}
	return strings.Join(ids, "; "), nil
}

// Stop ends the running server, if any: SIGTERM, then SIGKILL to the
// namespace after grace.
func (l *Lifecycle) Stop(grace time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.proc == nil {
		return
	}
	l.proc.Stop(grace)
	l.proc = nil
}

// Kill SIGKILLs every process of the server at once, as if the host died,
// and returns once neither port accepts connections (or grace passed).
func (l *Lifecycle) Kill(grace time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.proc == nil {
		return
	}
	l.proc.Kill()
	l.proc = nil
	WaitClosed(grace, l.addrs...)
}

// Running returns the running server's process (nil when stopped).
func (l *Lifecycle) Running() *Proc {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.proc
}

// WaitLog waits up to timeout for log() to contain substr and returns the
// log; it fails the test (messages prefixed by prefix) on timeout. Log
// lines can land a little after the event they record.
func WaitLog(t testing.TB, prefix string, log func() string, substr string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		l := log()
		if strings.Contains(l, substr) {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: log does not contain %q after %v:\n%s", prefix, substr, timeout, Tail(l, 30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
