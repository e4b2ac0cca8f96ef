package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/imapwarden/imapwarden/policy"
	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/proxy/pool"
	"github.com/imapwarden/imapwarden/proxy/ratelimit"
	"github.com/imapwarden/imapwarden/tlsterm"
)

const serveUsage = `Usage:

	imapwarden serve -c FILE
	imapwarden serve (--imaps ADDR | --starttls ADDR)... --backend URL --cert FILE --key FILE

Run the proxy until SIGINT or SIGTERM. Then readiness (/readyz on the admin
listener) turns 503 at once while the proxy keeps serving for lame_duck (5s
by default), so that load balancers stop sending new clients before
connections are refused; then it stops accepting, tells every session
"* BYE [UNAVAILABLE]" and waits up to drain_timeout (30s by default) for
them to end. A second SIGINT or SIGTERM stops at once.

SIGHUP re-reads the configuration file and applies it as a whole to new
sessions (open ones keep theirs): backends, routes, limits, auth, policy,
rate limits, the admin listener, log.level, lame_duck and drain_timeout. A
file that fails to check, or that changes a key bound at start (listeners,
tls, audit, hostname, the Redis store, ...: "restart required"), keeps the
running configuration. SIGHUP also reloads the TLS certificate files,
which are polled for changes every tls.reload_interval (1m by default); a
certificate that fails to load keeps the current one in use. A failed
reload (configuration, policy or certificates) keeps serving and keeps
readiness: the same bad file on every replica must not take a fleet out of
its load balancers. It is logged and shown by
imapwarden_reload_success{component} = 0 (alert on that).

With -c, everything comes from the configuration file (see "imapwarden
validate" and the example configuration in the README). Without it, the
quick-mode flags describe one backend and one or two listeners; they cannot be
combined with -c.

The backend URL is one of

	imap://host:port           plaintext (loopback or a trusted network only)
	imap+starttls://host:port  STARTTLS, certificate verified
	imaps://host:port          implicit TLS, certificate verified

and TLS URLs take the query parameters ca=FILE (trusted roots, PEM),
server_name=NAME (name to verify) and insecure=1 (do not verify: for a
self-signed backend on a network you control), e.g.

	imapwarden serve --imaps :993 --starttls :143 --cert cert.pem --key key.pem \
		--backend 'imaps://10.0.0.5:993?ca=/etc/ssl/backend-ca.pem'
`

// serveFlags are serve's flags.
type serveFlags struct {
	config    string
	logLevel  string
	logFormat string
	quick     quickFlags
}

func newServeFlags(f *serveFlags) *flag.FlagSet {
	if f == nil {
		f = new(serveFlags)
	}
	fs := newFlagSet("serve")
	fs.StringVar(&f.config, "c", "", "read the configuration from `FILE` (YAML)")
	fs.StringVar(&f.logLevel, "log-level", "", "log `level`: debug, info, warn or error (overrides log.level; default info)")
	fs.StringVar(&f.logFormat, "log-format", "", "log `format`: json or console (overrides log.format; default json with -c, console without)")
	fs.StringVar(&f.quick.imaps, "imaps", "", "quick mode: listen for implicit TLS on `ADDR`, e.g. :993")
	fs.StringVar(&f.quick.starttls, "starttls", "", "quick mode: listen for plaintext + STARTTLS on `ADDR`, e.g. :143")
	fs.StringVar(&f.quick.backend, "backend", "", "quick mode: the backend IMAP server `URL`: imap://, imap+starttls:// or imaps://host:port (see above)")
	fs.StringVar(&f.quick.cert, "cert", "", "quick mode: TLS certificate chain `FILE` (PEM) shown to clients")
	fs.StringVar(&f.quick.key, "key", "", "quick mode: private key `FILE` (PEM) of --cert")
	fs.BoolVar(&f.quick.sendID, "send-id", false, "quick mode: send the client's address to the backend with ID before login (Dovecot: login_trusted_networks)")
	fs.StringVar(&f.quick.hostname, "hostname", "", "quick mode: `name` in the greeting (default imapwarden)")
	fs.Var(&f.quick.admin, "admin", "quick mode: the admin listener (metrics, probes, sessions) on `ADDR`, loopback only as it has no token; \"\" turns it off, :0 picks a free port (default 127.0.0.1:9143)")
	return fs
}

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f serveFlags
	fs := newServeFlags(&f)
	if code, ok := parseFlags(fs, args, serveUsage, stdout, stderr); !ok {
		return code
	}
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "imapwarden serve: "+format+"\n", args...)
		return exitError
	}
	// Flags that cannot work are usage errors (exit 2); a configuration
	// that does not check, or a proxy that fails, is a runtime error (1).
	usage := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "imapwarden serve: "+format+"\nRun \"imapwarden help serve\" for usage.\n", args...)
		return exitUsage
	}
	if _, _, err := logSettings(logConfig{Level: f.logLevel, Format: f.logFormat}); err != nil {
		return usage("%v", strings.Replace(strings.Replace(err.Error(), "log.level", "--log-level", 1), "log.format", "--log-format", 1))
	}

	var cfg *fileConfig
	switch {
	case f.config != "" && f.quick.any():
		return usage("-c and the quick-mode flags (--imaps, --starttls, --backend, --cert, --key, --send-id, --hostname, --admin) are mutually exclusive: describe listeners and backends in %s", f.config)
	case f.config != "":
		var err error
		if cfg, err = loadConfigFile(f.config); err != nil {
			return fail("%v", err)
		}
	case f.quick.any():
		var err error
		if cfg, err = f.quick.config(); err != nil {
			return usage("%v", indentErr(err))
		}
	default:
		fmt.Fprint(stderr, "imapwarden serve: need -c FILE, or --backend with --imaps and/or --starttls\nRun \"imapwarden help serve\" for usage.\n")
		return exitUsage
	}
	if f.logLevel != "" {
		cfg.Log.Level = f.logLevel
	}
	if f.logFormat != "" {
		cfg.Log.Format = f.logFormat
	}
	level, format, err := logSettings(cfg.Log)
	if err != nil {
		return fail("%v", err)
	}
	atomicLevel := zap.NewAtomicLevelAt(level)
	log := newLoggerAt(stderr, atomicLevel, format)
	defer log.Sync()

	s, err := build(cfg, log)
	if err != nil {
		return fail("%v", err)
	}
	s.level = atomicLevel
	// SIGHUP re-reads the file; quick mode has none and reloads TLS files.
	var reload func() (*setup, error)
	if f.config != "" {
		reload = func() (*setup, error) {
			cfg, err := loadConfigFile(f.config)
			if err != nil {
				return nil, err
			}
			// The flags override the file as at start.
			if f.logLevel != "" {
				cfg.Log.Level = f.logLevel
			}
			if f.logFormat != "" {
				cfg.Log.Format = f.logFormat
			}
			return check(cfg, log)
		}
	}

	ctx, stop := signalContext(ctx)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	if err := runServe(ctx, s, log, hup, reload, nil); err != nil {
		log.Error("imapwarden failed", zap.Error(err))
		return exitError
	}
	return exitOK
}

// signalContext is done at the first SIGINT or SIGTERM. The default handling
// then comes back, so that a second signal stops the process at once instead
// of waiting for the drain.
func signalContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop)
	return ctx, stop
}

// indentErr formats a joined error one cause per indented line.
func indentErr(err error) string {
	if u, ok := err.(interface{ Unwrap() []error }); ok && len(u.Unwrap()) > 1 {
		return "\n" + indent(err.Error())
	}
	return err.Error()
}

// runServe starts the proxy described by s and runs it until ctx is done,
// then drains it. Each value received on hup reloads: the whole
// configuration through reload when it is set (keeping the running one if
// the new one is broken), else the TLS certificate files. started, if not
// nil, is called with the proxy's bound addresses, in listener order, and
// the admin listener's (nil when off).
func runServe(ctx context.Context, s *setup, log *zap.Logger, hup <-chan os.Signal, reload func() (*setup, error), started func(proxy []net.Addr, admin net.Addr)) error {
	s.logWarnings(log)
	defer s.close()
	if s.redis != nil {
		// go-redis logs through a package-level logger; route it to ours
		// while we run.
		defer ratelimit.UseRedisLogger(log.Named("redis"))()
	}
	// Health checks start before the listeners, so that the first
	// logins already see a server that is down.
	s.monitor = pool.NewMonitor(pool.MonitorOptions{Logger: log.Named("backends"), OnEvent: func(e pool.Event) {
		if w := s.wire.Load(); w != nil {
			w.BackendHealth(e)
		}
	}})
	s.monitor.Apply(s.pools)
	if err := s.reg.Register(s.monitor.Collector()); err != nil {
		return fmt.Errorf("backend metrics: %w", err)
	}
	srv, err := proxy.NewServer(s.opts)
	if err != nil {
		return fmt.Errorf("configure proxy: %w", err)
	}
	if err := srv.Start(); err != nil {
		return fmt.Errorf("start proxy: %w", err)
	}
	addrs := srv.Addrs()
	fields := []zap.Field{zap.String("version", versionString())}
	for i, a := range addrs {
		fields = append(fields, zap.Stringer(s.opts.Listeners[i].Name, a))
	}
	adm := newAdmin(srv, s.reg, s.level, &s.adminView, s.adminLimits, log.Named("admin"))
	adm.wire, adm.recent = &s.wire, s.recent
	adm.checks = []readinessCheck{{"tls", func() error { return tlsReady(s.tls) }},
		{"backends", func() error { return s.monitor.Set().Ready() }}}
	adm.backends = &backendsAPI{mon: s.monitor, srv: srv}
	if s.trail != nil {
		adm.checks = append(adm.checks, readinessCheck{"audit", auditReady(s.trail, s.queueSize)})
	}
	adm.limiter.Store(s.limiter)
	as, err := newAdminServer(adm, s.adminServing(), log.Named("admin"))
	if err != nil {
		srv.Close()
		srv.Wait()
		return fmt.Errorf("admin listener: %w", err)
	}
	defer as.close()
	adminAddr := as.addr()
	if adminAddr != nil {
		fields = append(fields, zap.Stringer("admin", adminAddr))
	}
	log.Info("imapwarden started", fields...)
	if started != nil {
		started(addrs, adminAddr)
	}

	var wg sync.WaitGroup
	watchCtx, stopWatch := context.WithCancel(context.Background())
	wg.Go(func() { s.tls.Watch(watchCtx, s.reloadInterval) })
	defer func() {
		stopWatch()
		wg.Wait()
	}()

	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case sig := <-hup:
			reloadAll(s, srv, as, reload, log, sig)
		}
	}

	// Lame duck: not ready any more, so that balancers stop sending new
	// clients, but still accepting those already on their way (a balancer
	// notices only at its next probe); then the drain.
	adm.draining.Store(true)
	if s.lameDuck > 0 {
		log.Info("shutting down: not ready, still serving for the lame-duck period, signal again to stop at once",
			zap.Duration("lame_duck", s.lameDuck))
		select {
		case <-time.After(s.lameDuck):
		case <-s.endLameDuck:
		}
	}
	log.Info("shutting down: draining sessions, signal again to stop at once",
		zap.Duration("drain_timeout", s.drainTimeout))
	start := time.Now()
	dctx, cancel := context.WithTimeout(context.Background(), s.drainTimeout)
	defer cancel()
	if err := srv.Shutdown(dctx); err != nil {
		log.Warn("drain timeout reached, closed the remaining sessions", zap.Duration("waited", time.Since(start)))
	}
	log.Info("imapwarden stopped", zap.Duration("drain", time.Since(start)))
	return nil
}

// validate

const validateUsage = `Usage: imapwarden validate [--connect] -c FILE

Check a configuration file as "imapwarden serve" would, without listening or
dialing: syntax and unknown keys, values and durations, addresses, backend
URLs and routes, and that every certificate, CA bundle and password file can
be read and loaded. Print "ok" and exit 0, or print every problem found and
exit 1. Warnings (legal but risky settings) go to standard error.

With --connect, also resolve and check every backend server as the health
checks do (connect, greeting, STARTTLS, CAPABILITY; no credentials are
sent), print one line per server, and exit 1 if any fails.
`

type validateFlags struct {
	config  string
	connect bool
}

func newValidateFlags(f *validateFlags) *flag.FlagSet {
	if f == nil {
		f = new(validateFlags)
	}
	fs := newFlagSet("validate")
	fs.StringVar(&f.config, "c", "", "the configuration `FILE` to check (required)")
	fs.BoolVar(&f.connect, "connect", false, "also resolve and greet every backend server")
	return fs
}

func cmdValidate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f validateFlags
	fs := newValidateFlags(&f)
	if code, ok := parseFlags(fs, args, validateUsage, stdout, stderr); !ok {
		return code
	}
	if f.config == "" {
		fmt.Fprint(stderr, "imapwarden validate: -c FILE is required\nRun \"imapwarden help validate\" for usage.\n")
		return exitUsage
	}
	cfg, err := loadConfigFile(f.config)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitError
	}
	// Packages report what they notice while loading (a certificate that
	// expired, say) through the logger: show warnings and worse.
	log := newLogger(stderr, zapcore.WarnLevel, "console")
	s, err := check(cfg, log)
	if err != nil {
		if ce, ok := err.(*configError); ok {
			ce.File = f.config
		}
		fmt.Fprintln(stderr, err)
		return exitError
	}
	for _, w := range s.warnings {
		fmt.Fprintf(stderr, "%s: warning: %s\n", f.config, w)
	}
	if f.connect && !connectAll(ctx, s, stdout, stderr) {
		return exitError
	}
	fmt.Fprintln(stdout, "ok")
	return exitOK
}

// connectAll checks every backend server once (validate --connect) and
// prints a line for each; it reports whether all answered.
func connectAll(ctx context.Context, s *setup, stdout, stderr io.Writer) bool {
	ok := true
	for _, r := range s.pools.Check(ctx) {
		name := "backends." + r.Backend + " server " + r.Server
		if r.Server != r.Addr {
			name += " (" + r.Addr + ")"
		}
		if r.Err != nil {
			ok = false
			fmt.Fprintf(stderr, "%s: %v\n", name, r.Err)
			continue
		}
		fmt.Fprintf(stdout, "%s: answers (%v)\n", name, r.Took.Round(time.Millisecond))
	}
	return ok
}

// reloadAll applies a SIGHUP: the configuration file as a whole or not at
// all (applyReload), then the certificate files.
func reloadAll(s *setup, srv *proxy.Server, as *adminServer, reload func() (*setup, error), log *zap.Logger, sig os.Signal) {
	if reload != nil {
		ns, err := reload()
		if err == nil {
			err = applyReload(s, ns, srv, as, log)
		}
		if s.auditWire != nil {
			s.auditWire.Reload("config", "", err)
		}
		s.reloads.record(reloadConfig, err)
		if err != nil {
			// The certificate files are re-read below all the same: they
			// may be what changed.
			log.Error("configuration reload failed, keeping the running configuration", zap.Stringer("signal", sig), zap.Error(err))
		} else {
			ns.logWarnings(log)
			log.Info("configuration reloaded", zap.Stringer("signal", sig))
		}
	}
	err := s.tls.Reload()
	s.reloads.state(reloadTLS, err) // counted by the certificate events
	if err != nil {
		log.Error("tls certificate reload failed, keeping the current certificates", zap.Stringer("signal", sig), zap.Error(err))
	} else {
		log.Info("tls certificates reloaded", zap.Stringer("signal", sig))
	}
}

// applyReload makes a checked configuration ns current, every key of it
// or none (ARCHITECTURE.md §18): a change to a key bound at start
// (reloadKeys) refuses the reload, and so does any step that fails, the
// running configuration staying in force and what ns opened closed. The
// fallible steps (a new policy engine or limiter, the admin listener's
// new address) come before anything running is changed. The running
// engine re-reads its files when the policy section is unchanged; the
// running limiter takes the new options and keeps its counters and
// lockouts.
func applyReload(s, ns *setup, srv *proxy.Server, as *adminServer, log *zap.Logger) (err error) {
	// What ns opened and the reload did not adopt.
	var newEngine *policy.Engine
	var newLimiter *ratelimit.Limiter
	var abortAdmin func()
	defer func() {
		if err == nil {
			return
		}
		ns.authClose.close()
		ns.authClose = nil
		if newEngine != nil {
			newEngine.Close()
		}
		if newLimiter != nil {
			newLimiter.Close()
		}
		if abortAdmin != nil {
			abortAdmin()
		}
	}()
	if s.cfg != nil && ns.cfg != nil {
		if keys := restartChanges(s.cfg, ns.cfg); len(keys) > 0 {
			return &restartError{keys: keys}
		}
	}
	enabled := ns.limiterOpts.Logger != nil // rate limits on
	if ns.limiterOpts.Groups != nil {
		// The groups of the engine in force, whichever it will be.
		ns.limiterOpts.Groups = s.userGroups
	}
	if s.limiter == nil && enabled && ns.limiterOpts.Redis != nil {
		// The store is bound at start, and check closed this one.
		return &restartError{keys: []string{"rate_limits.redis"}}
	}

	d := ns.dynamic()
	// At most the running trail's: what its records hold (ARCHITECTURE.md §11).
	d.Limits.MaxAuditMailboxNames = min(d.Limits.MaxAuditMailboxNames, s.opts.Limits.MaxAuditMailboxNames)
	d.Limits.MaxAuditNameBytes = min(d.Limits.MaxAuditNameBytes, s.opts.Limits.MaxAuditNameBytes)

	engine, evalTime := s.engine, s.policyEval
	switch {
	case s.cfg != nil && ns.cfg != nil && !reflect.DeepEqual(s.cfg.Policy, ns.cfg.Policy) && len(ns.cfg.Policy.Dirs) > 0:
		if evalTime == nil {
			evalTime = newPolicyEvalTime()
		}
		var p problems
		newEngine = newPolicyEngine(&p, ns.cfg.Policy, evalTime, log)
		if err := p.err(nil); err != nil {
			return err
		}
		engine = newEngine
	case s.cfg != nil && ns.cfg != nil && len(ns.cfg.Policy.Dirs) == 0:
		engine = nil
	case s.engine != nil:
		if err := s.engine.Reload(); err != nil {
			return fmt.Errorf("policy: %w", err)
		}
	}
	if s.tls != nil {
		// The client CA bundles are re-read in place, as the policy files:
		// a reload reported applied trusts what they hold now.
		if err := s.tls.ReloadClientCAs(); err != nil {
			return fmt.Errorf("listeners[].client_ca_file: %w", err)
		}
	}
	d.Decider = nil
	if engine != nil {
		d.Decider = engine
	}
	d.Router = reloadRouter(ns, engine)

	lim := s.limiter
	switch {
	case !enabled:
		lim = nil
	case s.limiter == nil:
		if newLimiter, err = ratelimit.New(ns.limiterOpts); err != nil {
			return fmt.Errorf("rate_limits: %w", err)
		}
		lim = newLimiter
	}
	d.Limiter = nil
	if lim != nil {
		d.Limiter = lim
	}

	var commitAdmin func(inForce func())
	nsv := ns.adminServing()
	if sv := s.adminServing(); nsv.addr != sv.addr || nsv.pprof != sv.pprof || !reflect.DeepEqual(nsv.timeouts, sv.timeouts) ||
		s.cfg == nil || ns.cfg == nil || !reflect.DeepEqual(s.cfg.Admin.TLS, ns.cfg.Admin.TLS) {
		if commitAdmin, abortAdmin, err = as.prepare(nsv); err != nil {
			return fmt.Errorf("admin.address: %w", err)
		}
	}

	if s.monitor != nil {
		// The running servers keep their health, drain state and
		// sessions; new ones are checked at once.
		s.monitor.Apply(ns.pools)
	}
	if err := srv.Update(d); err != nil {
		return err
	}
	if lim != nil && lim == s.limiter {
		o := ns.limiterOpts
		o.Redis = s.limiterOpts.Redis
		if err := s.limiter.Update(o); err != nil {
			return fmt.Errorf("rate_limits: %w", err)
		}
	}

	// Nothing fails from here on.
	old := s.authClose
	s.authClose, ns.authClose = ns.authClose, nil
	old.close() // the new authenticators are in use
	s.usersFiles = ns.usersFiles
	s.watchUsersFiles(log)
	if engine != s.engine {
		if s.engine != nil {
			s.engine.Close() // stops its poller; open sessions' decisions keep working
		}
		s.engine, s.policyEval = engine, evalTime
		s.publishEngine()
		newEngine = nil
	}
	if lim != s.limiter {
		if s.limiter != nil {
			// Open sessions still hold its connections: closed at exit.
			s.retired = append(s.retired, s.limiter)
		}
		redis := s.limiterOpts.Redis
		s.limiter, s.limiterOpts = lim, ns.limiterOpts
		s.limiterOpts.Redis = redis
		as.adm.limiter.Store(lim)
		newLimiter = nil
	}
	// Tokens, /config and the console's view follow the file, in force
	// only once nothing serves on an address they were not judged for.
	inForce := func() { s.adminView.Store(ns.adminView.Load()) }
	if commitAdmin != nil {
		abortAdmin = nil
		commitAdmin(inForce)
		if a := as.addr(); a != nil && nsv.addr != s.adminAddr {
			log.Info("admin listener moved", zap.Stringer("admin", a))
		} else if a == nil && s.adminAddr != "" {
			log.Info("admin listener turned off")
		}
	} else {
		inForce()
	}
	s.adminAddr, s.adminTLS, s.adminPprof, s.adminTimeouts = ns.adminAddr, ns.adminTLS, ns.adminPprof, ns.adminTimeouts
	if s.cfg != nil && ns.cfg != nil && ns.cfg.Log.Level != s.cfg.Log.Level {
		if level, _, err := logSettings(ns.cfg.Log); err == nil {
			s.level.SetLevel(level)
		}
	}
	s.drainTimeout, s.lameDuck = ns.drainTimeout, ns.lameDuck
	s.cfg = ns.cfg
	return nil
}

// tlsReady reports whether client TLS has a certificate to serve.
func tlsReady(t *tlsterm.Server) error {
	if t == nil {
		return errors.New("no certificates loaded")
	}
	return nil
}
