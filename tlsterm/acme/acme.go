// Package acme obtains and renews the client-facing certificates of a
// tlsterm.Server through ACME (RFC 8555), with certmagic: a tlsterm.Manager.
//
//	m, err := acme.New(acme.Options{Names: []string{"mail.example.com"}, Email: ..., StorageDir: ...})
//	srv, err := tlsterm.NewServer(tlsterm.ServerOptions{Managed: m, OnEvent: ...})
//	defer srv.Close() // stops renewals
//
// Implementation notes, the invariants a change must keep:
//
//   - No certmagic globals: one certmagic.Cache per Manager and Configs made
//     with certmagic.New, every field that matters set here (never
//     certmagic.Default or NewDefault), with our logger. certmagic still keeps
//     some process-wide state keyed by name (pending challenges, in-flight
//     obtains), which is harmless between Managers of different names.
//   - Two certmagic Configs share the Cache and the storage: one for the
//     configured names, obtained eagerly at Start and renewed by the Cache's
//     maintenance; one for on-demand names, obtained at the first handshake
//     and renewed at handshakes, as certmagic does on demand. A certificate
//     goes back to the Config of its names (GetConfigForCert).
//   - On demand is refused without an allowlist (like Caddy: "to prevent
//     abuse"). A name is checked against the allowlist, then, only if no
//     certificate for it is cached or stored, against the rate limit, before
//     certmagic sees it: a refused name places no ACME order.
//   - Challenges: HTTP-01 and TLS-ALPN-01, each on a configurable port.
//     TLS-ALPN-01 arriving on an IMAP listener is answered by tlsterm (see
//     tlsterm.Manager, challenge handshakes never complete on our side).
//     DNS-01, and so wildcard names, are not configured.
//   - Storage is certmagic.FileStorage: instances that share the directory
//     share the account and the certificates and coordinate through lock
//     files, so a second instance loads a stored certificate instead of
//     ordering one.
package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/tlsterm"
)

// LetsEncrypt is the default CA directory.
const LetsEncrypt = certmagic.LetsEncryptProductionCA

// Options configures ACME. Configuring it is agreeing to the CA's terms of
// service (the account is created with termsOfServiceAgreed, RFC 8555 §7.3).
type Options struct {
	// Names are obtained at start and renewed in the last third of their
	// lifetime (RenewalWindowRatio), or when the CA's renewal information
	// (ARI) says so. Plain DNS names: no wildcards (they need DNS-01), no IP
	// addresses.
	Names []string
	// OnDemand, if set, obtains certificates at the first handshake for
	// names it allows.
	OnDemand *OnDemandOptions

	// CA is the ACME directory URL, https; "" means Let's Encrypt
	// production. For a private CA (step-ca, Pebble) give its directory and
	// TrustedRootsFile.
	CA string
	// Email is the account's contact, for the CA's expiry and incident
	// notices. Recommended; "" creates an account without contact.
	Email string
	// TrustedRootsFile is a PEM bundle of the roots that the CA's HTTPS
	// certificate chains to, for a private CA; "" means the system roots.
	TrustedRootsFile string
	// StorageDir holds the ACME account, the keys and the certificates
	// (certmagic's file layout), created 0700 if missing. Required. Several
	// instances may share it (an NFS mount, say): they coordinate with lock
	// files and reuse each other's certificates.
	StorageDir string

	// HTTPPort is where HTTP-01 challenges are answered; 0 means 80.
	// Public CAs connect to port 80 only (RFC 8555 §8.3), so another port
	// works only with a private CA or behind a forwarder. While a challenge
	// is pending, imapwarden listens on ListenHost:HTTPPort itself; if the
	// port is taken, it assumes the taker forwards the challenge requests
	// to it: a web server that owns port 80 proxies the path
	// /.well-known/acme-challenge/ to imapwarden on HTTPPort (or to any
	// listener serving Manager.HTTPHandler).
	HTTPPort int
	// TLSALPNPort is where TLS-ALPN-01 challenges are answered; 0 means
	// 443. Public CAs connect to port 443 only (RFC 8737 §3). If one of
	// imapwarden's own TLS listeners (TLSConfig) is on that port, it
	// answers; otherwise imapwarden listens on ListenHost:TLSALPNPort while
	// a challenge is pending. A web server that owns 443 cannot forward it
	// (it terminates TLS): disable TLS-ALPN-01 then, or have it route by
	// ALPN/SNI at layer 4 (haproxy, nginx stream ssl_preread).
	TLSALPNPort int
	// ListenHost is the address the challenge listeners bind; "" means all.
	ListenHost string
	// DisableHTTP01 and DisableTLSALPN01 turn a challenge type off; at least
	// one must stay on. With both on, the CA's offer decides, and a failed
	// type is retried with the other.
	DisableHTTP01, DisableTLSALPN01 bool

	// KeyType of certificate keys: "p256" (default), "p384", "rsa2048",
	// "rsa4096". Keys are fresh at every renewal.
	KeyType string
	// RenewalWindowRatio is the part of a certificate's lifetime, at its
	// end, in which it is renewed; 0 means 1/3. Must be below 1.
	RenewalWindowRatio float64

	// Logger receives certmagic's logs (obtaining, renewing, challenges);
	// nil means zap.NewNop().
	Logger *zap.Logger

	// renewCheckInterval is how often the Cache looks for certificates to
	// renew (certmagic's default, 10 minutes, when zero). Tests shorten it.
	renewCheckInterval time.Duration
}

// OnDemandOptions allows certificates to be obtained at the first handshake
// that asks for a name (SNI), for deployments whose names are not known in
// advance (many customer domains pointed at one proxy).
type OnDemandOptions struct {
	// Allow lists the names that may be obtained: exact names
	// ("mail.example.com") and suffixes ("*.example.com": any name under
	// example.com, at any depth, but not example.com itself). Required:
	// without it anyone could make the proxy order certificates for any name
	// pointed at it. A suffix needs at least two labels ("*.com" is refused).
	Allow []string
	// RateLimit is how many new certificates may be ordered per RateWindow,
	// across all on-demand names; 0 means 5. Handshakes beyond it fail (the
	// client retries later). Loading a stored certificate and renewing are
	// not counted.
	RateLimit int
	// RateWindow is the sliding window of RateLimit; 0 means one minute.
	RateWindow time.Duration
}

// Manager is a tlsterm.Manager backed by certmagic.
type Manager struct {
	opts     Options
	log      *zap.Logger
	names    []string        // configured names, lower case, option order
	isName   map[string]bool // the same, for lookups
	allowed  map[string]bool // exact on-demand names
	suffixes []string        // on-demand suffixes, without "*."
	limiter  *slidingWindow  // new on-demand orders
	storage  *certmagic.FileStorage
	roots    *x509.CertPool // TrustedRootsFile, nil for the system roots
	keyType  certmagic.KeyType

	started atomic.Bool
	st      atomic.Pointer[state] // set by Start

	seenMu sync.Mutex
	seen   map[string]bool // names with a managed certificate cached (for Certificates)

	closeOnce sync.Once
}

// state is what Start builds.
type state struct {
	ctx      context.Context
	cancel   context.CancelFunc
	cache    *certmagic.Cache
	managed  *certmagic.Config
	onDemand *certmagic.Config // nil without OnDemand
	issuers  []*certmagic.ACMEIssuer
	emit     func(tlsterm.CertEvent)
}

// New checks opts and returns a Manager to pass to tlsterm.NewServer, which
// starts it. Nothing runs and nothing is contacted before that.
func New(opts Options) (*Manager, error) {
	m := &Manager{opts: opts, log: opts.Logger, isName: map[string]bool{}, allowed: map[string]bool{}, seen: map[string]bool{}}
	if m.log == nil {
		m.log = zap.NewNop()
	}
	for _, n := range opts.Names {
		name := normalize(n)
		if strings.HasPrefix(name, "*.") {
			return nil, fmt.Errorf("tlsterm/acme: name %q: wildcard certificates need the DNS-01 challenge, which is not configured", n)
		}
		if !tlsterm.ValidHostname(name) {
			return nil, fmt.Errorf("tlsterm/acme: name %q is not a DNS host name", n)
		}
		if !m.isName[name] {
			m.isName[name] = true
			m.names = append(m.names, name)
		}
	}
	if od := opts.OnDemand; od != nil {
		if len(od.Allow) == 0 {
			return nil, errors.New("tlsterm/acme: on-demand certificates need an allowlist (OnDemand.Allow): without one any name pointed at this host could make it order certificates")
		}
		for _, a := range od.Allow {
			name := normalize(a)
			if suffix, ok := strings.CutPrefix(name, "*."); ok {
				if !tlsterm.ValidHostname(suffix) || !strings.Contains(suffix, ".") {
					return nil, fmt.Errorf("tlsterm/acme: on-demand allow %q: want *.domain with at least two labels after the *", a)
				}
				m.suffixes = append(m.suffixes, suffix)
				continue
			}
			if !tlsterm.ValidHostname(name) {
				return nil, fmt.Errorf("tlsterm/acme: on-demand allow %q is not a DNS host name or *.suffix", a)
			}
			m.allowed[name] = true
		}
		if od.RateLimit < 0 || od.RateWindow < 0 {
			return nil, errors.New("tlsterm/acme: on-demand RateLimit and RateWindow must not be negative")
		}
		limit, window := od.RateLimit, od.RateWindow
		if limit == 0 {
			limit = 5
		}
		if window == 0 {
			window = time.Minute
		}
		m.limiter = &slidingWindow{limit: limit, window: window}
	}
	if len(m.names) == 0 && opts.OnDemand == nil {
		return nil, errors.New("tlsterm/acme: no names and no on-demand allowlist: nothing to manage")
	}

	if opts.CA == "" {
		m.opts.CA = LetsEncrypt
	}
	if u, err := url.Parse(m.opts.CA); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("tlsterm/acme: CA %q: want the https URL of an ACME directory", m.opts.CA)
	}
	if opts.StorageDir == "" {
		return nil, errors.New("tlsterm/acme: StorageDir is required")
	}
	if err := os.MkdirAll(opts.StorageDir, 0o700); err != nil {
		return nil, fmt.Errorf("tlsterm/acme: storage: %w", err)
	}
	m.storage = &certmagic.FileStorage{Path: opts.StorageDir}
	if opts.TrustedRootsFile != "" {
		bundle, err := os.ReadFile(opts.TrustedRootsFile)
		if err != nil {
			return nil, fmt.Errorf("tlsterm/acme: load %s: %w", opts.TrustedRootsFile, err)
		}
		m.roots = x509.NewCertPool()
		if !m.roots.AppendCertsFromPEM(bundle) {
			return nil, fmt.Errorf("tlsterm/acme: load %s: no PEM certificates", opts.TrustedRootsFile)
		}
	}
	if opts.DisableHTTP01 && opts.DisableTLSALPN01 {
		return nil, errors.New("tlsterm/acme: both HTTP-01 and TLS-ALPN-01 disabled: no challenge left to validate names")
	}
	for _, p := range []struct {
		name string
		port int
	}{{"HTTPPort", opts.HTTPPort}, {"TLSALPNPort", opts.TLSALPNPort}} {
		if p.port < 0 || p.port > 65535 {
			return nil, fmt.Errorf("tlsterm/acme: %s %d out of range", p.name, p.port)
		}
	}
	switch opts.KeyType {
	case "", "p256":
		m.keyType = certmagic.P256
	case "p384", "rsa2048", "rsa4096":
		m.keyType = certmagic.KeyType(opts.KeyType)
	default:
		return nil, fmt.Errorf("tlsterm/acme: KeyType %q: want p256, p384, rsa2048 or rsa4096", opts.KeyType)
	}
	if opts.RenewalWindowRatio < 0 || opts.RenewalWindowRatio >= 1 {
		return nil, fmt.Errorf("tlsterm/acme: RenewalWindowRatio %v: want 0 (default 1/3) up to below 1", opts.RenewalWindowRatio)
	}
	return m, nil
}

// Start implements tlsterm.Manager: it loads the stored certificates of the
// configured names and orders the missing ones in the background.
func (m *Manager) Start(emit func(tlsterm.CertEvent)) error {
	if !m.started.CompareAndSwap(false, true) {
		return errors.New("tlsterm/acme: Manager started twice (one Manager per Server)")
	}
	if emit == nil {
		emit = func(tlsterm.CertEvent) {}
	}
	st := &state{emit: emit}
	st.ctx, st.cancel = context.WithCancel(context.Background())
	st.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(c certmagic.Certificate) (*certmagic.Config, error) { return m.configFor(st, c), nil },
		RenewCheckInterval: m.opts.renewCheckInterval,
		Logger:             m.log,
	})
	ratio := m.opts.RenewalWindowRatio
	if ratio == 0 {
		ratio = certmagic.DefaultRenewalWindowRatio
	}
	newConfig := func(onDemand *certmagic.OnDemandConfig, defaultName string) *certmagic.Config {
		cfg := certmagic.New(st.cache, certmagic.Config{
			RenewalWindowRatio: ratio,
			OnEvent:            func(ctx context.Context, ev string, data map[string]any) error { return m.onEvent(st, ctx, ev, data) },
			// Only what onEvent uses: certmagic skips building the others,
			// tls_get_certificate in particular, which would cost every
			// handshake a map and a copy of the hello.
			ShouldEmitFunc: func(ev string) bool {
				return ev == "cached_managed_cert" || ev == "cert_obtained" || ev == "cert_failed"
			},
			DefaultServerName: defaultName,
			OnDemand:          onDemand,
			Issuers:           []certmagic.Issuer{}, // non-nil: keeps certmagic from making a default one
			KeySource:         certmagic.StandardKeyGenerator{KeyType: m.keyType},
			Storage:           m.storage,
			Logger:            m.log,
		})
		iss := certmagic.NewACMEIssuer(cfg, certmagic.ACMEIssuer{
			CA:                      m.opts.CA,
			Email:                   m.opts.Email,
			Agreed:                  true,
			DisableHTTPChallenge:    m.opts.DisableHTTP01,
			DisableTLSALPNChallenge: m.opts.DisableTLSALPN01,
			ListenHost:              m.opts.ListenHost,
			AltHTTPPort:             m.opts.HTTPPort,
			AltTLSALPNPort:          m.opts.TLSALPNPort,
			TrustedRoots:            m.roots,
			Logger:                  m.log,
		})
		cfg.Issuers = []certmagic.Issuer{iss}
		st.issuers = append(st.issuers, iss)
		return cfg
	}
	var defaultName string
	if len(m.names) > 0 {
		defaultName = m.names[0]
	}
	st.managed = newConfig(nil, defaultName)
	if m.opts.OnDemand != nil {
		st.onDemand = newConfig(&certmagic.OnDemandConfig{DecisionFunc: m.decide}, "")
	}
	m.st.Store(st)
	if len(m.names) > 0 {
		// Loads stored certificates now (renewing them in the background if
		// due) and queues orders for the missing ones.
		if err := st.managed.ManageAsync(st.ctx, m.names); err != nil {
			m.Close()
			return fmt.Errorf("tlsterm/acme: %w", err)
		}
	}
	return nil
}

// Close implements tlsterm.Manager: pending orders are cancelled and
// renewals stop. Certificates already cached are still served.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		if st := m.st.Load(); st != nil {
			st.cancel()
			st.cache.Stop()
		}
	})
	return nil
}

// configFor returns the Config that manages a cached certificate.
func (m *Manager) configFor(st *state, c certmagic.Certificate) *certmagic.Config {
	if st.onDemand != nil && slices.ContainsFunc(c.Names, func(n string) bool { return !m.isName[normalize(n)] }) {
		return st.onDemand
	}
	return st.managed
}

// errRateLimited fails a handshake for a new on-demand name over the rate.
var errRateLimited = errors.New("tlsterm/acme: on-demand rate limit reached, certificate not ordered")

// GetCertificate implements tlsterm.Manager.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	st := m.st.Load()
	if st == nil {
		return nil, nil
	}
	// The SNI as tlsterm reads it (FoldSNI, no trimming): a padded name is
	// not a managed one (the Server refuses it before this).
	name := tlsterm.FoldSNI(hello.ServerName)
	switch {
	case name == "":
		if len(m.names) == 0 {
			return nil, nil
		}
		cert, err := st.managed.GetCertificate(hello) // DefaultServerName: the first name
		if err != nil {
			return nil, nil // not obtained yet: no default
		}
		return cert, nil
	case m.isName[name]:
		cert, err := st.managed.GetCertificate(hello)
		if err != nil {
			return nil, fmt.Errorf("tlsterm/acme: %s: no certificate yet: %w", name, err)
		}
		return cert, nil
	case st.onDemand != nil && m.allow(name):
		if !m.have(st, name) && !m.limiter.allow(time.Now()) {
			m.log.Warn("on-demand certificate refused", zap.String("name", name), zap.Error(errRateLimited))
			return nil, errRateLimited
		}
		cert, err := st.onDemand.GetCertificate(hello)
		if err != nil {
			return nil, fmt.Errorf("tlsterm/acme: on-demand %s: %w", name, err)
		}
		return cert, nil
	}
	return nil, nil
}

// ChallengeCertificate implements tlsterm.Manager.
func (m *Manager) ChallengeCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	st := m.st.Load()
	switch {
	case st == nil:
		return nil, errors.New("tlsterm/acme: not started")
	case m.opts.DisableTLSALPN01:
		return nil, errors.New("tlsterm/acme: TLS-ALPN-01 is disabled")
	case hello.ServerName == "" || len(hello.SupportedProtos) != 1 || hello.SupportedProtos[0] != tlsterm.ALPNACME:
		// certmagic would serve an ordinary certificate for such a hello.
		return nil, errors.New("tlsterm/acme: not a TLS-ALPN-01 validation hello")
	}
	// With exactly "acme-tls/1" and an SNI, certmagic answers from the
	// pending challenges (its own, or another instance's in storage) and
	// fails when there is none.
	return st.managed.GetCertificate(hello)
}

// Certificates implements tlsterm.Manager.
func (m *Manager) Certificates() []tlsterm.CertStatus {
	st := m.st.Load()
	if st == nil {
		return nil
	}
	m.seenMu.Lock()
	names := make([]string, 0, len(m.seen))
	for n := range m.seen {
		names = append(names, n)
	}
	m.seenMu.Unlock()
	slices.Sort(names)
	now := time.Now()
	var out []tlsterm.CertStatus
	hashes := map[string]bool{}
	for _, n := range names {
		for _, c := range st.cache.AllMatchingCertificates(n) {
			if c.Leaf == nil || hashes[c.Hash()] {
				continue
			}
			hashes[c.Hash()] = true
			out = append(out, tlsterm.StatusOf(c.Leaf, m.source(n), now))
		}
	}
	return out
}

// HTTPHandler answers HTTP-01 challenge requests (GET
// /.well-known/acme-challenge/TOKEN, RFC 8555 §8.3) for this Manager, or for
// another instance sharing StorageDir, and passes anything else to next.
// Mount it where a web server that owns port 80 forwards the challenge
// path, if imapwarden is not to listen on HTTPPort itself. It answers only
// after the Server has started the Manager.
func (m *Manager) HTTPHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if st := m.st.Load(); st != nil {
			for _, iss := range st.issuers {
				if iss.HandleHTTPChallenge(w, r) {
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// decide is certmagic's on-demand DecisionFunc, consulted before it loads or
// orders anything for a name; GetCertificate has checked already, this is
// the second lock on the door.
func (m *Manager) decide(_ context.Context, name string) error {
	if m.allow(normalize(name)) {
		return nil
	}
	return fmt.Errorf("tlsterm/acme: %q is not in the on-demand allowlist", name)
}

func (m *Manager) allow(name string) bool {
	if !tlsterm.ValidHostname(name) {
		return false
	}
	if m.allowed[name] {
		return true
	}
	for _, s := range m.suffixes {
		if strings.HasSuffix(name, "."+s) {
			return true
		}
	}
	return false
}

// have reports whether a certificate for name is cached or stored, so that
// using it is no new order.
func (m *Manager) have(st *state, name string) bool {
	if len(st.cache.AllMatchingCertificates(name)) > 0 {
		return true
	}
	for _, iss := range st.issuers {
		if m.storage.Exists(st.ctx, certmagic.StorageKeys.SiteCert(iss.IssuerKey(), name)) {
			return true
		}
	}
	return false
}

func (m *Manager) source(name string) string {
	if m.isName[name] {
		return tlsterm.SourceACME
	}
	return tlsterm.SourceOnDemand
}

// onEvent turns certmagic's events into tlsterm's. certmagic calls it
// synchronously; emit is the Server's, which calls OnEvent.
func (m *Manager) onEvent(st *state, ctx context.Context, event string, data map[string]any) error {
	switch event {
	case "cached_managed_cert":
		sans, _ := data["sans"].([]string)
		m.seenMu.Lock()
		for _, n := range sans {
			m.seen[normalize(n)] = true
		}
		m.seenMu.Unlock()
	case "cert_obtained":
		name, _ := data["identifier"].(string)
		renewal, _ := data["renewal"].(bool)
		ev := tlsterm.CertEvent{Kind: tlsterm.CertObtained, Name: normalize(name), Source: m.source(normalize(name))}
		if renewal {
			ev.Kind = tlsterm.CertRenewed
		}
		if path, ok := data["certificate_path"].(string); ok {
			ev.NotAfter = m.storedNotAfter(ctx, path)
		}
		st.emit(ev)
	case "cert_failed":
		name, _ := data["identifier"].(string)
		renewal, _ := data["renewal"].(bool)
		err, _ := data["error"].(error)
		if err == nil {
			err = errors.New("unknown error")
		}
		st.emit(tlsterm.CertEvent{Kind: tlsterm.CertFailed, Name: normalize(name), Source: m.source(normalize(name)), Renewal: renewal, Err: err})
	}
	return nil
}

// storedNotAfter reads the expiry of the certificate certmagic just saved.
func (m *Manager) storedNotAfter(ctx context.Context, key string) time.Time {
	data, err := m.storage.Load(ctx, key)
	if err != nil {
		return time.Time{}
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return time.Time{}
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return time.Time{}
	}
	return c.NotAfter
}

// normalize reads a configured name: trimmed, lower case, no trailing dot.
func normalize(name string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(name)), ".")
}

// slidingWindow allows at most limit events in any window.
type slidingWindow struct {
	mu     sync.Mutex
	limit  int
	window time.Duration
	times  []time.Time // ascending
}

func (w *slidingWindow) allow(now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	cut := 0
	for cut < len(w.times) && !w.times[cut].After(now.Add(-w.window)) {
		cut++
	}
	w.times = w.times[cut:]
	if len(w.times) >= w.limit {
		return false
	}
	w.times = append(w.times, now)
	return true
}
