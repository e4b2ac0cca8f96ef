package proxy

import (
	"errors"
	"strings"

	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// CloseReason says why a session ended: one name for the log, the audit
// trail (CloseEvent.Reason) and the metric imapwarden_sessions_closed_total.
type CloseReason uint8

// Close reasons. The zero value is the default: the client closed.
const (
	CloseClientClosed CloseReason = iota
	CloseLogout
	CloseLimit
	CloseTLSHandshake
	ClosePolicyConnect
	ClosePolicyAuth
	ClosePolicyDisconnect
	CloseProtocolError
	CloseLineTooLong
	CloseLiteralTooBig
	CloseIdleTimeout
	CloseReadError
	CloseNonIMAPClient
	ClosePreAuthCommandLimit
	CloseAuthFailures
	CloseStartTLSInjection
	CloseServerShutdown
	CloseDrained
	CloseClientWriteError
	CloseBackendBye
	CloseBackendLost
	CloseBackendProtocolError
	CloseBackendTimeout
	CloseAuditUnavailable
	CloseEndedByAdmin // ended from the admin API at its next command boundary
	// CloseServerKicked: its backend server was drained or disabled with
	// kick (Server.EndServerSessions).
	CloseServerKicked
	// CloseCommandTooBig: one command outgrew MaxCommandBytes (or
	// MaxPreAuthCommandBytes) with its rest already in flight.
	CloseCommandTooBig
	// CloseRefusedMidCommand: policy or a limit refused a command the
	// backend held part of (a later MULTIAPPEND message, a part read
	// after a streamed literal), which no tagged NO can answer: the
	// session ends, aborting the command (ARCHITECTURE.md §10).
	CloseRefusedMidCommand
	// CloseStateUnknown: the backend answered a state-changing command
	// (a barrier) so that its state after it is not known: BAD, or NO
	// where the command's RFC defines none (ARCHITECTURE.md §8).
	CloseStateUnknown
	numCloseReasons
)

var closeReasonNames = [numCloseReasons]string{
	CloseClientClosed:         "client-closed",
	CloseLogout:               "logout",
	CloseLimit:                "limit",
	CloseTLSHandshake:         "tls-handshake",
	ClosePolicyConnect:        "policy-connect",
	ClosePolicyAuth:           "policy-auth",
	ClosePolicyDisconnect:     "policy-disconnect",
	CloseProtocolError:        "protocol-error",
	CloseLineTooLong:          "line-too-long",
	CloseLiteralTooBig:        "literal-too-big",
	CloseIdleTimeout:          "idle-timeout",
	CloseReadError:            "read-error",
	CloseNonIMAPClient:        "non-imap-client",
	ClosePreAuthCommandLimit:  "preauth-command-limit",
	CloseAuthFailures:         "auth-failures",
	CloseStartTLSInjection:    "starttls-injection",
	CloseServerShutdown:       "server-shutdown",
	CloseDrained:              "drained",
	CloseClientWriteError:     "client-write-error",
	CloseBackendBye:           "backend-bye",
	CloseBackendLost:          "backend-lost",
	CloseBackendProtocolError: "backend-protocol-error",
	CloseBackendTimeout:       "backend-timeout",
	CloseAuditUnavailable:     "audit-unavailable",
	CloseEndedByAdmin:         "ended-by-admin",
	CloseServerKicked:         "server-kicked",
	CloseCommandTooBig:        "command-too-big",
	CloseRefusedMidCommand:    "refused-mid-command",
	CloseStateUnknown:         "state-unknown",
}

func (r CloseReason) String() string {
	if r < numCloseReasons {
		return closeReasonNames[r]
	}
	return "unknown"
}

// MarshalText encodes the reason as its name.
func (r CloseReason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// CloseReasons lists every reason's name.
func CloseReasons() []string { return append([]string(nil), closeReasonNames[:]...) }

// reply is an answer the proxy gives itself: a tagged NO or BAD that
// leaves the session going, or an untagged BYE that ends it (close). Every
// refusal the proxy makes is one, written in one place (Session.answer),
// so that the status, the RFC 5530 code and the close reason never drift
// apart between the paths that refuse.
type reply struct {
	status string // "NO", "BAD" or "BYE"
	code   string // RFC 5530 response code, "" for none
	text   string
	close  CloseReason // for BYE
}

func (r *reply) Error() string { return r.status + " " + r.code + " " + r.text }

func no(code, text string) *reply  { return &reply{status: "NO", code: code, text: text} }
func bad(code, text string) *reply { return &reply{status: "BAD", code: code, text: text} }
func bye(why CloseReason, code, text string) *reply {
	return &reply{status: "BYE", code: code, text: text, close: why}
}

// The proxy's fixed answers.
var (
	replyLiteralTooBig     = no("TOOBIG", "Literal too big")
	byeLiteralTooBig       = bye(CloseLiteralTooBig, "TOOBIG", "Literal too big")
	byeSyntaxInCommand     = bye(CloseProtocolError, "CLIENTBUG", "Syntax error inside a command")
	byeSyntaxBeforeLiteral = bye(CloseProtocolError, "CLIENTBUG", "Syntax error before a literal")
	byeUnexpectedLiteral   = bye(CloseProtocolError, "CLIENTBUG", "Unexpected literal")
	byeNonSyncUnavailable  = bye(CloseProtocolError, "CLIENTBUG", "Non-synchronizing literal not available")
	byeLineTooLong         = bye(CloseLineTooLong, "TOOBIG", "Line too long")
	replyCommandTooBig     = bad("TOOBIG", "Command too big")
	byeCommandTooBig       = bye(CloseCommandTooBig, "TOOBIG", "Command too big")
	byeIdle                = bye(CloseIdleTimeout, "", "Autologout; idle for too long")
	byeBackendLost         = bye(CloseBackendLost, "UNAVAILABLE", "Backend connection lost")
	byeBackendError        = bye(CloseBackendProtocolError, "UNAVAILABLE", "Backend error")
	byeBackendTimeout      = bye(CloseBackendTimeout, "UNAVAILABLE", "Backend not responding")
	byeDrained             = bye(CloseDrained, "UNAVAILABLE", "Server shutting down")
	byeFetchCap            = bye(CloseLimit, "LIMIT", "Download limit reached, try again later")
	byeAuditUnavailable    = bye(CloseAuditUnavailable, "UNAVAILABLE", "Audit trail unavailable")
	byeNonIMAP             = bye(CloseNonIMAPClient, "", "Not an IMAP client")
	byeStateUnknown        = bye(CloseStateUnknown, "SERVERBUG", "Session state unknown after the server refused a state change; reconnect")
)

// syntaxReply is the BAD for input with more than one reading
// (ARCHITECTURE.md §7), from the parser's own message.
func syntaxReply(err error) *reply {
	var se *imapwire.SyntaxError
	if errors.As(err, &se) {
		if se.Refuse {
			return no(se.Code, se.Msg)
		}
		return bad(se.Code, se.Msg)
	}
	return bad("", "Syntax error")
}

// decisionReply is the refusal of a Decider (ARCHITECTURE.md §10): a tagged NO, or a
// BYE when the decision disconnects.
func decisionReply(d Decision, defCode string, why CloseReason) *reply {
	code := d.Code
	if code == "" {
		code = defCode
	}
	reason := d.Reason
	if reason == "" {
		reason = "Denied by policy"
	}
	if d.Disconnect {
		return bye(why, code, reason)
	}
	return no(code, reason)
}

// limitReply is the refusal of a Limiter.
func limitReply(r LimitResult) *reply {
	code, reason := r.codeReason()
	return no(code, reason)
}

// appendReply appends the wire form of r for tag ("*" for BYE), with its
// text kept free of CR, LF and NUL (RFC 9051 §9 text).
func appendReply(dst []byte, tag string, r *reply) []byte {
	if r.status == "BYE" {
		tag = "*"
	}
	dst = append(dst, tag...)
	dst = append(dst, ' ')
	dst = append(dst, r.status...)
	dst = append(dst, ' ')
	if r.code != "" {
		dst = append(dst, '[')
		dst = append(dst, r.code...)
		dst = append(dst, "] "...)
	}
	dst = append(dst, sanitizeText(r.text)...)
	return append(dst, "\r\n"...)
}

// sanitizeText keeps resp-text free of CR, LF and NUL (RFC 9051 §9 text).
func sanitizeText(t string) string {
	if strings.ContainsAny(t, "\r\n\x00") {
		t = strings.Map(func(r rune) rune {
			if r == '\r' || r == '\n' || r == 0 {
				return ' '
			}
			return r
		}, t)
	}
	return t
}
