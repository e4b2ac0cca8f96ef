package tlsterm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// generatedValidity is how long the files written by WriteSelfSigned and
// CA.WriteFiles are valid: long enough for a demo, short enough to notice.
const generatedValidity = 365 * 24 * time.Hour

// SelfSigned makes a fresh ECDSA P-256 self-signed certificate for hosts (DNS
// names and IP addresses), valid from an hour ago (clock skew) for validity.
func SelfSigned(hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsterm: generate key: %w", err)
	}
	tmpl, err := leafTemplate(hosts, validity)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsterm: self-sign: %w", err)
	}
	return encodePair(der, key)
}

// WriteSelfSigned writes a fresh self-signed cert.pem and key.pem into dir
// (the key readable by the owner only) and returns their paths.
func WriteSelfSigned(dir string, hosts []string) (CertFile, error) {
	certPEM, keyPEM, err := SelfSigned(hosts, generatedValidity)
	if err != nil {
		return CertFile{}, err
	}
	cf := CertFile{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem")}
	return cf, writePair(cf, certPEM, keyPEM)
}

// CA is a certificate authority for tests across the module: it signs leaf
// certificates that verify against Pool or the file from WriteCA.
type CA struct {
	CertPEM []byte            // the CA certificate, PEM-encoded
	Cert    *x509.Certificate // the same, parsed
	key     crypto.Signer
}

// NewCA makes a fresh ECDSA P-256 CA valid from an hour ago for a year.
func NewCA() (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tlsterm: generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "imapwarden test CA " + serial.Text(16)[:8]},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(generatedValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("tlsterm: create CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("tlsterm: parse CA: %w", err)
	}
	return &CA{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Cert:    cert,
		key:     key,
	}, nil
}

// Issue signs a fresh ECDSA P-256 leaf for hosts (DNS names and IP
// addresses; the first is also the subject CN), usable by servers and
// clients alike.
func (ca *CA) Issue(hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsterm: generate key: %w", err)
	}
	return ca.issue(hosts, validity, key)
}

// issue signs a leaf for any key type; tests use it for RSA.
func (ca *CA) issue(hosts []string, validity time.Duration, key crypto.Signer) (certPEM, keyPEM []byte, err error) {
	tmpl, err := leafTemplate(hosts, validity)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsterm: issue for %v: %w", hosts, err)
	}
	return encodePair(der, key)
}

// WriteFiles issues a leaf for hosts and writes name.pem and name-key.pem
// (owner-only) into dir.
func (ca *CA) WriteFiles(dir, name string, hosts []string) (CertFile, error) {
	certPEM, keyPEM, err := ca.Issue(hosts, generatedValidity)
	if err != nil {
		return CertFile{}, err
	}
	cf := CertFile{Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+"-key.pem")}
	return cf, writePair(cf, certPEM, keyPEM)
}

// WriteCA writes the CA certificate to dir/ca.pem and returns the path.
func (ca *CA) WriteCA(dir string) (string, error) {
	path := filepath.Join(dir, "ca.pem")
	return path, writeFileAtomic(path, ca.CertPEM, 0o644)
}

// Pool returns a new pool holding only the CA certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

func leafTemplate(hosts []string, validity time.Duration) (*x509.Certificate, error) {
	if len(hosts) == 0 {
		return nil, errors.New("tlsterm: certificate needs at least one host")
	}
	if validity <= 0 {
		return nil, fmt.Errorf("tlsterm: certificate validity %v is not positive", validity)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hosts[0]},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return tmpl, nil
}

// newSerial returns a positive 128-bit serial (RFC 5280 §4.1.2.2 allows up
// to 20 octets; randomness keeps fresh certificates distinguishable).
func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("tlsterm: serial: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func encodePair(der []byte, key crypto.Signer) (certPEM, keyPEM []byte, err error) {
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsterm: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), nil
}

// writePair writes the key first, then the certificate, each atomically, so
// a Watch polling meanwhile sees a mismatch at worst (and retries on the next
// change), never a truncated file.
func writePair(cf CertFile, certPEM, keyPEM []byte) error {
	if err := writeFileAtomic(cf.Key, keyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(cf.Cert, certPEM, 0o644)
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("tlsterm: write %s: %w", path, err)
	}
	tmp := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("tlsterm: write %s: %w", path, err)
	}
	return nil
}
