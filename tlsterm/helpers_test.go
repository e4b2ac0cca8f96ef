package tlsterm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// hsResult is the server side's view of one handshake.
type hsResult struct {
	state tls.ConnectionState
	err   error
}

// testServer accepts TLS on a real 127.0.0.1 socket: net.Pipe is synchronous
// and would hide buffering and alert-ordering behaviour.
type testServer struct {
	addr    string
	results chan hsResult
}

// serveTLS runs handle for each accepted connection after its handshake and
// reports every handshake on results. Cleanup closes the listener and all
// connections and waits for every goroutine.
func serveTLS(tb testing.TB, cfg *tls.Config, handle func(*tls.Conn)) *testServer {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ts := &testServer{addr: ln.Addr().String(), results: make(chan hsResult, 64)}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					c.Close()
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
				}()
				tc := tls.Server(c, cfg)
				ctx, cancel := context.WithTimeout(context.Background(), testenv.IOTimeout())
				err := tc.HandshakeContext(ctx)
				cancel()
				select {
				case ts.results <- hsResult{tc.ConnectionState(), err}:
				default: // nobody is looking (benchmarks)
				}
				if err == nil && handle != nil {
					handle(tc)
				}
			})
		}
	})
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ts
}

// echo copies what the client sends back to it.
func echo(c *tls.Conn) { io.Copy(c, c) }

// result waits for the next server-side handshake outcome.
func (ts *testServer) result(t *testing.T) hsResult {
	t.Helper()
	select {
	case r := <-ts.results:
		return r
	case <-time.After(testenv.IOTimeout()):
		t.Fatal("no handshake on the server side")
		return hsResult{}
	}
}

func dial(tb testing.TB, addr string, cfg *tls.Config) (*tls.Conn, error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testenv.IOTimeout())
	defer cancel()
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tb.Cleanup(func() { c.Close() })
	return c.(*tls.Conn), nil
}

// mustDial dials and, so that TLS 1.3 refusals that arrive after the
// client's Finished are seen too, round-trips one byte through echo.
func mustDial(t *testing.T, addr string, cfg *tls.Config) *tls.Conn {
	t.Helper()
	c, err := dial(t, addr, cfg)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	roundTrip(t, c)
	return c
}

func roundTrip(t *testing.T, c *tls.Conn) {
	t.Helper()
	c.SetDeadline(time.Now().Add(testenv.IOTimeout()))
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, 1)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
}

// wantRefused checks that the client handshake failed with the given alert
// text (crypto/tls keeps its alert type private).
func wantRefused(t *testing.T, c *tls.Conn, err error, alert string) {
	t.Helper()
	if err == nil {
		c.SetDeadline(time.Now().Add(testenv.IOTimeout()))
		_, err = c.Read(make([]byte, 1))
	}
	if err == nil || errors.Is(err, io.EOF) || !strings.Contains(err.Error(), alert) {
		t.Fatalf("got error %v, want a %q alert", err, alert)
	}
}

func clientCfg(pool *x509.CertPool, sni string, alpn ...string) *tls.Config {
	return &tls.Config{RootCAs: pool, ServerName: sni, NextProtos: alpn}
}

func newCA(tb testing.TB) *CA {
	tb.Helper()
	ca, err := NewCA()
	if err != nil {
		tb.Fatal(err)
	}
	return ca
}

func writeFiles(tb testing.TB, ca *CA, dir, name string, hosts ...string) CertFile {
	tb.Helper()
	cf, err := ca.WriteFiles(dir, name, hosts)
	if err != nil {
		tb.Fatal(err)
	}
	return cf
}

func newServer(t *testing.T, opts ServerOptions) *Server {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = zaptest.NewLogger(t, zaptest.Level(zap.DebugLevel))
	}
	s, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// serialOf reads the leaf serial number from a certificate file.
func serialOf(t *testing.T, path string) *big.Int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert.SerialNumber
}

func servedSerial(c *tls.Conn) *big.Int {
	return c.ConnectionState().PeerCertificates[0].SerialNumber
}
