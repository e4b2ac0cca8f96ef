package proxy

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// Server accepts client connections on its listeners and runs a Session for
// each.
type Server struct {
	opts    Options // as given; its hooks and limits are in dyn
	log     *zap.Logger
	auditor Auditor
	// auditReady is the Auditor's, when it can tell that no record can
	// be written now (AuditReadiness); nil when it cannot.
	auditReady AuditReadiness
	dyn        atomic.Pointer[Dynamic]

	mu        sync.Mutex
	listeners []net.Listener
	sessions  map[*Session]struct{}
	closing   bool

	wg sync.WaitGroup // accept loops and sessions

	// compressing counts sessions with COMPRESS=DEFLATE active.
	compressing atomic.Int64
	// preAuth counts connections awaiting login (preauth.go).
	preAuth preAuthGate
	// parker holds idle sessions' backend pumps (nil where it cannot);
	// set by Start, closed by release once no session is left.
	parker      *parker
	releaseOnce sync.Once
	released    chan struct{}
	// runners run sessions and backend pumps (runners.go); closed by
	// release once no session is left.
	runners *runners
	// handOvers counts Server.handOver's fresh goroutines (tests).
	handOvers atomic.Int64
}

// NewServer checks opts and returns a Server; Start binds the listeners.
func NewServer(opts Options) (*Server, error) {
	if opts.Router == nil {
		return nil, errors.New("proxy: Options.Router is required")
	}
	if len(opts.Listeners) == 0 {
		return nil, errors.New("proxy: no listeners")
	}
	for i, l := range opts.Listeners {
		if l.TLS == nil {
			return nil, fmt.Errorf("proxy: listener %d (%s): TLS config is required", i, l.Name)
		}
		if l.Mode != ImplicitTLS && l.Mode != StartTLS {
			return nil, fmt.Errorf("proxy: listener %d (%s): unknown mode %q", i, l.Name, l.Mode)
		}
	}
	s := &Server{
		opts:     opts,
		log:      opts.Logger,
		auditor:  opts.Auditor,
		sessions: make(map[*Session]struct{}),
		released: make(chan struct{}),
		runners:  newRunners(),
	}
	s.preAuth.every = preAuthAuditEvery
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.auditor == nil {
		s.auditor = NewLogAuditor(s.log)
	}
	s.auditReady, _ = s.auditor.(AuditReadiness)
	if opts.Metrics != nil {
		s.auditor = metricsAuditor{next: s.auditor, m: opts.Metrics}
	}
	if err := s.Update(Dynamic{Router: opts.Router, Decider: opts.Decider, Limiter: opts.Limiter,
		Authenticator: opts.Authenticator, Limits: opts.Limits, AllowAuthzid: opts.AllowAuthzid,
		UserSeparators: opts.UserSeparators}); err != nil {
		return nil, err
	}
	if s.opts.Hostname == "" {
		s.opts.Hostname = "imapwarden"
	}
	if s.opts.CutGrace <= 0 {
		s.opts.CutGrace = DefaultCutGrace
	}
	return s, nil
}

// Dynamic is the part of the configuration a running Server can change
// (on SIGHUP): sessions already open keep their limits; hooks are read at
// each use.
type Dynamic struct {
	Router        Router
	Decider       Decider
	Limiter       Limiter
	Authenticator Authenticator
	Limits        Limits
	AllowAuthzid  bool
	// UserSeparators: Options.UserSeparators.
	UserSeparators []string

	bounds imapwire.Bounds // Limits' of a command's shape (Update)
}

// Update checks d and makes it current for new work.
func (s *Server) Update(d Dynamic) error {
	if d.Router == nil {
		return errors.New("proxy: Router is required")
	}
	certLogin := false
	for _, l := range s.opts.Listeners {
		certLogin = certLogin || l.CertLogin
	}
	// With certificate logins a master backend is legitimate; password
	// logins to it are still refused without an Authenticator (login).
	if sr, ok := d.Router.(*StaticRouter); ok && d.Authenticator == nil && !certLogin {
		bs := []*Backend{sr.Default}
		for _, b := range sr.Users {
			bs = append(bs, b)
		}
		for _, b := range sr.Domains {
			bs = append(bs, b)
		}
		for _, b := range bs {
			if b != nil && b.Login == LoginMaster {
				// Nobody would check the client's password.
				return fmt.Errorf("proxy: backend %s logs in as a master user: Options.Authenticator is required", b.Name)
			}
		}
	}
	if d.Decider == nil {
		d.Decider = AllowAll{}
	}
	d.Limits = d.Limits.withDefaults()
	d.bounds = d.Limits.bounds()
	s.dyn.Store(&d)
	return nil
}

// Start binds every listener and starts accepting. On error nothing is
// left listening.
func (s *Server) Start() error {
	var lns []net.Listener
	for i := range s.opts.Listeners {
		lo := &s.opts.Listeners[i]
		ln := lo.Listener
		if ln == nil {
			var err error
			ln, err = listen(lo.Addr)
			if err != nil {
				for _, l := range lns {
					l.Close()
				}
				return fmt.Errorf("proxy: listen %s (%s): %w", lo.Addr, lo.Name, err)
			}
		}
		lns = append(lns, ln)
		if len(lo.PlaintextAuthFrom) > 0 {
			s.log.Warn("plaintext authentication allowed before TLS",
				zap.String("listener", lo.Name), zap.Any("networks", lo.PlaintextAuthFrom))
		}
	}
	if pk, err := newParker(); err == nil {
		pk.start = s.runners.run
		s.parker = pk
	} else {
		s.log.Info("idle backend pumps keep their goroutine", zap.Error(err))
	}
	s.mu.Lock()
	s.listeners = lns
	s.mu.Unlock()
	for i, ln := range lns {
		lo := &s.opts.Listeners[i]
		s.log.Info("listening", zap.String("listener", lo.Name), zap.String("mode", string(lo.Mode)),
			zap.Stringer("addr", ln.Addr()))
		s.wg.Add(1)
		go s.acceptLoop(ln, lo)
	}
	return nil
}

// Addrs returns the bound address of each listener, in Options order.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]net.Addr, len(s.listeners))
	for i, ln := range s.listeners {
		out[i] = ln.Addr()
	}
	return out
}

func (s *Server) acceptLoop(ln net.Listener, lo *ListenerOptions) {
	defer s.wg.Done()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosing() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary failures (EMFILE) back off like net/http does.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay *= 2; delay > time.Second {
				delay = time.Second
			}
			s.log.Warn("accept failed", zap.String("listener", lo.Name), zap.Error(err), zap.Duration("retry_in", delay))
			time.Sleep(delay)
			continue
		}
		delay = 0
		if !s.admitPreAuth() {
			s.refusePreAuth(c, lo)
			continue
		}
		sess := newSession(s, lo, c)
		sess.preAuthSlot = true
		if !s.track(sess) {
			sess.leavePreAuth()
			c.Close()
			return
		}
		s.wg.Add(1) // Session.exit
		s.runners.run(sess.serve)
	}
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

func (s *Server) track(sess *Session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.sessions[sess] = struct{}{}
	return true
}

func (s *Server) untrack(sess *Session) {
	s.mu.Lock()
	delete(s.sessions, sess)
	s.mu.Unlock()
}

// Shutdown stops accepting and asks every session to end at its next
// command boundary with "* BYE [UNAVAILABLE]" (commands in flight
// complete); it waits for them, or for ctx, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for _, ln := range s.listeners {
		ln.Close()
	}
	for sess := range s.sessions {
		sess.shutdown()
	}
	s.mu.Unlock()
	s.closePreAuth()
	done := make(chan struct{})
	go func() { s.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	// Past the deadline: responses in flight end at their next boundary
	// (a FETCH after the message being sent) with BYE, then whatever is
	// left is closed (ARCHITECTURE.md §15).
	s.mu.Lock()
	for sess := range s.sessions {
		sess.cutAtBoundary()
	}
	s.mu.Unlock()
	t := time.NewTimer(s.opts.CutGrace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		s.Close()
		<-done
	}
	return ctx.Err()
}

// Close closes listeners and every connection at once.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closing = true
	for _, ln := range s.listeners {
		ln.Close()
	}
	for sess := range s.sessions {
		sess.closeConns()
	}
	s.mu.Unlock()
	s.closePreAuth()
	s.release()
	return nil
}

// Wait blocks until every accept loop and session has ended, then
// releases what the sessions shared (the parker).
func (s *Server) Wait() {
	s.release()
	<-s.released
}

// release closes the parker once every session has ended, whether or not
// anyone waits for that (Close alone must not leave its goroutine).
func (s *Server) release() {
	s.releaseOnce.Do(func() {
		go func() {
			s.wg.Wait()
			s.runners.close()
			if s.parker != nil {
				s.parker.close()
			}
			close(s.released)
		}()
	})
}

func newSessionID() string {
	var b [10]byte
	rand.Read(b[:])
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])
}

// Sessions lists the live sessions.
func (s *Server) Sessions() []SessionSnapshot {
	s.mu.Lock()
	list := make([]*Session, 0, len(s.sessions))
	for sess := range s.sessions {
		list = append(list, sess)
	}
	s.mu.Unlock()
	out := make([]SessionSnapshot, len(list))
	for i, sess := range list {
		out[i] = sess.snapshot()
	}
	return out
}

// EndSession ends the session with id at its next command boundary with
// "* BYE [UNAVAILABLE] Session ended by the administrator". It reports
// whether the session was found.
func (s *Server) EndSession(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sess := range s.sessions {
		if sess.info.ID == id {
			sess.end(CloseEndedByAdmin, "Session ended by the administrator")
			return true
		}
	}
	return false
}

// EndServerSessions ends, each at its next command boundary, the sessions
// logged in to server of backend, with "* BYE [UNAVAILABLE] text" (an
// operator taking the server out of service). It returns how many.
func (s *Server) EndServerSessions(backend, server, text string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for sess := range s.sessions {
		sess.infoMu.Lock()
		on := sess.info.Backend == backend && sess.info.Server == server
		sess.infoMu.Unlock()
		// A session logging in to it right now is ended too, its login
		// cancelled (Session.end): it would otherwise slip past the
		// operator.
		if on {
			sess.end(CloseServerKicked, text)
			n++
		}
	}
	return n
}

// Ready reports whether every listener is bound and the server accepts.
func (s *Server) Ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closing:
		return errors.New("shutting down")
	case len(s.listeners) != len(s.opts.Listeners):
		return errors.New("listeners not bound")
	}
	return nil
}
