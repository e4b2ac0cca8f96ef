package ratelimit

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// sizeSpy records the LiteralBytes of the APPENDs the proxy asks about,
// by wrapping each connection's handle.
type sizeSpy struct {
	*Limiter
	mu    sync.Mutex
	sizes []int64
}

func (s *sizeSpy) Connect(si *proxy.SessionInfo) (proxy.LimitResult, proxy.LimitConn) {
	r, c := s.Limiter.Connect(si)
	if c == nil {
		return r, nil
	}
	return r, &sizeSpyConn{LimitConn: c, spy: s}
}

type sizeSpyConn struct {
	proxy.LimitConn
	spy *sizeSpy
}

func (c *sizeSpyConn) Command(cmd *imapwire.Command) proxy.LimitResult {
	if cmd.Name == "APPEND" {
		c.spy.mu.Lock()
		c.spy.sizes = append(c.spy.sizes, cmd.LiteralBytes+cmd.PendingLiteral)
		c.spy.mu.Unlock()
	}
	return c.LimitConn.Command(cmd)
}

// The append budget through the proxy: the second 600-byte APPEND of a
// 1000-byte budget is refused before its "+". It needs the proxy to pass
// the announced literal's size at the decision point; until it does (it
// passes 0 today), the test skips and says so.
func TestAppendCapThroughProxy(t *testing.T) {
	l, err := New(Options{AppendBytesPerUser: Rate{N: 1000, Per: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	spy := &sizeSpy{Limiter: l}
	addr, audit := startProxyWith(t, spy, startMemBackend(t))
	c := dial(t, addr, "127.0.0.1")
	c.want("a1 LOGIN alice alice-pw", "a1 OK")
	msg := strings.Repeat("x", 598) + "\r\n"
	c.sendRaw(fmt.Sprintf("p1 APPEND INBOX {%d}\r\n", len(msg)))
	c.expect("+")
	c.sendRaw(msg + "\r\n")
	c.expect("p1 OK")
	spy.mu.Lock()
	seen := spy.sizes[0]
	spy.mu.Unlock()
	if seen != int64(len(msg)) {
		t.Fatalf("the Limiter saw an APPEND of %d bytes, want %d", seen, len(msg))
	}
	c.sendRaw(fmt.Sprintf("p2 APPEND INBOX {%d}\r\n", len(msg)))
	c.expect("p2 NO [LIMIT]")
	c.want("p3 NOOP", "p3 OK")
	if audit.hits(LimitAppendBytesPerUser) != 1 {
		t.Errorf("%d append hits audited", audit.hits(LimitAppendBytesPerUser))
	}
}
