package audit

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// rfc5424 matches a message as DialSyslog writes it (RFC 5424 §6):
// PRI VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG.
var rfc5424 = regexp.MustCompile(`^<(\d{1,3})>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) ([!-~]{1,255}) ([!-~]{1,48}) (\d+) ([!-~]{1,32}) - (\{.*\})$`)

// syslogServer collects messages the way a syslog daemon would.
type syslogServer struct {
	mu   sync.Mutex
	msgs []string
	// dropped, when set, is closed once serveStream has closed the first
	// connection (dropFirst).
	dropped chan struct{}
}

func (s *syslogServer) add(m string) {
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	s.mu.Unlock()
}

func (s *syslogServer) wait(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(testenv.IOTimeout())
	for {
		s.mu.Lock()
		got := append([]string(nil), s.msgs...)
		s.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages, want %d", len(got), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// serveDatagrams reads one message per datagram.
func (s *syslogServer) serveDatagrams(c net.PacketConn) {
	buf := make([]byte, 64<<10)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		s.add(string(buf[:n]))
	}
}

// serveStream reads octet-counted messages (RFC 6587 §3.4.1); with
// dropFirst, it closes the first connection after one message, as a
// restarting server would.
func (s *syslogServer) serveStream(ln net.Listener, dropFirst bool) {
	for first := true; ; first = false {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func(c net.Conn, drop bool) {
			defer func() {
				c.Close()
				if drop && s.dropped != nil {
					close(s.dropped)
				}
			}()
			br := bufio.NewReader(c)
			for {
				l, err := br.ReadString(' ')
				if err != nil {
					return
				}
				n, err := strconv.Atoi(strings.TrimSuffix(l, " "))
				if err != nil {
					s.add("bad frame: " + l)
					return
				}
				msg := make([]byte, n)
				if _, err := io.ReadFull(br, msg); err != nil {
					return
				}
				s.add(string(msg))
				if drop {
					return
				}
			}
		}(c, dropFirst && first)
	}
}

func checkSyslog(t *testing.T, msgs []string, facility int) {
	t.Helper()
	var recs []string
	for _, m := range msgs {
		sm := rfc5424.FindStringSubmatch(m)
		if sm == nil {
			t.Fatalf("not an RFC 5424 message: %q", m)
		}
		pri, _ := strconv.Atoi(sm[1])
		r, err := ParseRecord([]byte(sm[7]))
		if err != nil {
			t.Fatal(err)
		}
		want := facility*8 + sevInfo
		switch {
		case r.Kind == KindAuth && r.Result == ResultFailure:
			want = facility*8 + sevNotice
		case r.Kind == KindSecurity:
			want = facility*8 + sevWarning
		}
		if pri != want || sm[6] != string(r.Kind) || sm[4] != "imapwarden" || sm[5] != strconv.Itoa(os.Getpid()) {
			t.Errorf("header %q for a %s record: PRI %d, want %d", m[:strings.Index(m, "{")], r.Kind, pri, want)
		}
		recs = append(recs, m)
	}
	// The messages, as a syslog server stores them, verify.
	p := filepath.Join(t.TempDir(), "syslog")
	os.WriteFile(p, []byte(strings.Join(recs, "\n")+"\n"), 0o600)
	mustVerify(t, []string{p}, VerifyOptions{})
}

func logSyslogRecords(t *testing.T, o SyslogOptions) {
	t.Helper()
	sink, err := DialSyslog(o)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(Options{Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	tr.Log(&Record{Kind: KindAuth, User: "alice", IP: mustAddr("192.0.2.1"), Result: ResultFailure, Reason: "credentials"})
	tr.Log(&Record{Kind: KindSecurity, Event: "starttls-injection"})
	for i := range 5 {
		tr.Log(cmdRecord(i))
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestSyslogUnixgram(t *testing.T) {
	dir, _ := os.MkdirTemp("", "sl") // sun_path is short: t.TempDir() can be too long
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "log")
	c, err := net.ListenPacket("unixgram", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv := &syslogServer{}
	go srv.serveDatagrams(c)
	logSyslogRecords(t, SyslogOptions{Network: "unix", Addr: path, Facility: FacilityLocal0})
	checkSyslog(t, srv.wait(t, 9), FacilityLocal0)
}

func TestSyslogUnixStream(t *testing.T) {
	dir, _ := os.MkdirTemp("", "sl")
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "log")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := &syslogServer{}
	go srv.serveStream(ln, false)
	// "unix" tries a datagram socket first, then a stream.
	logSyslogRecords(t, SyslogOptions{Network: "unix", Addr: path})
	checkSyslog(t, srv.wait(t, 9), FacilityAuthPriv)
}

// udpSyslog starts a syslogServer on a UDP port of 127.0.0.1 and returns
// it and its address.
func udpSyslog(t *testing.T) (*syslogServer, string) {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	srv := &syslogServer{}
	go srv.serveDatagrams(c)
	return srv, c.LocalAddr().String()
}

func TestSyslogUDP(t *testing.T) {
	srv, addr := udpSyslog(t)
	logSyslogRecords(t, SyslogOptions{Network: "udp", Addr: addr, Facility: FacilityLogAudit})
	checkSyslog(t, srv.wait(t, 9), FacilityLogAudit)
}

func TestSyslogTCPReconnects(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := &syslogServer{dropped: make(chan struct{})}
	go srv.serveStream(ln, true)
	sink, err := DialSyslog(SyslogOptions{Network: "tcp", Addr: ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(Options{Sink: sink}) // Block: a failed write is retried
	if err != nil {
		t.Fatal(err)
	}
	srv.wait(t, 1)
	<-srv.dropped // the server closed the connection after audit.start
	for i := range 20 {
		if err := tr.LogWait(cmdRecord(i), testenv.IOTimeout()); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	msgs := srv.wait(t, 22)
	// Nothing vanished into the dead connection.
	checkSyslog(t, msgs, FacilityAuthPriv)
}

func TestSyslogTLS(t *testing.T) {
	certPEM, keyPEM := selfSigned(t)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := &syslogServer{}
	go srv.serveStream(ln, false)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	logSyslogRecords(t, SyslogOptions{Network: "tls", Addr: ln.Addr().String(), TLS: &tls.Config{RootCAs: roots, ServerName: "localhost"}})
	checkSyslog(t, srv.wait(t, 9), FacilityAuthPriv)
}

func TestSyslogOptions(t *testing.T) {
	for _, o := range []SyslogOptions{{Network: "http", Addr: "x"}, {Network: "udp"}, {Network: "udp", Addr: "127.0.0.1:1", Facility: 24}} {
		if _, err := DialSyslog(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	if f, err := ParseFacility("LOCAL3"); err != nil || f != 19 {
		t.Errorf("local3: %d %v", f, err)
	}
	if _, err := ParseFacility("bogus"); err == nil {
		t.Error("bogus facility accepted")
	}
	if got := headerField("my host\x01name", 6); got != "myhost" {
		t.Errorf("headerField: %q", got)
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// selfSigned makes a certificate for localhost (the package imports no
// other package of ours, tlsterm included).
func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}
