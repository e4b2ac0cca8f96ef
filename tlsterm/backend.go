package tlsterm

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
)

// BackendOptions configures TLS toward a backend IMAP server.
type BackendOptions struct {
	// ServerName is verified against the backend's certificate and sent as
	// SNI; empty means the host part of the address given to BackendConfig.
	ServerName string
	// CAFile is a PEM bundle of trusted roots; empty means the system roots.
	CAFile string
	// Insecure skips verification, for legacy backends with self-signed
	// certificates. It must be explicit and cannot be combined with CAFile.
	Insecure bool
	// MinVersion defaults to TLS 1.2. Unlike the client side, TLS 1.0 and 1.1
	// are accepted here when asked for explicitly: the backend is a legacy
	// server on a network the operator controls.
	MinVersion uint16
	// ClientCert, if set, is presented when the backend asks for one.
	ClientCert CertFile
}

// backendSessionCache bounds the TLS sessions kept per backend config; a
// proxy talks to few backends, so a small cache resumes nearly every login.
const backendSessionCache = 64

// BackendConfig builds the client-side TLS config for dialing addr
// ("host:port"). Files are read once: build one config per backend and reuse
// it, which also lets its session cache resume handshakes.
func BackendConfig(o BackendOptions, addr string) (*tls.Config, error) {
	minVersion := o.MinVersion
	switch minVersion {
	case 0:
		minVersion = tls.VersionTLS12
	case tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13:
	default:
		return nil, fmt.Errorf("tlsterm: backend %s: unknown MinVersion %#04x", addr, minVersion)
	}
	if o.Insecure && o.CAFile != "" {
		return nil, fmt.Errorf("tlsterm: backend %s: Insecure and CAFile %s contradict each other", addr, o.CAFile)
	}
	name := o.ServerName
	if name == "" {
		name = addr
		if host, _, err := net.SplitHostPort(addr); err == nil {
			name = host
		}
	}
	if name == "" && !o.Insecure {
		return nil, fmt.Errorf("tlsterm: backend %q: no server name to verify", addr)
	}

	cfg := &tls.Config{
		ServerName: name,
		MinVersion: minVersion,
		// Offering "imap" lets an ALPN-aware backend refuse us if addr is
		// not an IMAP server after all (ALPACA, RFC 7301 §3.2); others ignore it.
		NextProtos:         []string{ALPNProtocol},
		InsecureSkipVerify: o.Insecure,
		ClientSessionCache: tls.NewLRUClientSessionCache(backendSessionCache),
	}
	if o.CAFile != "" {
		bundle, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tlsterm: load %s: %w", o.CAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(bundle) {
			return nil, fmt.Errorf("tlsterm: load %s: %w", o.CAFile, errors.New("no PEM certificates"))
		}
		cfg.RootCAs = pool
	}
	if o.ClientCert != (CertFile{}) {
		if o.ClientCert.Cert == "" || o.ClientCert.Key == "" {
			return nil, fmt.Errorf("tlsterm: backend %s: client certificate needs both Cert and Key files", addr)
		}
		cert, err := loadKeyPair(o.ClientCert)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg, nil
}
