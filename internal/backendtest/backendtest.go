// Package backendtest holds what the real-backend test fixtures other than
// Dovecot's (internal/cyrustest, internal/couriertest) share: where
// .ci/install-backends.sh unpacks the servers, the skip-or-fail rule, running
// a server inside private mount and PID namespaces, readiness probes, and a
// small raw-socket IMAP client for tests and for delivering mail.
//
// Implementation notes:
//
//   - Debian installs only one IMAP server package at a time (each conflicts
//     with imap-server) and the suite needs dovecot-imapd, so Cyrus and
//     Courier are unpacked (dpkg -x) under Root() and run from there.
//   - Those servers read fixed paths (/etc/courier, /run/courier, /dev/log)
//     that tests must neither share nor change. Each server therefore runs as
//     a launcher script in its own mount namespace, where it bind-mounts its
//     private directories over those paths; nothing outside it sees them.
//   - The same launcher is PID 1 of its own PID namespace. When it dies, the
//     kernel kills every process left in the namespace, daemonized ones
//     included (Courier's gam_server calls setsid and outlives its parent).
//     So stopping a server can never leave a process behind, and a test
//     binary that dies without running Cleanup takes the server with it
//     (Pdeathsig), as long as the launcher keeps its credentials: the
//     kernel clears the parent-death signal of a process that changes
//     them (prctl(2)), so a launcher must not exec a server that switches
//     users (Lifecycle.Launch refuses one that did; CheckNoOrphans).
//
// Both need root (CAP_SYS_ADMIN for the namespaces, and the servers switch to
// their own users), which CI and the dev machines are.
package backendtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// DefaultRoot is where .ci/install-backends.sh unpacks the servers unless
// IMAPWARDEN_BACKENDS names another directory.
const DefaultRoot = "/opt/imapwarden-backends"

// Root returns the directory holding the unpacked server trees ("cyrus",
// "courier"): $IMAPWARDEN_BACKENDS, or DefaultRoot.
func Root() string {
	if r := os.Getenv("IMAPWARDEN_BACKENDS"); r != "" {
		return r
	}
	return DefaultRoot
}

// Require ends the test unless err is nil: err says why fixture (a package
// name, for the message) cannot run. Without CI it skips; with CI=true it
// fails, because CI installs the backends (.ci/install-backends.sh) and a skip
// there would hide that the backend tests never ran.
func Require(t testing.TB, fixture string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	testenv.Require(t, fixture, err, ".ci/run calls .ci/install-backends.sh (run it as root to enable this test)")
}

// CheckRoot reports why namespaces cannot be made, or nil as root.
func CheckRoot() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (private mount and PID namespaces, servers that switch users)")
	}
	return nil
}

// CheckFiles reports the first path that does not exist, or nil.
func CheckFiles(paths ...string) error {
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%s is missing", p)
		}
	}
	return nil
}

// maxTempParent keeps unix socket paths inside the directory (up to ~40 more
// bytes) within sun_path's 108 bytes.
const maxTempParent = 40

// ShortTempDir makes a 0755 directory with a short path (t.TempDir's embed
// the test name): the servers put unix sockets in it, and their unprivileged
// users must traverse it.
func ShortTempDir(prefix string) (string, error) {
	parent := os.TempDir()
	if len(parent) > maxTempParent {
		parent = "/tmp"
	}
	dir, err := os.MkdirTemp(parent, prefix)
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// FreePorts returns n distinct free TCP ports on 127.0.0.1. All listeners
// stay open until every port is chosen, so the n ports differ. Another
// process may still take one before the server binds it: fixtures retry.
func FreePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Proc is one run of a launcher script as PID 1 of private mount and PID
// namespaces.
type Proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd.Wait has returned
	err  error         // cmd.Wait's result; read only after done is closed
	ns   string        // the PID namespace, as readlink /proc/PID/ns/pid shows it
	// nsRef holds the namespace open: the kernel reuses the inode numbers
	// of freed namespaces, and Survivors must not mistake a later server's
	// namespace for this one. Closed by its finalizer with the Proc.
	nsRef *os.File
}

// StartNamespaced runs `/bin/sh script` in dir with env, as PID 1 of a new
// PID namespace with a private mount namespace (mounts do not propagate out;
// the script mounts what it needs, starting with a fresh /proc). Its stdout
// and stderr go to out, an *os.File so that Wait does not hang on children
// that inherited the descriptor.
func StartNamespaced(script, dir string, env []string, out *os.File) (*Proc, error) {
	cmd := exec.Command("/bin/sh", script)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWPID,
		// Unshareflags rather than Cloneflags: Go then also makes every
		// mount private (MS_REC|MS_PRIVATE on /) before the exec, so no
		// mount of the script reaches the host.
		Unshareflags: syscall.CLONE_NEWNS,
		Setpgid:      true,
		// If the test binary dies without running Cleanup (a panic, go
		// test's timeout), the namespace dies with it. SIGKILL, because PID
		// 1 of a namespace ignores every other signal it has no handler
		// for. (Linux ties this to the forking thread; Go ends a thread only
		// when a goroutine exits while locked to it.)
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Proc{cmd: cmd, done: make(chan struct{})}
	// Taken before anything can reap the launcher (only the goroutine
	// below waits for it), so the PID still names it.
	nsPath := fmt.Sprintf("/proc/%d/ns/pid", cmd.Process.Pid)
	if f, err := os.Open(nsPath); err == nil {
		p.nsRef = f
		p.ns, _ = os.Readlink(nsPath)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the launcher's PID as the host sees it.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the launcher has exited and been reaped. By then every
// process of its PID namespace is gone: the kernel kills them when PID 1
// exits and reaps PID 1 last.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the launcher's exit status; call it only after Done is closed.
func (p *Proc) Err() error { return p.err }

// Stop sends SIGTERM to the launcher (PID 1 gets it only if it handles it:
// the Cyrus and Courier launchers trap it), waits up to grace,
// then SIGKILLs it, and returns when everything in the namespace is gone.
func (p *Proc) Stop(grace time.Duration) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
	}
	p.Kill()
}

// Kill SIGKILLs the launcher, which takes its whole PID namespace down, and
// returns once it is reaped.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Survivors lists host PIDs of processes still in p's PID namespace, for
// tests that prove a stop leaves nothing behind. It is empty once Done is
// closed.
func (p *Proc) Survivors() []int {
	if p.ns == "" {
		return nil
	}
	return nsMembers(p.ns)
}

// Accepts reports whether something accepts TCP connections on addr.
func Accepts(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// WaitClosed waits up to timeout until no addr accepts connections.
func WaitClosed(timeout time.Duration, addrs ...string) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		open := false
		for _, a := range addrs {
			open = open || Accepts(a)
		}
		if !open {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// ChildEnv is a minimal environment for a server: the test's own variables
// (GOFLAGS, CI, proxies...) stay out of it. extra is appended.
func ChildEnv(extra ...string) []string {
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	if tz, ok := os.LookupEnv("TZ"); ok {
		env = append(env, "TZ="+tz)
	}
	return append(env, extra...)
}

// ShellQuote quotes s for /bin/sh.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
