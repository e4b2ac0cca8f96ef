package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/imapwarden/imapwarden/proxy/imapwire"
	"github.com/imapwarden/imapwarden/proxy/proxyproto"
)

// Backend read buffer: FETCH responses come through it, so it is sized for
// throughput; the writer only carries commands and APPEND data.
const (
	backendReadBuf  = 32 << 10
	backendWriteBuf = 8 << 10
	// backendMaxLoginLine bounds response lines while logging in; the relay
	// reads lines in pieces and has no such bound.
	backendMaxLoginLine = 64 << 10
)

var (
	errBackendAuth      = errors.New("backend refused the credentials")
	errBackendInjection = errors.New("backend sent data after its STARTTLS OK")
	// errBackendClosed: the backend said BYE or closed the connection
	// (not a timeout) before the command's completion.
	errBackendClosed = errors.New("backend closed the connection")
	// errLoginDropped: a backend that greeted and took the connection
	// ended it on the login command: what the client sent may be why
	// (Dovecot says "* BYE Input buffer full" to a long LOGIN), so it is
	// a refused login, not a fault of the server (ARCHITECTURE.md §13).
	errLoginDropped = errors.New("backend dropped the login")
	// errNoAuthzid: the client named an authorization identity and the
	// server is logged in to with LOGIN, which has no place for one: the
	// client's request is refused (RFC 5530 AUTHORIZATIONFAILED), no fault
	// of the server (ARCHITECTURE.md §13).
	errNoAuthzid = errors.New("LOGIN cannot carry an authorization identity")
)

// clientsLoginError reports whether a backend login failed over what the
// client sent (its credentials, their form, its authzid) rather than a
// fault of the server: such a failure is a refused login for that client,
// counted by the lockouts, and never reported to the Balancer
// (ARCHITECTURE.md §13).
func clientsLoginError(err error) bool {
	return errors.Is(err, errBackendAuth) || errors.Is(err, errLoginDropped) || errors.Is(err, errNoAuthzid)
}

// backendConn is the proxy's connection to a backend.
type backendConn struct {
	b    *Backend
	raw  net.Conn
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	sc   *imapwire.Scanner
	caps []string // last capability list seen; nil once the relay runs
	// rd is what the relay reads the backend through: it keeps a read
	// deadline while the backend owes an answer (owedReader).
	rd owedReader
	// literalPlus, literalMinus: the backend takes {n+} (RFC 7888), set
	// when the relay starts.
	literalPlus, literalMinus bool
	// delim is the hierarchy delimiter of the personal namespace, from
	// LIST "" "" after login (RFC 9051 §6.3.9); 0 when flat.
	delim byte
	// nsBad: the NAMESPACE answer at login could not be read strictly.
	nsBad bool
	tags  int32
	// names are the backend's namespaces (RFC 2342, from NAMESPACE after
	// login, shared with other sessions; NS nil when it has none) and the
	// backend user logged in as: names of its own mailboxes in the
	// other-users namespace are refused (imapwire.Context.Names).
	names *imapwire.Names
	// pre hands back what waitReadable read into preBuf, which is pooled:
	// held while the backend pump runs, given back when a wait read
	// nothing (the pump parks or ends).
	pre    prefixReader
	preBuf *[backendPrefix]byte
}

var prefixBufs = sync.Pool{New: func() any { return new([backendPrefix]byte) }}

// prefixReader returns what a wait already read (pending, or the error
// reading gave), then reads from r.
type prefixReader struct {
	pending []byte
	err     error
	r       io.Reader
}

func (p *prefixReader) Read(q []byte) (int, error) {
	if len(p.pending) > 0 && len(q) > 0 {
		n := copy(q, p.pending)
		p.pending = p.pending[n:]
		return n, nil
	}
	if p.err != nil {
		err := p.err
		p.err = nil
		return 0, err
	}
	return p.r.Read(q)
}

// backendPrefix is what waitReadable reads while the pooled buffer is
// given back: most responses to a command (a completion, a few untagged
// lines) fit, so that the wait costs no read of its own.
const backendPrefix = 256

// waitReadable gives the read buffer back to the pool and blocks until the
// backend sends something, then takes a buffer again: an idle session
// holds no read buffer. Only the backend pump calls it, at a response
// boundary with nothing buffered (br nil after a failed wait). On an error
// nothing was read and no buffer is held.
func (bc *backendConn) waitReadable() error {
	bc.putReader()
	if bc.preBuf == nil {
		bc.preBuf = prefixBufs.Get().(*[backendPrefix]byte)
	}
	bc.rd.waiting = true
	n, err := bc.rd.Read(bc.preBuf[:])
	bc.rd.waiting = false
	if n == 0 {
		bc.putPrefix()
		if err == nil {
			err = io.ErrNoProgress
		}
		return err
	}
	// An error that came with data comes again at the next read.
	bc.pre = prefixReader{pending: bc.preBuf[:n], r: &bc.rd}
	bc.br = backendReaders.get(&bc.pre)
	if bc.sc == nil {
		bc.sc = imapwire.NewScanner(bc.br, backendMaxLoginLine) // dropped while parked
	} else {
		bc.sc.Reset(bc.br)
	}
	return nil
}

// putReader gives the read buffer back. The scanner lets go of it too:
// a pooled buffer it still pointed to would stay alive, 32 KiB a session,
// once the pool dropped it or while another session used it.
func (bc *backendConn) putReader() {
	if bc.br != nil {
		backendReaders.put(bc.br)
		bc.br = nil
		if bc.sc != nil {
			bc.sc.Reset(nil)
		}
	}
}

// putPrefix gives preBuf back once nothing is left of it to read (the
// read buffer's first fill takes it all).
func (bc *backendConn) putPrefix() {
	if bc.preBuf != nil && len(bc.pre.pending) == 0 {
		bc.pre = prefixReader{}
		prefixBufs.Put(bc.preBuf)
		bc.preBuf = nil
	}
}

func (bc *backendConn) close() { bc.conn.Close(); bc.raw.Close() }

// abort closes the connection with a TCP reset and no TLS close_notify:
// a backend in the middle of a command (an APPEND's literal cut short)
// must see an error, not an end of stream, which some servers take for
// the literal's end and store what they got.
func (bc *backendConn) abort() {
	if tc, ok := tcpOf(bc.raw); ok {
		_ = tc.SetLinger(0)
	}
	bc.raw.Close()
	bc.conn.Close()
}

// release closes the connection and returns its pooled buffers; only once
// no pump uses them any more.
func (bc *backendConn) release() {
	bc.close()
	bc.putReader()
	bc.putPrefix()
	if bc.bw != nil {
		backendWriters.put(bc.bw)
		bc.bw = nil
	}
}

// out returns the writer toward the backend, taking one from the pool if
// needed. Only one goroutine writes to a backend at a time (login, then
// the client pump).
func (bc *backendConn) out() *bufio.Writer {
	if bc.bw == nil {
		bc.bw = backendWriters.get((*backendWrites)(bc))
	}
	return bc.bw
}

// backendWrites is what the backend's writer writes to: the connection,
// with a deadline ahead of each write while uploading (owedReader).
type backendWrites backendConn

func (w *backendWrites) Write(p []byte) (int, error) {
	if w.rd.uploading {
		w.conn.SetWriteDeadline(time.Now().Add(w.rd.timeout))
	}
	return w.conn.Write(p)
}

// stopUploading ends the writes' deadlines (owedReader.uploading): the
// backend owes an answer again, and its reads are timed.
func (bc *backendConn) stopUploading() {
	if bc.rd.uploading {
		bc.rd.uploading = false
		bc.conn.SetWriteDeadline(time.Time{})
	}
}

// flush sends what was written and gives the writer back.
func (bc *backendConn) flush() error {
	if bc.bw == nil {
		return nil
	}
	err := bc.bw.Flush()
	if err == nil {
		backendWriters.put(bc.bw)
		bc.bw = nil
	}
	return err
}

func (bc *backendConn) hasCap(c string) bool { return hasCapIn(bc.caps, c) }

// hasCapIn reports whether list names capability c (case-insensitive).
func hasCapIn(list []string, c string) bool {
	for _, x := range list {
		if strings.EqualFold(x, c) {
			return true
		}
	}
	return false
}

// dialBackend connects, reads the greeting, starts TLS when configured and
// sends ID when configured. Every error wraps an unavailability. Until
// unwatch is called, ctx's end closes the connection (connectBackend).
func dialBackend(ctx context.Context, b *Backend, info *SessionInfo) (bc *backendConn, unwatch func() bool, err error) {
	var hdr []byte
	if b.SendProxy {
		hdr = proxyproto.AppendV2(nil, info.ClientAddr, info.LocalAddr)
	}
	bc, unwatch, err = connectBackend(ctx, b, hdr, b.Security == BackendStartTLS)
	if err != nil {
		return nil, nil, err
	}
	lt := b.LoginTimeout
	if lt <= 0 {
		lt = DefaultLoginTimeout
	}
	bc.raw.SetDeadline(time.Now().Add(lt))
	if len(bc.caps) == 0 {
		if _, _, err := bc.command("CAPABILITY"); err != nil {
			unwatch()
			bc.release()
			return nil, nil, err
		}
	}
	if b.SendID && bc.hasCap("ID") {
		// Pipelined (RFC 9051 §5.5): it leaves with the login command, as
		// Dovecot's own proxy sends it, and is answered first; its
		// completion is read on the way to the login's (commandSteps).
		var buf [256]byte
		bc.send(string(appendBackendID(buf[:0], info)))
	}
	return bc, unwatch, nil
}

// appendBackendID appends the ID command (RFC 2971) that tells the backend
// whom it serves: the client's and the proxy's addresses, as Dovecot's
// login_trusted_networks reads them, and the session ID. One buffer, not
// a string per argument: it is sent on every login.
func appendBackendID(dst []byte, info *SessionInfo) []byte {
	args := [...]string{
		"x-originating-ip", info.ClientAddr.Addr().Unmap().String(),
		"x-originating-port", strconv.Itoa(int(info.ClientAddr.Port())),
		"x-connected-ip", info.LocalAddr.Addr().Unmap().String(),
		"x-connected-port", strconv.Itoa(int(info.LocalAddr.Port())),
		"x-session-id", info.ID,
	}
	dst = append(dst, "ID ("...)
	for i, a := range args {
		if i > 0 {
			dst = append(dst, ' ')
		}
		dst, _ = imapwire.AppendQuoted(dst, a)
	}
	return append(dst, ')')
}

// connectBackend dials b.Addr within b's ConnectTimeout, sends proxyHeader
// first when there is one, starts TLS (tls backends), reads the greeting
// and, when startTLS is set, upgrades with STARTTLS. From the moment the
// connection exists until unwatch is called, ctx's end closes it: the
// session that owns ctx reaches it before it is published anywhere
// (ARCHITECTURE.md §15). unwatch reports false when ctx closed it.
func connectBackend(ctx context.Context, b *Backend, proxyHeader []byte, startTLS bool) (_ *backendConn, unwatch func() bool, _ error) {
	ct := b.ConnectTimeout
	if ct <= 0 {
		ct = DefaultConnectTimeout
	}
	owner := ctx
	ctx, cancel := context.WithTimeout(ctx, ct)
	defer cancel()
	d := net.Dialer{KeepAlive: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", b.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", b.Addr, err)
	}
	raw = wrapSock(raw)
	unwatch = context.AfterFunc(owner, func() { raw.Close() })
	bc, err := handshakeBackend(ctx, b, raw, proxyHeader, startTLS)
	if err != nil {
		unwatch()
		if owner.Err() != nil {
			err = fmt.Errorf("%w (%w)", context.Cause(owner), err)
		}
		return nil, nil, err
	}
	return bc, unwatch, nil
}

// handshakeBackend is connectBackend's after the dial; on an error raw is
// closed.
func handshakeBackend(ctx context.Context, b *Backend, raw net.Conn, proxyHeader []byte, startTLS bool) (*backendConn, error) {
	// TCP_NODELAY is on: Go sets it on every TCP connection it dials
	// (TestSocketOptions).
	deadline, _ := ctx.Deadline()
	raw.SetDeadline(deadline)
	if proxyHeader != nil {
		// Before anything else, TLS included (PROXY protocol §2).
		if _, err := raw.Write(proxyHeader); err != nil {
			raw.Close()
			return nil, fmt.Errorf("send PROXY header to %s: %w", b.Addr, err)
		}
	}
	bc := &backendConn{b: b, raw: raw, conn: raw}
	if b.Security == BackendTLS {
		tc := tls.Client(raw, backendTLSConfig(b))
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("tls handshake with %s: %w", b.Addr, err)
		}
		bc.conn = tc
	}
	bc.rd.c = bc.conn
	bc.br = backendReaders.get(&bc.rd)
	bc.bw = backendWriters.get(bc.conn)
	bc.sc = imapwire.NewScanner(bc.br, backendMaxLoginLine)
	if err := bc.greeting(); err != nil {
		bc.release()
		return nil, err
	}
	if startTLS {
		if err := bc.startTLS(ctx); err != nil {
			bc.release()
			return nil, err
		}
	}
	return bc, nil
}

// ProbeOptions say how far Probe goes.
type ProbeOptions struct {
	// SkipStartTLS ends a starttls backend's check at its greeting.
	SkipStartTLS bool
	// Capability sends CAPABILITY and waits for its tagged OK, so that a
	// server that greets but serves no command fails the check.
	Capability bool
}

// Probe checks that server b answers like an IMAP server, as the health
// checks of proxy/pool and "validate --connect" ask: it connects, reads an
// OK greeting, starts TLS as configured, optionally asks CAPABILITY, and
// says LOGOUT. It sends no credentials. A backend that takes the PROXY
// protocol gets a LOCAL header (the proxy's own connection, PROXY protocol
// §2.2). ctx bounds the whole check; b's ConnectTimeout bounds the part
// up to the greeting and STARTTLS.
func Probe(ctx context.Context, b *Backend, o ProbeOptions) error {
	var hdr []byte
	if b.SendProxy {
		hdr = proxyproto.AppendV2Local(nil)
	}
	// A hung server must not hold the check past ctx (unwatch).
	bc, unwatch, err := connectBackend(ctx, b, hdr, b.Security == BackendStartTLS && !o.SkipStartTLS)
	if err != nil {
		return err
	}
	defer bc.release()
	defer unwatch()
	if d, ok := ctx.Deadline(); ok {
		bc.raw.SetDeadline(d)
	}
	if o.Capability {
		st, _, err := bc.command("CAPABILITY")
		if err != nil && ctx.Err() != nil {
			return fmt.Errorf("backend %s did not answer CAPABILITY in time: %w", b.Addr, ctx.Err())
		}
		if err != nil {
			return fmt.Errorf("capability: %w", err)
		}
		if st != imapwire.StatusOK {
			return fmt.Errorf("backend %s refused CAPABILITY", b.Addr)
		}
	}
	// Polite, not awaited: the server logs a clean logout.
	bc.out().WriteString("iw0 LOGOUT\r\n")
	bc.flush()
	return nil
}

func backendTLSConfig(b *Backend) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if b.TLS != nil {
		cfg = b.TLS.Clone()
	}
	if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
		host, _, err := net.SplitHostPort(b.Addr)
		if err == nil {
			cfg.ServerName = host
		}
	}
	return cfg
}

func (bc *backendConn) greeting() error {
	line, resp, err := bc.readResponse()
	if err != nil {
		return fmt.Errorf("greeting from %s: %w", bc.b.Addr, err)
	}
	if resp.Kind != imapwire.Untagged || resp.Status != imapwire.StatusOK {
		// PREAUTH would hand us someone's mailbox without credentials;
		// BYE means the server refuses us.
		return fmt.Errorf("greeting from %s: %q", bc.b.Addr, truncate(line, 80))
	}
	return nil
}

// startTLS upgrades the backend connection (RFC 9051 §6.2.1).
func (bc *backendConn) startTLS(ctx context.Context) error {
	st, _, err := bc.command("STARTTLS")
	if err != nil {
		return err
	}
	if st != imapwire.StatusOK {
		return fmt.Errorf("backend %s refused STARTTLS", bc.b.Addr)
	}
	// A backend (or a man in the middle) that sends bytes after its OK
	// would have them read as if they came over TLS.
	if bc.br.Buffered() > 0 {
		return errBackendInjection
	}
	tc := tls.Client(bc.raw, backendTLSConfig(bc.b))
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("starttls handshake with %s: %w", bc.b.Addr, err)
	}
	bc.conn = tc
	bc.rd.c = tc
	bc.br.Reset(&bc.rd)
	bc.out().Reset(tc)
	bc.sc.Reset(bc.br)
	bc.caps = nil // learned before TLS: forget (RFC 9051 §6.2.1)
	return nil
}

// login replays the client's credentials, or logs in as the master user.
func (bc *backendConn) login(ctx context.Context, asUser, authzid, user, pass, mech string) error {
	b := bc.b
	// Capabilities change with the login (RFC 9051 §7.2.2): take them from
	// the OK's code, or ask again.
	preLogin := bc.caps
	bc.caps = nil
	hasCap := func(c string) bool { return hasCapIn(preLogin, c) }
	var st imapwire.Status
	var code string
	var err error
	switch {
	case b.Login == LoginMaster && b.MasterSeparator != "":
		// Dovecot's "user*master" form (auth_master_user_separator), for
		// backends that take master logins only through LOGIN.
		if hasCap("LOGINDISABLED") {
			return fmt.Errorf("backend %s advertises LOGINDISABLED: use security starttls or tls", b.Addr)
		}
		st, code, err = bc.loginCommand(asUser+b.MasterSeparator+b.MasterUser, b.MasterPassword, hasCap("LITERAL+"))
	case b.Login == LoginMaster:
		// RFC 4616 §2: authzid the user, authcid the master user (Dovecot
		// master users, Cyrus proxyservers).
		st, code, err = bc.authPlain(sasl.NewPlainClient(asUser, b.MasterUser, b.MasterPassword), hasCap("SASL-IR"))
	case b.Login == LoginPlain || (b.Login == LoginAuto && hasCap("AUTH=PLAIN")):
		st, code, err = bc.authPlain(sasl.NewPlainClient(authzid, user, pass), hasCap("SASL-IR"))
	default:
		if authzid != "" && authzid != user {
			// Only known here under LoginAuto (no AUTH=PLAIN after the
			// greeting); LoginCommand is refused before any dial.
			return fmt.Errorf("backend %s: %w", b.Addr, errNoAuthzid)
		}
		if hasCap("LOGINDISABLED") {
			return fmt.Errorf("backend %s advertises LOGINDISABLED: use security starttls or tls", b.Addr)
		}
		st, code, err = bc.loginCommand(user, pass, hasCap("LITERAL+"))
	}
	if errors.Is(err, errBackendClosed) {
		// It greeted and answered until the login command (ID and
		// CAPABILITY are answered on the way to it): the login, the
		// client's, is what it refused.
		return fmt.Errorf("%w: %w", errLoginDropped, err)
	}
	if err != nil {
		return err
	}
	switch {
	case st == imapwire.StatusOK:
	case strings.EqualFold(code, "UNAVAILABLE"):
		return fmt.Errorf("backend %s: login unavailable", b.Addr)
	case st == imapwire.StatusNO:
		return errBackendAuth
	case st == imapwire.StatusBAD:
		// It answered, and took the client's credentials in the form sent
		// for no login (RFC 9051 §7.1.3): the client's, like a NO.
		return fmt.Errorf("%w: backend %s rejected the login command", errBackendAuth, b.Addr)
	default:
		return fmt.Errorf("backend %s answered the login command %v", b.Addr, st)
	}
	names := &imapwire.Names{User: user}
	switch {
	case b.Login == LoginMaster:
		names.User = asUser
	case authzid != "":
		names.User = authzid
	}
	if len(bc.caps) == 0 {
		// Pipelined with the LIST: answered before it.
		bc.send("CAPABILITY")
	}
	// The namespaces (RFC 2342), pipelined with the LIST: no round trip
	// more per login. The proxy must know which names are other users'
	// (ARCHITECTURE.md §10): a backend without NAMESPACE answers BAD and
	// sends no NAMESPACE data, and then none is known.
	bc.send("NAMESPACE")
	bc.nsBad, bc.names = false, names
	// The delimiter the backend reads mailbox names with: the proxy must
	// split them the same way (ARCHITECTURE.md §10).
	if st, _, err := bc.command(`LIST "" ""`); err != nil {
		return err
	} else if st != imapwire.StatusOK {
		return fmt.Errorf("backend %s: LIST \"\" \"\" failed", b.Addr)
	}
	if bc.nsBad {
		// A NAMESPACE answer the proxy cannot read: it cannot tell other
		// users' names from the user's own.
		return fmt.Errorf("backend %s: malformed NAMESPACE response", b.Addr)
	}
	// What the backend serves unannounced, as the operator declared it.
	names.NS = b.Namespaces.Over(names.NS)
	bc.conn.SetDeadline(time.Time{})
	bc.raw.SetDeadline(time.Time{})
	return nil
}

func (bc *backendConn) authPlain(c sasl.Client, saslIR bool) (imapwire.Status, string, error) {
	_, ir, err := c.Start()
	if err != nil {
		// Only the credentials can make a PLAIN message fail.
		return 0, "", fmt.Errorf("%w: SASL PLAIN: %w", errBackendAuth, err)
	}
	enc := encodeB64(ir)
	if saslIR {
		return bc.commandSteps([]string{"AUTHENTICATE PLAIN " + enc})
	}
	return bc.commandSteps([]string{"AUTHENTICATE PLAIN", enc})
}

// loginCommand sends LOGIN with quoted strings, or literals where needed
// (8-bit credentials), non-synchronizing when the backend has LITERAL+.
func (bc *backendConn) loginCommand(user, pass string, literalPlus bool) (imapwire.Status, string, error) {
	steps := []string{"LOGIN "}
	add := func(v string) {
		if q, ok := imapwire.AppendQuoted(nil, v); ok {
			steps[len(steps)-1] += string(q)
			return
		}
		if literalPlus {
			steps[len(steps)-1] += "{" + strconv.Itoa(len(v)) + "+}\r\n" + v
			return
		}
		steps[len(steps)-1] += "{" + strconv.Itoa(len(v)) + "}"
		steps = append(steps, v)
	}
	add(user)
	steps[len(steps)-1] += " "
	add(pass)
	return bc.commandSteps(steps)
}

// command sends one command line and reads to its tagged completion.
func (bc *backendConn) command(cmd string) (imapwire.Status, string, error) {
	return bc.commandSteps([]string{cmd})
}

// send writes a command line without sending it: it leaves with the next
// command that waits for its completion (commandSteps), which reads and
// drops the responses of those sent before it. Only for commands whose
// status does not matter (ID, CAPABILITY).
func (bc *backendConn) send(cmd string) string {
	bc.tags++
	tag := "iw" + strconv.Itoa(int(bc.tags))
	w := bc.out()
	w.WriteString(tag)
	w.WriteByte(' ')
	w.WriteString(cmd)
	w.WriteString("\r\n")
	return tag
}

// commandSteps sends a command in steps: after each step but the last the
// backend must answer "+" (a synchronizing literal or a SASL challenge).
// It returns the tagged status and its response code.
func (bc *backendConn) commandSteps(steps []string) (imapwire.Status, string, error) {
	tag := bc.send(steps[0])
	for i := range steps {
		if i > 0 {
			bc.out().WriteString(steps[i])
			bc.out().WriteString("\r\n")
		}
		if err := bc.flush(); err != nil {
			return 0, "", fmt.Errorf("write to %s: %w", bc.b.Addr, closedErr(err))
		}
		for {
			_, resp, err := bc.readResponse()
			if err != nil {
				return 0, "", fmt.Errorf("read from %s: %w", bc.b.Addr, closedErr(err))
			}
			if resp.Kind == imapwire.Continuation && i < len(steps)-1 {
				break
			}
			if resp.Kind == imapwire.Tagged && string(resp.Tag) == tag {
				return resp.Status, string(resp.Code), nil
			}
			if resp.Kind == imapwire.Untagged && resp.Status == imapwire.StatusBYE {
				return 0, "", fmt.Errorf("backend %s said BYE: %w", bc.b.Addr, errBackendClosed)
			}
		}
	}
	return 0, "", fmt.Errorf("backend %s: no tagged response", bc.b.Addr)
}

// closedErr marks an error of the connection's end (the peer closed or
// reset it, not a timeout or a parse error) as errBackendClosed.
func closedErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return fmt.Errorf("%w: %w", errBackendClosed, err)
	}
	return err
}

// readResponse reads one response line during login, skipping literals
// (an ID or CAPABILITY reply may carry some). Whether the line ends in one
// is the relay's rule (imapwire.Scanner.ResponseMarker): the greeting and
// status replies end in resp-text.
func (bc *backendConn) readResponse() ([]byte, imapwire.Response, error) {
	line, _, hasLit, err := bc.sc.ReadLine()
	if err != nil && !imapwire.IsMarkerError(err) {
		return nil, imapwire.Response{}, err
	}
	marker := err // settled by the response's kind below
	resp, err := imapwire.ParseResponse(line)
	if err != nil {
		return nil, resp, err
	}
	if hasLit, err = bc.sc.ResponseMarker(&resp, hasLit, marker); err != nil {
		return nil, resp, fmt.Errorf("%s response: %w", resp.Name, err)
	}
	if bytes.EqualFold(resp.Name, capName) || bytes.EqualFold(resp.Code, capName) {
		if caps := parseCapabilities(line); caps != nil {
			bc.caps = caps
		}
	}
	if d, ok := imapwire.ListDelimiter(line); ok {
		bc.delim = d
	}
	if ns, ok, err := imapwire.ParseNamespace(line); ok {
		// Strictly: a literal in it, or anything unknown, is refused.
		if bc.names != nil {
			bc.names.NS = ns
		}
		bc.nsBad = err != nil || hasLit
	}
	for hasLit {
		if err := bc.sc.DiscardLiteral(); err != nil {
			return nil, resp, err
		}
		_, _, hasLit, err = bc.sc.ReadLine()
		if hasLit, err = bc.sc.ResponseMarker(&resp, hasLit, err); err != nil {
			return nil, resp, fmt.Errorf("%s response: %w", resp.Name, err)
		}
	}
	return line, resp, nil
}

func truncate(b []byte, n int) string {
	b = bytes.TrimRight(b, "\r\n")
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}

// owedReader reads the backend and, while the relay is owed an answer
// (owing: commands in flight that must complete, or the rest of a response
// begun), keeps a read deadline timeout ahead of each read: a backend that
// stops answering ends the session, one that streams a large response
// never does (ARCHITECTURE.md §13: no hang). Before the relay starts owing is nil
// and the login's own deadlines apply.
type owedReader struct {
	c net.Conn
	// st is the relay's (nil before it runs): what is owed, mid, cut (a
	// drain past its deadline: wake at once), idling, and rearmed, when
	// relay.oweLocked replaced the deadline of the read under way with
	// timeout's (the first command owed), 0 if it did not.
	st      *owedState
	timeout time.Duration
	// linger, when positive, is the deadline of a read with nothing owed:
	// the backend pump parks when it passes (Limits.ParkAfter). Idling,
	// none at all ...
	linger time.Duration
	// ... but for the first read after a parking: what woke the pump is
	// read, not timed out before the socket is looked at.
	resumed bool
	// hot: the pump's goroutine did work; its linger is hotLinger at most
	// (backendPump.park hands the rest to a fresh goroutine).
	hot bool
	// waiting: the read is waitReadable's, at a response boundary. Only
	// that one lingers; a read for the rest of what the backend began
	// sending is owed it (timeout).
	waiting   bool
	armed     bool // a deadline is set
	lingering bool // ... and it is linger's
	// uploading is the write side's, here in the padding (ARCHITECTURE.md
	// §16): the client pump streams the client's bytes of a command the
	// backend owes no answer yet (relay.sent), and each write to the
	// backend has a deadline timeout ahead, so that a backend that stops
	// reading ends the session (backendWrites, ARCHITECTURE.md §13).
	uploading bool
	// unarming, in tests, runs before a deadline no longer owed is
	// cleared (Options.unarming).
	unarming func()
}

func (r *owedReader) Read(p []byte) (int, error) {
	if r.st != nil {
		resumed := r.resumed
		r.resumed = false
		r.lingering = false
		if r.st.rearmed.Swap(0) != 0 {
			// oweLocked set a deadline during the last read: it is still
			// on the connection, and must go once nothing is owed.
			r.armed = true
		}
		switch {
		case r.st.cut.Load() && !r.st.mid.Load():
			r.c.SetReadDeadline(time.Now())
			r.armed = true
		case r.st.owing.Load() > 0 || r.st.mid.Load():
			r.c.SetReadDeadline(time.Now().Add(r.timeout))
			r.armed = true
		case r.linger > 0 && !r.waiting:
			r.c.SetReadDeadline(time.Now().Add(r.timeout))
			r.armed = true
		case r.linger > 0:
			linger := r.linger
			if r.hot {
				linger = min(linger, hotLinger)
			}
			if r.st.idling.Load() && !resumed {
				// A deadline already past: the read takes only what is
				// buffered, and the pump parks.
				linger = 0
			}
			r.c.SetReadDeadline(time.Now().Add(linger))
			r.armed, r.lingering = true, true
			if r.st.owing.Load() > 0 {
				// Owed since the look above, maybe before oweLocked could
				// see this read: its deadline then.
				r.c.SetReadDeadline(time.Now().Add(r.timeout))
				r.lingering = false
			}
		case r.armed:
			if r.unarming != nil {
				r.unarming()
			}
			r.c.SetReadDeadline(time.Time{})
			r.armed = false
			if r.st.owing.Load() > 0 {
				// Owed since the look above: oweLocked's deadline may
				// have been set before this clear, which undid it.
				r.c.SetReadDeadline(time.Now().Add(r.timeout))
				r.armed = true
			}
		}
	}
	return r.c.Read(p)
}

// lingered reports whether err ended a read begun with linger's deadline
// short of a whole timeout since oweLocked re-armed it: the silence is no
// fault (the deadline may have passed just before oweLocked came).
func (r *owedReader) lingered(err error) bool {
	if !r.lingering || !isTimeout(err) {
		return false
	}
	at := r.st.rearmed.Load()
	return at == 0 || time.Since(time.Unix(0, at)) < r.timeout
}
