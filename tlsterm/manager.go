package tlsterm

import "crypto/tls"

// ALPNACME is the ALPN identifier of the ACME TLS-ALPN-01 challenge
// (RFC 8737 §6.2). It is negotiated only on a challenge handshake, which
// tlsterm never lets complete on its side (see [Manager]).
const ALPNACME = "acme-tls/1"

// Manager is a source of certificates that are not read from files:
// certificates obtained and renewed through ACME. Package tlsterm/acme
// implements it with certmagic; tlsterm itself imports no ACME code, so that
// packages which only need [Describe] (the proxy) stay free of it (ARCHITECTURE.md §4).
//
// Precedence during a handshake: a name covered by a static certificate
// (exact or wildcard SAN) is served from the file; any other name is offered
// to the Manager; what it does not claim gets the default certificate (the
// first static one, else the Manager's default), or an unrecognized_name
// alert with StrictSNI.
//
// All methods must be safe for concurrent use.
type Manager interface {
	// GetCertificate returns the certificate for hello.ServerName (already
	// checked to be non-empty and not covered by a static file) if the name
	// is one the Manager manages or may obtain on demand, obtaining it
	// first if need be; an error fails the handshake. It returns (nil, nil)
	// for a name that is not its own. With an empty ServerName it returns
	// its default certificate, or (nil, nil) if it has none.
	GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error)

	// ChallengeCertificate returns the validation certificate of a pending
	// TLS-ALPN-01 challenge (RFC 8737 §3) for hello.ServerName, or an error
	// if no challenge for that name is pending. It is called only for a
	// hello whose ALPN list is exactly [ALPNACME] and that has an SNI.
	ChallengeCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error)

	// Certificates lists the certificates the Manager holds now.
	Certificates() []CertStatus

	// Start is called once by NewServer: the Manager loads what it has
	// stored and begins obtaining and renewing in the background, reporting
	// CertObtained, CertRenewed and CertFailed events to emit (CertExpiring
	// is the Server's job). An error fails NewServer.
	Start(emit func(CertEvent)) error

	// Close stops background work; the Server's Close calls it.
	Close() error
}
