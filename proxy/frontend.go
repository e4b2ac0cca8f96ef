package proxy

import (
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// frontEnd serves commands until a login succeeds (its authed) or the
// session ends (the zero authed). Every command, however it is answered,
// is accounted by preAuthDone.
func (s *Session) frontEnd() authed {
	// The end of the client's idle time (held here: the Session has no
	// room for it, idleheap_test.go).
	idleUntil := time.Now().Add(s.lim.PreAuthIdle)
	for {
		if !s.waitCommand(idleUntil) {
			s.sayShutdown()
			return authed{}
		}
		cmd, held, err := s.readPreAuthCommand()
		s.waiting.Store(false)
		if err != nil {
			return authed{}
		}
		// cmd is nil when it was answered as it was read.
		if cmd != nil {
			a, end := s.servePreAuth(cmd, held)
			switch {
			case a.be != nil:
				return a
			case end:
				return authed{}
			}
		}
		if !s.preAuthDone(cmd != nil, &idleUntil) {
			return authed{}
		}
	}
}

// preAuthDone accounts one command before login, whichever path answered
// it (served, refused by the grammar, refused while it was read: a syntax
// error, a literal refused or too big, [PRIVACYREQUIRED]), so that none
// escapes a limit (ARCHITECTURE.md §12): it counts against
// MaxPreAuthCommands, the failed logins it made (Info.AuthFailures,
// counted where each is audited) are held to MaxAuthFailures, and only a
// command that parsed restarts the idle time. A client that sends nothing
// the proxy can parse keeps its slot PreAuthIdle after its last command
// that parsed, whatever it sends meanwhile; one that parses, at most
// MaxPreAuthCommands times PreAuthIdle. Past a limit the session ends
// at once, the BYE its last word; it returns false then. idleUntil is the
// end of the idle time, restarted here.
func (s *Session) preAuthDone(parsed bool, idleUntil *time.Time) bool {
	s.preAuthCommands++
	if s.draining.Load() {
		return true // the wait says the shutdown's BYE
	}
	switch {
	case s.info.AuthFailures >= s.lim.MaxAuthFailures:
		s.answer("*", bye(CloseAuthFailures, "", "Too many authentication failures"))
		return false
	case s.preAuthCommands >= s.lim.MaxPreAuthCommands:
		s.answer("*", bye(ClosePreAuthCommandLimit, "LIMIT", "Too many commands before login"))
		return false
	}
	if parsed {
		*idleUntil = time.Now().Add(s.lim.PreAuthIdle)
	}
	if preAuthAccounted != nil {
		preAuthAccounted(parsed)
	}
	return true
}

// preAuthAccounted, when set (tests), is told of each command before login
// that preAuthDone let the session go on after, and whether it restarted
// the idle time.
var preAuthAccounted func(restarted bool)

// servePreAuth answers one parsed command before login. It returns the
// login, or end when the session ends (its last word said).
func (s *Session) servePreAuth(cmd *imapwire.Command, held int64) (a authed, end bool) {
	first := s.preAuthCommands == 0
	tag := cmd.Tag
	name := cmd.Name
	if cmd.Spec == nil || cmd.Spec.States&imapwire.StateNotAuth == 0 {
		name = "" // not served before login
	} else if err := s.parser.Check(&imapwire.Context{State: imapwire.StateNotAuth}); err != nil {
		// The one grammar of the table holds before login too.
		s.answer(tag, syntaxReply(err))
		return authed{}, false
	}
	switch name {
	case "CAPABILITY":
		s.writef("* CAPABILITY %s\r\n%s OK CAPABILITY completed\r\n", s.preAuthCaps(), tag)
	case "NOOP":
		s.writef("%s OK NOOP completed\r\n", tag)
	case "LOGOUT":
		s.setReason(CloseLogout)
		s.writef("* BYE Logging out\r\n%s OK LOGOUT completed\r\n", tag)
		return authed{}, true
	case "ID":
		s.handleID(cmd)
	case "STARTTLS":
		if !s.startTLS(tag) {
			return authed{}, true
		}
	case "LOGIN":
		if len(cmd.Args) != 2 || !isString(cmd.Args[0]) || !isString(cmd.Args[1]) {
			s.answer(tag, bad("", "LOGIN expects user name and password"))
			return authed{}, false
		}
		return s.login(tag, &Credentials{Mechanism: "LOGIN", User: cmd.Args[0].Value, Password: cmd.Args[1].Value}, nil), false
	case "AUTHENTICATE":
		return s.authenticate(cmd, held), false
	default:
		if first {
			// RFC 9051 does not ask for this; it stops cross-protocol
			// use of the port (HTTP, SMTP, a ClientHello) at once.
			s.srv.auditor.Security(&s.info, "non-imap-client", "unknown first command")
			s.answer("*", byeNonIMAP)
			return authed{}, true
		}
		if cmd.Spec != nil {
			s.answer(tag, bad("", "Log in first"))
		} else {
			s.answer(tag, bad("", "Unknown command"))
		}
	}
	return authed{}, false
}

// readPreAuthCommand reads one whole command, buffering its literals (all
// small before login), and returns it with the bytes it held (lines,
// literals, parsed arguments). It returns nil when the command was
// already answered (syntax error, refused literal), to be accounted like
// any other (preAuthDone), and an error when the session must end.
func (s *Session) readPreAuthCommand() (*imapwire.Command, int64, error) {
	first := s.preAuthCommands == 0
	line, lit, hasLit, err := s.sc.ReadLine()
	s.parser.Reset()
	if err == nil {
		err = s.parser.Line(line, lit, hasLit)
	}
	if err != nil {
		var se *imapwire.SyntaxError
		if !errors.As(err, &se) || first || (hasLit && lit.NonSync) {
			if errors.As(err, &se) {
				s.srv.auditor.Security(&s.info, "non-imap-client", se.Msg)
				s.answer("*", byeNonIMAP)
			} else {
				s.readErr(err)
			}
			return nil, 0, errClose
		}
		s.answer(s.tagOf(line), syntaxReply(err))
		return nil, 0, nil
	}
	held := int64(len(line))
	for {
		cmd := s.parser.Command()
		var refuse *reply
		switch {
		case !hasLit:
		case lit.Size > int64(s.lim.MaxBufferedLiteral):
			refuse = replyLiteralTooBig
		case cmd.Name == "LOGIN" && !s.authAllowed():
			// Refuse before the password is sent (RFC 9051 §6.2.3).
			refuse = replyLoginPrivacy
		case cmd.Name != "LOGIN" && cmd.Name != "ID":
			refuse = no("CLIENTBUG", "Unexpected literal")
		}
		if refuse != nil {
			// A synchronizing literal will not come; the bytes of a small
			// non-synchronizing one are counted away (RFC 7888 §4), a big
			// one ends the session.
			if err := s.dropLiteral(lit, true, int64(s.lim.MaxBufferedLiteral)); err != nil {
				return nil, 0, errClose
			}
			if refuse == replyLoginPrivacy {
				s.info.AuthFailures++
				s.srv.auditor.Auth(&s.info, AuthEvent{Mechanism: "LOGIN", Attempt: s.info.AuthFailures, Reason: "privacy-required"})
			}
			s.answer(cmd.Tag, refuse)
			return nil, 0, nil
		}
		if refused, err := s.preAuthTooMuch(cmd, held, lit, hasLit); refused {
			return nil, 0, err
		}
		if !hasLit {
			break
		}
		if !lit.NonSync {
			s.writef("+ Ready for literal data\r\n")
		}
		var body []byte
		if body, err = s.sc.ReadLiteral(nil, s.lim.MaxBufferedLiteral); err != nil {
			s.readErr(err)
			return nil, 0, err
		}
		s.parser.Literal(body)
		held += int64(len(body))
		line, lit, hasLit, err = s.sc.ReadLine()
		held += int64(len(line))
		if err == nil {
			err = s.parser.Line(line, lit, hasLit)
		}
		if err != nil {
			var se *imapwire.SyntaxError
			if errors.As(err, &se) && !(hasLit && lit.NonSync) {
				s.answer(cmd.Tag, syntaxReply(err))
				return nil, 0, nil
			}
			s.readErr(err)
			return nil, 0, errClose
		}
	}
	return s.parser.Command(), held + s.parser.ArgBytes(), nil
}

// preAuthTooMuch refuses a command before login, as its pieces arrive,
// when what the proxy holds of it (held bytes, the literal announced, the
// parsed arguments) outgrows MaxPreAuthCommandBytes, or when it is an ID
// of more than 30 pairs (RFC 2971 §3.3): each piece is small, their sum
// is not. A {n+} already in flight cannot be told from the next command:
// the session ends.
func (s *Session) preAuthTooMuch(cmd *imapwire.Command, held int64, lit imapwire.Literal, hasLit bool) (bool, error) {
	if hasLit {
		held += lit.Size
	}
	var r, closing *reply
	switch {
	case held+s.parser.ArgBytes() > int64(s.lim.MaxPreAuthCommandBytes):
		s.srv.auditor.Limit(&s.info, hitPreAuthCommandBytes)
		r, closing = replyCommandTooBig, byeCommandTooBig
	case cmd.Name == "ID" && len(cmd.Args) > 0 && cmd.Args[0].Kind == imapwire.ArgList && len(cmd.Args[0].List) > 2*maxIDPairs:
		r, closing = replyBadID, byeBadID
	default:
		return false, nil
	}
	if hasLit && lit.NonSync {
		return true, s.answer("*", closing)
	}
	if hasLit {
		s.sc.IgnoreLiteral() // the client waits for a "+" it will not get
	}
	s.answer(cmd.Tag, r)
	return true, nil
}

// hitPreAuthCommandBytes is the limit record of a command refused by
// MaxPreAuthCommandBytes.
var hitPreAuthCommandBytes = LimitResult{Exceeded: true, Limit: "max_preauth_command_bytes", Key: "session", Code: "TOOBIG", Reason: "Command too big"}

// hitCommandBytes is the limit record of a command refused by
// MaxCommandBytes.
var hitCommandBytes = LimitResult{Exceeded: true, Limit: "max_command_bytes", Key: "session", Code: "TOOBIG", Reason: "Command too big"}

// maxIDPairs is RFC 2971 §3.3's limit of field-value pairs in an ID.
const maxIDPairs = 30

var (
	replyBadID = bad("", "Invalid ID parameter list")
	byeBadID   = bye(CloseProtocolError, "CLIENTBUG", "Invalid ID parameter list")
)

// skipRestOfCommand reads and drops the remaining lines and small
// non-synchronizing literals of a refused command, counted as any
// command's bytes against MaxCommandBytes (MaxPreAuthCommandBytes before
// login; ARCHITECTURE.md §12): a chain of them cannot keep the proxy
// reading one command for ever.
func (s *Session) skipRestOfCommand() error {
	budget, hit := int64(s.lim.MaxCommandBytes), &hitCommandBytes
	if s.relay == nil {
		budget, hit = int64(s.lim.MaxPreAuthCommandBytes), &hitPreAuthCommandBytes
	}
	var n int64
	for {
		line, lit, hasLit, err := s.sc.ReadLine()
		if err != nil {
			s.readErr(err)
			return err
		}
		if n += int64(len(line)); hasLit {
			n += lit.Size
		}
		if n > budget {
			s.srv.auditor.Limit(&s.info, *hit)
			s.answer("*", byeCommandTooBig)
			return errClose
		}
		if !hasLit {
			return nil
		}
		if !lit.NonSync || lit.Size > int64(s.lim.MaxBufferedLiteral) {
			// A client that waits for "+" we never send, or a literal we
			// will not count through: the stream is lost.
			s.answer("*", byeUnexpectedLiteral)
			return errClose
		}
		if err := s.sc.DiscardLiteral(); err != nil {
			s.readErr(err)
			return err
		}
	}
}

var errClose = errors.New("session closed")

// tagOf returns the tag of a line for an error reply, or "*" when the line
// has no tag the proxy accepts (RFC 9051 §7.1.3: an untagged BAD when the
// tag cannot be determined).
func (s *Session) tagOf(line []byte) string {
	if tag, ok := imapwire.LineTag(line, s.lim.MaxTag); ok {
		return string(tag)
	}
	return "*"
}

func isString(a imapwire.Arg) bool {
	return a.Kind == imapwire.ArgAtom || a.Kind == imapwire.ArgQuoted || (a.Kind == imapwire.ArgLiteral && !a.Streamed)
}

// handleID records the client's ID parameters (RFC 2971 §3.1) and answers
// with as little about us as the RFC allows.
func (s *Session) handleID(cmd *imapwire.Command) {
	if len(cmd.Args) != 1 {
		s.answer(cmd.Tag, bad("", "ID expects one argument"))
		return
	}
	a := cmd.Args[0]
	if a.Kind == imapwire.ArgList {
		if len(a.List)%2 != 0 || len(a.List) > 2*maxIDPairs {
			s.answer(cmd.Tag, replyBadID)
			return
		}
		id := make(map[string]string, len(a.List)/2)
		var names [maxIDPairs]string
		for i := 0; i+1 < len(a.List); i += 2 {
			k, v := a.List[i], a.List[i+1]
			if !isString(k) || len(k.Value) > 30 || len(v.Value) > 1024 || !idFieldName(k.Value) {
				s.answer(cmd.Tag, replyBadID)
				return
			}
			// A field given twice (field names are compared without
			// case) has two readings; so have names beyond ASCII, which
			// the audit trail's readers fold together where ToLower does
			// not (U+017F and "s", ARCHITECTURE.md §11).
			name := strings.ToLower(k.Value)
			if slices.Contains(names[:i/2], name) {
				s.answer(cmd.Tag, replyBadID)
				return
			}
			names[i/2] = name
			if v.Kind == imapwire.ArgAtom && strings.EqualFold(v.Value, "NIL") {
				continue
			}
			id[name] = v.Value
		}
		s.info.ClientID = id
	} else if !(a.Kind == imapwire.ArgAtom && strings.EqualFold(a.Value, "NIL")) {
		s.answer(cmd.Tag, bad("", "Invalid ID argument"))
		return
	}
	s.writef("%s%s OK ID completed\r\n", proxyIDResponse, cmd.Tag)
}

// idFieldName tells whether an ID field name is printable ASCII, as the
// names RFC 2971 §3.3 defines are.
func idFieldName(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// startTLS upgrades a plaintext listener's connection (RFC 9051 §6.2.1).
// It returns false when the session must end.
func (s *Session) startTLS(tag string) bool {
	if s.lo.Mode != StartTLS || s.tlsActive {
		s.answer(tag, bad("", "STARTTLS not available"))
		return true
	}
	if err := s.writef("%s OK Begin TLS negotiation now\r\n", tag); err != nil {
		return false
	}
	// Anything the client sent after STARTTLS in the same plaintext
	// stream would otherwise be read as if it came over TLS
	// (CVE-2011-0411).
	if s.br.Buffered() > 0 {
		s.srv.auditor.Security(&s.info, "starttls-injection", fmt.Sprintf("%d bytes pipelined after STARTTLS", s.br.Buffered()))
		s.setReason(CloseStartTLSInjection)
		return false
	}
	if err := s.handshake(); err != nil {
		s.setReason(CloseTLSHandshake)
		s.logger().Debug("starttls handshake failed", zap.Error(err))
		return false
	}
	// Forget what was learned before TLS.
	s.info.ClientID = nil
	return true
}

// authenticate runs AUTHENTICATE (RFC 9051 §6.2.2) with PLAIN, LOGIN,
// EXTERNAL, and with a token authenticator OAUTHBEARER (RFC 7628) and
// XOAUTH2, with an optional initial response (RFC 4959). held is what the
// command held; the client's responses add to it (saslExchange).
func (s *Session) authenticate(cmd *imapwire.Command, held int64) authed {
	tag := cmd.Tag
	sx := &saslExchange{tag: tag, held: held}
	if len(cmd.Args) < 1 || len(cmd.Args) > 2 || cmd.Args[0].Kind != imapwire.ArgAtom {
		s.answer(tag, bad("", "AUTHENTICATE expects a mechanism"))
		return authed{}
	}
	mech := strings.ToUpper(cmd.Args[0].Value)
	if !s.authAllowed() {
		s.info.AuthFailures++
		s.srv.auditor.Auth(&s.info, AuthEvent{Mechanism: mech, Attempt: s.info.AuthFailures, Reason: "privacy-required"})
		s.answer(tag, no("PRIVACYREQUIRED", "Authentication is disabled until TLS is active"))
		return authed{}
	}
	cr := Credentials{Mechanism: mech}
	var server sasl.Server
	switch mech {
	case "PLAIN":
		server = sasl.NewPlainServer(func(identity, username, password string) error {
			cr.AuthzID, cr.User, cr.Password = identity, username, password
			return nil
		})
	case "LOGIN":
		server = newLoginServer(func(username, password string) error {
			cr.User, cr.Password = username, password
			return nil
		})
	case "EXTERNAL":
		// The TLS client certificate is the credential (RFC 4422 App. A);
		// the response may only name an authorization identity.
		cr.User = s.info.TLS.certUser()
		if !s.lo.CertLogin || cr.User == "" {
			s.info.AuthFailures++
			s.srv.auditor.Auth(&s.info, AuthEvent{Mechanism: mech, Attempt: s.info.AuthFailures, Reason: "no-certificate"})
			s.answer(tag, no("AUTHENTICATIONFAILED", "No verified client certificate"))
			return authed{}
		}
		server = sasl.NewExternalServer(func(identity string) error {
			cr.AuthzID = identity
			return nil
		})
	case "OAUTHBEARER", "XOAUTH2":
		if _, ok := s.tokenAuth(); !ok {
			s.answer(tag, no("CANNOT", "Unsupported authentication mechanism"))
			return authed{}
		}
		server = &tokenServer{mech: mech, cr: &cr}
	default:
		s.answer(tag, no("CANNOT", "Unsupported authentication mechanism"))
		return authed{}
	}
	var resp []byte
	if len(cmd.Args) == 2 {
		ir := cmd.Args[1].Value
		if ir != "=" { // "=" is an empty initial response (RFC 4959 §3)
			var err error
			if resp, err = base64.StdEncoding.DecodeString(ir); err != nil {
				s.answer(tag, bad("", "Invalid base64"))
				return authed{}
			}
		} else {
			resp = []byte{}
		}
	}
	for {
		chal, done, err := server.Next(resp)
		if err != nil {
			s.info.AuthFailures++
			s.srv.auditor.Auth(&s.info, AuthEvent{Mechanism: mech, Attempt: s.info.AuthFailures, Reason: "sasl-syntax", Detail: saslDetail(err)})
			if cr.IsToken() {
				// RFC 7628 §3.2.2: an error, then the client's dummy
				// response, then NO.
				s.tokenRefused(sx)
				return authed{}
			}
			s.answer(tag, no("AUTHENTICATIONFAILED", "Authentication failed"))
			return authed{}
		}
		if done {
			break
		}
		var ok bool
		if resp, ok = s.saslResponse(sx, chal); !ok {
			return authed{}
		}
	}
	return s.login(tag, &cr, sx)
}

// saslExchange is one AUTHENTICATE in progress: its tag, and what the
// proxy read of it, the command and the client's responses. One exchange
// is one command: its sum is bounded by MaxPreAuthCommandBytes, each
// response line only by MaxLine (ARCHITECTURE.md §12).
type saslExchange struct {
	tag  string
	held int64
}

// saslResponse sends a challenge and reads the client's answer to it. It
// returns false when the exchange is over (cancelled, malformed, over the
// command budget, closed): the client was answered already.
func (s *Session) saslResponse(sx *saslExchange, chal []byte) ([]byte, bool) {
	tag := sx.tag
	if err := s.writef("+ %s\r\n", base64.StdEncoding.EncodeToString(chal)); err != nil {
		return nil, false
	}
	line, _, hasLit, err := s.sc.ReadLine()
	if err != nil {
		s.readErr(err)
		s.closeConns()
		return nil, false
	}
	if hasLit {
		s.answer("*", bye(CloseProtocolError, "CLIENTBUG", "Literal in SASL response"))
		s.closeConns()
		return nil, false
	}
	// The whole line is read by now: the exchange ends with a tagged BAD,
	// as a cancelled one does, and the stream stays in step.
	if sx.held += int64(len(line)); sx.held > int64(s.lim.MaxPreAuthCommandBytes) {
		s.srv.auditor.Limit(&s.info, hitPreAuthCommandBytes)
		s.answer(tag, replyCommandTooBig)
		return nil, false
	}
	l := strings.TrimRight(string(line), "\r\n")
	if l == "*" {
		// RFC 9051 §6.2.2: a cancelled exchange gets a tagged BAD.
		s.answer(tag, bad("", "Authentication cancelled"))
		return nil, false
	}
	resp, err := base64.StdEncoding.DecodeString(l)
	if err != nil {
		s.answer(tag, bad("", "Invalid base64"))
		return nil, false
	}
	return resp, true
}

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login), which go-sasl does not provide.
type loginServer struct {
	step     int
	user     string
	callback func(user, pass string) error
}

func newLoginServer(cb func(user, pass string) error) sasl.Server {
	return &loginServer{callback: cb}
}

func (l *loginServer) Next(resp []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		l.step = 1
		if len(resp) == 0 {
			return []byte("Username:"), false, nil
		}
		l.user = string(resp) // SASL-IR carries the user name
		l.step = 2
		return []byte("Password:"), false, nil
	case 1:
		l.user = string(resp)
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.callback(l.user, string(resp))
	}
	return nil, false, errors.New("sasl: unexpected LOGIN response")
}
