package proxy

import (
	"go.uber.org/zap"
)

// LogAuditor writes session events to a zap logger. It is the default
// Auditor; the tamper-evident trail plugs in through the same interface.
type LogAuditor struct{ log *zap.Logger }

// NewLogAuditor returns an Auditor logging at info level (debug for
// commands) under the name "audit".
func NewLogAuditor(l *zap.Logger) *LogAuditor { return &LogAuditor{log: l.Named("audit")} }

func sessionFields(s *SessionInfo) []zap.Field {
	f := []zap.Field{
		zap.String("session", s.ID),
		zap.String("listener", s.Listener),
		zap.Stringer("client", s.ClientAddr),
	}
	if s.User != "" {
		f = append(f, zap.String("user", s.User))
	}
	return f
}

func (a *LogAuditor) SessionOpen(s *SessionInfo) {
	a.log.Info("session open", sessionFields(s)...)
}

func (a *LogAuditor) TLSStarted(s *SessionInfo) {
	if s.TLS == nil {
		return
	}
	a.log.Info("tls", append(sessionFields(s),
		zap.String("version", s.TLS.Version), zap.String("cipher", s.TLS.Cipher),
		zap.String("sni", s.TLS.ServerName), zap.String("alpn", s.TLS.ALPN))...)
}

func (a *LogAuditor) Auth(s *SessionInfo, e AuthEvent) {
	a.log.Info("auth", append(sessionFields(s),
		zap.String("auth_user", e.User), zap.String("mechanism", e.Mechanism),
		zap.Bool("success", e.Success), zap.String("reason", e.Reason),
		zap.Int("attempt", e.Attempt), zap.String("backend", e.Backend),
		zap.String("authenticator", e.Authenticator), zap.String("detail", e.Detail))...)
}

// Command logs e; a log is not a trail, so it never fails the session.
func (a *LogAuditor) Command(s *SessionInfo, e CommandEvent) error {
	ce := a.log.Check(zap.DebugLevel, "command")
	if e.Denied {
		ce = a.log.Check(zap.InfoLevel, "command denied")
	}
	if ce == nil {
		return nil
	}
	c := e.Command
	f := append(sessionFields(s),
		zap.String("tag", c.Tag), zap.String("command", c.Name), zap.Bool("uid", c.UID),
		zap.String("result", e.Result), zap.String("code", e.Code),
		zap.Duration("duration", e.Duration), zap.Int64("bytes_in", e.BytesIn))
	if c.Mailbox != "" {
		f = append(f, zap.String("mailbox", c.Mailbox))
	}
	if s.Selected != "" {
		f = append(f, zap.String("selected", s.Selected))
	}
	if c.Set != "" {
		f = append(f, zap.String("set", c.Set))
	}
	if e.Decision != nil && e.Decision.Reason != "" {
		f = append(f, zap.String("reason", e.Decision.Reason))
	}
	if e.Result == "BYE" {
		f = append(f, zap.Stringer("close", e.Close))
	}
	ce.Write(f...)
	return nil
}

func (a *LogAuditor) Security(s *SessionInfo, kind, detail string) {
	a.log.Warn("security event", append(sessionFields(s), zap.String("kind", kind), zap.String("detail", detail))...)
}

func (a *LogAuditor) SessionClose(s *SessionInfo, e CloseEvent) {
	a.log.Info("session close", append(sessionFields(s),
		zap.Stringer("reason", e.Reason), zap.Duration("duration", e.Duration),
		zap.Int64("bytes_in", e.BytesIn), zap.Int64("bytes_out", e.BytesOut),
		zap.Int("commands", e.Commands))...)
}

func (a *LogAuditor) Delivered(s *SessionInfo, e DeliveryEvent) {
	a.log.Info("content delivered outside a command", append(sessionFields(s), zap.String("mailbox", e.Mailbox), zap.Uint32("uidvalidity", e.UIDValidity),
		zap.Int("messages", e.Messages), zap.Int64("bytes", e.Bytes))...)
}

func (a *LogAuditor) Limit(s *SessionInfo, r LimitResult) {
	a.log.Warn("limit", append(sessionFields(s), zap.String("limit", r.Limit), zap.String("key", r.Key),
		zap.Bool("exceeded", r.Exceeded), zap.Duration("delay", r.Delay), zap.Int("count", r.Count))...)
}
