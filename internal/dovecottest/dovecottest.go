// Package dovecottest starts a private, throwaway Dovecot IMAP server for
// tests that need a real backend (the proxy's end-to-end tests, later cmd's).
//
// Each Server is a separate `dovecot -F` master owned by the test process: its
// configuration, sockets (base_dir), state, mail, certificates and log live in
// one short temporary directory, and it listens on 127.0.0.1 ephemeral ports.
// Nothing under /etc is read or changed and no system service is involved, so
// a system Dovecot on 143/993 (Debian's package may start one) does not matter,
// and test binaries of several packages can each run their own at once.
//
// Implementation notes, the facts the configuration depends on:
//
//   - Dovecot refuses to run mail processes as root. When the test runs as
//     root (CI, the dev machines), mail belongs to the unprivileged "nobody"
//     user, login processes run as "dovenull" and internal services as
//     "dovecot", the two users Debian's dovecot-core package creates. Run as
//     another user, everything runs as that user (Dovecot's rootless mode).
//   - base_dir holds unix sockets, whose paths must fit in sun_path (108
//     bytes), so the directory comes from os.MkdirTemp under a short parent
//     rather than t.TempDir(), whose paths embed the (long) test name.
//   - The whole tree is world-traversable (0755) because several users read
//     it: "dovecot" (auth) reads the passwd files and "nobody" owns the mail.
//   - The master runs in its own process group, so Kill can SIGKILL the master
//     and every child at once, as a crashed or killed backend host would.
//
// Failed authentication is not delayed (auth_failure_delay = 0, anvil's
// per-IP auth penalty off) so that a test of a wrong password does not slow
// every later login from 127.0.0.1; the proxy, not the backend, is where the
// delays that matter live. Stopping takes about a second: Dovecot's master
// waits that long for its log process on SIGTERM.
package dovecottest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/tlsterm"
)

// Defaults applied by Start to zero Options fields.
const (
	DefaultMasterUser      = "proxymaster"
	DefaultMasterPassword  = "master-pw"
	DefaultTrustedNetworks = "127.0.0.0/8"
)

// DefaultUsers returns the users a zero Options creates. It returns a new map
// each time so a caller may change it.
func DefaultUsers() map[string]string {
	return map[string]string{"alice": "alice-pw", "bob": "bob-pw"}
}

const (
	// startTimeout bounds how long Start and Restart wait for the greeting.
	// Dovecot is up in well under a second; the margin is for a loaded
	// 2-core CI machine running -race test binaries of several packages.
	startTimeout = 30 * time.Second
	// stopGrace is how long a SIGTERMed master gets before SIGKILL.
	stopGrace = 5 * time.Second
	// startAttempts: ports are picked by binding :0 and closing, so another
	// process may take one before Dovecot binds it. Rare; retry with new ports.
	startAttempts = 3
	// maxTempParent keeps base_dir's socket paths (base_dir plus names like
	// "login/imap-urlauth", "token-login/tokenlogin") well under 108 bytes.
	maxTempParent = 40
)

// Require returns the path of the dovecot binary, or skips the test when
// Dovecot is not installed. With CI=true in the environment a missing Dovecot
// fails the test instead: CI installs it (.ci/run), so a skip there would
// hide that the backend tests never ran.
func Require(t testing.TB) string {
	t.Helper()
	path, err := findBinary("dovecot")
	if err == nil {
		return path
	}
	if testenv.CI() {
		t.Fatalf("dovecottest: CI=true but Dovecot is missing (%v); .ci/run must install dovecot-imapd", err)
	}
	t.Skipf("dovecottest: Dovecot not installed (%v); apt-get install dovecot-imapd to run this test", err)
	return ""
}

// extraBinDirs are searched after PATH: a non-root PATH often lacks sbin, and
// Debian installs dovecot in /usr/sbin. A variable so tests can hide Dovecot.
var extraBinDirs = []string{"/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"}

func findBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range extraBinDirs {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH or sbin directories", name)
}

// Options configures a Server. The zero value is a working default.
type Options struct {
	// Users maps user name to password; nil means DefaultUsers().
	// Names and passwords must not contain ':' or line breaks (passwd-file).
	Users map[string]string

	// MasterUser and MasterPassword define a Dovecot master user (a passdb
	// with master = yes), so that AUTHENTICATE PLAIN with authzid "alice",
	// authcid MasterUser and MasterPassword logs in as alice. Empty means
	// DefaultMasterUser / DefaultMasterPassword. The target user must exist
	// in Users (pass = yes), as it would on a real backend.
	MasterUser, MasterPassword string

	// TrustedNetworks is login_trusted_networks; "" means
	// DefaultTrustedNetworks. Clients from these networks may override the
	// logged remote address with ID x-originating-ip (RFC 2971 ID, Dovecot's
	// extension), which is how the proxy tells the backend the real client.
	// Dovecot also treats them as secured, so plaintext LOGIN is allowed
	// from them even with DisablePlaintextAuth.
	TrustedNetworks string

	// HAProxyTrusted is haproxy_trusted_networks. "" leaves the PROXY
	// protocol off. When set, both listeners require a PROXY (v1 or v2)
	// header first, and Start's readiness probe sends a v2 LOCAL header, so
	// the value must include 127.0.0.1.
	HAProxyTrusted string

	// DisablePlaintextAuth sets disable_plaintext_auth. Off by default since
	// the proxy logs in over loopback. Note that Dovecot considers loopback
	// connections where the remote and local IP are equal, and connections
	// from TrustedNetworks, secured: plaintext auth stays allowed for them.
	DisablePlaintextAuth bool

	// ACL loads Dovecot's ACL plugins (vfile), so that it offers ACL
	// (RFC 4314). Off by default, as in Debian's configuration.
	ACL bool
	// HighPerformance runs Dovecot's high-performance login mode: a few
	// long-lived imap-login processes serve every connection
	// (service_count = 0), and up to 1000 imap processes run. The default,
	// high-security mode forks one login process per connection, which
	// greets a burst of connections at some 20 per second on a small
	// machine: too slow for load tests of hundreds of sessions.
	HighPerformance bool

	// MaxSessions is how many logged-in IMAP sessions the server must hold
	// at once (load tests). Zero keeps Dovecot's defaults: one imap process
	// per session, at most 1024 (1000 with HighPerformance), and 1000
	// sessions of one user from one address (mail_max_userip_connections).
	// Above that each imap process serves up to SessionsPerProcess sessions
	// (service imap's client_limit), with processes enough for MaxSessions,
	// one user may hold them all from 127.0.0.1, and logins run in
	// HighPerformance's mode.
	MaxSessions int

	// Separator is the hierarchy separator of the personal namespace; ""
	// keeps the storage's own (maildir: "."). With "/" names may not hold
	// "." (Maildir++ stores levels as ".a.b"), as on many installations:
	// tests of how names split use it.
	Separator string

	// LayoutFS stores mailboxes one directory a hierarchy level
	// (maildir LAYOUT=fs, separator "/"), not Maildir++'s one directory a
	// mailbox, whose name the file system holds to 255 bytes: tests of
	// mailbox names over a kilobyte use it.
	LayoutFS bool

	// ExtraNamespaces is configuration text added after the personal
	// namespace: further namespace blocks, e.g. a hidden alias
	// (alias_for) that Dovecot's documentation gives for clients that
	// used another server's prefix, which NAMESPACE does not announce.
	ExtraNamespaces string
}

// SessionsPerProcess is service imap's client_limit with Options.MaxSessions:
// an imap process holds that many sessions, so that thousands of sessions
// need tens of processes rather than thousands.
const SessionsPerProcess = 50

// Server is a running private Dovecot. Its exported fields are fixed for the
// Server's life, across Kill and Restart.
type Server struct {
	Addr    string // plain IMAP with STARTTLS offered, "127.0.0.1:port"
	TLSAddr string // implicit TLS (imaps), "127.0.0.1:port"
	CAFile  string // PEM CA that signed the server certificate ("localhost", 127.0.0.1, ::1)
	Dir     string // the temporary directory holding everything below
	LogPath string // Dovecot's log (errors and info, auth_verbose = yes)

	Users                      map[string]string
	MasterUser, MasterPassword string

	dovecot    string // binary path
	confPath   string
	stderrPath string // the master's own stdout/stderr, for errors before logging starts
	haproxy    bool
	caPool     *x509.CertPool

	mu   sync.Mutex
	proc *proc // the running master, nil after Kill or stop
}

// proc is one run of the master process.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd.Wait has returned
	err  error         // cmd.Wait's result; read only after done is closed
}

// Start starts a private Dovecot configured by opts and waits until the plain
// port greets with "* OK" and the TLS port completes a verified handshake. The
// test's Cleanup stops it (SIGTERM, then SIGKILL after 5 s) and removes Dir.
// On failure Start ends the test with the tail of Dovecot's log.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin := Require(t)

	s := &Server{
		Users:          maps.Clone(opts.Users),
		MasterUser:     opts.MasterUser,
		MasterPassword: opts.MasterPassword,
		dovecot:        bin,
		haproxy:        opts.HAProxyTrusted != "",
	}
	if s.Users == nil {
		s.Users = DefaultUsers()
	}
	if s.MasterUser == "" {
		s.MasterUser = DefaultMasterUser
	}
	if s.MasterPassword == "" {
		s.MasterPassword = DefaultMasterPassword
	}
	trusted := opts.TrustedNetworks
	if trusted == "" {
		trusted = DefaultTrustedNetworks
	}
	if _, ok := s.Users[s.MasterUser]; ok {
		t.Fatalf("dovecottest: master user %q is also a regular user", s.MasterUser)
	}
	for name, pw := range s.Users {
		if err := checkPasswdField(name, pw); err != nil {
			t.Fatalf("dovecottest: user %q: %v", name, err)
		}
	}
	if err := checkPasswdField(s.MasterUser, s.MasterPassword); err != nil {
		t.Fatalf("dovecottest: master user %q: %v", s.MasterUser, err)
	}
	if len(opts.Separator) > 1 || (opts.Separator != "" && (opts.Separator[0] <= ' ' || opts.Separator[0] >= 0x7f)) {
		t.Fatalf("dovecottest: Separator %q is not one printable character", opts.Separator)
	}
	// Dovecot 2.3's imap-login crashes (SIGSEGV, in a restart loop) on a
	// malformed network list instead of reporting it: check here.
	if err := checkNetworks(trusted); err != nil {
		t.Fatalf("dovecottest: TrustedNetworks: %v", err)
	}
	if err := checkNetworks(opts.HAProxyTrusted); err != nil {
		t.Fatalf("dovecottest: HAProxyTrusted: %v", err)
	}
	if opts.MaxSessions < 0 {
		t.Fatalf("dovecottest: MaxSessions %d is negative", opts.MaxSessions)
	}

	id, err := lookupIdentity()
	if err != nil {
		t.Fatalf("dovecottest: %v", err)
	}

	dir, err := shortTempDir()
	if err != nil {
		t.Fatalf("dovecottest: %v", err)
	}
	// Registered before the server's own Cleanup, so it runs after the
	// server is stopped (Cleanup is LIFO) and no process writes into a
	// directory being removed.
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	s.Dir = dir
	s.LogPath = filepath.Join(dir, "dovecot.log")
	s.confPath = filepath.Join(dir, "dovecot.conf")
	s.stderrPath = filepath.Join(dir, "dovecot.stderr")

	certFile, keyFile, err := s.prepareDir(id)
	if err != nil {
		t.Fatalf("dovecottest: %v", err)
	}

	// The server's Cleanup is registered before the first start: if Start
	// fails half-way, whatever is running is still stopped.
	t.Cleanup(s.stop)

	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		ports, err := pickPorts(2)
		if err != nil {
			t.Fatalf("dovecottest: %v", err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
		s.TLSAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
		conf := renderConfig(configParams{
			dir:                  dir,
			certFile:             certFile,
			keyFile:              keyFile,
			imapPort:             ports[0],
			imapsPort:            ports[1],
			trustedNetworks:      trusted,
			haproxyTrusted:       opts.HAProxyTrusted,
			disablePlaintextAuth: opts.DisablePlaintextAuth,
			acl:                  opts.ACL,
			highPerformance:      opts.HighPerformance,
			maxSessions:          opts.MaxSessions,
			separator:            opts.Separator,
			layoutFS:             opts.LayoutFS,
			extraNamespaces:      opts.ExtraNamespaces,
			id:                   id,
		})
		if err := os.WriteFile(s.confPath, []byte(conf), 0o644); err != nil {
			t.Fatalf("dovecottest: %v", err)
		}
		// A fresh log per attempt, so a failure report shows this attempt.
		_ = os.Remove(s.LogPath)

		lastErr = s.launch()
		if lastErr == nil {
			return s
		}
		if !strings.Contains(s.failureText(), "Address already in use") {
			break
		}
		t.Logf("dovecottest: port taken before Dovecot bound it, retrying (%d/%d)", attempt, startAttempts)
	}
	t.Fatalf("dovecottest: start: %v\n%s", lastErr, s.failureText())
	return nil
}

// Kill sends SIGKILL to the master and all its children (its process group),
// as if the backend host died, and returns once neither port accepts
// connections. Open client connections see a reset or EOF. Restart brings the
// server back.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	if p == nil {
		return
	}
	s.proc = nil
	killGroup(p)
	<-p.done
	// The kernel closes a process's sockets as it exits, but the group's
	// children are reaped by init, not by us: wait until the listeners are
	// really gone, so a test that checks "connection refused" is not racy.
	deadline := time.Now().Add(stopGrace)
	for time.Now().Before(deadline) && (accepts(s.Addr) || accepts(s.TLSAddr)) {
		time.Sleep(10 * time.Millisecond)
	}
}

// Freeze stops the master and all its children with SIGSTOP, as a hung
// host would be, and returns once the master is stopped: the kernel still
// completes TCP handshakes (up to the listen backlog) but nothing greets
// or answers. Thaw resumes it; Kill, Restart and the test's Cleanup work
// on a frozen server too.
func (s *Server) Freeze() {
	s.signalGroup(syscall.SIGSTOP)
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil {
		return
	}
	// A signal is delivered asynchronously: wait for the stop to show.
	deadline := time.Now().Add(stopGrace)
	for !stopped(p.cmd.Process.Pid) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

// stopped reports whether process pid is stopped by a signal (state T in
// /proc/PID/stat, proc(5)).
func stopped(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'T'
}

// Thaw resumes a frozen server (SIGCONT).
func (s *Server) Thaw() { s.signalGroup(syscall.SIGCONT) }

func (s *Server) signalGroup(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		_ = syscall.Kill(-s.proc.cmd.Process.Pid, sig)
	}
}

// Restart starts the server again with the same ports, configuration, users
// and mail, after Kill or while running (then it stops it gracefully first).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.stop()
	if err := s.launch(); err != nil {
		t.Fatalf("dovecottest: restart: %v\n%s", err, s.failureText())
	}
}

// Log returns Dovecot's log so far ("" if nothing was written yet). Each
// start adds two "Disconnected ... no auth attempts" lines from 127.0.0.1:
// the readiness probes of the plain and the TLS port.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.LogPath)
	return string(b)
}

// WaitLog waits up to timeout for the log to contain substr and returns the
// log. Dovecot's processes log through the master's log process, so a line
// may appear shortly after the event that caused it. It fails the test on
// timeout.
func (s *Server) WaitLog(t testing.TB, substr string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		l := s.Log()
		if strings.Contains(l, substr) {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("dovecottest: log does not contain %q after %v:\n%s", substr, timeout, tail(l, 30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Deliver adds msg (an RFC 5322 message; use CRLF line endings for sizes to
// match what IMAP reports) to user's mailbox, creating and subscribing the
// mailbox if it is missing. It uses `doveadm save`, which streams msg from
// stdin (5 MB messages are fine) and needs the server running (doveadm asks
// the auth process for the user).
func (s *Server) Deliver(t testing.TB, user, mailbox string, msg []byte) {
	t.Helper()
	if !strings.EqualFold(mailbox, "INBOX") {
		out, err := s.doveadm(nil, "mailbox", "create", "-s", "-u", user, mailbox)
		if err != nil && !strings.Contains(out, "already exists") {
			t.Fatalf("dovecottest: doveadm mailbox create %q for %q: %v\n%s", mailbox, user, err, out)
		}
	}
	if out, err := s.doveadm(bytes.NewReader(msg), "save", "-u", user, "-m", mailbox); err != nil {
		t.Fatalf("dovecottest: doveadm save to %q for %q: %v\n%s", mailbox, user, err, out)
	}
}

func (s *Server) doveadm(stdin *bytes.Reader, args ...string) (string, error) {
	bin, err := findBinary("doveadm")
	if err != nil {
		return "", err
	}
	cmd := exec.Command(bin, append([]string{"-c", s.confPath}, args...)...)
	cmd.Env = childEnv()
	cmd.Dir = s.Dir
	if stdin != nil {
		cmd.Stdin = stdin
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// launch starts the master and waits for readiness. The server must be
// stopped; launch takes s.mu itself.
func (s *Server) launch() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return errors.New("already running")
	}
	// A master that was SIGKILLed leaves master.pid behind; if its PID has
	// since been reused, Dovecot would refuse to start ("already running").
	_ = os.Remove(filepath.Join(s.Dir, "run", "master.pid"))

	// Only log lines written from now on count for readiness (the log
	// keeps growing across Kill and Restart).
	var logOffset int64
	if fi, err := os.Stat(s.LogPath); err == nil {
		logOffset = fi.Size()
	}

	errf, err := os.OpenFile(s.stderrPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer errf.Close() // the child has its own copy
	cmd := exec.Command(s.dovecot, "-F", "-c", s.confPath)
	// An *os.File (not a pipe and a copying goroutine) so that Wait does not
	// hang on children that inherited the descriptor.
	cmd.Stdout = errf
	cmd.Stderr = errf
	cmd.Env = childEnv()
	cmd.Dir = s.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group: Kill signals the master and every child.
		Setpgid: true,
		// If the test binary dies without running Cleanup (a panic, the
		// go test timeout), the master still shuts down (and stops its
		// children) instead of holding ports forever. (Linux ties this to
		// the forking thread; Go ends a thread only when a goroutine exits
		// while locked to it with runtime.LockOSThread.)
		Pdeathsig: syscall.SIGTERM,
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.proc = p

	if err := s.waitReady(p, logOffset); err != nil {
		s.proc = nil
		killGroup(p)
		<-p.done
		return err
	}
	return nil
}

// stop ends the running master, if any: SIGTERM (Dovecot then stops its
// children), SIGKILL to the whole group after stopGrace, and a final SIGKILL
// to the group for any child still exiting.
func (s *Server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	if p == nil {
		return
	}
	s.proc = nil
	// A frozen server (Freeze) must run to hear SIGTERM.
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGCONT)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
	}
	killGroup(p)
	<-p.done
}

// killGroup SIGKILLs the process group led by p's master. ESRCH (the group is
// already gone) is fine.
func killGroup(p *proc) {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}

// waitReady polls until the plain port greets "* OK" and a TLS handshake
// verified against CAFile succeeds on the TLS port. It gives up when the
// master exits, when a process logs a Fatal error after logOffset (a broken
// setting makes the master restart crashing children with growing delays,
// never exit), or after startTimeout.
func (s *Server) waitReady(p *proc, logOffset int64) error {
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("dovecot exited during start: %v", p.err)
		default:
		}
		if l := s.Log(); int64(len(l)) > logOffset && strings.Contains(l[logOffset:], " Fatal: ") {
			return errors.New("dovecot logged a fatal error during start")
		}
		err := s.probe(p, s.Addr, false)
		if err == nil {
			err = s.probe(p, s.TLSAddr, true)
		}
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %v", startTimeout, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// proxyV2Local is a PROXY protocol v2 header with the LOCAL command: "this
// connection is the proxy's own" (a health check), which Dovecot accepts from
// haproxy_trusted_networks without an address block.
var proxyV2Local = []byte("\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00")

// probe connects to addr and expects an IMAP greeting. It gives up early when
// p's master exits: after losing the port race, addr may belong to another
// process that accepts but never greets.
func (s *Server) probe(p *proc, addr string, useTLS bool) error {
	raw, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer raw.Close()
	probeDone := make(chan struct{})
	defer close(probeDone)
	go func() {
		select {
		case <-p.done:
			raw.Close()
		case <-probeDone:
		}
	}()
	var c net.Conn = raw
	// Generous for a greeting over loopback even on a loaded machine; a
	// probe that times out is simply retried until startTimeout.
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if s.haproxy {
		if _, err := c.Write(proxyV2Local); err != nil {
			return err
		}
	}
	if useTLS {
		tc := tls.Client(c, &tls.Config{RootCAs: s.caPool, ServerName: "localhost"})
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("TLS handshake with %s: %w", addr, err)
		}
		c = tc
	}
	greeting, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("greeting from %s: %w", addr, err)
	}
	if !strings.HasPrefix(greeting, "* OK") {
		return fmt.Errorf("greeting from %s: %q", addr, greeting)
	}
	return nil
}

// accepts reports whether something accepts TCP connections on addr.
func accepts(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// failureText is what a failed start reports: the master's stderr (errors
// from before it opened its log, such as config syntax errors) and the tail
// of the log.
func (s *Server) failureText() string {
	var b strings.Builder
	if e, _ := os.ReadFile(s.stderrPath); len(bytes.TrimSpace(e)) > 0 {
		fmt.Fprintf(&b, "--- dovecot stderr ---\n%s\n", tail(string(e), 30))
	}
	// The first errors explain more than the tail, which a crash loop fills
	// with its echoes.
	var errs []string
	for _, l := range strings.Split(s.Log(), "\n") {
		if len(errs) < 5 && (strings.Contains(l, " Fatal: ") || strings.Contains(l, " Error: ")) {
			errs = append(errs, l)
		}
	}
	if len(errs) > 0 {
		fmt.Fprintf(&b, "--- first errors in %s ---\n%s\n", s.LogPath, strings.Join(errs, "\n"))
	}
	fmt.Fprintf(&b, "--- %s (tail) ---\n%s", s.LogPath, tail(s.Log(), 40))
	return b.String()
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// childEnv is the environment of dovecot and doveadm. The master drops
// everything but import_environment anyway; a minimal PATH keeps the test's
// own variables (GOFLAGS, CI, ...) out of Dovecot entirely.
func childEnv() []string {
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	if tz, ok := os.LookupEnv("TZ"); ok {
		env = append(env, "TZ="+tz)
	}
	return env
}

// shortTempDir makes a 0755 directory whose path leaves room for base_dir's
// socket names within sun_path.
func shortTempDir() (string, error) {
	parent := os.TempDir()
	if len(parent) > maxTempParent {
		parent = "/tmp"
	}
	dir, err := os.MkdirTemp(parent, "dvt")
	if err != nil {
		return "", err
	}
	// MkdirTemp makes 0700; Dovecot's unprivileged users must traverse it.
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// pickPorts is freePorts; tests replace it to force a port clash.
var pickPorts = freePorts

// freePorts returns n distinct free TCP ports on 127.0.0.1. All listeners
// stay open until every port is chosen, so the n ports differ.
func freePorts(n int) ([]int, error) {
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

// identity is who runs what: Dovecot needs distinct unprivileged users when
// started as root, and runs everything as the caller otherwise.
type identity struct {
	root          bool
	mailUID       int // owner of all mail (mail_uid, userdb uid)
	mailGID       int
	loginUser     string // default_login_user: imap-login processes
	internalUser  string // default_internal_user: auth, anvil, stats, ...
	internalGroup string
	internalGID   int // group that may read the passwd files
}

func lookupIdentity() (identity, error) {
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			return identity{}, err
		}
		g, err := user.LookupGroupId(strconv.Itoa(os.Getegid()))
		if err != nil {
			return identity{}, err
		}
		return identity{
			mailUID:       os.Geteuid(),
			mailGID:       os.Getegid(),
			loginUser:     u.Username,
			internalUser:  u.Username,
			internalGroup: g.Name,
			internalGID:   os.Getegid(),
		}, nil
	}
	id := identity{root: true, loginUser: "dovenull", internalUser: "dovecot", internalGroup: "dovecot"}
	// dovecot and dovenull are created by Debian's dovecot-core postinst.
	for _, name := range []string{id.loginUser, id.internalUser} {
		if _, err := user.Lookup(name); err != nil {
			return identity{}, fmt.Errorf("system user %q (created by the dovecot-core package) is missing: %v", name, err)
		}
	}
	g, err := user.LookupGroup(id.internalGroup)
	if err != nil {
		return identity{}, fmt.Errorf("system group %q (created by the dovecot-core package) is missing: %v", id.internalGroup, err)
	}
	id.internalGID, _ = strconv.Atoi(g.Gid)
	// Mail belongs to nobody: unprivileged, present on every Linux system,
	// and owning nothing else that Dovecot could touch.
	u, err := user.Lookup("nobody")
	if err != nil {
		return identity{}, fmt.Errorf("user nobody: %v", err)
	}
	id.mailUID, _ = strconv.Atoi(u.Uid)
	id.mailGID, _ = strconv.Atoi(u.Gid)
	return id, nil
}

// prepareDir writes the certificates and passwd files and makes the mail
// root. It returns the certificate and key paths.
func (s *Server) prepareDir(id identity) (certFile, keyFile string, err error) {
	// Each Server has its own CA, so a test can never trust another
	// test's server by accident; the leaf names localhost and loopback, so
	// tests verify Dovecot as the proxy verifies a real backend.
	ca, err := tlsterm.NewCA()
	if err != nil {
		return "", "", err
	}
	if s.CAFile, err = ca.WriteCA(s.Dir); err != nil {
		return "", "", err
	}
	cf, err := ca.WriteFiles(s.Dir, "cert", []string{"localhost", "127.0.0.1", "::1"})
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = cf.Cert, cf.Key
	s.caPool = ca.Pool()

	// {PLAIN} passwords: tests know them anyway, and a plaintext scheme keeps
	// every SASL mechanism usable.
	var users, masters strings.Builder
	names := make([]string, 0, len(s.Users))
	for name := range s.Users {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(&users, "%s:{PLAIN}%s\n", name, s.Users[name])
	}
	fmt.Fprintf(&masters, "%s:{PLAIN}%s\n", s.MasterUser, s.MasterPassword)
	for file, content := range map[string]string{"users": users.String(), "masters": masters.String()} {
		path := filepath.Join(s.Dir, file)
		// The auth process runs as default_internal_user; readable by its
		// group only, like Debian's own /etc/dovecot/users would be.
		if err := os.WriteFile(path, []byte(content), 0o640); err != nil {
			return "", "", err
		}
		if err := os.Chown(path, -1, id.internalGID); err != nil {
			return "", "", err
		}
	}

	// Dovecot creates each user's home under here as mail_uid on first use.
	for _, sub := range []string{"home", "run", "state"} {
		if err := os.Mkdir(filepath.Join(s.Dir, sub), 0o755); err != nil {
			return "", "", err
		}
	}
	if err := os.Chown(filepath.Join(s.Dir, "home"), id.mailUID, id.mailGID); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// checkNetworks accepts a space-separated list of IPs and CIDR ranges, the
// format of login_trusted_networks and haproxy_trusted_networks.
func checkNetworks(list string) error {
	for _, f := range strings.Fields(list) {
		if _, _, err := net.ParseCIDR(f); err == nil {
			continue
		}
		if net.ParseIP(f) == nil {
			return fmt.Errorf("%q is neither an IP address nor a CIDR range", f)
		}
	}
	return nil
}

// checkPasswdField rejects what would break a passwd-file line or a home
// directory path.
func checkPasswdField(name, pw string) error {
	if name == "" || strings.ContainsAny(name, ":/\r\n\x00 ") || name == "." || name == ".." {
		return errors.New("invalid user name")
	}
	if strings.ContainsAny(pw, ":\r\n\x00") {
		return errors.New("password must not contain ':' or line breaks")
	}
	return nil
}
