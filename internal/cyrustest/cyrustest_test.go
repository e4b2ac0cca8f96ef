package cyrustest

import (
	"encoding/base64"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/backendtest"
)

func dial(t *testing.T, s *Server, tlsServerName string) *backendtest.Conn {
	t.Helper()
	if tlsServerName == "" {
		return backendtest.Dial(t, s.Addr, nil)
	}
	return backendtest.Dial(t, s.TLSAddr, backendtest.TLSConfig(t, s.CAFile, tlsServerName))
}

func plainIR(authzid, authcid, pw string) string {
	return base64.StdEncoding.EncodeToString([]byte(authzid + "\x00" + authcid + "\x00" + pw))
}

func TestStartTLSThenLogin(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})

	c := dial(t, s, "")
	caps := c.MustOK("CAPABILITY")
	if !backendtest.HasLine(caps, " STARTTLS") {
		t.Fatalf("CAPABILITY before TLS lacks STARTTLS: %q", caps)
	}
	c.MustStartTLS(backendtest.TLSConfig(t, s.CAFile, "localhost"))
	if caps := c.MustOK("CAPABILITY"); backendtest.HasLine(caps, "STARTTLS") {
		t.Fatalf("CAPABILITY after TLS still offers STARTTLS: %q", caps)
	}
	if _, st := c.Cmd("LOGIN alice wrong-pw"); !strings.HasPrefix(st, "NO") {
		t.Fatalf("LOGIN with a wrong password: %s", st)
	}
	c.MustOK("LOGIN alice alice-pw")
	s.WaitLog(t, "alice plaintext+TLS User logged in", 5*time.Second)
	c.MustOK("LOGOUT")

	// Implicit TLS, verified by IP address this time.
	c = dial(t, s, "127.0.0.1")
	if _, st := c.Cmd("LOGIN bob alice-pw"); !strings.HasPrefix(st, "NO") {
		t.Fatalf("LOGIN bob with alice's password: %s", st)
	}
	c.MustOK("LOGIN bob bob-pw")
	// INBOX exists from the first login on.
	if u := c.MustOK("SELECT INBOX"); !backendtest.HasLine(u, "* 0 EXISTS") {
		t.Fatalf("SELECT INBOX: %q", u)
	}
}

// TestFacts pins what README.md says about Cyrus, so that a package update
// that changes them is noticed.
func TestFacts(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	c := dial(t, s, "")
	pre := strings.Join(c.MustOK("CAPABILITY"), " ")
	for _, want := range []string{"LITERAL+", "IDLE", "MOVE", "COMPRESS=DEFLATE", "STARTTLS", "AUTH=PLAIN", "ID"} {
		if !strings.Contains(pre, " "+want) {
			t.Errorf("CAPABILITY before login lacks %s: %s", want, pre)
		}
	}
	c.MustOK("LOGIN alice alice-pw")
	post := strings.Join(c.MustOK("CAPABILITY"), " ")
	// A Cyrus quirk: LOGINDISABLED after login (and no STARTTLS).
	for _, want := range []string{"LOGINDISABLED", "COMPRESS=DEFLATE", "QRESYNC", "IDLE"} {
		if !strings.Contains(post, " "+want) {
			t.Errorf("CAPABILITY after login lacks %s: %s", want, post)
		}
	}
	if u := c.MustOK("NAMESPACE"); !backendtest.HasLine(u, `* NAMESPACE (("INBOX." ".")) (("user." ".")) (("" "."))`) {
		t.Errorf("NAMESPACE: %q", u)
	}
	// ID reveals the OS, its version and OpenSSL's.
	if u := c.MustOK(`ID ("name" "cyrustest")`); !backendtest.HasLine(u, `"os" "Linux"`) || !backendtest.HasLine(u, "OpenSSL") {
		t.Errorf("ID: %q", u)
	}
}

func TestMasterUserLogin(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	s.Deliver(t, "alice", "INBOX", backendtest.Message("for alice", 100))

	c := dial(t, s, "")
	c.MustOK("AUTHENTICATE PLAIN %s", plainIR("alice", s.MasterUser, s.MasterPassword))
	if u := c.MustOK("SELECT INBOX"); !backendtest.HasLine(u, "* 1 EXISTS") {
		t.Fatalf("SELECT INBOX as alice via master user: %q", u)
	}
	for _, tc := range []struct{ name, ir string }{
		{"wrong master password", plainIR("alice", s.MasterUser, "nope")},
		{"regular user as master", plainIR("alice", "bob", "bob-pw")},
	} {
		c := dial(t, s, "")
		if _, st := c.Cmd("AUTHENTICATE PLAIN %s", tc.ir); !strings.HasPrefix(st, "NO") {
			t.Errorf("%s: %s, want NO", tc.name, st)
		}
	}
}

func TestDisablePlaintextAuth(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{DisablePlaintextAuth: true})
	c := dial(t, s, "")
	if caps := c.MustOK("CAPABILITY"); !backendtest.HasLine(caps, "LOGINDISABLED") || backendtest.HasLine(caps, " AUTH=") {
		t.Fatalf("CAPABILITY before TLS: %q", caps)
	}
	if _, st := c.Cmd("LOGIN alice alice-pw"); !strings.HasPrefix(st, "NO") {
		t.Fatalf("LOGIN before TLS: %s", st)
	}
	c.MustStartTLS(backendtest.TLSConfig(t, s.CAFile, "localhost"))
	c.MustOK("LOGIN alice alice-pw")
	// Deliver works too (it uses implicit TLS).
	s.Deliver(t, "alice", "INBOX", backendtest.Message("m", 100))
}

func TestDeliver(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	small := backendtest.Message("small", 200)
	big := backendtest.Message("big", 5<<20)
	s.Deliver(t, "alice", "INBOX", small)
	s.Deliver(t, "alice", "Archive", big) // created on demand, as INBOX.Archive
	s.Deliver(t, "alice", "INBOX.Archive", small)

	c := dial(t, s, "")
	c.MustOK("LOGIN alice alice-pw")
	if u := c.MustOK("SELECT INBOX"); !backendtest.HasLine(u, "* 1 EXISTS") {
		t.Fatalf("SELECT INBOX: %q", u)
	}
	if u := c.MustOK(`LSUB "" "*"`); !backendtest.HasLine(u, `"." INBOX.Archive`) {
		t.Fatalf("INBOX.Archive not subscribed: %q", u)
	}
	if u := c.MustOK("STATUS INBOX.Archive (MESSAGES)"); !backendtest.HasLine(u, "(MESSAGES 2)") {
		t.Fatalf("STATUS INBOX.Archive: %q", u)
	}
	c.MustOK("SELECT INBOX.Archive")
	want := fmt.Sprintf("RFC822.SIZE %d", len(big))
	if u := c.MustOK("FETCH 1 (RFC822.SIZE)"); !backendtest.HasLine(u, want) {
		t.Fatalf("FETCH 1 RFC822.SIZE: %q, want %s", u, want)
	}
	u := c.MustOK("FETCH 1 (BODY.PEEK[])")
	if len(u) != 1 || !strings.Contains(u[0], string(big)) {
		t.Fatalf("FETCH 1 BODY[] did not return the delivered message")
	}

	// Mail is per user.
	c = dial(t, s, "")
	c.MustOK("LOGIN bob bob-pw")
	if u := c.MustOK("SELECT INBOX"); !backendtest.HasLine(u, "* 0 EXISTS") {
		t.Fatalf("bob's INBOX: %q", u)
	}
}

// TestIdlePush: a session in IDLE hears of a message another session
// delivers at once (idled), not after imapidlepoll's 60 s.
func TestIdlePush(t *testing.T) {
	t.Parallel()
	backendtest.CheckIdlePush(t, fixture(t, Start(t, Options{})))
}

func TestKillAndRestart(t *testing.T) {
	t.Parallel()
	backendtest.CheckKillAndRestart(t, fixture(t, Start(t, Options{})))
}

// fixture is s as the shared checks of backendtest see it.
func fixture(t *testing.T, s *Server) backendtest.Fixture {
	return backendtest.Fixture{
		Addr: s.Addr, TLSAddr: s.TLSAddr,
		Dial:    func(name string) *backendtest.Conn { return dial(t, s, name) },
		Deliver: func(user, mailbox string, msg []byte) { s.Deliver(t, user, mailbox, msg) },
		Kill:    s.Kill,
		Restart: func() { s.Restart(t) },
		Running: s.running,
	}
}

func TestOptions(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{
		Users:          map[string]string{"carol": `pw with "quotes" and \`},
		MasterUser:     "admin",
		MasterPassword: "admin-pw",
	})
	c := dial(t, s, "")
	if _, st := c.Cmd("LOGIN alice alice-pw"); !strings.HasPrefix(st, "NO") {
		t.Fatalf("default user exists with custom Users: %s", st)
	}
	c.MustOK("LOGIN carol %s", backendtest.Quote(s.Users["carol"]))
	s.Deliver(t, "carol", "Work", backendtest.Message("m", 10))
	dial(t, s, "").MustOK("AUTHENTICATE PLAIN %s", plainIR("carol", "admin", "admin-pw"))
}

// Not parallel: it changes the environment.
func TestRequireWithoutCyrus(t *testing.T) {
	t.Setenv("IMAPWARDEN_BACKENDS", t.TempDir())
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
		{Users: map[string]string{"eve": "a\r\nb"}},
		{Users: map[string]string{"../x": "pw"}},
		// "." is taken (Cyrus writes it as "^"), not at the start.
		{Users: map[string]string{".ab": "pw"}},
		{Users: map[string]string{"a/b": "pw"}},
		{Users: map[string]string{"proxymaster": "pw"}},
		{MasterUser: "m", MasterPassword: "x\x00"},
	} {
		ended := backendtest.Ending(t, func(tb testing.TB) { Start(tb, opts) })
		if !strings.HasPrefix(ended, "fatal: cyrustest: ") {
			t.Errorf("Start(%+v) ended with %q, want a fatal error", opts, ended)
		}
	}
}

// Not parallel: it replaces pickPorts. The first ports offered are taken, as
// if another process won the race between FreePorts and master's bind.
func TestStartRetriesTakenPort(t *testing.T) {
	Require(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	calls := 0
	t.Cleanup(func() { pickPorts = backendtest.FreePorts })
	pickPorts = func(n int) ([]int, error) {
		calls++
		ports, err := backendtest.FreePorts(n)
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
	dial(t, s, "").MustOK("LOGIN alice alice-pw")
}

func TestFormatSyslog(t *testing.T) {
	for in, want := range map[string]string{
		"<21>Nov 26 15:35:16 cyrustest/master[1]: exiting\n": "Nov 26 15:35:16 cyrustest/master[1]: exiting\n",
		"<191>x\x00":  "x\n",
		"no priority": "no priority\n",
		"<notpri":     "<notpri\n",
	} {
		if got := string(formatSyslog([]byte(in))); got != want {
			t.Errorf("formatSyslog(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestOrphanHelper is TestNoOrphans' child: it starts a server and waits
// to be killed.
func TestOrphanHelper(t *testing.T) {
	backendtest.OrphanHelper(t, func(t *testing.T) *backendtest.Proc { return Start(t, Options{}).running() })
}

// A test binary killed without its cleanups (go test's fuzz coordinator
// kills its workers) takes master, idled and the imapds along.
func TestNoOrphans(t *testing.T) {
	t.Parallel()
	Require(t)
	backendtest.CheckNoOrphans(t, "TestOrphanHelper")
}

// TestReadOnlySelectSetsNoSeen pins how Cyrus reads a SELECT's rights: at
// the SELECT, so that after [READ-ONLY] no FETCH of a body sets \Seen.
// Cyrus answers [READ-ONLY] only without the rights to change flags
// (RFC 4314 §4: "s", "w"); with "s" it answers [READ-WRITE] and the FETCH
// sets \Seen. Dovecot decides again later, so the command table gives
// such a FETCH set-flags all the same (ARCHITECTURE.md §8).
func TestReadOnlySelectSetsNoSeen(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	s.Deliver(t, "alice", "RO", backendtest.Message("read-only", 100))
	s.Deliver(t, "alice", "RS", backendtest.Message("seen right", 100))
	a := dial(t, s, "localhost")
	a.MustOK("LOGIN alice alice-pw")
	a.MustOK("SETACL INBOX.RO bob lr")
	a.MustOK("SETACL INBOX.RS bob lrs")
	for _, tc := range []struct {
		mailbox, code string
		seen          bool
	}{{"user.alice.RO", "[READ-ONLY]", false}, {"user.alice.RS", "[READ-WRITE]", true}} {
		b := dial(t, s, "localhost")
		b.MustOK("LOGIN bob bob-pw")
		if _, st := b.Cmd("SELECT %s", tc.mailbox); !strings.HasPrefix(st, "OK "+tc.code) {
			t.Fatalf("SELECT %s: %s, want OK %s", tc.mailbox, st, tc.code)
		}
		b.MustOK("FETCH 1 BODY[]")
		b.MustOK("LOGOUT")
		// A fresh session reads the flags the FETCH left.
		c := dial(t, s, "localhost")
		c.MustOK("LOGIN bob bob-pw")
		c.MustOK("EXAMINE %s", tc.mailbox)
		u := strings.Join(c.MustOK("FETCH 1 FLAGS"), " ")
		if strings.Contains(u, `\Seen`) != tc.seen {
			t.Errorf("after SELECT %s (%s) and FETCH 1 BODY[]: %s; want \\Seen %v", tc.mailbox, tc.code, u, tc.seen)
		}
		c.MustOK("LOGOUT")
	}
}
