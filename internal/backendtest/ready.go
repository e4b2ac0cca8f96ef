package backendtest

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strings"
	"time"
)

// WaitReady polls until addr (plain IMAP) greets with "* OK" and tlsAddr
// (implicit TLS) completes a handshake verified against pool for "localhost"
// and greets too. It gives up when p exits, when failed (if not nil) returns
// an error (a fixture reads its log for fatal lines there), or after timeout.
func WaitReady(p *Proc, addr, tlsAddr string, pool *x509.CertPool, timeout time.Duration, failed func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.Done():
			return fmt.Errorf("server exited during start: %v", p.Err())
		default:
		}
		if failed != nil {
			if err := failed(); err != nil {
				return err
			}
		}
		err := probe(p, addr, nil, failed)
		if err == nil {
			err = probe(p, tlsAddr, &tls.Config{RootCAs: pool, ServerName: "localhost"}, failed)
		}
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// probe connects to addr and expects an IMAP greeting. It gives up early when
// p exits or failed reports an error: after losing the port race, addr may
// belong to another process that accepts but never greets.
func probe(p *Proc, addr string, tlsConf *tls.Config, failed func() error) error {
	raw, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer raw.Close()
	probeDone := make(chan struct{})
	defer close(probeDone)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-p.Done():
				raw.Close()
				return
			case <-probeDone:
				return
			case <-tick.C:
				if failed != nil && failed() != nil {
					raw.Close()
					return
				}
			}
		}
	}()
	var c net.Conn = raw
	// Generous for a loopback greeting on a loaded machine; a probe that
	// times out is retried until the overall timeout.
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if tlsConf != nil {
		tc := tls.Client(c, tlsConf)
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("TLS handshake with %s: %w", addr, err)
		}
		c = tc
	}
	greeting, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("greeting from %s: %w", addr, err)
	}
	if !strings.HasPrefix(greeting, "* OK") {
		return fmt.Errorf("greeting from %s: %q", addr, greeting)
	}
	// Say goodbye, so the server logs a clean disconnect rather than an
	// error for the probe.
	_, _ = c.Write([]byte("p LOGOUT\r\n"))
	return nil
}
