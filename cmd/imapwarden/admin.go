package main

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/proxy"
)

// newRegistry is the process's own metrics registry (never the global one):
// Go runtime, process and build information, then what packages add.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "imapwarden_build_info", Help: "Build information; always 1.",
	}, []string{"version", "goversion"})
	info.WithLabelValues(versionString(), runtime.Version()).Set(1)
	reg.MustRegister(info)
	return reg
}

// readinessCheck is one condition of /readyz.
type readinessCheck struct {
	name  string
	check func() error
}

// admin serves the operator endpoints: /metrics, /healthz, /readyz,
// /sessions, /loglevel and, when enabled, /debug/pprof/.
type admin struct {
	srv      *proxy.Server
	reg      *prometheus.Registry
	level    zap.AtomicLevel
	token    string // bearer token; empty only on loopback
	pprof    bool
	checks   []readinessCheck
	limiter  http.Handler // lockouts list and unlock, when rate limits are on
	draining atomic.Bool
	log      *zap.Logger
}

func (a *admin) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	// Alive while the process serves HTTP at all (liveness): a drain is not
	// a reason to be restarted.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.HandleFunc("GET /sessions", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, a.srv.Sessions())
	})
	mux.HandleFunc("DELETE /sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if !a.srv.EndSession(id) {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such session"})
			return
		}
		a.log.Info("session ended by the administrator", zap.String("session", id), zap.String("remote", r.RemoteAddr))
		writeJSON(w, http.StatusOK, map[string]string{"ended": id})
	})
	// zap's AtomicLevel speaks JSON: GET {"level":"info"}, PUT the same.
	mux.Handle("GET /loglevel", a.level)
	mux.Handle("PUT /loglevel", a.level)
	if a.limiter != nil {
		// Lists and lifts lockouts: behind the token like the rest.
		mux.Handle("/ratelimit/", http.StripPrefix("/ratelimit", a.limiter))
	}
	if a.pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return a.authorize(mux)
}

// authorize requires the bearer token for everything but the probes, which
// orchestrators call without credentials and which reveal nothing.
func (a *admin) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.token != "" && r.URL.Path != "/healthz" && r.URL.Path != "/readyz" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(a.token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="imapwarden"`)
				writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized"})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (a *admin) readyz(w http.ResponseWriter, _ *http.Request) {
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
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reasons": reasons})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ready": true})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// serveAdmin listens on addr (TLS when cfg is set) and serves until ctx is
// done. It returns the bound address and a function that waits for the end.
func serveAdmin(ctx context.Context, addr string, cfg *tls.Config, h http.Handler, log *zap.Logger) (net.Addr, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          zap.NewStdLog(log),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin listener failed", zap.Error(err))
		}
	}()
	context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
	})
	return ln.Addr(), func() { <-done }, nil
}
