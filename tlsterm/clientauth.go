package tlsterm

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
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
	// to; required unless Mode is ClientAuthNone. Read once, by
	// ListenerConfig. Clients are told these CAs' names (RFC 8446 §4.2.4).
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
	bundle, err := os.ReadFile(o.CAFile)
	if err != nil {
		return nil, fmt.Errorf("tlsterm: load %s: %w", o.CAFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		return nil, fmt.Errorf("tlsterm: load %s: %w", o.CAFile, errors.New("no PEM certificates"))
	}

	cfg := s.cfg.Clone()
	if s.tickets != nil {
		s.bindSessions(cfg)
	}
	cfg.ClientCAs = pool
	cfg.ClientAuth = tls.VerifyClientCertIfGiven
	if o.Mode == ClientAuthRequire {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if s.tickets != nil {
		sum := sha256.Sum256(bundle)
		s.tickets.register(cfg, o.Mode.String()+"/"+hex.EncodeToString(sum[:]))
	}
	return cfg, nil
}
