package proxy

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// Metrics are the proxy's Prometheus metrics. Labels are bounded: listener
// and backend names from the configuration, command names from a fixed
// set, never a user, an address or a mailbox (ARCHITECTURE.md §14).
type Metrics struct {
	connections     *prometheus.CounterVec
	sessions        *prometheus.GaugeVec
	closed          *prometheus.CounterVec
	handshakes      *prometheus.CounterVec
	auth            *prometheus.CounterVec
	commands        *prometheus.CounterVec
	commandDuration *prometheus.HistogramVec
	limitHits       *prometheus.CounterVec
	backendDials    *prometheus.CounterVec
	backendDialTime *prometheus.HistogramVec
	bytes           *prometheus.CounterVec
	security        *prometheus.CounterVec
	preAuth         prometheus.Gauge
	backendFaults   *prometheus.CounterVec
	// Pre-resolved children for the per-response path.
	toClient, toBackend prometheus.Counter
	// bySpec holds, for each command label (the table's names and
	// "other"), its children once used: every command completes through
	// command, and WithLabelValues hashes and checks its labels and takes
	// the vector's lock each time. Read-only after NewMetrics.
	bySpec map[string]*commandSeries
}

// commandSeries are one command label's children, each resolved at its
// first use (so that a series appears when it did before: the counters at
// Init, the histogram at the first command timed).
type commandSeries struct {
	counters [len(commandResults)]atomic.Pointer[prometheus.Counter]
	duration atomic.Pointer[prometheus.Observer]
}

// NewMetrics creates the proxy's metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imapwarden_connections_total", Help: "Client connections accepted, by listener.",
		}, []string{"listener"}),
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "imapwarden_sessions_active", Help: "Client connections open now, by listener.",
		}, []string{"listener"}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imapwarden_sessions_closed_total", Help: "Client connections ended, by listener and close reason (the audit trail's).",
		}, []string{"listener", "reason"}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imapwarden_tls_handshakes_total", Help: "TLS handshakes with clients, by listener, result and version.",
		}, []string{"listener", "result", "version"}),
		auth: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imapwarden_auth_attempts_total", Help: "Login attempts, by mechanism and result.",
		}, []string{"mechanism", "result"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imapwarden_commands_total", Help: "Commands after login, by command and result (ok, no, bad, denied, none).",
		}, []string{"command", "result"}),
		commandDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "imapwarden_command_duration_seconds", Help: "Time from a command's first byte to its tagged completion.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"command"}),
		limitHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imapwarden_limit_hits_total", Help: "Limit hits (refusals and alerts), by limit and key kind.",
		}, []string{"limit", "key"}),
		backendDials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imapwarden_backend_dials_total", Help: "Backend connections and logins, by backend and result.",
		}, []string{"backend", "result"}),
		backendDialTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "imapwarden_backend_dial_duration_seconds", Help: "Time to connect, greet and start TLS with a backend.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9),
		}, []string{"backend"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imapwarden_relayed_bytes_total", Help: "Bytes relayed after login, by direction.",
		}, []string{"direction"}),
		security: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imapwarden_security_events_total", Help: "Attacks and protocol abuse seen, by kind.",
		}, []string{"kind"}),
		preAuth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "imapwarden_preauth_connections", Help: "Client connections awaiting login now (limits.max_preauth_connections).",
		}),
		backendFaults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imapwarden_backend_protocol_errors_total",
			Help: "Sessions ended because their backend broke the IMAP protocol (fault protocol) or went silent while it owed an answer or literal bytes (fault timeout), by backend.",
		}, []string{"backend", "fault"}),
	}
	for _, c := range []prometheus.Collector{m.connections, m.sessions, m.closed, m.handshakes, m.auth, m.commands,
		m.commandDuration, m.limitHits, m.backendDials, m.backendDialTime, m.bytes, m.security, m.preAuth, m.backendFaults} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m.toClient = m.bytes.WithLabelValues("backend_to_client")
	m.toBackend = m.bytes.WithLabelValues("client_to_backend")
	m.bySpec = make(map[string]*commandSeries, len(imapwire.Specs())+1)
	for _, spec := range imapwire.Specs() {
		m.bySpec[spec.Name] = new(commandSeries)
	}
	m.bySpec["other"] = new(commandSeries)
	return m, nil
}

// Bounded label values known ahead, for Init.
var (
	authMechanisms = []string{"LOGIN", "PLAIN", "other"}
	// authResults are "ok" and the reasons the front end gives a failed
	// login; any other reason is counted as "failed".
	authResults = []string{"ok", "failed", "authenticator-unavailable", "authzid-refused", "backend-unavailable",
		"backend-refused", "backend-dropped", "credentials", "credentials-too-long", "invalid-characters", "limit", "misconfigured", "no-route", "no-verifier", "policy",
		"privacy-required", "route-error", "no-certificate", "sasl-syntax"}
	commandResults = [...]string{"ok", "no", "bad", "denied", "none"}
	securityKinds  = []string{"non-imap-client", "starttls-injection", "backend-connect-failed",
		"backend-starttls-injection", "backend-lost", "backend-protocol-error", "backend-timeout", "proxy-protocol-error"}
	backendFaultKinds = []string{"protocol", "timeout"}
	// proxyLimitHits are the (limit, key) pairs of the LimitResults the
	// proxy makes itself, exactly those (TestProxyLimitHitsListed).
	proxyLimitHits = [][2]string{{LimitMaxPreAuthConnections, "server"}, {"max_compress_sessions", "server"},
		{"max_buffered_literal", "session"}, {"max_append_literal", "session"},
		{"max_command_bytes", "session"}, {"max_preauth_command_bytes", "session"}, {"max_audit_mailbox_names", "session"},
		{"max_audit_name_bytes", "session"}}
)

// Init creates, at 0, the series the proxy can produce for these listeners
// and backends and for the fixed sets of everything else, with limits
// (limit, key) pairs of the Limiter: a counter that appears only at its
// first event hides that event from rate() and from alerts.
func (m *Metrics) Init(listeners, backends []string, limits [][2]string) {
	if m == nil {
		return
	}
	for _, l := range listeners {
		m.connections.WithLabelValues(l)
		m.sessions.WithLabelValues(l)
		for _, r := range CloseReasons() {
			m.closed.WithLabelValues(l, r)
		}
		m.handshakes.WithLabelValues(l, "failed", "")
		for _, v := range []string{"TLS1.2", "TLS1.3"} {
			m.handshakes.WithLabelValues(l, "ok", v)
		}
	}
	for _, mech := range authMechanisms {
		for _, r := range authResults {
			m.auth.WithLabelValues(mech, r)
		}
	}
	for _, spec := range imapwire.Specs() {
		for _, r := range commandResults {
			m.commands.WithLabelValues(spec.Name, r)
		}
	}
	for _, r := range commandResults {
		m.commands.WithLabelValues("other", r)
	}
	for _, b := range backends {
		m.backendDials.WithLabelValues(b, "ok")
		m.backendDials.WithLabelValues(b, "failed")
		for _, f := range backendFaultKinds {
			m.backendFaults.WithLabelValues(b, f)
		}
	}
	for _, h := range append(limits, proxyLimitHits...) {
		m.limitHits.WithLabelValues(h[0], h[1])
	}
	for _, k := range securityKinds {
		m.security.WithLabelValues(k)
	}
}

// commandLabel bounds the command label to the commands of the table.
func commandLabel(name string) string {
	if imapwire.Lookup(name) != nil {
		return name
	}
	return "other"
}

// The methods accept a nil receiver, so call sites need no checks.

func (m *Metrics) connOpen(listener string) {
	if m == nil {
		return
	}
	m.connections.WithLabelValues(listener).Inc()
	m.sessions.WithLabelValues(listener).Inc()
}

// connClose counts a session's end by its reason: a CloseReason, so the
// label's values are the enum's few names (ARCHITECTURE.md §15).
func (m *Metrics) connClose(listener string, why CloseReason) {
	if m != nil {
		m.sessions.WithLabelValues(listener).Dec()
		m.closed.WithLabelValues(listener, why.String()).Inc()
	}
}

func (m *Metrics) handshake(listener string, err error, version string) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result, version = "failed", ""
	}
	m.handshakes.WithLabelValues(listener, result, version).Inc()
}

func (m *Metrics) authAttempt(mech string, ok bool, reason string) {
	if m == nil {
		return
	}
	switch mech {
	case "LOGIN", "PLAIN":
	default:
		mech = "other"
	}
	result := "ok"
	if !ok {
		result = "failed"
		for _, r := range authResults[2:] {
			if r == reason {
				result = reason
			}
		}
	}
	m.auth.WithLabelValues(mech, result).Inc()
}

func (m *Metrics) command(name, result string, d time.Duration) {
	if m == nil {
		return
	}
	name = commandLabel(name)
	cs := m.bySpec[name] // nil for a table name in another case: its own label
	ri := resultIndex(result)
	if cs == nil || ri < 0 {
		m.commands.WithLabelValues(name, result).Inc()
		if result != "denied" {
			m.commandDuration.WithLabelValues(name).Observe(d.Seconds())
		}
		return
	}
	c := cs.counters[ri].Load()
	if c == nil {
		// Racing first uses resolve the same child.
		v := m.commands.WithLabelValues(name, result)
		c = &v
		cs.counters[ri].Store(c)
	}
	(*c).Inc()
	if result != "denied" {
		o := cs.duration.Load()
		if o == nil {
			v := m.commandDuration.WithLabelValues(name)
			o = &v
			cs.duration.Store(o)
		}
		(*o).Observe(d.Seconds())
	}
}

// resultIndex is result's place in commandResults, -1 when it has none.
func resultIndex(result string) int {
	for i, r := range commandResults {
		if r == result {
			return i
		}
	}
	return -1
}

func (m *Metrics) preAuthConns(delta float64) {
	if m != nil {
		m.preAuth.Add(delta)
	}
}

func (m *Metrics) limitHit(r LimitResult) {
	if m != nil {
		m.limitHits.WithLabelValues(r.Limit, r.Key).Inc()
	}
}

func (m *Metrics) backendDial(backend string, err error, d time.Duration) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "failed"
	}
	m.backendDials.WithLabelValues(backend, result).Inc()
	m.backendDialTime.WithLabelValues(backend).Observe(d.Seconds())
}

func (m *Metrics) relayed(toClient bool, n int64) {
	if m == nil || n == 0 {
		return
	}
	if toClient {
		m.toClient.Add(float64(n))
	} else {
		m.toBackend.Add(float64(n))
	}
}

// backendFault counts a session ended by its backend's fault, one of
// backendFaultKinds.
func (m *Metrics) backendFault(backend, fault string) {
	if m != nil {
		m.backendFaults.WithLabelValues(backend, fault).Inc()
	}
}

func (m *Metrics) securityEvent(kind string) {
	if m != nil {
		m.security.WithLabelValues(kind).Inc()
	}
}

// metricsAuditor counts what it passes on: most metrics are events the
// Auditor sees anyway, so one decorator keeps them in one place.
type metricsAuditor struct {
	next Auditor
	m    *Metrics
}

func (a metricsAuditor) SessionOpen(s *SessionInfo) {
	a.m.connOpen(s.Listener)
	a.next.SessionOpen(s)
}

func (a metricsAuditor) TLSStarted(s *SessionInfo) {
	if s.TLS != nil {
		a.m.handshake(s.Listener, nil, s.TLS.Version)
	}
	a.next.TLSStarted(s)
}

func (a metricsAuditor) Auth(s *SessionInfo, e AuthEvent) {
	a.m.authAttempt(e.Mechanism, e.Success, e.Reason)
	a.next.Auth(s, e)
}

func (a metricsAuditor) Command(s *SessionInfo, e CommandEvent) error {
	result := "none"
	switch {
	case e.Denied:
		result = "denied"
	case e.Result == "OK":
		result = "ok"
	case e.Result == "NO":
		result = "no"
	case e.Result == "BAD":
		result = "bad"
	}
	a.m.command(e.Command.Name, result, e.Duration)
	a.m.relayed(false, e.BytesIn)
	a.m.relayed(true, e.BytesOut)
	return a.next.Command(s, e)
}

func (a metricsAuditor) Delivered(s *SessionInfo, e DeliveryEvent) { a.next.Delivered(s, e) }

func (a metricsAuditor) Security(s *SessionInfo, kind, detail string) {
	a.m.securityEvent(kind)
	a.next.Security(s, kind, detail)
}

func (a metricsAuditor) Limit(s *SessionInfo, r LimitResult) {
	if r.Count == 0 { // else counted already
		a.m.limitHit(r)
	}
	a.next.Limit(s, r)
}

func (a metricsAuditor) SessionClose(s *SessionInfo, e CloseEvent) {
	a.m.connClose(s.Listener, e.Reason)
	a.next.SessionClose(s, e)
}
