package main

// This file is the only place that knows the configuration file format
// (DESIGN §2): the YAML schema, its parsing and the checks that need no file
// system. build.go turns a checked config into each package's Options.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
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
	Hostname     string           `yaml:"hostname"`
	Log          logConfig        `yaml:"log"`
	DrainTimeout *duration        `yaml:"drain_timeout"`
	Listeners    []listenerConfig `yaml:"listeners"`
	TLS          tlsConfig        `yaml:"tls"`
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
}

// policyConfig is the OPA policy engine (package policy).
type policyConfig struct {
	Dirs         []policyDirConfig `yaml:"dirs"`
	GroupsFile   string            `yaml:"groups_file"`
	TimeZone     string            `yaml:"time_zone"`     // IANA name; default UTC
	PollInterval *duration         `yaml:"poll_interval"` // default 2s; negative: only SIGHUP
	CacheSize    int               `yaml:"cache_size"`    // default 8192; negative: off
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
	MaxConnectionsPerIP     int                              `yaml:"concurrent_connections_per_ip"`
	MaxUnauthenticatedPerIP int                              `yaml:"unauthenticated_connections_per_ip"`
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
	Address      string    `yaml:"address"`
	Username     string    `yaml:"username"`
	PasswordFile string    `yaml:"password_file"`
	DB           int       `yaml:"db"`
	Prefix       string    `yaml:"prefix"`
	FailureMode  string    `yaml:"failure_mode"` // open (default) | closed
	Timeout      *duration `yaml:"timeout"`
}

// adminConfig is the operator listener: metrics, probes, sessions.
type adminConfig struct {
	// Address defaults to 127.0.0.1:9143; "" turns the listener off.
	Address *string `yaml:"address"`
	// TokenFile holds the bearer token the endpoints (but the probes)
	// require; mandatory when Address is not loopback.
	TokenFile string      `yaml:"token_file"`
	TLS       *certConfig `yaml:"tls"`
	Pprof     bool        `yaml:"pprof"`
}

type logConfig struct {
	Level  string `yaml:"level"`  // debug | info | warn | error; default info
	Format string `yaml:"format"` // json | console; default json
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
	Address  string            `yaml:"address"`
	Security string            `yaml:"security"` // plain | starttls | tls; required
	TLS      *backendTLSConfig `yaml:"tls"`
	Login    string            `yaml:"login"` // auto | login | plain | master; default auto
	// MasterUser and MasterPasswordFile are for login: master. The password
	// is never written in the config itself.
	MasterUser         string    `yaml:"master_user"`
	MasterPasswordFile string    `yaml:"master_password_file"`
	ConnectTimeout     *duration `yaml:"connect_timeout"` // default 10s
	LoginTimeout       *duration `yaml:"login_timeout"`   // default 30s
	SendID             bool      `yaml:"send_id"`
	SendProxy          bool      `yaml:"send_proxy"`
}

type routesConfig struct {
	Default string            `yaml:"default"`
	Users   map[string]string `yaml:"users"`   // user → backend name
	Domains map[string]string `yaml:"domains"` // domain → backend name
}

type limitsConfig struct {
	MaxLine            *byteSize `yaml:"max_line"`
	MaxBufferedLiteral *byteSize `yaml:"max_buffered_literal"`
	MaxAppendLiteral   *byteSize `yaml:"max_append_literal"`
	MaxPreAuthCommands *int      `yaml:"max_preauth_commands"`
	PreAuthIdle        *duration `yaml:"preauth_idle"`
	AuthIdle           *duration `yaml:"auth_idle"`
	IdleTimeout        *duration `yaml:"idle_timeout"`
	WriteTimeout       *duration `yaml:"write_timeout"`
	MaxAuthFailures    *int      `yaml:"max_auth_failures"`
	// MaxCompressSessions bounds sessions with COMPRESS=DEFLATE active
	// (about 1.2 MiB each).
	MaxCompressSessions *int `yaml:"max_compress_sessions"`
}

type authConfig struct {
	AllowAuthzid bool `yaml:"allow_authzid"`
	// ShowBackendID relays the backends' ID replies (versions, OS)
	// instead of the proxy's own.
	ShowBackendID bool `yaml:"show_backend_id"`
}

// Defaults owned by the command rather than by a package.
const (
	defaultDrainTimeout   = 30 * time.Second
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

func typeError(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, fmt.Sprintf(format, args...))}}
}

// configError lists everything wrong with a configuration. Its lines are
// printed one by one by validate.
type configError struct {
	File     string
	Problems []string
}

func (e *configError) Error() string {
	prefix := ""
	if e.File != "" {
		prefix = e.File + ": "
	}
	if len(e.Problems) == 1 {
		return prefix + e.Problems[0]
	}
	return prefix + fmt.Sprintf("%d problems:\n  ", len(e.Problems)) + strings.Join(e.Problems, "\n  ")
}

// problems collects configuration errors so that one run reports them all.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

func (p problems) err(file string) error {
	if len(p) == 0 {
		return nil
	}
	return &configError{File: file, Problems: p}
}

// loadConfigFile reads and parses path; it does not check the values.
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
	return cfg, nil
}

// unknownField rewrites yaml.v3's message for a key that no field takes,
// which names a Go type the reader of the config never saw.
var unknownField = regexp.MustCompile(`^(line \d+): field (.+) not found in type \S+$`)

// parseConfig decodes exactly one YAML document, refusing unknown keys.
func parseConfig(data []byte) (*fileConfig, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var cfg fileConfig
	if err := dec.Decode(&cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &configError{Problems: []string{"empty configuration: no YAML document"}}
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			var p problems
			for _, m := range te.Errors {
				if sm := unknownField.FindStringSubmatch(m); sm != nil {
					m = fmt.Sprintf("%s: unknown key %q", sm[1], sm[2])
				}
				p.add("%s", m)
			}
			return nil, p.err("")
		}
		// Syntax errors carry "yaml: line N: ..." already.
		return nil, &configError{Problems: []string{err.Error()}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := extra.Line
		if err != nil {
			return nil, &configError{Problems: []string{err.Error()}}
		}
		return nil, &configError{Problems: []string{fmt.Sprintf("line %d: a second YAML document: the configuration must be one document", line)}}
	}
	return &cfg, nil
}
