package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/internal/redistest"
	"github.com/imapwarden/imapwarden/tlsterm"
)

// The fleet's Redis holds every proxy's lockouts and counters and is, by
// its nature, on another host: rate_limits.redis.tls reaches it over TLS
// (verified: a certificate from another CA is refused), and an address off
// loopback without it is warned about, as a plain backend is: its password
// and every lockout, which anyone on the path could lift, go in clear.
func TestRateLimitRedisTLS(t *testing.T) {
	dir := t.TempDir()
	tlsFiles(t, dir)
	ca, err := tlsterm.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	caFile, err := ca.WriteCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := ca.WriteFiles(dir, "redis", []string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	pw := filepath.Join(dir, "redis.pw")
	if err := os.WriteFile(pw, []byte("redis-password-0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	redistest.Start(t, "--tls-port", strconv.Itoa(tlsPort), "--tls-cert-file", cf.Cert, "--tls-key-file", cf.Key,
		"--tls-ca-cert-file", caFile, "--tls-auth-clients", "no", "--requirepass", "redis-password-0123")
	tlsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort))

	base := "listeners: [{address: \"127.0.0.1:0\", mode: tls}]\ntls: {certificates: [{cert: " + dir + "/cert.pem, key: " + dir + "/key.pem}]}\n" +
		"backends: {main: {address: \"127.0.0.1:143\", security: plain}}\n"
	setupOf := func(t *testing.T, redisCfg string) *setup {
		t.Helper()
		cfg, err := parseConfig([]byte(base + "rate_limits: {redis: " + redisCfg + "}\n"))
		if err != nil {
			t.Fatal(err)
		}
		s, err := build(cfg, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.close)
		return s
	}
	ping := func(s *setup) error { return s.redis.Ping(context.Background()).Err() }

	t.Run("verified", func(t *testing.T) {
		s := setupOf(t, fmt.Sprintf("{address: %q, password_file: %s, timeout: 10s, tls: {ca_file: %s}}", tlsAddr, pw, caFile))
		if err := ping(s); err != nil {
			t.Fatalf("PING over TLS: %v", err)
		}
	})
	t.Run("other CA refused", func(t *testing.T) {
		other, err := tlsterm.NewCA()
		if err != nil {
			t.Fatal(err)
		}
		otherDir := t.TempDir()
		otherFile, err := other.WriteCA(otherDir)
		if err != nil {
			t.Fatal(err)
		}
		s := setupOf(t, fmt.Sprintf("{address: %q, password_file: %s, timeout: 10s, tls: {ca_file: %s}}", tlsAddr, pw, otherFile))
		if err := ping(s); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("PING to a server of another CA: %v, want a certificate error", err)
		}
	})
	t.Run("warned in clear", func(t *testing.T) {
		// The limiter dials its store at once: 0.0.0.0 stands for an
		// address off loopback that stays on this host (Linux connects it
		// to itself), at a port where nothing listens.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		off := net.JoinHostPort("0.0.0.0", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
		ln.Close()
		for _, tc := range []struct {
			redis string
			warn  bool
		}{
			{"{address: \"" + off + "\"}", true},
			{"{addresses: [\"" + off + "\"], sentinel_master: m}", true},
			{"{address: \"" + off + "\", tls: {ca_file: " + caFile + "}}", false},
			{"{address: \"127.0.0.1:6379\"}", false},
		} {
			s := setupOf(t, tc.redis)
			got := slices.ContainsFunc(s.warnings, func(w warning) bool {
				return w.Key == "rate_limits.redis.tls" && strings.Contains(w.Msg, "in clear")
			})
			if got != tc.warn {
				t.Errorf("%s: warned %v, want %v (%v)", tc.redis, got, tc.warn, s.warnings)
			}
		}
	})
}
