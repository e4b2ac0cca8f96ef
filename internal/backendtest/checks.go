package backendtest

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Ending runs fn with a testing.TB whose Fatalf and Skipf record how fn
// ended the test instead of ending it, so that fixtures' failure paths
// (Require under CI, Start with bad options) can be tested. It returns
// "fatal: ...", "skip: ..." or "" when fn returned.
func Ending(t testing.TB, fn func(testing.TB)) (ended string) {
	f := &recordingTB{TB: t}
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(tbEnded); !ok {
				panic(r)
			}
		}
		ended = f.ended
	}()
	fn(f)
	return ""
}

type recordingTB struct {
	testing.TB
	ended string
}

type tbEnded struct{}

func (f *recordingTB) Helper() {}
func (f *recordingTB) Fatalf(format string, args ...any) {
	f.ended = "fatal: " + fmt.Sprintf(format, args...)
	panic(tbEnded{})
}
func (f *recordingTB) Skipf(format string, args ...any) {
	f.ended = "skip: " + fmt.Sprintf(format, args...)
	panic(tbEnded{})
}

// Fixture is what the shared checks need of a namespaced test server.
type Fixture struct {
	Addr, TLSAddr string
	// Dial connects over implicit TLS, verifying tlsServerName ("" for
	// the address).
	Dial    func(tlsServerName string) *Conn
	Deliver func(user, mailbox string, msg []byte)
	Kill    func()
	Restart func()
	Running func() *Proc
}

// CheckIdlePush: a session in IDLE hears of a message another session
// delivers at once, well under the servers' 60 s polling.
func CheckIdlePush(t *testing.T, f Fixture) {
	t.Helper()
	c := f.Dial("")
	c.MustOK("LOGIN alice alice-pw")
	if u := c.MustOK("SELECT INBOX"); !HasLine(u, "* 0 EXISTS") {
		t.Fatalf("SELECT INBOX: %q", u)
	}
	if err := c.Write([]byte("i IDLE\r\n")); err != nil {
		t.Fatal(err)
	}
	if l := c.MustReadLine(); !strings.HasPrefix(l, "+") {
		t.Fatalf("IDLE: %q", l)
	}
	start := time.Now()
	f.Deliver("alice", "INBOX", Message("pushed", 100))
	c.Timeout = 10 * time.Second // well under the 60 s poll
	if l := c.MustReadLine(); l != "* 1 EXISTS" {
		t.Fatalf("in IDLE: %q, want * 1 EXISTS", l)
	}
	t.Logf("EXISTS pushed %v after the delivery started", time.Since(start))
	if err := c.Write([]byte("DONE\r\n")); err != nil {
		t.Fatal(err)
	}
	for {
		l := c.MustReadLine()
		if strings.HasPrefix(l, "i ") {
			if !strings.HasPrefix(l, "i OK") {
				t.Fatalf("IDLE completion: %q", l)
			}
			break
		}
	}
}

// CheckKillAndRestart: Kill leaves no process and no listening port and
// drops open sessions; Restart brings the server back with its mail, also
// when it is running (a graceful stop first, leaving no process).
func CheckKillAndRestart(t *testing.T, f Fixture) {
	t.Helper()
	f.Deliver("alice", "INBOX", Message("survives", 100))
	c := f.Dial("")
	c.MustOK("LOGIN alice alice-pw")
	c.MustOK("SELECT INBOX")

	p := f.Running()
	f.Kill()
	if pids := p.Survivors(); len(pids) > 0 {
		t.Fatalf("processes left after Kill: %v", pids)
	}
	for _, addr := range []string{f.Addr, f.TLSAddr} {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			t.Fatalf("%s still accepts after Kill", addr)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial %s after Kill: %v, want connection refused", addr, err)
		}
	}
	// The open session is gone with its server process.
	c.Timeout = 5 * time.Second
	if err := c.Write([]byte("x NOOP\r\n")); err == nil {
		if l, err := c.ReadLine(); err == nil {
			t.Fatalf("killed backend still answers an open session: %q", l)
		}
	}
	f.Kill() // a second Kill is a no-op

	f.Restart()
	c = f.Dial("")
	c.MustOK("LOGIN alice alice-pw")
	if u := c.MustOK("SELECT INBOX"); !HasLine(u, "* 1 EXISTS") {
		t.Fatalf("SELECT INBOX after restart: %q", u)
	}
	f.Dial("localhost").MustOK("LOGIN bob bob-pw")

	p = f.Running()
	f.Restart() // restarting a running server stops it first
	if pids := p.Survivors(); len(pids) > 0 {
		t.Fatalf("processes left after a graceful stop: %v", pids)
	}
	f.Dial("").MustOK("LOGIN bob bob-pw")
}
