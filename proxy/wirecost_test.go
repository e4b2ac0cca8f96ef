package proxy

import (
	"crypto/sha256"
	"net"
	"sync/atomic"
	"testing"
)

// TestBulkFetchGathersRecords: a 1 MiB message reaches the client intact
// in writes of several TLS records each (countConn.gather), not one write
// per 16 KiB record: the system calls were most of a bulk FETCH's CPU.
func TestBulkFetchGathersRecords(t *testing.T) {
	var writes, octets atomic.Int64
	h := newDovecotHarness(t, func(dc *dovecottestServer) *Backend {
		return &Backend{Name: "dovecot", Addr: dc.Addr, Security: BackendPlain, Login: LoginCommand}
	}, func(o *Options) {
		o.wrapClient = func(c net.Conn) net.Conn { return &writeCounter{Conn: c, writes: &writes, octets: &octets} }
	})
	big := bigMessage(1 << 20)
	h.dc.Deliver(t, "alice", "INBOX", big)
	c := dialTLS(t, h.imaps)
	c.expect("* OK")
	c.transact("a1 LOGIN alice alice-pw", "a1 OK")
	c.transact("a2 SELECT INBOX", "a2 OK")
	w0, o0 := writes.Load(), octets.Load()
	if got := c.fetchBody("a3", 1); sha256.Sum256(got) != sha256.Sum256(big) {
		t.Fatal("the message changed on its way")
	}
	w, o := writes.Load()-w0, octets.Load()-o0
	// A client write buffer (64 KiB) per write: 17 for 1 MiB, or a few
	// more when a response ends; one per record would be 65.
	if max := o/(48<<10) + 2; w > max {
		t.Errorf("%d writes for %d octets, want at most %d", w, o, max)
	}
	t.Logf("%d writes for %d octets", w, o)
}

// writeCounter counts the writes on a connection.
type writeCounter struct {
	net.Conn
	writes, octets *atomic.Int64
}

func (c *writeCounter) Write(p []byte) (int, error) {
	c.writes.Add(1)
	n, err := c.Conn.Write(p)
	c.octets.Add(int64(n))
	return n, err
}
