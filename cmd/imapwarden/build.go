package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/imapwarden/imapwarden/audit"
	"github.com/imapwarden/imapwarden/internal/filemode"
	"github.com/imapwarden/imapwarden/policy"
	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/proxy/authn"
	"github.com/imapwarden/imapwarden/proxy/imapwire"
	"github.com/imapwarden/imapwarden/proxy/pool"
	"github.com/imapwarden/imapwarden/proxy/ratelimit"
	"github.com/imapwarden/imapwarden/tlsterm"
	"github.com/imapwarden/imapwarden/tlsterm/acme"
)

// setup is a checked configuration turned into the packages' options, with
// every file it names loaded. Building one neither listens nor dials.
type setup struct {
	// cfg is the configuration it was built from.
	cfg            *fileConfig
	opts           proxy.Options
	tls            *tlsterm.Server
	reloadInterval time.Duration
	drainTimeout   time.Duration
	lameDuck       time.Duration
	// endLameDuck, when set (tests), ends the lame-duck period early.
	endLameDuck <-chan struct{}
	reloads     *reloadMetrics
	warnings    []warning
	reg         *prometheus.Registry
	// The admin listener; adminAddr "" when off.
	adminAddr     string
	adminTLS      *tls.Config
	adminPprof    bool
	adminTimeouts adminTimeouts
	adminLimits   adminLimits
	// adminView is what the admin listener shows and accepts (tokens,
	// effective configuration): a reload replaces it.
	adminView atomic.Pointer[adminView]
	recent    *recentEvents
	level     zap.AtomicLevel // the logger's, for the admin API
	// The stateful hooks: kept across SIGHUP (the engine reloads its
	// files, the limiter takes new options and keeps its counters).
	engine     *policy.Engine
	engineRef  atomic.Pointer[policy.Engine] // engine, for the metrics and userGroups
	policyEval prometheus.Histogram          // nil until there are policies
	// policyMetrics: the engine's metrics are registered.
	policyMetrics bool
	limiter       *ratelimit.Limiter
	limiterOpts   ratelimit.Options
	// hosts keys clients by host (rate_limits.ip_bits_v4/v6), the
	// limits on or off: the admin listener counts per host too.
	hosts    ratelimit.Hosts
	redis    redis.UniversalClient
	backends map[string]*proxy.Backend
	static   proxy.Router
	// The backends' pools and the routing lookup: the router wraps the
	// static (or policy) routes with them (routing.go).
	poolList []*pool.Pool
	pools    *pool.Set
	lookup   *pool.Lookup
	// monitor checks the pools' servers; started by runServe only.
	monitor   *pool.Monitor
	trail     *audit.Trail
	auditWire *auditWire
	queueSize int
	// wire publishes auditWire to callbacks that may run before the trail
	// opens (certificate events, the limiter's store prober).
	wire  atomic.Pointer[auditWire]
	certs *certMetrics
	// authClose ends the authenticators' connections; a reload hands
	// them over (applyReload).
	authClose authCloser
	// usersFiles are the file authenticators' users files, in force with
	// authClose.
	usersFiles []*authn.File
	// retired are limiters a reload turned off, closed at exit: open
	// sessions still hold their connections.
	retired []*ratelimit.Limiter
}

// adminServing is how the admin listener of s serves.
func (s *setup) adminServing() adminServing {
	return adminServing{addr: s.adminAddr, tls: s.adminTLS, timeouts: s.adminTimeouts, pprof: s.adminPprof}
}

// close stops what build started.
func (s *setup) close() {
	if s.tls != nil {
		s.tls.Close()
	}
	if s.monitor != nil {
		s.monitor.Close()
	}
	if s.engine != nil {
		s.engine.Close()
	}
	if s.limiter != nil {
		s.limiter.Close()
	}
	if s.redis != nil {
		s.redis.Close()
	}
	s.authClose.close()
	for _, l := range s.retired {
		l.Close()
	}
	// Last: every session has ended and said its last word.
	if s.trail != nil {
		s.trail.Close()
	}
}

// dynamic is what a reload may change in a running server.
func (s *setup) dynamic() proxy.Dynamic {
	return proxy.Dynamic{Router: s.opts.Router, Decider: s.opts.Decider, Limiter: s.opts.Limiter,
		Authenticator: s.opts.Authenticator, Limits: s.opts.Limits, AllowAuthzid: s.opts.AllowAuthzid,
		UserSeparators: s.opts.UserSeparators}
}

// buildUserSeparators is auth.user_separators (default proxy's) with
// every backend's master_separator: the proxy's own master login must not
// be spelt by a client either (ARCHITECTURE.md §17).
func buildUserSeparators(p *problems, cfg *fileConfig) []string {
	seps := slices.Clone(proxy.DefaultUserSeparators)
	if cfg.Auth.UserSeparators != nil {
		seps = slices.Clone(*cfg.Auth.UserSeparators)
	}
	for i, sep := range seps {
		if sep == "" || len(sep) > 4 || strings.ContainsFunc(sep, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == '"' || r == '\\' }) {
			p.add("auth.user_separators[%d]: %q is not a separator such as \"*\"", i, sep)
		}
	}
	for _, name := range sortedKeys(cfg.Backends) {
		if b := cfg.Backends[name]; b != nil && b.MasterSeparator != "" && !slices.Contains(seps, b.MasterSeparator) {
			seps = append(seps, b.MasterSeparator)
		}
	}
	return seps
}

// warning is something legal but risky, logged at start and printed by
// validate.
type warning struct {
	Key string // where in the config, e.g. "backends.main.tls.insecure"
	Msg string
}

func (w warning) String() string { return w.Key + ": " + w.Msg }

// logWarnings logs each warning with a constant message.
func (s *setup) logWarnings(log *zap.Logger) {
	for _, w := range s.warnings {
		log.Warn("configuration warning", zap.String("key", w.Key), zap.String("detail", w.Msg))
	}
}

// logSettings checks the log section and returns its level and format.
func logSettings(c logConfig) (zapcore.Level, string, error) {
	level := zapcore.InfoLevel
	if c.Level != "" {
		if err := level.UnmarshalText([]byte(c.Level)); err != nil || level > zapcore.ErrorLevel {
			return 0, "", fmt.Errorf("log.level: unknown level %q (want debug, info, warn or error)", c.Level)
		}
	}
	format := c.Format
	switch format {
	case "":
		format = "json"
	case "json", "console":
	default:
		return 0, "", fmt.Errorf("log.format: unknown format %q (want json or console)", c.Format)
	}
	return level, format, nil
}

// build checks cfg, loads the files it names (certificates, CA bundles,
// password files) and returns the options to run with. log receives what
// the packages report while loading (certificate warnings). The error, a
// *configError, lists every problem found, not only the first.
func build(cfg *fileConfig, log *zap.Logger) (*setup, error) {
	return buildMode(cfg, log, false)
}

// check is build for validate and SIGHUP: every file is loaded and every
// option checked, but nothing starts — above all no ACME order, and no
// second certificate manager beside the running one.
func check(cfg *fileConfig, log *zap.Logger) (*setup, error) {
	s, err := buildMode(cfg, log, true)
	if s != nil {
		// The authenticators have opened nothing yet; a reload adopts them.
		ac := s.authClose
		s.authClose = nil
		s.close()
		s.authClose = ac
		s.tls, s.engine, s.limiter, s.redis, s.trail, s.auditWire = nil, nil, nil, nil, nil, nil
	}
	return s, err
}

func buildMode(cfg *fileConfig, log *zap.Logger, checkOnly bool) (*setup, error) {
	var p problems
	s := &setup{
		cfg:            cfg,
		level:          zap.NewAtomicLevel(),
		drainTimeout:   cfg.DrainTimeout.get(defaultDrainTimeout),
		lameDuck:       cfg.LameDuck.get(defaultLameDuck),
		reloadInterval: cfg.TLS.ReloadInterval.get(defaultReloadInterval),
	}
	warn := func(key, format string, args ...any) {
		s.warnings = append(s.warnings, warning{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if _, _, err := logSettings(cfg.Log); err != nil {
		p.add("%v", err)
	}
	if cfg.src != nil && cfg.src.file != "" {
		// It decides everything, and SIGHUP applies it live.
		if err := filemode.Trusted(cfg.src.file); err != nil {
			p.add("%v", err)
		}
	}
	if s.drainTimeout <= 0 {
		p.add("drain_timeout: must be positive, got %v", s.drainTimeout)
	}
	if s.lameDuck < 0 {
		p.add("lame_duck: must not be negative, got %v", s.lameDuck)
	}

	// TLS toward clients, shared by every listener so that session tickets
	// resume across them.
	s.reg = newRegistry()
	s.reloads = newReloadMetrics(s.reg)
	s.certs = newCertMetrics(s.reg, &s.wire)
	s.certs.reloads = s.reloads
	s.tls = buildServerTLS(&p, cfg.TLS, log, checkOnly, s.certs)
	if s.reloadInterval <= 0 {
		p.add("tls.reload_interval: must be positive, got %v", s.reloadInterval)
	}
	var serverTLS *tls.Config
	if s.tls != nil {
		serverTLS = s.tls.TLSConfig()
	}

	s.opts.Listeners = buildListeners(&p, cfg.Listeners, s.tls, serverTLS, warn)

	backends := make(map[string]*proxy.Backend, len(cfg.Backends))
	if len(cfg.Backends) == 0 {
		p.add("backends: at least one backend is required")
	}
	for _, name := range sortedKeys(cfg.Backends) {
		if b, servers := buildBackend(&p, name, cfg.Backends[name], verifiersOf(cfg), warn); b != nil {
			if pb := buildPool(&p, name, cfg.Backends[name], b, servers); pb != nil {
				backends[name] = pb.Backend()
				s.poolList = append(s.poolList, pb)
			}
		}
	}
	s.opts.Router = buildRouter(&p, cfg.Routes, cfg.Backends, backends, warn)
	s.backends, s.static = backends, s.opts.Router

	s.opts.Limits = buildLimits(&p, cfg.Limits)
	s.opts.Hostname = cfg.Hostname
	s.opts.CutGrace = cfg.DrainCutGrace.get(proxy.DefaultCutGrace)
	if s.opts.CutGrace <= 0 {
		p.add("drain_cut_grace: must be positive, got %v", s.opts.CutGrace)
	}
	if strings.ContainsAny(cfg.Hostname, " \t\r\n") {
		p.add("hostname: %q contains white space", cfg.Hostname)
	}
	s.opts.AllowAuthzid = cfg.Auth.AllowAuthzid
	s.opts.UserSeparators = buildUserSeparators(&p, cfg)
	s.opts.ShowBackendID = cfg.Auth.ShowBackendID
	s.opts.Authenticator, s.authClose, s.usersFiles = buildAuthenticators(&p, cfg.Auth.Authenticators, warn)
	if !checkOnly {
		s.watchUsersFiles(log)
	}
	s.opts.Logger = log
	s.opts.Auditor = proxy.NewLogAuditor(log)
	if !logSessions(&p, cfg, warn) {
		s.opts.Auditor = sessionsUnlogged{s.opts.Auditor}
	}
	m, err := proxy.NewMetrics(s.reg)
	if err != nil {
		p.add("metrics: %v", err)
	}
	s.opts.Metrics = m
	buildAdmin(&p, s, cfg.Admin, warn, log)
	buildPolicy(&p, s, cfg.Policy, backends, log)
	buildRouting(&p, s, cfg.Routes)
	buildRateLimits(&p, s, cfg.RateLimits, log, warn)
	ac := cfg.Audit
	if v := cfg.Limits.MaxAuditMailboxNames; v != nil && *v > 0 {
		ac.mailboxNames = *v // the record must hold them: audit.New checks
	}
	if v := cfg.Limits.MaxAuditNameBytes; v != nil && *v > 0 {
		ac.nameBytes = *v // likewise
	}
	buildAudit(&p, s, ac, checkOnly, log)
	if s.auditWire != nil {
		s.wire.Store(s.auditWire)
	}
	buildAdminView(&p, s, cfg)

	// Every counter is visible before its first event.
	if m != nil {
		var listeners []string
		for _, l := range s.opts.Listeners {
			listeners = append(listeners, l.Name)
		}
		var hits [][2]string
		if s.limiter != nil {
			hits = ratelimit.Hits
		}
		m.Init(listeners, sortedKeys(backends), hits)
	}

	if err := p.err(cfg.src); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func buildServerTLS(p *problems, c tlsConfig, log *zap.Logger, checkOnly bool, cm *certMetrics) *tlsterm.Server {
	minVersion, err := tlsVersion(c.MinVersion, false)
	if err != nil {
		p.add("tls.min_version: %v", err)
	}
	var mgr *acme.Manager
	if c.ACME != nil {
		mgr = buildACME(p, c.ACME, log)
	}
	if len(c.Certificates) == 0 && c.ACME == nil {
		p.add("tls.certificates: at least one certificate (or tls.acme) is required (every listener speaks TLS)")
		return nil
	}
	files := make([]tlsterm.CertFile, 0, len(c.Certificates))
	ok := true
	for i, cf := range c.Certificates {
		if cf.Cert == "" || cf.Key == "" {
			p.add("tls.certificates[%d]: both cert and key are required", i)
			ok = false
		} else if err := filemode.Secret(cf.Key); err != nil {
			p.add("tls.certificates[%d].key: %v", i, err)
			ok = false
		}
		files = append(files, tlsterm.CertFile{Cert: cf.Cert, Key: cf.Key})
	}
	if !ok || err != nil || (c.ACME != nil && mgr == nil) {
		return nil
	}
	opts := tlsterm.ServerOptions{
		Certificates:      files,
		StrictSNI:         c.StrictSNI,
		MinVersion:        minVersion,
		TicketKeyRotation: c.TicketKeyRotation.get(0),
		ExpiryWarning:     c.ExpiryWarning.get(0),
		OnEvent:           cm.event(log.Named("tls")),
		Logger:            log.Named("tls"),
		CheckKey:          filemode.Secret,  // at every re-read too (SIGHUP, the poll)
		CheckCA:           filemode.Trusted, // client_ca_file decides who is a client
	}
	if mgr != nil {
		if checkOnly {
			// The Manager starts ordering once a Server owns it; its
			// options were checked by acme.New.
			mgr.Close()
			if len(files) == 0 {
				return nil
			}
		} else {
			opts.Managed = mgr
		}
	}
	srv, err := tlsterm.NewServer(opts)
	if err != nil {
		p.add("tls: %v", err)
		return nil
	}
	cm.watch(srv)
	return srv
}

// buildACME checks the acme section and makes its Manager (not started).
func buildACME(p *problems, c *acmeConfig, log *zap.Logger) *acme.Manager {
	o := acme.Options{
		Names: c.Names, CA: c.CA, Email: c.Email, TrustedRootsFile: c.TrustedRoots, StorageDir: c.Storage,
		HTTPPort: c.HTTPPort, TLSALPNPort: c.TLSALPNPort, ListenHost: c.ListenHost,
		DisableHTTP01: c.DisableHTTP01, DisableTLSALPN01: c.DisableTLSALPN01, KeyType: c.KeyType,
		Logger: log.Named("acme"),
	}
	if c.Storage == "" {
		p.add("tls.acme.storage: required, such as /var/lib/imapwarden/acme")
		return nil
	}
	// The roots decide which directory the proxy takes certificates from.
	if err := filemode.Trusted(c.TrustedRoots); c.TrustedRoots != "" && err != nil {
		p.add("tls.acme.trusted_roots: %v", err)
		return nil
	}
	if c.OnDemand != nil {
		o.OnDemand = &acme.OnDemandOptions{Allow: c.OnDemand.Allow, RateLimit: c.OnDemand.RateLimit, RateWindow: c.OnDemand.RateWindow.get(0)}
	}
	m, err := acme.New(o)
	if err != nil {
		p.add("tls.acme: %v", err)
		return nil
	}
	return m
}

// tlsVersion parses "1.2"-style versions. Clients may not be offered less
// than TLS 1.2 (RFC 8996); legacy backends may, when asked explicitly.
func tlsVersion(v string, legacyOK bool) (uint16, error) {
	switch v {
	case "":
		return 0, nil // the package's default: TLS 1.2
	case "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	case "1.0", "1.1":
		if legacyOK {
			if v == "1.0" {
				return tls.VersionTLS10, nil
			}
			return tls.VersionTLS11, nil
		}
		return 0, fmt.Errorf("TLS %s is not allowed toward clients (RFC 8996): want \"1.2\" or \"1.3\"", v)
	}
	if legacyOK {
		return 0, fmt.Errorf("unknown TLS version %q: want \"1.0\", \"1.1\", \"1.2\" or \"1.3\"", v)
	}
	return 0, fmt.Errorf("unknown TLS version %q: want \"1.2\" or \"1.3\"", v)
}

func buildListeners(p *problems, ls []listenerConfig, ts *tlsterm.Server, serverTLS *tls.Config, warn func(key, format string, args ...any)) []proxy.ListenerOptions {
	if len(ls) == 0 {
		p.add("listeners: at least one listener is required")
	}
	var out []proxy.ListenerOptions
	names := map[string]int{}
	addrs := map[string]int{}
	for i, l := range ls {
		key := fmt.Sprintf("listeners[%d]", i)
		lo := proxy.ListenerOptions{Name: l.Name, Addr: l.Address, TLS: serverTLS}
		switch l.Mode {
		case "tls":
			lo.Mode = proxy.ImplicitTLS
			if lo.Name == "" {
				lo.Name = "imaps"
			}
		case "starttls":
			lo.Mode = proxy.StartTLS
			if lo.Name == "" {
				lo.Name = "imap"
			}
		case "":
			p.add("%s.mode: required (tls or starttls)", key)
		default:
			p.add("%s.mode: unknown mode %q (want tls or starttls)", key, l.Mode)
		}
		if lo.Name != "" {
			if j, dup := names[lo.Name]; dup {
				p.add("%s.name: %q is already the name of listeners[%d]; give each listener its own name", key, lo.Name, j)
			}
			names[lo.Name] = i
		}
		if l.Address == "" {
			p.add("%s.address: required, such as \"0.0.0.0:993\"", key)
		} else if err := checkHostPort(l.Address, true); err != nil {
			p.add("%s.address: %v", key, err)
		} else if _, port, _ := net.SplitHostPort(l.Address); port != "0" { // port 0: a fresh port each
			if j, dup := addrs[l.Address]; dup {
				p.add("%s.address: %s is also the address of listeners[%d]", key, l.Address, j)
			}
			addrs[l.Address] = i
		}
		lo.CertLogin = l.CertLogin
		if l.CertLogin && (l.ClientAuth == "" || l.ClientAuth == "none") {
			p.add("%s.cert_login: needs client_auth request or require, and client_ca_file", key)
		}
		if l.ClientAuth != "" || l.ClientCAFile != "" {
			mode, err := tlsterm.ParseClientAuth(l.ClientAuth)
			if err != nil {
				p.add("%s.client_auth: %v", key, err)
			} else if ts != nil {
				cfg, err := ts.ListenerConfig(tlsterm.ClientAuthOptions{Mode: mode, CAFile: l.ClientCAFile})
				if err != nil {
					p.add("%s.client_auth: %v", key, err)
				}
				lo.TLS = cfg
			}
		}
		for j, s := range l.ProxyProtocolFrom {
			pfx, err := parsePrefix(s)
			if err != nil {
				p.add("%s.proxy_protocol_from[%d]: %v", key, j, err)
				continue
			}
			lo.ProxyProtocolFrom = append(lo.ProxyProtocolFrom, pfx)
		}
		for j, s := range l.PlaintextAuthFrom {
			pfx, err := parsePrefix(s)
			if err != nil {
				p.add("%s.plaintext_auth_from[%d]: %v", key, j, err)
				continue
			}
			lo.PlaintextAuthFrom = append(lo.PlaintextAuthFrom, pfx)
		}
		if len(l.PlaintextAuthFrom) > 0 {
			if l.Mode == "tls" {
				p.add("%s.plaintext_auth_from: only meaningful on a starttls listener", key)
			} else {
				warn(key+".plaintext_auth_from", "passwords are accepted without TLS from %s", strings.Join(l.PlaintextAuthFrom, ", "))
			}
		}
		out = append(out, lo)
	}
	return out
}

// parsePrefix accepts a CIDR or a single address (a /32 or /128).
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid network %q: %w", s, err)
		}
		if pfx != pfx.Masked() {
			return netip.Prefix{}, fmt.Errorf("invalid network %q: host bits set, did you mean %s?", s, pfx.Masked())
		}
		return pfx, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid network %q: want a CIDR such as 10.0.0.0/8 or an address", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// checkHostPort checks "host:port" with a numeric port. Listeners may leave
// the host empty (all interfaces) and use port 0 (any free port).
func checkHostPort(addr string, listen bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("invalid address %q: want host:port", addr)
	}
	if host == "" && !listen {
		return fmt.Errorf("invalid address %q: the host is missing", addr)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || (n == 0 && !listen) {
		return fmt.Errorf("invalid address %q: port %q is not a number from 1 to 65535", addr, port)
	}
	return nil
}

// buildBackend checks a backend and returns its template (the settings
// its servers share) and its servers, each with its own TLS configuration
// (the name to verify is the server's host unless tls.server_name says).
func buildBackend(p *problems, name string, c *backendConfig, vf verifiers, warn func(key, format string, args ...any)) (*proxy.Backend, []pool.ServerOptions) {
	key := "backends." + name
	if name == "" {
		p.add("backends: a backend has an empty name")
		return nil, nil
	}
	if c == nil {
		p.add("%s: empty; address and security are required", key)
		return nil, nil
	}
	n := len(*p)
	servers := backendServers(p, key, c)
	var addrs []string
	for _, so := range servers {
		addrs = append(addrs, so.Addr)
	}
	b := &proxy.Backend{
		Name:           name,
		SendID:         c.SendID,
		SendProxy:      c.SendProxy,
		MasterUser:     c.MasterUser,
		ConnectTimeout: c.ConnectTimeout.get(proxy.DefaultConnectTimeout),
		LoginTimeout:   c.LoginTimeout.get(proxy.DefaultLoginTimeout),
	}
	if b.ConnectTimeout <= 0 {
		p.add("%s.connect_timeout: must be positive, got %v", key, b.ConnectTimeout)
	}
	if b.LoginTimeout <= 0 {
		p.add("%s.login_timeout: must be positive, got %v", key, b.LoginTimeout)
	}

	switch c.Security {
	case "plain":
		b.Security = proxy.BackendPlain
		if c.TLS != nil {
			p.add("%s.tls: set, but security is plain; use starttls or tls, or remove the tls section", key)
		}
		if a := remoteAddr(addrs); a != "" {
			warn(key+".security", "plain: client passwords cross the network to %s unencrypted", a)
		}
	case "starttls":
		b.Security = proxy.BackendStartTLS
	case "tls":
		b.Security = proxy.BackendTLS
	case "":
		p.add("%s.security: required (plain, starttls or tls)", key)
	default:
		p.add("%s.security: unknown value %q (want plain, starttls or tls)", key, c.Security)
	}

	switch c.Login {
	case "", "auto":
		b.Login = proxy.LoginAuto
	case "login":
		b.Login = proxy.LoginCommand
	case "plain":
		b.Login = proxy.LoginPlain
	case "master":
		b.Login = proxy.LoginMaster
		if c.MasterUser == "" {
			p.add("%s.master_user: required with login: master", key)
		}
		if c.MasterPasswordFile == "" {
			p.add("%s.master_password_file: required with login: master (the password is never written in the config)", key)
		} else if pw, err := readSecretFile(c.MasterPasswordFile); err != nil {
			p.add("%s.master_password_file: %v", key, err)
		} else {
			b.MasterPassword = pw
		}
		b.MasterSeparator = c.MasterSeparator
		// With a master login the backend never checks the client's
		// password: only an authenticator of the proxy does (ldap, oauth2,
		// file). Certificate logins (SASL EXTERNAL) need no password;
		// without either this would let anyone read any mailbox.
		switch {
		case !vf.cert && !vf.proxy:
			p.add("%s.login: master needs auth.authenticators with one that is not backend (ldap, oauth2, file) to check client passwords, or cert_login on a listener; else use auto, login or plain", key)
		case !vf.proxy:
			warn(key+".login", "master: only certificate logins (AUTHENTICATE EXTERNAL) reach this backend; password logins to it are refused")
		}
	default:
		p.add("%s.login: unknown value %q (want auto, login, plain or master)", key, c.Login)
	}
	if b.Login != proxy.LoginMaster && (c.MasterUser != "" || c.MasterPasswordFile != "" || c.MasterSeparator != "") {
		p.add("%s: master_user, master_password_file and master_separator are only used with login: master", key)
	}
	if b.Login != proxy.LoginMaster && vf.tokens {
		warn(key+".login", "%s: bearer-token logins (oauth2) to this backend are refused: there is no password to replay; use login: master", c.Login)
	}
	if strings.ContainsAny(c.MasterSeparator, " \t\r\n\"\\") || len(c.MasterSeparator) > 4 {
		p.add("%s.master_separator: %q is not a separator such as \"*\"", key, c.MasterSeparator)
	}

	b.Namespaces = declaredNamespaces(p, key, c.Namespaces)

	if b.Security == proxy.BackendStartTLS || b.Security == proxy.BackendTLS {
		var t backendTLSConfig
		if c.TLS != nil {
			t = *c.TLS
		}
		minVersion, err := tlsVersion(t.MinVersion, true)
		if err != nil {
			p.add("%s.tls.min_version: %v", key, err)
		}
		if t.Insecure {
			if t.CAFile != "" {
				p.add("%s.tls: insecure and ca_file contradict each other", key)
			}
			warn(key+".tls.insecure", "the backend's certificate is not verified: anyone on the path to %s can read passwords and mail", strings.Join(addrs, ", "))
		}
		if (t.ClientCert.Cert == "") != (t.ClientCert.Key == "") {
			p.add("%s.tls.client_cert: both cert and key are required", key)
		} else if err := filemode.Secret(t.ClientCert.Key); t.ClientCert.Key != "" && err != nil {
			p.add("%s.tls.client_cert.key: %v", key, err)
		}
		// The bundle decides who may stand in for the backend.
		if err := filemode.Trusted(t.CAFile); t.CAFile != "" && err != nil {
			p.add("%s.tls.ca_file: %v", key, err)
		}
		// BackendConfig reads files: only once the rest is sound.
		for i := 0; i < len(servers) && len(*p) == n; i++ {
			cfg, err := tlsterm.BackendConfig(tlsterm.BackendOptions{
				ServerName: t.ServerName,
				CAFile:     t.CAFile,
				Insecure:   t.Insecure,
				MinVersion: minVersion,
				ClientCert: tlsterm.CertFile{Cert: t.ClientCert.Cert, Key: t.ClientCert.Key},
			}, servers[i].Addr)
			if err != nil {
				p.add("%s.tls: %v", key, err)
			}
			servers[i].TLS = cfg
		}
	}
	if len(*p) > n {
		return nil, nil
	}
	b.Addr = servers[0].Addr
	b.TLS = servers[0].TLS
	return b, servers
}

// nsKinds are the kinds of backends.*.namespaces, named as policies see
// them (input.command.effects[_].namespace).
var nsKinds = map[string]imapwire.NSKind{"personal": imapwire.NSPersonal, "other": imapwire.NSOther,
	"shared": imapwire.NSShared, "alias": imapwire.NSAlias}

// declaredNamespaces reads backends.*.namespaces: the namespaces a backend
// serves without announcing them (ARCHITECTURE.md §8). Each has a
// one-character delimiter and, but for personal, a prefix ending in it
// (RFC 2342 §3: the prefix is a mailbox name up to its hierarchy);
// prefixes are unique.
func declaredNamespaces(p *problems, key string, list []namespaceConfig) *imapwire.Declared {
	if len(list) == 0 {
		return nil
	}
	d := &imapwire.Declared{}
	for i, c := range list {
		k := fmt.Sprintf("%s.namespaces[%d]", key, i)
		kind, ok := nsKinds[c.Kind]
		if !ok {
			p.add("%s.kind: %q (want personal, other, shared or alias)", k, c.Kind)
			continue
		}
		ns := imapwire.Namespace{Kind: kind, Prefix: c.Prefix}
		if len(c.Delimiter) != 1 || c.Delimiter[0] <= ' ' || c.Delimiter[0] >= 0x7f || c.Delimiter == `\` || c.Delimiter == `"` {
			p.add("%s.delimiter: %q is not one printable ASCII character such as \"/\" or \".\"", k, c.Delimiter)
			continue
		}
		ns.Delim = c.Delimiter[0]
		if strings.ContainsFunc(c.Prefix, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' || r == utf8.RuneError }) {
			p.add("%s.prefix: %q has a control character, a backslash or invalid UTF-8", k, c.Prefix)
			continue
		}
		if ns.Kind != imapwire.NSPersonal && (c.Prefix == c.Delimiter || !strings.HasSuffix(c.Prefix, c.Delimiter)) {
			p.add("%s.prefix: %q must name a hierarchy level and end in the delimiter %q", k, c.Prefix, c.Delimiter)
			continue
		}
		if slices.ContainsFunc(d.List, func(x imapwire.Namespace) bool { return x.Prefix == ns.Prefix }) {
			p.add("%s.prefix: %q is declared twice", k, c.Prefix)
			continue
		}
		d.List = append(d.List, ns)
	}
	return d
}

// readSecretFile reads a password from a file, without its final newline.
// The error never contains the file's content.
func readSecretFile(path string) (string, error) {
	if err := filemode.Secret(path); err != nil {
		return "", err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(data), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	if strings.ContainsAny(s, "\r\n\x00") {
		return "", fmt.Errorf("%s: the password must be one line", path)
	}
	return s, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func buildRouter(p *problems, c routesConfig, conf map[string]*backendConfig, backends map[string]*proxy.Backend, warn func(key, format string, args ...any)) *proxy.StaticRouter {
	r := &proxy.StaticRouter{}
	used := map[string]bool{}
	// lookup resolves a backend name. A backend that exists but failed its
	// own checks was reported already.
	lookup := func(key, name string) *proxy.Backend {
		if name == "" {
			p.add("%s: empty backend name", key)
			return nil
		}
		if _, ok := conf[name]; !ok {
			p.add("%s: no backend named %q (have %s)", key, name, strings.Join(sortedKeys(conf), ", "))
			return nil
		}
		used[name] = true
		return backends[name]
	}
	if c.Default != "" {
		r.Default = lookup("routes.default", c.Default)
	}
	table := func(section string, m map[string]string, norm func(string) string) map[string]*proxy.Backend {
		if len(m) == 0 {
			return nil
		}
		out := make(map[string]*proxy.Backend, len(m))
		seen := map[string]string{}
		for _, k := range sortedKeys(m) {
			key := fmt.Sprintf("routes.%s.%s", section, k)
			nk := norm(k)
			if nk == "" {
				p.add("routes.%s: empty key", section)
				continue
			}
			// StaticRouter matches by the folded user (proxy.FoldUser,
			// ARCHITECTURE.md §17); keys are folded for that to find them.
			if prev, dup := seen[nk]; dup {
				p.add("%s: same as %q (keys are case-insensitive)", key, prev)
				continue
			}
			seen[nk] = k
			out[nk] = lookup(key, m[k])
		}
		return out
	}
	r.Users = table("users", c.Users, proxy.FoldUser)
	r.Domains = table("domains", c.Domains, func(d string) string {
		return strings.TrimPrefix(strings.ToLower(d), "@")
	})

	if c.Default == "" {
		switch {
		case len(c.Users) > 0 || len(c.Domains) > 0:
			warn("routes.default", "not set: users matching no entry of routes.users or routes.domains cannot log in")
		case len(conf) == 1:
			// One backend and no routes: it is the default.
			for name := range conf {
				r.Default = lookup("routes.default", name)
			}
		case len(conf) > 1:
			p.add("routes.default: required when there are several backends and no users or domains routes")
		}
	}
	for _, name := range sortedKeys(conf) {
		if !used[name] && name != "" {
			warn("backends."+name, "no route leads to this backend")
		}
	}
	return r
}

func buildLimits(p *problems, c limitsConfig) proxy.Limits {
	size := func(key string, v *byteSize, def int64) int64 {
		if v == nil {
			return def
		}
		if *v <= 0 {
			p.add("limits.%s: must be positive, got %d", key, *v)
		}
		return int64(*v)
	}
	count := func(key string, v *int, def int) int {
		if v == nil {
			return def
		}
		if *v <= 0 {
			p.add("limits.%s: must be positive, got %d", key, *v)
		}
		return *v
	}
	dur := func(key string, v *duration, def time.Duration) time.Duration {
		d := v.get(def)
		if d <= 0 {
			p.add("limits.%s: must be positive, got %v", key, d)
		}
		return d
	}
	l := proxy.Limits{
		MaxLine:                int(size("max_line", c.MaxLine, proxy.DefaultMaxLine)),
		MaxBufferedLiteral:     int(size("max_buffered_literal", c.MaxBufferedLiteral, proxy.DefaultMaxBufferedLiteral)),
		MaxAppendLiteral:       size("max_append_literal", c.MaxAppendLiteral, proxy.DefaultMaxAppendLiteral),
		MaxCommandBytes:        int(size("max_command_bytes", c.MaxCommandBytes, proxy.DefaultMaxCommandBytes)),
		MaxPreAuthCommandBytes: int(size("max_preauth_command_bytes", c.MaxPreAuthCommandBytes, proxy.DefaultMaxPreAuthCommandBytes)),
		MaxPreAuthCommands:     count("max_preauth_commands", c.MaxPreAuthCommands, proxy.DefaultMaxPreAuthCommands),
		PreAuthIdle:            dur("preauth_idle", c.PreAuthIdle, proxy.DefaultPreAuthIdle),
		AuthIdle:               dur("auth_idle", c.AuthIdle, proxy.DefaultAuthIdle),
		IdleTimeout:            dur("idle_timeout", c.IdleTimeout, proxy.DefaultIdleTimeout),
		WriteTimeout:           dur("write_timeout", c.WriteTimeout, proxy.DefaultWriteTimeout),
		MaxAuthFailures:        count("max_auth_failures", c.MaxAuthFailures, proxy.DefaultMaxAuthFailures),
		MaxCredentialBytes:     int(size("max_credential_bytes", c.MaxCredentialBytes, proxy.DefaultMaxCredentialBytes)),
		MaxCompressSessions:    count("max_compress_sessions", c.MaxCompressSessions, proxy.DefaultMaxCompressSessions),
		MaxPreAuthConnections:  count("max_preauth_connections", c.MaxPreAuthConnections, proxy.DefaultMaxPreAuthConnections()),
		MaxInflight:            count("max_inflight", c.MaxInflight, proxy.DefaultMaxInflight),
		MaxInflightBytes:       size("max_inflight_bytes", c.MaxInflightBytes, proxy.DefaultMaxInflightBytes),
		BackendTimeout:         dur("backend_timeout", c.BackendTimeout, proxy.DefaultBackendTimeout),
		MaxResponseLine:        size("max_response_line", c.MaxResponseLine, proxy.DefaultMaxResponseLine),
		ParkAfter:              c.ParkAfter.get(proxy.DefaultParkAfter),
		MaxAuditUIDs:           count("max_audit_uids", c.MaxAuditUIDs, proxy.DefaultMaxAuditUIDs),
		MaxAuditSharedWith:     count("max_audit_shared_with", c.MaxAuditSharedWith, proxy.DefaultMaxAuditSharedWith),
		MaxAuditMailboxNames:   count("max_audit_mailbox_names", c.MaxAuditMailboxNames, proxy.DefaultMaxAuditMailboxNames),
		MaxAuditNameBytes:      count("max_audit_name_bytes", c.MaxAuditNameBytes, proxy.DefaultMaxAuditNameBytes),
		MaxTag:                 count("max_tag", c.MaxTag, imapwire.DefaultMaxTag),
		MaxListDepth:           count("max_list_depth", c.MaxListDepth, imapwire.DefaultMaxListDepth),
		MaxArguments:           count("max_arguments", c.MaxArguments, imapwire.DefaultMaxArguments),
		MaxSearchDepth:         count("max_search_depth", c.MaxSearchDepth, imapwire.DefaultMaxSearchDepth),
	}
	// Ordinary commands need this much: NOTIFY's fetch attributes nest
	// lists 4 deep, clients' searches OR a few keys. A tag longer than
	// 64 characters was never shown to be taken by every backend, which
	// would answer an untagged BAD the proxy cannot match.
	for _, r := range [...]struct {
		key       string
		v, lo, hi int
	}{
		{"max_tag", l.MaxTag, 1, imapwire.DefaultMaxTag},
		{"max_list_depth", l.MaxListDepth, 8, 256},
		{"max_arguments", l.MaxArguments, 100, 1 << 20},
		{"max_search_depth", l.MaxSearchDepth, 4, 1024},
	} {
		if r.v < r.lo || r.v > r.hi {
			p.add("limits.%s: must be from %d to %d, got %d", r.key, r.lo, r.hi, r.v)
		}
	}
	switch {
	case l.ParkAfter < 0:
		p.add("limits.park_after: must not be negative, got %v", l.ParkAfter)
	case l.ParkAfter == 0:
		l.ParkAfter = -1 // proxy.Limits: never
	}
	// RFC 9051 §5.4: an autologout timer must be at least 30 minutes.
	if l.AuthIdle > 0 && l.AuthIdle < 30*time.Minute {
		p.add("limits.auth_idle: %v is below the 30m minimum of RFC 9051 §5.4", l.AuthIdle)
	}
	// RFC 9051 §6.3.13: clients re-issue IDLE at least every 29 minutes.
	if l.IdleTimeout > 0 && l.IdleTimeout < 29*time.Minute {
		p.add("limits.idle_timeout: %v is below the 29m that RFC 9051 §6.3.13 lets a client stay in IDLE", l.IdleTimeout)
	}
	if l.MaxLine > 0 && l.MaxLine < 1024 {
		p.add("limits.max_line: %d is too small for ordinary commands (at least 1024)", l.MaxLine)
	}
	if l.MaxLine > 1<<30 || l.MaxBufferedLiteral > 1<<30 || l.MaxCommandBytes > 1<<30 || l.MaxPreAuthCommandBytes > 1<<30 {
		p.add("limits: max_line, max_buffered_literal, max_command_bytes and max_preauth_command_bytes are held in memory; keep them below 1GiB")
	}
	return l
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// buildAdmin checks the admin section: off-loopback access needs a token.
// The view's configuration and audit trail are set by buildMode.
func buildAdmin(p *problems, s *setup, c adminConfig, warn func(key, format string, args ...any), log *zap.Logger) {
	s.adminTimeouts, s.adminLimits = defaultAdminTimeouts, defaultAdminLimits
	s.adminAddr = defaultAdminAddress
	if c.Address != nil {
		s.adminAddr = *c.Address
	}
	s.adminPprof = c.Pprof
	if s.adminAddr == "" {
		return
	}
	if err := checkHostPort(s.adminAddr, true); err != nil {
		p.add("admin.address: %v", err)
		return
	}
	tokens := buildAdminTokens(p, c)
	if host, _, _ := net.SplitHostPort(s.adminAddr); len(tokens) == 0 && c.TokenFile == "" && len(c.Tokens) == 0 && !isLoopback(host) {
		// Sessions, log levels and profiles are not for the network.
		p.add("admin.address: %s is not loopback: set admin.tokens (or admin.token_file)", s.adminAddr)
	}
	s.adminView.Store(&adminView{tokens: tokens})
	t := defaultAdminTimeouts
	for _, d := range []struct {
		key string
		v   *duration
		out *time.Duration
	}{{"read_header_timeout", c.ReadHeaderTimeout, &t.ReadHeader}, {"read_timeout", c.ReadTimeout, &t.Read},
		{"write_timeout", c.WriteTimeout, &t.Write}, {"idle_timeout", c.IdleTimeout, &t.Idle}} {
		*d.out = d.v.get(*d.out)
		if *d.out <= 0 {
			p.add("admin.%s: must be positive, got %v", d.key, *d.out)
		}
	}
	if c.MaxConnections != nil {
		t.MaxConnections = *c.MaxConnections
	}
	if t.MaxConnections <= 0 {
		p.add("admin.max_connections: must be positive, got %d", t.MaxConnections)
	}
	if c.MaxConnectionsPerIP != nil {
		t.MaxConnectionsPerIP = *c.MaxConnectionsPerIP
		if t.MaxConnectionsPerIP <= 0 || t.MaxConnectionsPerIP > t.MaxConnections {
			p.add("admin.max_connections_per_ip: must be positive and at most admin.max_connections (%d), got %d", t.MaxConnections, t.MaxConnectionsPerIP)
		}
	} else {
		// The default is a quarter of a smaller pool.
		t.MaxConnectionsPerIP = max(min(t.MaxConnectionsPerIP, t.MaxConnections/4), 1)
	}
	if c.MaxBodyBytes != nil {
		t.MaxBodyBytes = int64(*c.MaxBodyBytes)
	}
	if c.MaxHeaderBytes != nil {
		t.MaxHeaderBytes = *c.MaxHeaderBytes
	}
	// A header must hold a bearer token and the console's cookie.
	if t.MaxBodyBytes <= 0 {
		p.add("admin.max_body_bytes: must be positive, got %d", t.MaxBodyBytes)
	}
	if t.MaxHeaderBytes < 4096 {
		p.add("admin.max_header_bytes: must be at least 4096, got %d", t.MaxHeaderBytes)
	}
	s.adminTimeouts = t
	l := defaultAdminLimits
	l.ConsoleSessionTTL = c.ConsoleSessionTTL.get(l.ConsoleSessionTTL)
	if l.ConsoleSessionTTL <= 0 {
		p.add("admin.console_session_ttl: must be positive, got %v", l.ConsoleSessionTTL)
	}
	l.TokenFailureWindow = c.TokenFailureWindow.get(l.TokenFailureWindow)
	if l.TokenFailureWindow <= 0 {
		p.add("admin.token_failure_window: must be positive, got %v", l.TokenFailureWindow)
	}
	for _, n := range []struct {
		key string
		v   *int
		out *int
	}{{"console_max_sessions", c.ConsoleMaxSessions, &l.ConsoleMaxSessions}, {"audit_searches", c.AuditSearches, &l.AuditSearches},
		{"recent_events", c.RecentEvents, &l.RecentEvents}, {"token_failures_per_ip", c.TokenFailuresPerIP, &l.TokenFailuresPerIP},
		{"page_size", c.PageSize, &l.PageSize}, {"token_failure_hosts", c.TokenFailureHosts, &l.TokenFailureHosts}} {
		if n.v != nil {
			*n.out = *n.v
		}
		if *n.out <= 0 {
			p.add("admin.%s: must be positive, got %d", n.key, *n.out)
		}
	}
	s.adminLimits = l
	if c.TLS != nil && (c.TLS.Cert != "" || c.TLS.Key != "") {
		if err := filemode.Secret(c.TLS.Key); c.TLS.Key != "" && err != nil {
			p.add("admin.tls.key: %v", err)
			return
		}
		rc, err := newReloadingCert(c.TLS.Cert, c.TLS.Key)
		if err != nil {
			p.add("admin.tls: %v", err)
			return
		}
		rc.report = func(err error) {
			if s.reloads != nil {
				s.reloads.record(reloadTLS, err)
			}
			if err != nil {
				log.Error("admin tls certificate reload failed, keeping the one in force", zap.String("cert", c.TLS.Cert), zap.Error(err))
			}
		}
		s.adminTLS = &tls.Config{GetCertificate: rc.get, MinVersion: tls.VersionTLS12}
	}
	if host, _, _ := net.SplitHostPort(s.adminAddr); s.adminTLS == nil && !isLoopback(host) {
		// Tokens are bearer secrets: whoever sees one on the path can end
		// sessions, lift lockouts and read the audit trail.
		warn("admin.tls", "not set: admin tokens, console sign-ins and their cookie cross the network to %s in clear", s.adminAddr)
	}
}

// certLogin reports whether a listener offers certificate logins.
func certLogin(ls []listenerConfig) bool {
	for _, l := range ls {
		if l.CertLogin {
			return true
		}
	}
	return false
}

// watchUsersFiles reports each re-read of the users files in force: a
// file that does not load refuses every login through its authenticator
// (authn.File), so it is said loudly, in the log, the trail and
// imapwarden_reload_success{component="users"}.
func (s *setup) watchUsersFiles(log *zap.Logger) {
	s.reloads.state(reloadUsers, nil) // each loaded, or build failed
	for _, f := range s.usersFiles {
		f.OnReload(func(path string, err error) {
			s.reloads.record(reloadUsers, err)
			if w := s.wire.Load(); w != nil {
				w.Reload(reloadUsers, "", err)
			}
			if err != nil {
				log.Error("users file not in force, its authenticator refuses every login", zap.String("path", path), zap.Error(err))
				return
			}
			log.Info("users file reloaded", zap.String("path", path))
		})
	}
}
