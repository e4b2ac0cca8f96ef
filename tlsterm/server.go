package tlsterm

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// ALPNProtocol is the ALPN identifier of IMAP in the IANA registry (RFC 7301 §6).
const ALPNProtocol = "imap"

// CertFile names a PEM certificate chain and its key.
type CertFile struct{ Cert, Key string }

// ServerOptions configures TLS toward clients.
type ServerOptions struct {
	// Certificates, chosen by SNI against each certificate's DNS SANs (exact
	// and "*.example.com" wildcards, case-insensitive). The first one is the
	// default for clients that send no SNI or an unknown name. May be empty
	// when Managed is set.
	Certificates []CertFile
	// Managed supplies certificates obtained and renewed through ACME
	// (package tlsterm/acme), for the names no file covers; see [Manager]
	// for the precedence. NewServer starts it, Close stops it.
	Managed Manager
	// StrictSNI refuses handshakes whose SNI matches no certificate and
	// that the Manager does not claim (unrecognized_name alert, RFC 6066 §3).
	// Clients that send no SNI still get the default certificate.
	StrictSNI bool
	// MinVersion: tls.VersionTLS12 by default; tls.VersionTLS13 allowed.
	// Lower values are an error.
	MinVersion uint16
	// TicketKeyRotation is how often session ticket keys are replaced; the
	// previous keys still decrypt tickets for one more period (RFC 8446
	// §4.6.1 resumption, RFC 9325 §3.4). Zero means 24 hours; negative turns
	// session tickets off (no resumption).
	TicketKeyRotation time.Duration
	// OnEvent receives certificate events (obtained, renewed, failed,
	// expiring), for audit records and metrics. It is called synchronously
	// from renewal goroutines, Reload and Watch: return quickly. Nil means
	// events are only logged.
	OnEvent func(CertEvent)
	// ExpiryWarning: Watch reports CertExpiring once for a certificate with
	// less validity left than this. Zero means 14 days, or a fifth of the
	// certificate's lifetime if that is shorter.
	ExpiryWarning time.Duration
	// Logger receives reloads, certificate events and refused handshakes;
	// nil means zap.NewNop().
	Logger *zap.Logger
	// CheckKey, when set, judges each private key file before every read
	// (NewServer, Reload, Watch): an error fails that load, which keeps
	// the current set, as a key that does not parse does. The caller
	// refuses keys other users may read with it.
	CheckKey func(path string) error
	// CheckCA, when set, judges each client CA bundle before every read
	// (ListenerConfig, Reload, ReloadClientCAs): an error fails that load,
	// which keeps the bundle in force. The caller refuses bundles other
	// users may change with it: they decide who is trusted as a client.
	CheckCA func(path string) error
}

// Server owns the client-facing TLS configuration and its certificates.
// It is safe for concurrent use.
type Server struct {
	opts   ServerOptions
	log    *zap.Logger
	mgr    Manager          // opts.Managed, nil without ACME
	now    func() time.Time // time.Now; tests move it
	cfg    *tls.Config      // returned by TLSConfig; shared so session tickets resume everywhere
	refuse *tls.Config      // swapped in for a handshake that must fail ALPN negotiation

	tickets *ticketKeys // nil when session tickets are off

	current atomic.Pointer[certSet] // read on every handshake, swapped by Reload

	reloadMu sync.Mutex   // serializes Reload so an older set never replaces a newer one
	casMu    sync.Mutex   // guards cas
	cas      []*clientCAs // the client-certificate listeners' bundles, re-read by Reload

	seenMu sync.Mutex  // guards seen
	seen   []fileStamp // what the files looked like at the last load attempt

	expiryMu sync.Mutex      // serializes checkExpiry
	warned   map[string]bool // certificates already reported CertExpiring

	closeOnce sync.Once
}

// certSet is one immutable generation of certificates.
type certSet struct {
	certs    []*tls.Certificate            // in option order; certs[0] is the default
	exact    map[string][]*tls.Certificate // lower-case DNS SAN → certificates, option order
	wildcard map[string][]*tls.Certificate // "example.com" for a "*.example.com" SAN
}

// fileStamp is what Watch compares; a missing file has the zero stamp.
type fileStamp struct {
	modTime time.Time
	size    int64
}

// tls12Suites are the TLS 1.2 suites offered to clients: ECDHE for forward
// secrecy and AEAD only (RFC 9325 §4.2). TLS 1.3 suites are
// not configurable in crypto/tls and are all AEAD.
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// NewServer loads the certificate files (an error names the file that
// failed) and starts the Manager, if any. Call Close when done with it.
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	switch opts.MinVersion {
	case 0:
		opts.MinVersion = tls.VersionTLS12
	case tls.VersionTLS12, tls.VersionTLS13:
	default:
		// RFC 8996: TLS 1.0 and 1.1 must not be negotiated.
		return nil, fmt.Errorf("tlsterm: MinVersion %#04x not allowed: want TLS 1.2 or 1.3", opts.MinVersion)
	}
	if len(opts.Certificates) == 0 && opts.Managed == nil {
		return nil, errors.New("tlsterm: no certificates configured: give certificate files, managed (ACME) names, or both")
	}
	opts.Certificates = slices.Clone(opts.Certificates)
	for i, cf := range opts.Certificates {
		if cf.Cert == "" || cf.Key == "" {
			return nil, fmt.Errorf("tlsterm: certificate %d: both Cert and Key files are required", i)
		}
	}

	s := &Server{opts: opts, log: opts.Logger, mgr: opts.Managed, now: time.Now, warned: make(map[string]bool)}
	s.cfg = &tls.Config{
		MinVersion:         opts.MinVersion,
		CipherSuites:       tls12Suites,
		NextProtos:         []string{ALPNProtocol},
		GetCertificate:     s.getCertificate,
		GetConfigForClient: s.checkALPN,
	}
	// No certificate and no callbacks: this config exists only so that
	// crypto/tls answers with the alert RFC 7301 §3.2 asks for.
	s.refuse = &tls.Config{
		MinVersion:   opts.MinVersion,
		CipherSuites: tls12Suites,
		NextProtos:   []string{ALPNProtocol},
	}
	switch {
	case opts.TicketKeyRotation < 0:
		s.cfg.SessionTicketsDisabled = true
	case opts.TicketKeyRotation == 0:
		s.tickets = newTicketKeys(defaultTicketRotation, s.now())
	default:
		s.tickets = newTicketKeys(opts.TicketKeyRotation, s.now())
	}
	if s.tickets != nil {
		s.tickets.register(s.cfg, "")
		s.bindSessions(s.cfg)
	}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	if s.mgr != nil {
		if err := s.mgr.Start(s.emit); err != nil {
			return nil, fmt.Errorf("tlsterm: start managed certificates: %w", err)
		}
	}
	return s, nil
}

// Close stops the Manager's background work (renewals). Handshakes still
// work afterwards, with the certificates held at that moment. Static-only
// Servers have nothing to stop.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		if s.mgr != nil {
			err = s.mgr.Close()
		}
	})
	return err
}

// TLSConfig returns the config for client listeners (implicit TLS and
// STARTTLS alike). It is the same *tls.Config on every call, so that session
// tickets issued on one listener resume on another; do not modify it. For a
// listener that asks for client certificates use ListenerConfig, not a
// Clone: a Clone keeps the ALPN and SNI checks but not the ticket key
// rotation.
func (s *Server) TLSConfig() *tls.Config { return s.cfg }

// checkALPN refuses ALPACA-style cross-protocol connections explicitly, not
// by relying on NextProtos: crypto/tls lets an "http/1.1"-only client through
// when NextProtos contains "h2", and a caller may have added it to a clone.
// It runs first in every handshake, so it also rotates the ticket keys when
// due.
func (s *Server) checkALPN(chi *tls.ClientHelloInfo) (*tls.Config, error) {
	if s.tickets != nil {
		s.tickets.maybeRotate(s.now())
	}
	// One reading of the SNI: a value that is not a host name (RFC 6066
	// §3: no literal addresses; no white space or controls) is refused
	// before any certificate, ticket or ConnInfo reads it; the Manager
	// trimmed " name" to a managed name FoldSNI kept padded.
	if chi.ServerName != "" && !ValidHostname(FoldSNI(chi.ServerName)) {
		if ce := s.log.Check(zap.DebugLevel, "tls handshake refused"); ce != nil {
			ce.Write(zap.String("reason", "sni not a host name"), zap.String("sni", chi.ServerName), remoteField(chi))
		}
		return nil, errSNINotHostname
	}
	if len(chi.SupportedProtos) == 0 || slices.Contains(chi.SupportedProtos, ALPNProtocol) {
		return nil, nil // keep the listener's config
	}
	// RFC 8737 §3: the validation server offers exactly "acme-tls/1" and
	// sends the name being validated as SNI.
	if s.mgr != nil && chi.ServerName != "" && len(chi.SupportedProtos) == 1 && chi.SupportedProtos[0] == ALPNACME {
		cert, err := s.mgr.ChallengeCertificate(chi)
		if err == nil && cert != nil {
			s.log.Info("acme tls-alpn-01 challenge answered", zap.String("sni", chi.ServerName), remoteField(chi))
			return challengeConfig(cert), nil
		}
		if ce := s.log.Check(zap.DebugLevel, "tls handshake refused"); ce != nil {
			ce.Write(zap.String("reason", "acme-tls/1 without a pending challenge"), zap.String("sni", chi.ServerName),
				zap.Error(err), remoteField(chi))
		}
		return s.refuse, nil
	}
	if ce := s.log.Check(zap.DebugLevel, "tls handshake refused"); ce != nil {
		ce.Write(zap.String("reason", "alpn"), zap.Strings("alpn", chi.SupportedProtos),
			zap.String("sni", chi.ServerName), remoteField(chi))
	}
	// An error here would send internal_error; a config whose NextProtos
	// cannot overlap makes crypto/tls send no_application_protocol instead.
	return s.refuse, nil
}

// errSNINotHostname refuses a handshake whose SNI has no one reading.
var errSNINotHostname = errors.New("tlsterm: SNI is not a host name (RFC 6066 §3)")

// errChallengeOnly ends every TLS-ALPN-01 handshake on our side.
var errChallengeOnly = errors.New("tlsterm: acme-tls/1 handshake: validation only, no session (RFC 8737 §3)")

// challengeConfig answers an ACME validation server and nothing else.
//
// The validator needs to see the certificate, not to complete a session
// (RFC 8737 §3: it closes right after the handshake). So our side never
// completes: in TLS 1.3 the server sends its whole flight, Finished
// included, before it reads the client's second flight, and VerifyConnection
// fails right after that flight is flushed. The validator's handshake has
// succeeded by then; ours returns an error, so the connection never reaches
// IMAP, whatever the caller does after the handshake. TLS 1.2 is refused for
// this handshake: there the server's Finished comes last, so a TLS 1.2
// challenge handshake could only succeed by completing on our side too.
// Validators are Go or OpenSSL clients and offer TLS 1.3 (Let's Encrypt's,
// step-ca's, Pebble's); one that cannot still has HTTP-01, or a TLS-ALPN
// port that is not an IMAP listener (see tlsterm/acme).
func challengeConfig(cert *tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		NextProtos:             []string{ALPNACME},
		Certificates:           []tls.Certificate{*cert},
		SessionTicketsDisabled: true,
		VerifyConnection:       func(tls.ConnectionState) error { return errChallengeOnly },
	}
}

// getCertificate picks by SNI: static files first, then the Manager, then
// the default. Returning (nil, nil) with no static Certificates makes
// crypto/tls send unrecognized_name.
func (s *Server) getCertificate(chi *tls.ClientHelloInfo) (*tls.Certificate, error) {
	set := s.current.Load()
	name := FoldSNI(chi.ServerName)
	if name == "" {
		return s.defaultCert(set, chi)
	}
	if cands := set.lookup(name); cands != nil {
		return pick(cands, chi), nil
	}
	if s.mgr != nil {
		if cert, err := s.mgr.GetCertificate(chi); cert != nil || err != nil {
			return cert, err
		}
	}
	if !s.opts.StrictSNI {
		return s.defaultCert(set, chi)
	}
	if ce := s.log.Check(zap.DebugLevel, "tls handshake refused"); ce != nil {
		ce.Write(zap.String("reason", "sni"), zap.String("sni", chi.ServerName), remoteField(chi))
	}
	return nil, nil
}

// FoldSNI is the one reading of a client's SNI: lower case, no trailing
// dot (DNS names compare so, RFC 4343). Certificate selection, resumption
// and ConnInfo (policy input, the audit trail) all read it through this.
func FoldSNI(name string) string {
	return strings.TrimSuffix(strings.ToLower(name), ".")
}

// ValidHostname accepts LDH host names (RFC 1123 §2.1, RFC 5890 A-labels
// included), lower case, at most 253 octets. A handshake whose SNI (after
// FoldSNI) is not one is refused, and odd values (U-labels, underscores, IP
// literals, white space) never reach the Manager's allowlist or the CA.
func ValidHostname(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	// All-numeric last label: an IPv4 literal, not a host name.
	last := name[strings.LastIndexByte(name, '.')+1:]
	return strings.Trim(last, "0123456789") != ""
}

// defaultCert is the first static certificate, else the Manager's default.
func (s *Server) defaultCert(set *certSet, chi *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if len(set.certs) > 0 {
		return set.certs[0], nil
	}
	if s.mgr == nil {
		return nil, nil
	}
	hello := *chi
	hello.ServerName = ""
	return s.mgr.GetCertificate(&hello)
}

// remoteField names the peer; Conn is nil for QUIC and in hand-made hellos.
func remoteField(chi *tls.ClientHelloInfo) zap.Field {
	if chi.Conn == nil {
		return zap.Skip()
	}
	return zap.Stringer("remote", chi.Conn.RemoteAddr())
}

// lookup returns the certificates for a lower-case host name: exact SANs
// first, then a wildcard for exactly the left-most label (RFC 6125 §6.4.3).
func (set *certSet) lookup(name string) []*tls.Certificate {
	if c := set.exact[name]; c != nil {
		return c
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		return set.wildcard[name[i+1:]]
	}
	return nil
}

// pick prefers the first certificate the client can use, so an ECDSA and an
// RSA certificate for the same name serve old and new clients alike.
func pick(cands []*tls.Certificate, chi *tls.ClientHelloInfo) *tls.Certificate {
	if len(cands) > 1 {
		for _, c := range cands {
			if chi.SupportsCertificate(c) == nil {
				return c
			}
		}
	}
	return cands[0]
}

// Reload re-reads all certificate files and the listeners' client CA
// bundles. On any error the current set (or bundle) is kept and the
// error, naming the file, is returned. Established sessions and
// handshakes in progress are untouched; new handshakes see the new set.
func (s *Server) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()

	// Stat before reading: a change that lands between the two is then seen
	// again by Watch rather than missed.
	stamps := s.stampAll()
	s.seenMu.Lock()
	s.seen = stamps
	s.seenMu.Unlock()
	certErr, caErr := s.reloadCerts(), s.reloadClientCAs()
	if certErr == nil || caErr == nil {
		return cmp.Or(certErr, caErr)
	}
	return errors.Join(certErr, caErr)
}

// stampAll stamps the certificate files and the client CA bundles.
func (s *Server) stampAll() []fileStamp {
	st := stampFiles(s.opts.Certificates)
	for _, f := range s.caFiles() {
		st = append(st, stamp(f))
	}
	return st
}

// reloadCerts re-reads the certificate files; called with s.reloadMu held.
func (s *Server) reloadCerts() error {

	set, err := s.load()
	if err != nil {
		if old := s.current.Load(); old != nil { // not the first load, which fails NewServer instead
			var fe *fileError
			ev := CertEvent{Kind: CertFailed, Source: SourceFile, Renewal: true, Err: err}
			if errors.As(err, &fe) {
				ev.File, ev.Name = fe.file, fe.file
			}
			s.emit(ev)
		}
		return err
	}
	old := s.current.Swap(set)
	s.reloadEvents(old, set)
	names := make([]string, 0, len(set.exact))
	for n := range set.exact {
		names = append(names, n)
	}
	for n := range set.wildcard {
		names = append(names, "*."+n)
	}
	slices.Sort(names)
	s.log.Info("tls certificates loaded", zap.Int("count", len(set.certs)), zap.Strings("names", names))
	return nil
}

func (s *Server) load() (*certSet, error) {
	set := &certSet{
		exact:    make(map[string][]*tls.Certificate),
		wildcard: make(map[string][]*tls.Certificate),
	}
	now := time.Now()
	for _, cf := range s.opts.Certificates {
		if s.opts.CheckKey != nil {
			if err := s.opts.CheckKey(cf.Key); err != nil {
				return nil, fileErrorf(cf.Key, "tlsterm: load %s: %w", cf.Key, err)
			}
		}
		cert, err := loadKeyPair(cf)
		if err != nil {
			return nil, err
		}
		leaf := cert.Leaf
		if now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
			// Served anyway: refusing to start would turn a renewal hiccup
			// into an outage, and clients decide for themselves.
			s.log.Warn("tls certificate not valid now", zap.String("file", cf.Cert),
				zap.Time("not_before", leaf.NotBefore), zap.Time("not_after", leaf.NotAfter))
		}
		if len(leaf.DNSNames) == 0 {
			s.log.Warn("tls certificate has no DNS names", zap.String("file", cf.Cert))
		}
		set.certs = append(set.certs, cert)
		for _, n := range leaf.DNSNames {
			n = strings.TrimSuffix(strings.ToLower(n), ".")
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				if rest != "" && !strings.Contains(rest, "*") {
					set.wildcard[rest] = append(set.wildcard[rest], cert)
				}
				continue
			}
			if n != "" && !strings.Contains(n, "*") {
				set.exact[n] = append(set.exact[n], cert)
			}
		}
	}
	return set, nil
}

// loadKeyPair reads a PEM chain and key, attributing errors to a file: a
// chain that does not parse names the certificate, anything after that
// (unreadable key, key that does not match) names the key.
func loadKeyPair(cf CertFile) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(cf.Cert)
	if err != nil {
		return nil, fileErrorf(cf.Cert, "tlsterm: load %s: %w", cf.Cert, err)
	}
	if err := checkChain(certPEM); err != nil {
		return nil, fileErrorf(cf.Cert, "tlsterm: load %s: %w", cf.Cert, err)
	}
	keyPEM, err := os.ReadFile(cf.Key)
	if err != nil {
		return nil, fileErrorf(cf.Key, "tlsterm: load %s: %w", cf.Key, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fileErrorf(cf.Key, "tlsterm: load %s (for %s): %w", cf.Key, cf.Cert, err)
	}
	if cert.Leaf == nil { // set by X509KeyPair since Go 1.23; x509keypairleaf=0 turns it off
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fileErrorf(cf.Cert, "tlsterm: load %s: %w", cf.Cert, err)
		}
	}
	return &cert, nil
}

// fileError is a load error and the file it is about, for CertFailed events.
type fileError struct {
	file string
	err  error
}

func fileErrorf(file, format string, args ...any) error {
	return &fileError{file: file, err: fmt.Errorf(format, args...)}
}

func (e *fileError) Error() string { return e.err.Error() }
func (e *fileError) Unwrap() error { return e.err }

// checkChain makes sure the file holds at least one certificate and that all
// of them parse.
func checkChain(certPEM []byte) error {
	n := 0
	for rest := certPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("certificate %d: %w", n+1, err)
		}
		n++
	}
	if n == 0 {
		return errors.New("no PEM CERTIFICATE block")
	}
	return nil
}

func stampFiles(cfs []CertFile) []fileStamp {
	st := make([]fileStamp, 0, 2*len(cfs))
	for _, cf := range cfs {
		st = append(st, stamp(cf.Cert), stamp(cf.Key))
	}
	return st
}

func stamp(path string) fileStamp {
	fi, err := os.Stat(path) // follows symlinks, so certbot-style "live/" links work
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{modTime: fi.ModTime(), size: fi.Size()}
}

// Watch polls the files' modification times and sizes every interval (one
// minute if interval ≤ 0) and calls Reload when any of them changed since the
// last load attempt. Errors are logged, not retried until the files change
// again. At start and on every tick it also checks every certificate served,
// files and managed alike, and reports CertExpiring once for each that is
// close to expiry (ServerOptions.ExpiryWarning). Watch returns when ctx is
// done.
func (s *Server) Watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	s.checkExpiry()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.checkExpiry()
		now := s.stampAll()
		s.seenMu.Lock()
		changed := !slices.EqualFunc(now, s.seen, func(a, b fileStamp) bool {
			return a.size == b.size && a.modTime.Equal(b.modTime)
		})
		s.seenMu.Unlock()
		if !changed {
			continue
		}
		if err := s.Reload(); err != nil {
			s.log.Error("tls certificate reload failed, keeping the current set", zap.Error(err))
		}
	}
}
