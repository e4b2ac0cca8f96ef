package proxy

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-sasl"
	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// frontEnd serves commands until a login succeeds (true) or the session
// ends (false).
func (s *Session) frontEnd() bool {
	for {
		if !s.waitCommand(s.lim.PreAuthIdle) {
			s.sayShutdown()
			return false
		}
		cmd, err := s.readPreAuthCommand()
		s.waiting.Store(false)
		if err != nil {
			return false
		}
		if cmd == nil { // answered already
			continue
		}
		s.preAuthCommands++
		first := s.preAuthCommands == 1
		if s.preAuthCommands > s.lim.MaxPreAuthCommands {
			s.setReason("preauth-command-limit")
			s.writef("* BYE [LIMIT] Too many commands before login\r\n")
			return false
		}
		tag := cmd.Tag
		name := cmd.Name
		if cmd.Spec == nil || cmd.Spec.States&imapwire.StateNotAuth == 0 {
			name = "" // not served before login
		} else if err := s.parser.Check(&imapwire.Context{State: imapwire.StateNotAuth}); err != nil {
			// The one grammar of the table holds before login too.
			s.writef("%s BAD %s\r\n", tag, sanitizeText(err.(*imapwire.SyntaxError).Msg))
			continue
		}
		switch name {
		case "CAPABILITY":
			s.writef("* CAPABILITY %s\r\n%s OK CAPABILITY completed\r\n", s.preAuthCaps(), tag)
		case "NOOP":
			s.writef("%s OK NOOP completed\r\n", tag)
		case "LOGOUT":
			s.setReason("logout")
			s.writef("* BYE Logging out\r\n%s OK LOGOUT completed\r\n", tag)
			return false
		case "ID":
			s.handleID(cmd)
		case "STARTTLS":
			if !s.startTLS(tag) {
				return false
			}
		case "LOGIN":
			if len(cmd.Args) != 2 || !isString(cmd.Args[0]) || !isString(cmd.Args[1]) {
				s.writef("%s BAD LOGIN expects user name and password\r\n", tag)
				continue
			}
			if s.login(tag, &Credentials{Mechanism: "LOGIN", User: cmd.Args[0].Value, Password: cmd.Args[1].Value}) {
				return true
			}
		case "AUTHENTICATE":
			if s.authenticate(cmd) {
				return true
			}
		default:
			if first {
				// RFC 9051 does not ask for this; it stops cross-protocol
				// use of the port (HTTP, SMTP, a ClientHello) at once.
				s.srv.auditor.Security(&s.info, "non-imap-client", "unknown first command")
				s.setReason("non-imap-client")
				s.writef("* BYE Not an IMAP client\r\n")
				return false
			}
			if cmd.Spec != nil {
				s.writef("%s BAD Log in first\r\n", tag)
			} else {
				s.writef("%s BAD Unknown command\r\n", tag)
			}
		}
		if s.info.AuthFailures >= s.lim.MaxAuthFailures {
			s.setReason("auth-failures")
			s.writef("* BYE Too many authentication failures\r\n")
			return false
		}
	}
}

// readPreAuthCommand reads one whole command, buffering its literals (all
// small before login). It returns nil, nil when the command was already
// answered (syntax error, refused literal) and an error when the session
// must end.
func (s *Session) readPreAuthCommand() (*imapwire.Command, error) {
	first := s.preAuthCommands == 0
	line, lit, hasLit, err := s.sc.ReadLine()
	if err == nil {
		err = imapwire.CheckCommandLine(line)
	}
	s.parser.Reset()
	if err == nil {
		err = s.parser.Line(line, lit, hasLit)
	}
	if err != nil {
		var se *imapwire.SyntaxError
		if !errors.As(err, &se) || first || (hasLit && lit.NonSync) {
			if errors.As(err, &se) {
				s.srv.auditor.Security(&s.info, "non-imap-client", se.Msg)
				s.setReason("non-imap-client")
				s.writef("* BYE Not an IMAP client\r\n")
			} else {
				s.readErr(err)
			}
			return nil, errClose
		}
		s.preAuthCommands++
		s.writef("%s BAD %s\r\n", tagOf(line), sanitizeText(se.Msg))
		return nil, nil
	}
	for hasLit {
		cmd := s.parser.Command()
		refuse := ""
		switch {
		case lit.Size > int64(s.lim.MaxBufferedLiteral):
			refuse = "[TOOBIG] Literal too big"
		case cmd.Name == "LOGIN" && !s.authAllowed():
			// Refuse before the password is sent (RFC 9051 §6.2.3).
			refuse = "[PRIVACYREQUIRED] LOGIN is disabled until TLS is active"
		case cmd.Name != "LOGIN" && cmd.Name != "ID":
			refuse = "[CLIENTBUG] Unexpected literal"
		}
		if refuse != "" {
			if !lit.NonSync {
				s.sc.IgnoreLiteral()
			} else {
				// Its bytes are in flight; a big one cannot be skipped
				// cheaply, a small one is counted away (RFC 7888 §4).
				if lit.Size > int64(s.lim.MaxBufferedLiteral) {
					s.setReason("literal-too-big")
					s.writef("* BYE [TOOBIG] Literal too big\r\n")
					return nil, errClose
				}
				if err := s.sc.DiscardLiteral(); err != nil {
					s.readErr(err)
					return nil, err
				}
				if err := s.skipRestOfCommand(); err != nil {
					return nil, err
				}
			}
			s.preAuthCommands++
			if strings.HasPrefix(refuse, "[PRIVACYREQUIRED]") {
				s.info.AuthFailures++
				s.srv.auditor.Auth(&s.info, AuthEvent{Mechanism: "LOGIN", Attempt: s.info.AuthFailures, Reason: "privacy-required"})
				s.writef("%s NO %s\r\n", cmd.Tag, refuse)
			} else {
				s.writef("%s NO %s\r\n", cmd.Tag, refuse)
			}
			return nil, nil
		}
		if !lit.NonSync {
			s.writef("+ Ready for literal data\r\n")
		}
		s.litBuf, err = s.sc.ReadLiteral(s.litBuf[:0], s.lim.MaxBufferedLiteral)
		if err != nil {
			s.readErr(err)
			return nil, err
		}
		s.parser.Literal(s.litBuf)
		line, lit, hasLit, err = s.sc.ReadLine()
		if err == nil {
			err = imapwire.CheckCommandLine(line)
		}
		if err == nil {
			err = s.parser.Line(line, lit, hasLit)
		}
		if err != nil {
			var se *imapwire.SyntaxError
			if errors.As(err, &se) && !(hasLit && lit.NonSync) {
				s.preAuthCommands++
				s.writef("%s BAD %s\r\n", cmd.Tag, sanitizeText(se.Msg))
				return nil, nil
			}
			s.readErr(err)
			return nil, errClose
		}
	}
	return s.parser.Command(), nil
}

// skipRestOfCommand reads and drops the remaining lines and small
// non-synchronizing literals of a refused command.
func (s *Session) skipRestOfCommand() error {
	for {
		line, lit, hasLit, err := s.sc.ReadLine()
		if err != nil {
			s.readErr(err)
			return err
		}
		_ = line
		if !hasLit {
			return nil
		}
		if !lit.NonSync || lit.Size > int64(s.lim.MaxBufferedLiteral) {
			// A client that waits for "+" we never send, or a literal we
			// will not count through: the stream is lost.
			s.setReason("protocol-error")
			s.writef("* BYE [CLIENTBUG] Unexpected literal\r\n")
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
func tagOf(line []byte) string {
	if tag, ok := imapwire.LineTag(line); ok {
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
		s.writef("%s BAD ID expects one argument\r\n", cmd.Tag)
		return
	}
	a := cmd.Args[0]
	if a.Kind == imapwire.ArgList {
		if len(a.List)%2 != 0 || len(a.List) > 60 {
			s.writef("%s BAD Invalid ID parameter list\r\n", cmd.Tag)
			return
		}
		id := make(map[string]string, len(a.List)/2)
		for i := 0; i+1 < len(a.List); i += 2 {
			k, v := a.List[i], a.List[i+1]
			if !isString(k) || len(k.Value) > 30 || len(v.Value) > 1024 {
				s.writef("%s BAD Invalid ID parameter list\r\n", cmd.Tag)
				return
			}
			if v.Kind == imapwire.ArgAtom && strings.EqualFold(v.Value, "NIL") {
				continue
			}
			id[strings.ToLower(k.Value)] = v.Value
		}
		s.info.ClientID = id
	} else if !(a.Kind == imapwire.ArgAtom && strings.EqualFold(a.Value, "NIL")) {
		s.writef("%s BAD Invalid ID argument\r\n", cmd.Tag)
		return
	}
	s.writef("%s%s OK ID completed\r\n", proxyIDResponse, cmd.Tag)
}

// startTLS upgrades a plaintext listener's connection (RFC 9051 §6.2.1).
// It returns false when the session must end.
func (s *Session) startTLS(tag string) bool {
	if s.lo.Mode != StartTLS || s.tlsActive {
		s.writef("%s BAD STARTTLS not available\r\n", tag)
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
		s.setReason("starttls-injection")
		return false
	}
	if err := s.handshake(); err != nil {
		s.setReason("tls-handshake")
		s.log.Debug("starttls handshake failed", zap.Error(err))
		return false
	}
	// Forget what was learned before TLS.
	s.info.ClientID = nil
	return true
}

// authenticate runs AUTHENTICATE (RFC 9051 §6.2.2) with PLAIN, LOGIN,
// EXTERNAL, and with a token authenticator OAUTHBEARER (RFC 7628) and
// XOAUTH2, with an optional initial response (RFC 4959).
func (s *Session) authenticate(cmd *imapwire.Command) bool {
	tag := cmd.Tag
	if len(cmd.Args) < 1 || len(cmd.Args) > 2 || cmd.Args[0].Kind != imapwire.ArgAtom {
		s.writef("%s BAD AUTHENTICATE expects a mechanism\r\n", tag)
		return false
	}
	mech := strings.ToUpper(cmd.Args[0].Value)
	if !s.authAllowed() {
		s.info.AuthFailures++
		s.srv.auditor.Auth(&s.info, AuthEvent{Mechanism: mech, Attempt: s.info.AuthFailures, Reason: "privacy-required"})
		s.writef("%s NO [PRIVACYREQUIRED] Authentication is disabled until TLS is active\r\n", tag)
		return false
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
			s.writef("%s NO [AUTHENTICATIONFAILED] No verified client certificate\r\n", tag)
			return false
		}
		server = sasl.NewExternalServer(func(identity string) error {
			cr.AuthzID = identity
			return nil
		})
	case "OAUTHBEARER", "XOAUTH2":
		if _, ok := s.tokenAuth(); !ok {
			s.writef("%s NO [CANNOT] Unsupported authentication mechanism\r\n", tag)
			return false
		}
		server = &tokenServer{mech: mech, cr: &cr}
	default:
		s.writef("%s NO [CANNOT] Unsupported authentication mechanism\r\n", tag)
		return false
	}
	var resp []byte
	if len(cmd.Args) == 2 {
		ir := cmd.Args[1].Value
		if ir != "=" { // "=" is an empty initial response (RFC 4959 §3)
			var err error
			if resp, err = base64.StdEncoding.DecodeString(ir); err != nil {
				s.writef("%s BAD Invalid base64\r\n", tag)
				return false
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
				return s.tokenRefused(tag)
			}
			s.writef("%s NO [AUTHENTICATIONFAILED] Authentication failed\r\n", tag)
			return false
		}
		if done {
			break
		}
		var ok bool
		if resp, ok = s.saslResponse(tag, chal); !ok {
			return false
		}
	}
	return s.login(tag, &cr)
}

// saslResponse sends a challenge and reads the client's answer to it. It
// returns false when the exchange is over (cancelled, malformed, closed):
// the client was answered already.
func (s *Session) saslResponse(tag string, chal []byte) ([]byte, bool) {
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
		s.setReason("protocol-error")
		s.writef("* BYE [CLIENTBUG] Literal in SASL response\r\n")
		s.closeConns()
		return nil, false
	}
	l := strings.TrimRight(string(line), "\r\n")
	if l == "*" {
		// RFC 9051 §6.2.2: a cancelled exchange gets a tagged BAD.
		s.writef("%s BAD Authentication cancelled\r\n", tag)
		return nil, false
	}
	resp, err := base64.StdEncoding.DecodeString(l)
	if err != nil {
		s.writef("%s BAD Invalid base64\r\n", tag)
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
