// Package ldaptest starts a private, throwaway OpenLDAP server (Debian's
// slapd) for tests of the LDAP authenticator.
//
// Each Server is its own slapd with a generated slapd.conf, an MDB
// database loaded with slapadd before start, and a certificate from a CA
// of its own. It listens on 127.0.0.1 ephemeral ports: ldap:// (StartTLS
// offered) on URL and ldaps:// on TLSURL. Everything lives in one temporary
// directory removed with the test.
//
// The directory (Options.Users, default DefaultUsers) is:
//
//	dc=example,dc=com
//	  cn=imapwarden            the service account (ServiceDN, ServicePassword)
//	  ou=people   uid=alice    inetOrgPerson + inetLocalMailRecipient (mailHost)
//	  ou=groups   cn=staff     groupOfNames, member: the users' DNs
//
// Anonymous clients may only bind; the service account and bound users
// read everything but passwords.
package ldaptest

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/backendtest"
	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/tlsterm"
)

// Directory layout.
const (
	BaseDN          = "dc=example,dc=com"
	PeopleDN        = "ou=people," + BaseDN
	GroupsDN        = "ou=groups," + BaseDN
	ServiceDN       = "cn=imapwarden," + BaseDN
	ServicePassword = "service-pw"
	adminDN         = "cn=admin," + BaseDN
)

// User is one person in the directory.
type User struct {
	Password string
	// Groups by name, each cn=<name> under GroupsDN; or a whole DN
	// ("cn=admins,ou=self-service,dc=example,dc=com") directly under an
	// organizational unit of BaseDN, which is created.
	Groups []string
	// MailHost, when set, is the user's mailHost attribute.
	MailHost string
}

// DefaultUsers returns the users a zero Options creates; a new map each
// time. alice and bob are also the mail fixtures' default users.
func DefaultUsers() map[string]User {
	return map[string]User{
		"alice": {Password: "alice-ldap-pw", Groups: []string{"staff"}},
		"bob":   {Password: "bob-ldap-pw", Groups: []string{"contractors"}, MailHost: "imap2.example.com"},
		"carol": {Password: "carol-ldap-pw", Groups: []string{"staff", "admins"}},
	}
}

// Options configures a Server.
type Options struct {
	// Users by uid; nil means DefaultUsers(). Names are letters, digits,
	// '.', '-' and '_'.
	Users map[string]User
	// MemberOf gives each user's entry memberOf: the DNs of its groups,
	// as Active Directory and slapd's memberof overlay do (here the
	// dynlist overlay computes it from the groups' member values).
	MemberOf bool
}

// Server is a running slapd.
type Server struct {
	URL, TLSURL string // ldap://127.0.0.1:port, ldaps://127.0.0.1:port
	Addr        string // host:port of URL
	CAFile      string // PEM of the CA that signed the server's certificate ("localhost", "127.0.0.1")
	Users       map[string]User

	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	conf string
	urls string

	memberOf bool
}

const startTimeout = 30 * time.Second

func binary() string { return "/usr/sbin/slapd" }

func check() error {
	if err := backendtest.CheckFiles(binary(), "/usr/sbin/slapadd", "/etc/ldap/schema/inetorgperson.schema", "/usr/lib/ldap/back_mdb.so"); err != nil {
		return fmt.Errorf("slapd is not installed (apt-get install slapd ldap-utils): %v", err)
	}
	return nil
}

// Require skips the test when slapd is missing; with CI=true it fails
// (.ci/run installs it).
func Require(t testing.TB) {
	t.Helper()
	testenv.Require(t, "ldaptest", check(), ".ci/run installs it with apt-get install slapd ldap-utils")
}

// Start starts a slapd for t and stops it at t's end.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	Require(t)
	if o.Users == nil {
		o.Users = DefaultUsers()
	}
	dir, err := backendtest.ShortTempDir("ldaptest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &Server{dir: dir, Users: o.Users, memberOf: o.MemberOf, CAFile: filepath.Join(dir, "ca.pem"), conf: filepath.Join(dir, "slapd.conf")}
	if err := s.prepare(); err != nil {
		t.Fatalf("ldaptest: %v", err)
	}
	var lastErr error
	for range 3 { // a port may be taken between FreePorts and slapd's bind
		ports, err := backendtest.FreePorts(2)
		if err != nil {
			t.Fatal(err)
		}
		s.Addr = fmt.Sprintf("127.0.0.1:%d", ports[0])
		s.URL = "ldap://" + s.Addr
		s.TLSURL = fmt.Sprintf("ldaps://127.0.0.1:%d", ports[1])
		s.urls = s.URL + "/ " + s.TLSURL + "/"
		if lastErr = s.launch(); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("ldaptest: %v", lastErr)
	}
	t.Cleanup(s.Stop)
	return s
}

// prepare writes the certificates, slapd.conf and the database.
func (s *Server) prepare() error {
	ca, err := tlsterm.NewCA()
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := ca.Issue([]string{"localhost", "127.0.0.1"}, 24*time.Hour)
	if err != nil {
		return err
	}
	for name, data := range map[string][]byte{"ca.pem": ca.CertPEM, "cert.pem": certPEM, "key.pem": keyPEM} {
		if err := os.WriteFile(filepath.Join(s.dir, name), data, 0o600); err != nil {
			return err
		}
	}
	if err := os.Mkdir(filepath.Join(s.dir, "db"), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(s.conf, []byte(s.renderConf()), 0o600); err != nil {
		return err
	}
	ldif := filepath.Join(s.dir, "data.ldif")
	if err := os.WriteFile(ldif, []byte(s.renderLDIF()), 0o600); err != nil {
		return err
	}
	out, err := exec.Command("/usr/sbin/slapadd", "-f", s.conf, "-l", ldif).CombinedOutput()
	if err != nil {
		return fmt.Errorf("slapadd: %v: %s", err, out)
	}
	return nil
}

func (s *Server) renderConf() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# Generated by internal/ldaptest for one test; removed with it.")
	for _, sc := range []string{"core", "cosine", "inetorgperson", "nis", "misc", "dyngroup"} {
		w("include /etc/ldap/schema/%s.schema", sc)
	}
	w("modulepath /usr/lib/ldap")
	w("moduleload back_mdb")
	if s.memberOf {
		w("moduleload dynlist")
	}
	w("pidfile %s/slapd.pid", s.dir)
	w("argsfile %s/slapd.args", s.dir)
	w("TLSCACertificateFile %s/ca.pem", s.dir)
	w("TLSCertificateFile %s/cert.pem", s.dir)
	w("TLSCertificateKeyFile %s/key.pem", s.dir)
	w("database mdb")
	w("maxsize 67108864")
	w("suffix %q", BaseDN)
	w("rootdn %q", adminDN)
	w("rootpw %s", ssha("admin-pw"))
	w("directory %s/db", s.dir)
	if s.memberOf {
		// memberOf of the static groupOfNames groups, computed at search
		// time (slapo-dynlist(5)); slapadd's entries need no overlay.
		w("overlay dynlist")
		w("dynlist-attrset groupOfURLs memberURL member+memberOf@groupOfNames")
	}
	// Passwords: only for binding; nobody reads them.
	w("access to attrs=userPassword")
	w("  by self =xw")
	w("  by anonymous auth")
	w("  by * none")
	w("access to *")
	w("  by dn.exact=%q read", ServiceDN)
	w("  by users read")
	w("  by anonymous auth")
	w("  by * none")
	return b.String()
}

func (s *Server) renderLDIF() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("dn: %s\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n", BaseDN)
	w("dn: %s\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: imapwarden\nuserPassword: %s\n", ServiceDN, ssha(ServicePassword))
	w("dn: %s\nobjectClass: organizationalUnit\nou: people\n", PeopleDN)
	w("dn: %s\nobjectClass: organizationalUnit\nou: groups\n", GroupsDN)
	names := make([]string, 0, len(s.Users))
	groups := map[string][]string{}
	for n, u := range s.Users {
		names = append(names, n)
		for _, g := range u.Groups {
			groups[g] = append(groups[g], n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		u := s.Users[n]
		w("dn: uid=%s,%s", n, PeopleDN)
		w("objectClass: inetOrgPerson\nobjectClass: inetLocalMailRecipient")
		w("uid: %s\ncn: %s\nsn: %s\nmail: %s@example.com", n, n, n, n)
		w("userPassword: %s", ssha(u.Password))
		if u.MailHost != "" {
			w("mailHost: %s", u.MailHost)
		}
		w("")
	}
	gnames := make([]string, 0, len(groups))
	for g := range groups {
		gnames = append(gnames, g)
	}
	sort.Strings(gnames)
	ous := map[string]bool{GroupsDN: true}
	for _, g := range gnames {
		dn, cn := GroupDN(g), g
		if strings.Contains(g, "=") {
			cn = strings.TrimPrefix(strings.SplitN(g, ",", 2)[0], "cn=")
			if parent := strings.SplitN(g, ",", 2)[1]; !ous[parent] {
				ous[parent] = true
				w("dn: %s\nobjectClass: organizationalUnit\nou: %s\n", parent, strings.TrimPrefix(strings.SplitN(parent, ",", 2)[0], "ou="))
			}
		}
		w("dn: %s\nobjectClass: groupOfNames\ncn: %s", dn, cn)
		members := slices.Sorted(slices.Values(groups[g]))
		for _, m := range members {
			w("member: uid=%s,%s", m, PeopleDN)
		}
		w("")
	}
	return b.String()
}

// ssha is the {SSHA} scheme slapd checks simple binds against.
func ssha(pw string) string {
	salt := make([]byte, 8)
	rand.Read(salt)
	h := sha1.Sum(append([]byte(pw), salt...))
	return "{SSHA}" + base64.StdEncoding.EncodeToString(append(h[:], salt...))
}

func (s *Server) launch() error {
	log, err := os.OpenFile(filepath.Join(s.dir, "slapd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	// -d 0: stay in the foreground (no fork), so that the fixture owns
	// the process; Pdeathsig takes it along if the test binary dies.
	cmd := exec.Command(binary(), "-d", "0", "-f", s.conf, "-h", s.urls)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-done:
			return fmt.Errorf("slapd exited: %s", s.logTail())
		default:
		}
		if backendtest.Accepts(s.Addr) && backendtest.Accepts(strings.TrimPrefix(s.TLSURL, "ldaps://")) {
			return nil
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("slapd not listening after %v: %s", startTimeout, s.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Server) logTail() string {
	data, _ := os.ReadFile(filepath.Join(s.dir, "slapd.log"))
	return backendtest.Tail(string(data), 20)
}

// Stop ends slapd (SIGTERM, then SIGKILL after 5 s).
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		s.Kill()
	}
	s.cmd = nil
}

// Kill ends slapd at once: the directory is down.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
	s.cmd = nil
}

// Restart starts slapd again on the same ports and data.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	backendtest.WaitClosed(5*time.Second, s.Addr)
	if err := s.launch(); err != nil {
		t.Fatalf("ldaptest: restart: %v", err)
	}
}

// Pid is slapd's process ID (its CPU time is in /proc/PID/stat).
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// GroupDN is the DN of a group named in User.Groups.
func GroupDN(g string) string {
	if strings.Contains(g, "=") {
		return g
	}
	return "cn=" + g + "," + GroupsDN
}

// UserDN is the DN of uid user.
func UserDN(user string) string { return "uid=" + user + "," + PeopleDN }

// HangingListener returns the address of a listener that accepts and
// never answers (a directory that hangs), closed at t's end.
func HangingListener(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never read or written
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}
