package proxy

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// relay is what the two pumps of phase B share (ARCHITECTURE.md §5):
// the commands in flight, the session's state as the backend's answers
// left it, and the hand-over of continuation requests.
// mu guards every field but the atomics and channels. Everything else is
// owned by one pump: clientPump (the session goroutine) or backendPump.
type relay struct {
	s *Session // s.be is the backend's connection

	mu       sync.Mutex
	inflight inflightTable
	// ctx is the session as the backend's answers left it (ARCHITECTURE.md §8):
	// the backend pump changes it only when it completes a barrier
	// command, and the client pump decides nothing while one is in flight.
	ctx imapwire.Context
	// barrier is the state-changing command in flight (SELECT, CLOSE,
	// ENABLE, ...), nil if none.
	barrier *inflight
	// enabled collects the capabilities an in-flight ENABLE's "* ENABLED"
	// named (RFC 5161 §3.2); enabledUnread that it named one the proxy
	// does not read (backendPump.completed).
	enabled imapwire.Cap
	// A pump waiting for the backend's answer to a synchronizing literal:
	// "+" (true) or the tagged completion of contF (false). With
	// contSwallow the "+" is not relayed: the client already got ours.
	contF       *inflight
	contArmed   bool
	contSwallow bool
	// idleCont: the "+" of the IDLE in flight (RFC 9051 §6.3.13) is still
	// to come; idle is that IDLE, nil if none.
	idleCont     bool
	backendEnded bool // see backendDone
	// stateLost: a barrier's answer left the session state unknown
	// (backendPump.completed); the client pump decides nothing more.
	stateLost     bool
	enabledUnread bool
	// backendParks: the parker can watch the backend connection
	// (rawConn; asked again when the pump parks, rather than kept).
	backendParks bool
	// held: whole commands wait in the backend's write buffer for those
	// pipelined behind them (clientPump.flushUnlessPipelined); they leave
	// before the session goroutine waits for anything (Session.flushHeld,
	// ARCHITECTURE.md §5). The client pump's own, not under mu.
	held bool
	idle *inflight
	// free holds completed records for reuse (inflight.refs).
	free []*inflight

	owedState // owing, mid, cut, idling, rearmed
	// atBoundary says the backend pump waits between responses.
	atBoundary atomic.Bool
	sawBye     atomic.Bool // the backend said BYE (backend pump)
	// parked is the backend pump's parking while it has no goroutine
	// (backendPump.park), nil while it runs.
	parked atomic.Pointer[parkedPump]

	// The channels are made under mu when first needed, by the client
	// pump before it waits (an idle session that never waited holds
	// none: three channels were 300 bytes of its heap, ARCHITECTURE.md
	// §16). contCh is the backend pump's verdict on a literal (made by
	// arm); freed is signalled when a command completes, for a client
	// pump waiting for room (Limits.MaxInflight, MaxInflightBytes), for a barrier or for
	// IDLE's "+" (made by wantFreedLocked, before the look at what it
	// waits for, so that no completion after the look is missed);
	// backendDone is closed once the backend pump ended (backendEnded),
	// made by done.
	contCh      chan bool
	freed       chan struct{}
	backendDone chan struct{}
}

// owedState is what the backend's reads (owedReader) look at of the
// relay, one pointer there rather than one per field (ARCHITECTURE.md
// §16). owing counts the commands the backend owes an answer to, mid
// that a response is half relayed: the backend's reads then have a
// deadline. cut asks the backend pump to end the session at the next
// response boundary (a drain past its deadline). idling: the backend
// sent IDLE's "+" and the DONE is not yet forwarded; both pumps then
// park at once rather than after Limits.ParkAfter: IDLE is the client
// saying it will be silent (RFC 9051 §6.3.13), typically for many
// minutes. rearmed: see owedReader.
type owedState struct {
	owing   atomic.Int32
	mid     atomic.Bool
	cut     atomic.Bool
	idling  atomic.Bool
	rearmed atomic.Int64
}

// errStop ends a pump; the reason was recorded.
var errStop = errors.New("relay stopped")

// runRelay runs phase B, owning the login a, until either side ends: the
// backend pump on its own goroutine, the client pump on the session's
// (until it parks; the parker then runs it, and the session's end, on
// another).
func (s *Session) runRelay(a authed) {
	be := a.be
	r := &relay{s: s}
	if be.names != nil {
		// The rights a SETACL may name beyond RFC 4314's (ARCHITECTURE.md §10).
		be.names.Rights = imapwire.BackendRights(be.caps)
	}
	r.ctx = imapwire.Context{State: imapwire.StateAuth, Delim: be.delim, Caps: imapwire.ParseCaps(filterCaps(be.caps)),
		Names: be.names}
	// What the relay needs of the backend's list, kept as two flags: the
	// list itself is a few hundred bytes per idle session.
	be.literalPlus, be.literalMinus = be.hasCap("LITERAL+"), be.hasCap("LITERAL-")
	be.caps = nil
	// From here the client's bytes go to the backend as they are. (Before
	// login the front end reads literals itself: a NUL in a credential
	// is a failed login.)
	s.sc.RefuseNUL()
	if h := s.srv.opts.wrapBackend; h != nil {
		be.conn = h(be.conn)
		be.rd.c = be.conn
	}
	be.rd.unarming = s.srv.opts.unarming
	be.rd.st, be.rd.timeout = &r.owedState, s.lim.BackendTimeout
	if s.srv.parker != nil && s.lim.ParkAfter > 0 {
		r.backendParks = rawConn(be.raw) != nil
		if r.backendParks {
			be.rd.linger = s.lim.ParkAfter
		}
		s.rawClient = rawConn(s.raw.Conn)
	}
	// Published for the session's end (Session.authed). A closeConns that
	// ran before found no backend to close: the pumps find both closed.
	s.connMu.Lock()
	s.authed, s.relay = a, r
	s.connMu.Unlock()
	if s.connsClosed.Load() {
		be.close()
	}
	bp := &backendPump{r: r, s: s, be: be}
	s.srv.runners.run(bp.run)
	// The session goroutine ran the login: hot.
	cp := &clientPump{r: r, s: s, bp: bp, hot: true}
	cp.run()
}

// hotLinger is how long a pump's goroutine that did work waits for more
// before it parks, or hands the rest of a longer Limits.ParkAfter to a
// fresh goroutine (clientPump.park, backendPump.park): long enough that
// a client's back-to-back commands and their replies never pay for
// either. It is DefaultParkAfter.
const hotLinger = 10 * time.Millisecond

// handOver runs a pump's next turn on a fresh goroutine (its stack a new
// goroutine's; not a runner, whose stack grew on purpose):
// the caller returns at once and touches nothing of the pump after, as
// when it parks.
func (srv *Server) handOver(run func()) {
	srv.handOvers.Add(1)
	go run()
}

// rawConn is c's descriptor for the parker, nil if it has none.
func rawConn(c net.Conn) syscall.RawConn {
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			return rc
		}
	}
	return nil
}

// endRelay ends phase B once the client pump has ended, and the session.
func (s *Session) endRelay(cp *clientPump) {
	r := cp.r
	if r.held && !s.midCommand.Load() && !s.closing.Load() {
		// Commands held back behind the one that ended the session
		// leave first, like any forwarded command (ARCHITECTURE.md §5);
		// not with part of a command, which closeConns aborts.
		_ = s.flushHeld()
	}
	s.closing.Store(true)
	s.closeConns()
	<-r.done()
	r.inflight.each(func(f *inflight) {
		// The session is over: nothing is left to hold back.
		if !f.aborted {
			_ = s.auditCompleted(f, &imapwire.Response{}, 0, "")
		}
	})
	s.finish(cp)
	s.exit()
}

// arm readies the hand-over of the backend's "+" for the next literal of
// f, before the line announcing it leaves. It reports false when f is no
// longer in flight: the backend completed the command early, right after
// the "+" it sent for an earlier literal (Courier and Dovecot refuse an
// empty mailbox name so), and no refusal would be signalled for this one.
// The caller then still sends the line, which the backend reads to its
// end as a refused command's rest (RFC 9051 §4.3: no "+", no literal),
// and sends nothing after it. Both this and the completion
// (backendPump.relay) hold mu: either the completion finds the hand-over
// armed and refuses it, or this finds f gone. A verdict nobody waited for
// is dropped here, not taken for this literal's.
func (r *relay) arm(f *inflight, swallow bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.contCh == nil {
		r.contCh = make(chan bool, 1)
	}
	select {
	case <-r.contCh:
	default:
	}
	if !r.inflight.holds(f) {
		return false
	}
	r.contArmed, r.contF, r.contSwallow = true, f, swallow
	// The backend owes the "+" (ARCHITECTURE.md §13).
	r.oweLocked(f)
	return true
}

// contCame records the "+" armed for r.contF: a command the backend does
// not yet have whole owes nothing more until it has (sent). Called with
// mu held.
func (r *relay) contCame() {
	if f := r.contF; !f.sent {
		r.paidLocked(f)
	}
	r.contArmed, r.contF = false, nil
}

// sent records that the backend has all of f, a command whose literal the
// client pump streamed: from now on its answer is owed (ARCHITECTURE.md
// §13), unless the backend completed it early.
func (r *relay) sent(f *inflight) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inflight.holds(f) {
		f.sent = true
		r.oweLocked(f)
	}
}

// signal gives the client pump the verdict on the literal armed (arm
// made contCh before the line announcing it left: none is lost).
func (r *relay) signal(v bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.contCh == nil {
		return // nothing armed
	}
	select {
	case r.contCh <- v:
	default:
	}
}

// waitCont waits for the backend pump's verdict on a literal, after arm.
func (r *relay) waitCont() (bool, error) {
	select {
	case ok := <-r.contCh:
		return ok, nil
	case <-r.done():
		return false, errStop
	}
}

// done returns a channel closed once the backend pump ended.
func (r *relay) done() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.backendDone == nil {
		r.backendDone = make(chan struct{})
		if r.backendEnded {
			close(r.backendDone)
		}
	}
	return r.backendDone
}

// backendEnd records that the backend pump ended, for done.
func (r *relay) backendEnd() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.backendEnded = true
	if r.backendDone != nil {
		close(r.backendDone)
	}
}

// wantFreedLocked makes freed before the client pump looks, under mu, at
// what it will wait for: every completion after the look signals it.
func (r *relay) wantFreedLocked() {
	if r.freed == nil {
		r.freed = make(chan struct{}, 1)
	}
}

func (r *relay) pending(f *inflight) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inflight.holds(f)
}

// inFlight reports whether a command with tag is in flight.
func (r *relay) inFlight(tag string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inflight.has(tag)
}

// context returns the session's context for a decision. The client pump
// calls it only when no barrier is in flight (clientPump.waitBarrier).
func (r *relay) context() imapwire.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ctx
}

// release lets go of one pump's hold on f; the last one recycles it.
func (r *relay) release(f *inflight) {
	if f.refs.Add(-1) != 0 {
		return
	}
	r.mu.Lock()
	if len(r.free) < maxFreeInflight {
		f.recycle()
		r.free = append(r.free, f)
	}
	r.mu.Unlock()
}

// freeOne tells a waiting client pump that a command completed (or an
// IDLE got its "+").
func (r *relay) freeOne() {
	r.mu.Lock()
	r.freeOneLocked()
	r.mu.Unlock()
}

// freeOneLocked is freeOne with mu held. Without freed nobody waits.
func (r *relay) freeOneLocked() {
	select {
	case r.freed <- struct{}{}: // never ready when nil
	default:
	}
}

// oweLocked records that the backend owes f an answer (a "+", or the
// completion of a command it has whole: never while the client's bytes of
// the command still come, ARCHITECTURE.md §13); the first owed
// command arms the backend's read deadline at once, since the backend pump
// may be waiting in a read that started with none or a long one. Not when
// the pump waits between responses with a linger of at most hotLinger
// (the default Limits.ParkAfter: the usual wait between two commands):
// that read's deadline ends it by then, and the pump, finding the answer
// owed, reads again with the full timeout (owedReader.Read; a read that
// looked at owing after this saw it already). A timer change less per
// command; a silent backend is cut at most hotLinger later. Called with
// mu held.
func (r *relay) oweLocked(f *inflight) {
	if f.owed {
		return
	}
	f.owed = true
	if r.owing.Add(1) == 1 {
		// rd.linger is set before the pumps start (runRelay). The pump
		// sets atBoundary before its read looks at owing, this looks at
		// atBoundary after owing changed: one of the two sees the other.
		if lg := r.s.be.rd.linger; lg <= 0 || lg > hotLinger || !r.atBoundary.Load() {
			now := time.Now()
			r.s.be.conn.SetReadDeadline(now.Add(r.s.be.rd.timeout))
			r.rearmed.Store(now.UnixNano())
		}
		// A parked pump would not see the deadline: it reads again.
		r.unpark()
	}
}

// unpark starts a parked backend pump again (parker): the relay owes an
// answer, or the session ends.
func (r *relay) unpark() {
	if pp := r.parked.Load(); pp != nil {
		pp.wake()
	}
}

// paidLocked records that the backend answered f (or, for an IDLE, sent
// its "+"). Called with mu held.
func (r *relay) paidLocked(f *inflight) {
	if f.owed {
		f.owed = false
		r.owing.Add(-1)
	}
}

// cutAtBoundary asks the backend pump to end the session at its next
// response boundary (a drain past its deadline, ARCHITECTURE.md §15): a FETCH in
// flight ends after the message being sent, with BYE. A pump waiting
// between responses is woken at once.
func (s *Session) cutAtBoundary() {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	r := s.relay
	if r == nil {
		return
	}
	r.cut.Store(true)
	if r.atBoundary.Load() {
		s.be.conn.SetReadDeadline(time.Now())
	}
	r.unpark()
}

// auditCompleted records a command's completion (or the session's end
// before it). An error means the trail did not take the record: the
// caller must not relay the completion (ARCHITECTURE.md §11, fail closed).
func (s *Session) auditCompleted(f *inflight, resp *imapwire.Response, bytesOut int64, codeArgs string) error {
	shared, sharedCount := f.share.sharedWith(f, s.lim.MaxAuditSharedWith)
	if codeArgs == "" {
		codeArgs = f.copyUID() // a MOVE's untagged COPYUID
	}
	return s.srv.auditor.Command(&s.info, CommandEvent{
		Command:      &f.cmd,
		Result:       statusName(resp.Status),
		Code:         imapwire.CodeName(resp.Code),
		Duration:     since(f.start),
		Decision:     f.decision,
		BytesIn:      f.bytesIn.Load(),
		BytesOut:     bytesOut,
		BodyRead:     f.readContent,
		Messages:     int(f.messages),
		UIDs:         f.uids,
		Unnamed:      int(f.unnamed),
		SharedWith:   shared,
		SharedCount:  sharedCount,
		Content:      f.content,
		Expunged:     f.expungedCount(),
		ExpungedSeqs: f.expungedSeqs(),
		ExpungedUIDs: f.expungedUIDs(),
		CodeArgs:     codeArgs,
		Selected:     f.selected,
		SelectedRO:   f.selectedRO,
		UIDValidity:  f.uidValidity,
	})
}

func statusName(st imapwire.Status) string {
	switch st {
	case imapwire.StatusOK:
		return "OK"
	case imapwire.StatusNO:
		return "NO"
	case imapwire.StatusBAD:
		return "BAD"
	case imapwire.StatusBYE:
		return "BYE"
	case imapwire.StatusPREAUTH:
		return "PREAUTH"
	}
	return ""
}

// stop ends the session with a last response to the client (nil for
// none): the first caller's reason and words win. haveOut says the caller
// holds the client writer (a pump in the middle of a response).
func (s *Session) stop(r *reply, haveOut bool) {
	if s.closing.Swap(true) {
		return
	}
	if r != nil {
		s.setReason(r.close)
		var buf [128]byte
		b := appendReply(buf[:0], "*", r)
		if !haveOut {
			s.out.lock()
		}
		w := s.out.buf()
		switch s.out.open {
		case openLine:
			// A response cut short: the BYE starts a line of its own
			// (ARCHITECTURE.md §15).
			w.WriteString("\r\n")
			w.Write(b)
		case openNone:
			w.Write(b)
		}
		s.out.open = openNone
		s.out.flush()
		if !haveOut {
			s.out.unlock()
		}
	}
	s.closeConns()
}

// backendLost ends the session after the backend connection failed,
// telling the client unless the backend had said BYE (RFC 9051 §7.1.5).
func (s *Session) backendLost(err error, haveOut bool) {
	if s.closing.Load() {
		return
	}
	if isTimeout(err) {
		// A write past its deadline: the backend stopped reading what
		// the client uploads (owedReader.uploading).
		s.backendTimedOut(haveOut)
		return
	}
	if s.relay.sawBye.Load() {
		s.setReason(CloseBackendBye)
		s.stop(nil, haveOut)
		return
	}
	s.logger().Warn("backend connection lost", zap.String("backend", s.be.b.Name), zap.Error(err))
	s.srv.auditor.Security(&s.info, "backend-lost", s.be.b.Name)
	s.stop(byeBackendLost, haveOut)
}

// backendTimedOut ends the session of a backend silent, or not reading,
// past Limits.BackendTimeout while the proxy waited for it
// (ARCHITECTURE.md §13: a stuck backend must not hold sessions,
// goroutines and descriptors).
func (s *Session) backendTimedOut(haveOut bool) {
	if s.closing.Load() {
		return
	}
	name := s.be.b.Name
	s.logger().Warn("backend stopped answering", zap.String("backend", name), zap.Duration("timeout", s.lim.BackendTimeout))
	s.srv.auditor.Security(&s.info, "backend-timeout", name)
	s.srv.opts.Metrics.backendFault(name, "timeout")
	s.stop(byeBackendTimeout, haveOut)
}

// trailDown refuses, NO [UNAVAILABLE], a command with any effect in the
// command table while the Auditor says no record can be written
// (AuditReadiness): its record, the completion's, could not be written, so
// it must not reach the backend (ARCHITECTURE.md §11). A command without
// effects (CAPABILITY, NOOP, CHECK, IDLE, LOGOUT: nothing of the store
// read or changed) is forwarded, its completion withheld as any other's
// until its record is durable, unless a NOTIFY in effect may make the
// backend push content under it (Context.NotifyPush, RFC 5465 §5.2): then
// it reads what the trail cannot record, and is refused too (LOGOUT
// excepted: it ends the session). Asked at every decision point: a later
// message of a MULTIAPPEND refused so is aborted (abort).
func (s *Session) trailDown(cmd *imapwire.Command, r *relay) (Decision, bool) {
	ar := s.srv.auditReady
	if ar == nil {
		return Decision{}, false
	}
	err := ar.Ready()
	if err == nil {
		return Decision{}, false
	}
	if cmd.Effects.Len() == 0 && (cmd.Name == "LOGOUT" || !r.pushes()) {
		return Decision{}, false
	}
	s.logger().Warn("command refused: the audit trail cannot record it", zap.String("command", cmd.Name), zap.Error(err))
	return Decision{Code: "UNAVAILABLE", Reason: "The audit trail cannot record this command now; nothing was done", unrecorded: true}, true
}

// pushes reports ctx.NotifyPush.
func (r *relay) pushes() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ctx.NotifyPush
}

// auditUnavailable ends the session because the audit trail did not take
// a command's record: the reply is not relayed (ARCHITECTURE.md §11, fail closed),
// the client hears BYE (RFC 9051 §7.1.5, RFC 5530 UNAVAILABLE).
func (s *Session) auditUnavailable(err error, haveOut bool) {
	s.logger().Warn("audit trail unavailable; ending session", zap.Error(err))
	s.stop(byeAuditUnavailable, haveOut)
}

func (s *Session) clientWriteFailed(err error) {
	s.logger().Debug("client write failed", zap.Error(err))
	s.setReason(CloseClientWriteError)
	s.stop(nil, true)
}
