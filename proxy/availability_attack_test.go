package proxy

import (
	"bufio"
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
	hold := make(chan struct{})
	gotLogin := make(chan struct{}, 1)
	ln := serveEach(t, func(c net.Conn) {
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
