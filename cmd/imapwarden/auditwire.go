package main

import (
	"errors"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/imapwarden/imapwarden/audit"
	"github.com/imapwarden/imapwarden/policy"
	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/proxy/imapwire"
	"github.com/imapwarden/imapwarden/proxy/pool"
)

// auditWire turns proxy events into audit records. It lives here because
// package audit imports no other package of ours (ARCHITECTURE.md §4).
//
// Each hook takes one Record (pooled: the trail recycles written ones)
// and queues it. A CommandEvent's FETCH items, STORE flags and UIDs are
// the proxy's, reused after the hook (proxy.Auditor): they are copied into
// the record's own slices, which the pool keeps. A DeliveryEvent's UIDs
// and a CloseEvent's CommandsByName are handed over. The client's ID map is copied (auth
// only). Nothing mapped can carry a password, a SASL response, search
// text or message content: the proxy's events have none.
type auditWire struct {
	trail *audit.Trail
	// ackTimeout bounds how long a command waits for its record to be
	// durable (block mode); 0 means defaultAckTimeout.
	ackTimeout time.Duration
	// failOpen: audit.on_full drop, where a lost record stops nothing.
	failOpen bool
}

// Ready tells whether a client's command or an administrator's action may
// be carried out (proxy.AuditReadiness): in block mode (fail closed) only
// while the trail writes, from its first failed write until a write
// succeeds (ARCHITECTURE.md §11).
func (w *auditWire) Ready() error {
	if w.failOpen {
		return nil
	}
	return w.trail.Health()
}

var (
	_ proxy.Auditor        = (*auditWire)(nil)
	_ proxy.AuditReadiness = (*auditWire)(nil)
)

func newAuditWire(t *audit.Trail) *auditWire { return &auditWire{trail: t} }

// record starts a record with the session's fields.
func (w *auditWire) record(s *proxy.SessionInfo, kind audit.Kind) *audit.Record {
	r := audit.NewRecord()
	r.Kind, r.Session, r.Listener, r.User = kind, s.ID, s.Listener, s.User
	if s.ClientAddr.IsValid() {
		// Unmap: fail2ban and CIDR filters expect 192.0.2.1, not
		// ::ffff:192.0.2.1.
		r.IP, r.Port = s.ClientAddr.Addr().Unmap(), s.ClientAddr.Port()
	}
	return r
}

// log queues r. A record refused (Drop mode, or after Close) is counted
// by the trail; a session has nothing better to do with the error.
func (w *auditWire) log(r *audit.Record) { _ = w.trail.Log(r) }

func (w *auditWire) SessionOpen(s *proxy.SessionInfo) {
	r := w.record(s, audit.KindSessionOpen)
	if s.LocalAddr.IsValid() {
		r.Local = s.LocalAddr.String()
	}
	w.log(r)
}

func (w *auditWire) TLSStarted(s *proxy.SessionInfo) {
	if s.TLS == nil {
		return
	}
	r := w.record(s, audit.KindTLS)
	r.TLSVersion, r.Cipher, r.SNI, r.ALPN, r.ClientCert = s.TLS.Version, s.TLS.Cipher, s.TLS.ServerName, s.TLS.ALPN, s.TLS.ClientCertSubject
	w.log(r)
}

func (w *auditWire) Auth(s *proxy.SessionInfo, e proxy.AuthEvent) {
	r := w.record(s, audit.KindAuth)
	if e.User != "" {
		// The name the client gave; s.User may be the authorization
		// identity instead.
		r.User = e.User
	}
	r.Mechanism, r.Attempt, r.Reason, r.Backend = e.Mechanism, e.Attempt, e.Reason, e.Backend
	if e.Backend != "" {
		r.Server = s.Server
	}
	r.Authenticator, r.Detail = e.Authenticator, e.Detail
	if id := s.Identity; id != nil {
		// The identity belongs to the session, which outlives the record
		// only unchanged: a new login makes a new Identity.
		r.Authenticator, r.Identity, r.Groups = id.Authenticator, id.User, id.Groups
		r.TokenIssuer, r.TokenClientID, r.Scopes = id.Issuer, id.ClientID, id.Scopes
	}
	r.Result = audit.ResultFailure
	if e.Success {
		r.Result = audit.ResultSuccess
	}
	if len(s.ClientID) > 0 {
		r.ClientID = maps.Clone(s.ClientID) // the proxy may replace it later
	}
	var shadow map[string]any
	var revision string
	if d := e.Decision; d != nil {
		r.Annot, revision, shadow = splitAnnotations(d.Annotations)
		if e.Reason == "policy" {
			r.Revision, r.Code, r.Detail = revision, d.Code, d.Reason
		}
	}
	// Log owns r from here on (it may write and reuse it before it
	// returns): what the next record needs of it is read first.
	user := r.User
	w.log(r)
	if shadow != nil {
		// A login a shadow policy would have refused.
		wd := w.record(s, audit.KindPolicyWouldDeny)
		wd.User, wd.Mechanism, wd.Revision = user, e.Mechanism, revision
		wd.Reason, _ = shadow["reason"].(string)
		wd.Code, _ = shadow["code"].(string)
		if dir, ok := shadow["dir"].(string); ok {
			wd.Detail = "shadow policy " + dir
		}
		w.log(wd)
	}
}

// Command maps a completed or refused command. A command the proxy
// refused is a policy.deny record carrying the same command fields; a
// command a shadow policy would have refused (policy.AnnotationShadowDeny)
// is its command record and a policy.would_deny one.
func (w *auditWire) Command(s *proxy.SessionInfo, e proxy.CommandEvent) error {
	kind := audit.KindCommand
	if e.Denied {
		kind = audit.KindPolicyDeny
	}
	r := w.command(s, kind, &e)
	r.Result, r.Code = e.Result, e.Code
	switch r.Result {
	case "":
		r.Result = audit.ResultNone
	case "BYE":
		// A refusal that ended the session: why, in the close reason's
		// words (session.close says the same).
		r.Event = e.Close.String()
	}
	r.Duration, r.BytesIn, r.BytesOut = e.Duration, e.BytesIn, e.BytesOut
	// Message-level access: the UIDs the FETCH responses carried (the
	// proxy hands over its slice), COPYUID/APPENDUID text.
	r.Messages, r.UIDs, r.CodeArgs, r.ContentBytes = e.Messages, append(r.UIDs[:0], e.UIDs...), e.CodeArgs, e.Content
	r.Unnamed = e.Unnamed
	if e.Expunged > 0 {
		// What an EXPUNGE, UID EXPUNGE or MOVE destroyed, as the backend
		// reported it (audit/README.md).
		r.Expunged, r.ExpungedSeqs, r.ExpungedUIDs = e.Expunged, slices.Clone(e.ExpungedSeqs), slices.Clone(e.ExpungedUIDs)
	}
	if len(e.SharedWith) > 0 {
		r.SharedWith = slices.Clone(e.SharedWith) // rare: FETCHes run at once
	}
	r.SharedCount = e.SharedCount
	var shadow map[string]any
	var revision string
	if d := e.Decision; d != nil {
		r.Reason, r.Disconnect = d.Reason, d.Disconnect
		if r.Code == "" {
			r.Code = d.Code
		}
		r.Annot, revision, shadow = splitAnnotations(d.Annotations)
		if e.Denied {
			// An allowed command's revision is not repeated on every
			// record: reload records say when it changed.
			r.Revision = revision
		}
	}
	if err := w.commandLog(r); err != nil {
		return err
	}
	if shadow != nil && !e.Denied {
		wd := w.command(s, audit.KindPolicyWouldDeny, &e)
		wd.Revision = revision
		wd.Reason, _ = shadow["reason"].(string)
		wd.Code, _ = shadow["code"].(string)
		wd.Disconnect, _ = shadow["disconnect"].(bool)
		if a, ok := shadow["annotations"].(map[string]any); ok && len(a) > 0 {
			wd.Annot = a
		}
		if dir, ok := shadow["dir"].(string); ok {
			wd.Detail = "shadow policy " + dir
		}
		w.log(wd)
	}
	return nil
}

// commandLog queues a command's record. In Block mode (fail closed) it
// returns once the record is durable (audit.Trail.LogWait): an error means
// the trail does not hold it and the proxy must not acknowledge the
// command. In Drop mode (fail open) the trail counted a loss and the
// session goes on.
func (w *auditWire) commandLog(r *audit.Record) error {
	to := w.ackTimeout
	if to <= 0 {
		to = defaultAckTimeout
	}
	err := w.trail.LogWait(r, to)
	if errors.Is(err, audit.ErrDropped) {
		return nil
	}
	return err
}

// command starts a record with a command's fields.
func (w *auditWire) command(s *proxy.SessionInfo, kind audit.Kind, e *proxy.CommandEvent) *audit.Record {
	r := w.record(s, kind)
	if c := e.Command; c != nil {
		r.Tag, r.Command, r.UID = c.Tag, c.Name, c.UID
		r.Mailbox, r.Destination = c.Mailbox, c.Destination
		if c.MailboxRaw != c.Mailbox {
			r.MailboxRaw = c.MailboxRaw
		}
		r.Effects = effectNames(&c.Effects)
		r.Sources, r.Mailboxes, r.Patterns = c.Sources(), c.Mailboxes(), c.Patterns()
		r.Set, r.SetCount = c.Set, c.SetCount
		if c.Name == "FETCH" {
			r.Fetch, r.Items = fetchClass(c.FetchClass), append(r.Items[:0], c.FetchItems...)
		}
		r.SearchKeys = c.SearchKeys.Names() // kinds only: never the text searched for
		r.StoreOp, r.Flags = c.StoreOp, append(r.Flags[:0], c.StoreFlags...)
		// Whom an ACL command is about, what a quota or an ENABLE sets:
		// what decides its effect (ARCHITECTURE.md §10).
		if x := c.Named; x != nil {
			r.Identifier, r.Rights, r.QuotaRoot = x.Identifier, x.Rights, x.QuotaRoot
			r.Enable, r.Entries = x.Enable, x.Entries
			if c.Name == "SETQUOTA" {
				r.Quota = make(map[string]int64, len(x.Quota))
				for _, q := range x.Quota {
					r.Quota[q.Resource] = int64(min(q.Limit, math.MaxInt64))
				}
			}
		}
		r.LiteralBytes = c.LiteralBytes
	}
	// The mailbox the command was decided in and whether the backend
	// answered it read-only then (a CLOSE's record names the mailbox it
	// closed); the session's current one for events that do not say.
	r.Selected, r.ReadOnly = e.Selected, e.SelectedRO
	r.UIDValidity = e.UIDValidity
	if r.Selected == "" {
		r.Selected, r.ReadOnly = s.Selected, s.SelectedReadOnly
	}
	return r
}

// fetchClass is the record's class of a FETCH, from the command table's
// (imapwire.FetchClass, ARCHITECTURE.md §11); a FETCH it did not classify
// is filed as body, fail closed: never as metadata.
func fetchClass(c imapwire.FetchClass) string {
	switch c {
	case imapwire.FetchMetadata:
		return audit.FetchMetadata
	case imapwire.FetchHeader:
		return audit.FetchHeader
	}
	return audit.FetchBody
}

// effectNames lists a command's effects by name, each once; the names are
// the table's constants (no allocation but the slice).
func effectNames(e *imapwire.Effects) []string {
	if e.Len() == 0 {
		return nil
	}
	out := make([]string, 0, e.Len())
	for i := 0; i < e.Len(); i++ {
		n := e.At(i).Effect.String()
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// Delivered maps content pushed while no command ran (NOTIFY): a body,
// or headers only (ENVELOPE, BODYSTRUCTURE).
func (w *auditWire) Delivered(s *proxy.SessionInfo, e proxy.DeliveryEvent) {
	r := w.record(s, audit.KindDelivery)
	r.Selected, r.UIDValidity, r.Fetch = e.Mailbox, e.UIDValidity, audit.FetchBody
	if e.Headers {
		r.Fetch = audit.FetchHeader
	}
	r.Messages, r.UIDs, r.ContentBytes = e.Messages, e.UIDs, e.Bytes
	if len(e.UIDs) == 0 {
		// No UID came: the sequence number names the message, marked.
		r.Unnamed, r.UnnamedSeqs = 1, append(r.UnnamedSeqs[:0], e.Seq)
	}
	w.log(r)
}

// splitAnnotations takes the policy engine's own keys out of a decision's
// annotations: the revision and a shadow policy's verdict get fields and
// records of their own; the rest is copied into the record. The map is
// the engine's, shared between decisions: it is never changed.
func splitAnnotations(a map[string]any) (rest map[string]any, revision string, shadow map[string]any) {
	if len(a) == 0 {
		return nil, "", nil
	}
	// One look-up per key: a decision's record asks twice per command.
	n := len(a)
	if v, ok := a[policy.AnnotationRevision]; ok {
		revision, _ = v.(string)
		n--
	}
	if v, ok := a[policy.AnnotationShadowDeny]; ok {
		shadow, _ = v.(map[string]any)
		n--
	}
	switch {
	case n == 0:
		return nil, revision, shadow
	case n == len(a):
		return a, revision, shadow
	}
	rest = make(map[string]any, n)
	for k, v := range a {
		if k != policy.AnnotationRevision && k != policy.AnnotationShadowDeny {
			rest[k] = v
		}
	}
	return rest, revision, shadow
}

// Security maps attacks and protocol abuse; the proxy reports backend
// trouble through it too, which becomes a backend record.
func (w *auditWire) Security(s *proxy.SessionInfo, kind, detail string) {
	if ev, ok := strings.CutPrefix(kind, "backend-"); ok {
		// The proxy's detail for these is the backend's name.
		r := w.record(s, audit.KindBackend)
		r.Event, r.Backend, r.Server = ev, detail, s.Server
		w.log(r)
		return
	}
	r := w.record(s, audit.KindSecurity)
	r.Event, r.Detail = kind, detail
	w.log(r)
}

func (w *auditWire) SessionClose(s *proxy.SessionInfo, e proxy.CloseEvent) {
	r := w.record(s, audit.KindSessionClose)
	r.Reason, r.Duration = e.Reason.String(), e.Duration
	r.BytesIn, r.BytesOut, r.Commands = e.BytesIn, e.BytesOut, e.Commands
	r.AuthFailures, r.Backend, r.Server = s.AuthFailures, s.Backend, s.Server
	// The session is over: its counters are not touched again.
	r.Counts, r.Messages, r.OthersExpunged = e.CommandsByName, e.MessagesFetched, e.OthersExpunged
	w.log(r)
}

// Limit maps a limit hit: a refusal ("exceeded") or an alert-only one.
func (w *auditWire) Limit(s *proxy.SessionInfo, l proxy.LimitResult) {
	r := w.record(s, audit.KindLimit)
	r.Limit, r.LimitKey, r.Code, r.Reason, r.Delay, r.Count = l.Limit, l.Key, l.Code, l.Reason, l.Delay, uint64(max(l.Count, 0))
	r.LimitOwn = l.Own
	r.Event = "exceeded"
	if !l.Exceeded {
		r.Event = "alert"
	}
	w.log(r)
}

// Reload records a configuration, policy, certificate or users file
// reload (what: "config", "policy", "certs", "users"), with the new policy
// revision when known.
func (w *auditWire) Reload(what, revision string, err error) {
	r := &audit.Record{Kind: audit.KindReload, Event: what, Revision: revision, Result: "ok"}
	if err != nil {
		r.Result, r.Detail = "error", err.Error()
	}
	w.log(r)
}

// BackendHealth records a backend server going down or coming back
// (event "server-down" with the failure as detail, "server-up").
func (w *auditWire) BackendHealth(e pool.Event) {
	r := &audit.Record{Kind: audit.KindBackend, Backend: e.Backend, Server: e.Server, Event: "server-" + e.Health.String(), Detail: e.Err}
	w.log(r)
}

// Cert records a certificate event (event: "loaded", "obtained",
// "renewed", "expiring", "error").
func (w *auditWire) Cert(event, subject, issuer string, names []string, notAfter time.Time, err error) {
	r := &audit.Record{Kind: audit.KindCert, Event: event, Subject: subject, Issuer: issuer, Names: names, NotAfter: notAfter, Result: "ok"}
	if err != nil {
		r.Result, r.Detail = "error", err.Error()
	}
	w.log(r)
}
