package couriertest

import (
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
	// Courier's imaplogin answers a failed LOGIN after 5 s.
	if _, st := c.Cmd("LOGIN alice wrong-pw"); !strings.HasPrefix(st, "NO") {
		t.Fatalf("LOGIN with a wrong password: %s", st)
	}
	c.MustOK("LOGIN alice alice-pw")
	s.WaitLog(t, "INFO: LOGIN, user=alice, ip=[::ffff:127.0.0.1]", 5*time.Second)
	c.MustOK("LOGOUT")

	// Implicit TLS, verified by IP address this time.
	c = dial(t, s, "127.0.0.1")
	// Implicit TLS: AUTH=PLAIN offered, STARTTLS not.
	if caps := c.MustOK("CAPABILITY"); !backendtest.HasLine(caps, "AUTH=PLAIN") || backendtest.HasLine(caps, "STARTTLS") {
		t.Fatalf("CAPABILITY on the TLS port: %q", caps)
	}
	c.MustOK("LOGIN bob bob-pw")
	if u := c.MustOK("SELECT INBOX"); !backendtest.HasLine(u, "* 0 EXISTS") {
		t.Fatalf("SELECT INBOX: %q", u)
	}
}

// TestFacts pins what README.md says about Courier, so that a package
// update that changes them is noticed.
func TestFacts(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	c := dial(t, s, "")
	pre := strings.Join(c.MustOK("CAPABILITY"), " ") + " "
	for _, want := range []string{"IDLE", "STARTTLS", "UTF8=ACCEPT", "ACL", "QUOTA", "NAMESPACE"} {
		if !strings.Contains(pre, " "+want+" ") {
			t.Errorf("CAPABILITY before login lacks %s: %s", want, pre)
		}
	}
	// No LITERAL+, MOVE, ID; AUTH=PLAIN only once TLS is on; and no
	// LOGINDISABLED although LOGIN works without TLS.
	for _, absent := range []string{"LITERAL+", "MOVE", " ID ", "AUTH=", "LOGINDISABLED", "COMPRESS"} {
		if strings.Contains(pre, absent) {
			t.Errorf("CAPABILITY before login has %s: %s", absent, pre)
		}
	}
	c.MustOK("LOGIN alice alice-pw")
	post := strings.Join(c.MustOK("CAPABILITY"), " ") + " "
	for _, absent := range []string{"LITERAL+", "MOVE", " ID ", "STARTTLS"} {
		if strings.Contains(post, absent) {
			t.Errorf("CAPABILITY after login has %s: %s", absent, post)
		}
	}
	if u := c.MustOK("NAMESPACE"); !backendtest.HasLine(u, `* NAMESPACE (("INBOX." ".")) NIL`) {
		t.Errorf("NAMESPACE: %q", u)
	}
	if _, st := c.Cmd(`ID ("name" "couriertest")`); !strings.HasPrefix(st, "NO") {
		t.Errorf("ID: %s, want NO", st)
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
	if u := c.MustOK(`LSUB "" "*"`); !backendtest.HasLine(u, `"." "INBOX.Archive"`) {
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
// delivers at once (enhanced IDLE through gamin), not after
// IMAP_IDLE_TIMEOUT's 60 s.
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
	s := Start(t, Options{Users: map[string]string{"carol": `pw with "quotes" and \`}})
	c := dial(t, s, "")
	if _, st := c.Cmd("LOGIN alice alice-pw"); !strings.HasPrefix(st, "NO") {
		t.Fatalf("default user exists with custom Users: %s", st)
	}
	c.MustOK("LOGIN carol %s", backendtest.Quote(s.Users["carol"]))
	s.Deliver(t, "carol", "Work", backendtest.Message("m", 10))
}

// Not parallel: it changes the environment.
func TestRequireWithoutCourier(t *testing.T) {
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
		{Users: map[string]string{"a.b": "pw"}},
		{Users: map[string]string{"mallory": ""}},
	} {
		ended := backendtest.Ending(t, func(tb testing.TB) { Start(tb, opts) })
		if !strings.HasPrefix(ended, "fatal: couriertest: ") {
			t.Errorf("Start(%+v) ended with %q, want a fatal error", opts, ended)
		}
	}
}

// Not parallel: it replaces pickPorts. The first ports offered are taken, as
// if another process won the race between FreePorts and couriertcpd's bind.
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

// TestOrphanHelper is TestNoOrphans' child: it starts a server and waits
// to be killed.
func TestOrphanHelper(t *testing.T) {
	backendtest.OrphanHelper(t, func(t *testing.T) *backendtest.Proc { return Start(t, Options{}).running() })
}

// A test binary killed without its cleanups (go test's fuzz coordinator
// kills its workers) takes the launcher's daemons along.
func TestNoOrphans(t *testing.T) {
	t.Parallel()
	Require(t)
	backendtest.CheckNoOrphans(t, "TestOrphanHelper")
}

// TestSharedFolders: with Options.SharedFolders, a folder bob grants alice
// rights on is "#shared.bob.Legal" to her (the shared namespace of
// NAMESPACE), and she acts on bob's messages through it; without it, or
// without the grant, she sees none of bob's folders.
func TestSharedFolders(t *testing.T) {
	t.Parallel()
	for _, shared := range []bool{false, true} {
		s := Start(t, Options{SharedFolders: shared})
		s.Deliver(t, "bob", "Legal", []byte("Subject: held\r\n\r\nkeep\r\n"))
		bob := dial(t, s, "localhost")
		bob.MustOK("LOGIN bob bob-pw")
		alice := dial(t, s, "localhost")
		alice.MustOK("LOGIN alice alice-pw")
		if l := alice.MustOK(`LIST "" "#shared.*"`); len(l) != 0 {
			t.Fatalf("shared=%v: before a grant alice lists %q", shared, l)
		}
		bob.MustOK("SETACL INBOX.Legal alice lrswite")
		l := alice.MustOK(`LIST "" "#shared.*"`)
		if got := backendtest.HasLine(l, `"#shared.bob.Legal"`); got != shared {
			t.Fatalf("shared=%v: alice lists %q", shared, l)
		}
		if !shared {
			continue
		}
		if ns := alice.MustOK("NAMESPACE"); !backendtest.HasLine(ns, `NIL (("#shared." ".")`) {
			t.Fatalf("NAMESPACE: %q", ns)
		}
		if u := alice.MustOK(`SELECT "#shared.bob.Legal"`); !backendtest.HasLine(u, "* 1 EXISTS") {
			t.Fatalf("SELECT: %q", u)
		}
		// The prefix is case-sensitive: the proxy's reading of which
		// namespace a name is in (imapwire.Names.Where) relies on it.
		if st := alice.MustOK(`STATUS "#shared.bob.Legal" (MESSAGES)`); !backendtest.HasLine(st, "MESSAGES 1") {
			t.Fatalf("STATUS: %q", st)
		}
		for _, name := range []string{"#SHARED.bob.Legal", "#Shared.bob.Legal"} {
			if _, st := alice.Cmd(`STATUS %q (MESSAGES)`, name); !strings.HasPrefix(st, "NO") {
				t.Errorf("STATUS %q: %s", name, st)
			}
		}
	}
}
