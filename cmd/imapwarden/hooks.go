package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/internal/filemode"
	"github.com/imapwarden/imapwarden/policy"
	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/proxy/ratelimit"
)

// buildPolicy makes the policy engine when policies are configured; the
// engine decides, and routes too with policy.route. Without policies every
// command is allowed (proxy.AllowAll).
func buildPolicy(p *problems, s *setup, c policyConfig, backends map[string]*proxy.Backend, log *zap.Logger) {
	if len(c.Dirs) == 0 {
		if c.Route || c.GroupsFile != "" {
			p.add("policy: route and groups_file need policy.dirs")
		}
		return
	}
	s.policyEval = newPolicyEvalTime()
	e := newPolicyEngine(p, c, s.policyEval, log)
	if e == nil {
		return
	}
	s.engine = e
	s.opts.Decider = e
	if c.Route {
		s.opts.Router = &policy.Router{Engine: e, Backends: backends, Fallback: s.opts.Router}
	}
	s.publishEngine()
}

func newPolicyEvalTime() prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "imapwarden_policy_evaluation_duration_seconds",
		Help:    "Time of one Rego evaluation (decisions from the cache or the fast path are not evaluated).",
		Buckets: prometheus.ExponentialBuckets(2e-6, 4, 10),
	})
}

// newPolicyEngine loads the policies of c (which has dirs); nil, with
// the problem added, when they do not load.
func newPolicyEngine(p *problems, c policyConfig, evalTime prometheus.Histogram, log *zap.Logger) *policy.Engine {
	o := policy.Options{GroupsFile: c.GroupsFile, PollInterval: c.PollInterval.get(0), CacheSize: c.CacheSize,
		EvalTimeout:  c.EvalTimeout.get(0),
		OnEvaluation: func(d time.Duration) { evalTime.Observe(d.Seconds()) }, Logger: log.Named("policy"),
	}
	if c.EvalTimeout != nil && o.EvalTimeout < 0 {
		p.add("policy.eval_timeout: must not be negative, got %v", o.EvalTimeout)
		return nil
	}
	for i, d := range c.Dirs {
		if d.Path == "" {
			p.add("policy.dirs[%d].path: required", i)
		}
		o.Dirs = append(o.Dirs, policy.Dir{Path: d.Path, Shadow: d.Shadow})
	}
	if c.TimeZone != "" {
		loc, err := time.LoadLocation(c.TimeZone)
		if err != nil {
			p.add("policy.time_zone: %v", err)
			return nil
		}
		o.Location = loc
	}
	e, err := policy.New(o)
	if err != nil {
		p.add("policy: %v", err)
		return nil
	}
	return e
}

// publishEngine makes s.engine the one the metrics read (nil: none),
// registering the policy metrics the first time there is one.
func (s *setup) publishEngine() {
	s.engineRef.Store(s.engine)
	s.reloads.setEngine(s.engine)
	if s.engine != nil && s.reg != nil && !s.policyMetrics {
		s.reg.MustRegister(policyCollector{&s.engineRef}, s.policyEval)
		s.policyMetrics = true
	}
}

// userGroups is the groups of a user for group_limits: those of the policy
// engine in force, which re-reads policy.groups_file when it changes, so
// that limits and policies follow one membership, looked up by one name
// (ARCHITECTURE.md §17).
func (s *setup) userGroups(user string) []string {
	if e := s.engineRef.Load(); e != nil {
		return e.Groups(user)
	}
	return nil
}

// unauthPerSubnetDefault is rate_limits.unauthenticated_connections_per_subnet
// when unset: the Limiter's default, or a quarter of the server's
// connections awaiting login (limits.max_preauth_connections) when that
// is less, so that one subnet never holds them all.
func unauthPerSubnetDefault(slots int) int {
	return min(ratelimit.DefaultMaxUnauthenticatedPerSubnet, max(slots/4, 1))
}

// buildRateLimits makes the Limiter (on unless rate_limits.enabled is
// false). The users' groups for group_limits are the policy engine's
// (userGroups).
func buildRateLimits(p *problems, s *setup, c rateLimitsConfig, log *zap.Logger, warn func(key, format string, args ...any)) {
	var translators []netip.Prefix
	if c.IPv4Translators != nil {
		translators = make([]netip.Prefix, 0, len(c.IPv4Translators))
		for i, v := range c.IPv4Translators {
			pfx, err := netip.ParsePrefix(v)
			if err != nil {
				p.add("rate_limits.ipv4_translators[%d]: %v", i, err)
				return
			}
			translators = append(translators, pfx)
		}
	}
	// Hosts are keyed with the limits off too: the admin listener counts
	// per host (buildAdminView).
	hosts, err := ratelimit.NewHosts(c.IPBitsV4, c.IPBitsV6, translators)
	if err != nil {
		p.add("rate_limits: %v", err)
		return
	}
	s.hosts = hosts
	if c.Enabled != nil && !*c.Enabled {
		return
	}
	o := ratelimit.Options{
		ConnectionsPerIP: c.ConnectionsPerIP, ConnectionsPerSubnet: c.ConnectionsPerSubnet,
		SubnetBitsV4: c.SubnetBitsV4, SubnetBitsV6: c.SubnetBitsV6, IPBitsV4: c.IPBitsV4, IPBitsV6: c.IPBitsV6,
		MaxConnectionsPerIP: c.MaxConnectionsPerIP, MaxUnauthenticatedPerIP: c.MaxUnauthenticatedPerIP,
		MaxUnauthenticatedPerSubnet: c.MaxUnauthPerSubnet, MaxSessionsPerUser: c.MaxSessionsPerUser,
		LoginFailuresPerIP: c.LoginFailuresPerIP, LoginFailuresPerUser: c.LoginFailuresPerUser, LoginFailuresPerUserIP: c.LoginFailuresPerUserIP,
		LoginFailureWindow: c.LoginFailureWindow.get(0), LockoutBase: c.LockoutBase.get(0), LockoutMax: c.LockoutMax.get(0),
		LoginFailureDelay: c.LoginFailureDelay.get(0), UserLockoutAllIPs: c.UserLockoutAllIPs, LockoutReason: c.LockoutReason,
		CommandsPerSession: c.CommandsPerSession, CommandsPerUser: c.CommandsPerUser, CommandMaxDelay: c.CommandMaxDelay.get(0),
		FetchBytesPerUser: c.FetchBytesPerUser, FetchMessagesPerUser: c.FetchMessagesPerUser, FetchAction: c.FetchAction,
		FetchMaxDelay: c.FetchMaxDelay.get(0), AppendBytesPerUser: c.AppendBytesPerUser,
		GroupLimits: c.GroupLimits, MaxTrackedKeys: c.MaxTrackedKeys,
		IPv4Translators: translators, Logger: log.Named("ratelimit"),
	}
	if s.engine != nil {
		o.Groups = s.userGroups
	}
	slots := s.opts.Limits.MaxPreAuthConnections
	if o.MaxUnauthenticatedPerSubnet == 0 {
		o.MaxUnauthenticatedPerSubnet = unauthPerSubnetDefault(slots)
	} else if n := o.MaxUnauthenticatedPerSubnet; n > 0 && n >= slots {
		warn("rate_limits.unauthenticated_connections_per_subnet", "%d is not below limits.max_preauth_connections (%d): the hosts of one subnet can hold every connection awaiting login and turn everyone else away", n, slots)
	}
	storeErrors := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "imapwarden_ratelimit_store_errors_total", Help: "Failed calls to the shared (Redis) limit store.",
	})
	storeUp := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "imapwarden_ratelimit_store_up", Help: "1 while the shared (Redis) limit store answers.",
	})
	if r := c.Redis; r != nil && (r.Address != "" || len(r.Addresses) > 0) {
		if r.Address != "" {
			if err := checkHostPort(r.Address, false); err != nil {
				p.add("rate_limits.redis.address: %v", err)
				return
			}
		}
		for i, a := range r.Addresses {
			if err := checkHostPort(a, false); err != nil {
				p.add("rate_limits.redis.addresses[%d]: %v", i, err)
				return
			}
		}
		if r.SentinelMaster != "" && r.Cluster {
			p.add("rate_limits.redis: sentinel_master and cluster exclude each other")
			return
		}
		ro := ratelimit.RedisOptions{Addr: r.Address, Addrs: r.Addresses, MasterName: r.SentinelMaster, Cluster: r.Cluster,
			Username: r.Username, DB: r.DB, Timeout: r.Timeout.get(0)}
		if r.TLS != nil {
			tc, err := redisTLS(r.TLS)
			if err != nil {
				p.add("rate_limits.redis.tls: %v", err)
				return
			}
			ro.TLS = tc
			if r.TLS.Insecure {
				warn("rate_limits.redis.tls.insecure", "the Redis servers' certificates are not verified: anyone on the path can read its password and change every lockout")
			}
		} else if a := remoteAddr(append([]string{r.Address}, r.Addresses...)); a != "" {
			// Lockouts are only as good as the store: on the path, anyone
			// could lift them, or lock everyone out.
			warn("rate_limits.redis.tls", "not set: its password, lockouts and counters cross the network to %s in clear", a)
		}
		if r.SentinelPasswordFile != "" {
			pw, err := readSecretFile(r.SentinelPasswordFile)
			if err != nil {
				p.add("rate_limits.redis.sentinel_password_file: %v", err)
				return
			}
			ro.SentinelPassword = pw
		}
		if r.PasswordFile != "" {
			pw, err := readSecretFile(r.PasswordFile)
			if err != nil {
				p.add("rate_limits.redis.password_file: %v", err)
				return
			}
			ro.Password = pw
		}
		switch ratelimit.FailureMode(r.FailureMode) {
		case "", ratelimit.FailOpen, ratelimit.FailClosed:
			o.RedisFailureMode = ratelimit.FailureMode(r.FailureMode)
		default:
			p.add("rate_limits.redis.failure_mode: unknown value %q (want open or closed)", r.FailureMode)
			return
		}
		o.Redis = ratelimit.NewRedisClient(ro)
		o.RedisPrefix = r.Prefix
		o.LockoutSyncInterval = r.LockoutSyncInterval.get(0)
		o.RedisLoginPlaceTTL = r.LoginPlaceTTL.get(0)
		o.OnStoreError = func(error) { storeErrors.Inc() }
		mode := string(o.RedisFailureMode)
		if mode == "" {
			mode = string(ratelimit.FailOpen)
		}
		o.OnStoreState = func(up bool, err error) {
			// The trail opens after the limiter's prober starts: read the
			// published pointer at each event.
			w := s.wire.Load()
			if up {
				storeUp.Set(1)
				log.Info("rate limit store reachable again")
				if w != nil {
					w.Security(&proxy.SessionInfo{}, "ratelimit-store-up", r.Address)
				}
			} else {
				storeUp.Set(0)
				log.Error("rate limit store unreachable", zap.Error(err), zap.String("failure_mode", mode))
				if w != nil {
					w.Security(&proxy.SessionInfo{}, "ratelimit-store-down", fmt.Sprintf("%s: %v (failing %s)", r.Address, err, mode))
				}
			}
		}
		storeUp.Set(1)
		s.redis = o.Redis
		if s.reg != nil {
			s.reg.MustRegister(storeErrors, storeUp)
		}
	}
	l, err := ratelimit.New(o)
	if err != nil {
		p.add("rate_limits: %v", err)
		return
	}
	s.limiter, s.limiterOpts = l, o
	s.opts.Limiter = l
	if s.reg != nil {
		s.reg.MustRegister(limiterCollector{l})
	}
}

// policyCollector exports the engine's counters at scrape time.
type policyCollector struct {
	e *atomic.Pointer[policy.Engine]
}

var (
	policyEvalsDesc  = prometheus.NewDesc("imapwarden_policy_evaluations_total", "Rego evaluations (decisions not taken from the cache or the fast path).", nil, nil)
	policyHitsDesc   = prometheus.NewDesc("imapwarden_policy_cache_hits_total", "Decisions reused from the cache.", nil, nil)
	policyDeniesDesc = prometheus.NewDesc("imapwarden_policy_denies_total", "Denials, by mode (enforced, shadow) and the policy that denied (the deny's policy name; at most 64, then other).", []string{"mode", "policy"}, nil)
	policyErrorsDesc = prometheus.NewDesc("imapwarden_policy_errors_total", "Evaluations that failed and so denied.", nil, nil)
)

func (c policyCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{policyEvalsDesc, policyHitsDesc, policyDeniesDesc, policyErrorsDesc} {
		ch <- d
	}
}

func (c policyCollector) Collect(ch chan<- prometheus.Metric) {
	e := c.e.Load()
	if e == nil {
		return
	}
	st := e.Stats()
	ch <- prometheus.MustNewConstMetric(policyEvalsDesc, prometheus.CounterValue, float64(st.Evaluations))
	ch <- prometheus.MustNewConstMetric(policyHitsDesc, prometheus.CounterValue, float64(st.CacheHits))
	for mode, m := range map[string]map[string]int64{"enforced": st.DeniesByPolicy, "shadow": st.ShadowDeniesByPolicy} {
		for name, n := range m {
			ch <- prometheus.MustNewConstMetric(policyDeniesDesc, prometheus.CounterValue, float64(n), mode, name)
		}
	}
	ch <- prometheus.MustNewConstMetric(policyErrorsDesc, prometheus.CounterValue, float64(st.Errors))
}

// limiterCollector exports the limiter's state at scrape time.
type limiterCollector struct{ l *ratelimit.Limiter }

var (
	lockoutsDesc = prometheus.NewDesc("imapwarden_lockouts_active",
		"Login lockouts in force in this process, by key (ip, user, user_ip); with Redis, the fleet's are listed at /ratelimit/lockouts.", []string{"key"}, nil)
	trackedKeysDesc = prometheus.NewDesc("imapwarden_ratelimit_tracked_keys",
		"Entries the in-process limit store keeps (bounded by rate_limits.max_tracked_keys).", nil, nil)
	evictedDesc = prometheus.NewDesc("imapwarden_ratelimit_evicted_total",
		"Entries evicted from the in-process limit store to stay within max_tracked_keys.", nil, nil)
	loginsWaitingDesc = prometheus.NewDesc("imapwarden_ratelimit_logins_waiting",
		"Logins waiting for a place among the logins in flight of their failure records.", nil, nil)
	loginWaitsDesc = prometheus.NewDesc("imapwarden_ratelimit_login_waits_total",
		"Logins that waited for a place among the logins in flight of their failure records.", nil, nil)
)

func (c limiterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lockoutsDesc
	ch <- trackedKeysDesc
	ch <- evictedDesc
	ch <- loginsWaitingDesc
	ch <- loginWaitsDesc
}

func (c limiterCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.l.Stats()
	for k, n := range st.Lockouts {
		ch <- prometheus.MustNewConstMetric(lockoutsDesc, prometheus.GaugeValue, float64(n), k)
	}
	ch <- prometheus.MustNewConstMetric(trackedKeysDesc, prometheus.GaugeValue, float64(st.TrackedKeys))
	ch <- prometheus.MustNewConstMetric(evictedDesc, prometheus.CounterValue, float64(st.Evicted))
	ch <- prometheus.MustNewConstMetric(loginsWaitingDesc, prometheus.GaugeValue, float64(st.LoginsWaiting))
	ch <- prometheus.MustNewConstMetric(loginWaitsDesc, prometheus.CounterValue, float64(st.LoginWaits))
}

// redisTLS is the client TLS of rate_limits.redis.tls. The server name is
// left empty unless given: each dial then verifies its own address's host
// (crypto/tls.DialWithDialer), Sentinels and Cluster nodes included.
func redisTLS(t *backendTLSConfig) (*tls.Config, error) {
	minVersion, err := tlsVersion(t.MinVersion, false)
	if err != nil {
		return nil, fmt.Errorf("min_version: %w", err)
	}
	if minVersion == 0 {
		minVersion = tls.VersionTLS12
	}
	tc := &tls.Config{MinVersion: minVersion, ServerName: t.ServerName, InsecureSkipVerify: t.Insecure}
	if t.Insecure && t.CAFile != "" {
		return nil, errors.New("insecure and ca_file contradict each other")
	}
	if t.CAFile != "" {
		if tc.RootCAs, err = caPool(t.CAFile); err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
	}
	if t.ClientCert.Cert != "" || t.ClientCert.Key != "" {
		if t.ClientCert.Cert == "" || t.ClientCert.Key == "" {
			return nil, errors.New("client_cert: both cert and key are required")
		}
		if err := filemode.Secret(t.ClientCert.Key); err != nil {
			return nil, fmt.Errorf("client_cert.key: %w", err)
		}
		cert, err := tls.LoadX509KeyPair(t.ClientCert.Cert, t.ClientCert.Key)
		if err != nil {
			return nil, fmt.Errorf("client_cert: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// remoteAddr returns the first of addrs ("host:port") whose host is not
// loopback, or "".
func remoteAddr(addrs []string) string {
	for _, a := range addrs {
		if host, _, err := net.SplitHostPort(a); err == nil && !isLoopback(host) {
			return a
		}
	}
	return ""
}
