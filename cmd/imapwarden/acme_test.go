package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/imapwarden/imapwarden/internal/pebbletest"
	"github.com/imapwarden/imapwarden/internal/testenv"
)

// TestServeACME runs serve with a certificate obtained from a real ACME
// server (Pebble), answering TLS-ALPN-01 on the IMAP listener itself, and
// checks that validate and reload place no order.
func TestServeACME(t *testing.T) {
	pebbletest.Require(t)
	imapsAddr, pb, s := startACMEServe(t)
	// The certificate arrives shortly after start; clients verify it
	// against Pebble's root.
	var c *tls.Conn
	var err error
	deadline := time.Now().Add(testenv.IOTimeout())
	for {
		c, err = tls.Dial("tcp", imapsAddr, &tls.Config{ServerName: "localhost", RootCAs: pb.IssuerPool, NextProtos: []string{"imap"}})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ACME certificate served: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if l, _ := r.ReadString('\n'); !strings.HasPrefix(l, "* OK") {
		t.Fatalf("greeting %q", l)
	}
	fmt.Fprintf(c, "a LOGIN demo demo-password\r\n")
	if l, _ := r.ReadString('\n'); !strings.HasPrefix(l, "a OK") {
		t.Fatalf("login %q", l)
	}
	if n := pb.Orders(); n != 1 {
		t.Errorf("%d ACME orders, want 1", n)
	}
	if m := s.reg; m != nil {
		mfs, _ := m.Gather()
		found := false
		for _, mf := range mfs {
			if mf.GetName() == "imapwarden_certificate_expiry_timestamp_seconds" && len(mf.GetMetric()) > 0 && mf.GetMetric()[0].GetGauge().GetValue() > float64(time.Now().Unix()) {
				found = true
			}
		}
		if !found {
			t.Error("no imapwarden_certificate_expiry_timestamp_seconds in the future for the ACME certificate")
		}
	}
}

// startACMEServe starts Pebble and serve on a port both are told of
// before either listens; a port taken meanwhile by another process (a
// busy machine's other tests) is tried again with a fresh one.
func startACMEServe(t *testing.T) (string, *pebbletest.Pebble, *setup) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		imapsAddr, pb, s, err := tryACMEServe(t)
		if err == nil {
			return imapsAddr, pb, s
		}
		if !errors.Is(err, syscall.EADDRINUSE) || attempt == 3 {
			t.Fatalf("runServe: %v", err)
		}
	}
}

func tryACMEServe(t *testing.T) (string, *pebbletest.Pebble, *setup, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	imapsAddr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(imapsAddr)
	var tlsPort int
	fmt.Sscan(port, &tlsPort)
	pb := pebbletest.Start(t, pebbletest.Options{TLSPort: tlsPort})
	backendAddr, stopBackend, err := startDemoBackend(zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopBackend)
	dir := t.TempDir()
	cfgText := fmt.Sprintf(`
listeners: [{address: %q, mode: tls}]
tls:
  acme:
    names: [localhost]
    ca: %q
    trusted_roots: %q
    storage: %q
    tls_alpn_port: %d
    disable_http01: true
backends: {mem: {address: %q, security: plain}}
admin: {address: ""}
`, imapsAddr, pb.DirectoryURL, pb.RootsFile, filepath.Join(dir, "acme"), tlsPort, backendAddr)
	cfgFile := filepath.Join(dir, "imapwarden.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfigFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	log := zaptest.NewLogger(t)
	// Checking the file (validate, SIGHUP) must not order anything.
	if _, err := check(cfg, log); err != nil {
		t.Fatal(err)
	}
	if n := pb.Orders(); n != 0 {
		t.Fatalf("check placed %d ACME orders", n)
	}
	s, err := build(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	s.lameDuck = 0 // the test stops at once
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	started := make(chan struct{})
	go func() { done <- runServe(ctx, s, log, nil, nil, func([]net.Addr, net.Addr) { close(started) }) }()
	select {
	case <-started:
	case err := <-done:
		// Waiting on started alone hung the package until its timeout.
		cancel()
		return "", nil, nil, err
	}
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return imapsAddr, pb, s, nil
}
