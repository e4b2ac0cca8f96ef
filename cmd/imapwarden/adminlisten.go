package main

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
)

// adminServing is how the admin listener serves: what a reload may change
// of it (ARCHITECTURE.md §18).
type adminServing struct {
	addr     string // as configured; "" off
	tls      *tls.Config
	timeouts adminTimeouts
	pprof    bool
}

// adminServer runs serve's admin listener. Its security (tokens, TLS,
// pprof) is judged by buildAdmin against the configured address, so a
// reload that changes the address binds the new one and closes the old
// before the new tokens are in force: nothing ever serves on an address
// its tokens were not judged for. The bound socket outlives an HTTP
// server: a reload that keeps the address serves its new TLS, timeouts
// and handler on the same port.
type adminServer struct {
	adm *admin
	log *zap.Logger

	cur  adminServing
	sock *adminSocket // nil when off
	gen  *adminGen
}

// adminSocket is a bound listener whose accepted connections go to the
// current generation's HTTP server.
type adminSocket struct {
	ln    *limitListener // admin.max_connections
	conns chan net.Conn
	done  chan struct{} // closed when the accept loop ended
	log   *zap.Logger
}

func listenAdmin(addr string, t adminTimeouts, log *zap.Logger) (*adminSocket, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &adminSocket{ln: newLimitListener(ln, t, log), conns: make(chan net.Conn), done: make(chan struct{}), log: log}
	go s.loop()
	return s, nil
}

func (s *adminSocket) loop() {
	defer close(s.done)
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off as
			// net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Error("admin listener accept failed", zap.Error(err), zap.Duration("retry_in", delay))
			time.Sleep(delay)
			continue
		}
		delay = 0
		s.hand(c)
	}
}

// hand gives c to whichever server accepts next; closed with the socket.
func (s *adminSocket) hand(c net.Conn) {
	select {
	case s.conns <- c:
	case <-s.done:
		c.Close()
	}
}

func (s *adminSocket) close() {
	s.ln.Close()
	<-s.done
}

// adminGen is one HTTP server on the socket: a net.Listener that takes
// the socket's connections until closed.
type adminGen struct {
	sock   *adminSocket
	tls    *tls.Config
	closed chan struct{}
	once   sync.Once
	hs     *http.Server
	served chan struct{}
}

func (g *adminGen) Accept() (net.Conn, error) {
	select {
	case <-g.closed:
		return nil, net.ErrClosed
	case c := <-g.sock.conns:
		select {
		case <-g.closed:
			// Taken while closing: the next server's.
			go g.sock.hand(c)
			return nil, net.ErrClosed
		default:
		}
		if g.tls != nil {
			return tls.Server(c, g.tls), nil
		}
		return c, nil
	case <-g.sock.done:
		return nil, net.ErrClosed
	}
}

func (g *adminGen) Close() error {
	g.once.Do(func() { close(g.closed) })
	return nil
}

func (g *adminGen) Addr() net.Addr { return g.sock.ln.Addr() }

// start serves h on sock with sv's TLS and timeouts.
func startAdminGen(sock *adminSocket, sv adminServing, h http.Handler, log *zap.Logger) *adminGen {
	t := sv.timeouts
	g := &adminGen{sock: sock, tls: sv.tls, closed: make(chan struct{}), served: make(chan struct{})}
	g.hs = &http.Server{
		Handler:           http.MaxBytesHandler(h, t.MaxBodyBytes),
		MaxHeaderBytes:    t.MaxHeaderBytes,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		ErrorLog:          zap.NewStdLog(log),
		ConnState:         sock.ln.connState,
	}
	go func() {
		defer close(g.served)
		if err := g.hs.Serve(g); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin listener failed", zap.Error(err))
		}
	}()
	return g
}

// stop ends the server: requests in flight get a few seconds, then their
// connections are closed.
func (g *adminGen) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if g.hs.Shutdown(ctx) != nil {
		g.hs.Close()
	}
	<-g.served
}

// newAdminServer binds sv.addr (unless "") and serves adm there.
func newAdminServer(adm *admin, sv adminServing, log *zap.Logger) (*adminServer, error) {
	a := &adminServer{adm: adm, log: log}
	if sv.addr == "" {
		a.cur = sv
		return a, nil
	}
	sock, err := listenAdmin(sv.addr, sv.timeouts, log)
	if err != nil {
		return nil, err
	}
	a.cur, a.sock = sv, sock
	a.adm.pprof = sv.pprof
	a.gen = startAdminGen(sock, sv, a.adm.handler(), log)
	return a, nil
}

// addr is the bound address; nil when off.
func (a *adminServer) addr() net.Addr {
	if a.sock == nil {
		return nil
	}
	return a.sock.ln.Addr()
}

// prepare binds what sv needs that is not bound yet. The returned commit
// makes sv current, calling inForce between the end of the old server
// and the start of the new one (the tokens' swap); abort undoes prepare.
func (a *adminServer) prepare(sv adminServing) (commit func(inForce func()), abort func(), err error) {
	sock := a.sock
	if sv.addr != a.cur.addr {
		sock = nil
		if sv.addr != "" {
			if sock, err = listenAdmin(sv.addr, sv.timeouts, a.log); err != nil {
				return nil, nil, err
			}
		}
	}
	abort = func() {
		if sock != nil && sock != a.sock {
			sock.close()
		}
	}
	commit = func(inForce func()) {
		if a.gen != nil {
			a.gen.stop()
			a.gen = nil
		}
		if a.sock != nil && a.sock != sock {
			a.sock.close()
		}
		inForce()
		a.cur, a.sock = sv, sock
		if sock != nil {
			sock.ln.set(sv.timeouts)
			a.adm.pprof = sv.pprof
			a.gen = startAdminGen(sock, sv, a.adm.handler(), a.log)
		}
	}
	return commit, abort, nil
}

// close stops serving and unbinds.
func (a *adminServer) close() {
	if a.gen != nil {
		a.gen.stop()
		a.gen = nil
	}
	if a.sock != nil {
		a.sock.close()
		a.sock = nil
	}
}
