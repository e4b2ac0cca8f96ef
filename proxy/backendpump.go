package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

var (
	capName         = []byte("CAPABILITY")
	fetchName       = []byte("FETCH")
	idName          = []byte("ID")
	enabledName     = []byte("ENABLED")
	copyUIDName     = []byte("COPYUID")
	appendUIDName   = []byte("APPENDUID")
	readOnlyName    = []byte("READ-ONLY")
	uidValidityName = []byte("UIDVALIDITY")
)

// codeNumber returns the number a status line's response code carries
// ("* OK [UIDVALIDITY 3857529045] UIDs valid"), 0 if none fits 32 bits.
func codeNumber(line []byte) uint32 {
	var n uint64
	for _, c := range []byte(responseCodeArgs(line)) {
		if c < '0' || c > '9' || n > 1<<32 {
			return 0
		}
		n = n*10 + uint64(c-'0')
	}
	if n >= 1<<32 {
		return 0
	}
	return uint32(n)
}

// wordIs reports whether a response's name or code is word, ignoring
// case. The length is compared first: on each response line the relay
// asks about several words, and most differ in length.
func wordIs(b, word []byte) bool {
	return len(b) == len(word) && bytes.EqualFold(b, word)
}

// heldLines bounds the lines relayed under one hold of the client writer,
// so that the client pump's own answers wait for no more than these.
const heldLines = 64

// proxyIDResponse replaces a backend's ID response (RFC 2971 §3.2).
const proxyIDResponse = "* ID (\"name\" \"imapwarden\")\r\n"

// responseCodeArgs returns the arguments of the response code of a status
// line: "38505 3955" for "a OK [APPENDUID 38505 3955] done".
func responseCodeArgs(line []byte) string {
	i := bytes.IndexByte(line, '[')
	if i < 0 {
		return ""
	}
	rest := line[i+1:]
	j := bytes.IndexByte(rest, ']')
	if j < 0 {
		return ""
	}
	rest = rest[:j]
	if k := bytes.IndexByte(rest, ' '); k >= 0 && len(rest)-k < 4096 {
		return string(rest[k+1:])
	}
	return ""
}

// delivery is the backend pump's account of one FETCH response carrying
// message content (ARCHITECTURE.md §12: count what is delivered).
type delivery struct {
	t   imapwire.FetchTracker
	num uint32 // the response's message sequence number
	// held is the response so far, held back in the client writer's free
	// space while holding, so that a refused charge sends none of it
	// (emit, literal, room, commit).
	held    []byte
	holding bool
	written bool  // bytes of this response reached the client writer, not held
	counted bool  // its first content item was charged (the message)
	charged int64 // content octets charged
	litOwed int64 // of the content literal being streamed, octets not yet written
	hit     bool  // a limit hit of this response is kept (one a response)
	vetted  bool  // its content or header items were let go while the trail is down (pushAllowed)
}

// backendPump relays the backend's responses to the client (ARCHITECTURE.md §2):
// it matches tagged completions to the commands in flight, changes the
// session's state from them, filters capabilities, counts the content
// delivered and holds the backend to the protocol. It runs on its own
// goroutine; its fields are its alone, and it reads the backend's side of
// backendConn (br, sc, rd) alone.
type backendPump struct {
	r  *relay
	s  *Session
	be *backendConn

	w        *backendWork // while the pump does not wait (getWork)
	outSince int64        // response bytes since the last tagged completion
	// messagesFetched counts FETCH responses that carried content, and
	// othersExpunged the messages the backend reported expunged that no
	// command of the session caused (relay.expunger), for the close event
	// (read once the pump has ended). 32 bits each, saturating (addCount):
	// the pump keeps its size class (ARCHITECTURE.md §16).
	messagesFetched, othersExpunged uint32
}

// addCount adds n to *c, stopping at the largest count: a backend may
// report four billion UIDs vanished in one element.
func addCount(c *uint32, n uint64) {
	*c = uint32(min(uint64(*c)+n, 1<<32-1))
}

// backendWork is what the backend pump needs only while it relays a
// response: pooled, taken when the pump has something to read and given
// back before it waits (relay), so that an idle session holds none
// (ARCHITECTURE.md §16: it was 176 bytes of each idle session's heap).
// Each wait is at a response boundary, where none of it carries over.
type backendWork struct {
	lc   lineCheck    // the response line being read
	dv   delivery     // the FETCH response being relayed
	vx   vanishedScan // the VANISHED response being relayed (expunged.go)
	fbuf []byte       // a filtered capability line
	// The audit events of the response being relayed (limit hits, a
	// delivery no command in flight answers), kept while the client
	// writer is held and logged once it is let go (logOwed): a slow or
	// full trail then stalls this pump alone, never the client pump's
	// own answers (ARCHITECTURE.md §5).
	hits []LimitResult
	dlv  DeliveryEvent
	owed bool // dlv is to be logged
}

// owes says the work set holds audit events to log (logOwed).
func (w *backendWork) owes() bool { return w.owed || len(w.hits) > 0 }

var backendWorks = sync.Pool{New: func() any { return new(backendWork) }}

// getWork takes a work set unless the pump holds one.
func (p *backendPump) getWork() {
	if p.w == nil {
		p.w = backendWorks.Get().(*backendWork)
	}
}

// putWork gives the work set back, cleared but for fbuf's array when
// it is a usual capability line's.
func (p *backendPump) putWork() {
	if w := p.w; w != nil {
		p.w = nil
		fbuf := w.fbuf[:0]
		if cap(fbuf) > keepFbuf {
			fbuf = nil
		}
		*w = backendWork{fbuf: fbuf}
		backendWorks.Put(w)
	}
}

// keepFbuf bounds the filtered capability line a pooled work set keeps.
const keepFbuf = 1 << 10

// run relays responses until the session ends, or until it parks: then
// the parker runs it again on a new goroutine (park).
func (p *backendPump) run() {
	if p.relay() {
		return
	}
	p.putWork()
	p.r.backendEnd()
}

// relay is run's loop; it returns true when the pump parked.
func (p *backendPump) relay() (parked bool) {
	r, s, be := p.r, p.s, p.be
	// held: the client writer is kept from one line of plain untagged data
	// to the next while the backend's buffer holds the whole next line (a
	// FETCH burst), at most heldLines of them, and let go before anything
	// else: a wait, a hook, a fault, a completion.
	held, lines := false, 0
	let := func() {
		if held {
			s.out.unlock()
			held = false
		}
	}
	p.getWork()
	for {
		if r.cut.Load() {
			// A drain past its deadline: end at this response boundary.
			let()
			s.stop(byeDrained, false)
			return false
		}
		if be.br == nil || be.br.Buffered() == 0 {
			let()
			// Nothing pending: wait without holding the read buffer or
			// the work set (nor does a parked pump).
			p.putWork()
			r.atBoundary.Store(true)
			err := be.waitReadable()
			r.atBoundary.Store(false)
			if err != nil && be.rd.lingered(err) {
				// Silent with nothing owed for Limits.ParkAfter.
				if p.park() {
					return true
				}
				continue
			}
			p.getWork()
			if err != nil {
				p.readFailed(err, false)
				return false
			}
			be.rd.hot = true // work comes: the stack may grow
		}
		if h := s.srv.opts.beforeBackendRead; h != nil {
			h(held, p.lineBuffered())
		}
		if !r.sawBye.Load() && !s.srv.opts.noPlainRun {
			// The common case in one pass (issue 12): whole plain FETCH
			// lines already buffered go out with one copy, under the
			// same hold as the full path's below.
			most := heldLines
			if held {
				most -= lines
			}
			if run, k := p.plainRun(most); k > 0 {
				if !held {
					s.out.lock()
					held, lines = true, 0
				}
				lines += k
				if err := p.relayPlain(run); err != nil {
					let()
					return false
				}
				if lines >= heldLines || !p.lineBuffered() {
					let()
				}
				continue
			}
		}
		part, final, _, hasLit, err := p.readPart()
		if err != nil && !imapwire.IsMarkerError(err) {
			let()
			p.readFailed(err, false)
			return
		}
		resp, perr := imapwire.ParseResponse(part)
		if perr != nil {
			let()
			p.fault("unparsable response", false)
			return
		}
		if hasLit, err = be.sc.ResponseMarker(&resp, hasLit, err); err != nil {
			let()
			p.readFailed(err, false)
			return
		}
		// Plain data: untagged, no status, none the relay rewrites or
		// reads state from.
		plain := resp.Kind == imapwire.Untagged && resp.Status == imapwire.StatusNone &&
			!wordIs(resp.Name, enabledName) && !wordIs(resp.Name, capName) && !wordIs(resp.Name, idName)
		if !plain || r.sawBye.Load() {
			let()
		}
		relay, cont, refused, unknown := true, false, false, false
		var done *inflight
		if r.sawBye.Load() && resp.Kind != imapwire.Tagged {
			// After BYE the server closes; only the completions of the
			// commands in flight may still come (LOGOUT's OK, RFC 9051
			// §6.1.3, §7.1.5).
			p.fault("response after BYE", false)
			return
		}
		// Plain untagged data (FETCH, EXISTS, ...: most lines) touches
		// nothing under relay.mu; the rest may (an EXPUNGE or VANISHED
		// is recorded against the command that expunges, expunged.go).
		p.w.vx.on = false
		locked := resp.Kind != imapwire.Untagged || resp.Status != imapwire.StatusNone || wordIs(resp.Name, enabledName) ||
			wordIs(resp.Name, expungeName) || wordIs(resp.Name, vanishedName)
		if locked {
			r.mu.Lock()
		}
		switch resp.Kind {
		case imapwire.Continuation:
			if r.idleCont {
				// IDLE's "+" (RFC 9051 §6.3.13): the backend reads nothing
				// after an IDLE before it, since the client pump holds
				// the DONE until it came (doneIdle).
				r.idleCont = false
				r.paidLocked(r.idle) // idling: nothing owed until DONE
				r.idling.Store(true)
				r.freeOneLocked() // a DONE waiting for this "+"
				break
			}
			if !r.contArmed {
				r.mu.Unlock()
				// A "+" nothing asked for would break the client's
				// literal framing (ARCHITECTURE.md §13).
				p.fault("continuation request with no literal pending", false)
				return
			}
			cont, relay = true, !r.contSwallow
			r.contCame()
		case imapwire.Tagged:
			if done = r.inflight.take(resp.Tag); done == nil {
				r.mu.Unlock()
				p.fault("tagged response for no command in flight", false)
				return
			}
			r.paidLocked(done)
			done.share.left()
			if r.idle == done {
				// An IDLE refused or ended: no "+" is due for it. Only
				// its own: the client may already have sent the next
				// IDLE, whose "+" is due.
				r.idle, r.idleCont = nil, false
				r.idling.Store(false)
			}
			// A completion instead of the "+" a literal waits for: the
			// backend refused it. Decided here, under mu: once released
			// below, done may already be a later command's record.
			if r.contArmed && r.contF == done {
				r.contArmed, r.contF, refused = false, nil, true
			}
		case imapwire.Untagged:
			switch {
			case resp.Status == imapwire.StatusBYE:
				r.sawBye.Store(true)
			case resp.Status == imapwire.StatusBAD:
				// "The untagged form indicates a protocol-level error for
				// which the associated command can not be determined"
				// (RFC 9051 §7.1.3): the backend read a command otherwise
				// than the proxy did. Nothing decided since can be trusted.
				r.mu.Unlock()
				p.fault("untagged BAD: the backend could not read a command the proxy relayed", false)
				return
			case locked && r.barrier != nil && r.barrier.cmd.Name == "ENABLE" && wordIs(resp.Name, enabledName):
				caps, unread := enabledCaps(part)
				r.enabled |= caps
				r.enabledUnread = r.enabledUnread || unread
			case resp.Status == imapwire.StatusOK && r.barrier != nil && wordIs(resp.Code, uidValidityName) &&
				(r.barrier.cmd.Name == "SELECT" || r.barrier.cmd.Name == "EXAMINE"):
				s.uidValidityNext = codeNumber(part)
			case resp.Status == imapwire.StatusOK && wordIs(resp.Code, copyUIDName):
				p.moveCopyUID(responseCodeArgs(part))
			case resp.Status == imapwire.StatusNone && wordIs(resp.Name, expungeName):
				if f := r.expunger(); f != nil {
					f.expungedSeq(resp.Num, s.lim.MaxAuditUIDs)
				} else {
					addCount(&p.othersExpunged, 1)
				}
			case resp.Status == imapwire.StatusNone && wordIs(resp.Name, vanishedName):
				if set, ok := p.w.vx.begin(r.expunger(), &p.othersExpunged, resp.Rest(part), s.lim.MaxAuditUIDs); ok {
					p.w.vx.piece(set, final)
				}
			}
		}
		if locked {
			r.mu.Unlock()
		}
		if done != nil {
			// State first: once the client has this reply, its next
			// command may be decided.
			unknown = p.completed(done, &resp)
			if resp.Status == imapwire.StatusOK && done.cmd.Name == "LOGOUT" {
				// The client's LOGOUT (RFC 9051 §6.1.3), not the
				// backend's own leaving, is why the session ends.
				s.setReason(CloseLogout)
			}
			var codeArgs string
			if wordIs(resp.Code, copyUIDName) || wordIs(resp.Code, appendUIDName) {
				codeArgs = responseCodeArgs(part)
			}
			// Before the client has its answer, so that no client hears a
			// completion its audit record does not hold (a fail-closed
			// audit trail holds the reply back, or refuses it). No lock is
			// held: a slow trail stalls this pump alone.
			if err := s.auditCompleted(done, &resp, p.outSince+int64(len(part)), codeArgs); err != nil {
				s.auditUnavailable(err, false)
				return
			}
			if unknown {
				s.logger().Warn("session state unknown after the backend's answer; ending session",
					zap.String("command", done.cmd.Name), zap.String("status", resp.Status.String()))
				s.srv.auditor.Security(&s.info, "state-unknown", done.cmd.Name+" answered "+resp.Status.String())
			}
			// The client pump may reuse the record as soon as the client
			// has this reply: done is not read after this.
			r.release(done)
		}
		p.w.dv = delivery{}
		if resp.Kind == imapwire.Untagged && resp.Status == imapwire.StatusNone {
			switch {
			case wordIs(resp.Name, fetchName):
				p.w.dv.t.BeginResponse(&resp)
				p.w.dv.num = resp.Num
			case wordIs(resp.Name, idName) && !s.srv.opts.ShowBackendID:
				// Ours instead; the original, literals included, is
				// read and dropped below.
				s.out.lock().WriteString(proxyIDResponse)
				s.out.unlock()
				relay = false
			}
		}
		if final && (wordIs(resp.Name, capName) || wordIs(resp.Code, capName)) {
			part = p.filterCaps(&resp, part, wordIs(resp.Name, capName))
		}
		if !held {
			s.out.lock()
			held, lines = true, 0
		}
		n, err := p.relayResponse(&resp, part, final, hasLit, relay)
		if err == nil && unknown {
			// The client has the answer; nothing more is decided in a
			// state the proxy does not know (ARCHITECTURE.md §8).
			s.stop(byeStateUnknown, true)
			err = errStop
		}
		owes := p.w.owes()
		if lines++; err != nil || owes || !plain || lines >= heldLines || !p.lineBuffered() {
			let()
		}
		if owes {
			p.logOwed()
		}
		if err != nil {
			return
		}
		p.outSince += n
		if cont {
			r.signal(true)
		}
		if done != nil {
			if h := s.srv.opts.afterReply; h != nil {
				h()
			}
			p.outSince = 0
			if refused {
				r.signal(false)
			}
			r.freeOne()
		}
	}
}

// moveCopyUID credits an untagged COPYUID (RFC 4315 §3) to the MOVE it
// belongs to: a MOVE sends it before its expunges and its completion
// (RFC 6851 §4.3), and a server runs the MOVEs of the selected mailbox
// in order, each expunging (RFC 9051 §5.5), so it is the oldest MOVE in
// flight without one. A UID MOVE must also have named the UIDs it says
// were moved; one that did not gets nothing: never a guess. Under
// relay.mu.
func (p *backendPump) moveCopyUID(args string) {
	var move *inflight
	p.r.inflight.until(func(f *inflight) bool {
		if f.cmd.Name == "MOVE" && f.copyUID() == "" {
			move = f
			return false
		}
		return true
	})
	if move != nil && args != "" && copyUIDFits(move, args) {
		move.expunged().copyUID = args
	}
}

// copyUIDFits reports whether the source UIDs of COPYUID args
// ("uidvalidity source destination") lie in f's set when f names UIDs;
// a set of sequence numbers cannot be compared.
func copyUIDFits(f *inflight, args string) bool {
	fields := strings.Fields(args)
	if len(fields) != 3 {
		return false
	}
	if !f.cmd.UID {
		return true
	}
	set, all := imapwire.SetRanges(nil, f.cmd.Set)
	src, srcAll := imapwire.SetRanges(nil, fields[1])
	if all || srcAll {
		return all
	}
	// Both sorted and merged: each source range within one of the set's.
	i := 0
	for _, r := range src {
		for i < len(set) && set[i].Hi < r.Lo {
			i++
		}
		if i == len(set) || set[i].Lo > r.Lo || set[i].Hi < r.Hi {
			return false
		}
	}
	return true
}

// plainRun finds the run of whole plain FETCH lines at the start of the
// backend's read buffer (imapwire.PlainFetchRun), at most most of them,
// none if a drain's cut came: lines in which the full path (readPart,
// ParseResponse, the FetchTracker) would find no content, no literal and
// no fault, nothing to count, record or audit, only bytes to relay. The
// cut is looked at once per run, as at each response boundary: a run is
// what is buffered already, at most heldLines short lines.
func (p *backendPump) plainRun(most int) (run []byte, lines int) {
	if p.r.cut.Load() {
		return nil, 0
	}
	b := p.be.sc.Buffered()
	n, lines := imapwire.PlainFetchRun(b, most, p.s.lim.MaxResponseLine)
	if lines > 0 {
		if h := p.s.srv.opts.plainRun; h != nil {
			h(lines)
		}
	}
	return b[:n], lines
}

// relayPlain writes a run plainRun found and consumes it, then flushes
// once the backend has nothing buffered, as relayResponse does. Called
// with the client writer held.
func (p *backendPump) relayPlain(run []byte) error {
	s := p.s
	s.out.buf().Write(run)
	p.be.sc.Skip(len(run))
	p.outSince += int64(len(run))
	if p.be.br.Buffered() == 0 {
		if err := s.out.flush(); err != nil {
			s.clientWriteFailed(err)
			return err
		}
	}
	return nil
}

// lineBuffered reports whether the backend's read buffer holds a whole
// line: the next one is then read without waiting on the backend, and the
// client writer may be kept for it.
func (p *backendPump) lineBuffered() bool {
	br := p.be.br
	b, _ := br.Peek(br.Buffered())
	return bytes.IndexByte(b, '\n') >= 0
}

// filterCaps drops from a capability list what the client must not see
// (ARCHITECTURE.md §7), from resp, the line's parse, and, in an untagged CAPABILITY, adds the proxy's own
// COMPRESS=DEFLATE.
func (p *backendPump) filterCaps(resp *imapwire.Response, part []byte, untagged bool) []byte {
	if out, changed := resp.FilterCapabilities(p.w.fbuf[:0], part, dropCapability); changed {
		p.w.fbuf, part = out, out
	}
	s := p.s
	s.out.mu.Lock()
	compressing := s.out.fw != nil
	s.out.mu.Unlock()
	if untagged && !compressing {
		// The proxy terminates COMPRESS itself (compress.go).
		p.w.fbuf = appendCapability(p.w.fbuf, part, "COMPRESS=DEFLATE")
		part = p.w.fbuf
	}
	return part
}

// enabledCaps returns the capabilities "* ENABLED ..." names that change
// how commands read, and unread when it names one the proxy does not
// read (imapwire.RelayCapability): one hidden from the client's
// CAPABILITY, so not one it could be offered, or unknown. Its responses
// would be relayed unread (RFC 9586's UIDONLY turns FETCH into UIDFETCH).
func enabledCaps(line []byte) (caps imapwire.Cap, unread bool) {
	for _, f := range bytes.Fields(bytes.TrimRight(line, "\r\n"))[2:] {
		bit, ok := imapwire.RelayCapability(f)
		caps |= bit
		unread = unread || !ok
	}
	return caps, unread
}

// errBackendFault is a response line readPart refused; lineCheck.fault
// says why.
var errBackendFault = errors.New("backend broke the protocol")

// readPart reads the next piece of a response line and holds it to the
// protocol (lineCheck). A malformed literal marker is returned as the
// scanner's SyntaxError, the line checked: whether it is one depends on
// the response's kind (imapwire.Scanner.ResponseMarker).
func (p *backendPump) readPart() (part []byte, final bool, lit imapwire.Literal, hasLit bool, err error) {
	part, final, lit, hasLit, err = p.be.sc.ReadLinePart()
	if (err == nil || imapwire.IsMarkerError(err)) && !p.w.lc.check(part, final, p.s.lim.MaxResponseLine) {
		err = errBackendFault
	}
	return
}

// readRest reads the next piece of response resp, its marker settled.
func (p *backendPump) readRest(resp *imapwire.Response) (part []byte, final, hasLit bool, err error) {
	part, final, _, hasLit, err = p.readPart()
	hasLit, err = p.be.sc.ResponseMarker(resp, hasLit, err)
	return
}

// lineCheck holds a backend's response lines to RFC 9051 §9 as they stream
// through: no NUL (CHAR8 excludes it), CR only in the final CRLF (TEXT-CHAR
// excludes CR and LF), and a bounded length. A compromised or broken
// backend must not be able to smuggle a line break or a terminal escape
// past the client's framing (ARCHITECTURE.md §13).
type lineCheck struct {
	n     int64  // bytes of the current line so far
	cr    bool   // the previous piece ended with CR
	fault string // why check failed
}

func (lc *lineCheck) check(p []byte, final bool, max int64) bool {
	fail := func(why string) bool { lc.fault, lc.n, lc.cr = why, 0, false; return false }
	if lc.n += int64(len(p)); lc.n > max {
		return fail("response line too long")
	}
	if bytes.IndexByte(p, 0) >= 0 {
		return fail("NUL in a response line")
	}
	if lc.cr {
		// A CR ended the previous piece: only its LF may follow.
		if !final || len(p) != 1 {
			return fail("bare CR in a response line")
		}
		lc.n, lc.cr = 0, false
		return true
	}
	body := p
	if final {
		if len(p) < 2 || p[len(p)-2] != '\r' {
			return fail("bare LF ends a response line")
		}
		body = p[:len(p)-2]
	} else if len(p) > 0 && p[len(p)-1] == '\r' {
		body, lc.cr = p[:len(p)-1], true
	}
	if bytes.IndexByte(body, '\r') >= 0 {
		return fail("bare CR in a response line")
	}
	if final {
		lc.n = 0
	}
	return true
}

// park gives up the pump's goroutine while the backend owes nothing: the
// server's parker runs the pump again when the backend sends something
// (an untagged response in IDLE, a BYE, the end of the connection), and
// the relay when it needs it (relay.unpark: a command owed, a cut, the
// session's end). It returns false when the pump must go on waiting
// itself. Nothing of the pump is touched after a true return: the parker
// may already run it on another goroutine.
//
// A hot pump hands the rest of its wait to a fresh goroutine instead, as
// the client pump does (clientPump.park).
func (p *backendPump) park() bool {
	r, s := p.r, p.s
	pk := s.srv.parker
	if pk == nil || !r.backendParks || r.owing.Load() > 0 || r.cut.Load() || s.closing.Load() {
		return false
	}
	if p.be.rd.hot && !r.idling.Load() && s.lim.ParkAfter > hotLinger {
		// The rest of ParkAfter on a fresh goroutine (clientPump.park).
		p.be.rd.hot = false
		s.srv.handOver(p.run)
		return true
	}
	p.be.rd.hot = false
	// The scanner holds nothing at a response boundary (waitReadable
	// reset it): a parked pump keeps none, the resumed one makes one.
	p.be.sc = nil
	// parked is set before the parker can resume the pump, and cleared
	// only by the resumed pump (resume): no unpark is lost.
	rc := rawConn(p.be.raw) // a sockConn's own: nothing made
	if rc == nil {
		return false
	}
	// The sockets' functions for the poller, made again when used (both:
	// see clientPump.park).
	idleSock(p.be.raw)
	idleSock(p.s.raw.Conn)
	pp := pk.prepare(rc, parkBackend, time.Time{}, p)
	r.parked.Store(pp)
	if !pp.arm() {
		r.parked.CompareAndSwap(pp, nil)
		return false
	}
	// What asked for the pump between the look above and Store found
	// nothing to wake.
	if r.owing.Load() > 0 || r.cut.Load() || s.closing.Load() {
		pp.wake()
	}
	return true
}

// resume is a parked pump's new goroutine.
func (p *backendPump) resume() {
	p.r.parked.Store(nil)
	p.be.rd.resumed, p.be.rd.hot = true, false
	p.run()
}

// readFailed ends the session after reading the backend failed: a
// protocol fault, a backend silent while it owed an answer, a drain past
// its deadline, or a lost connection. haveOut: the caller holds the client
// writer.
func (p *backendPump) readFailed(err error, haveOut bool) {
	s := p.s
	switch {
	case errors.Is(err, errBackendFault):
		p.fault(p.w.lc.fault, haveOut)
	case imapwire.IsMarkerError(err):
		// In untagged data, where a literal may stand (ResponseMarker).
		p.fault("malformed literal marker", haveOut)
	case isTimeout(err) && p.r.cut.Load():
		s.stop(byeDrained, haveOut)
	case isTimeout(err):
		// Silent past Limits.BackendTimeout while it owed an answer.
		s.backendTimedOut(haveOut)
	default:
		s.backendLost(err, haveOut)
	}
}

// faultUnreadFetch is the fault of a FETCH response the tracker could not
// read (imapwire.FetchTracker.GaveUp, End).
const faultUnreadFetch = "FETCH response the proxy cannot read"

// fault ends a session whose backend broke the protocol: the client gets
// "* BYE [UNAVAILABLE]", the backend connection is closed, the audit names
// the fault (ARCHITECTURE.md §13: a compromised legacy server is contained).
func (p *backendPump) fault(what string, haveOut bool) {
	s := p.s
	if s.closing.Load() {
		return
	}
	s.logger().Warn("backend broke the protocol", zap.String("backend", p.be.b.Name), zap.String("fault", what))
	s.srv.auditor.Security(&s.info, "backend-protocol-error", p.be.b.Name+": "+what)
	s.srv.opts.Metrics.backendFault(p.be.b.Name, "protocol")
	s.stop(byeBackendError, haveOut)
}

// relayResponse writes the rest of one response (its first piece given),
// streaming literals, and flushes once the backend has nothing buffered.
// Content in a FETCH response is charged before its first byte goes out
// (track, deliver); while a charge may still be refused the response is
// held back (emit, literal), so that a refusal ends the session before
// any of it whenever it fits the client writer's buffer (ARCHITECTURE.md
// §12). Called with the client writer held.
func (p *backendPump) relayResponse(resp *imapwire.Response, part []byte, final, hasLit, relay bool) (int64, error) {
	s, dv := p.s, &p.w.dv
	sc := p.be.sc
	w := s.out.buf()
	var err error
	var n int64
	tracking := dv.t.Active()
	if !final || hasLit {
		// Half relayed until its end: the backend owes the rest.
		p.r.mid.Store(true)
		defer p.r.mid.Store(false)
	}
	if tracking && relay && s.limit != nil {
		dv.held, dv.holding = w.AvailableBuffer(), true
	}
	for {
		if tracking && !p.track(part, final && hasLit) {
			return n, p.cut(errStop)
		}
		if relay {
			if err = p.emit(w, part); err != nil {
				return n, p.cut(err)
			}
			n += int64(len(part))
		}
		for !final {
			if part, final, hasLit, err = p.readRest(resp); err != nil {
				p.readFailed(err, true)
				return n, p.cut(err)
			}
			if p.w.vx.on {
				// A VANISHED longer than one read (expunged.go).
				p.r.mu.Lock()
				p.w.vx.piece(part, final)
				p.r.mu.Unlock()
			}
			if tracking && !p.track(part, final && hasLit) {
				return n, p.cut(errStop)
			}
			if relay {
				if err = p.emit(w, part); err != nil {
					return n, p.cut(err)
				}
				n += int64(len(part))
			}
		}
		if !hasLit {
			break
		}
		var m int64
		if relay {
			m, err = p.literal(w)
		} else if err = sc.DiscardLiteral(); err != nil {
			p.readFailed(err, true)
		}
		n += m
		if err != nil {
			return n, p.cut(err)
		}
		if part, final, hasLit, err = p.readRest(resp); err != nil {
			p.readFailed(err, true)
			return n, p.cut(err)
		}
	}
	p.commit(w)
	s.out.open = openNone
	if tracking {
		p.delivered()
		if !dv.t.End() {
			// Charged and recorded, the unread rest as content: the
			// proxy no longer knows what this backend delivers
			// (ARCHITECTURE.md §12, §13).
			p.fault(faultUnreadFetch, true)
			return n, errStop
		}
	}
	if p.be.br.Buffered() == 0 {
		if err := s.out.flush(); err != nil {
			s.clientWriteFailed(err)
			return n, err
		}
	}
	return n, nil
}

// emit writes a piece of the response to the client writer, or holds it
// back with the rest while holding and it fits (room), else writes what
// is held first (commit). An error is the client's, already handled.
func (p *backendPump) emit(w *bufio.Writer, b []byte) error {
	dv := &p.w.dv
	if dv.holding {
		fits, err := p.room(w, int64(len(b)))
		if err != nil {
			return err
		}
		if fits {
			dv.held = append(dv.held, b...)
			return nil
		}
		p.commit(w)
	}
	w.Write(b)
	dv.written = true
	p.s.out.open = openLine
	return nil
}

// literal relays the open literal of the response: held with the rest
// when it fits, else streamed straight into the client writer once what is
// held is written. It returns the octets relayed; an error is handled
// (readFailed, clientWriteFailed).
func (p *backendPump) literal(w *bufio.Writer) (int64, error) {
	dv, sc := &p.w.dv, p.be.sc
	if dv.holding {
		size := sc.LiteralRemaining()
		fits, err := p.room(w, size)
		if err != nil {
			return 0, err
		}
		if fits {
			k := len(dv.held)
			dv.held, err = sc.ReadLiteral(dv.held, int(size))
			dv.litOwed = 0 // held: it goes with the rest or not at all
			if err != nil {
				p.readFailed(err, true)
			}
			return int64(len(dv.held) - k), err
		}
		p.commit(w)
	}
	p.s.out.open = openLiteral
	m, err := sc.StreamLiteral(w)
	dv.written = true
	dv.litOwed = max(dv.litOwed-m, 0)
	switch {
	case err == nil:
		p.s.out.open = openLine
	case errors.Is(err, imapwire.ErrNoLiteral) || w.Flush() == nil:
		p.readFailed(err, true)
	default:
		p.s.clientWriteFailed(err)
	}
	return m, err
}

// room reports whether k more octets can be held. What is held lives in
// the client writer's free space (no copy of its own: commit writes it in
// place); when earlier responses fill part of that buffer they are sent to
// make room, as the writer would. An error is the client's, handled.
func (p *backendPump) room(w *bufio.Writer, k int64) (bool, error) {
	dv := &p.w.dv
	// k may be any literal size up to imapwire.MaxLiteralSize: compared
	// with the room left, never added to what is held.
	if k <= int64(cap(dv.held)-len(dv.held)) {
		return true, nil
	}
	if w.Buffered() == 0 || k > int64(w.Size()-len(dv.held)) {
		return false, nil
	}
	if err := w.Flush(); err != nil {
		p.s.clientWriteFailed(err)
		return false, err
	}
	// The writer's free space now starts before the held bytes: move
	// them there (append copies as memmove does, overlap and all).
	dv.held = append(w.AvailableBuffer(), dv.held...)
	return true, nil
}

// commit writes what is held, which is already in place in the client
// writer's free space, and ends the holding: the rest of the response
// streams, and a refusal in it cuts the response (deliver).
func (p *backendPump) commit(w *bufio.Writer) {
	dv := &p.w.dv
	if !dv.holding {
		return
	}
	if len(dv.held) > 0 {
		w.Write(dv.held) // at most w.Available(): copied onto itself
		dv.written = true
		p.s.out.open = openLine
	}
	dv.held, dv.holding = nil, false
}

// cut closes the account of a response that stops short (a refused
// charge, a client that stopped reading, a backend lost or broken, a drain
// past its grace): what was held never leaves, and what reached the
// client writer is recorded as read (delivered: its UID, the content
// octets that went out), as a whole response would be (ARCHITECTURE.md
// §11). It returns err.
func (p *backendPump) cut(err error) error {
	dv := &p.w.dv
	dv.held, dv.holding = nil, false
	if dv.t.Active() {
		if dv.written {
			p.delivered()
		}
		dv.t.End()
	}
	return err
}

// track feeds a piece of a FETCH response to its tracker (with the literal
// it opens, when lit) and charges the content it carries (deliver) before
// the piece is written. It returns false when the charge was refused: the
// session is ending.
func (p *backendPump) track(part []byte, lit bool) bool {
	dv := &p.w.dv
	before := dv.t.Content
	dv.t.Part(part)
	content := dv.t.Content - before
	var litLen int64
	if lit {
		if l := p.be.sc.LiteralRemaining(); dv.t.Literal(l) {
			content += l
			litLen = l
		}
	}
	if dv.t.GaveUp() && !dv.written {
		// A FETCH response the tracker cannot read never means no
		// content: none of it has gone out, so none does
		// (ARCHITECTURE.md §12). Once some has, the rest is charged as
		// content and the session ends after it (relayResponse).
		p.fault(faultUnreadFetch, true)
		return false
	}
	if !dv.vetted && (content > 0 || dv.t.Items > 0 || dv.t.Headers > 0) {
		dv.vetted = true
		if !p.pushAllowed() {
			return false
		}
	}
	// A content item counts its message even when empty (BODY[] {0}):
	// the cap counts what the audit counts (delivered).
	if content <= 0 && (dv.counted || dv.t.Items == 0) {
		return true
	}
	if !p.deliver(content, !dv.counted) {
		return false
	}
	dv.counted = true
	dv.charged += content
	dv.litOwed = litLen
	return true
}

// pushAllowed is asked before the first content or header item of a
// FETCH response goes out. While the trail cannot take a record
// (AuditReadiness), content no FETCH in flight may have asked for
// (pushed under NOTIFY, RFC 5465 §5.2, or unsolicited) would be read
// with no record of it ever written: the session ends with
// "* BYE [UNAVAILABLE]" before any of it leaves (ARCHITECTURE.md §11).
// A FETCH in flight that asked for this message and item was decided
// while the trail could record it, and its record is awaited at its
// completion; for a UID FETCH that is known only once the response's UID
// was read before the item (else fail closed). Called with the client writer
// held; false when the session is ending.
func (p *backendPump) pushAllowed() bool {
	s, r := p.s, p.r
	ar := s.srv.auditReady
	if ar == nil {
		return true
	}
	err := ar.Ready()
	if err == nil {
		return true
	}
	// Asked for: a FETCH in flight names this message and this item
	// (answering's test, without crediting anything). Any FETCH in flight
	// would let a push ride along a FETCH of another message. Under a
	// NOTIFY that pushes content nothing is taken as asked for: a set
	// (`*`, `$`, `1:100`) may name a message that arrived after the FETCH
	// was sent, which the backend pushes rather than answers, and the
	// FETCH's own completion ends the session anyway (its record waits).
	dv := &p.w.dv
	uid, hasUID := dv.t.UID()
	asked := false
	r.mu.Lock()
	if !r.ctx.NotifyPush {
		r.inflight.until(func(f *inflight) bool {
			if !f.fetch {
				return true
			}
			asked = p.asks(f, uid, hasUID)
			return !asked
		})
	}
	r.mu.Unlock()
	if asked {
		return true
	}
	s.logger().Warn("pushed content withheld: the audit trail cannot record it; ending session", zap.Error(err))
	s.stop(byeAuditUnavailable, true)
	return false
}

// deliver asks the Limiter before content octets of a FETCH response go to
// the client (msg: they begin its message). A refusal ends the session at
// once with "* BYE [LIMIT]": nothing of the response went out when it was
// all held, else the response is cut where the refused item would begin,
// so that no content leaves uncharged (ARCHITECTURE.md §12). One limit hit
// is kept a response: its refusal, else its first alert. It returns false
// on a refusal. Called with the client writer held.
func (p *backendPump) deliver(octets int64, msg bool) bool {
	s, dv := p.s, &p.w.dv
	l := s.limit
	if l == nil {
		return true
	}
	msgs := 0
	if msg {
		msgs = 1
	}
	res := l.Delivered(octets, msgs)
	if res.hit() {
		// Logged after the response (logOwed), which began with none.
		switch {
		case !dv.hit:
			p.w.hits = append(p.w.hits, res)
			dv.hit = true
		case res.Exceeded:
			p.w.hits[len(p.w.hits)-1] = res
		}
	}
	if res.Delay > 0 {
		// Mid-response: the client writer stays held, as the response
		// is half written.
		time.Sleep(res.Delay)
	}
	if !res.Exceeded {
		return true
	}
	s.stop(byeFetchCap, true)
	return false
}

// delivered records a FETCH response that carried content or header
// items against the FETCH in flight that asked for it (answering), else
// as a delivery of its own, with its own class (content pushed under
// NOTIFY, RFC 5465, during IDLE, a NOOP, an EXPUNGE or a FETCH of other
// items or messages): never in the record of a command that did not ask
// for it, whose class (a FETCH of flags: "metadata") and uids (an
// EXPUNGE's) would misname it. At its end, or when it was cut after some
// of it went out (cut), with the content octets that did. Each response
// is counted once, so that the records' sums are the session's.
func (p *backendPump) delivered() {
	dv := &p.w.dv
	content := dv.counted
	if !content && dv.t.Headers == 0 {
		return
	}
	octets := dv.charged - dv.litOwed
	if content {
		addCount(&p.messagesFetched, 1)
	}
	uid, hasUID := dv.t.UID()
	r := p.r
	r.mu.Lock()
	if f := p.answering(uid, hasUID); f != nil {
		if content {
			addCount(&f.messages, 1)
			f.content += octets
			f.readContent = true
		}
		switch {
		case !hasUID:
			// Named by nothing but its place in the set: said so.
			addCount(&f.unnamed, 1)
		case len(f.uids) < p.s.lim.MaxAuditUIDs:
			f.uids = append(f.uids, uid)
		}
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	// The selected mailbox's, as this pump last set them (completed).
	ev := DeliveryEvent{Bytes: octets, Mailbox: p.s.info.Selected, UIDValidity: p.s.uidValidity, Headers: !content}
	if content {
		ev.Messages = 1
	}
	if hasUID {
		ev.UIDs = []uint32{uid}
	} else {
		ev.Seq = dv.num
	}
	p.w.dlv, p.w.owed = ev, true // logged after the response (logOwed)
}

// logOwed logs the audit events kept while the response was relayed
// (backendWork.hits, dlv), in the order they arose. Called with the
// client writer let go.
func (p *backendPump) logOwed() {
	s, w := p.s, p.w
	for i := range w.hits {
		s.srv.auditor.Limit(&s.info, w.hits[i])
		w.hits[i] = LimitResult{}
	}
	w.hits = w.hits[:0]
	if w.owed {
		s.srv.auditor.Delivered(&s.info, w.dlv)
		w.dlv, w.owed = DeliveryEvent{}, false
	}
}

// answering returns the FETCH in flight the response being delivered
// answers, nil if none asked for it. A FETCH response carries no tag, and
// a server may run FETCHes at once (RFC 9051 §5.5; Dovecot sends a later
// one's responses before an earlier one's completion): those whose set
// may name the message (its UID for a UID FETCH, its sequence number for
// a FETCH) and whose items include the response's first content item
// are the candidates. One: that one. Several: the oldest is credited,
// and the candidates join one group (shareGroup), whose records name
// each other (content_shared_with), so that the trail says the
// attribution is shared rather than guess. None: no FETCH asked for it
// (pushed data, NOTIFY): a delivery of its own.
//
// One pass over the FETCHes in flight, O(log) each, stopping once the
// group of the oldest candidate holds every command in flight (a
// pipeline of FETCHes of one message: one step a response): never a
// comparison of pairs. Called with mu held.
func (p *backendPump) answering(uid uint32, hasUID bool) *inflight {
	r := p.r
	inFlight := r.inflight.len()
	fit := func(x *inflight) bool { return p.asks(x, uid, hasUID) }
	if inFlight <= 1 {
		if f := r.inflight.oldest(); f != nil && f.fetch && fit(f) {
			return f
		}
		return nil
	}
	maxNames := p.s.lim.MaxAuditSharedWith
	// whole: g already holds every command in flight, candidates or not.
	whole := func(g *shareGroup) bool { return g != nil && g.live == inFlight }
	steps := 0
	var firstFit *inflight
	var g *shareGroup
	fits := 0
	r.inflight.until(func(x *inflight) bool {
		if !x.fetch {
			return true
		}
		steps++
		if !fit(x) {
			return true
		}
		switch fits++; fits {
		case 1:
			firstFit = x
			if x.share.group != nil {
				return !whole(x.share.group.root())
			}
			return true
		case 2:
			g = g.join(maxNames, firstFit)
		}
		g = g.join(maxNames, x)
		return !whole(g)
	})
	if answerSteps != nil {
		answerSteps.Add(int64(steps))
	}
	return firstFit
}

// asks reports whether x, a FETCH in flight, may have asked for the
// response being delivered: its set names the message (its UID for a UID
// FETCH, whose responses carry UID, RFC 9051 §6.4.9; else its number) and
// its items the response's first content item. Called with mu held.
func (p *backendPump) asks(x *inflight, uid uint32, hasUID bool) bool {
	dv := &p.w.dv
	if x.share == nil {
		x.share = &fetchShare{}
	}
	if x.cmd.UID {
		return hasUID && x.share.fits(x, &dv.t, uid)
	}
	return x.share.fits(x, &dv.t, dv.num)
}

// applyEnabled switches the name model to what a completed ENABLE turned
// on (its * ENABLED, enabledCaps): UTF-8 mailbox names after UTF8=ACCEPT
// (RFC 6855 §3) and after IMAP4rev2, whose names are UTF-8 too (RFC 9051
// §6.3.1, §5.1: no modified UTF-7 once it is enabled); QRESYNC
// (RFC 7162 §3.2.3).
func applyEnabled(ctx *imapwire.Context, enabled imapwire.Cap) {
	if enabled&(imapwire.CapUTF8ACCEPT|imapwire.CapIMAP4rev2) != 0 {
		ctx.UTF8 = true
	}
	if enabled&imapwire.CapQRESYNC != 0 {
		ctx.QRESYNC = true
	}
}

// renamedSelection is the selected mailbox cur after RENAME from to, cur
// being from or inside it; false when it stays: RENAME INBOX moves INBOX's
// messages to a new mailbox and leaves INBOX, and its inferiors, where they
// are (RFC 9051 §6.3.6).
func renamedSelection(cur, from, to string) (string, bool) {
	if from == "INBOX" {
		return cur, false
	}
	return to + cur[len(from):], true
}

// completed updates the session from a tagged completion: the selected
// mailbox (RFC 9051 §6.3.2: a failed SELECT leaves none selected), what
// ENABLE turned on, a renamed or deleted selected mailbox. Only an OK of
// the command changes anything (ARCHITECTURE.md §8). It returns unknown
// for a barrier answered BAD, or NO where no state after a NO is known
// (Spec.FailsKnown): the backends differ there (Cyrus keeps its mailbox
// selected after "BAD" to EXAMINE, Dovecot deselects), so the client pump
// decides nothing more (stateLost) and the caller ends the session once
// the client has the answer.
func (p *backendPump) completed(f *inflight, resp *imapwire.Response) (unknown bool) {
	ok := resp.Status == imapwire.StatusOK
	r, s := p.r, p.s
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.barrier == f {
		r.barrier = nil
		if !ok && (resp.Status == imapwire.StatusBAD || !f.cmd.Spec.FailsKnown) {
			r.stateLost = true
			return true
		}
	}
	sel, selRO, changed := "", false, true
	switch f.cmd.Name {
	case "SELECT", "EXAMINE":
		s.uidValidity, s.uidValidityNext = s.uidValidityNext, 0
		if !ok {
			s.uidValidity = 0
		}
		if ok {
			// [READ-ONLY] is what the backend answered, for policies and
			// the trail; the table reads only EXAMINE as read-only, since
			// a backend may decide a SELECTed mailbox's rights again later
			// (Dovecot at CLOSE): ARCHITECTURE.md §8.
			sel = f.cmd.Mailbox
			examined := f.cmd.Name == "EXAMINE"
			selRO = examined || wordIs(resp.Code, readOnlyName)
			r.ctx.State, r.ctx.Examined = imapwire.StateSelected, examined
		} else {
			r.ctx.State, r.ctx.Examined = imapwire.StateAuth, false
		}
	case "CLOSE", "UNSELECT":
		if !ok {
			return
		}
		r.ctx.State, r.ctx.Examined = imapwire.StateAuth, false
		s.uidValidity = 0
	case "NOTIFY":
		// What the backend may push from now on (Context.NotifyPush). A
		// failed NOTIFY may or may not have replaced the one in effect:
		// either is assumed.
		push := f.cmd.Effects.Has(imapwire.EffReadContent) || f.cmd.Effects.Has(imapwire.EffSetFlags)
		r.ctx.NotifyPush = push || (!ok && r.ctx.NotifyPush)
		return
	case "ENABLE":
		if ok && r.enabledUnread {
			// The backend turned on what the proxy cannot read: the
			// session's state is unknown as after a barrier's BAD.
			r.stateLost = true
			return true
		}
		if ok {
			applyEnabled(&r.ctx, r.enabled)
		}
		return
	case "RENAME", "DELETE":
		if !ok || r.ctx.State != imapwire.StateSelected {
			return
		}
		cur := s.info.Selected // this pump is its only writer
		if !under(cur, f.cmd.Mailbox, r.ctx.Delim) {
			return
		}
		if f.cmd.Name == "DELETE" {
			// What a server does with a deleted selected mailbox varies;
			// decide nothing more in it.
			r.ctx.State, r.ctx.Examined = imapwire.StateAuth, false
			s.uidValidity = 0
		} else if sel, changed = renamedSelection(cur, f.cmd.Mailbox, f.cmd.Destination); !changed {
			return
		} else {
			selRO = s.info.SelectedReadOnly
		}
	default:
		changed = false
	}
	if changed {
		s.infoMu.Lock()
		s.info.Selected, s.info.SelectedReadOnly = sel, selRO
		s.infoMu.Unlock()
	}
	return false
}
