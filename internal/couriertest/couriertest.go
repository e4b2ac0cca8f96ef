// Package couriertest starts a private, throwaway Courier IMAP server for
// tests that need a real backend other than Dovecot. Its API mirrors
// internal/dovecottest.
//
// Each Server is its own set of Courier processes (authdaemond and two
// couriertcpd listeners) run from the tree that .ci/install-backends.sh
// unpacks (Debian's courier-imap and courier-base, never installed:
// courier-imap conflicts with the dovecot-imapd the suite needs; the
// courier-authlib packages, which conflict with nothing, are installed). Its
// configuration, users, maildirs, certificates and log live in one short
// temporary directory; it listens on 127.0.0.1 ephemeral ports: plain IMAP
// with STARTTLS on Addr, implicit TLS on TLSAddr.
//
// Implementation notes, the facts the setup depends on:
//
//   - authdaemond and its userdb module read fixed paths: /etc/courier
//     (authdaemonrc, userdb.dat) and /run/courier/authdaemon/socket, which
//     imaplogin also uses. Each server runs in private mount and PID
//     namespaces (internal/backendtest) where its own directory is
//     bind-mounted over /etc/courier (the install script creates that empty
//     mount point) and a tmpfs over /run. Nothing outside sees either.
//   - Courier's imapd is configured by environment variables (Debian's
//     /etc/courier/imapd, which its init script exports); serverEnv sets them.
//   - The implicit-TLS listener runs couriertls as user courier, so the
//     key-and-certificate file belongs to courier.
//   - IDLE pushes only with IMAP_ENHANCEDIDLE=1, through gamin's gam_server
//     (FAM). gam_server daemonizes (setsid) and is shared per user and
//     GAM_CLIENT_ID: each server gets its own ID, and its PID namespace
//     takes gam_server down with it.
//   - Mail belongs to "nobody"; users are userdb entries with {SHA256}
//     passwords, compiled by makeuserdb.
//   - imaplogin sleeps 5 s before answering a failed LOGIN (hard-coded), so
//     every wrong-password test against Courier takes 5 s.
//
// Everything logs to stderr (Debian pipes it to syslog with courierlogger);
// here it goes to LogPath. Start takes about 0.1 s.
package couriertest

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
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

// DefaultUsers returns the users a zero Options creates. It returns a new map
// each time so a caller may change it.
func DefaultUsers() map[string]string {
	return map[string]string{"alice": "alice-pw", "bob": "bob-pw"}
}

const (
	// startTimeout bounds how long Start and Restart wait for both ports.
	startTimeout = 30 * time.Second
	// stopGrace is how long the SIGTERMed launcher gets before SIGKILL.
	stopGrace = 5 * time.Second
	// startAttempts: ports are picked by binding :0 and closing, so another
	// process may take one first. Rare; retry with new ports.
	startAttempts = 3
)

// tree returns the unpacked Courier tree.
func tree() string { return filepath.Join(backendtest.Root(), "courier") }

// check reports why Courier cannot run here, or nil.
func check() error {
	if err := backendtest.CheckRoot(); err != nil {
		return err
	}
	t := tree()
	if err := backendtest.CheckFiles(t+"/usr/bin/imapd", t+"/usr/lib/courier/courier/imaplogin",
		t+"/usr/sbin/couriertcpd", t+"/usr/bin/couriertls"); err != nil {
		return fmt.Errorf("the Courier tree is incomplete: %v", err)
	}
	if err := backendtest.CheckFiles(authdaemond, makeuserdb, gamServer, etcCourier); err != nil {
		return fmt.Errorf("courier-authlib, courier-authlib-userdb or gamin is not installed: %v", err)
	}
	for _, name := range []string{"courier", "nobody"} {
		if _, err := user.Lookup(name); err != nil {
			return fmt.Errorf("system user %s is missing: %v", name, err)
		}
	}
	return nil
}

// Require skips the test when Courier cannot run here (not unpacked under
// backendtest.Root(), its libraries not installed, or not root). With CI=true
// in the environment it fails the test instead: CI installs Courier, so a skip
// there would hide that the tests never ran.
func Require(t testing.TB) {
	t.Helper()
	backendtest.Require(t, "couriertest", check())
}

// Options configures a Server. The zero value is a working default.
type Options struct {
	// Users maps user name to password; nil means DefaultUsers(). Names are
	// letters, digits, '-' and '_'; passwords must not contain CR, LF or NUL.
	Users map[string]string

	// DisablePlaintextAuth sets IMAP_TLS_REQUIRED=1: Courier then offers
	// LOGINDISABLED and answers LOGIN with NO until STARTTLS. Off by default,
	// as the proxy may log in over plain loopback.
	DisablePlaintextAuth bool

	// SharedFolders turns on virtual shared folders (README.sharedfolders,
	// as Debian's IMAP_SHAREDINDEXFILE does): every user is in the shared
	// index, so a folder whose ACL grants alice (SETACL, maildiracl) is
	// "#shared.bob.Folder" to her. Off by default: a user sees no other
	// user's folders.
	SharedFolders bool
}

// Server is a running private Courier. Its exported fields are fixed for the
// Server's life, across Kill and Restart.
type Server struct {
	Addr    string // plain IMAP with STARTTLS offered, "127.0.0.1:port"
	TLSAddr string // implicit TLS (couriertls), "127.0.0.1:port"
	CAFile  string // PEM CA that signed the server certificate ("localhost", 127.0.0.1, ::1)
	Dir     string // the temporary directory holding everything below
	LogPath string // stderr of every Courier process

	Users map[string]string

	params   launchParams
	launcher string // launch.sh
	caPool   *x509.CertPool

	lc backendtest.Lifecycle // the running launcher
}

var userNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_-]*$`)

func checkUser(name, pw string) error {
	if !userNameRE.MatchString(name) {
		return errors.New("invalid user name")
	}
	if strings.ContainsAny(pw, "\r\n\x00") || pw == "" {
		return errors.New("password must be non-empty, without CR, LF or NUL")
	}
	return nil
}

// Start starts a private Courier configured by opts and waits until the plain
// port greets with "* OK" and the TLS port completes a verified handshake. The
// test's Cleanup stops it and removes Dir. On failure Start ends the test
// with the tail of Courier's log.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	Require(t)

	s := &Server{Users: maps.Clone(opts.Users)}
	if s.Users == nil {
		s.Users = DefaultUsers()
	}
	for name, pw := range s.Users {
		if err := checkUser(name, pw); err != nil {
			t.Fatalf("couriertest: user %q: %v", name, err)
		}
	}

	dir, err := backendtest.ShortTempDir("cot")
	if err != nil {
		t.Fatalf("couriertest: %v", err)
	}
	// Registered before the server's own Cleanup, so it runs after the
	// server is stopped (Cleanup is LIFO).
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	s.Dir = dir
	s.LogPath = filepath.Join(dir, "courier.log")
	s.launcher = filepath.Join(dir, "launch.sh")
	s.params = launchParams{
		dir:                  dir,
		tree:                 tree(),
		disablePlaintextAuth: opts.DisablePlaintextAuth,
		sharedFolders:        opts.SharedFolders,
		gamClientID:          "couriertest-" + filepath.Base(dir),
	}
	if err := s.prepareDir(); err != nil {
		t.Fatalf("couriertest: %v", err)
	}

	// The server's Cleanup is registered before the first start: if Start
	// fails half-way, whatever is running is still stopped.
	t.Cleanup(s.stop)

	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		ports, err := pickPorts(2)
		if err != nil {
			t.Fatalf("couriertest: %v", err)
		}
		s.params.imapPort, s.params.imapsPort = ports[0], ports[1]
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
		s.TLSAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
		if err := os.WriteFile(s.launcher, []byte(renderLauncher(s.params)), 0o644); err != nil {
			t.Fatalf("couriertest: %v", err)
		}
		lastErr = s.launch()
		if lastErr == nil {
			return s
		}
		if !strings.Contains(s.Log(), "Address already in use") {
			break
		}
		t.Logf("couriertest: port taken before Courier bound it, retrying (%d/%d)", attempt, startAttempts)
	}
	t.Fatalf("couriertest: start: %v\n%s", lastErr, s.failureText())
	return nil
}

// pickPorts is backendtest.FreePorts; tests replace it to force a port clash.
var pickPorts = backendtest.FreePorts

// prepareDir writes the private /etc/courier (authdaemonrc, userdb, the
// certificate) and the users' maildirs.
func (s *Server) prepareDir() error {
	nobody, err := user.Lookup("nobody")
	if err != nil {
		return err
	}
	courier, err := user.Lookup("courier")
	if err != nil {
		return err
	}
	courierUID, _ := strconv.Atoi(courier.Uid)
	courierGID, _ := strconv.Atoi(courier.Gid)

	etc := filepath.Join(s.Dir, "etc")
	if err := os.Mkdir(etc, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(etc, "authdaemonrc"), []byte(authdaemonrc), 0o644); err != nil {
		return err
	}

	// Each Server has its own CA, so a test can never trust another test's
	// server by accident; the leaf names localhost and loopback.
	ca, err := tlsterm.NewCA()
	if err != nil {
		return err
	}
	if s.CAFile, err = ca.WriteCA(s.Dir); err != nil {
		return err
	}
	s.caPool = ca.Pool()
	certPEM, keyPEM, err := ca.Issue([]string{"localhost", "127.0.0.1", "::1"}, 24*time.Hour)
	if err != nil {
		return err
	}
	// TLS_CERTFILE holds the key and the certificate; couriertls reads it
	// as courier (implicit TLS) or root (STARTTLS, from imaplogin).
	pemPath := filepath.Join(etc, "imapd.pem")
	if err := os.WriteFile(pemPath, append(keyPEM, certPEM...), 0o600); err != nil {
		return err
	}
	if err := os.Chown(pemPath, courierUID, courierGID); err != nil {
		return err
	}

	// Maildirs, owned by nobody; Courier does not create them.
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	var userdb, index strings.Builder
	names := make([]string, 0, len(s.Users))
	for name := range s.Users {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		home := filepath.Join(s.Dir, "home", name)
		for _, sub := range []string{"", "Maildir", "Maildir/cur", "Maildir/new", "Maildir/tmp"} {
			p := filepath.Join(home, sub)
			if err := os.MkdirAll(p, 0o700); err != nil {
				return err
			}
			if err := os.Chown(p, uid, gid); err != nil {
				return err
			}
		}
		// name, uid, gid, home; the maildir defaults to ./Maildir.
		fmt.Fprintf(&index, "%s\t%d\t%d\t%s\n", name, uid, gid, home)
		sum := sha256.Sum256([]byte(s.Users[name]))
		fmt.Fprintf(&userdb, "%s\tuid=%d|gid=%d|home=%s|mail=%s|systempw={SHA256}%s\n",
			name, uid, gid, home, filepath.Join(home, "Maildir"), base64.StdEncoding.EncodeToString(sum[:]))
	}
	if err := os.Chmod(filepath.Join(s.Dir, "home"), 0o755); err != nil {
		return err
	}
	if s.params.sharedFolders {
		// imapd reads it as the user (nobody) after login.
		if err := os.Mkdir(filepath.Join(etc, "shared"), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(etc, "shared", "index"), []byte(index.String()), 0o644); err != nil {
			return err
		}
	}
	// makeuserdb refuses a userdb readable by group or others.
	userdbPath := filepath.Join(etc, "userdb")
	if err := os.WriteFile(userdbPath, []byte(userdb.String()), 0o600); err != nil {
		return err
	}
	cmd := exec.Command(makeuserdb, "-f", userdbPath)
	cmd.Env = backendtest.ChildEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("makeuserdb: %v\n%s", err, out)
	}
	return nil
}

// launch starts the launcher in its namespaces and waits for readiness.
// The server must be stopped.
func (s *Server) launch() error {
	return s.lc.Launch(backendtest.LaunchSpec{
		Script: s.launcher, Dir: s.Dir, Env: serverEnv(s.params),
		Output: func() (*os.File, error) {
			return os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		},
		Log: s.Log, Bad: []string{"Address already in use", "couriertest:", "mount:"}, Label: "courier",
		Addr: s.Addr, TLSAddr: s.TLSAddr, Pool: s.caPool, Timeout: startTimeout,
	})
}

// stop ends the running server, if any.
func (s *Server) stop() { s.lc.Stop(stopGrace) }

// Kill SIGKILLs every process of the server at once, as if the backend host
// died, and returns once neither port accepts connections. Open client
// connections see a reset or EOF. Restart brings the server back.
func (s *Server) Kill() { s.lc.Kill(stopGrace) }

// Restart starts the server again with the same ports, configuration, users
// and mail, after Kill or while running (then it stops it first).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.stop()
	if err := s.launch(); err != nil {
		t.Fatalf("couriertest: restart: %v\n%s", err, s.failureText())
	}
}

// running returns the running launcher (nil when stopped), for tests.
func (s *Server) running() *backendtest.Proc { return s.lc.Running() }

// Log returns Courier's log so far ("" if nothing was written yet), such as
// "INFO: LOGIN, user=alice, ip=[::ffff:127.0.0.1], port=[44242],
// protocol=IMAP".
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.LogPath)
	return string(b)
}

// WaitLog waits up to timeout for the log to contain substr and returns the
// log. It fails the test on timeout.
func (s *Server) WaitLog(t testing.TB, substr string, timeout time.Duration) string {
	t.Helper()
	return backendtest.WaitLog(t, "couriertest", s.Log, substr, timeout)
}

// MailboxName returns mailbox as Courier names it: "INBOX" and names under
// "INBOX." as they are, any other name under the personal namespace prefix
// ("Archive" is "INBOX.Archive").
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
		t.Fatalf("couriertest: Deliver to unknown user %q", user)
	}
	if err := backendtest.Deliver(s.TLSAddr, s.caPool, user, pw, MailboxName(mailbox), msg); err != nil {
		t.Fatalf("couriertest: deliver to %q of %q: %v\n%s", mailbox, user, err, backendtest.Tail(s.Log(), 20))
	}
}

// failureText is what a failed start reports: the tail of the log.
func (s *Server) failureText() string {
	l := s.Log()
	if len(bytes.TrimSpace([]byte(l))) == 0 {
		return "(" + s.LogPath + " is empty)"
	}
	return fmt.Sprintf("--- %s (tail) ---\n%s", s.LogPath, backendtest.Tail(l, 40))
}
