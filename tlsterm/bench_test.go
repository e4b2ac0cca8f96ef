package tlsterm

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"io"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
)

// BenchmarkHandshake measures complete handshakes over loopback through
// TLSConfig, client and server in this process: ns/op, allocs/op and
// cpu-ns/op (user+system CPU of the process, getrusage) are the sum of both
// sides; handshakes/s is the rate one client loop reaches. The client uses
// Go's defaults (X25519MLKEM768 key share first on TLS 1.3), which is what a
// modern client sends.
//
//	go test -run '^$' -bench Handshake -benchtime 2s ./tlsterm/
func BenchmarkHandshake(b *testing.B) {
	ca := newCA(b)
	dir := b.TempDir()
	const host = "bench.example.com"
	ecdsaCF := writeFiles(b, ca, dir, "ecdsa", host)

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	certPEM, keyPEM, err := ca.issue([]string{host}, time.Hour, rsaKey)
	if err != nil {
		b.Fatal(err)
	}
	rsaCF := CertFile{Cert: filepath.Join(dir, "rsa.pem"), Key: filepath.Join(dir, "rsa-key.pem")}
	if err := writePair(rsaCF, certPEM, keyPEM); err != nil {
		b.Fatal(err)
	}

	for _, bc := range []struct {
		name    string
		cert    CertFile
		version uint16
		resume  bool
		curves  []tls.CurveID // nil: Go's defaults
	}{
		{"full/ECDSA-P256/TLS1.3", ecdsaCF, tls.VersionTLS13, false, nil},
		// Without the post-quantum hybrid, to show what it costs per login.
		{"full/ECDSA-P256/TLS1.3-X25519", ecdsaCF, tls.VersionTLS13, false, []tls.CurveID{tls.X25519}},
		{"full/RSA-2048/TLS1.3", rsaCF, tls.VersionTLS13, false, nil},
		{"full/ECDSA-P256/TLS1.2", ecdsaCF, tls.VersionTLS12, false, nil},
		{"full/RSA-2048/TLS1.2", rsaCF, tls.VersionTLS12, false, nil},
		// TLS 1.3 resumption still runs a key exchange (psk_dhe_ke, RFC 8446
		// §4.2.9): with the ML-KEM hybrid it costs about a full ECDSA handshake.
		{"resumed/ECDSA-P256/TLS1.3", ecdsaCF, tls.VersionTLS13, true, nil},
		{"resumed/ECDSA-P256/TLS1.3-X25519", ecdsaCF, tls.VersionTLS13, true, []tls.CurveID{tls.X25519}},
		{"resumed/RSA-2048/TLS1.3", rsaCF, tls.VersionTLS13, true, nil},
		{"resumed/ECDSA-P256/TLS1.2", ecdsaCF, tls.VersionTLS12, true, nil},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := NewServer(ServerOptions{Certificates: []CertFile{bc.cert}, Logger: zap.NewNop()})
			if err != nil {
				b.Fatal(err)
			}
			// The server closes right after the handshake; the client reads to
			// EOF, which also takes in the TLS 1.3 session ticket.
			ts := serveTLS(b, s.TLSConfig(), func(c *tls.Conn) { c.Close() })
			cfg := clientCfg(ca.Pool(), host, ALPNProtocol)
			cfg.MaxVersion = bc.version
			cfg.CurvePreferences = bc.curves
			if bc.resume {
				cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
			}
			d := tls.Dialer{Config: cfg}
			handshake := func() bool {
				nc, err := d.Dial("tcp", ts.addr)
				if err != nil {
					b.Fatal(err)
				}
				c := nc.(*tls.Conn)
				if _, err := io.Copy(io.Discard, c); err != nil {
					b.Fatal(err)
				}
				resumed := c.ConnectionState().DidResume
				c.Close()
				return resumed
			}
			if bc.resume {
				handshake() // prime the session cache
			}
			n, resumed := 0, 0
			b.ReportAllocs()
			cpu0, start := cpuTime(b), time.Now()
			for b.Loop() {
				n++
				if handshake() {
					resumed++
				}
			}
			elapsed, cpu := time.Since(start), cpuTime(b)-cpu0
			b.ReportMetric(float64(n)/elapsed.Seconds(), "handshakes/s")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/op")
			if bc.resume && resumed != n {
				b.Fatalf("%d of %d handshakes resumed", resumed, n)
			}
			if !bc.resume && resumed != 0 {
				b.Fatalf("%d of %d full handshakes resumed", resumed, n)
			}
		})
	}
}

// cpuTime is the user+system CPU time of the whole process so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
