package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/proxy/imapwire"
	"github.com/imapwarden/imapwarden/proxy/proxyproto"
	"github.com/imapwarden/imapwarden/tlsterm"
)

// Buffer sizes. The client reader only sees commands (small, or APPEND
// data streamed straight through); the writer carries FETCH responses.
const (
	clientReadBuf  = 4 << 10
	clientWriteBuf = 64 << 10
)

// Session is one client connection: the front end until login, then the
// relay to the client's backend (ARCHITECTURE.md §2). The session goroutine
// runs the front end and then the client pump; the backend pump has its
// own goroutine and its own fields (backendPump). What both touch is
// named here with its guard.
//
// The fields are ordered so that the struct packs into a smaller size
// class: an idle session is mostly this struct and crypto/tls's state
// (ARCHITECTURE.md §16).
type Session struct {
	srv *Server
	lo  *ListenerOptions
	// dyn is the Server's Dynamic configuration when the session began;
	// the session keeps it (a reloaded policy engine swaps its policy
	// inside, so open sessions still see policy reloads). lim points to
	// dyn's, never changed.
	dyn *Dynamic
	lim *Limits
	// info is what hooks see. The session goroutine writes it until the
	// relay starts; then only the backend pump changes Selected and
	// SelectedReadOnly, when it completes a barrier command, while the
	// client pump decides nothing (relay.barrier): hooks read it without
	// a lock. infoMu orders those writes with the admin API's snapshot.
	info   SessionInfo
	infoMu sync.Mutex

	raw *countConn // the TCP connection, counting bytes
	// The client's read side, the session goroutine's alone: conn (raw,
	// or TLS on it; connMu guards it for closeConns), br (pooled; given
	// back while waiting, waitCommand), cpre (the byte waitCommand read),
	// sc, and rsrc (the decompressor with COMPRESS, else nil).
	conn net.Conn
	br   *bufio.Reader
	cpre prefixReader
	sc   *imapwire.Scanner
	rsrc io.Reader
	// out is the client's write side, shared by the pumps.
	out clientWriter

	cpreBuf         [1]byte
	tlsActive       bool
	plaintextAuthOK bool // client network is in PlaintextAuthFrom
	// preAuthSlot: the session counts against MaxPreAuthConnections
	// (until login; session goroutine only).
	preAuthSlot bool
	// closeReason is the first CloseReason set, plus one (0: none yet).
	closeReason atomic.Uint32
	// preAuthCommands: the commands before login so far (preAuthDone).
	preAuthCommands int
	// parser is pooled: taken by newSession, given back while the client
	// pump is parked (clientPump.park) and when the session ends.
	parser *imapwire.CommandParser

	// authed is the login's, which runRelay publishes for the code that
	// ends the session: closeConns closes be (connMu guards the pointer;
	// the client pump writes to it), finish ends the accounting and gives
	// be back. Zero until the relay starts (ARCHITECTURE.md §5).
	authed
	relay *relay // after login; connMu guards the pointer
	// uidValidity is the selected mailbox's UIDVALIDITY (RFC 9051 §7.1,
	// the SELECT's untagged OK), 0 when unknown or none is selected;
	// uidValidityNext the one an in-flight SELECT or EXAMINE announced.
	// Both under relay.mu, written by the backend pump.
	uidValidity, uidValidityNext uint32
	// limit is the connection's Limiter handle (nil without a Limiter).
	limit LimitConn

	connMu sync.Mutex
	// closing: the session is ending, its pumps must not start anything.
	closing atomic.Bool
	// draining: the server shuts down; the session ends at the next
	// command boundary. waiting: the session is blocked reading the next
	// command, so a shutdown may interrupt the read. Each side sets its
	// flag before reading the other's, so one of them always sees both.
	draining  atomic.Bool
	waiting   atomic.Bool
	closeOnce sync.Once
	// midCommand: the backend may hold part of a command whose rest will
	// not come (the client pump between a literal command's first byte
	// forwarded and its last). Closing then aborts the backend connection
	// (closeConns).
	midCommand atomic.Bool
	// connsClosed: closeConns began (a pump about to park looks at it
	// after publishing cparked, closeConns after setting it).
	connsClosed atomic.Bool
	byeText     atomic.Pointer[string]
	// cparked is the client pump's parking while it has no goroutine
	// (clientPump.park), nil while it runs; rawClient is the client's
	// TCP connection as the parker watches it, nil when it cannot.
	cparked   atomic.Pointer[parkedPump]
	rawClient syscall.RawConn
	// loginCancel ends the context of a login under way (connMu guards
	// it): the connections it opens (authenticator, router, backend) are
	// the session's from the moment they exist, closed by closeConns and
	// end (ARCHITECTURE.md §15).
	loginCancel context.CancelFunc
}

func newSession(srv *Server, lo *ListenerOptions, c net.Conn) *Session {
	// TCP_NODELAY and keep-alives are on: Go sets both on every TCP
	// connection its listeners accept (a relay that waits for delayed ACKs
	// on small replies stalls ~40 ms); setting them again would cost two
	// system calls a connection (TestSocketOptions).
	if h := srv.opts.wrapClient; h != nil {
		c = h(c)
	}
	raw := &countConn{Conn: wrapSock(c)}
	dyn := srv.dyn.Load()
	s := &Session{srv: srv, lo: lo, raw: raw, conn: raw, dyn: dyn, lim: &dyn.Limits}
	s.info = SessionInfo{
		ID:         newSessionID(),
		Listener:   lo.Name,
		ClientAddr: addrPort(c.RemoteAddr()),
		LocalAddr:  addrPort(c.LocalAddr()),
		Started:    time.Now(),
	}
	s.br = clientReaders.get(s.source())
	s.out.setConn(raw, s.lim.WriteTimeout)
	s.sc = imapwire.NewScanner(s.br, s.lim.MaxLine)
	s.takeParser()
	return s
}

// logger is the server's logger with the session's ID, made when the
// session logs (rarely: failures, debugging) rather than kept, a few
// hundred bytes an idle session would hold. Lazy: With would encode the
// field into a buffer of its own, a kilobyte.
func (s *Session) logger() *zap.Logger {
	return s.srv.log.WithLazy(zap.String("session", s.info.ID))
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// serve runs the session to its end, or until its client pump parks:
// the parker then runs the rest on another goroutine (clientPump.resume).
// Whichever goroutine ends the session calls exit.
func (s *Session) serve() {
	if inPrefixes(s.lo.ProxyProtocolFrom, s.info.ClientAddr.Addr()) && !s.readProxyHeader() {
		s.closeConns()
		s.exit()
		return
	}
	s.plaintextAuthOK = inPrefixes(s.lo.PlaintextAuthFrom, s.info.ClientAddr.Addr())
	s.srv.auditor.SessionOpen(&s.info)
	a := s.open()
	if a.be == nil {
		s.finish(nil)
		s.exit()
		return
	}
	s.leavePreAuth()
	s.runRelay(a)
}

// open runs the session from its connection to its login, which it
// returns; the zero authed when the session ended before.
func (s *Session) open() authed {
	if l := s.dyn.Limiter; l != nil {
		res, lc := l.Connect(&s.info)
		if lc != nil {
			s.limit = lc // released by finish
		}
		if res.hit() {
			s.srv.auditor.Limit(&s.info, res)
		}
		if res.Exceeded {
			// Before TLS on an implicit-TLS port nothing can be said; a
			// refused flood costs no handshake.
			s.setReason(CloseLimit)
			if s.lo.Mode == StartTLS {
				code, reason := res.codeReason()
				s.answer("*", bye(CloseLimit, code, reason))
			}
			return authed{}
		}
	}
	if s.lo.Mode == ImplicitTLS {
		if err := s.handshake(); err != nil {
			s.setReason(CloseTLSHandshake)
			s.logger().Debug("tls handshake failed", zap.Error(err))
			return authed{}
		}
	}
	if d := s.decide(PointConnect, nil, false, nil); !d.Allow {
		d.Disconnect = true // at connect a denial always ends the session
		s.answer("*", decisionReply(d, "NOPERM", ClosePolicyConnect))
		return authed{}
	}
	s.writef("* OK [CAPABILITY %s] %s ready\r\n", s.preAuthCaps(), s.srv.opts.Hostname)
	return s.frontEnd()
}

// exit is the session's last step: the server stops counting it.
func (s *Session) exit() {
	s.leavePreAuth()
	s.srv.untrack(s)
	s.srv.wg.Done()
}

// finish ends the session's accounting and closes it; cp is its client
// pump, nil when it ended before the relay, whose counts the close event
// reports.
func (s *Session) finish(cp *clientPump) {
	if s.limit != nil {
		s.limit.Release()
	}
	s.closeConns()
	// Both pumps have ended (runRelay waits for the backend pump): the
	// pooled buffers have no other user.
	if s.limitRelease != nil {
		s.limitRelease()
	}
	if s.serverRelease != nil {
		s.serverRelease()
	}
	defer func() {
		if s.out.release() {
			s.srv.compressing.Add(-1)
		}
		if s.br != nil {
			clientReaders.put(s.br)
		}
		s.putParser()
		if s.be != nil {
			s.be.release()
		}
	}()
	ev := CloseEvent{
		Reason:   s.reason(),
		Duration: time.Since(s.info.Started),
		BytesIn:  s.raw.in.Load(),
		BytesOut: s.raw.out.Load(),
	}
	if cp != nil {
		ev.Commands, ev.CommandsByName, ev.MessagesFetched = cp.commands, cp.byName.counts(), int(cp.bp.messagesFetched)
		ev.OthersExpunged = int(cp.bp.othersExpunged)
	}
	s.srv.auditor.SessionClose(&s.info, ev)
}

func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// readProxyHeader reads the PROXY header a trusted balancer sends first,
// byte-exact so that a ClientHello behind it is left intact.
func (s *Session) readProxyHeader() bool {
	s.raw.SetReadDeadline(time.Now().Add(s.lim.PreAuthIdle))
	h, err := proxyproto.ReadHeader(s.raw)
	s.raw.SetReadDeadline(time.Time{})
	if err != nil {
		s.logger().Warn("bad PROXY protocol header from a trusted balancer", zap.Stringer("peer", s.info.ClientAddr), zap.Error(err))
		s.srv.opts.Metrics.securityEvent("proxy-protocol-error")
		return false
	}
	if !h.Local {
		s.info.ClientAddr = netip.AddrPortFrom(h.Src.Addr().Unmap(), h.Src.Port())
		s.info.LocalAddr = netip.AddrPortFrom(h.Dst.Addr().Unmap(), h.Dst.Port())
	}
	return true
}

// setReason records why the session ends; the first reason wins.
func (s *Session) setReason(r CloseReason) { s.closeReason.CompareAndSwap(0, uint32(r)+1) }

// reason is why the session ended (client-closed unless something else
// was recorded).
func (s *Session) reason() CloseReason {
	if r := s.closeReason.Load(); r > 0 {
		return CloseReason(r - 1)
	}
	return CloseClientClosed
}

// answer writes one of the proxy's own answers: a tagged NO or BAD, or an
// untagged BYE, which records its close reason and returns errStop (the
// session must end). The one place refusals are written (reply.go).
func (s *Session) answer(tag string, r *reply) error {
	var buf [256]byte
	b := appendReply(buf[:0], tag, r)
	if r.status == "BYE" {
		s.setReason(r.close)
		s.out.send(b)
		return errStop
	}
	return s.out.send(b)
}

func (s *Session) closeConns() {
	s.closeOnce.Do(func() {
		s.connsClosed.Store(true)
		s.connMu.Lock()
		conn, be, r, cancel := s.conn, s.be, s.relay, s.loginCancel
		s.connMu.Unlock()
		if cancel != nil {
			cancel()
		}
		conn.Close()
		s.raw.Close()
		switch {
		case be != nil && s.midCommand.Load():
			be.abort()
		case be != nil:
			be.close()
		}
		if r != nil {
			// A parked backend pump runs again, finds the connection
			// closed and ends.
			r.unpark()
		}
		// A parked client pump runs again, finds the connection closed
		// and ends the session.
		s.unparkClient()
	})
}

// unparkClient starts a parked client pump again (clientPump.park).
func (s *Session) unparkClient() {
	if pp := s.cparked.Load(); pp != nil {
		pp.wake()
	}
}

// shutdown asks the session to end at its next command boundary with
// "* BYE [UNAVAILABLE]"; commands in flight complete first. Only the
// session goroutine writes the BYE, so that it never lands inside a TLS
// handshake or a response.
func (s *Session) shutdown() {
	if s.draining.Swap(true) {
		return
	}
	if s.waiting.Load() {
		// Wake the read; the session sees draining and says BYE.
		s.connMu.Lock()
		s.conn.SetReadDeadline(time.Now())
		s.connMu.Unlock()
	}
	// A parked client pump runs again and sees draining.
	s.unparkClient()
}

// waitCommand marks the session as waiting for the next command, until
// the idle limit. It returns false when the server is draining.
func (s *Session) waitCommand(until time.Time) bool {
	return s.waitClient(until, nil, 0) == waitReady
}

// What waitClient found.
type waitResult uint8

const (
	waitReady waitResult = iota // read on: a command (or the read's error) is there
	waitDrain                   // the server is draining: end at this boundary
	waitGone                    // park took the session: touch nothing more
)

// readUntil sets the client's read deadline to t, or to now when the
// session is draining: shutdown may have set its deadline before ours.
func (s *Session) readUntil(t time.Time) {
	s.conn.SetReadDeadline(t)
	if s.draining.Load() {
		s.conn.SetReadDeadline(time.Now())
	}
}

// What a pump's park did.
type parkVerdict uint8

const (
	parkTaken   parkVerdict = iota // parked: touch nothing more
	parkRefused                    // wait without parking
	parkLater                      // not now: linger again, then ask again
)

// waitClient marks the session as waiting for the next command until
// until. With park (the relay), a client silent for linger (at most
// Limits.ParkAfter; 0 in IDLE: at once) is handed to park, which gives up
// the goroutine (clientPump.park); the session holds no read buffer while
// it waits either way.
func (s *Session) waitClient(until time.Time, park func() parkVerdict, linger time.Duration) waitResult {
	s.waiting.Store(true)
	if s.draining.Load() {
		s.waiting.Store(false)
		return waitDrain
	}
	if s.br != nil && (s.br.Buffered() > 0 || len(s.cpre.pending) > 0) {
		s.readUntil(until)
		return waitReady
	}
	// Wait without holding a read buffer; the byte read (or the error)
	// reaches the scanner through cpre.
	if s.br != nil {
		clientReaders.put(s.br)
		s.br = nil
		s.sc.Reset(nil)
	}
	src := s.source()
	// untilSet: the read's deadline is until. A lingering read's is its
	// own, and until is set only once something came: one deadline (a
	// timer change and a clock read) a command less.
	untilSet := false
	for {
		// Linger first when the session may park. Not with COMPRESS: the
		// decompressor keeps a read's error, a lingering timeout too.
		// Only where parking is on (rawClient): with ParkAfter negative
		// (never) the lingering deadline would be past at once, and the
		// read would time out without ever looking at the connection.
		// linger 0: a deadline already past, the read takes only what
		// TLS holds decrypted or buffered, and the pump parks.
		d := linger
		linger := park != nil && s.rawClient != nil && s.lim.ParkAfter > 0 && s.rsrc == nil && time.Until(until) > d
		if linger {
			s.readUntil(time.Now().Add(d))
		} else if !untilSet {
			s.readUntil(until)
			untilSet = true
		}
		// One byte: TLS keeps the rest of its record for the buffer.
		n, err := io.ReadFull(src, s.cpreBuf[:])
		if n == 0 && linger && isTimeout(err) && !s.draining.Load() {
			// Nothing came, and nothing is buffered: a TLS connection
			// returns its decrypted bytes before it reads, and a timeout
			// leaves it usable (its partial record waits for the rest).
			switch park() {
			case parkTaken:
				return waitGone
			case parkLater:
				continue // linger again
			}
			park = nil // refused: wait here (until), without lingering again
			continue
		}
		s.cpre = prefixReader{pending: s.cpreBuf[:n], err: err, r: src}
		if linger {
			// The rest of the command is read against the idle limit,
			// not the lingering deadline.
			s.readUntil(until)
		}
		break
	}
	s.br = clientReaders.get(&s.cpre)
	if s.sc == nil {
		// Dropped while parked (clientPump.park); only the relay parks,
		// and its client may send no NUL (Session.runRelay).
		s.sc = imapwire.NewScanner(s.br, s.lim.MaxLine)
		s.sc.RefuseNUL()
	} else {
		s.sc.Reset(s.br)
	}
	// shutdown's past deadline does not always win: a blocked read
	// woken by it may find a command that arrived meanwhile. The
	// session was asked to end before that command: it ends.
	if s.draining.Load() {
		s.waiting.Store(false)
		return waitDrain
	}
	return waitReady
}

// sayShutdown ends a drained session.
func (s *Session) sayShutdown() {
	text := "Server shutting down"
	if t := s.byeText.Load(); t != nil {
		text = *t
	}
	s.answer("*", bye(CloseServerShutdown, "UNAVAILABLE", text))
}

// end ends the session like a shutdown, with its own reason and text.
func (s *Session) end(reason CloseReason, text string) {
	s.setReason(reason)
	s.byeText.CompareAndSwap(nil, &text)
	s.shutdown()
	// A login under way is not a command boundary to wait for: it ends
	// now, answered NO [UNAVAILABLE] before the BYE.
	s.connMu.Lock()
	cancel := s.loginCancel
	s.connMu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// loginContext is the context of one login: closeConns and end cancel
// it. stop forgets it once the login is over.
func (s *Session) loginContext() (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	s.connMu.Lock()
	s.loginCancel = cancel
	s.connMu.Unlock()
	if s.connsClosed.Load() || s.byeText.Load() != nil {
		// closeConns or end came before the cancel was published (each
		// sets its mark before it looks).
		cancel()
	}
	return ctx, func() {
		s.connMu.Lock()
		s.loginCancel = nil
		s.connMu.Unlock()
		cancel()
	}
}

// SessionSnapshot describes a live session (admin API).
type SessionSnapshot struct {
	ID       string    `json:"id"`
	User     string    `json:"user,omitempty"`
	Client   string    `json:"client"`
	Listener string    `json:"listener"`
	Backend  string    `json:"backend,omitempty"`
	Server   string    `json:"server,omitempty"`
	Since    time.Time `json:"since"`
	BytesIn  int64     `json:"bytes_in"`
	BytesOut int64     `json:"bytes_out"`
	Selected string    `json:"selected,omitempty"`
	TLS      string    `json:"tls,omitempty"`
}

func (s *Session) snapshot() SessionSnapshot {
	s.infoMu.Lock()
	defer s.infoMu.Unlock()
	snap := SessionSnapshot{
		ID: s.info.ID, User: s.info.User, Client: s.info.ClientAddr.String(), Listener: s.info.Listener,
		Backend: s.info.Backend, Server: s.info.Server, Since: s.info.Started, BytesIn: s.raw.in.Load(), BytesOut: s.raw.out.Load(),
		Selected: s.info.Selected,
	}
	if s.info.TLS != nil {
		snap.TLS = s.info.TLS.Version
	}
	return snap
}

// handshake runs the TLS server handshake on the client connection.
func (s *Session) handshake() error {
	cfg := s.lo.TLS
	tc := tls.Server(s.raw, cfg)
	// A deadline on the socket, not a context: crypto/tls runs a
	// goroutine per handshake to watch a context that can be cancelled,
	// and this one bounds the same reads and writes.
	s.raw.SetDeadline(time.Now().Add(s.lim.PreAuthIdle))
	err := tc.Handshake()
	s.raw.SetDeadline(time.Time{})
	if err != nil {
		s.srv.opts.Metrics.handshake(s.lo.Name, err, "")
		return err
	}
	cs := tc.ConnectionState()
	// ALPACA: a peer that negotiated another protocol is not an IMAP client.
	if cs.NegotiatedProtocol != "" && cs.NegotiatedProtocol != "imap" {
		tc.Close()
		return errors.New("alpn protocol is not imap")
	}
	s.connMu.Lock()
	s.conn = tc
	s.connMu.Unlock()
	s.tlsActive = true
	s.infoMu.Lock()
	s.info.TLS = describeTLS(cs)
	s.infoMu.Unlock()
	s.br.Reset(s.source())
	s.out.setConn(tc, s.lim.WriteTimeout)
	s.sc.Reset(s.br)
	s.srv.auditor.TLSStarted(&s.info)
	return nil
}

func describeTLS(cs tls.ConnectionState) *TLSInfo {
	d := tlsterm.Describe(cs)
	ti := &TLSInfo{Version: d.Version, Cipher: d.Cipher, ServerName: d.ServerName, ALPN: d.ALPN, ClientCertSubject: d.ClientCertSubject,
		ClientCertSANs: d.ClientCertSANs, ClientCertVerified: d.ClientCertVerified}
	if len(cs.PeerCertificates) > 0 {
		ti.ClientCertCN = cs.PeerCertificates[0].Subject.CommonName
	}
	return ti
}

// authAllowed reports whether credentials may be sent now (RFC 9051 §6.2.3).
func (s *Session) authAllowed() bool { return s.tlsActive || s.plaintextAuthOK }

func (s *Session) preAuthCaps() string {
	caps := "IMAP4rev1 LITERAL+ SASL-IR ID"
	if !s.tlsActive && s.lo.Mode == StartTLS {
		caps += " STARTTLS"
	}
	if s.authAllowed() {
		caps += " AUTH=PLAIN AUTH=LOGIN"
		if _, ok := s.tokenAuth(); ok {
			caps += " AUTH=OAUTHBEARER AUTH=XOAUTH2"
		}
		if s.lo.CertLogin && s.info.TLS.certUser() != "" {
			caps += " AUTH=EXTERNAL"
		}
	} else {
		caps += " LOGINDISABLED"
	}
	return caps
}

// decideArgs is a decision's input (a Decider keeps nothing of it):
// pooled, not a session's own, which an idle session would hold (80
// bytes, ARCHITECTURE.md §16).
type decideArgs struct {
	in  DecisionInput
	lit imapwire.Literal
}

var (
	hitAuditMailboxNames = LimitResult{Exceeded: true, Limit: "max_audit_mailbox_names", Key: "session", Code: "LIMIT", Reason: "Too many mailboxes in one command"}
	hitAuditNameBytes    = LimitResult{Exceeded: true, Limit: "max_audit_name_bytes", Key: "session", Code: "LIMIT", Reason: "Names too long for one command"}
)

var decideArgsPool = sync.Pool{New: func() any { return new(decideArgs) }}

func (s *Session) decide(p Point, cmd *imapwire.Command, partial bool, lit *imapwire.Literal) Decision {
	if p == PointCommand && cmd != nil && max(len(cmd.Sources()), len(cmd.Mailboxes())) > s.lim.MaxAuditMailboxNames {
		// Its record could not name every mailbox it reads or watches:
		// refused rather than recorded without some (ARCHITECTURE.md §11).
		s.srv.auditor.Limit(&s.info, hitAuditMailboxNames)
		return Decision{Code: "LIMIT", Reason: "Too many mailboxes in one command"}
	}
	if p == PointCommand && cmd != nil && !s.auditNamesFit(cmd) {
		// Its record could not name who did what to what whole
		// (ARCHITECTURE.md §11).
		s.srv.auditor.Limit(&s.info, hitAuditNameBytes)
		return Decision{Code: "LIMIT", Reason: "Names too long for one command"}
	}
	a := decideArgsPool.Get().(*decideArgs)
	in := &a.in
	*in = DecisionInput{Point: p, Session: &s.info, Command: cmd, Partial: partial, Limits: s.limit}
	if p == PointCommand && s.be != nil && s.be.names != nil {
		in.Names = s.be.names
	}
	if lit != nil {
		a.lit = *lit
		in.Literal = &a.lit
	}
	// The Decider bounds its own evaluation (policy.eval_timeout): a
	// context with a deadline would cost every decision, the fast path too.
	d := s.dyn.Decider.Decide(context.Background(), in)
	*a = decideArgs{}
	decideArgsPool.Put(a)
	return d
}

// auditNamesFit tells whether the fields of cmd's audit record that say
// who did what to what total, encoded as JSON strings, at most
// Limits.MaxAuditNameBytes: the trail writes them whole then
// (ARCHITECTURE.md §11). A byte takes at most 6 encoded, so most commands
// are answered from their lengths.
func (s *Session) auditNamesFit(cmd *imapwire.Command) bool {
	var one [7]string
	single := append(one[:0], s.info.User, cmd.Name, cmd.Mailbox, cmd.Destination, s.info.Selected)
	if x := cmd.Named; x != nil {
		single = append(single, x.Identifier, x.Rights)
	}
	lists := [...][]string{single, cmd.Sources(), cmd.Mailboxes()}
	n := 0
	for _, l := range lists {
		for _, v := range l {
			n += len(v)
		}
	}
	if 6*n <= s.lim.MaxAuditNameBytes {
		return true
	}
	n = 0
	for _, l := range lists {
		for _, v := range l {
			n += jsonStringLen(v)
		}
	}
	return n <= s.lim.MaxAuditNameBytes
}

// jsonStringLen is the size of v written as the audit trail writes a JSON
// string, without quotes: \u00XX for a control character but \n, \r and
// \t, \ufffd for a byte that is not UTF-8.
func jsonStringLen(v string) int {
	n := 0
	for i := 0; i < len(v); {
		c := v[i]
		switch {
		case c >= utf8.RuneSelf:
			r, w := utf8.DecodeRuneInString(v[i:])
			if r == utf8.RuneError && w == 1 {
				n += 6
			} else {
				n += w
			}
			i += w
			continue
		case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t':
			n += 2
		case c < 0x20:
			n += 6
		default:
			n++
		}
		i++
	}
	return n
}

// writef writes one response of the proxy's own (not a refusal: those
// go through answer) and flushes it.
func (s *Session) writef(format string, args ...any) error {
	w := s.out.lock()
	if len(args) == 0 {
		w.WriteString(format)
	} else {
		fmt.Fprintf(w, format, args...)
	}
	err := s.out.flush()
	s.out.unlock()
	return err
}

// clientSource is the one reader of the client's bytes (the connection,
// or the decompressor on it with COMPRESS): every read of the session
// goroutine goes through it, and what the client pump holds back for
// the backend leaves before a read that may wait for the client
// (ARCHITECTURE.md §5): the client may be waiting for its answer.
type clientSource Session

// source returns the session's clientSource.
func (s *Session) source() io.Reader { return (*clientSource)(s) }

func (c *clientSource) Read(q []byte) (int, error) {
	s := (*Session)(c)
	if r := s.relay; r != nil && r.held {
		if err := s.flushHeld(); err != nil {
			return 0, err
		}
	}
	if s.rsrc != nil {
		return s.rsrc.Read(q)
	}
	return s.conn.Read(q)
}

// flushHeld sends what the session goroutine wrote to the backend. A
// failure ends the session (backendLost) and returns errStop.
func (s *Session) flushHeld() error {
	s.relay.held = false
	if err := s.be.flush(); err != nil {
		s.backendLost(err, false)
		return errStop
	}
	return nil
}

// readDeadline sets how long the client may stay silent.
func (s *Session) readDeadline(d time.Duration) { s.conn.SetReadDeadline(time.Now().Add(d)) }

// isTimeout reports a deadline expiry.
func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded) || netTimeout(err)
}

// netTimeout is isTimeout's errors.As, apart: its target escapes, and in
// isTimeout it was allocated at each call, a deadline's too (the read
// that lingered before each parking, ARCHITECTURE.md §5).
func netTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// readErr turns a client read error into the session's end: BYE where the
// client can still hear it.
func (s *Session) readErr(err error) {
	var se *imapwire.SyntaxError
	switch {
	case errors.As(err, &se):
		s.answer("*", bye(CloseProtocolError, "CLIENTBUG", se.Msg))
	case errors.Is(err, imapwire.ErrLineTooLong):
		s.answer("*", byeLineTooLong)
	case isTimeout(err) && s.draining.Load():
		s.sayShutdown()
	case isTimeout(err):
		s.answer("*", byeIdle)
	case errors.Is(err, errStop):
		// The backend was lost flushing before the read (flushHeld).
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, io.ErrUnexpectedEOF):
		s.setReason(CloseClientClosed)
	default:
		s.setReason(CloseReadError)
		s.logger().Debug("client read failed", zap.Error(err))
	}
}

// countConn counts bytes each way. Under TLS it can gather the records
// of one large write into one system call (gather).
type countConn struct {
	net.Conn
	in, out atomic.Int64
	// wmu guards batch and flushing. The only write that can come during
	// a gather is tls.Conn.Close's close_notify: while records are
	// gathered it joins them, after them; while they are written it fails
	// at once, as it is not sent during a Write either, so that the close
	// that follows it breaks a write blocked on a client that stopped
	// reading.
	wmu      sync.Mutex
	batch    *[]byte // the records gathered; nil when not gathering
	flushing bool
}

func (c *countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *countConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	switch {
	case c.batch != nil:
		*c.batch = append(*c.batch, p...)
		c.wmu.Unlock()
		return len(p), nil
	case c.flushing:
		c.wmu.Unlock()
		return 0, errGatherBusy
	}
	c.wmu.Unlock()
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}

var errGatherBusy = errors.New("a gathered write is under way")

// gather writes p through tc, TLS on c, in one write to c: Go's TLS makes
// a record, and a system call, of every 16 KiB (RFC 8446 §5.1), and on a
// bulk FETCH the calls cost more than the copy into one buffer.
func (c *countConn) gather(tc net.Conn, p []byte) (int, error) {
	b := gatherBufs.Get().(*[]byte)
	c.wmu.Lock()
	c.batch = b
	c.wmu.Unlock()
	n, err := tc.Write(p)
	c.wmu.Lock()
	c.batch, c.flushing = nil, true
	c.wmu.Unlock()
	if len(*b) > 0 {
		m, werr := c.Conn.Write(*b)
		c.out.Add(int64(m))
		if werr != nil && err == nil {
			// Whatever part of p went, the record stream is broken.
			n, err = 0, werr
		}
	}
	c.wmu.Lock()
	c.flushing = false
	c.wmu.Unlock()
	if cap(*b) <= gatherBufSize {
		*b = (*b)[:0]
		gatherBufs.Put(b)
	}
	return n, err
}

const (
	// tlsRecord is the most plaintext a TLS record carries (RFC 8446
	// §5.1); a larger write is gathered.
	tlsRecord = 16 << 10
	// gatherBufSize holds the records of a full client write buffer,
	// each with its header, content type, tag and any padding.
	gatherBufSize = clientWriteBuf + (clientWriteBuf/tlsRecord+1)*(5+1+16+256)
)

var gatherBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, gatherBufSize)
	return &b
}}
