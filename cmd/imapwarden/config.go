package main

// This file is the only place that knows the configuration file format
// (ARCHITECTURE.md §4): the YAML schema, its parsing and the checks that need no file
// system. build.go turns a checked config into each package's Options.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/imapwarden/imapwarden/proxy/ratelimit"
)

// fileConfig is the whole configuration file. Every field is optional in the
// YAML; check reports what is missing. Pointers tell "not set" (take the
// default) from an explicit value (which must then be valid).
type fileConfig struct {
	// Hostname is the name in the greeting; the proxy's default is
	// "imapwarden".
	Hostname     string    `yaml:"hostname"`
	Log          logConfig `yaml:"log"`
	DrainTimeout *duration `yaml:"drain_timeout"`
	// DrainCutGrace: after drain_timeout, responses in flight end at
	// their next message boundary within this grace; default 10s.
	DrainCutGrace *duration `yaml:"drain_cut_grace"`
	// LameDuck is how long SIGTERM keeps serving, not ready, before the
	// drain; default 5s, 0 none.
	LameDuck  *duration        `yaml:"lame_duck"`
	Listeners []listenerConfig `yaml:"listeners"`
	TLS       tlsConfig        `yaml:"tls"`
	// Backends by name; routes refer to the names.
	Backends map[string]*backendConfig `yaml:"backends"`
	Routes   routesConfig              `yaml:"routes"`
	Limits   limitsConfig              `yaml:"limits"`
	Auth     authConfig                `yaml:"auth"`
	Admin    adminConfig               `yaml:"admin"`
	Policy   policyConfig              `yaml:"policy"`
	Audit    auditConfig               `yaml:"audit"`
	// RateLimits are on by default with proxy/ratelimit's defaults.
	RateLimits rateLimitsConfig `yaml:"rate_limits"`

	// src is where the file came from: its name, where each key is
	// written, and the problems found decoding it. Nil for a configuration
	// made from flags.
	src *configSource
}

// policyConfig is the OPA policy engine (package policy).
type policyConfig struct {
	Dirs         []policyDirConfig `yaml:"dirs"`
	GroupsFile   string            `yaml:"groups_file"`
	TimeZone     string            `yaml:"time_zone"`     // IANA name; default UTC
	PollInterval *duration         `yaml:"poll_interval"` // default 2s; negative: only SIGHUP
	CacheSize    int               `yaml:"cache_size"`    // default 8192; negative: off
	EvalTimeout  *duration         `yaml:"eval_timeout"`  // default 5s; past it a decision denies
	// Route lets policies pick the backend (input.point "route"); routes
	// stay the fallback.
	Route bool `yaml:"route"`
}

type policyDirConfig struct {
	Path   string `yaml:"path"`
	Shadow bool   `yaml:"shadow"`
}

// rateLimitsConfig maps to ratelimit.Options; zero values take its
// defaults and "off" (or a negative number) turns a limit off.
type rateLimitsConfig struct {
	Enabled                 *bool                            `yaml:"enabled"` // default true
	ConnectionsPerIP        ratelimit.Rate                   `yaml:"connections_per_ip"`
	ConnectionsPerSubnet    ratelimit.Rate                   `yaml:"connections_per_subnet"`
	SubnetBitsV4            int                              `yaml:"subnet_bits_v4"`
	SubnetBitsV6            int                              `yaml:"subnet_bits_v6"`
	IPBitsV4                int                              `yaml:"ip_bits_v4"`
	IPBitsV6                int                              `yaml:"ip_bits_v6"`
	IPv4Translators         []string                         `yaml:"ipv4_translators"` // nil: 64:ff9b::/96; []: none
	MaxConnectionsPerIP     int                              `yaml:"concurrent_connections_per_ip"`
	MaxUnauthenticatedPerIP int                              `yaml:"unauthenticated_connections_per_ip"`
	MaxUnauthPerSubnet      int                              `yaml:"unauthenticated_connections_per_subnet"`
	MaxSessionsPerUser      int                              `yaml:"sessions_per_user"`
	LoginFailuresPerIP      int                              `yaml:"login_failures_per_ip"`
	LoginFailuresPerUser    int                              `yaml:"login_failures_per_user"`
	LoginFailuresPerUserIP  int                              `yaml:"login_failures_per_user_ip"`
	LoginFailureWindow      *duration                        `yaml:"login_failure_window"`
	LockoutBase             *duration                        `yaml:"lockout_base"`
	LockoutMax              *duration                        `yaml:"lockout_max"`
	LoginFailureDelay       *duration                        `yaml:"login_failure_delay"`
	UserLockoutAllIPs       bool                             `yaml:"user_lockout_all_ips"`
	LockoutReason           string                           `yaml:"lockout_reason"`
	CommandsPerSession      ratelimit.Rate                   `yaml:"commands_per_session"`
	CommandsPerUser         ratelimit.Rate                   `yaml:"commands_per_user"`
	CommandMaxDelay         *duration                        `yaml:"command_max_delay"`
	FetchBytesPerUser       ratelimit.Rate                   `yaml:"fetch_bytes_per_user"`
	FetchMessagesPerUser    ratelimit.Rate                   `yaml:"fetch_messages_per_user"`
	FetchAction             ratelimit.Action                 `yaml:"fetch_action"`
	FetchMaxDelay           *duration                        `yaml:"fetch_max_delay"`
	AppendBytesPerUser      ratelimit.Rate                   `yaml:"append_bytes_per_user"`
	MaxTrackedKeys          int                              `yaml:"max_tracked_keys"`
	GroupLimits             map[string]ratelimit.GroupLimits `yaml:"group_limits"`
	Redis                   *redisConfig                     `yaml:"redis"`
}

// redisConfig shares limits and lockouts across a fleet.
type redisConfig struct {
	Address string `yaml:"address"`
	// Addresses: more Sentinels (with SentinelMaster) or Cluster nodes.
	Addresses            []string  `yaml:"addresses"`
	SentinelMaster       string    `yaml:"sentinel_master"`
	SentinelPasswordFile string    `yaml:"sentinel_password_file"`
	Cluster              bool      `yaml:"cluster"`
	Username             string    `yaml:"username"`
	PasswordFile         string    `yaml:"password_file"`
	DB                   int       `yaml:"db"`
	Prefix               string    `yaml:"prefix"`
	FailureMode          string    `yaml:"failure_mode"` // open (default) | closed
	Timeout              *duration `yaml:"timeout"`
	// LockoutSyncInterval: how often the fleet's lockouts are mirrored.
	LockoutSyncInterval *duration `yaml:"lockout_sync_interval"`
	// LoginPlaceTTL: how long a login in flight of a proxy that died
	// still holds its place in the fleet's failure records.
	LoginPlaceTTL *duration `yaml:"login_place_ttl"`
	// TLS reaches every address (servers, Sentinels, Cluster nodes) over
	// TLS, verified against ca_file (or the system roots) for each
	// address's host unless server_name says; the keys of a backend's tls.
	TLS *backendTLSConfig `yaml:"tls"`
}

// adminConfig is the operator listener: metrics, probes, sessions, the
// console (docs/admin-api.md).
type adminConfig struct {
	// Address defaults to 127.0.0.1:9143; "" turns the listener off.
	Address *string `yaml:"address"`
	// TokenFile holds a write-scope token named "admin"; Tokens adds named
	// tokens of read or write scope. Without any, only loopback may listen.
	TokenFile string             `yaml:"token_file"`
	Tokens    []adminTokenConfig `yaml:"tokens"`
	TLS       *certConfig        `yaml:"tls"`
	Pprof     bool               `yaml:"pprof"`
	// The HTTP server's timeouts; defaults 10s, 30s, 2m, 2m.
	ReadHeaderTimeout *duration `yaml:"read_header_timeout"`
	ReadTimeout       *duration `yaml:"read_timeout"`
	WriteTimeout      *duration `yaml:"write_timeout"`
	IdleTimeout       *duration `yaml:"idle_timeout"`
	// MaxConnections bounds the connections open at once (64); more are
	// closed at accept.
	MaxConnections *int `yaml:"max_connections"`
	// MaxConnectionsPerIP bounds those of one client address (16); a
	// full pool closes an idle keep-alive connection first.
	MaxConnectionsPerIP *int `yaml:"max_connections_per_ip"`
	// MaxBodyBytes bounds a request's body (64 KiB), MaxHeaderBytes its
	// header (64 KiB).
	MaxBodyBytes   *int `yaml:"max_body_bytes"`
	MaxHeaderBytes *int `yaml:"max_header_bytes"`
	// TokenFailuresPerIP wrong tokens (10) of one address in
	// TokenFailureWindow (5m) refuse its tokens until the window ends.
	TokenFailuresPerIP *int      `yaml:"token_failures_per_ip"`
	TokenFailureWindow *duration `yaml:"token_failure_window"`
	// TokenFailureHosts bounds the hosts whose wrong tokens are counted
	// (4096); past it, those not remembered share one count.
	TokenFailureHosts *int `yaml:"token_failure_hosts"`
	// The console's sign-ins: how long one lasts (12h) and how many may
	// be open (256; the oldest of the same or a lower scope goes).
	ConsoleSessionTTL  *duration `yaml:"console_session_ttl"`
	ConsoleMaxSessions *int      `yaml:"console_max_sessions"`
	// PageSize bounds the rows of a list (100): GET /sessions and
	// /ratelimit/lockouts, the console's Sessions and Lockouts pages.
	PageSize *int `yaml:"page_size"`
	// AuditSearches bounds the audit searches running at once (2); each
	// reads the trail's files.
	AuditSearches *int `yaml:"audit_searches"`
	// RecentEvents is how many denials and limit hits /recent and the
	// console keep (200).
	RecentEvents *int `yaml:"recent_events"`
}

type logConfig struct {
	Level  string `yaml:"level"`  // debug | info | warn | error; default info
	Format string `yaml:"format"` // json | console; default json
	// Sessions: auto | on | off; default auto, on without an audit trail
	// or with one that drops records (audit.on_full: drop).
	Sessions string `yaml:"sessions"`
}

type listenerConfig struct {
	// Name labels the listener in logs and audit; default "imaps" for mode
	// tls and "imap" for starttls.
	Name    string `yaml:"name"`
	Address string `yaml:"address"`
	Mode    string `yaml:"mode"` // tls | starttls
	// PlaintextAuthFrom lists CIDRs (or single addresses) allowed to log in
	// before STARTTLS. Empty means nobody (RFC 9051 §6.2.3).
	PlaintextAuthFrom []string `yaml:"plaintext_auth_from"`
	// ProxyProtocolFrom lists the load balancers (CIDRs or addresses)
	// whose connections start with a PROXY protocol header.
	ProxyProtocolFrom []string `yaml:"proxy_protocol_from"`
	// ClientAuth asks for client certificates: none (default) | request |
	// require; ClientCAFile holds the CAs they must chain to.
	ClientAuth   string `yaml:"client_auth"`
	ClientCAFile string `yaml:"client_ca_file"`
	// CertLogin offers AUTHENTICATE EXTERNAL to clients with a verified
	// certificate; their backend must use login: master.
	CertLogin bool `yaml:"cert_login"`
}

type certConfig struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

type tlsConfig struct {
	Certificates   []certConfig `yaml:"certificates"`
	MinVersion     string       `yaml:"min_version"` // "1.2" | "1.3"; default 1.2
	StrictSNI      bool         `yaml:"strict_sni"`
	ReloadInterval *duration    `yaml:"reload_interval"` // default 1m
	// TicketKeyRotation replaces session ticket keys; default 24h,
	// negative turns session tickets off.
	TicketKeyRotation *duration `yaml:"ticket_key_rotation"`
	// ExpiryWarning: an "expiring" event below this validity; default 14
	// days (or a fifth of the lifetime).
	ExpiryWarning *duration   `yaml:"expiry_warning"`
	ACME          *acmeConfig `yaml:"acme"`
}

// acmeConfig obtains and renews certificates (tlsterm/acme).
type acmeConfig struct {
	Names            []string        `yaml:"names"`
	CA               string          `yaml:"ca"` // directory URL; default Let's Encrypt
	Email            string          `yaml:"email"`
	TrustedRoots     string          `yaml:"trusted_roots"` // PEM file: the CA's roots (private CA)
	Storage          string          `yaml:"storage"`       // required
	HTTPPort         int             `yaml:"http_port"`     // 0: 80
	TLSALPNPort      int             `yaml:"tls_alpn_port"` // 0: 443
	ListenHost       string          `yaml:"listen_host"`
	DisableHTTP01    bool            `yaml:"disable_http01"`
	DisableTLSALPN01 bool            `yaml:"disable_tls_alpn01"`
	KeyType          string          `yaml:"key_type"` // p256 (default) | p384 | rsa2048 | rsa4096
	OnDemand         *onDemandConfig `yaml:"on_demand"`
}

type onDemandConfig struct {
	Allow      []string  `yaml:"allow"`
	RateLimit  int       `yaml:"rate_limit"`  // default 5
	RateWindow *duration `yaml:"rate_window"` // default 1m
}

type backendTLSConfig struct {
	CAFile     string     `yaml:"ca_file"`
	ServerName string     `yaml:"server_name"`
	Insecure   bool       `yaml:"insecure"`
	MinVersion string     `yaml:"min_version"` // "1.0" | "1.1" | "1.2" | "1.3"; default 1.2
	ClientCert certConfig `yaml:"client_cert"`
}

type backendConfig struct {
	// Address is the one server; Servers lists several (one or the other).
	Address  string            `yaml:"address"`
	Servers  []serverConfig    `yaml:"servers"`
	MaxLoad  float64           `yaml:"max_load"` // bounded load factor; 0 off
	Health   healthConfig      `yaml:"health"`
	Security string            `yaml:"security"` // plain | starttls | tls; required
	TLS      *backendTLSConfig `yaml:"tls"`
	Login    string            `yaml:"login"` // auto | login | plain | master; default auto
	// MasterUser and MasterPasswordFile are for login: master. The password
	// is never written in the config itself.
	MasterUser         string `yaml:"master_user"`
	MasterPasswordFile string `yaml:"master_password_file"`
	// MasterSeparator logs in with LOGIN "user<sep>master" (Dovecot's
	// auth_master_user_separator) instead of PLAIN with an authzid.
	MasterSeparator string `yaml:"master_separator"`
	// Namespaces declares namespaces the backend serves beyond (or
	// otherwise than) its NAMESPACE answer (proxy.Backend.Namespaces).
	Namespaces     []namespaceConfig `yaml:"namespaces"`
	ConnectTimeout *duration         `yaml:"connect_timeout"` // default 10s
	LoginTimeout   *duration         `yaml:"login_timeout"`   // default 30s
	SendID         bool              `yaml:"send_id"`
	SendProxy      bool              `yaml:"send_proxy"`
}

// namespaceConfig is one declared namespace of a backend.
type namespaceConfig struct {
	Prefix    string `yaml:"prefix"`    // as the client writes it, decoded (UTF-8)
	Delimiter string `yaml:"delimiter"` // one character
	Kind      string `yaml:"kind"`      // personal | other | shared | alias
}

// serverConfig is one server of a backend's pool.
type serverConfig struct {
	Name    string `yaml:"name"` // default: the address
	Address string `yaml:"address"`
	Weight  *int   `yaml:"weight"` // default 1
}

// healthConfig is a backend's active health checks (proxy/pool).
type healthConfig struct {
	Enabled      *bool     `yaml:"enabled"`       // default true
	Interval     *duration `yaml:"interval"`      // default 5s
	FastInterval *duration `yaml:"fast_interval"` // default 1s
	Timeout      *duration `yaml:"timeout"`       // default 5s
	Rise         *int      `yaml:"rise"`          // default 2
	Fall         *int      `yaml:"fall"`          // default 3
	StartTLS     *bool     `yaml:"starttls"`      // default true
	Capability   *bool     `yaml:"capability"`    // default true
}

type routesConfig struct {
	Default string            `yaml:"default"`
	Users   map[string]string `yaml:"users"`   // user → backend name
	Domains map[string]string `yaml:"domains"` // domain → backend name
	// Lookup asks an nginx auth_http-style service first.
	Lookup *lookupConfig `yaml:"lookup"`
}

// lookupConfig is the routing lookup service (proxy/pool.Lookup).
type lookupConfig struct {
	URL          string    `yaml:"url"`
	Timeout      *duration `yaml:"timeout"`    // default 5s
	CacheTTL     *duration `yaml:"cache_ttl"`  // default 30s; negative: off
	CacheSize    *int      `yaml:"cache_size"` // default 10000
	MaxWait      *duration `yaml:"max_wait"`   // cap of Auth-Wait; default 10s
	SendPassword bool      `yaml:"send_password"`
	// CAFile: the roots of an https service's private CA.
	CAFile  string            `yaml:"ca_file"`
	Headers map[string]string `yaml:"headers"`
}

type limitsConfig struct {
	MaxLine            *byteSize `yaml:"max_line"`
	MaxBufferedLiteral *byteSize `yaml:"max_buffered_literal"`
	MaxAppendLiteral   *byteSize `yaml:"max_append_literal"`
	// MaxCommandBytes and MaxPreAuthCommandBytes bound what the proxy
	// holds of one command after and before login.
	MaxCommandBytes        *byteSize `yaml:"max_command_bytes"`
	MaxPreAuthCommandBytes *byteSize `yaml:"max_preauth_command_bytes"`
	MaxPreAuthCommands     *int      `yaml:"max_preauth_commands"`
	PreAuthIdle            *duration `yaml:"preauth_idle"`
	AuthIdle               *duration `yaml:"auth_idle"`
	IdleTimeout            *duration `yaml:"idle_timeout"`
	WriteTimeout           *duration `yaml:"write_timeout"`
	MaxAuthFailures        *int      `yaml:"max_auth_failures"`
	// MaxCredentialBytes bounds the user name, authorization identity
	// and password a login may give (the proxy replays them).
	MaxCredentialBytes *byteSize `yaml:"max_credential_bytes"`
	// MaxCompressSessions bounds sessions with COMPRESS=DEFLATE active
	// (about 1.2 MiB each).
	MaxCompressSessions *int `yaml:"max_compress_sessions"`
	// MaxPreAuthConnections bounds connections awaiting login,
	// server-wide; the default depends on the open-file limit.
	MaxPreAuthConnections *int `yaml:"max_preauth_connections"`
	// MaxInflight bounds one session's commands in flight at the backend.
	MaxInflight *int `yaml:"max_inflight"`
	// MaxInflightBytes bounds what the records of those commands hold.
	MaxInflightBytes *byteSize `yaml:"max_inflight_bytes"`
	// BackendTimeout: how long a backend may stay silent while it owes
	// an answer.
	BackendTimeout *duration `yaml:"backend_timeout"`
	// MaxResponseLine bounds one response line of a backend.
	MaxResponseLine *byteSize `yaml:"max_response_line"`
	// ParkAfter: how long each side of an idle session keeps its
	// goroutine; 0 keeps them always.
	ParkAfter *duration `yaml:"park_after"`
	// MaxAuditUIDs and MaxAuditSharedWith bound what one command's audit
	// record lists: the UIDs of the messages it read, the other FETCHes
	// its content may have answered.
	MaxAuditUIDs       *int `yaml:"max_audit_uids"`
	MaxAuditSharedWith *int `yaml:"max_audit_shared_with"`
	// MaxAuditMailboxNames bounds the distinct mailboxes one command
	// names (CATENATE sources, NOTIFY mailboxes): its record names each,
	// and a command naming more is refused. Unset: the trail's
	// audit.MaxMailboxNames (64, lowered to what audit.max_record_bytes
	// holds); set, a value the record cannot hold is refused.
	MaxAuditMailboxNames *int `yaml:"max_audit_mailbox_names"`
	// MaxAuditNameBytes bounds what the names one command's record holds
	// whole (user, mailboxes, sources, ...) total, encoded: a command
	// naming more is refused. Unset: the trail's audit.MaxNameBytes
	// (what audit.max_record_bytes holds beside the rest of a record);
	// set, a value the record cannot hold is refused.
	MaxAuditNameBytes *int `yaml:"max_audit_name_bytes"`
	// MaxTag, MaxListDepth, MaxArguments and MaxSearchDepth bound one
	// command's shape as the proxy parses it: past one, BAD.
	MaxTag         *int `yaml:"max_tag"`
	MaxListDepth   *int `yaml:"max_list_depth"`
	MaxArguments   *int `yaml:"max_arguments"`
	MaxSearchDepth *int `yaml:"max_search_depth"`
}

type authConfig struct {
	AllowAuthzid bool `yaml:"allow_authzid"`
	// UserSeparators: what a backend reads in a login name as a master or
	// authorization split; names containing one are refused. Default
	// ["*"]; every backend's master_separator is added.
	UserSeparators *[]string `yaml:"user_separators"`
	// ShowBackendID relays the backends' ID replies (versions, OS)
	// instead of the proxy's own.
	ShowBackendID bool `yaml:"show_backend_id"`
	// Authenticators check credentials in the proxy, tried in order
	// (authnconfig.go); none means the backend checks them.
	Authenticators []authenticatorConfig `yaml:"authenticators"`
}

// Defaults owned by the command rather than by a package.
const (
	defaultDrainTimeout   = 30 * time.Second
	defaultLameDuck       = 5 * time.Second
	defaultReloadInterval = time.Minute
	defaultAdminAddress   = "127.0.0.1:9143"
)

// duration is a time.Duration written the Go way ("30s", "1m30s"). A bare
// number is refused: "30" could mean seconds or minutes.
type duration time.Duration

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeError(n, "want a duration such as 30s or 5m")
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		if _, nerr := strconv.ParseFloat(n.Value, 64); nerr == nil {
			return typeError(n, "invalid duration %q: add a unit, as in %ss", n.Value, n.Value)
		}
		return typeError(n, "invalid duration %q: want a number with a unit (ms, s, m, h), as in 30s", n.Value)
	}
	*d = duration(v)
	return nil
}

// MarshalYAML writes the Go form back ("30s"), for config dump.
func (d duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

func (d *duration) get(def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return time.Duration(*d)
}

// byteSize is a size in bytes: a plain integer or one with a binary suffix
// (KiB, MiB, GiB).
type byteSize int64

var sizeSuffixes = []struct {
	suffix string
	mult   int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}}

func (b *byteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeError(n, "want a size in bytes, such as 65536 or 64KiB")
	}
	s := strings.TrimSpace(n.Value)
	mult := int64(1)
	for _, sf := range sizeSuffixes {
		if rest, ok := strings.CutSuffix(s, sf.suffix); ok {
			s, mult = strings.TrimSpace(rest), sf.mult
			break
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v > (1<<62)/mult {
		return typeError(n, "invalid size %q: want bytes, or a number with KiB, MiB or GiB", n.Value)
	}
	*b = byteSize(v * mult)
	return nil
}

// MarshalYAML writes the largest exact binary suffix ("64KiB").
func (b byteSize) MarshalYAML() (any, error) {
	for i := len(sizeSuffixes) - 1; i >= 0; i-- {
		if sf := sizeSuffixes[i]; b != 0 && int64(b)%sf.mult == 0 {
			return strconv.FormatInt(int64(b)/sf.mult, 10) + sf.suffix, nil
		}
	}
	return int64(b), nil
}

// typeError is the error of an UnmarshalYAML; the decoder adds the line and
// the key path.
func typeError(_ *yaml.Node, format string, args ...any) error {
	return fmt.Errorf(format, args...)
}

// problem is one thing wrong with a configuration.
type problem struct {
	Key  string // key path, such as "backends.main.tls.min_version"; "" for the whole file
	Line int    // 0 when not known
	Msg  string
}

func (p problem) String() string {
	s := p.Msg
	if p.Key != "" {
		s = p.Key + ": " + s
	}
	if p.Line > 0 {
		s = fmt.Sprintf("line %d: %s", p.Line, s)
	}
	return s
}

// configError lists everything wrong with a configuration, each problem
// with its file, line and key path, in the order of the file.
type configError struct {
	File     string
	Problems []problem
}

func (e *configError) Error() string {
	line := func(p problem) string {
		switch {
		case e.File != "" && p.Line > 0:
			return fmt.Sprintf("%s:%d: %s", e.File, p.Line, problem{Key: p.Key, Msg: p.Msg})
		case e.File != "":
			return e.File + ": " + p.String()
		}
		return p.String()
	}
	if len(e.Problems) == 1 {
		return line(e.Problems[0])
	}
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = line(p)
	}
	prefix := ""
	if e.File != "" {
		prefix = e.File + ": "
	}
	return prefix + fmt.Sprintf("%d problems:\n  ", len(e.Problems)) + strings.Join(lines, "\n  ")
}

// problems collects configuration errors so that one run reports them all.
// By convention each message starts with the key path it is about and ": "
// ("listeners[0].mode: unknown mode"), which is how it gets its line.
type problems []problem

// keyPath matches the key path that starts a problem's message.
var keyPath = regexp.MustCompile(`^[a-z][a-z0-9_]*(?:\[\d+\]|\.[^\s:]+)*$`)

func (p *problems) add(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	if k, msg, ok := strings.Cut(s, ": "); ok && keyPath.MatchString(k) {
		*p = append(*p, problem{Key: k, Msg: msg})
		return
	}
	*p = append(*p, problem{Msg: s})
}

// err returns the problems as a *configError, or nil. With src (the file
// the configuration came from), its decoding problems come first in line
// order, build's problems get the line of their key, and a problem under a
// key that failed to decode is dropped: it follows from the first.
func (p problems) err(src *configSource) error {
	var all problems
	file := ""
	if src != nil {
		file = src.file
		all = append(all, src.problems...)
	}
	for _, q := range p {
		if src != nil {
			if slices.ContainsFunc(src.problems, func(d problem) bool { return d.Key != "" && under(q.Key, d.Key) }) {
				continue
			}
			if q.Line == 0 {
				q.Line = src.line(q.Key)
			}
		}
		all = append(all, q)
	}
	if len(all) == 0 {
		return nil
	}
	slices.SortStableFunc(all, func(a, b problem) int { return a.Line - b.Line })
	return &configError{File: file, Problems: all}
}

// loadConfigFile reads and parses path. Problems with values are kept in
// the result and reported by build with everything else; the error is for
// a file that cannot be read or is not YAML.
func loadConfigFile(path string) (*fileConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := parseConfig(data)
	if err != nil {
		var ce *configError
		if errors.As(err, &ce) {
			ce.File = path
			return nil, ce
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg.src.file = path
	return cfg, nil
}

// yamlLine finds the line in yaml.v3's syntax errors ("yaml: line 3: ...").
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseConfig decodes exactly one YAML document. It fails only when the
// text is not one YAML document; every other problem (unknown keys, wrong
// types, bad values) is kept in cfg.src for build to report.
func parseConfig(data []byte) (*fileConfig, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &configError{Problems: []problem{{Msg: "empty configuration: no YAML document"}}}
		}
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			l, _ := strconv.Atoi(m[1])
			return nil, &configError{Problems: []problem{{Line: l, Msg: "YAML syntax: " + m[2]}}}
		}
		return nil, &configError{Problems: []problem{{Msg: err.Error()}}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, &configError{Problems: []problem{{Msg: err.Error()}}}
		}
		return nil, &configError{Problems: []problem{{Line: extra.Line, Msg: "a second YAML document: the configuration must be one document"}}}
	}
	var cfg fileConfig
	cfg.src = &configSource{lines: map[string]int{}}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	cfg.src.lines[""] = root.Line
	d := nodeDecoder{src: cfg.src}
	d.decode(root, reflect.ValueOf(&cfg).Elem(), "")
	return &cfg, nil
}
