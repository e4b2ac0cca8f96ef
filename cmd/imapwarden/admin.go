package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/imapwarden/imapwarden/audit"
	"github.com/imapwarden/imapwarden/internal/filemode"
	"github.com/imapwarden/imapwarden/internal/termsafe"
	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/proxy/ratelimit"
)

// newRegistry is the process's own metrics registry (never the global one):
// Go runtime, process and build information, then what packages add.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "imapwarden_build_info", Help: "Build information; always 1.",
	}, []string{"version", "revision", "goversion"})
	b := buildDetails()
	info.WithLabelValues(versionString(), b.revision, runtime.Version()).Set(1)
	reg.MustRegister(info)
	return reg
}

// readinessCheck is one condition of /readyz.
type readinessCheck struct {
	name  string
	check func() error
}

// adminView is what a configuration reload changes on the admin listener:
// the tokens, the effective configuration shown at /config and the audit
// trail searched at /audit.
type adminView struct {
	tokens    adminTokens
	config    []byte // effectiveConfig's YAML, secrets redacted
	auditPath string // the file sink's path; "" without one
	backends  []backendView
	// hosts keys a client by host (rate_limits.ip_bits_v4/v6): the token
	// guard counts per host, as the rate limits do.
	hosts ratelimit.Hosts
}

// admin serves the operator endpoints (docs/admin-api.md) and the console.
type admin struct {
	srv    *proxy.Server
	reg    *prometheus.Registry
	level  zap.AtomicLevel
	view   *atomic.Pointer[adminView]
	pprof  bool
	checks []readinessCheck
	// limiter is nil while rate limits are off; a reload may turn them
	// on or off.
	limiter  atomic.Pointer[ratelimit.Limiter]
	wire     *atomic.Pointer[auditWire]
	recent   *recentEvents // nil: no recent denials to show
	backends *backendsAPI  // the backends' pools (backends.go)
	draining atomic.Bool
	log      *zap.Logger

	// searches bounds concurrent audit searches: each reads the trail.
	searches chan struct{}
	console  *console
	// guard bounds wrong tokens per address (adminguard.go).
	guard *tokenGuard
	// pageSize bounds the rows of a list (admin.page_size, pages.go).
	pageSize int
}

// newAdmin makes the admin endpoints; view is read at every request, so
// that a reload changes tokens and /config at once.
func newAdmin(srv *proxy.Server, reg *prometheus.Registry, level zap.AtomicLevel, view *atomic.Pointer[adminView], lim adminLimits, log *zap.Logger) *admin {
	if view == nil {
		view = new(atomic.Pointer[adminView])
	}
	if view.Load() == nil {
		view.Store(&adminView{})
	}
	a := &admin{srv: srv, reg: reg, level: level, view: view, log: log, wire: new(atomic.Pointer[auditWire]),
		searches: make(chan struct{}, lim.AuditSearches), guard: newTokenGuard(lim.TokenFailuresPerIP, lim.TokenFailureWindow, lim.TokenFailureHosts, reg),
		pageSize: max(lim.PageSize, 1)}
	a.console = newConsole(a, lim.ConsoleSessionTTL, lim.ConsoleMaxSessions)
	return a
}

func (a *admin) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	// Alive while the process serves HTTP at all (liveness): a drain is not
	// a reason to be restarted.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.HandleFunc("GET /sessions", a.sessions)
	mux.HandleFunc("DELETE /sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := adminArgs(w, r); !ok {
			return
		}
		id := r.PathValue("id")
		note(r, action{event: "session.end", session: id})
		if !a.srv.EndSession(id) {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such session"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"ended": id})
	})
	mux.HandleFunc("DELETE /sessions", a.endUserSessions)
	mux.HandleFunc("GET /loglevel", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"level": a.level.Level().String()})
	})
	mux.HandleFunc("PUT /loglevel", a.setLogLevel)
	mux.HandleFunc("GET /config", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
		w.Write(a.view.Load().config)
	})
	mux.HandleFunc("GET /audit", a.auditSearch)
	mux.HandleFunc("GET /recent", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"events": a.recent.list()})
	})
	// The lockouts of the limiter in force, a page of them; an unlock is
	// read here, once, for the act and its record alike (admin.unlock).
	mux.HandleFunc("GET /ratelimit/lockouts", a.lockouts)
	mux.HandleFunc("POST /ratelimit/unlock", a.unlock)
	if a.backends != nil {
		a.backends.register(mux)
	}
	if a.pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	top := http.NewServeMux()
	top.Handle("/", a.authorize(mux))
	top.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/", http.StatusSeeOther)
	})
	// The console authenticates with its own cookie (console.go).
	top.Handle("/console/", a.console.handler())
	return top
}

// authorize requires a token of the scope the request needs, for
// everything but the probes, which orchestrators call without credentials:
// without a read token they tell the status alone (readyz keeps its
// reasons for token holders). Write requests are audited.
func (a *admin) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			next.ServeHTTP(w, r)
			return
		}
		id, ok, lockedUntil := a.identify(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="imapwarden"`)
			if !lockedUntil.IsZero() {
				// Answered as a wrong token is (its token was not
				// compared), with when to try again.
				w.Header().Set("Retry-After", strconv.Itoa(int(time.Until(lockedUntil).Seconds())+1))
				writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized: too many wrong tokens from this host; try again later"})
				return
			}
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized"})
			return
		}
		need := needs(r)
		if id.scope < need {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "this token has " + id.scope.String() + " scope; " + need.String() + " is needed"})
			return
		}
		// What needs write scope is refused from another site, a GET of
		// a profile too (an <img> on any page would start one).
		if (need >= scopeWrite || changes(r)) && !sameOrigin(r) {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "cross-site request refused"})
			return
		}
		if changes(r) && !nonSimple(r) {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "a write request needs Authorization or Content-Type: application/json"})
			return
		}
		if need < scopeWrite {
			next.ServeHTTP(w, r)
			return
		}
		// Fail closed (ARCHITECTURE.md §11): nothing is done that the
		// trail cannot record, and the answer waits for the record.
		if err := a.auditReady(r, id); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			return
		}
		act := &action{event: r.Method + " " + r.URL.Path}
		held := &heldResponse{w: w, header: http.Header{}, code: http.StatusOK}
		next.ServeHTTP(held, r.WithContext(context.WithValue(r.Context(), actionKey{}, act)))
		if err := a.audit(r, id, act, held.code); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			return
		}
		held.send(w)
	})
}

// heldResponse keeps a handler's answer until its audit record is
// durable: the administrator hears nothing the trail does not hold.
type heldResponse struct {
	w      http.ResponseWriter
	header http.Header
	code   int
	body   bytes.Buffer
}

// Unwrap lets http.ResponseController reach the connection (pprof's
// write deadline for a long profile) through the wrapper.
func (h *heldResponse) Unwrap() http.ResponseWriter { return h.w }

func (h *heldResponse) Header() http.Header         { return h.header }
func (h *heldResponse) WriteHeader(code int)        { h.code = code }
func (h *heldResponse) Write(b []byte) (int, error) { return h.body.Write(b) }

func (h *heldResponse) send(w http.ResponseWriter) {
	maps.Copy(w.Header(), h.header)
	w.WriteHeader(h.code)
	w.Write(h.body.Bytes())
}

// changes tells a request that may change something (every method but
// GET and HEAD): it is refused from another site.
func changes(r *http.Request) bool {
	return r.Method != http.MethodGet && r.Method != http.MethodHead
}

// nonSimple tells a request a web page cannot send to another origin
// without a CORS preflight, which this listener never grants (Fetch
// standard, "CORS-safelisted request-header"): one with an Authorization
// header or a JSON Content-Type. Without tokens, a loopback listener's
// write scope would otherwise be one form post away from any page the
// operator visits, whatever Origin a browser omits.
func nonSimple(r *http.Request) bool {
	if r.Header.Get("Authorization") != "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/json"
}

// action is what a write request did, for the audit trail: the handler
// names it (note); by default it is the method and path.
type action struct {
	event   string // "unlock", "session.end", ...
	user    string // whom it concerned
	session string
	detail  string
	// backend and server: a backend server drained, disabled, enabled.
	backend, server string
}

type actionKey struct{}

// note describes the request's action; a no-op outside authorize.
func note(r *http.Request, act action) {
	if p, ok := r.Context().Value(actionKey{}).(*action); ok {
		*p = act
	}
}

// adminArgs reads an admin write request's arguments once, strictly, so
// that what is done and what is recorded are the same reading
// (ARCHITECTURE.md §6): the query's parameters, each among names and given
// once, and the body, empty or one JSON object (Content-Type
// application/json) of string values named among names, each once, with
// nothing after it. A name in both the query and the body, invalid UTF-8
// and anything else is refused (answered here: ok is false).
func adminArgs(w http.ResponseWriter, r *http.Request, names ...string) (args map[string]string, ok bool) {
	args, code, err := readAdminArgs(r, names)
	if err != nil {
		writeJSON(w, code, map[string]string{"error": err.Error()})
		return nil, false
	}
	return args, true
}

func readAdminArgs(r *http.Request, names []string) (map[string]string, int, error) {
	bad := http.StatusBadRequest
	known := func(k string) error {
		if !slices.Contains(names, k) {
			if len(names) == 0 {
				return fmt.Errorf("%q: this request takes no arguments", k)
			}
			return fmt.Errorf("%q: unknown argument (want %s)", k, strings.Join(names, ", "))
		}
		return nil
	}
	args := map[string]string{}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, bad, fmt.Errorf("query: %v", err)
	}
	for k, vs := range q {
		if err := known(k); err != nil {
			return nil, bad, err
		}
		if len(vs) > 1 {
			return nil, bad, fmt.Errorf("%q given %d times", k, len(vs))
		}
		args[k] = vs[0]
	}
	// The listener bounds the body (admin.max_body_bytes, startAdminGen).
	body, err := io.ReadAll(r.Body)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body over %d bytes (admin.max_body_bytes)", tooLarge.Limit)
	case err != nil:
		return nil, bad, fmt.Errorf("read body: %v", err)
	case len(bytes.TrimSpace(body)) == 0:
		return checked(args)
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, http.StatusUnsupportedMediaType, errors.New(`a body must be JSON with Content-Type: application/json, e.g. {"user":"alice"}`)
	}
	if !utf8.Valid(body) {
		return nil, bad, errors.New("body: invalid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	want := func(d json.Delim) error {
		if t, err := dec.Token(); err != nil || t != d {
			return fmt.Errorf(`body: want one JSON object of strings, e.g. {"%s":"..."}`, strings.Join(names, `":"...","`))
		}
		return nil
	}
	if err := want('{'); err != nil {
		return nil, bad, err
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		k, isKey := t.(string)
		if err != nil || !isKey {
			return nil, bad, errors.New("body: not a JSON object")
		}
		if err := known(k); err != nil {
			return nil, bad, fmt.Errorf("body: %w", err)
		}
		if seen[k] {
			return nil, bad, fmt.Errorf("body: %q given twice", k)
		}
		seen[k] = true
		if _, inQuery := args[k]; inQuery {
			return nil, bad, fmt.Errorf("%q given in both the query and the body", k)
		}
		t, err = dec.Token()
		v, isStr := t.(string)
		if err != nil || !isStr {
			return nil, bad, fmt.Errorf("body: %q: want a string", k)
		}
		args[k] = v
	}
	if err := want('}'); err != nil {
		return nil, bad, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, bad, errors.New("body: data after the JSON object")
	}
	return checked(args)
}

// checked is args after checkArgs: 400 when refused (a status of 0 would
// make the answer's WriteHeader panic).
func checked(args map[string]string) (map[string]string, int, error) {
	if err := checkArgs(args); err != nil {
		return nil, http.StatusBadRequest, err
	}
	return args, 0, nil
}

// checkArgs refuses values with more than one reading: invalid UTF-8
// (a query is percent-decoded to any bytes) or U+FFFD, which encoding/json
// puts in place of a lone surrogate escape.
func checkArgs(args map[string]string) error {
	for k, v := range args {
		if !utf8.ValidString(v) || strings.ContainsRune(v, utf8.RuneError) {
			return fmt.Errorf("%q: invalid UTF-8", k)
		}
	}
	return nil
}

// listQuery reads a list request's arguments (listArgs), strictly
// (adminArgs); ok is false when refused (answered here).
func (a *admin) listQuery(w http.ResponseWriter, r *http.Request) (q listQuery, ok bool) {
	args, ok := adminArgs(w, r, listArgs...)
	if !ok {
		return q, false
	}
	q, err := readListQuery(args, a.pageSize, a.view.Load().hosts)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return q, false
	}
	return q, true
}

// sessions is GET /sessions: a page of the live sessions, oldest first,
// filtered by user and client (listArgs), with the total that matched.
func (a *admin) sessions(w http.ResponseWriter, r *http.Request) {
	q, ok := a.listQuery(w, r)
	if !ok {
		return
	}
	list := a.srv.Sessions()
	sortSessions(list)
	p := pageOf(list, q, sessionRow)
	writeJSON(w, http.StatusOK, map[string]any{"sessions": p.Rows, "total": p.Total, "offset": p.Offset, "limit": p.Limit})
}

// lockoutsTimeout bounds the read of the lockouts (Redis's among them)
// for one request.
const lockoutsTimeout = 5 * time.Second

// lockouts is GET /ratelimit/lockouts: a page of the lockouts in force
// (ratelimit.Limiter.Lockouts), filtered by user and address (listArgs),
// with the total that matched; 502 with this instance's when Redis does
// not answer.
func (a *admin) lockouts(w http.ResponseWriter, r *http.Request) {
	lim := a.limiter.Load()
	if lim == nil {
		http.NotFound(w, r)
		return
	}
	q, ok := a.listQuery(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), lockoutsTimeout)
	defer cancel()
	ls, err := lim.Lockouts(ctx)
	p := pageOf(ls, q, lockoutRow)
	body := map[string]any{"lockouts": p.Rows, "total": p.Total, "offset": p.Offset, "limit": p.Limit}
	code := http.StatusOK
	if err != nil {
		// The local list is still worth showing.
		body["error"] = err.Error()
		code = http.StatusBadGateway
	}
	writeJSON(w, code, body)
}

// unlock is POST /ratelimit/unlock: {"user":...}, {"ip":...} or both, in
// the body or the query (ratelimit.Limiter.Unlock).
func (a *admin) unlock(w http.ResponseWriter, r *http.Request) {
	lim := a.limiter.Load()
	if lim == nil {
		http.NotFound(w, r)
		return
	}
	args, code, err := readAdminArgs(r, []string{"user", "ip"})
	user, ip := args["user"], args["ip"]
	act := action{event: "unlock", user: user, detail: unlockTarget(user, ip)}
	fail := func(code int, msg string) {
		act.detail += ": " + msg
		note(r, act)
		writeJSON(w, code, map[string]any{"error": msg})
	}
	if err != nil {
		act.detail = "refused" // nothing read is named: it had no one reading
		fail(code, err.Error())
		return
	}
	if user == "" && ip == "" {
		fail(http.StatusBadRequest, "user or ip required")
		return
	}
	if ip != "" {
		if _, err := netip.ParseAddr(ip); err != nil {
			fail(http.StatusBadRequest, "bad ip: "+err.Error())
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	n, err := lim.Unlock(ctx, user, ip)
	if err != nil {
		// Redis did not answer: the local records are gone, maybe not
		// the fleet's.
		act.detail += fmt.Sprintf(": %d removed: %v", n, err)
		note(r, act)
		writeJSON(w, http.StatusBadGateway, map[string]any{"removed": n, "error": err.Error()})
		return
	}
	note(r, act)
	writeJSON(w, http.StatusOK, map[string]any{"removed": n})
}

func unlockTarget(user, ip string) string {
	var parts []string
	if user != "" {
		parts = append(parts, "user "+user)
	}
	if ip != "" {
		parts = append(parts, "ip "+ip)
	}
	return strings.Join(parts, ", ")
}

// auditReady refuses an administrator's action while the trail cannot
// record it (block mode: from its first failed write).
func (a *admin) auditReady(r *http.Request, id identity) error {
	w := a.wire.Load()
	if w == nil {
		return nil
	}
	if err := w.Ready(); err != nil {
		a.log.Warn("admin action refused: the audit trail cannot record it", zap.String("request", r.Method+" "+r.URL.Path),
			zap.String("actor", id.name), zap.String("remote", r.RemoteAddr), zap.Error(err))
		return fmt.Errorf("refused, nothing done: the audit trail cannot record this action (%v)", err)
	}
	return nil
}

// audit records a write action in the trail (and the operational log):
// who (token name and scope), from where, what, and how it went. It
// returns once the record is durable (block mode), else with an error
// for the administrator: the action was carried out, its record is not
// held.
func (a *admin) audit(r *http.Request, id identity, act *action, status int) error {
	result := "ok"
	if status >= 300 {
		result = "error"
	}
	a.log.Info("admin action", zap.String("event", act.event), zap.String("actor", id.name), zap.Stringer("scope", id.scope),
		zap.String("remote", r.RemoteAddr), zap.String("user", act.user), zap.String("session", act.session),
		zap.String("detail", act.detail), zap.Int("status", status))
	w := a.wire.Load()
	if w == nil {
		return nil
	}
	rec := &audit.Record{Kind: audit.KindAdmin, Event: act.event, Actor: id.name, Scope: id.scope.String(),
		User: act.user, Session: act.session, Detail: act.detail, Result: result, Code: fmt.Sprint(status),
		Backend: act.backend, Server: act.server}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		rec.IP, rec.Port = ap.Addr().Unmap(), ap.Port()
	}
	if err := w.commandLog(rec); err != nil {
		a.log.Error("admin action not audited", zap.String("event", act.event), zap.Error(err))
		return fmt.Errorf("%s was carried out (status %d), but its audit record is not durable: %v", act.event, status, err)
	}
	return nil
}

// endUserSessions is DELETE /sessions?user=NAME: it ends every session of
// the user (names compared case-insensitively, as most backends do).
func (a *admin) endUserSessions(w http.ResponseWriter, r *http.Request) {
	args, ok := adminArgs(w, r, "user")
	if !ok {
		return
	}
	user := args["user"]
	if user == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "user required: DELETE /sessions?user=NAME (or /sessions/ID for one session)"})
		return
	}
	ended := a.endSessionsOf(user)
	note(r, action{event: "session.end-user", user: user, detail: fmt.Sprintf("%d sessions ended", len(ended))})
	if len(ended) == 0 {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "no session of that user", "ended": ended})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ended": ended})
}

func (a *admin) endSessionsOf(user string) []string {
	ended := []string{}
	for _, s := range a.srv.Sessions() {
		// One equivalence of names (ARCHITECTURE.md §17), as the lockouts use.
		if s.User != "" && proxy.SameUser(s.User, user) && a.srv.EndSession(s.ID) {
			ended = append(ended, s.ID)
		}
	}
	return ended
}

// setLogLevel is PUT /loglevel: {"level":"debug"} (JSON), or
// ?level=debug with no body.
func (a *admin) setLogLevel(w http.ResponseWriter, r *http.Request) {
	args, ok := adminArgs(w, r, "level")
	if !ok {
		return
	}
	name := args["level"]
	var l zapcore.Level
	if err := l.UnmarshalText([]byte(name)); err != nil || name == "" || l > zapcore.ErrorLevel {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("level %q: want debug, info, warn or error", name)})
		return
	}
	old := a.level.Level()
	a.level.SetLevel(l)
	note(r, action{event: "loglevel", detail: old.String() + " -> " + l.String()})
	writeJSON(w, http.StatusOK, map[string]string{"level": l.String()})
}

func (a *admin) readyz(w http.ResponseWriter, r *http.Request) {
	var reasons []string
	if a.draining.Load() {
		reasons = append(reasons, "draining")
	}
	if err := a.srv.Ready(); err != nil {
		reasons = append(reasons, "listeners: "+err.Error())
	}
	for _, c := range a.checks {
		if err := c.check(); err != nil {
			reasons = append(reasons, c.name+": "+err.Error())
		}
	}
	if len(reasons) > 0 {
		// The reasons name backend servers, their internal addresses and
		// errors, the trail's path: for a caller with a read token only.
		// The kubelet needs the status code alone.
		if id, ok, _ := a.identify(r); !ok || id.scope < scopeRead {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false})
			return
		}
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reasons": reasons})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ready": true})
}

// writeJSON answers with v as indented JSON. Users, mailboxes and records
// in it are clients' strings and operators read them with curl: what a
// terminal would act on and encoding/json leaves raw (DEL, C1, bidi
// controls) becomes a JSON escape, the same value.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		b = []byte(`{"error": "cannot encode the answer"}`)
	}
	w.Write(append(termsafe.AppendText(nil, b), '\n'))
}

// adminTimeouts bound the admin listener's connections: how long
// (admin.*_timeout) and how many at once (admin.max_connections).
type adminTimeouts struct {
	ReadHeader, Read, Write, Idle time.Duration
	MaxConnections                int
	// MaxConnectionsPerIP: admin.max_connections_per_ip.
	MaxConnectionsPerIP int
	// MaxBodyBytes bounds a request's body (admin.max_body_bytes), the
	// console's sign-in form included; MaxHeaderBytes its header
	// (admin.max_header_bytes; net/http's own default is 1 MiB).
	MaxBodyBytes   int64
	MaxHeaderBytes int
	// Hosts keys a connection's address for MaxConnectionsPerIP by host,
	// as the rate limits do (rate_limits.ip_bits_v4/v6): one IPv6 /64
	// is one client.
	Hosts ratelimit.Hosts
}

// Defaults of the admin listener's bounds. The write timeout leaves room
// for a 30-second CPU profile (pprof's default). Probes and scrapes need
// a few connections; /healthz needs no token, so whoever reaches the port
// could otherwise hold a descriptor per connection, those the IMAP
// listeners and their backends need.
// One address gets a quarter of the pool at most, so that one client
// cannot fill it; the kubelet, a scraper and an operator need a few.
var defaultAdminTimeouts = adminTimeouts{ReadHeader: 10 * time.Second, Read: 30 * time.Second, Write: 2 * time.Minute, Idle: 2 * time.Minute,
	MaxConnections: 64, MaxConnectionsPerIP: 16, MaxBodyBytes: 64 << 10, MaxHeaderBytes: 64 << 10}

// adminLimits bound what the admin listener keeps and does at once.
type adminLimits struct {
	ConsoleSessionTTL  time.Duration // admin.console_session_ttl
	ConsoleMaxSessions int           // admin.console_max_sessions
	AuditSearches      int           // admin.audit_searches
	RecentEvents       int           // admin.recent_events
	TokenFailuresPerIP int           // admin.token_failures_per_ip
	TokenFailureWindow time.Duration // admin.token_failure_window
	TokenFailureHosts  int           // admin.token_failure_hosts
	PageSize           int           // admin.page_size
}

var defaultAdminLimits = adminLimits{ConsoleSessionTTL: 12 * time.Hour, ConsoleMaxSessions: 256, AuditSearches: 2, RecentEvents: 200,
	TokenFailuresPerIP: 10, TokenFailureWindow: 5 * time.Minute, TokenFailureHosts: 4096, PageSize: 100}

// serveAdmin listens on addr (TLS when cfg is set) and serves until ctx is
// done. It returns the bound address and a function that waits for the end.
func serveAdmin(ctx context.Context, addr string, cfg *tls.Config, h http.Handler, log *zap.Logger) (net.Addr, func(), error) {
	return serveAdminWith(ctx, addr, cfg, h, defaultAdminTimeouts, log)
}

// reloadingCert is admin.tls's pair, read again at the first handshake
// after either file changed (modification time or size), so that a renewal
// in place (certbot, cert-manager) is served without a restart, as the
// listeners' certificates are (tlsterm.Server.Watch). A pair that does not
// load keeps the last good one, is reported once (report) and is tried
// again when either file changes.
type reloadingCert struct {
	cert, key string
	// report, when set, is told of each reload: nil when it loaded.
	report func(error)

	mu    sync.Mutex
	stamp [2]certStamp
	cur   *tls.Certificate
}

type certStamp struct {
	mod  time.Time
	size int64
}

func newReloadingCert(cert, key string) (*reloadingCert, error) {
	r := &reloadingCert{cert: cert, key: key}
	r.stamp = r.stamps()
	c, err := r.load()
	if err != nil {
		return nil, err
	}
	r.cur = c
	return r, nil
}

// load reads the pair, the key only when no other user may read it
// (filemode.Secret), at start and at every re-read alike.
func (r *reloadingCert) load() (*tls.Certificate, error) {
	if err := filemode.Secret(r.key); err != nil {
		return nil, err
	}
	c, err := tls.LoadX509KeyPair(r.cert, r.key)
	if err != nil {
		return nil, err
	}
	return &c, nil
}

func (r *reloadingCert) stamps() [2]certStamp {
	var st [2]certStamp
	for i, f := range []string{r.cert, r.key} {
		if fi, err := os.Stat(f); err == nil {
			st[i] = certStamp{fi.ModTime(), fi.Size()}
		}
	}
	return st
}

// get is the admin listener's tls.Config.GetCertificate.
func (r *reloadingCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	st := r.stamps()
	r.mu.Lock()
	defer r.mu.Unlock()
	if st != r.stamp {
		// Stamped before reading: a write that lands meanwhile is read
		// again at the next handshake. A pair that fails is not read
		// again until it changes.
		c, err := r.load()
		if err == nil {
			r.cur = c
		}
		r.stamp = st
		if r.report != nil {
			r.report(err)
		}
	}
	return r.cur, nil
}

func serveAdminWith(ctx context.Context, addr string, cfg *tls.Config, h http.Handler, t adminTimeouts, log *zap.Logger) (net.Addr, func(), error) {
	sock, err := listenAdmin(addr, t, log)
	if err != nil {
		return nil, nil, err
	}
	g := startAdminGen(sock, adminServing{addr: addr, tls: cfg, timeouts: t}, h, log)
	context.AfterFunc(ctx, func() {
		g.stop()
		sock.close()
	})
	return sock.ln.Addr(), func() { <-g.served; <-sock.done }, nil
}

// backendView is a configured backend as the console shows it.
type backendView struct {
	Name     string `json:"name"`
	Address  string `json:"address"`
	Security string `json:"security"`
	Login    string `json:"login"`
	// Verified: a TLS backend's certificate is checked.
	Verified bool `json:"verified"`
}

// buildAdminView completes the admin listener's view of cfg (buildAdmin
// put the tokens in it) and taps the events the console lists.
func buildAdminView(p *problems, s *setup, cfg *fileConfig) {
	v := &adminView{}
	if old := s.adminView.Load(); old != nil {
		*v = *old
	}
	conf, err := effectiveConfigYAML(cfg)
	if err != nil {
		p.add("%v", err)
	}
	v.config = conf
	v.hosts = s.hosts
	s.adminTimeouts.Hosts = s.hosts
	if cfg.Audit.Sink == "" || cfg.Audit.Sink == "file" {
		v.auditPath = cfg.Audit.Path
	}
	for _, name := range sortedKeys(cfg.Backends) {
		b := cfg.Backends[name]
		if b == nil {
			continue
		}
		login := b.Login
		if login == "" {
			login = "auto"
		}
		addr := b.Address
		for i, sc := range b.Servers {
			if i > 0 {
				addr += ", "
			}
			addr += sc.Address
		}
		v.backends = append(v.backends, backendView{Name: name, Address: addr, Security: b.Security, Login: login,
			Verified: b.Security != "plain" && (b.TLS == nil || !b.TLS.Insecure)})
	}
	s.adminView.Store(v)
	s.recent = newRecentEvents(s.adminLimits.RecentEvents)
	s.opts.Auditor = teeAuditor{s.recent, s.opts.Auditor}
}

// limitListener sheds connections beyond max at accept, closing them
// before a byte is read, as the IMAP listeners shed unauthenticated ones
// (ARCHITECTURE.md §12): waiting in the backlog instead would hold the
// kernel's descriptors and stall probes behind whoever holds the slots.
// It counts below TLS (a handshake holds a descriptor too) and across the
// HTTP servers a reload starts on the socket; a reload sets max and perIP.
//
// One client must not shut the kubelet's probes out (each a new
// connection, no token): a client host (its address's prefix,
// ratelimit.Hosts) holds perIP connections at most, and a connection that finds its address's share or the pool full
// takes the place of the longest idle keep-alive connection (of its
// address first), which a server may close at any time (RFC 9112 §9.5).
// Only connections busy with a request (or slow to send one, bounded by
// read_header_timeout) are never shed; filling the pool with those takes
// max/perIP addresses.
type limitListener struct {
	net.Listener
	max, perIP atomic.Int64
	hosts      atomic.Pointer[ratelimit.Hosts]
	log        *zap.Logger
	shed       atomic.Int64
	// warned is when shedding was last logged (Unix nanoseconds).
	warned atomic.Int64

	mu    sync.Mutex
	conns map[*limitConn]struct{}
	byIP  map[netip.Addr]int
}

func newLimitListener(ln net.Listener, t adminTimeouts, log *zap.Logger) *limitListener {
	l := &limitListener{Listener: ln, log: log, conns: map[*limitConn]struct{}{}, byIP: map[netip.Addr]int{}}
	l.set(t)
	return l
}

// set applies a reload's bounds; connections over them stay until they
// end or are shed.
func (l *limitListener) set(t adminTimeouts) {
	l.max.Store(int64(t.MaxConnections))
	l.perIP.Store(int64(max(t.MaxConnectionsPerIP, 1)))
	l.hosts.Store(&t.Hosts)
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		var ip netip.Addr
		if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			ip = l.hosts.Load().Of(ta.AddrPort())
		}
		lc := &limitConn{Conn: c, l: l, ip: ip}
		ok, victim := l.admit(lc)
		if victim != nil {
			victim.Conn.Close()
		}
		if ok {
			return lc, nil
		}
		c.Close()
		n := l.shed.Add(1)
		now := time.Now().UnixNano()
		if last := l.warned.Load(); now-last >= int64(time.Minute) && l.warned.CompareAndSwap(last, now) {
			l.log.Warn("admin connections shed: admin.max_connections or max_connections_per_ip reached, none idle",
				zap.Int64("max", l.max.Load()), zap.Int64("max_per_ip", l.perIP.Load()), zap.Int64("shed", n))
		}
	}
}

// admit counts c in, in place of the longest idle connection (victim,
// already counted out; the caller closes it) when c's address or the
// pool is full; ok is false when there is no room and none idle.
func (l *limitListener) admit(c *limitConn) (ok bool, victim *limitConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case int64(l.byIP[c.ip]) >= l.perIP.Load():
		victim = l.idlest(func(o *limitConn) bool { return o.ip == c.ip })
	case int64(len(l.conns)) >= l.max.Load():
		victim = l.idlest(func(o *limitConn) bool { return o.ip == c.ip })
		if victim == nil {
			victim = l.idlest(func(*limitConn) bool { return true })
		}
	default:
		l.add(c)
		return true, nil
	}
	if victim == nil {
		return false, nil
	}
	l.remove(victim)
	if int64(len(l.conns)) >= l.max.Load() || int64(l.byIP[c.ip]) >= l.perIP.Load() {
		// Still over a bound a reload lowered: one in, one out at most.
		return false, victim
	}
	l.add(c)
	return true, victim
}

// idlest is the connection idle the longest among those of which.
func (l *limitListener) idlest(which func(*limitConn) bool) *limitConn {
	var v *limitConn
	for o := range l.conns {
		if !o.idleSince.IsZero() && which(o) && (v == nil || o.idleSince.Before(v.idleSince)) {
			v = o
		}
	}
	return v
}

func (l *limitListener) add(c *limitConn) {
	l.conns[c] = struct{}{}
	l.byIP[c.ip]++
}

// remove counts c out, once.
func (l *limitListener) remove(c *limitConn) {
	if _, ok := l.conns[c]; !ok {
		return
	}
	delete(l.conns, c)
	if l.byIP[c.ip]--; l.byIP[c.ip] <= 0 {
		delete(l.byIP, c.ip)
	}
}

// connState is the HTTP servers' ConnState: it marks the connections
// idle between requests, the ones to shed first.
func (l *limitListener) connState(c net.Conn, st http.ConnState) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	lc, ok := c.(*limitConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if st == http.StateIdle {
		lc.idleSince = time.Now()
	} else {
		lc.idleSince = time.Time{}
	}
}

// limitConn gives its slot back when closed.
type limitConn struct {
	net.Conn
	l  *limitListener
	ip netip.Addr
	// idleSince is when it went idle between requests; zero while a
	// request is read or answered. Guarded by l.mu.
	idleSince time.Time
}

func (c *limitConn) Close() error {
	c.l.mu.Lock()
	c.l.remove(c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}
