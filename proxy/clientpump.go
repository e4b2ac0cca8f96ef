package proxy

import (
	"bytes"
	"errors"
	"strings"
	"time"

	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// clientPump reads the client's commands, decides on each, and forwards
// the allowed ones to the backend (ARCHITECTURE.md §2). It runs on the
// session goroutine, which owns the client's read side (Session.br, sc,
// parser) and the backend's write side; its own fields are its alone.
type clientPump struct {
	r  *relay
	s  *Session     // s.be is the backend's connection
	bp *backendPump // read only once it has ended (Session.endRelay)

	// until is when the client's silence ends the session, set when the
	// pump starts waiting for a command; zero while it handles one. It
	// outlives a parking.
	until time.Time

	idle    *inflight // the IDLE in flight, waiting for DONE
	resumed bool      // parked, then run again: see relay
	// hot: the goroutine did work (its stack may have grown): it lingers
	// only hotLinger before handing the wait to a fresh one (park).
	hot      bool
	litBuf   []byte           // the command held back until its decision point
	ctx      imapwire.Context // the session's state as the command found it
	commands int
	byName   commandCounts // commands by name, for the close event
}

// run reads and relays commands until the session ends, then ends it;
// or until the pump parks (park): the parker then runs it again.
func (p *clientPump) run() {
	if p.relay() {
		return
	}
	p.s.endRelay(p)
}

// relay is run's loop; it returns true when the pump parked.
func (p *clientPump) relay() (parked bool) {
	s := p.s
	lim := s.lim
	for {
		if p.until.IsZero() {
			wait := lim.AuthIdle
			if p.idle != nil {
				wait = lim.IdleTimeout
			}
			p.until = time.Now().Add(wait)
		}
		var park func() parkVerdict
		if s.rawClient != nil {
			park = p.park
		}
		// In IDLE the client has said it will be silent (RFC 9051
		// §6.3.13): park at once. Not the first wait after a parking: its
		// read takes what woke the pump (a deadline already past would
		// time out before the socket is looked at, and park again).
		linger := lim.ParkAfter
		if p.idle != nil && !p.resumed {
			linger, p.hot = 0, false // parks at once: no goroutine lingers
		} else if p.hot {
			linger = min(linger, hotLinger)
		}
		p.resumed = false
		switch s.waitClient(p.until, park, linger) {
		case waitDrain:
			p.drain()
			return false
		case waitGone:
			return true
		}
		p.hot = true
		p.until = time.Time{}
		s.takeParser()
		line, lit, hasLit, err := s.sc.ReadLine()
		s.waiting.Store(false)
		if err != nil && isTimeout(err) && s.draining.Load() && len(line) == 0 {
			p.drain()
			return false
		}
		if err != nil {
			var se *imapwire.SyntaxError
			if errors.As(err, &se) && line != nil && !nonSyncMarker(line) {
				// A malformed {n}: the client waits for a "+".
				if s.answer(s.tagOf(line), syntaxReply(err)) != nil {
					return false
				}
				continue
			}
			s.readErr(err)
			return false
		}
		start := time.Now()
		if f := p.idle; f != nil {
			p.idle = nil
			done, err := p.endIdle(f, line, hasLit)
			if err != nil {
				return false
			}
			if done {
				continue
			}
		}
		p.commands++
		f, err := p.command(line, lit, hasLit, start)
		if c := s.parser.Command(); c.Name != "" {
			p.byName.add(c.Spec) // the parser's look-up of its name
		}
		if err != nil {
			return false
		}
		if f != nil {
			if f.cmd.Name == "IDLE" {
				p.idle = f // held until DONE
			} else {
				p.r.release(f)
			}
		}
	}
}

// park gives up the session goroutine while the client is silent between
// commands (or in IDLE) with nothing read (Session.waitClient): the
// server's parker runs the pump again when the client's connection
// becomes readable or closes, when p.until passes (the read then fails
// with its timeout), and the session when it needs it (Session.shutdown,
// closeConns). It returns parkRefused when the pump must go on waiting
// itself, parkLater while the backend owes an answer. Nothing of the pump
// is touched after parkTaken: the parker may already run it on another
// goroutine. Not on COMPRESS (waitClient).
//
// A hot pump (one whose goroutine did work since it started) hands the
// rest of its wait to a fresh goroutine instead, which lingers up to
// Limits.ParkAfter more and then parks: the stack a command grew (policy,
// audit, TLS: 16 KiB and more) would otherwise stay for the whole linger,
// the most of what a session between commands costs (ARCHITECTURE.md §5,
// §16). A fresh goroutine starts with the runtime's usual stack size.
// Not when ParkAfter is hotLinger or less (the default): the hot linger
// waited all of it.
func (p *clientPump) park() parkVerdict {
	s := p.s
	pk := s.srv.parker
	if pk == nil || s.rawClient == nil || s.draining.Load() || s.connsClosed.Load() {
		return parkRefused
	}
	if p.idle == nil && p.r.owing.Load() > 0 {
		// The backend owes an answer (a FETCH streaming, a slow SEARCH):
		// the client waits for it and sends its next command right after,
		// so the pump lingers on rather than park and resume for each
		// command, with a stack to grow again (ARCHITECTURE.md §5). Not in
		// IDLE: its owed "+" says the client will be silent.
		if h := s.srv.opts.lingerOwed; h != nil {
			h()
		}
		return parkLater
	}
	// An idle session keeps no held-back command, nor a parser: the last
	// command is over, its in-flight record holds a copy.
	p.litBuf = nil
	s.putParser()
	if p.hot {
		p.hot = false
		if s.lim.ParkAfter > hotLinger {
			s.srv.handOver(p.run)
			return parkTaken
		}
		// The hot linger was the whole of ParkAfter: park from here,
		// with no goroutine to start and nothing left to linger.
	}
	// Nor a scanner: it holds nothing between commands (waitClient reset
	// it), and the resumed pump makes one.
	s.sc = nil
	// Nor records kept for reuse: the next command after a silence can
	// allocate one.
	r := p.r
	r.mu.Lock()
	clear(r.free)
	r.free = nil
	// Nor the channels this pump waited on: only it waits on them, and
	// its next wait makes them again (a pending signal is state it looks
	// at first); done makes backendDone again, closed if the backend pump
	// ended. A literal's verdict channel stays while one is armed.
	r.freed, r.backendDone = nil, nil
	if !r.contArmed {
		r.contCh = nil
	}
	r.mu.Unlock()
	// Nor the sockets' functions for the poller: both, since either pump
	// writes to the client, so that the last to park drops them all.
	idleSock(s.raw.Conn)
	idleSock(s.be.raw)
	// cparked is set before the parker can resume the pump, and cleared
	// only by the resumed pump: no unparkClient is lost.
	pp := pk.prepare(s.rawClient, parkClient, p.until, p)
	s.cparked.Store(pp)
	if !pp.arm() {
		s.cparked.CompareAndSwap(pp, nil)
		return parkRefused
	}
	// What asked for the pump between the look above and Store found
	// nothing to wake.
	if s.draining.Load() || s.connsClosed.Load() {
		pp.wake()
	}
	return parkTaken
}

// resume is a parked client pump's new goroutine.
func (p *clientPump) resume() {
	p.s.cparked.Store(nil)
	p.resumed, p.hot = true, false
	p.run()
}

var doneLine = []byte("DONE\r\n")

// endIdle ends the IDLE f (if still in flight) at the client's next line
// and lets go of it. done reports that the line was the DONE, consumed.
func (p *clientPump) endIdle(f *inflight, line []byte, hasLit bool) (done bool, err error) {
	defer p.r.release(f)
	if !p.r.pending(f) {
		return false, nil
	}
	if isDone(line) && !hasLit {
		return true, p.doneIdle(f, line)
	}
	// Only DONE ends IDLE (RFC 9051 §6.3.13): end it for the client, then
	// read the line as the next command.
	return false, p.doneIdle(f, doneLine)
}

// commandCounts counts commands by name: a list, since a session uses a
// few commands, not a map (a few hundred bytes a session keeps), and by
// the command's entry in the table rather than its name (16 bytes each
// rather than 24, ARCHITECTURE.md §16). Unknown names share one key, so
// that a client cannot grow the list.
type commandCounts []nameCount

type nameCount struct {
	spec *imapwire.Spec // nil: a command the table does not know, OTHER
	n    int
}

func (c *commandCounts) add(spec *imapwire.Spec) {
	for i := range *c {
		if (*c)[i].spec == spec {
			(*c)[i].n++
			return
		}
	}
	*c = append(*c, nameCount{spec, 1})
}

// counts is the map the close event reports, nil if none.
func (c commandCounts) counts() map[string]int {
	if len(c) == 0 {
		return nil
	}
	m := make(map[string]int, len(c))
	for _, x := range c {
		name := "OTHER"
		if x.spec != nil {
			name = x.spec.Name
		}
		m[name] = x.n
	}
	return m
}

// nonSyncMarker reports whether a line ends like a {n+} literal marker,
// even a malformed one: its octets may be in flight.
func nonSyncMarker(line []byte) bool {
	return bytes.HasSuffix(bytes.TrimRight(line, "\r\n"), []byte("+}"))
}

func isDone(line []byte) bool {
	return bytes.EqualFold(bytes.TrimRight(line, "\r\n"), []byte("DONE"))
}

// drain ends the session at a command boundary: an IDLE is ended at the
// backend, commands in flight complete, then the client gets BYE.
func (p *clientPump) drain() {
	r := p.r
	if f := p.idle; f != nil && r.pending(f) {
		if p.doneIdle(f, doneLine) != nil {
			return
		}
	}
	for {
		r.mu.Lock()
		n := r.inflight.len()
		if n > 0 {
			r.wantFreedLocked()
		}
		r.mu.Unlock()
		if n == 0 {
			break
		}
		if p.awaitBackend() != nil {
			return
		}
	}
	p.s.sayShutdown()
}

// doneIdle forwards the DONE that ends an IDLE: from then on the backend
// owes its completion. DONE answers IDLE's "+" (RFC 9051 §6.3.13), so a
// DONE the client sent ahead of it waits for it, and whatever the client
// sent after the DONE waits too: each "+" is then the IDLE's that is in
// flight, and a DONE never reaches a backend that refused its IDLE (which
// would read it as a command). A refused IDLE's DONE is dropped.
func (p *clientPump) doneIdle(idle *inflight, line []byte) error {
	r := p.r
	for {
		r.mu.Lock()
		if !r.inflight.holds(idle) {
			r.idling.Store(false)
			r.mu.Unlock()
			return nil // completed before its "+": refused
		}
		if r.idle != idle || !r.idleCont {
			r.oweLocked(idle)
			r.idling.Store(false)
			r.mu.Unlock()
			return p.forwardNow(line)
		}
		r.wantFreedLocked()
		r.mu.Unlock()
		// The IDLE may still wait in the write buffer, behind which the
		// client pipelined its DONE.
		if err := p.awaitBackend(); err != nil {
			return err
		}
	}
}

// awaitBackend flushes what is held back for one write with the next
// command (its answer may be what the caller waits for), then waits until
// the backend pump completes a command or an IDLE's "+" (relay.freeOne),
// or ends. The caller made freed before it looked (relay.wantFreedLocked).
// With awaitCont, the client pump's only wait for the backend pump; its
// waits for the client flush in Session.clientSource (ARCHITECTURE.md §5).
func (p *clientPump) awaitBackend() error {
	if err := p.flush(); err != nil {
		return err
	}
	select {
	case <-p.r.freed:
		return nil
	case <-p.r.done():
		return errStop
	}
}

// awaitCont flushes, then waits for the backend pump's verdict on the
// literal armed (relay.arm, waitCont).
func (p *clientPump) awaitCont() (bool, error) {
	if err := p.flush(); err != nil {
		return false, err
	}
	return p.r.waitCont()
}

// forwardNow writes bytes to the backend and flushes.
func (p *clientPump) forwardNow(b []byte) error {
	p.s.be.out().Write(b)
	return p.flush()
}

func (p *clientPump) flush() error { return p.s.flushHeld() }

// waitBarrier waits until no state-changing command is in flight, so that
// the next command is read in the state the backend will run it in
// (ARCHITECTURE.md §8; RFC 9051 §5.5 forbids clients to pipeline across such
// commands anyway). It also waits for room when MaxInflight commands are
// in flight: the client is read no further (back-pressure, nothing is
// dropped or reordered).
func (p *clientPump) waitBarrier() error {
	r := p.r
	for {
		r.mu.Lock()
		busy := r.barrier != nil || r.alone() || r.stateLost || r.inflight.len() >= p.s.lim.MaxInflight
		if busy {
			r.wantFreedLocked()
		}
		r.mu.Unlock()
		if !busy {
			return nil
		}
		if err := p.awaitBackend(); err != nil {
			return err
		}
	}
}

// room waits, before cmd is decided and registered, until the records in
// flight leave room for its own under MaxInflightBytes (ARCHITECTURE.md
// §12): back-pressure as for MaxInflight. Nothing of cmd is at the backend
// yet, and every command in flight was forwarded whole (a command's
// literals are all sent before the next is read), so each completes
// without the client: the wait ends. Alone, a command over the budget
// goes (MaxCommandBytes bounds it).
//
// A command that reports expunges of its own waits here, likewise, until
// nothing is in flight (relay.alone).
func (p *clientPump) room(cmd *imapwire.Command) error {
	r, held := p.r, int64(heldBy(cmd, readsFetch(cmd), p.s.lim.MaxAuditUIDs))
	alone := reportsExpunges(cmd)
	for {
		r.mu.Lock()
		busy := r.inflight.len() > 0 && (alone || r.inflight.held+held > p.s.lim.MaxInflightBytes)
		if busy {
			r.wantFreedLocked()
		}
		r.mu.Unlock()
		if !busy {
			return nil
		}
		if roomWait != nil {
			roomWait(held)
		}
		if err := p.awaitBackend(); err != nil {
			return err
		}
	}
}

// roomWait, when set (tests), is called each time the client pump waits
// for room under MaxInflightBytes, with the command's charge.
var roomWait func(held int64)

// command handles one command from its first line to its end. It returns
// the in-flight record when the command was forwarded, nil when the proxy
// answered it, and errStop when the session must end.
func (p *clientPump) command(line []byte, lit imapwire.Literal, hasLit bool, start time.Time) (*inflight, error) {
	s, r := p.s, p.r
	bytesIn := int64(len(line))
	if err := p.waitBarrier(); err != nil {
		return nil, err
	}
	p.ctx = r.context()
	ctx := &p.ctx
	if ok, err := p.firstLine(line, lit, hasLit); !ok {
		return nil, err
	}
	cmd := s.parser.Command()
	switch {
	case cmd.Name == "LOGIN" || cmd.Name == "AUTHENTICATE" || cmd.Name == "STARTTLS":
		return nil, p.refuse(cmd, lit, hasLit, bad("CLIENTBUG", "Already logged in"))
	case cmd.Spec == nil:
		return nil, p.refuse(cmd, lit, hasLit, bad("", "Unknown command"))
	case r.inFlight(cmd.Tag):
		// Responses are matched by tag: two in flight would be
		// indistinguishable (RFC 9051 §2.2.1: a unique tag per command).
		return nil, p.refuse(cmd, lit, hasLit, bad("CLIENTBUG", "Tag already in use"))
	}
	if p.overBudget(int64(len(line)), lit, false) {
		return nil, p.tooBig(nil, lit, hasLit)
	}
	if !hasLit {
		// The common case, one line: decided, then written straight to
		// the backend writer (no copy held back).
		return p.whole(cmd, line, ctx, start, bytesIn)
	}
	s.midCommand.Store(true)
	f, err := p.withLiterals(line, lit, ctx, start, bytesIn)
	if err == nil {
		s.midCommand.Store(false)
	}
	return f, err
}

// withLiterals handles a command with literals from its first line (fed
// to the parser) on: held back while its parts are judged, streamed from
// its message on.
func (p *clientPump) withLiterals(line []byte, lit imapwire.Literal, ctx *imapwire.Context, start time.Time, bytesIn int64) (*inflight, error) {
	s, r, be := p.s, p.r, p.s.be
	lim := s.lim
	hasLit := true
	pend := append(p.litBuf[:0], line...)
	held := int64(len(line)) // line pieces and buffered literals, for MaxCommandBytes
	var marks []int          // offsets after which the backend's "+" is swallowed
	var f *inflight
	var decided imapwire.Effects // the effects the last decision saw, once f holds the command
	defer func() { p.litBuf = pend[:0] }()
	for hasLit {
		cmd := s.parser.Command()
		isMsg := s.parser.PendingIsMessage()
		// A {n+} the backend cannot take would be read by it as commands
		// (RFC 7888: LITERAL+, or LITERAL- up to 4096 octets).
		if lit.NonSync && !be.literalPlus && (!be.literalMinus || lit.Size > literalMinusMax) {
			if f != nil {
				return f, s.answer("*", byeNonSyncUnavailable)
			}
			return nil, p.refuse(cmd, lit, true, bad("CLIENTBUG", "Non-synchronizing literals are not available"))
		}
		if !isMsg && lit.Size > int64(lim.MaxBufferedLiteral) {
			// Only message data is streamed unseen; everything the
			// decision reads is buffered and judged (ARCHITECTURE.md §10).
			if f != nil || (lit.NonSync && lit.Size > int64(lim.MaxLine)) {
				return f, s.answer("*", byeLiteralTooBig)
			}
			s.srv.auditor.Limit(&s.info, LimitResult{Exceeded: true, Limit: "max_buffered_literal", Key: "session", Code: "TOOBIG", Reason: "Literal too big"})
			return nil, p.refuse(cmd, lit, true, replyLiteralTooBig)
		}
		if isMsg && s.parser.PendingMessageSize() > lim.MaxAppendLiteral {
			// The limit is one message's, however spelled: a CATENATE's
			// TEXT parts make one (RFC 4469 §5), each of MULTIAPPEND's is
			// one (ARCHITECTURE.md §12).
			s.srv.auditor.Limit(&s.info, LimitResult{Exceeded: true, Limit: "max_append_literal", Key: "session", Code: "TOOBIG", Reason: "Literal too big"})
			if f != nil || lit.NonSync {
				// Bytes are in flight or the backend is mid-command: the
				// stream cannot be brought back in step; the session's
				// end aborts the command at the backend (midCommand).
				return f, s.answer("*", byeLiteralTooBig)
			}
			s.sc.IgnoreLiteral()
			return nil, s.answer(cmd.Tag, replyLiteralTooBig)
		}
		if p.overBudget(held, lit, true) {
			return f, p.tooBig(f, lit, true)
		}
		if err := s.parser.Check(ctx); err != nil {
			if f != nil {
				return f, s.answer("*", byeSyntaxInCommand)
			}
			if err := p.auditAlias(cmd, err, start, bytesIn); err != nil {
				return nil, err
			}
			return nil, p.refuse(cmd, lit, true, syntaxReply(err))
		}
		switch {
		case !isMsg && f == nil:
			if !lit.NonSync {
				// "+" only once the command so far is allowed (ARCHITECTURE.md §10).
				if d := p.decide(cmd, true, &lit); !d.Allow {
					return nil, p.deny(cmd, d, lit, true, start, bytesIn)
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
			held += lit.Size
		case !isMsg:
			// A small literal after part of the command went to the
			// backend (a CATENATE URL): read, judged, then forwarded.
			if stop, err := p.redecide(f, cmd, &decided, start, bytesIn, &lit); stop {
				return f, err
			}
			if ok, err := p.backendReady(f, lit); !ok {
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
			held += lit.Size
		default:
			if f == nil {
				// The decision point: a message literal streamed through.
				if err := p.room(cmd); err != nil {
					return nil, err
				}
				d := p.decide(cmd, false, &lit)
				if !d.Allow {
					return nil, p.deny(cmd, d, lit, true, start, bytesIn)
				}
				// Owed no answer while the client's bytes come, but for
				// a "+" (relay.arm), until all of it went (relay.sent);
				// the backend's writes are timed meanwhile (owedReader.uploading).
				f = p.register(cmd, d, start, ctx, false)
				be.rd.uploading = true
				defer be.stopUploading()
				f.bytesIn.Store(bytesIn)
				decided = cmd.Effects
				if !p.forwardPending(f, pend, marks, !lit.NonSync, nil) {
					// The backend ended the command early; the client
					// has its answer and drops or sends this literal.
					return f, p.dropLiteral(lit, true, lim.MaxAppendLiteral)
				}
				pend = pend[:0]
			} else if d := p.decide(cmd, false, &lit); !d.Allow {
				// A later message of a MULTIAPPEND (RFC 3502): limits and
				// policy judge each message. The backend holds the command
				// so far and a refusal cannot be a tagged NO; closing the
				// backend connection aborts the whole MULTIAPPEND, which
				// is atomic (RFC 3502 §6), and the client hears BYE.
				return f, p.abort(f, cmd, d, start, bytesIn)
			}
			decided = cmd.Effects
			if ok, err := p.backendReady(f, lit); !ok {
				return f, err
			}
			s.readDeadline(lim.AuthIdle)
			n, err := s.sc.CopyLiteral(be.out())
			bytesIn += n
			if err != nil {
				if be.flush() != nil {
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
		held += int64(len(line))
		if f != nil {
			err := s.parser.Line(line, lit, hasLit)
			if err == nil && !hasLit {
				err = s.parser.Check(ctx)
			}
			if err != nil {
				// Half the command is at the backend: cannot recover. The
				// malformed rest is not forwarded.
				return f, s.answer("*", byeSyntaxInCommand)
			}
			if p.overBudget(held, lit, false) {
				return f, p.tooBig(f, lit, hasLit)
			}
			if !hasLit {
				// The command's end (a literal of it is judged above).
				if stop, err := p.redecide(f, cmd, &decided, start, bytesIn, nil); stop {
					return f, err
				}
			}
			if hasLit && !lit.NonSync && !r.arm(f, false) { // before the line can leave (forwardPending)
				// Completed early: the backend reads the line to its end;
				// the client has its answer, not a "+".
				be.out().Write(line)
				if err := p.flush(); err != nil {
					return f, err
				}
				return f, p.dropLiteral(lit, true, lim.MaxAppendLiteral)
			}
			be.out().Write(line)
			continue
		}
		if ok, err := p.nextLine(line, lit, hasLit); !ok {
			return nil, err
		}
		if p.overBudget(held, lit, false) {
			return nil, p.tooBig(nil, lit, hasLit)
		}
		pend = append(pend, line...)
	}
	if f == nil {
		return p.whole(s.parser.Command(), pend, ctx, start, bytesIn, marks...)
	}
	f.bytesIn.Store(bytesIn)
	r.sent(f)
	return f, p.flushUnlessPipelined(f)
}

// whole decides on a command read to its end and forwards it: wire is its
// bytes (held back until now), marks where the backend's "+" for the
// literals already acknowledged must be awaited and swallowed.
func (p *clientPump) whole(cmd *imapwire.Command, wire []byte, ctx *imapwire.Context, start time.Time, bytesIn int64, marks ...int) (*inflight, error) {
	s := p.s
	if err := s.parser.Check(ctx); err != nil {
		if err := p.auditAlias(cmd, err, start, bytesIn); err != nil {
			return nil, err
		}
		return nil, s.answer(cmd.Tag, syntaxReply(err))
	}
	if cmd.Name == "COMPRESS" {
		if !strings.EqualFold(cmd.Args[0].Value, "DEFLATE") {
			return nil, s.answer(cmd.Tag, no("CANNOT", "Only COMPRESS DEFLATE is available"))
		}
		if d := p.decide(cmd, false, nil); !d.Allow {
			return nil, p.deny(cmd, d, imapwire.Literal{}, false, start, bytesIn)
		}
		return nil, s.startCompress(cmd.Tag)
	}
	if err := p.room(cmd); err != nil {
		return nil, err
	}
	d := p.decide(cmd, false, nil)
	if !d.Allow {
		return nil, p.deny(cmd, d, imapwire.Literal{}, false, start, bytesIn)
	}
	f := p.register(cmd, d, start, ctx, true)
	f.bytesIn.Store(bytesIn)
	// A FETCH by sequence number reading content (headers too) gets the
	// UID item, so that its record names the messages read
	// (imapwire.FetchEdit).
	var ed *imapwire.FetchEdit
	e, ok := s.parser.FetchUID()
	if ok {
		ed = &e
	}
	if !p.forwardPending(f, wire, marks, false, ed) {
		if s.closing.Load() {
			return f, errStop
		}
		return f, nil
	}
	return f, p.flushUnlessPipelined(f)
}

// flushUnlessPipelined sends what was forwarded, unless more commands are
// already buffered from the client: pipelined commands leave in one write.
// An IDLE or a barrier always leaves at once (an answer is awaited). What
// is held leaves before the session goroutine next waits, for the client
// or for the backend pump, whatever the pump does with the next command
// (relay.held; ARCHITECTURE.md §5).
func (p *clientPump) flushUnlessPipelined(f *inflight) error {
	if p.s.br.Buffered() == 0 || f.cmd.Name == "IDLE" || f.cmd.Spec.Barrier {
		return p.flush()
	}
	p.r.held = true
	return nil
}

// backendReady waits, for a synchronizing literal of a command already at
// the backend, for the backend's "+" (relayed to the client, who waits for
// it). The relay was armed for it before the line announcing it was
// written (forwardPending, command). A refusal (the tagged reply came
// instead, and reached the client) returns false with a nil error; the
// literal will not come.
func (p *clientPump) backendReady(f *inflight, lit imapwire.Literal) (bool, error) {
	if lit.NonSync {
		return true, nil
	}
	if ok, err := p.awaitCont(); err != nil || !ok {
		p.s.sc.IgnoreLiteral()
		return false, err
	}
	return true, nil
}

// firstLine feeds a command's first line to the parser. It returns false
// when the line was answered with BAD, with a non-nil error when the
// session must end.
func (p *clientPump) firstLine(line []byte, lit imapwire.Literal, hasLit bool) (bool, error) {
	p.s.parser.Reset()
	err := p.s.parser.Line(line, lit, hasLit)
	if err == nil {
		return true, nil
	}
	// Only a refused line is read for its tag again (the parser's pass
	// is the one pass of an accepted line).
	return p.lineErr(err, p.s.tagOf(line), lit, hasLit)
}

// nextLine feeds a later line of a command held back by the proxy.
func (p *clientPump) nextLine(line []byte, lit imapwire.Literal, hasLit bool) (bool, error) {
	return p.lineErr(p.s.parser.Line(line, lit, hasLit), p.s.parser.Command().Tag, lit, hasLit)
}

func (p *clientPump) lineErr(err error, tag string, lit imapwire.Literal, hasLit bool) (bool, error) {
	if err == nil {
		return true, nil
	}
	s := p.s
	var se *imapwire.SyntaxError
	if !errors.As(err, &se) || (hasLit && lit.NonSync) {
		// A syntax error before a {n+} literal leaves its bytes in flight
		// with no way to tell where the next command starts.
		return false, s.answer("*", byeSyntaxBeforeLiteral)
	}
	if hasLit {
		s.sc.IgnoreLiteral() // synchronizing: the client waits for a "+" it will not get
	}
	return false, s.answer(tag, syntaxReply(err))
}

// dropLiteral gets rid of an announced literal of a command the proxy
// answers itself: a synchronizing one will not come (no "+" was sent); a
// non-synchronizing one is in flight and is counted away with the rest of
// the command (RFC 7888 §4), up to max bytes, beyond which the session
// ends. The front end refuses literals the same way.
func (p *clientPump) dropLiteral(lit imapwire.Literal, hasLit bool, max int64) error {
	return p.s.dropLiteral(lit, hasLit, max)
}

func (s *Session) dropLiteral(lit imapwire.Literal, hasLit bool, max int64) error {
	if !hasLit {
		return nil
	}
	if !lit.NonSync {
		s.sc.IgnoreLiteral()
		return nil
	}
	if lit.Size > max {
		return s.answer("*", byeLiteralTooBig)
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

// overBudget reports whether what the proxy holds of the command being
// read, held bytes of its lines and buffered literals, the literal lit
// announced when withLit and not message data (streamed, not held), and
// its parsed arguments, outgrows MaxCommandBytes (ARCHITECTURE.md §12):
// each piece is under MaxLine or MaxBufferedLiteral, their sum is not.
func (p *clientPump) overBudget(held int64, lit imapwire.Literal, withLit bool) bool {
	s := p.s
	if withLit && !s.parser.PendingIsMessage() {
		held += lit.Size
	}
	return held+s.parser.ArgBytes() > int64(s.lim.MaxCommandBytes)
}

// tooBig answers a command over MaxCommandBytes: a tagged BAD [TOOBIG]
// while none of it reached the backend and no {n+} is in flight (a
// synchronizing literal announced will not come), else BYE: the rest of
// the stream cannot be told from the next command.
func (p *clientPump) tooBig(f *inflight, lit imapwire.Literal, hasLit bool) error {
	s := p.s
	s.srv.auditor.Limit(&s.info, hitCommandBytes)
	if f != nil || (hasLit && lit.NonSync) {
		return s.answer("*", byeCommandTooBig)
	}
	if hasLit {
		s.sc.IgnoreLiteral()
	}
	return s.answer(s.parser.Command().Tag, replyCommandTooBig)
}

// refuse answers a command the proxy will not forward.
func (p *clientPump) refuse(cmd *imapwire.Command, lit imapwire.Literal, hasLit bool, r *reply) error {
	if err := p.dropLiteral(lit, hasLit, int64(p.s.lim.MaxLine)); err != nil {
		return err
	}
	return p.s.answer(cmd.Tag, r)
}

// deny answers a command the Decider refused. atLiteral says the command
// stopped at the literal lit (not yet read).
func (p *clientPump) deny(cmd *imapwire.Command, d Decision, lit imapwire.Literal, atLiteral bool, start time.Time, bytesIn int64) error {
	r := decisionReply(d, "NOPERM", ClosePolicyDisconnect)
	if err := p.audit(cmd, start, bytesIn, &d, r); err != nil {
		return err
	}
	if d.Disconnect {
		return p.s.answer("*", r)
	}
	// The size was checked against the limit by the caller.
	if err := p.dropLiteral(lit, atLiteral, lit.Size); err != nil {
		return err
	}
	return p.s.answer(cmd.Tag, r)
}

// decide asks the Limiter (at the decision point), then the Decider. No
// lock is held: a Redis round trip or a slow policy never stalls the
// backend pump (ARCHITECTURE.md §5); the session state they read is stable
// because no barrier is in flight (waitBarrier).
func (p *clientPump) decide(cmd *imapwire.Command, partial bool, lit *imapwire.Literal) Decision {
	s := p.s
	if d, down := s.trailDown(cmd, p.r); down {
		return d
	}
	if l := s.limit; l != nil && !partial {
		res := l.Command(cmd)
		if res.hit() {
			s.srv.auditor.Limit(&s.info, res)
		}
		if res.Delay > 0 {
			time.Sleep(res.Delay)
		}
		if res.Exceeded {
			code, reason := res.codeReason()
			return Decision{Code: code, Reason: reason}
		}
	}
	return s.decide(PointCommand, cmd, partial, lit)
}

// redecide asks the policy again about a command the backend holds part of,
// when what was read since its last decision added effects: a SETMETADATA
// entry after a streamed value, a CATENATE part after a streamed TEXT
// (ARCHITECTURE.md §10: decided before the bytes that do it leave). A
// refusal cannot be a tagged NO: the session ends, which aborts the command
// at the backend (abort). The limiter charged the command already. stop
// says the caller must return err.
func (p *clientPump) redecide(f *inflight, cmd *imapwire.Command, decided *imapwire.Effects, start time.Time, bytesIn int64, lit *imapwire.Literal) (stop bool, err error) {
	if cmd.Effects == *decided {
		return false, nil
	}
	d := p.s.decide(PointCommand, cmd, !cmd.Complete, lit)
	*decided = cmd.Effects
	if d.Allow {
		return false, nil
	}
	return true, p.abort(f, cmd, d, start, bytesIn)
}

// abort ends the session over the refusal d of the command f, of which the
// backend holds part: no tagged NO can answer it, so the client hears BYE
// and the backend's connection is reset mid-command, which aborts it
// (Session.midCommand, closeConns). The trail records what happened: the
// refusal, answered by BYE, closing the session as refused-mid-command
// (CloseEvent.Reason the same); f gets no record of its own (no result
// "none": the backend never had the whole command). It returns errStop,
// or the audit's failure.
func (p *clientPump) abort(f *inflight, cmd *imapwire.Command, d Decision, start time.Time, bytesIn int64) error {
	d.Disconnect = true
	rep := decisionReply(d, "NOPERM", CloseRefusedMidCommand)
	r := p.r
	r.mu.Lock()
	f.aborted = true
	r.mu.Unlock()
	if err := p.audit(cmd, start, bytesIn, &d, rep); err != nil {
		return err
	}
	return p.s.answer("*", rep)
}

// audit records a command the proxy refused with rep, its answer: a
// tagged NO, or a BYE that ends the session (the record carries its close
// reason). On an error the session is ending (auditUnavailable) and the
// caller must answer nothing and stop.
func (p *clientPump) audit(cmd *imapwire.Command, start time.Time, bytesIn int64, d *Decision, rep *reply) error {
	s := p.s
	if d.unrecorded {
		// The trail cannot take a record now (trailDown): waiting for
		// one would hold the client for the ack timeout and end the
		// session over a command that was not carried out.
		return nil
	}
	snap := snapshot(cmd)
	ev := CommandEvent{
		Command: &snap, Result: rep.status, Code: rep.code, Duration: time.Since(start),
		Denied: true, Decision: d, BytesIn: bytesIn, Selected: s.info.Selected, SelectedRO: s.info.SelectedReadOnly,
		UIDValidity: s.uidValidity, // written only by barriers, which waitBarrier waited for
	}
	if rep.status == "BYE" {
		ev.Close = rep.close
	}
	err := s.srv.auditor.Command(&s.info, ev)
	if err != nil {
		s.auditUnavailable(err, false)
		return errStop
	}
	return nil
}

// auditAlias records a refusal the parser marks for the trail
// (imapwire.SyntaxError.Audit): a name that reaches the user's own
// mailbox through the other users' namespace (imapwire.ErrOwnMailboxAlias)
// or another user's whose login has no one reading (imapwire.
// ErrOwnerUnread), one under a declared alias namespace with no one
// personal name (imapwire.ErrAliasUnread), a list-wildcard where one
// mailbox is named (imapwire.ErrNameWildcard): an attempt on a mailbox
// under a name policies do not know is worth the trail, unlike other
// syntax errors; so is an attempt to destroy or copy the saved result
// "$", which the trail cannot name (imapwire.ErrSavedResultUnnamed). The
// reply is a BAD.
func (p *clientPump) auditAlias(cmd *imapwire.Command, err error, start time.Time, bytesIn int64) error {
	se, _ := err.(*imapwire.SyntaxError)
	if se == nil || !se.Audit {
		return nil
	}
	s := p.s
	snap := snapshot(cmd)
	d := Decision{Code: se.Code, Reason: se.Msg}
	if err := s.srv.auditor.Command(&s.info, CommandEvent{
		Command: &snap, Result: "BAD", Code: d.Code, Duration: time.Since(start),
		Denied: true, Decision: &d, BytesIn: bytesIn, Selected: s.info.Selected, SelectedRO: s.info.SelectedReadOnly,
	}); err != nil {
		s.auditUnavailable(err, false)
		return errStop
	}
	return nil
}

// snapshot copies what the audit needs of a command (see snapshotInto).
func snapshot(c *imapwire.Command) imapwire.Command {
	var out imapwire.Command
	snapshotInto(&out, c)
	return out
}

// register records a command about to be forwarded, before its first byte
// leaves, so that the backend pump can match its completion. sent: the
// whole command follows at once, and its answer is owed from now on;
// else from relay.sent (ARCHITECTURE.md §13). The selected
// mailbox is not changed here: only the backend's completion changes it
// (ARCHITECTURE.md §8), and a barrier command holds later ones back until then.
func (p *clientPump) register(cmd *imapwire.Command, d Decision, start time.Time, ctx *imapwire.Context, sent bool) *inflight {
	r := p.r
	r.mu.Lock()
	var f *inflight
	if n := len(r.free); n > 0 {
		f, r.free[n-1] = r.free[n-1], nil
		r.free = r.free[:n-1]
	} else {
		f = new(inflight)
	}
	f.refs.Store(2) // the client pump's and the backend pump's
	f.start, f.selected, f.selectedRO, f.uidValidity = start.Sub(relayEpoch), p.s.info.Selected, p.s.info.SelectedReadOnly, p.s.uidValidity
	snapshotInto(&f.cmd, cmd)
	if d.Reason != "" || len(d.Annotations) > 0 {
		dd := d
		f.decision = &dd
	}
	// Content items, not the read-content effect: ENVELOPE or SEARCH BODY
	// deliver no counted octets, and pushed content must not be credited
	// to them.
	f.readContent = cmd.ContentItems
	f.fetch = readsFetch(cmd)
	f.held = heldBy(cmd, f.fetch, p.s.lim.MaxAuditUIDs)
	r.inflight.push(f)
	if cmd.Name == "IDLE" {
		r.idle, r.idleCont = f, true
	}
	if f.sent = sent; sent {
		r.oweLocked(f)
	}
	if cmd.Spec.Barrier || renamesSelected(cmd, ctx, f.selected) {
		r.barrier = f
		r.enabled, r.enabledUnread = 0, false
	}
	r.mu.Unlock()
	return f
}

// readsFetch reports a FETCH reading content (ENVELOPE too): one that
// FETCH responses answer, whose record names the messages read
// (ARCHITECTURE.md §11).
func readsFetch(cmd *imapwire.Command) bool {
	return cmd.Name == "FETCH" && cmd.Effects.Has(imapwire.EffReadContent)
}

// renamesSelected reports a RENAME or DELETE of the selected mailbox or of
// one of its parents: the selected mailbox then changes name or goes away,
// so the command is a barrier.
func renamesSelected(cmd *imapwire.Command, ctx *imapwire.Context, sel string) bool {
	if (cmd.Name != "RENAME" && cmd.Name != "DELETE") || ctx.State != imapwire.StateSelected {
		return false
	}
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
// literal it waits for the backend's "+" and swallows it. armLast: pend
// ends at a synchronizing literal whose "+" the client waits for
// (backendReady). It returns false when the backend completed the command
// early (or the session ended). ed, when not nil, is made to the bytes as
// they are written.
//
// Each "+" is armed before the line announcing its literal is written:
// bytes that do not fit the write buffer leave within the write, and the
// backend may answer before any flush.
func (p *clientPump) forwardPending(f *inflight, pend []byte, marks []int, armLast bool, ed *imapwire.FetchEdit) bool {
	prev := 0
	write := func(from, to int) {
		if ed != nil {
			ed.WriteRange(p.s.be.out(), pend, from, to)
		} else {
			p.s.be.out().Write(pend[from:to])
		}
	}
	for _, m := range marks {
		if !p.r.arm(f, true) {
			// Completed early (relay.arm): the line up to this literal
			// goes, no more.
			write(prev, m)
			_ = p.flush() // a failure stops the session (backendLost)
			return false
		}
		write(prev, m)
		if ok, err := p.awaitCont(); err != nil || !ok {
			return false
		}
		prev = m
	}
	if armLast && !p.r.arm(f, false) {
		write(prev, len(pend))
		_ = p.flush()
		return false
	}
	write(prev, len(pend))
	return true
}
