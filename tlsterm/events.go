package tlsterm

import (
	"crypto/x509"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

// CertEventKind names what happened to a certificate.
type CertEventKind string

// The certificate events. The lead turns them into audit records and metrics;
// the Server logs each one as well.
const (
	// CertObtained: a managed certificate was issued for a name that had none.
	CertObtained CertEventKind = "obtained"
	// CertRenewed: a managed certificate was replaced by a fresh one, or a
	// static file now holds a different certificate after a reload.
	CertRenewed CertEventKind = "renewed"
	// CertFailed: obtaining or renewing failed (Renewal tells which; the
	// Manager retries with backoff), or a static reload failed and the
	// previous files stay in use.
	CertFailed CertEventKind = "failed"
	// CertExpiring: a certificate served now has less validity left than the
	// warning threshold (ServerOptions.ExpiryWarning). Reported once per
	// certificate by Watch.
	CertExpiring CertEventKind = "expiring"
)

// Where a certificate comes from: CertStatus.Source and CertEvent.Source.
const (
	SourceFile     = "file"      // ServerOptions.Certificates
	SourceACME     = "acme"      // a configured managed name
	SourceOnDemand = "on-demand" // obtained at a handshake, allowed by the on-demand allowlist
)

// CertEvent is one certificate event, passed to ServerOptions.OnEvent.
type CertEvent struct {
	Kind   CertEventKind
	Name   string // the managed name, or a static certificate's first DNS SAN (or subject CN)
	Source string // SourceFile, SourceACME or SourceOnDemand
	File   string // the certificate file, for SourceFile
	// NotAfter of the certificate concerned; zero when none was obtained.
	NotAfter time.Time
	Renewal  bool  // CertFailed: a renewal failed and the old certificate is still served
	Err      error // CertFailed: why
}

// CertStatus describes a certificate currently served.
type CertStatus struct {
	Names     []string // DNS SANs
	Source    string   // SourceFile, SourceACME or SourceOnDemand
	File      string   // the certificate file, for SourceFile
	Issuer    string   // issuer common name
	Serial    string   // hexadecimal
	NotBefore time.Time
	NotAfter  time.Time
	// ExpiresIn is NotAfter minus the time of the call: a metric of seconds
	// until expiry is ExpiresIn.Seconds(). Negative once expired.
	ExpiresIn time.Duration
}

// StatusOf describes a leaf certificate at time now; a Manager uses it to
// fill CertStatus the same way the Server does for files.
func StatusOf(leaf *x509.Certificate, source string, now time.Time) CertStatus {
	return CertStatus{
		Names:     slices.Clone(leaf.DNSNames),
		Source:    source,
		Issuer:    leaf.Issuer.CommonName,
		Serial:    leaf.SerialNumber.Text(16),
		NotBefore: leaf.NotBefore,
		NotAfter:  leaf.NotAfter,
		ExpiresIn: leaf.NotAfter.Sub(now),
	}
}

// Certificates lists the certificates served now, static files first (in
// option order), then the Manager's.
func (s *Server) Certificates() []CertStatus {
	now := s.now()
	set := s.current.Load()
	out := make([]CertStatus, 0, len(set.certs))
	for i, c := range set.certs {
		st := StatusOf(c.Leaf, SourceFile, now)
		st.File = s.opts.Certificates[i].Cert
		out = append(out, st)
	}
	if s.mgr != nil {
		for _, st := range s.mgr.Certificates() {
			st.ExpiresIn = st.NotAfter.Sub(now)
			out = append(out, st)
		}
	}
	return out
}

// defaultExpiryWarning is the CertExpiring threshold when ExpiryWarning is
// zero, capped at a fifth of the certificate's lifetime so that short-lived
// certificates (Let's Encrypt's 6-day ones) do not warn from birth. ACME
// renews when a third of the lifetime is left, so a managed certificate
// reaching this point means renewals have been failing for a while.
const defaultExpiryWarning = 14 * 24 * time.Hour

func (s *Server) expiryThreshold(st CertStatus) time.Duration {
	if s.opts.ExpiryWarning > 0 {
		return s.opts.ExpiryWarning
	}
	return min(defaultExpiryWarning, st.NotAfter.Sub(st.NotBefore)/5)
}

// checkExpiry reports CertExpiring once for each certificate that crossed its
// threshold, and forgets certificates no longer served.
func (s *Server) checkExpiry() {
	s.expiryMu.Lock()
	defer s.expiryMu.Unlock()
	seen := make(map[string]bool)
	for _, st := range s.Certificates() {
		key := st.Source + "/" + st.Issuer + "/" + st.Serial
		seen[key] = true
		if st.ExpiresIn >= s.expiryThreshold(st) || s.warned[key] {
			continue
		}
		s.warned[key] = true
		s.emit(CertEvent{Kind: CertExpiring, Name: certName(st.Names, st.File), Source: st.Source, File: st.File, NotAfter: st.NotAfter})
	}
	for k := range s.warned {
		if !seen[k] {
			delete(s.warned, k)
		}
	}
}

func certName(names []string, fallback string) string {
	if len(names) > 0 {
		return names[0]
	}
	return fallback
}

// emit logs an event and passes it on to OnEvent.
func (s *Server) emit(ev CertEvent) {
	fields := []zap.Field{zap.String("event", string(ev.Kind)), zap.String("name", ev.Name), zap.String("source", ev.Source)}
	if ev.File != "" {
		fields = append(fields, zap.String("file", ev.File))
	}
	if !ev.NotAfter.IsZero() {
		fields = append(fields, zap.Time("not_after", ev.NotAfter))
	}
	switch ev.Kind {
	case CertFailed:
		s.log.Error("tls certificate event", append(fields, zap.Bool("renewal", ev.Renewal), zap.Error(ev.Err))...)
	case CertExpiring:
		s.log.Warn("tls certificate event", fields...)
	default:
		s.log.Info("tls certificate event", fields...)
	}
	if s.opts.OnEvent != nil {
		s.opts.OnEvent(ev)
	}
}

// reloadEvents compares two generations of static certificates and reports
// the files whose certificate changed.
func (s *Server) reloadEvents(old, cur *certSet) {
	if old == nil {
		return
	}
	for i, c := range cur.certs {
		if i < len(old.certs) && old.certs[i].Leaf.Equal(c.Leaf) {
			continue
		}
		s.emit(CertEvent{Kind: CertRenewed, Name: leafName(c.Leaf, s.opts.Certificates[i].Cert), Source: SourceFile,
			File: s.opts.Certificates[i].Cert, NotAfter: c.Leaf.NotAfter})
	}
}

func leafName(leaf *x509.Certificate, fallback string) string {
	if len(leaf.DNSNames) > 0 {
		return strings.ToLower(leaf.DNSNames[0])
	}
	if leaf.Subject.CommonName != "" {
		return leaf.Subject.CommonName
	}
	return fallback
}
