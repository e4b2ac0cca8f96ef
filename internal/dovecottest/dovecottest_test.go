package dovecottest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/backendtest"
	"github.com/imapwarden/imapwarden/internal/testenv"
)

// imapConn is a minimal raw-socket IMAP client: enough to prove the fixture,
// deliberately independent of any IMAP library (and of our own proxy code).
type imapConn struct {
	t   testing.TB
	c   net.Conn
	r   *bufio.Reader
	seq int
}

func dialIMAP(t testing.TB, addr string, tlsConf *tls.Config) *imapConn {
	t.Helper()
	var c net.Conn
	var err error
	if tlsConf != nil {
		c, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, tlsConf)
	} else {
		c, err = net.DialTimeout("tcp", addr, testenv.IOTimeout())
	}
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	ic := &imapConn{t: t, c: c, r: bufio.NewReader(c)}
	if g := ic.readLine(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting: %q", g)
	}
	return ic
}

// readLine reads one response line, with any literals ({n}) inlined.
func (ic *imapConn) readLine() string {
	ic.t.Helper()
	_ = ic.c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
	var b strings.Builder
	for {
		line, err := ic.r.ReadString('\n')
		if err != nil {
			ic.t.Fatalf("read: %v (after %q)", err, b.String()+line)
		}
		line = strings.TrimSuffix(line, "\r\n")
		b.WriteString(line)
		m := literalRE.FindStringSubmatch(line)
		if m == nil {
			return b.String()
		}
		n, _ := strconv.Atoi(m[1])
		lit := make([]byte, n)
		if _, err := io.ReadFull(ic.r, lit); err != nil {
			ic.t.Fatalf("read literal: %v", err)
		}
		b.Write(lit)
	}
}

var literalRE = regexp.MustCompile(`\{(\d+)\}$`)

// cmd sends one tagged command and returns the untagged lines and the tagged
// status line without its tag ("OK ...", "NO ...", "BAD ...").
func (ic *imapConn) cmd(format string, args ...any) (untagged []string, status string) {
	ic.t.Helper()
	ic.seq++
	tag := fmt.Sprintf("a%d", ic.seq)
	if _, err := fmt.Fprintf(ic.c, tag+" "+format+"\r\n", args...); err != nil {
		ic.t.Fatalf("write: %v", err)
	}
	for {
		l := ic.readLine()
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			return untagged, rest
		}
		untagged = append(untagged, l)
	}
}

// ok is cmd that fails the test unless the result is OK.
func (ic *imapConn) ok(format string, args ...any) []string {
	ic.t.Helper()
	u, st := ic.cmd(format, args...)
	if !strings.HasPrefix(st, "OK") {
		ic.t.Fatalf("%s: %s", strings.Fields(fmt.Sprintf(format, args...))[0], st)
	}
	return u
}

func (ic *imapConn) starttls(conf *tls.Config) {
	ic.t.Helper()
	ic.ok("STARTTLS")
	if ic.r.Buffered() != 0 {
		ic.t.Fatalf("bytes after STARTTLS OK")
	}
	tc := tls.Client(ic.c, conf)
	_ = tc.SetDeadline(time.Now().Add(testenv.IOTimeout()))
	if err := tc.Handshake(); err != nil {
		ic.t.Fatalf("STARTTLS handshake: %v", err)
	}
	_ = tc.SetDeadline(time.Time{})
	ic.c = tc
	ic.r = bufio.NewReader(tc)
}

func clientTLS(t testing.TB, s *Server, serverName string) *tls.Config {
	t.Helper()
	pemBytes, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("CAFile has no certificate")
	}
	return &tls.Config{RootCAs: pool, ServerName: serverName}
}

func hasLine(lines []string, substr string) bool {
	for _, l := range lines {
		if strings.Contains(l, substr) {
			return true
		}
	}
	return false
}

func plainIR(authzid, authcid, pw string) string {
	return base64.StdEncoding.EncodeToString([]byte(authzid + "\x00" + authcid + "\x00" + pw))
}

func testMessage(subject string, bodySize int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: sender@example.com\r\nTo: alice@example.com\r\nSubject: %s\r\n"+
		"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\nMessage-ID: <%s@example.com>\r\n\r\n", subject, strings.ReplaceAll(subject, " ", "."))
	line := strings.Repeat("x", 76) + "\r\n"
	for b.Len() < bodySize {
		b.WriteString(line)
	}
	b.WriteString("end\r\n")
	return b.Bytes()
}

func TestStartTLSThenLogin(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})

	c := dialIMAP(t, s.Addr, nil)
	caps := c.ok("CAPABILITY")
	if !hasLine(caps, "STARTTLS") {
		t.Fatalf("CAPABILITY before TLS lacks STARTTLS: %q", caps)
	}
	c.starttls(clientTLS(t, s, "localhost"))
	if _, st := c.cmd("LOGIN alice wrong-pw"); !strings.HasPrefix(st, "NO") {
		t.Fatalf("LOGIN with a wrong password: %s", st)
	}
	c.ok("LOGIN alice alice-pw")
	c.ok("LOGOUT")

	// Implicit TLS, verified by IP address this time.
	c = dialIMAP(t, s.TLSAddr, clientTLS(t, s, "127.0.0.1"))
	c.ok("LOGIN bob bob-pw")
}

func TestPlainLoginWithoutTLS(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	c := dialIMAP(t, s.Addr, nil)
	c.ok("LOGIN bob bob-pw")
}

func TestMasterUserLogin(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	s.Deliver(t, "alice", "INBOX", testMessage("for alice", 100))

	c := dialIMAP(t, s.Addr, nil)
	c.ok("AUTHENTICATE PLAIN %s", plainIR("alice", s.MasterUser, s.MasterPassword))
	// The session is alice's: her INBOX has the message, bob's has none.
	if u := c.ok("SELECT INBOX"); !hasLine(u, "* 1 EXISTS") {
		t.Fatalf("SELECT INBOX as alice via master user: %q", u)
	}
	s.WaitLog(t, "Login: user=<alice>, method=PLAIN", 5*time.Second)

	for _, tc := range []struct{ name, ir string }{
		{"wrong master password", plainIR("alice", s.MasterUser, "nope")},
		{"unknown target user", plainIR("mallory", s.MasterUser, s.MasterPassword)},
		{"regular user as master", plainIR("alice", "bob", "bob-pw")},
	} {
		c := dialIMAP(t, s.Addr, nil)
		if _, st := c.cmd("AUTHENTICATE PLAIN %s", tc.ir); !strings.HasPrefix(st, "NO") {
			t.Errorf("%s: %s, want NO", tc.name, st)
		}
	}
}

func TestDeliver(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	small := testMessage("small", 200)
	big := testMessage("big", 5<<20)
	s.Deliver(t, "alice", "INBOX", small)
	s.Deliver(t, "alice", "Archive", big) // created on demand
	s.Deliver(t, "alice", "Archive", small)

	c := dialIMAP(t, s.Addr, nil)
	c.ok("LOGIN alice alice-pw")
	if u := c.ok("SELECT INBOX"); !hasLine(u, "* 1 EXISTS") {
		t.Fatalf("SELECT INBOX: %q", u)
	}
	if u := c.ok("STATUS Archive (MESSAGES)"); !hasLine(u, "(MESSAGES 2)") {
		t.Fatalf("STATUS Archive: %q", u)
	}
	c.ok("SELECT Archive")
	want := fmt.Sprintf("RFC822.SIZE %d", len(big))
	if u := c.ok("FETCH 1 (RFC822.SIZE)"); !hasLine(u, want) {
		t.Fatalf("FETCH 1 RFC822.SIZE: %q, want %s", u, want)
	}
	// The body arrives intact (it comes back as one literal).
	u := c.ok("FETCH 1 (BODY.PEEK[])")
	if len(u) != 1 || !strings.Contains(u[0], string(big)) {
		t.Fatalf("FETCH 1 BODY[] did not return the delivered message")
	}

	// Mail is per user.
	c = dialIMAP(t, s.Addr, nil)
	c.ok("LOGIN bob bob-pw")
	if u := c.ok("SELECT INBOX"); !hasLine(u, "* 0 EXISTS") {
		t.Fatalf("bob's INBOX: %q", u)
	}
}

func TestKillAndRestart(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	s.Deliver(t, "alice", "INBOX", testMessage("survives", 100))

	c := dialIMAP(t, s.Addr, nil)
	c.ok("LOGIN alice alice-pw")
	c.ok("SELECT INBOX")

	s.Kill()
	for _, addr := range []string{s.Addr, s.TLSAddr} {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			t.Fatalf("%s still accepts after Kill", addr)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial %s after Kill: %v, want connection refused", addr, err)
		}
	}
	// The open session is gone with its imap process.
	_ = c.c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
	if _, err := fmt.Fprintf(c.c, "x NOOP\r\n"); err == nil {
		if _, err := c.r.ReadString('\n'); err == nil {
			t.Fatal("killed backend still answers an open session")
		}
	}
	s.Kill() // a second Kill is a no-op

	s.Restart(t)
	c = dialIMAP(t, s.Addr, nil)
	c.ok("LOGIN alice alice-pw")
	if u := c.ok("SELECT INBOX"); !hasLine(u, "* 1 EXISTS") {
		t.Fatalf("SELECT INBOX after restart: %q", u)
	}
	c = dialIMAP(t, s.TLSAddr, clientTLS(t, s, "localhost"))
	c.ok("LOGIN bob bob-pw")

	s.Restart(t) // restarting a running server stops it first
	c = dialIMAP(t, s.Addr, nil)
	c.ok("LOGIN bob bob-pw")
}

// Freeze stops every process of the server (a hung host): a connection
// made meanwhile is greeted only once the server is thawed. Cleanup stops
// a server left frozen.
func TestFreezeAndThaw(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	s.Freeze()
	s.mu.Lock()
	pid := s.proc.cmd.Process.Pid
	s.mu.Unlock()
	if !stopped(pid) {
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		t.Fatalf("master not stopped after Freeze: %s", stat)
	}
	// The kernel completes the handshake; the greeting waits for Thaw.
	conn, err := net.DialTimeout("tcp", s.Addr, testenv.IOTimeout())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s.Thaw()
	_ = conn.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
	if g, err := bufio.NewReader(conn).ReadString('\n'); err != nil || !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting after Thaw: %q, %v", g, err)
	}
	c := dialIMAP(t, s.Addr, nil)
	c.ok("LOGIN alice alice-pw")
	s.Freeze() // Cleanup must stop it all the same
}

func TestOriginatingIPLogged(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	c := dialIMAP(t, s.Addr, nil)
	// 192.0.2.0/24 is TEST-NET-1 (RFC 5737): only a string here.
	c.ok(`ID ("x-originating-ip" "192.0.2.7" "x-originating-port" "40123" "name" "dovecottest")`)
	c.ok("LOGIN alice alice-pw")
	log := s.WaitLog(t, "Login: user=<alice>", 5*time.Second)
	if !regexp.MustCompile(`Login: user=<alice>, method=PLAIN, rip=192\.0\.2\.7, lip=127\.0\.0\.1`).MatchString(log) {
		t.Fatalf("login line does not carry the originating IP:\n%s", tail(log, 20))
	}
}

func TestOptions(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{
		Users:          map[string]string{"carol": "carol-pw"},
		MasterUser:     "admin",
		MasterPassword: "admin-pw",
		// Not trusted: the ID override must be ignored.
		TrustedNetworks: "192.0.2.0/24",
	})
	c := dialIMAP(t, s.Addr, nil)
	if _, st := c.cmd("LOGIN alice alice-pw"); !strings.HasPrefix(st, "NO") {
		t.Fatalf("default user exists with custom Users: %s", st)
	}
	c.ok(`ID ("x-originating-ip" "192.0.2.7")`)
	c.ok("LOGIN carol carol-pw")
	log := s.WaitLog(t, "Login: user=<carol>", 5*time.Second)
	if !strings.Contains(log, "Login: user=<carol>, method=PLAIN, rip=127.0.0.1") {
		t.Fatalf("untrusted client's x-originating-ip was honoured:\n%s", tail(log, 20))
	}
	c = dialIMAP(t, s.Addr, nil)
	c.ok("AUTHENTICATE PLAIN %s", plainIR("carol", "admin", "admin-pw"))
}

// HighPerformance: long-lived login processes (service_count = 0) greet a
// burst of connections together, and each still logs in.
func TestHighPerformance(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{HighPerformance: true})
	conf, err := os.ReadFile(s.confPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(conf), "service_count = 0") || !strings.Contains(string(conf), "process_limit = 1000") {
		t.Fatalf("high-performance settings missing:\n%s", conf)
	}
	const n = 100
	errs := make(chan error, n)
	for range n {
		go func() {
			c, err := net.DialTimeout("tcp", s.Addr, testenv.IOTimeout())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(testenv.IOTimeout()))
			r := bufio.NewReader(c)
			if g, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(g, "* OK") {
				errs <- fmt.Errorf("greeting %q: %v", g, err)
				return
			}
			fmt.Fprintf(c, "a LOGIN alice alice-pw\r\n")
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					errs <- err
					return
				}
				if strings.HasPrefix(l, "a ") {
					if !strings.HasPrefix(l, "a OK") {
						err = fmt.Errorf("login: %q", l)
					}
					errs <- err
					return
				}
			}
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestHAProxy(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{HAProxyTrusted: "127.0.0.0/8"})
	c, err := net.DialTimeout("tcp", s.Addr, testenv.IOTimeout())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// PROXY v2, PROXY command, TCP over IPv4: 192.0.2.9:40000 → 127.0.0.1:143.
	hdr := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c")
	hdr = append(hdr, 192, 0, 2, 9, 127, 0, 0, 1, 0x9c, 0x40, 0, 143)
	if _, err := c.Write(hdr); err != nil {
		t.Fatal(err)
	}
	ic := &imapConn{t: t, c: c, r: bufio.NewReader(c)}
	if g := ic.readLine(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting: %q", g)
	}
	ic.ok("LOGIN alice alice-pw")
	log := s.WaitLog(t, "Login: user=<alice>", 5*time.Second)
	if !strings.Contains(log, "rip=192.0.2.9") {
		t.Fatalf("PROXY source not logged:\n%s", tail(log, 20))
	}
}

// Not parallel: it changes PATH and extraBinDirs, which only serial tests may
// do (parallel tests start after every serial one has finished).
func TestRequireWithoutDovecot(t *testing.T) {
	saved := extraBinDirs
	t.Cleanup(func() { extraBinDirs = saved })
	extraBinDirs = nil
	t.Setenv("PATH", t.TempDir())

	for _, tc := range []struct{ ci, want string }{
		{"", "skip: "},
		{"false", "skip: "},
		{"true", "fatal: "},
	} {
		t.Setenv("CI", tc.ci)
		ended := backendtest.Ending(t, func(tb testing.TB) { Require(tb) })
		if !strings.HasPrefix(ended, tc.want) {
			t.Errorf("CI=%q: Require ended with %q, want %s...", tc.ci, ended, tc.want)
		}
	}
}

func TestStartRejectsBadOptions(t *testing.T) {
	t.Parallel()
	Require(t)
	for _, opts := range []Options{
		{TrustedNetworks: "not-a-net"},
		{HAProxyTrusted: "127.0.0.1/99"},
		{Users: map[string]string{"eve": "a:b"}},
		{Users: map[string]string{"../x": "pw"}},
		{Users: map[string]string{"proxymaster": "pw"}},
	} {
		ended := backendtest.Ending(t, func(tb testing.TB) { Start(tb, opts) })
		if !strings.HasPrefix(ended, "fatal: dovecottest: ") {
			t.Errorf("Start(%+v) ended with %q, want a fatal error", opts, ended)
		}
	}
}

// Not parallel: it replaces pickPorts. The first ports offered are taken, as
// if another process won the race between freePorts and Dovecot's bind.
func TestStartRetriesTakenPort(t *testing.T) {
	Require(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	calls := 0
	t.Cleanup(func() { pickPorts = freePorts })
	pickPorts = func(n int) ([]int, error) {
		calls++
		ports, err := freePorts(n)
		if calls == 1 && err == nil {
			ports[0] = taken.Addr().(*net.TCPAddr).Port
		}
		return ports, err
	}
	s := Start(t, Options{})
	if calls != 2 {
		t.Fatalf("pickPorts called %d times, want 2", calls)
	}
	if s.Addr == taken.Addr().String() {
		t.Fatalf("Start kept the taken port")
	}
	dialIMAP(t, s.Addr, nil).ok("LOGIN alice alice-pw")
}

// TestMaxSessions holds more logged-in sessions of one user from one
// address than Dovecot's defaults allow: without MaxSessions the 1001st
// login is refused (mail_max_userip_connections), and each login forks two
// processes, which takes minutes for a thousand on a busy machine.
func TestMaxSessions(t *testing.T) {
	t.Parallel()
	const sessions = 1100
	s := Start(t, Options{MaxSessions: sessions})
	for i := range sessions {
		c := dialIMAP(t, s.Addr, nil)
		if _, st := c.cmd("LOGIN alice alice-pw"); !strings.HasPrefix(st, "OK") {
			t.Fatalf("login %d: %s", i+1, st)
		}
	}
	c := dialIMAP(t, s.Addr, nil)
	c.ok("LOGIN alice alice-pw")
	if u := c.ok("SELECT INBOX"); !hasLine(u, "EXISTS") {
		t.Fatalf("SELECT without EXISTS: %q", u)
	}
}

func TestMaxSessionsConfig(t *testing.T) {
	for _, tc := range []struct {
		max       int
		want, not []string
	}{
		{0, []string{"mail_max_userip_connections = 1000\n"}, []string{"service imap {"}},
		{2000, []string{
			"mail_max_userip_connections = 2200\n",
			"service imap {\n  service_count = 0\n  client_limit = 50\n  process_limit = 100\n}\n",
			"  service_count = 0\n  process_min_avail = 2\n  client_limit = 1000\n}\n",
		}, nil},
		{10000, []string{"client_limit = 50\n  process_limit = 220\n"}, nil},
	} {
		conf := renderConfig(configParams{maxSessions: tc.max})
		for _, w := range tc.want {
			if !strings.Contains(conf, w) {
				t.Errorf("MaxSessions %d: config lacks %q", tc.max, w)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(conf, n) {
				t.Errorf("MaxSessions %d: config has %q", tc.max, n)
			}
		}
	}
}
