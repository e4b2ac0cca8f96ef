package ratelimit

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/imapwarden/imapwarden/internal/cyrustest"
	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/proxy"
)

// Content is charged whatever header names the client put in a
// HEADER.FIELDS list it may send: the backend echoes them in the response
// item's name (RFC 9051 §7.5.2), and an echoed "[" must not make the
// response tracker lose the items after it (ARCHITECTURE.md §12: count
// what is delivered).
func TestFetchCapCountsAfterOddHeaderNames(t *testing.T) {
	for _, name := range []string{"dovecot", "cyrus"} {
		t.Run(name, func(t *testing.T) { fetchCapOddHeaderNames(t, name) })
	}
}

func fetchCapOddHeaderNames(t *testing.T, name string) {
	const kb = 1 << 10
	const size = 100 * kb
	var backend *proxy.Backend
	switch name {
	case "dovecot":
		dovecottest.Require(t)
		dc := dovecottest.Start(t, dovecottest.Options{})
		dc.Deliver(t, "alice", "INBOX", bigMessage(1, size))
		backend = dovecotBackend(t, dc)
	case "cyrus":
		cyrustest.Require(t)
		cs := cyrustest.Start(t, cyrustest.Options{})
		cs.Deliver(t, "alice", "INBOX", bigMessage(1, size))
		pem, err := os.ReadFile(cs.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(pem)
		backend = &proxy.Backend{Name: "cyrus", Addr: cs.Addr, Security: proxy.BackendStartTLS,
			TLS: &tls.Config{RootCAs: roots, ServerName: "localhost"}}
	}
	const budget = 250 * kb
	l, err := New(Options{FetchBytesPerUser: Rate{N: budget, Per: time.Hour}, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr, _ := startProxy(t, l, backend)
	c := dial(t, addr, "127.0.0.1")
	c.want("a1 LOGIN alice alice-pw", "a1 OK")
	c.want("a2 SELECT INBOX", "a2 OK")
	var got int64
	for i := 1; i <= 10; i++ {
		resp, n := c.do(fmt.Sprintf(`f%d UID FETCH 1 (BODY.PEEK[HEADER.FIELDS ("X[Y")] BODY.PEEK[])`, i))
		got += n
		if strings.HasPrefix(resp, "* BYE [LIMIT]") {
			break
		}
		if strings.HasPrefix(resp, fmt.Sprintf("f%d BAD [CLIENTBUG]", i)) {
			// The proxy refused the name (ARCHITECTURE.md §7): nothing
			// was forwarded, nothing delivered.
			continue
		}
		if !strings.HasPrefix(resp, fmt.Sprintf("f%d OK", i)) {
			t.Fatalf("fetch %d: %q", i, resp)
		}
	}
	if got > budget+size {
		t.Fatalf("%s: %d content octets delivered under a %d-octet cap", name, got, budget)
	}
}
