// Package cyrustest starts a private, throwaway Cyrus IMAP server for tests
// that need a real backend other than Dovecot. Its API mirrors
// internal/dovecottest.
//
// Each Server is a separate Cyrus master run from the tree that
// .ci/install-backends.sh unpacks (Debian's cyrus-imapd, never installed:
// it conflicts with the dovecot-imapd the suite needs). Its imapd.conf,
// cyrus.conf, databases, spool, SASL users, certificates and log live in one
// short temporary directory; it listens on 127.0.0.1 ephemeral ports: plain
// IMAP with STARTTLS on Addr, implicit TLS on TLSAddr.
//
// Implementation notes, the facts the configuration depends on:
//
//   - master starts as root and runs everything as the "cyrus" user (group
//     mail), which the install script creates. Everything master's children
//     read or write belongs to cyrus:mail.
//   - master does not pass -C on to the services it starts, so every
//     command in cyrus.conf carries -C itself, with an absolute path
//     (service_path is not honoured by this build).
//   - idled (in the DAEMON section) makes IDLE push: without it imapd polls
//     for changes only every imapidlepoll (60 s).
//   - Users live in a private sasldb (saslpasswd2 -f) in the realm
//     "localhost", Cyrus's servername, which is also the SASL realm it looks
//     users up in. INBOX is created at a user's first login
//     (autocreate_quota: 0, as in Debian's imapd.conf).
//   - Cyrus logs only through syslog(3), to /dev/log, and this machine runs
//     no syslog daemon. The server runs in private mount and PID namespaces
//     (internal/backendtest) whose /dev is a private directory with the few
//     devices Cyrus opens and, as /dev/log, a datagram socket this package
//     reads into LogPath.
//
// Stopping sends SIGTERM to master, which stops its children; the end of its
// PID namespace guarantees nothing survives. Start takes about 0.3 s.
package cyrustest

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/backendtest"
	"github.com/imapwarden/imapwarden/tlsterm"
)

// Defaults applied by Start to zero Options fields.
const (
	DefaultMasterUser     = "proxymaster"
	DefaultMasterPassword = "master-pw"
)

// DefaultUsers returns the users a zero Options creates. It returns a new map
// each time so a caller may change it.
func DefaultUsers() map[string]string {
	return map[string]string{"alice": "alice-pw", "bob": "bob-pw"}
}

const (
	// startTimeout bounds how long Start and Restart wait for both ports.
	// Cyrus is up in about 0.2 s; the margin is for a loaded CI machine.
	startTimeout = 30 * time.Second
	// stopGrace is how long a SIGTERMed master gets before SIGKILL.
	stopGrace = 5 * time.Second
	// startAttempts: ports are picked by binding :0 and closing, so another
	// process may take one before master binds it. Rare; retry with new ports.
	startAttempts = 3
)

// tree returns the unpacked Cyrus tree.
func tree() string { return filepath.Join(backendtest.Root(), "cyrus") }

// binDir holds master, imapd, idled, ctl_cyrusdb.
func binDir() string { return filepath.Join(tree(), "usr/lib/cyrus/bin") }

// libPath is LD_LIBRARY_PATH for the tree's binaries: Cyrus's own shared
// libraries (libcyrus*.so) are in the tree, the rest are installed.
func libPath() string {
	dirs, _ := filepath.Glob(filepath.Join(tree(), "usr/lib/*-linux-gnu"))
	return strings.Join(dirs, ":")
}

func saslpasswd2() string { return filepath.Join(tree(), "usr/sbin/saslpasswd2") }

// check reports why Cyrus cannot run here, or nil.
func check() error {
	if err := backendtest.CheckRoot(); err != nil {
		return err
	}
	bin := binDir()
	if err := backendtest.CheckFiles(filepath.Join(bin, "master"), filepath.Join(bin, "imapd"),
		filepath.Join(bin, "idled"), filepath.Join(bin, "ctl_cyrusdb"), saslpasswd2()); err != nil {
		return fmt.Errorf("the Cyrus tree is incomplete: %v", err)
	}
	if _, err := user.Lookup("cyrus"); err != nil {
		return fmt.Errorf("system user cyrus is missing: %v", err)
	}
	if _, err := user.LookupGroup("mail"); err != nil {
		return fmt.Errorf("group mail is missing: %v", err)
	}
	return nil
}

// Require skips the test when Cyrus cannot run here (not unpacked under
// backendtest.Root(), or not root). With CI=true in the environment it fails
// the test instead: CI installs Cyrus, so a skip there would hide that the
// tests never ran.
func Require(t testing.TB) {
	t.Helper()
	backendtest.Require(t, "cyrustest", check())
}

// Options configures a Server. The zero value is a working default.
type Options struct {
	// Users maps user name to password; nil means DefaultUsers(). Names are
	// letters, digits, '-' and '_' (Cyrus maps '.' in names, the hierarchy
	// separator, to '^'); passwords must not contain CR, LF or NUL.
	Users map[string]string

	// MasterUser and MasterPassword define a user listed in proxyservers:
	// AUTHENTICATE PLAIN with authzid "alice", authcid MasterUser and
	// MasterPassword logs in as alice. Empty means DefaultMasterUser /
	// DefaultMasterPassword.
	MasterUser, MasterPassword string

	// DisablePlaintextAuth sets allowplaintext: no. Cyrus then offers no
	// AUTH= and answers LOGIN with NO until STARTTLS. Off by default, as the
	// proxy may log in over plain loopback.
	DisablePlaintextAuth bool
}

// Server is a running private Cyrus. Its exported fields are fixed for the
// Server's life, across Kill and Restart.
type Server struct {
	Addr    string // plain IMAP with STARTTLS offered, "127.0.0.1:port"
	TLSAddr string // implicit TLS (imaps), "127.0.0.1:port"
	CAFile  string // PEM CA that signed the server certificate ("localhost", 127.0.0.1, ::1)
	Dir     string // the temporary directory holding everything below
	LogPath string // Cyrus's syslog lines, without the priority prefix

	Users                      map[string]string
	MasterUser, MasterPassword string

	launcher   string // launch.sh
	stderrPath string // the launcher's and master's stdout/stderr
	caPool     *x509.CertPool
	syslog     *syslogSink

	lc backendtest.Lifecycle // the running master
}

// "." is allowed: Cyrus writes it as "^" in mailbox names (unixhierarchysep
// off), which the proxy must read as the login name; "^" and non-ASCII
// letters too, which Cyrus refuses (as a mailbox owner, as a login).
var userNameRE = regexp.MustCompile(`^[\pL\pN_][\pL\pN_.^-]*$`)

func checkUser(name, pw string) error {
	if !userNameRE.MatchString(name) {
		return errors.New("invalid user name")
	}
	if strings.ContainsAny(pw, "\r\n\x00") || pw == "" {
		return errors.New("password must be non-empty, without CR, LF or NUL")
	}
	return nil
}

// Start starts a private Cyrus configured by opts and waits until the plain
// port greets with "* OK" and the TLS port completes a verified handshake. The
// test's Cleanup stops it and removes Dir. On failure Start ends the test
// with the tail of Cyrus's log.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	Require(t)

	s := &Server{
		Users:          maps.Clone(opts.Users),
		MasterUser:     opts.MasterUser,
		MasterPassword: opts.MasterPassword,
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
	if _, ok := s.Users[s.MasterUser]; ok {
		t.Fatalf("cyrustest: master user %q is also a regular user", s.MasterUser)
	}
	for name, pw := range s.Users {
		if err := checkUser(name, pw); err != nil {
			t.Fatalf("cyrustest: user %q: %v", name, err)
		}
	}
	if err := checkUser(s.MasterUser, s.MasterPassword); err != nil {
		t.Fatalf("cyrustest: master user %q: %v", s.MasterUser, err)
	}

	dir, err := backendtest.ShortTempDir("cyt")
	if err != nil {
		t.Fatalf("cyrustest: %v", err)
	}
	// Registered before the server's own Cleanup, so it runs after the
	// server is stopped (Cleanup is LIFO).
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	s.Dir = dir
	s.LogPath = filepath.Join(dir, "cyrus.log")
	s.launcher = filepath.Join(dir, "launch.sh")
	s.stderrPath = filepath.Join(dir, "master.out")

	params := configParams{
		dir:                  dir,
		bin:                  binDir(),
		masterUser:           s.MasterUser,
		disablePlaintextAuth: opts.DisablePlaintextAuth,
	}
	if err := s.prepareDir(&params); err != nil {
		t.Fatalf("cyrustest: %v", err)
	}
	s.syslog, err = listenSyslog(filepath.Join(dir, "dev", "log"), s.LogPath)
	if err != nil {
		t.Fatalf("cyrustest: %v", err)
	}
	t.Cleanup(func() { s.syslog.Close() })

	// The server's Cleanup is registered before the first start: if Start
	// fails half-way, whatever is running is still stopped.
	t.Cleanup(s.stop)

	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		ports, err := pickPorts(2)
		if err != nil {
			t.Fatalf("cyrustest: %v", err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
		s.TLSAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
		if err := os.WriteFile(filepath.Join(dir, "cyrus.conf"), []byte(renderCyrusConf(params, ports[0], ports[1])), 0o644); err != nil {
			t.Fatalf("cyrustest: %v", err)
		}
		lastErr = s.launch()
		if lastErr == nil {
			return s
		}
		if !strings.Contains(s.failureText(), "Address already in use") {
			break
		}
		t.Logf("cyrustest: port taken before Cyrus bound it, retrying (%d/%d)", attempt, startAttempts)
	}
	t.Fatalf("cyrustest: start: %v\n%s", lastErr, s.failureText())
	return nil
}

// pickPorts is backendtest.FreePorts; tests replace it to force a port clash.
var pickPorts = backendtest.FreePorts

// prepareDir writes the certificate, the SASL users, imapd.conf and the
// launcher, and makes the directories Cyrus expects.
func (s *Server) prepareDir(p *configParams) error {
	cyrus, err := user.Lookup("cyrus")
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(cyrus.Uid)
	mail, err := user.LookupGroup("mail")
	if err != nil {
		return err
	}
	gid, _ := strconv.Atoi(mail.Gid)

	// Each Server has its own CA, so a test can never trust another test's
	// server by accident; the leaf names localhost and loopback.
	ca, err := tlsterm.NewCA()
	if err != nil {
		return err
	}
	if s.CAFile, err = ca.WriteCA(s.Dir); err != nil {
		return err
	}
	cf, err := ca.WriteFiles(s.Dir, "cert", []string{"localhost", "127.0.0.1", "::1"})
	if err != nil {
		return err
	}
	s.caPool = ca.Pool()
	p.certFile, p.keyFile = cf.Cert, cf.Key
	// imapd reads the key as cyrus.
	if err := os.Chown(cf.Key, uid, gid); err != nil {
		return err
	}

	// Cyrus creates files in these, but not the directories themselves.
	for _, sub := range []string{"conf", "conf/db", "conf/socket", "conf/proc", "conf/lock",
		"conf/log", "conf/msg", "conf/user", "conf/quota", "conf/sieve", "conf/ptclient", "conf/sync", "spool"} {
		path := filepath.Join(s.Dir, sub)
		if err := os.Mkdir(path, 0o750); err != nil {
			return err
		}
		if err := os.Chown(path, uid, gid); err != nil {
			return err
		}
	}
	// The private /dev: mount points for the host's devices, the usual
	// symlinks; the log socket comes from listenSyslog.
	devDir := filepath.Join(s.Dir, "dev")
	if err := os.Mkdir(devDir, 0o755); err != nil {
		return err
	}
	for _, n := range devNodes {
		if err := os.WriteFile(filepath.Join(devDir, n), nil, 0o644); err != nil {
			return err
		}
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
		"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(target, filepath.Join(devDir, name)); err != nil {
			return err
		}
	}

	if err := s.writeSASLDB(uid, gid); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "imapd.conf"), []byte(renderImapdConf(*p)), 0o644); err != nil {
		return err
	}
	return os.WriteFile(s.launcher, []byte(renderLauncher(*p, libPath())), 0o644)
}

// writeSASLDB creates the sasldb with every user and the master user, in
// Cyrus's realm, readable by cyrus only.
func (s *Server) writeSASLDB(uid, gid int) error {
	db := filepath.Join(s.Dir, "sasldb2")
	users := maps.Clone(s.Users)
	users[s.MasterUser] = s.MasterPassword
	names := make([]string, 0, len(users))
	for name := range users {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		// -p: the password comes from stdin, whole (no newline).
		cmd := exec.Command(saslpasswd2(), "-p", "-c", "-f", db, "-u", servername, name)
		cmd.Env = backendtest.ChildEnv("LD_LIBRARY_PATH=" + libPath())
		cmd.Stdin = strings.NewReader(users[name])
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("saslpasswd2 %s: %v\n%s", name, err, out)
		}
	}
	if err := os.Chown(db, uid, gid); err != nil {
		return err
	}
	return os.Chmod(db, 0o640)
}

// launch starts master in its namespaces and waits for readiness. The
// server must be stopped.
func (s *Server) launch() error {
	return s.lc.Launch(backendtest.LaunchSpec{
		Script: s.launcher, Dir: s.Dir, Env: backendtest.ChildEnv(),
		Output: func() (*os.File, error) {
			return os.OpenFile(s.stderrPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		},
		Log: s.Log, Bad: []string{"Address already in use", "fatal error", "can't run startup"}, Label: "cyrus",
		Addr: s.Addr, TLSAddr: s.TLSAddr, Pool: s.caPool, Timeout: startTimeout,
	})
}

// stop ends the running master, if any: SIGTERM (master stops its
// children), then SIGKILL to the namespace after stopGrace.
func (s *Server) stop() { s.lc.Stop(stopGrace) }

// Kill SIGKILLs master and every process of the server at once, as if the
// backend host died, and returns once neither port accepts connections. Open
// client connections see a reset or EOF. Restart brings the server back.
func (s *Server) Kill() { s.lc.Kill(stopGrace) }

// Restart starts the server again with the same ports, configuration, users
// and mail, after Kill or while running (then it stops it gracefully first).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.stop()
	if err := s.launch(); err != nil {
		t.Fatalf("cyrustest: restart: %v\n%s", err, s.failureText())
	}
}

// running returns the running master (nil when stopped), for tests.
func (s *Server) running() *backendtest.Proc { return s.lc.Running() }

// Log returns Cyrus's log so far ("" if nothing was written yet): one line
// per syslog message, such as "Nov 26 15:35:23 cyrustest/imap[26005]: login:
// localhost [127.0.0.1] alice plaintext+TLS User logged in SESSIONID=<...>".
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.LogPath)
	return string(b)
}

// WaitLog waits up to timeout for the log to contain substr and returns the
// log. It fails the test on timeout.
func (s *Server) WaitLog(t testing.TB, substr string, timeout time.Duration) string {
	t.Helper()
	return backendtest.WaitLog(t, "cyrustest", s.Log, substr, timeout)
}

// MailboxName returns mailbox as Cyrus names it for its owner: "INBOX" and
// names under "INBOX." as they are, any other name under the personal
// namespace prefix ("Archive" is "INBOX.Archive").
func MailboxName(mailbox string) string {
	if strings.EqualFold(mailbox, "INBOX") || strings.HasPrefix(strings.ToUpper(mailbox), "INBOX.") {
		return mailbox
	}
	return "INBOX." + mailbox
}

// Deliver adds msg (an RFC 5322 message; use CRLF line endings for sizes to
// match what IMAP reports) to user's mailbox (see MailboxName), creating and
// subscribing the mailbox if it is missing. It logs in as user over implicit
// TLS and APPENDs, which streams messages of several MB, and needs the
// server running. It fails the test for a user not in Users.
func (s *Server) Deliver(t testing.TB, user, mailbox string, msg []byte) {
	t.Helper()
	pw, ok := s.Users[user]
	if !ok {
		t.Fatalf("cyrustest: Deliver to unknown user %q", user)
	}
	if err := backendtest.Deliver(s.TLSAddr, s.caPool, user, pw, MailboxName(mailbox), msg); err != nil {
		t.Fatalf("cyrustest: deliver to %q of %q: %v\n%s", mailbox, user, err, backendtest.Tail(s.Log(), 20))
	}
}

// failureText is what a failed start reports: master's stdout/stderr and the
// tail of the log.
func (s *Server) failureText() string {
	var b strings.Builder
	if e, _ := os.ReadFile(s.stderrPath); len(bytes.TrimSpace(e)) > 0 {
		fmt.Fprintf(&b, "--- launcher and master output ---\n%s\n", backendtest.Tail(string(e), 30))
	}
	fmt.Fprintf(&b, "--- %s (tail) ---\n%s", s.LogPath, backendtest.Tail(s.Log(), 40))
	return b.String()
}
