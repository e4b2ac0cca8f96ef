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

// relayedCommands are the commands the relay forwards after login: those
// the parser understands, for the capabilities relayedCaps lets through.
var relayedCommands = map[string]bool{
	"CAPABILITY": true, "NOOP": true, "LOGOUT": true, "ID": true, "ENABLE": true,
	"SELECT": true, "EXAMINE": true, "CREATE": true, "DELETE": true, "RENAME": true,
	"SUBSCRIBE": true, "UNSUBSCRIBE": true, "LIST": true, "LSUB": true, "NAMESPACE": true,
	"STATUS": true, "APPEND": true, "IDLE": true, "CHECK": true, "CLOSE": true, "UNSELECT": true,
	"EXPUNGE": true, "SEARCH": true, "FETCH": true, "STORE": true, "COPY": true, "MOVE": true,
	"SORT": true, "THREAD": true, "ESEARCH": true, "GETACL": true, "SETACL": true, "DELETEACL": true,
	"LISTRIGHTS": true, "MYRIGHTS": true, "GETQUOTA": true, "GETQUOTAROOT": true, "SETQUOTA": true,
	"GETMETADATA": true, "SETMETADATA": true, "NOTIFY": true,
}

// inflight is a command forwarded to the backend and not yet completed.
type inflight struct {
	tag      string
	cmd      imapwire.Command // snapshot without Args
	start    time.Time
	bytesIn  int64
	decision *Decision
	bodyRead bool
	messages int      // responses with content (backend pump only)
	uids     []uint32 // their UIDs, capped (backend pump only)
}

// relayState is shared by the two pumps; mu guards every field.
type relayState struct {
	mu       sync.Mutex
	inflight []*inflight
	// A pump waiting for the backend's answer to a synchronizing literal:
	// "+" (true) or the tagged completion of contTag (false). With
	// contSwallow the "+" is not relayed: the client already got ours.
	contArmed   bool
	contTag     string
	contSwallow bool
	contCh      chan bool
	sawBye      bool
	backendDone chan struct{}
	// bodyFetches counts in-flight FETCHes of content, so that the
	// backend pump looks for UIDs only while one runs.
	bodyFetches atomic.Int32
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

// take removes and returns the oldest in-flight command with tag.
func (r *relayState) take(tag []byte) *inflight {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, f := range r.inflight {
		if f.tag == string(tag) {
			r.inflight = append(r.inflight[:i], r.inflight[i+1:]...)
			if f.bodyRead {
				r.bodyFetches.Add(-1)
			}
			return f
		}
	}
	return nil
}

// sawContent records a FETCH response carrying content against the oldest
// in-flight content FETCH.
func (r *relayState) sawContent(part []byte) {
	uid, hasUID := imapwire.FetchUID(part)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.inflight {
		if f.bodyRead {
			f.messages++
			if hasUID && len(f.uids) < MaxAuditUIDs {
				f.uids = append(f.uids, uid)
			}
			return
		}
	}
}

// hasContent reports whether a FETCH response line carries message
// content (a body section or RFC822 item).
func hasContent(part []byte) bool {
	for _, k := range contentItems {
		if bytes.Contains(part, k) {
			return true
		}
	}
	return false
}

var contentItems = [][]byte{[]byte("BODY["), []byte("BINARY["), []byte("RFC822 "), []byte("RFC822.HEADER "), []byte("RFC822.TEXT "),
	[]byte("body["), []byte("binary["), []byte("rfc822 "), []byte("rfc822.header "), []byte("rfc822.text ")}

func (r *relayState) pending(f *inflight) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range r.inflight {
		if x == f {
			return true
		}
	}
	return false
}

// runRelay runs phase B until either side ends.
func (s *Session) runRelay() {
	r := &relayState{contCh: make(chan bool, 1), backendDone: make(chan struct{})}
	s.relay = r
	go s.backendPump()
	s.clientPump()
	s.closing.Store(true)
	s.closeConns()
	<-r.backendDone
	for _, f := range r.inflight {
		// The session is over: nothing is left to hold back.
		_ = s.auditCompleted(f, &imapwire.Response{}, 0, "")
	}
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
			idle = nil
			if isDone(line) && !hasLit {
				if s.forwardNow(line) != nil {
					return
				}
				continue
			}
			// Only DONE ends IDLE (RFC 9051 §6.3.13): end it for the
			// client, then read the line as the next command.
			if s.forwardNow([]byte("DONE\r\n")) != nil {
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
		if s.forwardNow([]byte("DONE\r\n")) != nil {
			return
		}
	}
	for {
		r.mu.Lock()
		n := len(r.inflight)
		r.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-r.backendDone:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	s.sayShutdown()
}

func isDone(line []byte) bool {
	return bytes.EqualFold(bytes.TrimRight(line, "\r\n"), []byte("DONE"))
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

// relayCommand handles one command from its first line to its end. It
// returns the in-flight record when the command was forwarded, nil when
// the proxy answered it, and errStop when the session must end.
func (s *Session) relayCommand(line []byte, lit imapwire.Literal, hasLit bool, start time.Time) (*inflight, error) {
	lim := s.lim
	be := s.be
	bytesIn := int64(len(line))
	if ok, err := s.checkedLine(line, lit, hasLit, true); !ok {
		return nil, err
	}
	cmd := s.parser.Command()
	switch {
	case cmd.Name == "LOGIN" || cmd.Name == "AUTHENTICATE" || cmd.Name == "STARTTLS":
		return nil, s.refuse(cmd, lit, hasLit, "BAD", "[CLIENTBUG] Already logged in")
	case cmd.Name == "COMPRESS":
		if hasLit || len(cmd.Args) != 1 || !strings.EqualFold(cmd.Args[0].Value, "DEFLATE") {
			return nil, s.refuse(cmd, lit, hasLit, "NO", "[CANNOT] Only COMPRESS DEFLATE is available")
		}
		if d := s.decideCommand(cmd, false, nil); !d.Allow {
			return nil, s.deny(cmd, d, lit, false, start, int64(len(line)))
		}
		return nil, s.startCompress(cmd.Tag)
	case !relayedCommands[cmd.Name]:
		return nil, s.refuse(cmd, lit, hasLit, "BAD", "Unknown command")
	}
	pend := append(s.litBuf[:0], line...)
	var marks []int // offsets after which the backend's "+" is swallowed
	var f *inflight
	defer func() { s.litBuf = pend[:0] }()
	for hasLit {
		cmd = s.parser.Command()
		isMsg := s.parser.PendingIsMessage()
		max := int64(lim.MaxLine)
		if isMsg {
			max = lim.MaxAppendLiteral
		}
		// LITERAL- caps non-synchronizing literals (RFC 7888 §5).
		if lit.NonSync && !be.hasCap("LITERAL+") && lit.Size > literalMinusMax {
			max = literalMinusMax
		}
		buffered := f == nil && !isMsg && lit.Size <= int64(lim.MaxBufferedLiteral)
		if buffered && int64(len(pend))+lit.Size > int64(lim.MaxLine)*2 {
			buffered, max = false, 0 // too many small literals: refuse
		}
		if lit.Size > max {
			if f != nil || lit.NonSync {
				// Bytes are in flight or the backend is mid-command: the
				// stream cannot be brought back in step.
				s.setReason("literal-too-big")
				s.writef("* BYE [TOOBIG] Literal too big\r\n")
				return nil, errStop
			}
			limit := "max_literal"
			if isMsg {
				limit = "max_append_literal"
			}
			s.srv.auditor.Limit(&s.info, LimitResult{Exceeded: true, Limit: limit, Key: "session", Code: "TOOBIG", Reason: "Literal too big"})
			s.sc.IgnoreLiteral()
			return nil, s.writef("%s NO [TOOBIG] Literal too big\r\n", cmd.Tag)
		}
		switch {
		case buffered:
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
		default:
			if f == nil {
				// The decision point: a literal streamed through.
				d := s.decideCommand(cmd, false, &lit)
				if !d.Allow {
					return nil, s.deny(cmd, d, lit, true, start, bytesIn)
				}
				f = s.register(cmd, d, start)
				if !s.forwardPending(f, pend, marks) {
					// The backend ended the command early; the client
					// has its answer and drops or sends this literal.
					return f, s.dropLiteral(lit, true, max)
				}
				pend = pend[:0]
			} else if isMsg {
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
			if !lit.NonSync {
				s.relay.arm(f.tag, false)
				if err := s.flushBackend(); err != nil {
					return f, err
				}
				if ok, err := s.waitCont(); err != nil || !ok {
					// Refused: the client got the tagged reply instead.
					s.sc.IgnoreLiteral()
					return f, err
				}
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
			if err != nil {
				// Half the command is at the backend: cannot recover.
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
		d := s.decideCommand(cmd, false, nil)
		if !d.Allow {
			return nil, s.deny(cmd, d, lit, false, start, bytesIn)
		}
		f = s.register(cmd, d, start)
		if !s.forwardPending(f, pend, marks) {
			return f, s.streamOK()
		}
	}
	f.bytesIn = bytesIn
	// Pipelined commands already buffered leave in the same write.
	if s.br.Buffered() == 0 || f.cmd.Name == "IDLE" {
		return f, s.flushBackend()
	}
	return f, nil
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
		Denied: true, Decision: d, BytesIn: bytesIn,
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
// leaves, so that the backend pump can match its completion.
func (s *Session) register(cmd *imapwire.Command, d Decision, start time.Time) *inflight {
	f := &inflight{tag: cmd.Tag, cmd: snapshot(cmd), start: start}
	if d.Reason != "" || len(d.Annotations) > 0 {
		f.decision = &d
	}
	if f.cmd.Name == "FETCH" && FetchReadsBody(f.cmd.FetchItems) {
		f.bodyRead = true
	}
	if f.cmd.Name == "SELECT" || f.cmd.Name == "EXAMINE" {
		// Commands pipelined behind it run in the new mailbox (the server
		// processes them in order), so they are decided against it; a
		// failed SELECT leaves none selected (RFC 9051 §6.3.1), which its
		// completion records.
		s.infoMu.Lock()
		s.info.Selected, s.info.SelectedReadOnly = f.cmd.Mailbox, f.cmd.Name == "EXAMINE"
		s.infoMu.Unlock()
	}
	r := s.relay
	r.mu.Lock()
	r.inflight = append(r.inflight, f)
	if f.bodyRead {
		r.bodyFetches.Add(1)
	}
	r.mu.Unlock()
	return f
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

var (
	capName       = []byte("CAPABILITY")
	fetchName     = []byte("FETCH")
	idName        = []byte("ID")
	copyUIDName   = []byte("COPYUID")
	appendUIDName = []byte("APPENDUID")
)

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

// backendPump relays responses to the client, filtering capabilities and
// matching tagged completions to commands.
func (s *Session) backendPump() {
	r := s.relay
	defer close(r.backendDone)
	be := s.be
	sc := be.sc
	var fbuf []byte
	var outSince int64 // response bytes since the last tagged completion
	for {
		if be.br.Buffered() == 0 {
			// Nothing pending: wait without holding the read buffer.
			if err := be.waitReadable(); err != nil {
				s.backendLost(err, false)
				return
			}
		}
		part, final, _, hasLit, err := sc.ReadLinePart()
		if err != nil {
			s.backendLost(err, false)
			return
		}
		resp, perr := imapwire.ParseResponse(part)
		relay, cont := true, false
		var done *inflight
		s.wmu.Lock()
		if perr == nil {
			switch resp.Kind {
			case imapwire.Continuation:
				r.mu.Lock()
				if r.contArmed {
					cont, relay = true, !r.contSwallow
					r.contArmed = false
				}
				r.mu.Unlock()
			case imapwire.Tagged:
				// State first: once the client has this reply, its next
				// command may be decided.
				if done = r.take(resp.Tag); done != nil {
					s.completed(done, &resp)
					// Before the client has its answer, so that its next
					// FETCH is decided against the bytes counted here,
					// and so that no client hears a completion its audit
					// record does not hold (a fail-closed audit queue
					// holds the reply back).
					s.fetched(done, outSince+int64(len(part)))
					var codeArgs string
					if bytes.EqualFold(resp.Code, copyUIDName) || bytes.EqualFold(resp.Code, appendUIDName) {
						codeArgs = responseCodeArgs(part)
					}
					if err := s.auditCompleted(done, &resp, outSince+int64(len(part)), codeArgs); err != nil {
						s.auditUnavailable(err)
						s.wmu.Unlock()
						return
					}
				}
			case imapwire.Untagged:
				if resp.Status == imapwire.StatusBYE {
					r.mu.Lock()
					r.sawBye = true
					r.mu.Unlock()
				}
				if r.bodyFetches.Load() > 0 && bytes.EqualFold(resp.Name, fetchName) && hasContent(part) {
					r.sawContent(part)
					s.messagesFetched++
				}
				if bytes.EqualFold(resp.Name, idName) && !s.srv.opts.ShowBackendID {
					// Ours instead; the original, literals included, is
					// read and dropped below.
					s.out().WriteString(proxyIDResponse)
					relay = false
				}
			}
			if final && (bytes.EqualFold(resp.Name, capName) || bytes.EqualFold(resp.Code, capName)) {
				if out, changed := imapwire.FilterCapabilities(fbuf[:0], part, dropCapability); changed {
					fbuf, part = out, out
				}
				if bytes.EqualFold(resp.Name, capName) && s.fw == nil {
					// The proxy terminates COMPRESS itself (compress.go).
					fbuf = appendCapability(fbuf, part, "COMPRESS=DEFLATE")
					part = fbuf
				}
			}
		}
		n, err := s.relayResponse(part, final, hasLit, relay, perr == nil && resp.MayHaveLiteral())
		if err != nil {
			s.wmu.Unlock()
			return
		}
		s.wmu.Unlock()
		outSince += n
		if cont {
			r.signal(true)
		}
		if done != nil {
			outSince = 0
			r.mu.Lock()
			if r.contArmed && r.contTag == done.tag {
				r.contArmed = false
				r.mu.Unlock()
				r.signal(false)
			} else {
				r.mu.Unlock()
			}
		}
	}
}

// relayResponse writes the rest of one response (its first piece given),
// streaming literals, and flushes once the backend has nothing buffered.
// Called with wmu held.
func (s *Session) relayResponse(part []byte, final, hasLit, relay, literals bool) (int64, error) {
	sc := s.be.sc
	w := s.out()
	var err error
	var n int64
	for {
		if relay {
			w.Write(part)
			n += int64(len(part))
		}
		for !final {
			if part, final, _, hasLit, err = sc.ReadLinePart(); err != nil {
				s.backendLost(err, true)
				return n, err
			}
			if relay {
				w.Write(part)
				n += int64(len(part))
			}
		}
		if !hasLit {
			break
		}
		if !literals {
			// "{5}" at the end of resp-text is text (RFC 9051 §7.1).
			sc.IgnoreLiteral()
			break
		}
		m, err := sc.CopyLiteral(w)
		n += m
		if err != nil {
			if errors.Is(err, imapwire.ErrNoLiteral) || w.Flush() == nil {
				s.backendLost(err, true)
			} else {
				s.clientWriteFailed(err)
			}
			return n, err
		}
		if part, final, _, hasLit, err = sc.ReadLinePart(); err != nil {
			s.backendLost(err, true)
			return n, err
		}
	}
	if s.be.br.Buffered() == 0 {
		if err := s.flushOut(w); err != nil {
			s.clientWriteFailed(err)
			return n, err
		}
		s.idleOut()
	}
	return n, nil
}

// completed updates the selected mailbox from a tagged completion
// (RFC 9051 §6.3.1: a failed SELECT leaves no mailbox selected).
func (s *Session) completed(f *inflight, resp *imapwire.Response) {
	ok := resp.Status == imapwire.StatusOK
	switch f.cmd.Name {
	case "SELECT", "EXAMINE":
		s.infoMu.Lock()
		if ok {
			s.info.Selected = f.cmd.Mailbox
			s.info.SelectedReadOnly = f.cmd.Name == "EXAMINE" || strings.EqualFold(string(resp.Code), "READ-ONLY")
		} else {
			s.info.Selected, s.info.SelectedReadOnly = "", false
		}
		s.infoMu.Unlock()
	case "CLOSE", "UNSELECT":
		if ok {
			s.infoMu.Lock()
			s.info.Selected, s.info.SelectedReadOnly = "", false
			s.infoMu.Unlock()
		}
	}
}

// fetched tells the Limiter what a content FETCH returned.
func (s *Session) fetched(f *inflight, bytesOut int64) {
	if l := s.dyn.Limiter; l != nil && f.bodyRead {
		s.infoMu.Lock()
		if res := l.Fetched(&s.info, bytesOut, f.messages); res.hit() {
			s.srv.auditor.Limit(&s.info, res)
		}
		s.infoMu.Unlock()
	}
}

func (s *Session) auditCompleted(f *inflight, resp *imapwire.Response, bytesOut int64, codeArgs string) error {
	ev := CommandEvent{
		Command:  &f.cmd,
		Result:   statusName(resp.Status),
		Code:     string(resp.Code),
		Duration: time.Since(f.start),
		Decision: f.decision,
		BytesIn:  f.bytesIn,
		BytesOut: bytesOut,
		BodyRead: f.bodyRead,
		Messages: f.messages,
		UIDs:     f.uids,
		CodeArgs: codeArgs,
	}
	s.infoMu.Lock()
	err := s.srv.auditor.Command(&s.info, ev)
	s.infoMu.Unlock()
	return err
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
		if !haveWmu {
			s.wmu.Lock()
			defer s.wmu.Unlock()
		}
		w := s.out()
		w.WriteString("* BYE [UNAVAILABLE] Backend connection lost\r\n")
		s.flushOut(w)
		s.idleOut()
	}
	s.closing.Store(true)
	s.closeConns()
}

func (s *Session) clientWriteFailed(err error) {
	s.setReason("client-write-error")
	s.log.Debug("client write failed", zap.Error(err))
	s.closing.Store(true)
	s.closeConns()
}
