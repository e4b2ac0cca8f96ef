package tlsterm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"testing"
	"time"
)

func TestSelfSigned(t *testing.T) {
	certPEM, keyPEM, err := SelfSigned([]string{"mail.example.com", "127.0.0.1", "::1"}, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	leaf := pair.Leaf
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("key %T, want ECDSA P-256", leaf.PublicKey)
	}
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "mail.example.com" ||
		len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("SANs %v %v", leaf.DNSNames, leaf.IPAddresses)
	}
	now := time.Now()
	if d := now.Sub(leaf.NotBefore); d < 59*time.Minute || d > 61*time.Minute {
		t.Errorf("NotBefore %v, want an hour ago", leaf.NotBefore)
	}
	if d := leaf.NotAfter.Sub(now); d < 47*time.Hour || d > 48*time.Hour {
		t.Errorf("NotAfter %v, want in 48h", leaf.NotAfter)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "mail.example.com"}); err != nil {
		t.Errorf("does not verify against itself: %v", err)
	}

	if _, _, err := SelfSigned(nil, time.Hour); err == nil {
		t.Error("no hosts accepted")
	}
	if _, _, err := SelfSigned([]string{"x"}, 0); err == nil {
		t.Error("zero validity accepted")
	}
}

func TestWriteSelfSigned(t *testing.T) {
	dir := t.TempDir()
	cf, err := WriteSelfSigned(dir, []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(cf.Key)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("key mode %v, want 0600", perm)
	}
	newServer(t, ServerOptions{Certificates: []CertFile{cf}})
	if _, err := WriteSelfSigned(dir+"/missing", []string{"localhost"}); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
}

func TestCA(t *testing.T) {
	ca := newCA(t)
	if !ca.Cert.IsCA {
		t.Fatal("CA certificate is not a CA")
	}
	certPEM, keyPEM, err := ca.Issue([]string{"imap.example.com", "192.0.2.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	// Server and client auth alike: tests use issued leaves on both sides.
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		opts := x509.VerifyOptions{Roots: ca.Pool(), DNSName: "imap.example.com", KeyUsages: []x509.ExtKeyUsage{usage}}
		if _, err := pair.Leaf.Verify(opts); err != nil {
			t.Errorf("usage %v: %v", usage, err)
		}
	}
	if err := pair.Leaf.VerifyHostname("192.0.2.1"); err != nil {
		t.Errorf("IP SAN: %v", err)
	}
	if _, _, err := ca.Issue(nil, time.Hour); err == nil {
		t.Error("no hosts accepted")
	}

	dir := t.TempDir()
	path, err := ca.WriteCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(path); err != nil || string(data) != string(ca.CertPEM) {
		t.Errorf("WriteCA wrote %q, %v", data, err)
	}
	cf := writeFiles(t, ca, dir, "leaf", "leaf.example.com")
	if cf.Cert != dir+"/leaf.pem" || cf.Key != dir+"/leaf-key.pem" {
		t.Errorf("WriteFiles paths %+v", cf)
	}
	if fi, err := os.Stat(cf.Key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", fi, err)
	}
}
