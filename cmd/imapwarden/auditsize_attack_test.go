package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/audit"
	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/tlsterm"
)

// What a client sends before logging in must not stop the audit trail
// for everyone. Each syslog message is one datagram (RFC 5426, a unix
// datagram socket): a record must fit one. An unauthenticated client's
// ID (30 values of 1024 control characters, each escaped to 6 bytes)
// and a long user name make its failed login's auth record a few hundred
// KiB: the datagram is refused (EMSGSIZE), the trail fails closed from
// that write on, and every other user's commands are refused.
func TestUnauthenticatedClientCannotStopTheSyslogTrail(t *testing.T) {
	dovecottest.Require(t)
	dc := dovecottest.Start(t, dovecottest.Options{})

	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	got := make(chan int, 1024)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			got <- n
		}
	}()
	sink, err := audit.DialSyslog(audit.SyslogOptions{Network: "udp", Addr: pc.LocalAddr().String()})
	if err != nil {
		t.Fatal(err)
	}
	trail, err := audit.New(audit.Options{Sink: sink, Logger: zap.NewNop(), Software: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer trail.Close()
	certPEM, keyPEM, err := tlsterm.SelfSigned([]string{"localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.NewServer(proxy.Options{
		Listeners: []proxy.ListenerOptions{{Name: "imaps", Addr: "127.0.0.1:0", Mode: proxy.ImplicitTLS,
			TLS: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"imap"}}}},
		Router:  &proxy.StaticRouter{Default: dovecotBackend(t, dc)},
		Auditor: newAuditWire(trail),
		Logger:  zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	addr := srv.Addrs()[0].String()

	// The unauthenticated client: an ID the proxy accepts (RFC 2971 §3.3
	// limits: 30 pairs, 30-octet fields, 1024-octet values), then a login
	// that fails.
	ctl := strings.Repeat("\x01", 1024)
	var id strings.Builder
	id.WriteString("(")
	for i := range 30 {
		if i > 0 {
			id.WriteString(" ")
		}
		fmt.Fprintf(&id, `"f%02d" "%s"`, i, ctl)
	}
	id.WriteString(")")
	m := dialAud(t, addr)
	m.do("m1", "OK", "ID "+id.String())
	m.do("m2", "NO", `LOGIN "`+strings.Repeat("\x01", 60000)+`" x`)

	// Another user, afterwards.
	c := dialAud(t, addr)
	c.do("a1", "OK", "LOGIN alice alice-pw")
	health := trail.Health()
	fmt.Fprintf(c.c, "a2 SELECT INBOX\r\n")
	var answer []string
	for {
		c.c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
		l, err := c.br.ReadString('\n')
		if l != "" {
			answer = append(answer, strings.TrimSpace(l))
		}
		if err != nil || strings.HasPrefix(l, "a2 ") {
			break
		}
	}
	if len(answer) == 0 || !strings.HasPrefix(answer[len(answer)-1], "a2 OK") {
		t.Errorf("alice's SELECT after an unauthenticated client's ID and failed LOGIN: %q (trail health: %v)", answer, health)
	}
}

// The caps on a record (audit.MaxUIDs and the like) exist so that a
// hostile client cannot make the trail amplify its input. Before login
// too: an unauthenticated client's ID values and user name reach the auth
// record whole, each control character escaped to 6 bytes, so every
// failed LOGIN of a 64 KiB line writes about 6 times that to the disk
// (16 of them a connection). A record a client can cause stays within
// what one syslog datagram holds and what the client sent.
func TestPreAuthRecordsDoNotAmplifyTheClient(t *testing.T) {
	dovecottest.Require(t)
	dc := dovecottest.Start(t, dovecottest.Options{})
	p := startAudProxy(t, dovecotBackend(t, dc))
	ctl := strings.Repeat("\x01", 1024)
	var id strings.Builder
	id.WriteString("(")
	for i := range 30 {
		if i > 0 {
			id.WriteString(" ")
		}
		fmt.Fprintf(&id, `"f%02d" "%s"`, i, ctl)
	}
	id.WriteString(")")
	m := dialAud(t, p.addr)
	m.do("m1", "OK", "ID "+id.String())
	login := `LOGIN "` + strings.Repeat("\x01", 60000) + `" x`
	m.do("m2", "NO", login)
	sent := len("m1 ID "+id.String()) + len("m2 "+login) + 4
	p.stop()
	b, err := os.ReadFile(p.file)
	if err != nil {
		t.Fatal(err)
	}
	longest := 0
	for _, l := range strings.Split(string(b), "\n") {
		longest = max(longest, len(l))
	}
	if longest > 64<<10 || longest > sent {
		t.Errorf("an unauthenticated client sent %d bytes; its longest audit record is %d bytes (%.1fx)", sent, longest, float64(longest)/float64(sent))
	}
}
