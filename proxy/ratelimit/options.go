package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Rate is a budget of N events (or bytes) per Per, with bursts of up to
// Burst (default N) at once. It is enforced as GCRA (a token bucket kept as
// one timestamp): the budget refills continuously at N/Per, so "60/1m"
// allows 60 at once, then one a second.
//
// In Options a zero Rate takes the default and a negative N (Off) switches
// the limit off; in GroupLimits a zero Rate inherits from Options.
//
// Its text form, for configuration files, is "N/DURATION" with an optional
// " burst M": "60/1m", "50/1s burst 500", "10GiB/24h" (N may carry a byte
// suffix: KB MB GB TB, KiB MiB GiB TiB), or "off".
type Rate struct {
	N     int64
	Per   time.Duration
	Burst int64
}

// Off switches a limit off.
var Off = Rate{N: -1}

func (r Rate) off() bool  { return r.N < 0 }
func (r Rate) zero() bool { return r.N == 0 && r.Per == 0 && r.Burst == 0 }

func (r Rate) burst() int64 {
	if r.Burst > 0 {
		return r.Burst
	}
	return r.N
}

func (r Rate) String() string {
	switch {
	case r.off():
		return "off"
	case r.zero():
		return ""
	}
	s := strconv.FormatInt(r.N, 10) + "/" + shortDuration(r.Per)
	if r.Burst > 0 && r.Burst != r.N {
		s += " burst " + strconv.FormatInt(r.Burst, 10)
	}
	return s
}

// shortDuration drops time.Duration's zero units: "1m" rather than "1m0s".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// MarshalText implements encoding.TextMarshaler.
func (r Rate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (yaml.v3 uses it).
func (r *Rate) UnmarshalText(b []byte) error {
	v, err := ParseRate(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// ParseRate parses the text form of a Rate (see Rate).
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "off", "none", "unlimited":
		return Off, nil
	case "":
		return Rate{}, nil
	}
	var r Rate
	main, burst, hasBurst := strings.Cut(s, " burst ")
	n, per, ok := strings.Cut(strings.TrimSpace(main), "/")
	if !ok {
		return Rate{}, fmt.Errorf("ratelimit: rate %q: want N/DURATION", s)
	}
	var err error
	if r.N, err = parseCount(n); err != nil {
		return Rate{}, fmt.Errorf("ratelimit: rate %q: %w", s, err)
	}
	per = strings.TrimSpace(per)
	if per != "" && (per[0] < '0' || per[0] > '9') {
		per = "1" + per // "10/s" means "10/1s"
	}
	if r.Per, err = time.ParseDuration(per); err != nil {
		return Rate{}, fmt.Errorf("ratelimit: rate %q: %w", s, err)
	}
	if hasBurst {
		if r.Burst, err = parseCount(burst); err != nil {
			return Rate{}, fmt.Errorf("ratelimit: rate %q: burst: %w", s, err)
		}
	}
	if err := r.check(); err != nil {
		return Rate{}, fmt.Errorf("ratelimit: rate %q: %w", s, err)
	}
	return r, nil
}

var byteSuffixes = []struct {
	s string
	m int64
}{
	{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"TIB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

func parseCount(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	up := strings.ToUpper(s)
	for _, b := range byteSuffixes {
		if strings.HasSuffix(up, b.s) {
			mult, s = b.m, strings.TrimSpace(s[:len(s)-len(b.s)])
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, err
	}
	if n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("count %q out of range", s)
	}
	return n * mult, nil
}

func (r Rate) check() error {
	if r.off() || r.zero() {
		return nil
	}
	if r.N == 0 || r.Per <= 0 || r.Burst < 0 {
		return errors.New("the count and the period must be positive, the burst not negative")
	}
	return nil
}

// Action is what the fetch caps do once exceeded.
type Action string

const (
	// ActionDeny refuses further content FETCHes with NO [LIMIT] until the
	// budget has refilled enough.
	ActionDeny Action = "deny"
	// ActionDelay slows content FETCHes down to the budget's rate, waiting
	// at most FetchMaxDelay before each.
	ActionDelay Action = "delay"
	// ActionAlert only records the hit (an audit record) when the budget is
	// first exceeded.
	ActionAlert Action = "alert"
)

// UnmarshalText implements encoding.TextUnmarshaler.
func (a *Action) UnmarshalText(b []byte) error {
	switch v := Action(strings.ToLower(strings.TrimSpace(string(b)))); v {
	case ActionDeny, ActionDelay, ActionAlert, "":
		*a = v
		return nil
	}
	return fmt.Errorf("ratelimit: action %q: want deny, delay or alert", b)
}

// FailureMode is what happens while the shared store (Redis) is
// unreachable.
type FailureMode string

const (
	// FailOpen decides with the in-process store meanwhile: every instance
	// enforces its own limits and lockouts, none are shared.
	FailOpen FailureMode = "open"
	// FailClosed refuses what needs the shared store: logins (NO
	// [UNAVAILABLE]) and APPENDs. New connections and the commands of open
	// sessions go on under the in-process counters, so that an outage of
	// Redis does not cut off clients that are already logged in.
	FailClosed FailureMode = "closed"
)

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *FailureMode) UnmarshalText(b []byte) error {
	switch v := FailureMode(strings.ToLower(strings.TrimSpace(string(b)))); v {
	case FailOpen, FailClosed, "":
		*m = v
		return nil
	}
	return fmt.Errorf("ratelimit: failure mode %q: want open or closed", b)
}

// GroupLimits overrides the per-user limits for the members of a group
// (Options.Groups). A zero field inherits the Options value; Off (or a
// negative count) switches that limit off for the group.
//
// Limits counted before login (connections, failed logins) cannot be
// overridden per group: the user is not known, or not proven, then.
type GroupLimits struct {
	MaxSessionsPerUser   int    `yaml:"sessions_per_user"`
	CommandsPerSession   Rate   `yaml:"commands_per_session"`
	CommandsPerUser      Rate   `yaml:"commands_per_user"`
	FetchBytesPerUser    Rate   `yaml:"fetch_bytes_per_user"`
	FetchMessagesPerUser Rate   `yaml:"fetch_messages_per_user"`
	FetchAction          Action `yaml:"fetch_action"`
	AppendBytesPerUser   Rate   `yaml:"append_bytes_per_user"`
}

// Options configure a Limiter. Every zero field takes the default named in
// its comment; the yaml-style name is the suggested configuration key (the
// Limit names in LimitResult use the same words). Counts and Rates switch a
// limit off with a negative value (Off for a Rate).
type Options struct {
	// connections_per_ip: new connections from one client IP. Default 1200/1m (NAT-friendly: see DefaultConnectionsPerIP).
	ConnectionsPerIP Rate
	// connections_per_subnet: new connections from one subnet (SubnetBitsV4,
	// SubnetBitsV6). Default 6000/1m.
	ConnectionsPerSubnet Rate
	// subnet_bits_v4, subnet_bits_v6: the subnet of a client IP, a group
	// of hosts: at most IPBitsV4/IPBitsV6 bits. Default 24 and 48 (256
	// IPv4 hosts; up to 65536 /64s, an end site's largest usual
	// assignment, RFC 6177).
	SubnetBitsV4, SubnetBitsV6 int
	// ip_bits_v4, ip_bits_v6: the prefix every "ip" key counts (the
	// per-IP connection rates and counts, the ip and user_ip failed
	// logins): one host. Default 32 and 64: a host given an IPv6 /64 picks
	// any of its addresses (RFC 4291 §2.5.1, RFC 8981), so keyed by the
	// /128 each address would be a fresh counter.
	IPBitsV4, IPBitsV6 int
	// ipv4_translators: IPv6 prefixes of the operator's IPv4/IPv6
	// translators (NAT64, SIIT-DC: RFC 6146, RFC 7755), in an RFC 6052
	// §2.2 format (/32, /40, /48, /56, /64 or /96). A client address in
	// one is the IPv4 client the translator embedded, keyed as that IPv4
	// host. Default 64:ff9b::/96 (RFC 6052 §2.1); empty (not nil): none.
	// Only a translator the operator runs writes these addresses; other
	// embeddings (6to4, Teredo) are chosen by the client and stay IPv6.
	IPv4Translators []netip.Prefix

	// concurrent_connections_per_ip: open connections from one IP. Default 2000.
	MaxConnectionsPerIP int
	// unauthenticated_connections_per_ip: open connections from one IP that
	// have not logged in yet. Default 100.
	MaxUnauthenticatedPerIP int
	// unauthenticated_connections_per_subnet: open connections from one
	// subnet (SubnetBitsV4, SubnetBitsV6) that have not logged in yet, so
	// that the hosts of one subnet, each under its own cap, cannot hold
	// every connection the server lets wait for a login
	// (proxy.Limits.MaxPreAuthConnections). Default
	// DefaultMaxUnauthenticatedPerSubnet (cmd/imapwarden: a quarter of
	// max_preauth_connections when that is less).
	MaxUnauthenticatedPerSubnet int
	// sessions_per_user: logged-in sessions of one user. Default 30.
	MaxSessionsPerUser int

	// login_failures_per_ip, login_failures_per_user,
	// login_failures_per_user_ip: failed logins after which the key is
	// locked out. Defaults 100, 10 and 5.
	LoginFailuresPerIP, LoginFailuresPerUser, LoginFailuresPerUserIP int
	// login_failure_window: failures are forgotten this long after the last
	// one (or after the end of a lockout, if later). Default 1h.
	LoginFailureWindow time.Duration
	// lockout_base, lockout_max: the first lockout lasts LockoutBase, each
	// further failure doubles it, up to LockoutMax. Defaults 1s and 15m.
	LockoutBase, LockoutMax time.Duration
	// login_failure_delay: how long a failed login, or one refused by a
	// lockout, waits before its answer, whether the user exists or not.
	// Default 2s; negative: no delay.
	LoginFailureDelay time.Duration
	// user_lockout_all_ips: when false (the default), a user locked out by
	// failures stays reachable from IPs that have not failed for that user,
	// so an attacker cannot lock a victim out from everywhere. When true the
	// lockout applies from every IP.
	UserLockoutAllIPs bool
	// lockout_reason: the text after [AUTHENTICATIONFAILED] of a login
	// refused by a lockout. Default "Authentication failed", the text of an
	// ordinary failure, so an attacker cannot tell a lockout apart.
	LockoutReason string

	// commands_per_session: commands of one session. Default 50/1s burst 500.
	CommandsPerSession Rate
	// commands_per_user: commands of all the sessions of one user on this
	// instance (never shared through Redis: a round trip per command would
	// cost more than the command). Default 200/1s burst 2000.
	CommandsPerUser Rate
	// command_max_delay: a command over its rate waits up to this long for
	// the bucket to refill; beyond, it is refused with NO [LIMIT].
	// Default 1s; negative: refuse at once.
	CommandMaxDelay time.Duration

	// fetch_bytes_per_user: message content returned by FETCH to one user
	// (the exfiltration cap). Default 10GiB/24h.
	FetchBytesPerUser Rate
	// fetch_messages_per_user: FETCH responses that carried content.
	// Default 200000/24h.
	FetchMessagesPerUser Rate
	// fetch_action: deny, delay or alert. Default deny.
	FetchAction Action
	// fetch_max_delay: the longest wait before one content FETCH with
	// ActionDelay. Default 10s; a wait shorter than the time the budget
	// needs to refill repeats at each FETCH, slowing the export to the
	// budget's rate.
	FetchMaxDelay time.Duration
	// append_bytes_per_user: APPENDed message bytes of one user.
	// Default 2GiB/24h.
	AppendBytesPerUser Rate

	// Groups returns the groups of a logged-in user, in priority order: for
	// each limit, the first group with an override for it wins. It is
	// called once per session (not per command), with the user name
	// folded (proxy.FoldUser, as the limiter's keys), and may be nil; the
	// Limiter does not modify what it returns. The
	// groups an authenticator found (SessionInfo.Identity.Groups, from a
	// directory) come after these.
	Groups func(user string) []string
	// group_limits: overrides per group name.
	GroupLimits map[string]GroupLimits

	// max_tracked_keys: keys (an IP's connection rate, a user's failures,
	// ...) the in-process store keeps at most; beyond, the entries closest
	// to expiry are dropped, so a flood of distinct IPs or user names cannot
	// grow memory without bound. Concurrency counters, which exist only for
	// open connections, are not counted. Default 262144.
	MaxTrackedKeys int

	// Redis, when set, holds the counters and lockouts that several
	// instances share (NewRedisClient makes one with suitable timeouts).
	// Multi-key scripts use keys of one hash slot (the "{rl}" tag in
	// RedisPrefix), so a Redis Cluster works, as one shard.
	Redis redis.UniversalClient
	// redis_prefix: key prefix. Default "imapwarden:{rl}:".
	RedisPrefix string
	// redis_failure_mode: open or closed (see FailureMode). Default open.
	RedisFailureMode FailureMode
	// redis_timeout: bounds each call. Default 250ms.
	RedisTimeout time.Duration
	// redis_probe_interval: while Redis is down, how often it is pinged;
	// calls skip it until a ping succeeds. Default 1s.
	RedisProbeInterval time.Duration
	// lockout_sync_interval: how often each instance copies Redis's
	// lockouts, to keep enforcing them while Redis is down (default
	// DefaultLockoutSyncInterval). Login checks and failures refresh the
	// copy of the records they touch at once.
	LockoutSyncInterval time.Duration
	// redis_login_place_ttl: a login in flight holds a place in Redis
	// until its result; one of a proxy that died first lapses after this
	// long. Longer than any login takes (the authenticator's and the
	// backend's timeouts). Default 2m.
	RedisLoginPlaceTTL time.Duration
	// OnStoreError is called for each failed Redis call (count it: a
	// metric). It must not block.
	OnStoreError func(err error)
	// OnStoreState is called when the shared store goes down (with the
	// error) or comes back (nil): audit it and set a gauge. It must not
	// block.
	OnStoreState func(up bool, err error)
	// OnLoginWait is called once for each login that has to wait for a
	// place among the logins in flight (count it: a metric). It must not
	// block.
	OnLoginWait func()

	// Now is the clock; default time.Now. Tests inject their own.
	Now func() time.Time
	// Logger; default none.
	Logger *zap.Logger
}

// Defaults, as documented on Options.
var (
	// The per-address defaults admit an office of about 500 people behind
	// one NAT address at 9 a.m.: each mail client opens 2 to 5 connections
	// (one per folder it watches with IDLE), so 1200 connections in a
	// minute and 2000 at once, with a few mistyped passwords. Guessing is
	// stopped per user and per user and address (LoginFailuresPerUser,
	// LoginFailuresPerUserIP), which a NAT does not share; the per-address
	// limits only stop floods, and a lockout per address locks out every
	// user behind it. A TLS handshake costs about 1 ms of CPU: 20 a second
	// from one address is 2% of a core.
	DefaultConnectionsPerIP     = Rate{N: 1200, Per: time.Minute}
	DefaultConnectionsPerSubnet = Rate{N: 6000, Per: time.Minute}
	DefaultCommandsPerSession   = Rate{N: 50, Per: time.Second, Burst: 500}
	DefaultCommandsPerUser      = Rate{N: 200, Per: time.Second, Burst: 2000}
	DefaultFetchBytesPerUser    = Rate{N: 10 << 30, Per: 24 * time.Hour}
	DefaultFetchMessagesPerUser = Rate{N: 200000, Per: 24 * time.Hour}
	DefaultAppendBytesPerUser   = Rate{N: 2 << 30, Per: 24 * time.Hour}
)

const (
	DefaultSubnetBitsV4            = 24
	DefaultSubnetBitsV6            = 48
	DefaultIPBitsV4                = 32
	DefaultIPBitsV6                = 64
	DefaultMaxConnectionsPerIP     = 2000
	DefaultMaxUnauthenticatedPerIP = 100
	DefaultMaxSessionsPerUser      = 30
	DefaultLoginFailuresPerIP      = 100
	DefaultLoginFailuresPerUser    = 10
	DefaultLoginFailuresPerUserIP  = 5
	DefaultLoginFailureWindow      = time.Hour
	DefaultLockoutBase             = time.Second
	DefaultLockoutMax              = 15 * time.Minute
	DefaultLoginFailureDelay       = 2 * time.Second
	DefaultLockoutReason           = "Authentication failed"
	DefaultCommandMaxDelay         = time.Second
	DefaultFetchAction             = ActionDeny
	DefaultFetchMaxDelay           = 10 * time.Second
	DefaultMaxTrackedKeys          = 1 << 18
	DefaultRedisPrefix             = "imapwarden:{rl}:"
	DefaultRedisFailureMode        = FailOpen
	DefaultRedisTimeout            = 250 * time.Millisecond
	DefaultRedisProbeInterval      = time.Second
	DefaultLockoutSyncInterval     = 5 * time.Second
	DefaultRedisLoginPlaceTTL      = 2 * time.Minute
)

// DefaultMaxUnauthenticatedPerSubnet is a quarter of the connections
// awaiting login under the shipped unit (max_preauth_connections 4096),
// and room for an office behind a few addresses: a client's connection
// awaits login only for a TLS handshake and a login.
const DefaultMaxUnauthenticatedPerSubnet = 1024

func defRate(r *Rate, d Rate) {
	if r.zero() {
		*r = d
	}
}

func defInt(v *int, d int) {
	if *v == 0 {
		*v = d
	}
}

func defDur(v *time.Duration, d time.Duration) {
	if *v == 0 {
		*v = d
	}
}

// withDefaults fills zero fields and checks the result.
func (o Options) withDefaults() (Options, error) {
	defRate(&o.ConnectionsPerIP, DefaultConnectionsPerIP)
	defRate(&o.ConnectionsPerSubnet, DefaultConnectionsPerSubnet)
	defInt(&o.SubnetBitsV4, DefaultSubnetBitsV4)
	defInt(&o.SubnetBitsV6, DefaultSubnetBitsV6)
	defInt(&o.IPBitsV4, DefaultIPBitsV4)
	defInt(&o.IPBitsV6, DefaultIPBitsV6)
	if o.IPv4Translators == nil {
		o.IPv4Translators = DefaultIPv4Translators()
	}
	o.IPv4Translators = slices.Clone(o.IPv4Translators) // the caller's stays its own
	defInt(&o.MaxConnectionsPerIP, DefaultMaxConnectionsPerIP)
	defInt(&o.MaxUnauthenticatedPerIP, DefaultMaxUnauthenticatedPerIP)
	defInt(&o.MaxUnauthenticatedPerSubnet, DefaultMaxUnauthenticatedPerSubnet)
	defInt(&o.MaxSessionsPerUser, DefaultMaxSessionsPerUser)
	defInt(&o.LoginFailuresPerIP, DefaultLoginFailuresPerIP)
	defInt(&o.LoginFailuresPerUser, DefaultLoginFailuresPerUser)
	defInt(&o.LoginFailuresPerUserIP, DefaultLoginFailuresPerUserIP)
	defDur(&o.LoginFailureWindow, DefaultLoginFailureWindow)
	defDur(&o.LockoutBase, DefaultLockoutBase)
	defDur(&o.LockoutMax, DefaultLockoutMax)
	defDur(&o.LoginFailureDelay, DefaultLoginFailureDelay)
	if o.LockoutReason == "" {
		o.LockoutReason = DefaultLockoutReason
	}
	defRate(&o.CommandsPerSession, DefaultCommandsPerSession)
	defRate(&o.CommandsPerUser, DefaultCommandsPerUser)
	defDur(&o.CommandMaxDelay, DefaultCommandMaxDelay)
	defRate(&o.FetchBytesPerUser, DefaultFetchBytesPerUser)
	defRate(&o.FetchMessagesPerUser, DefaultFetchMessagesPerUser)
	if o.FetchAction == "" {
		o.FetchAction = DefaultFetchAction
	}
	defDur(&o.FetchMaxDelay, DefaultFetchMaxDelay)
	defRate(&o.AppendBytesPerUser, DefaultAppendBytesPerUser)
	defInt(&o.MaxTrackedKeys, DefaultMaxTrackedKeys)
	if o.RedisPrefix == "" {
		o.RedisPrefix = DefaultRedisPrefix
	}
	if o.RedisFailureMode == "" {
		o.RedisFailureMode = DefaultRedisFailureMode
	}
	defDur(&o.RedisTimeout, DefaultRedisTimeout)
	defDur(&o.RedisProbeInterval, DefaultRedisProbeInterval)
	defDur(&o.LockoutSyncInterval, DefaultLockoutSyncInterval)
	defDur(&o.RedisLoginPlaceTTL, DefaultRedisLoginPlaceTTL)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}

	var errs []error
	rates := map[string]Rate{
		"connections_per_ip": o.ConnectionsPerIP, "connections_per_subnet": o.ConnectionsPerSubnet,
		"commands_per_session": o.CommandsPerSession, "commands_per_user": o.CommandsPerUser,
		"fetch_bytes_per_user": o.FetchBytesPerUser, "fetch_messages_per_user": o.FetchMessagesPerUser,
		"append_bytes_per_user": o.AppendBytesPerUser,
	}
	for g, gl := range o.GroupLimits {
		for k, r := range map[string]Rate{
			"commands_per_session": gl.CommandsPerSession, "commands_per_user": gl.CommandsPerUser,
			"fetch_bytes_per_user": gl.FetchBytesPerUser, "fetch_messages_per_user": gl.FetchMessagesPerUser,
			"append_bytes_per_user": gl.AppendBytesPerUser,
		} {
			rates["group "+g+": "+k] = r
		}
		var a Action
		if err := a.UnmarshalText([]byte(gl.FetchAction)); err != nil {
			errs = append(errs, fmt.Errorf("group %s: %w", g, err))
		}
	}
	for k, r := range rates {
		if err := r.check(); err != nil {
			errs = append(errs, fmt.Errorf("ratelimit: %s: %w", k, err))
		}
	}
	if o.SubnetBitsV4 < 0 || o.SubnetBitsV4 > 32 || o.SubnetBitsV6 < 0 || o.SubnetBitsV6 > 128 {
		errs = append(errs, errors.New("ratelimit: subnet bits out of range"))
	}
	if _, err := NewHosts(o.IPBitsV4, o.IPBitsV6, o.IPv4Translators); err != nil {
		errs = append(errs, err)
	}
	// A subnet groups hosts: a longer prefix would count less than a host.
	if o.SubnetBitsV4 > o.IPBitsV4 {
		errs = append(errs, fmt.Errorf("ratelimit: subnet_bits_v4 %d is longer than ip_bits_v4 %d", o.SubnetBitsV4, o.IPBitsV4))
	}
	if o.SubnetBitsV6 > o.IPBitsV6 {
		errs = append(errs, fmt.Errorf("ratelimit: subnet_bits_v6 %d is longer than ip_bits_v6 %d", o.SubnetBitsV6, o.IPBitsV6))
	}
	if o.LockoutBase < 0 || o.LoginFailureWindow < 0 || o.RedisTimeout < 0 || o.RedisProbeInterval < 0 || o.LockoutSyncInterval < 0 || o.RedisLoginPlaceTTL < 0 {
		errs = append(errs, errors.New("ratelimit: lockout_base, login_failure_window, redis_timeout, redis_probe_interval, lockout_sync_interval and redis_login_place_ttl must be positive"))
	}
	if o.LockoutMax < o.LockoutBase {
		errs = append(errs, errors.New("ratelimit: lockout_max is less than lockout_base"))
	}
	if err := o.FetchAction.UnmarshalText([]byte(o.FetchAction)); err != nil {
		errs = append(errs, err)
	}
	if err := o.RedisFailureMode.UnmarshalText([]byte(o.RedisFailureMode)); err != nil {
		errs = append(errs, err)
	}
	if strings.ContainsAny(o.LockoutReason, "\r\n") {
		errs = append(errs, errors.New("ratelimit: lockout_reason contains a line break"))
	}
	return o, errors.Join(errs...)
}
