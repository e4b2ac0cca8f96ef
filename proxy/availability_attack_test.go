package proxy

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// Server.Close "closes listeners and every connection at once", and
// Shutdown past its deadline and CutGrace calls it. A session still
// logging in to its backend is not reached: the backend connection of
// the login is not published on the Session, and the login runs under
// context.Background, so Close waits for the backend's ConnectTimeout and
// LoginTimeout (for each server the pool tries). A backend that greets
// and then never answers holds a shutdown, a restart or a reload of the
// listeners that long.
func TestAttackCloseWaitsForBackendLogin(t *testing.T) {
	ln, gotLogin, hold := frozenLoginBackend(t)
	h := newHarness(t, func(o *Options) {
		o.Router = &StaticRouter{Default: &Backend{Name: "frozen", Addr: ln.Addr().String(), Security: BackendPlain,
			Login: LoginCommand, LoginTimeout: time.Hour}}
	})
	// Registered after the harness: runs before its cleanup, so that the
	// session ends (the backend closes) and the harness can finish.
	t.Cleanup(func() { close(hold) })

	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	c.send("a LOGIN alice alice-pw")
	<-gotLogin

	done := make(chan struct{})
	go func() { h.srv.Close(); h.srv.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(testenv.IOTimeout()):
		t.Fatalf("Server.Close and Wait still waiting after %v: a session logging in to a silent backend is not closed", testenv.IOTimeout())
	}
}

// startCompress counts the session against MaxCompressSessions before it
// writes "OK DEFLATE active", and gives the count back at the session's
// end only if the compressor was installed (clientWriter.release). When
// that write fails (the client reset the connection after sending
// COMPRESS), startCompress returns errStop with the count taken and no
// compressor: the slot is never given back. An authenticated client that
// sends COMPRESS and resets, MaxCompressSessions times (100 by default),
// leaves every later client "NO [LIMIT] Too many compressed sessions"
// until the proxy restarts.
func TestAttackCompressSlotLeaksOnFailedReply(t *testing.T) {
	const attempts = 10
	h := newHarness(t, func(o *Options) { o.Limits.MaxCompressSessions = 3 })
	for i := range attempts {
		raw, c := dialGreeted(t, h.imaps)
		c.transact("l1 LOGIN alice alice-pw", "l1 OK")
		// The command and, right behind it, a reset: the proxy reads the
		// command (queued data is read before the reset's error) and
		// its reply cannot be written.
		c.send(fmt.Sprintf("z%d COMPRESS DEFLATE", i))
		raw.(*net.TCPConn).SetLinger(0)
		raw.Close()
	}
	h.audit.waitCloses(t, attempts)
	deadline := time.Now().Add(testenv.IOTimeout())
	for h.srv.compressing.Load() != 0 {
		if time.Now().After(deadline) {
			t.Errorf("every session ended, yet %d compressed sessions are still counted against max_compress_sessions", h.srv.compressing.Load())
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	c := h.login()
	c.transact("a1 COMPRESS DEFLATE", "a1 OK DEFLATE active")
}

// frozenLoginBackend greets, reads up to a LOGIN (signalled on gotLogin)
// and never answers it until hold is closed. Close hold in a cleanup
// registered after the harness's, so that it runs first.
func frozenLoginBackend(t testing.TB) (ln net.Listener, gotLogin chan struct{}, hold chan struct{}) {
	hold = make(chan struct{})
	gotLogin = make(chan struct{}, 1)
	ln = serveEach(t, func(c net.Conn) {
		c.Write([]byte("* OK [CAPABILITY IMAP4rev1] frozen\r\n"))
		r := bufio.NewReader(c)
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if strings.Contains(l, "LOGIN") {
				gotLogin <- struct{}{}
				break
			}
		}
		<-hold // never answers the login
	})
	return ln, gotLogin, hold
}
