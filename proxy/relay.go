package proxy

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// relayState is shared by the two pumps; mu guards every field.
type relayState struct {
	mu       sync.Mutex
	inflight inflightTable
	// freed is signalled when a command completes, for a client pump
	// waiting for room (Limits.MaxInflight) or for a barrier.
	freed chan struct{}
	// ctx is the session as the backend's answers left it (DESIGN §3a):
	// the backend pump changes it only when it completes a barrier
	// command, and the client pump decides nothing while one is in flight.
	ctx imapwire.Context
	// barrier is the state-changing command in flight (SELECT, CLOSE,
	// ENABLE, ...), nil if none.
	barrier *inflight
	// enabled collects the capabilities an in-flight ENABLE's "* ENABLED"
	// named (RFC 5161 §3.2).
	enabled imapwire.Cap
	// A pump waiting for the backend's answer to a synchronizing literal:
	// "+" (true) or the tagged completion of contTag (false). With
	// contSwallow the "+" is not relayed: the client already got ours.
	contArmed   bool
	contTag     string
	contSwallow bool
	contCh      chan bool
	// idle is the IDLE in flight, nil if none; idleCont: its "+"
	// (RFC 9051 §6.3.13) is still to come.
	idle     *inflight
	idleCont bool
	// owing counts the commands the backend owes an answer to, mid that
	// a response is half relayed: the backend's reads then have a
	// deadline (owedReader). cut asks the backend pump to end the session
	// at the next response boundary (a drain past its deadline);
	// atBoundary says it waits between responses.
	owing       atomic.Int32
	mid         atomic.Bool
	cut         atomic.Bool
	atBoundary  atomic.Bool
	sawBye      bool
	backendDone chan struct{}
}

func (r *relayState) arm(tag string, swallow bool) {
	r.mu.Lock()
	r.contArmed, r.contTag, r.contSwallow = true, tag, swallow
	r.mu.Unlock()
}

func (r *relayState) signal(v bool) {
	select {
	case r.contCh <- v:
	default:
	}
}

func (r *relayState) pending(f *inflight) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inflight.find(func(x *inflight) bool { return x == f }) != nil
}

// runRelay runs phase B until either side ends.
func (s *Session) runRelay() {
	r := &relayState{contCh: make(chan bool, 1), backendDone: make(chan struct{}), freed: make(chan struct{}, 1)}
	r.ctx = imapwire.Context{State: imapwire.StateAuth, Delim: s.be.delim, Caps: imapwire.ParseCaps(filterCaps(s.be.caps))}
	s.be.rd.owing, s.be.rd.mid, s.be.rd.cut, s.be.rd.timeout = &r.owing, &r.mid, &r.cut, s.lim.BackendTimeout
	s.connMu.Lock()
	s.relay = r
	s.connMu.Unlock()
	go s.backendPump()
	s.clientPump()
	s.closing.Store(true)
	s.closeConns()
	<-r.backendDone
	r.inflight.each(func(f *inflight) {
		// The session is over: nothing is left to hold back.
		_ = s.auditCompleted(f, &imapwire.Response{}, 0, "")
	})
}

// errStop ends the client pump; the reason was recorded.
var errStop = errors.New("relay stopped")

// clientPump reads client commands, decides, and forwards them.
func (s *Session) clientPump() {
	lim := s.lim
	var idle *inflight
	for {
		wait := lim.AuthIdle
		if idle != nil {
			wait = lim.IdleTimeout
		}
		if !s.waitCommand(wait) {
			s.drain(idle)
			return
		}
		line, lit, hasLit, err := s.sc.ReadLine()
		s.waiting.Store(false)
		if err != nil && isTimeout(err) && s.draining.Load() && len(line) == 0 {
			s.drain(idle)
			return
		}
		if err != nil {
			var se *imapwire.SyntaxError
			if errors.As(err, &se) && line != nil && !nonSyncMarker(line) {
				// A malformed {n}: the client waits for a "+".
				if s.writef("%s BAD %s\r\n", tagOf(line), sanitizeText(se.Msg)) != nil {
					return
				}
				continue
			}
			s.readErr(err)
			return
		}
		start := time.Now()
		if idle != nil && s.relay.pending(idle) {
			f := idle
			idle = nil
			if isDone(line) && !hasLit {
				if s.doneIdle(f, line) != nil {
					return
				}
				continue
			}
			// Only DONE ends IDLE (RFC 9051 §6.3.13): end it for the
			// client, then read the line as the next command.
			if s.doneIdle(f, []byte("DONE\r\n")) != nil {
				return
			}
		}
		idle = nil
		s.commands++
		f, err := s.relayCommand(line, lit, hasLit, start)
		if name := s.parser.Command().Name; name != "" {
			s.countCommand(name)
		}
		if err != nil {
			return
		}
		if f != nil && f.cmd.Name == "IDLE" {
			idle = f
		}
	}
}

// nonSyncMarker reports whether a line ends like a {n+} literal marker,
// even a malformed one: its octets may be in flight.
func nonSyncMarker(line []byte) bool {
	return bytes.HasSuffix(bytes.TrimRight(line, "\r\n"), []byte("+}"))
}

// drain ends the session at a command boundary: an IDLE is ended at the
// backend, commands in flight complete, then the client gets BYE.
func (s *Session) drain(idle *inflight) {
	r := s.relay
	if idle != nil && r.pending(idle) {
		if s.doneIdle(idle, []byte("DONE\r\n")) != nil {
			return
		}
	}
	for {
		r.mu.Lock()
		n := r.inflight.len()
		r.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-r.backendDone:
			return
		case <-r.freed:
		}
	}
	s.sayShutdown()
}

func isDone(line []byte) bool {
	return bytes.EqualFold(bytes.TrimRight(line, "\r\n"), []byte("DONE"))
}

// oweLocked records that the backend owes f an answer; the first owed
// command arms the backend's read deadline at once, since the backend pump
// may be waiting in a read that started with none. Called with mu held.
func (r *relayState) oweLocked(f *inflight, be *backendConn) {
	if f.owed {
		return
	}
	f.owed = true
	if r.owing.Add(1) == 1 {
		be.conn.SetReadDeadline(time.Now().Add(be.rd.timeout))
	}
}

// paidLocked records that the backend answered f (or, for an IDLE, sent
// its "+"). Called with mu held.
func (r *relayState) paidLocked(f *inflight) {
	if f.owed {
		f.owed = false
		r.owing.Add(-1)
	}
}

// doneIdle forwards the DONE that ends an IDLE: from then on the backend
// owes its completion.
func (s *Session) doneIdle(idle *inflight, line []byte) error {
	r := s.relay
	r.mu.Lock()
	if r.inflight.find(func(x *inflight) bool { return x == idle }) != nil {
		r.oweLocked(idle, s.be)
	}
	r.mu.Unlock()
	return s.forwardNow(line)
}

// forwardNow writes bytes to the backend and flushes.
func (s *Session) forwardNow(b []byte) error {
	s.be.out().Write(b)
	return s.flushBackend()
}

func (s *Session) flushBackend() error {
	if err := s.be.flush(); err != nil {
		s.backendLost(err, false)
		return errStop
	}
	return nil
}

// context returns the session's context for a decision. The client pump
// calls it only when no barrier is in flight (waitBarrier).
func (s *Session) context() imapwire.Context {
	r := s.relay
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ctx
}

// waitBarrier waits until no state-changing command is in flight, so that
// the next command is read in the state the backend will run it in
// (DESIGN §3a; RFC 9051 §5.5 forbids clients to pipeline across such
// commands anyway). It also waits for room when MaxInflight commands are
// in flight: the client is read no further (back-pressure, nothing is
// dropped or reordered).
func (s *Session) waitBarrier() error {
	r := s.relay
	for {
		r.mu.Lock()
		busy := r.barrier != nil || r.inflight.len() >= s.lim.MaxInflight
		r.mu.Unlock()
		if !busy {
			return nil
		}
		// What was held back for one write with the next command must
		// leave now: its completion is what is waited for.
		if err := s.flushBackend(); err != nil {
			return err
		}
		select {
		case <-r.freed:
		case <-r.backendDone:
			return errStop
		}
	}
}

// relayCommand handles one command from its first line to its end. It
// returns the in-flight record when the command was forwarded, nil when
// the proxy answered it, and errStop when the session must end.
func (s *Session) relayCommand(line []byte, lit imapwire.Literal, hasLit bool, start time.Time) (*inflight, error) {
	lim := s.lim
	be := s.be
	bytesIn := int64(len(line))
	if err := s.waitBarrier(); err != nil {
		return nil, err
	}
	ctx := s.context()
	if ok, err := s.checkedLine(line, lit, hasLit, true); !ok {
		return nil, err
	}
	cmd := s.parser.Command()
	switch {
	case cmd.Name == "LOGIN" || cmd.Name == "AUTHENTICATE" || cmd.Name == "STARTTLS":
		return nil, s.refuse(cmd, lit, hasLit, "BAD", "[CLIENTBUG] Already logged in")
	case cmd.Spec == nil:
		return nil, s.refuse(cmd, lit, hasLit, "BAD", "Unknown command")
	case s.inFlight(cmd.Tag):
		// Responses are matched by tag: two in flight would be
		// indistinguishable (RFC 9051 §2.2.1: a unique tag per command).
		return nil, s.refuse(cmd, lit, hasLit, "BAD", "[CLIENTBUG] Tag already in use")
	}
	pend := append(s.litBuf[:0], line...)
	var marks []int // offsets after which the backend's "+" is swallowed
	var f *inflight
	defer func() { s.litBuf = pend[:0] }()
	for hasLit {
		cmd = s.parser.Command()
		isMsg := s.parser.PendingIsMessage()
		// A {n+} the backend cannot take would be read by it as commands
		// (RFC 7888: LITERAL+, or LITERAL- up to 4096 octets).
		if lit.NonSync && !be.hasCap("LITERAL+") && (!be.hasCap("LITERAL-") || lit.Size > literalMinusMax) {
			if f != nil {
				s.setReason("protocol-error")
				s.writef("* BYE [CLIENTBUG] Non-synchronizing literal not available\r\n")
				return f, errStop
			}
			return nil, s.refuse(cmd, lit, true, "BAD", "[CLIENTBUG] Non-synchronizing literals are not available")
		}
		if !isMsg && lit.Size > int64(lim.MaxBufferedLiteral) {
			// Only message data is streamed unseen; everything the
			// decision reads is buffered and judged (DESIGN §3a).
			if f != nil || (lit.NonSync && lit.Size > int64(lim.MaxLine)) {
				s.setReason("literal-too-big")
				s.writef("* BYE [TOOBIG] Literal too big\r\n")
				return f, errStop
			}
			s.srv.auditor.Limit(&s.info, LimitResult{Exceeded: true, Limit: "max_buffered_literal", Key: "session", Code: "TOOBIG", Reason: "Literal too big"})
			return nil, s.refuse(cmd, lit, true, "NO", "[TOOBIG] Literal too big")
		}
		if isMsg && lit.Size > lim.MaxAppendLiteral {
			if f != nil || lit.NonSync {
				// Bytes are in flight or the backend is mid-command: the
				// stream cannot be brought back in step.
				s.setReason("literal-too-big")
				s.writef("* BYE [TOOBIG] Literal too big\r\n")
				return f, errStop
			}
			s.srv.auditor.Limit(&s.info, LimitResult{Exceeded: true, Limit: "max_append_literal", Key: "session", Code: "TOOBIG", Reason: "Literal too big"})
			s.sc.IgnoreLiteral()
			return nil, s.writef("%s NO [TOOBIG] Literal too big\r\n", cmd.Tag)
		}
		if err := s.parser.Check(&ctx); err != nil {
			if f != nil {
				s.setReason("protocol-error")
				s.writef("* BYE [CLIENTBUG] Syntax error inside a command\r\n")
				return f, errStop
			}
			return nil, s.refuse(cmd, lit, true, "BAD", sanitizeText(err.(*imapwire.SyntaxError).Msg))
		}
		switch {
		case !isMsg && f == nil:
			if !lit.NonSync {
				// "+" only once the command so far is allowed (DESIGN §3).
				if d := s.decideCommand(cmd, true, &lit); !d.Allow {
					return nil, s.deny(cmd, d, lit, true, start, bytesIn)
				}
				s.writef("+ Ready for literal data\r\n")
				marks = append(marks, len(pend))
			}
			n := len(pend)
			var err error
			if pend, err = s.sc.ReadLiteral(pend, lim.MaxBufferedLiteral); err != nil {
				s.readErr(err)
				return nil, errStop
			}
			s.parser.Literal(pend[n:])
			bytesIn += lit.Size
		case !isMsg:
			// A small literal after part of the command went to the
			// backend (a CATENATE URL): read, judged, then forwarded.
			if ok, err := s.backendReady(f, lit); !ok {
				return f, err
			}
			s.readDeadline(lim.AuthIdle)
			var err error
			n := len(pend)
			if pend, err = s.sc.ReadLiteral(pend, lim.MaxBufferedLiteral); err != nil {
				s.readErr(err)
				return f, errStop
			}
			s.parser.Literal(pend[n:])
			be.out().Write(pend[n:])
			pend = pend[:n]
			bytesIn += lit.Size
		default:
			if f == nil {
				// The decision point: a message literal streamed through.
				d := s.decideCommand(cmd, false, &lit)
				if !d.Allow {
					return nil, s.deny(cmd, d, lit, true, start, bytesIn)
				}
				f = s.register(cmd, d, start, &ctx)
				if !s.forwardPending(f, pend, marks) {
					// The backend ended the command early; the client
					// has its answer and drops or sends this literal.
					return f, s.dropLiteral(lit, true, lim.MaxAppendLiteral)
				}
				pend = pend[:0]
			} else {
				// A later message of a MULTIAPPEND (RFC 3502): limits and
				// policy judge each message. The backend holds the command
				// so far and a refusal cannot be a tagged NO; closing the
				// backend connection aborts the whole MULTIAPPEND, which
				// is atomic (RFC 3502 §6), and the client hears BYE.
				if d := s.decideCommand(cmd, false, &lit); !d.Allow {
					if err := s.audit(cmd, start, bytesIn, &d); err != nil {
						return f, err
					}
					s.setReason("policy-disconnect")
					s.writef("* BYE %s\r\n", denyText(d, "NOPERM"))
					return f, errStop
				}
			}
			if ok, err := s.backendReady(f, lit); !ok {
				return f, err
			}
			s.readDeadline(lim.AuthIdle)
			n, err := s.sc.CopyLiteral(be.out())
			bytesIn += n
			if err != nil {
				if s.be.flush() != nil {
					s.backendLost(err, false)
				} else {
					s.readErr(err)
				}
				return f, errStop
			}
			s.parser.LiteralStreamed(lit.Size)
		}
		var err error
		line, lit, hasLit, err = s.sc.ReadLine()
		if err != nil {
			s.readErr(err)
			return f, errStop
		}
		bytesIn += int64(len(line))
		if f != nil {
			err := imapwire.CheckCommandLine(line)
			if err == nil {
				err = s.parser.Line(line, lit, hasLit)
			}
			if err == nil && !hasLit {
				err = s.parser.Check(&ctx)
			}
			if err != nil {
				// Half the command is at the backend: cannot recover. The
				// malformed rest is not forwarded.
				s.setReason("protocol-error")
				s.writef("* BYE [CLIENTBUG] Syntax error inside a command\r\n")
				return f, errStop
			}
		} else if ok, err := s.checkedLine(line, lit, hasLit, false); !ok {
			return nil, err
		}
		if f != nil {
			be.out().Write(line)
		} else {
			pend = append(pend, line...)
		}
	}
	if f == nil {
		cmd = s.parser.Command()
		if err := s.parser.Check(&ctx); err != nil {
			return nil, s.writef("%s BAD %s\r\n", cmd.Tag, sanitizeText(err.(*imapwire.SyntaxError).Msg))
		}
		if cmd.Name == "COMPRESS" {
			if !strings.EqualFold(cmd.Args[0].Value, "DEFLATE") {
				return nil, s.writef("%s NO [CANNOT] Only COMPRESS DEFLATE is available\r\n", cmd.Tag)
			}
			if d := s.decideCommand(cmd, false, nil); !d.Allow {
				return nil, s.deny(cmd, d, lit, false, start, bytesIn)
			}
			return nil, s.startCompress(cmd.Tag)
		}
		d := s.decideCommand(cmd, false, nil)
		if !d.Allow {
			return nil, s.deny(cmd, d, lit, false, start, bytesIn)
		}
		f = s.register(cmd, d, start, &ctx)
		if !s.forwardPending(f, pend, marks) {
			return f, s.streamOK()
		}
	}
	f.bytesIn = bytesIn
	// Pipelined commands already buffered leave in the same write.
	if s.br.Buffered() == 0 || f.cmd.Name == "IDLE" || f.cmd.Spec.Barrier {
		return f, s.flushBackend()
	}
	return f, nil
}

// backendReady waits, for a synchronizing literal of a command already at
// the backend, for the backend's "+" (relayed to the client, who waits for
// it). A refusal (the tagged reply came instead, and reached the client)
// returns false with a nil error; the literal will not come.
func (s *Session) backendReady(f *inflight, lit imapwire.Literal) (bool, error) {
	if lit.NonSync {
		return true, nil
	}
	s.relay.arm(f.tag, false)
	if err := s.flushBackend(); err != nil {
		return false, err
	}
	if ok, err := s.waitCont(); err != nil || !ok {
		s.sc.IgnoreLiteral()
		return false, err
	}
	return true, nil
}

// inFlight reports whether a command with tag is in flight.
func (s *Session) inFlight(tag string) bool {
	r := s.relay
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inflight.has(tag)
}

// streamOK reports whether the session is still usable after a command
// the backend cut short.
func (s *Session) streamOK() error {
	if s.closing.Load() {
		return errStop
	}
	return nil
}

// checkedLine validates a command line and feeds it to the parser. It
// returns false when the line was answered with BAD, with a non-nil error
// when the session must end.
func (s *Session) checkedLine(line []byte, lit imapwire.Literal, hasLit, first bool) (bool, error) {
	err := imapwire.CheckCommandLine(line)
	if first {
		s.parser.Reset()
	}
	if err == nil {
		err = s.parser.Line(line, lit, hasLit)
	}
	if err == nil {
		return true, nil
	}
	var se *imapwire.SyntaxError
	if !errors.As(err, &se) || (hasLit && lit.NonSync) {
		// A syntax error before a {n+} literal leaves its bytes in flight
		// with no way to tell where the next command starts.
		s.setReason("protocol-error")
		s.writef("* BYE [CLIENTBUG] Syntax error before a literal\r\n")
		return false, errStop
	}
	tag := tagOf(line)
	if !first {
		tag = s.parser.Command().Tag
	}
	if hasLit {
		s.sc.IgnoreLiteral() // synchronizing: the client waits for a "+" it will not get
	}
	return false, s.writef("%s BAD %s\r\n", tag, sanitizeText(se.Msg))
}

// dropLiteral gets rid of an announced literal of a command the proxy
// answers itself: a synchronizing one will not come (no "+" was sent); a
// non-synchronizing one is in flight and is counted away with the rest of
// the command (RFC 7888 §4), up to max bytes, beyond which the session
// ends.
func (s *Session) dropLiteral(lit imapwire.Literal, hasLit bool, max int64) error {
	if !hasLit {
		return nil
	}
	if !lit.NonSync {
		s.sc.IgnoreLiteral()
		return nil
	}
	if lit.Size > max {
		s.setReason("literal-too-big")
		s.writef("* BYE [TOOBIG] Literal too big\r\n")
		return errStop
	}
	if err := s.sc.DiscardLiteral(); err != nil {
		s.readErr(err)
		return errStop
	}
	if err := s.skipRestOfCommand(); err != nil {
		return errStop
	}
	return nil
}

// refuse answers a command the proxy will not forward.
func (s *Session) refuse(cmd *imapwire.Command, lit imapwire.Literal, hasLit bool, status, text string) error {
	if err := s.dropLiteral(lit, hasLit, int64(s.lim.MaxLine)); err != nil {
		return err
	}
	return s.writef("%s %s %s\r\n", cmd.Tag, status, text)
}

// deny answers a command the Decider refused. atLiteral says the command
// stopped at the literal lit (not yet read).
func (s *Session) deny(cmd *imapwire.Command, d Decision, lit imapwire.Literal, atLiteral bool, start time.Time, bytesIn int64) error {
	if err := s.audit(cmd, start, bytesIn, &d); err != nil {
		return err
	}
	if d.Disconnect {
		s.setReason("policy-disconnect")
		s.writef("* BYE %s\r\n", denyText(d, "NOPERM"))
		return errStop
	}
	// The size was checked against the limit by the caller.
	if err := s.dropLiteral(lit, atLiteral, lit.Size); err != nil {
		return err
	}
	return s.writef("%s NO %s\r\n", cmd.Tag, denyText(d, "NOPERM"))
}

// decideCommand asks the Limiter (at the decision point), then the
// Decider, with the selected mailbox current. A Limiter's delay is waited
// outside infoMu, so that the backend pump is never held up by it.
func (s *Session) decideCommand(cmd *imapwire.Command, partial bool, lit *imapwire.Literal) Decision {
	if l := s.dyn.Limiter; l != nil && !partial {
		s.infoMu.Lock()
		res := l.Command(&s.info, cmd)
		if res.hit() {
			s.srv.auditor.Limit(&s.info, res)
		}
		s.infoMu.Unlock()
		if res.Delay > 0 {
			time.Sleep(res.Delay)
		}
		if res.Exceeded {
			code, reason := res.codeReason()
			return Decision{Code: code, Reason: reason}
		}
	}
	s.infoMu.Lock()
	defer s.infoMu.Unlock()
	return s.decide(PointCommand, cmd, partial, lit)
}

// audit records a command the proxy answered itself. On an error the
// session is ending (auditUnavailable) and the caller must answer nothing
// and stop.
func (s *Session) audit(cmd *imapwire.Command, start time.Time, bytesIn int64, d *Decision) error {
	snap := snapshot(cmd)
	s.infoMu.Lock()
	err := s.srv.auditor.Command(&s.info, CommandEvent{
		Command: &snap, Result: "NO", Code: d.Code, Duration: time.Since(start),
		Denied: true, Decision: d, BytesIn: bytesIn, Selected: s.info.Selected,
	})
	s.infoMu.Unlock()
	if err != nil {
		s.wmu.Lock()
		s.auditUnavailable(err)
		s.wmu.Unlock()
		return errStop
	}
	return nil
}

// snapshot copies what the audit needs of a command: never Args, which
// may hold search text or small literal data.
func snapshot(c *imapwire.Command) imapwire.Command {
	out := *c
	out.Args = nil
	out.FetchItems = append([]string(nil), c.FetchItems...)
	out.StoreFlags = append([]string(nil), c.StoreFlags...)
	return out
}

// register records a command about to be forwarded, before its first byte
// leaves, so that the backend pump can match its completion. The selected
// mailbox is not changed here: only the backend's completion changes it
// (DESIGN §3a), and a barrier command holds later ones back until then.
func (s *Session) register(cmd *imapwire.Command, d Decision, start time.Time, ctx *imapwire.Context) *inflight {
	r := s.relay
	// A new record each time: auditors may keep the event's Command.
	f := &inflight{tag: cmd.Tag, cmd: snapshot(cmd), start: start}
	if d.Reason != "" || len(d.Annotations) > 0 {
		f.decision = &d
	}
	f.readContent = cmd.Effects.Has(imapwire.EffReadContent)
	s.infoMu.Lock()
	f.selected = s.info.Selected
	s.infoMu.Unlock()
	r.mu.Lock()
	r.inflight.push(f)
	if cmd.Name == "IDLE" {
		r.idle, r.idleCont = f, true
	}
	r.oweLocked(f, s.be)
	if cmd.Spec.Barrier || s.renamesSelected(cmd, ctx) {
		r.barrier = f
		r.enabled = 0
	}
	r.mu.Unlock()
	return f
}

// renamesSelected reports a RENAME or DELETE of the selected mailbox or of
// one of its parents: the selected mailbox then changes name or goes away,
// so the command is a barrier.
func (s *Session) renamesSelected(cmd *imapwire.Command, ctx *imapwire.Context) bool {
	if (cmd.Name != "RENAME" && cmd.Name != "DELETE") || ctx.State != imapwire.StateSelected {
		return false
	}
	s.infoMu.Lock()
	sel := s.info.Selected
	s.infoMu.Unlock()
	return under(sel, cmd.Mailbox, ctx.Delim)
}

// under reports whether name is mailbox or inside it.
func under(name, mailbox string, delim byte) bool {
	if name == mailbox {
		return true
	}
	return delim != 0 && len(name) > len(mailbox) && name[len(mailbox)] == delim && name[:len(mailbox)] == mailbox
}

// forwardPending sends a held-back command. At each buffered synchronizing
// literal it waits for the backend's "+" and swallows it. It returns false
// when the backend completed the command early (or the session ended).
func (s *Session) forwardPending(f *inflight, pend []byte, marks []int) bool {
	prev := 0
	for _, m := range marks {
		s.be.out().Write(pend[prev:m])
		s.relay.arm(f.tag, true)
		if s.flushBackend() != nil {
			return false
		}
		if ok, err := s.waitCont(); err != nil || !ok {
			return false
		}
		prev = m
	}
	s.be.out().Write(pend[prev:])
	return true
}

// waitCont waits for the backend pump's verdict on a literal.
func (s *Session) waitCont() (bool, error) {
	select {
	case ok := <-s.relay.contCh:
		return ok, nil
	case <-s.relay.backendDone:
		return false, errStop
	}
}

// auditUnavailable ends the session because the audit trail did not take
// a command's record: the reply is not relayed (DESIGN §5, fail closed),
// the client hears BYE (RFC 9051 §7.1.5, RFC 5530 UNAVAILABLE). The
// caller holds wmu.
func (s *Session) auditUnavailable(err error) {
	s.setReason("audit-unavailable")
	s.log.Warn("audit trail unavailable; ending session", zap.Error(err))
	w := s.out()
	w.WriteString("* BYE [UNAVAILABLE] Audit trail unavailable\r\n")
	s.flushOut(w)
	s.idleOut()
	s.closing.Store(true)
	s.closeConns()
}

// backendLost ends the session after the backend connection failed,
// telling the client unless it is the one leaving (RFC 9051 §7.1.5).
func (s *Session) backendLost(err error, haveWmu bool) {
	if s.closing.Load() {
		return
	}
	s.relay.mu.Lock()
	bye := s.relay.sawBye
	s.relay.mu.Unlock()
	if bye {
		s.setReason("backend-bye")
	} else {
		s.setReason("backend-lost")
		s.log.Warn("backend connection lost", zap.String("backend", s.be.b.Name), zap.Error(err))
		s.srv.auditor.Security(&s.info, "backend-lost", s.be.b.Name)
		s.byeClient(haveWmu, "* BYE [UNAVAILABLE] Backend connection lost\r\n")
	}
	s.closing.Store(true)
	s.closeConns()
}

// byeClient writes a last response to the client.
func (s *Session) byeClient(haveWmu bool, bye string) {
	if !haveWmu {
		s.wmu.Lock()
		defer s.wmu.Unlock()
	}
	w := s.out()
	w.WriteString(bye)
	s.flushOut(w)
	s.idleOut()
}

func (s *Session) clientWriteFailed(err error) {
	s.setReason("client-write-error")
	s.log.Debug("client write failed", zap.Error(err))
	s.closing.Store(true)
	s.closeConns()
}
