package proxy

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"net"
	"strings"
	"sync"
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

// TestBackendLoginPipelined: ID leaves with the login command in one
// write (RFC 9051 §5.5), the backend's answer to it not awaited: a round
// trip less per login. A tap between the proxy and Dovecot logs each line
// each way before relaying it, so a line the backend sent between the two
// means the proxy waited.
func TestBackendLoginPipelined(t *testing.T) {
	for _, login := range []LoginMode{LoginAuto, LoginCommand} {
		t.Run(cmp.Or(string(login), "auto"), func(t *testing.T) {
			var (
				mu     sync.Mutex
				events []string // "C line" from the proxy, "S line" from Dovecot
				dcAddr atomic.Value
			)
			tap := serveEach(t, func(c net.Conn) {
				d, err := net.Dial("tcp", dcAddr.Load().(string))
				if err != nil {
					t.Error(err)
					return
				}
				var wg sync.WaitGroup
				pipe := func(dst, src net.Conn, who string) {
					defer dst.Close()
					var part []byte
					buf := make([]byte, 64<<10)
					for {
						n, err := src.Read(buf)
						part = append(part, buf[:n]...)
						mu.Lock()
						for {
							i := bytes.IndexByte(part, '\n')
							if i < 0 {
								break
							}
							events = append(events, who+" "+string(part[:i]))
							part = part[i+1:]
						}
						mu.Unlock()
						if _, werr := dst.Write(buf[:n]); err != nil || werr != nil {
							return
						}
					}
				}
				wg.Go(func() { pipe(c, d, "S") })
				pipe(d, c, "C")
				wg.Wait()
			})
			h := newDovecotHarness(t, func(dc *dovecottestServer) *Backend {
				dcAddr.Store(dc.Addr)
				return &Backend{Name: "dovecot", Addr: tap.Addr().String(), Security: BackendPlain, Login: login, SendID: true}
			})
			c := dialTLS(t, h.imaps)
			c.expect("* OK")
			c.transact("a1 LOGIN alice alice-pw", "a1 OK")
			c.transact("a2 SELECT INBOX", "a2 OK")
			mu.Lock()
			defer mu.Unlock()
			id, auth := -1, -1
			for i, e := range events {
				switch {
				case strings.HasPrefix(e, "C ") && strings.Contains(e, " ID ("):
					id = i
				case strings.HasPrefix(e, "C ") && (strings.Contains(e, " AUTHENTICATE ") || strings.Contains(e, " LOGIN ")) && auth < 0:
					auth = i
				}
			}
			if id < 0 || auth < id {
				t.Fatalf("no ID before the login:\n%s", strings.Join(events, "\n"))
			}
			for _, e := range events[id:auth] {
				if strings.HasPrefix(e, "S ") {
					t.Fatalf("the proxy waited for %q before the login:\n%s", e, strings.Join(events, "\n"))
				}
			}
		})
	}
}
