package tlsterm

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync/atomic"

	"go.uber.org/zap"
)

// ClientAuth is a listener's policy for client certificates.
type ClientAuth int

const (
	// ClientAuthNone asks for no client certificate.
	ClientAuthNone ClientAuth = iota
	// ClientAuthRequest asks for one; a client may send none, but one that
	// it sends must verify against the CA (tls.VerifyClientCertIfGiven).
	ClientAuthRequest
	// ClientAuthRequire refuses the handshake without a client certificate
	// that verifies against the CA (tls.RequireAndVerifyClientCert).
	ClientAuthRequire
)

// There is deliberately no "request without verifying": an unverified
// certificate's subject would reach policy input and SASL EXTERNAL as if
// someone had vouched for it.

// ParseClientAuth reads "none" (or ""), "request" or "require".
func ParseClientAuth(s string) (ClientAuth, error) {
	switch s {
	case "", "none":
		return ClientAuthNone, nil
	case "request":
		return ClientAuthRequest, nil
	case "require":
		return ClientAuthRequire, nil
	}
	return 0, fmt.Errorf("tlsterm: client auth %q: want none, request or require", s)
}

func (a ClientAuth) String() string {
	switch a {
	case ClientAuthNone:
		return "none"
	case ClientAuthRequest:
		return "request"
	case ClientAuthRequire:
		return "require"
	}
	return fmt.Sprintf("ClientAuth(%d)", int(a))
}

// ClientAuthOptions is one listener's client certificate policy.
type ClientAuthOptions struct {
	Mode ClientAuth
	// CAFile is a PEM bundle of the CAs that client certificates must chain
	// to; required unless Mode is ClientAuthNone. Read by ListenerConfig
	// and again by every Reload (SIGHUP, Watch when it changed): a CA
	// removed from it is no longer trusted. Clients are told these CAs'
	// names (RFC 8446 §4.2.4).
	CAFile string
}

// ListenerConfig returns the config for a listener with its own client
// certificate policy. With ClientAuthNone it is TLSConfig() itself. Otherwise
// it is a new config that shares everything else with TLSConfig: the
// certificates and SNI selection (ACME included), the ALPN check, the
// versions and suites. Its session tickets are shared with every listener
// of the same policy (same Mode and CA bundle) and with no other, so a
// session established where other CAs, or none, are trusted never resumes
// here (see ticketKeys). Call it once per listener
// at start, not per connection: the Server keeps each config to rotate its
// ticket keys.
//
// Verified client certificates appear in [Describe]'s ConnInfo
// (ClientCertSubject, ClientCertSANs, ClientCertSHA256).
func (s *Server) ListenerConfig(o ClientAuthOptions) (*tls.Config, error) {
	switch o.Mode {
	case ClientAuthNone:
		if o.CAFile != "" {
			return nil, fmt.Errorf("tlsterm: client CA file %s given but client auth is none", o.CAFile)
		}
		return s.cfg, nil
	case ClientAuthRequest, ClientAuthRequire:
	default:
		return nil, fmt.Errorf("tlsterm: unknown client auth mode %d", int(o.Mode))
	}
	if o.CAFile == "" {
		return nil, fmt.Errorf("tlsterm: client auth %s needs a CA file to verify client certificates against", o.Mode)
	}
	l := &clientCAs{file: o.CAFile, mode: o.Mode}
	pool, sum, err := s.readCAFile(l.file)
	if err != nil {
		return nil, err
	}
	inner := s.clientCAConfig(l.mode, pool, sum)
	l.sum = sum
	l.cur.Store(inner)
	// The listener's config hands each handshake the bundle in force
	// (Reload swaps it): the ALPN check first, as everywhere.
	cfg := inner.Clone()
	cfg.GetConfigForClient = func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
		if c, err := s.checkALPN(chi); c != nil || err != nil {
			return c, err
		}
		return l.cur.Load(), nil
	}
	s.casMu.Lock()
	s.cas = append(s.cas, l)
	s.casMu.Unlock()
	return cfg, nil
}

// clientCAs is one client-certificate listener's CA bundle, read by
// ListenerConfig and again by every Reload.
type clientCAs struct {
	file string
	mode ClientAuth
	cur  atomic.Pointer[tls.Config] // what handshakes use; GetConfigForClient is nil
	sum  [32]byte                   // of the bundle in force; under Server.reloadMu after start
}

// readCAFile reads a PEM bundle of CAs, once CheckCA passes it.
func (s *Server) readCAFile(file string) (*x509.CertPool, [32]byte, error) {
	if s.opts.CheckCA != nil {
		if err := s.opts.CheckCA(file); err != nil {
			return nil, [32]byte{}, fileErrorf(file, "tlsterm: load %s: %w", file, err)
		}
	}
	bundle, err := os.ReadFile(file)
	if err != nil {
		return nil, [32]byte{}, fileErrorf(file, "tlsterm: load %s: %w", file, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		return nil, [32]byte{}, fileErrorf(file, "tlsterm: load %s: %w", file, errors.New("no PEM certificates"))
	}
	return pool, sha256.Sum256(bundle), nil
}

// clientCAConfig is a config of its own for one bundle, whose tickets
// resume only under the same mode and bundle (see ticketKeys).
func (s *Server) clientCAConfig(mode ClientAuth, pool *x509.CertPool, sum [32]byte) *tls.Config {
	cfg := s.cfg.Clone()
	cfg.GetConfigForClient = nil // the listener's config ran checkALPN already
	cfg.ClientCAs = pool
	cfg.ClientAuth = tls.VerifyClientCertIfGiven
	if mode == ClientAuthRequire {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if s.tickets != nil {
		s.bindSessions(cfg)
		s.tickets.register(cfg, mode.String()+"/"+hex.EncodeToString(sum[:]))
	}
	return cfg
}

// reloadClientCAs re-reads every listener's CA bundle, so that a CA
// removed from it is no longer trusted (nor its sessions resumed: the
// ticket keys follow the bundle). A bundle that fails to load keeps the
// one in force. Called with s.reloadMu held.
func (s *Server) reloadClientCAs() error {
	s.casMu.Lock()
	cas := slices.Clone(s.cas)
	s.casMu.Unlock()
	var errs []error
	for _, l := range cas {
		pool, sum, err := s.readCAFile(l.file)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if sum == l.sum {
			continue
		}
		l.sum = sum
		if old := l.cur.Swap(s.clientCAConfig(l.mode, pool, sum)); s.tickets != nil {
			s.tickets.unregister(old)
		}
		s.log.Info("tls client CAs loaded", zap.String("file", l.file))
	}
	return errors.Join(errs...)
}

// ReloadClientCAs re-reads the listeners' client CA bundles (Reload does
// too), for a configuration reload that reports them applied.
func (s *Server) ReloadClientCAs() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	return s.reloadClientCAs()
}

// caFiles are the client CA bundles, for Watch.
func (s *Server) caFiles() []string {
	s.casMu.Lock()
	defer s.casMu.Unlock()
	files := make([]string, len(s.cas))
	for i, l := range s.cas {
		files[i] = l.file
	}
	return files
}
