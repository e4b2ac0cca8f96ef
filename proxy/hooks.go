package proxy

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// SessionInfo is what the proxy knows of a session. Hooks must treat it as
// read-only; it never holds a password.
type SessionInfo struct {
	ID         string
	Listener   string
	ClientAddr netip.AddrPort
	LocalAddr  netip.AddrPort
	TLS        *TLSInfo // nil before TLS
	User       string   // set once authenticated (or during auth)
	Mechanism  string   // LOGIN, PLAIN, ...
	ClientID   map[string]string
	Backend    string
	// Server is the backend's server the session went to (its name in the
	// pool, the address by default); "" until a server is picked.
	Server  string
	Started time.Time
	// Identity is what an Authenticator verified, nil until the
	// credentials were checked (by the proxy, or by the backend for the
	// "backend" authenticator).
	Identity *Identity
	// AuthFailures counts failed logins on this connection.
	AuthFailures int
	// Selected is the selected mailbox ("" when none), canonical as
	// imapwire.Context.Canonical makes it, and whether it was opened
	// read-only (EXAMINE, or [READ-ONLY]): as the backend's completion of
	// the SELECT said, never before (ARCHITECTURE.md §8). A [READ-ONLY]
	// answer is no promise: a command's effects never depend on it.
	Selected         string
	SelectedReadOnly bool
	// Delimiter is the backend's hierarchy delimiter ("" when flat or
	// before login), learned at login (LIST "" "", RFC 9051 §6.3.9).
	Delimiter string
}

// TLSInfo describes the client's TLS connection.
type TLSInfo struct {
	Version           string
	Cipher            string
	ServerName        string
	ALPN              string
	ClientCertSubject string
	// The client certificate's SANs ("email:...", "DNS:..."), common name
	// and whether it chained to the listener's client CA.
	ClientCertSANs     []string
	ClientCertCN       string
	ClientCertVerified bool
}

// certUser is the user a verified client certificate names (SASL
// EXTERNAL): its first email SAN, else its subject's common name.
func (t *TLSInfo) certUser() string {
	if t == nil || !t.ClientCertVerified {
		return ""
	}
	for _, san := range t.ClientCertSANs {
		if e, ok := strings.CutPrefix(san, "email:"); ok {
			return e
		}
	}
	return t.ClientCertCN
}

// Point is where in a session a decision is asked for.
type Point string

const (
	PointConnect Point = "connect"
	PointAuth    Point = "auth"
	PointCommand Point = "command"
)

// DecisionInput is handed to a Decider. Command is set at PointCommand;
// Partial reports that the command is not complete yet (asked at a
// synchronizing literal, before "+" is sent, RFC 9051 §4.3).
type DecisionInput struct {
	Point   Point
	Session *SessionInfo
	Command *imapwire.Command
	Partial bool
	// Literal is the literal announced at the end of the line where the
	// decision is asked (nil if none): the message of an APPEND at its
	// decision point, or a synchronizing literal before "+". Its size is
	// not in Command.LiteralBytes yet.
	Literal *imapwire.Literal
	// Limits is the session's Limiter handle (nil without a Limiter):
	// input.session.limits comes from its Snapshot.
	Limits LimitConn
	// Names are the backend's namespaces (RFC 2342), learned at login
	// with NAMESPACE, and its user; nil when it has none. Policies see
	// each effect's mailbox's namespace and owner login (imapwire.
	// Names.Where, ARCHITECTURE.md §17). Here, not in SessionInfo: an
	// idle session keeps that (ARCHITECTURE.md §16).
	Names *imapwire.Names
}

// Decision is a Decider's verdict.
type Decision struct {
	Allow bool
	// Reason is shown to the client after the response code.
	Reason string
	// Code is an RFC 5530 response code such as NOPERM (the default).
	Code string
	// Disconnect ends the session with BYE instead of a tagged NO.
	Disconnect  bool
	Annotations map[string]any
	// unrecorded: refused because the trail cannot record the command
	// (AuditReadiness), so the refusal has no record either.
	unrecorded bool
}

// Decider decides on connections, logins and commands. It is called on
// the session's goroutine; it must be safe for concurrent use by sessions.
// The input is the session's, reused: a Decider keeps none of its pointers
// after it returns. The session waits for it: a Decider bounds its own
// time (policy.Engine denies past Options.EvalTimeout).
type Decider interface {
	Decide(ctx context.Context, in *DecisionInput) Decision
}

// AllowAll is the default Decider.
type AllowAll struct{}

func (AllowAll) Decide(context.Context, *DecisionInput) Decision { return Decision{Allow: true} }

// Router picks the backend for a user.
type Router interface {
	Route(ctx context.Context, s *SessionInfo, user string) (*Backend, error)
}

// LoginRouter is a Router that wants the login's password, such as an
// nginx auth_http service that checks it (proxy/pool). The proxy calls
// RouteLogin instead of Route when its Router implements it; pass is ""
// for logins without one (SASL EXTERNAL).
type LoginRouter interface {
	Router
	RouteLogin(ctx context.Context, s *SessionInfo, user, pass string) (*Backend, error)
}

// ErrNoRoute is returned by a Router that has no backend for a user.
var ErrNoRoute = errors.New("no backend for user")

// Balancer chooses among the servers of a backend that has several
// (Backend.Servers; proxy/pool implements it). At each login the proxy
// asks it for a server, reports how connecting went, and on a failure
// asks for the next one: new logins fail over, sessions already open are
// never moved. Methods are called from session goroutines.
type Balancer interface {
	// Pick returns the server for a new session of user as a Backend of
	// its own (Server names it; Addr and TLS are its own), skipping the
	// servers named in tried. It returns an error wrapping ErrNoServer
	// when no server is left to try.
	Pick(s *SessionInfo, user string, tried []string) (*Backend, error)
	// Result reports an attempt on server: nil when it answered (its
	// greeting, TLS and login exchange completed, whether or not it took
	// the credentials), else the failure, which counts toward marking the
	// server down (a passive health check). A login the server ended on
	// the login command, and one the session ended, are not reported:
	// neither says anything of the server that one client could not
	// cause (ARCHITECTURE.md §13).
	Result(server *Backend, err error)
	// Acquire counts a session on server until release is called.
	Acquire(server *Backend) (release func())
}

// ErrNoServer is wrapped by a Balancer that has no server to offer.
var ErrNoServer = errors.New("no backend server available")

// StaticRouter routes by exact user, then by the domain after the last
// "@", then to Default. Keys are folded (FoldUser, ARCHITECTURE.md §17)
// and matched with the user folded.
type StaticRouter struct {
	Default *Backend
	Users   map[string]*Backend
	Domains map[string]*Backend
}

func (r *StaticRouter) Route(_ context.Context, _ *SessionInfo, user string) (*Backend, error) {
	u := FoldUser(user)
	if b, ok := r.Users[u]; ok {
		return b, nil
	}
	if i := strings.LastIndexByte(u, '@'); i >= 0 {
		if b, ok := r.Domains[u[i+1:]]; ok {
			return b, nil
		}
	}
	if r.Default != nil {
		return r.Default, nil
	}
	return nil, ErrNoRoute
}

// Identity is a user as an Authenticator verified it: the directory or
// token behind the login, for policy, audit and routing. It never holds a
// credential.
type Identity struct {
	// Authenticator names the one that verified the user; User is the
	// identity it verified.
	Authenticator, User string
	Groups              []string
	// Issuer, ClientID and Scopes describe a token (OAuth2).
	Issuer, ClientID string
	Scopes           []string
	// Attributes are directory attributes the Authenticator was asked to
	// read.
	Attributes map[string]string
	// Route is the directory's word on where the mailbox lives (an LDAP
	// attribute such as mailHost): a backend name, or a server (host or
	// host:port) of a configured backend. Routers honour it only within
	// the configured servers.
	Route string
}

// Credentials are what a client presented at login. Only an
// Authenticator sees them; they are never logged or audited.
type Credentials struct {
	// Mechanism is LOGIN, PLAIN, EXTERNAL, XOAUTH2 or OAUTHBEARER.
	Mechanism string
	// User is the authentication identity (for a token, the user the
	// client named, possibly empty); AuthzID the authorization identity
	// asked for, if any.
	User, AuthzID string
	// Password is set for LOGIN and PLAIN; Token, a bearer token, for
	// XOAUTH2 and OAUTHBEARER (RFC 7628).
	Password, Token string
}

// IsToken reports a bearer-token login.
func (c *Credentials) IsToken() bool { return c.Mechanism == "XOAUTH2" || c.Mechanism == "OAUTHBEARER" }

// Authenticator checks credentials in the proxy itself.
//
// Authenticate returns the verified Identity, or an error wrapping
// ErrAuthFailed when the credentials are wrong or unknown, or an Identity
// naming the authenticator together with ErrBackendVerifies when the
// backend is to check the password (the "backend" authenticator), or
// another error when it cannot tell (a directory down): the client then
// gets NO [UNAVAILABLE], never a login.
type Authenticator interface {
	Authenticate(ctx context.Context, s *SessionInfo, c *Credentials) (*Identity, error)
}

// TokenAuthenticator is an Authenticator that may accept bearer tokens:
// when Tokens says so, the proxy offers AUTH=OAUTHBEARER and AUTH=XOAUTH2
// and answers a refused token with the RFC 7628 §3.2.2 error, whose scope
// and openid-configuration come from the TokenChallenge.
type TokenAuthenticator interface {
	Authenticator
	Tokens() (TokenChallenge, bool)
}

// TokenChallenge is what the error response to a refused token tells the
// client (RFC 7628 §3.2.2): the scope to ask for and where the issuer's
// discovery document is.
type TokenChallenge struct {
	Scope, OpenIDConfiguration string
}

// ErrAuthFailed reports rejected credentials.
var ErrAuthFailed = errors.New("authentication failed")

// ErrBackendVerifies is returned with an Identity by an Authenticator
// that leaves the password to the backend.
var ErrBackendVerifies = errors.New("the backend verifies the credentials")

// AuthError is a refusal or failure with the name of the authenticator
// that gave it, for the audit. Err wraps ErrAuthFailed for a refusal.
type AuthError struct {
	Authenticator string
	Err           error
}

func (e *AuthError) Error() string { return e.Authenticator + ": " + e.Err.Error() }
func (e *AuthError) Unwrap() error { return e.Err }

// AuthEvent is one login attempt.
type AuthEvent struct {
	User      string
	Mechanism string
	Attempt   int
	Success   bool
	// Reason is a short machine-friendly cause: "credentials",
	// "privacy-required", "policy", "backend-unavailable", ...
	Reason  string
	Backend string
	// Decision is the policy's at the auth point, when it said more than
	// allow (a reason, annotations such as a shadow would-deny).
	Decision *Decision
	// Authenticator names the authenticator that verified or refused the
	// credentials, when one did; Detail says why a login failed
	// ("ldap: invalid credentials", "token expired"), never with a secret.
	// The verified identity is SessionInfo.Identity.
	Authenticator string
	Detail        string
}

// CommandEvent is one completed (or refused) command after login.
type CommandEvent struct {
	Command *imapwire.Command
	// Result is OK, NO, BAD, or "" when the session ended first; BYE for
	// a refusal the proxy answered by ending the session (Close says
	// why: a policy that disconnects, a refusal of a command the backend
	// held part of).
	Result   string
	Close    CloseReason // with Result BYE only
	Code     string      // response code of the tagged completion
	Duration time.Duration
	// Denied is set when the proxy refused the command itself.
	Denied   bool
	Decision *Decision
	// BytesIn counts the command's bytes from the client (literals
	// included); BytesOut the response bytes relayed since the previous
	// tagged completion, its own included.
	BytesIn  int64
	BytesOut int64
	// BodyRead: message content reached the client in answer to the
	// command (a FETCH that asked for it; content the backend pushed
	// during a command that did not ask for it is a DeliveryEvent).
	// Messages counts the FETCH responses that carried content, Content
	// their content octets; UIDs lists their UIDs where the response had
	// one, and those of the responses that carried header items only
	// (ENVELOPE, BODYSTRUCTURE, BODY: read content, no counted octets) too
	// (the first Limits.MaxAuditUIDs of them).
	// Unnamed counts those of them that carried no UID (a server that
	// sent it after a body cut short, or not at all): their messages are
	// within the command's set.
	BodyRead bool
	Messages int
	Content  int64
	UIDs     []uint32
	Unnamed  int
	// Expunged counts the messages the backend reported expunged while
	// the command, one that may report expunges (EXPUNGE, UID EXPUNGE,
	// MOVE; CLOSE reports none, RFC 9051 §6.4.1), was the oldest in
	// flight (relay.expunger): one per "* n EXPUNGE", whose sequence
	// numbers ExpungedSeqs lists in order (the first MaxAuditUIDs), and
	// one per UID of a "* VANISHED" (QRESYNC) within a UID command's set,
	// which ExpungedUIDs lists (never UIDs, the messages read).
	Expunged     int
	ExpungedSeqs []uint32
	ExpungedUIDs []uint32
	// SharedWith names the other FETCHes in flight that content counted
	// here may have answered instead (a FETCH response has no tag; see
	// backendPump.answering): each response is counted in one record
	// only, and these records share the attribution. It names at most
	// Limits.MaxAuditSharedWith; SharedCount is how many there were when
	// more.
	SharedWith  []string
	SharedCount int
	// Selected is the mailbox the command was decided in ("" if none),
	// SelectedRO whether the backend answered its selection read-only
	// (EXAMINE, or [READ-ONLY]: SessionInfo.SelectedReadOnly then), and
	// UIDValidity its UIDVALIDITY then (0: unknown), which UIDs and a UID
	// set are relative to (RFC 9051 §2.3.1.1).
	Selected    string
	SelectedRO  bool
	UIDValidity uint32
	// CodeArgs is the text of a COPYUID or APPENDUID response code
	// (RFC 4315 §3), e.g. "38505 3955".
	CodeArgs string
}

// Clone returns a copy of e that shares nothing the proxy reuses: what an
// Auditor keeps past Command must come from it (or be copied likewise).
func (e CommandEvent) Clone() CommandEvent {
	if e.Command != nil {
		c := *e.Command
		c.FetchItems = slices.Clone(c.FetchItems)
		c.StoreFlags = slices.Clone(c.StoreFlags)
		e.Command = &c
	}
	e.UIDs = slices.Clone(e.UIDs)
	e.ExpungedSeqs = slices.Clone(e.ExpungedSeqs)
	e.ExpungedUIDs = slices.Clone(e.ExpungedUIDs)
	e.SharedWith = slices.Clone(e.SharedWith)
	if e.Decision != nil {
		d := *e.Decision
		e.Decision = &d
	}
	return e
}

// CloseEvent ends a session.
type CloseEvent struct {
	Reason   CloseReason
	Duration time.Duration
	BytesIn  int64 // client → proxy
	BytesOut int64 // proxy → client
	Commands int
	// CommandsByName counts commands after login by name (UID folded).
	CommandsByName map[string]int
	// MessagesFetched counts FETCH responses that carried content.
	MessagesFetched int
	// OthersExpunged counts the messages the backend reported expunged
	// that no command of the session caused (another session's, RFC 9051
	// §7.5.1): reported while no command that may report expunges was in
	// flight (relay.alone), or outside a UID EXPUNGE's or UID MOVE's set.
	OthersExpunged int
}

// DeliveryEvent is message content the backend sent that no FETCH in
// flight asked for (NOTIFY, RFC 5465: while no command ran, or during
// IDLE, a NOOP, an EXPUNGE, a FETCH of other items): one FETCH response. Headers: it had
// header items only (ENVELOPE, BODYSTRUCTURE, BODY), no content item:
// Messages and Bytes are 0, UIDs names the message whose headers went out.
// A response that carried no UID (not asked for, RFC 5465 §5.2, or cut
// before it) names its message by Seq, its sequence number then, never
// by nothing (ARCHITECTURE.md §11).
type DeliveryEvent struct {
	Mailbox     string // the selected mailbox
	UIDValidity uint32 // its UIDVALIDITY, which UIDs are relative to (0: unknown)
	Messages    int
	Bytes       int64
	UIDs        []uint32
	Seq         uint32 // when UIDs is empty: the response's sequence number
	Headers     bool
}

// Auditor receives session events. Calls come from session goroutines and
// must not block for long.
type Auditor interface {
	SessionOpen(s *SessionInfo)
	TLSStarted(s *SessionInfo)
	Auth(s *SessionInfo, e AuthEvent)
	// Command records a completed or refused command. The event's Command,
	// UIDs and SharedWith, and the slices in them, are the proxy's and reused after
	// the call: an Auditor that keeps them keeps a Clone. It returns once the
	// record is durable (as the Auditor defines it) or with an error when
	// it is not and will not be soon: then the proxy ends the session with
	// "* BYE [UNAVAILABLE]" instead of relaying the reply, so that no
	// client hears a completion the trail does not hold (ARCHITECTURE.md §11). It
	// may block, bounded by the Auditor's own deadline.
	Command(s *SessionInfo, e CommandEvent) error
	// Security records an attack or protocol abuse, e.g. STARTTLS
	// command injection or a non-IMAP first line.
	Security(s *SessionInfo, kind, detail string)
	// Limit records a limit hit (refusal or alert).
	Limit(s *SessionInfo, r LimitResult)
	// Delivered records content no FETCH in flight asked for (pushed:
	// NOTIFY, whatever command runs).
	Delivered(s *SessionInfo, e DeliveryEvent)
	SessionClose(s *SessionInfo, e CloseEvent)
}

// AuditReadiness is an Auditor that can tell, before a command leaves,
// that no record can be written now: a fail-closed trail from its first
// failed write until a write succeeds (Ready returns why; nil when records
// can be written, and always in fail-open mode). A command with any effect
// in the command table (imapwire.Command.Effects) is then refused
// "NO [UNAVAILABLE]" before it reaches the backend, since its record could
// not be written: fail closed means not carried out, not only not
// acknowledged (ARCHITECTURE.md §11); so is one without effects under a
// NOTIFY that may push content, and content pushed unasked ends the
// session before it is relayed. Ready is asked at each decision point
// and before pushed content and must be cheap (an atomic load).
type AuditReadiness interface {
	Ready() error
}

// Limiter enforces rate limits, lockouts and volume caps (ARCHITECTURE.md §12). A
// nil Limiter means none. It must be safe for concurrent use.
type Limiter interface {
	// Connect is asked when a connection arrives, before the greeting.
	// Unless it refuses, it returns the connection's handle, which carries
	// its state to every later question (no lookup by session), and whose
	// Release ends its accounting.
	Connect(s *SessionInfo) (LimitResult, LimitConn)
}

// LimitConn is one connection's handle on the Limiter. The session
// goroutine asks it everything but Delivered, which the backend pump asks;
// Command and Delivered are on every command's and every message's path
// and should not allocate.
type LimitConn interface {
	// Login is asked before credentials are checked or any backend is
	// contacted: a locked-out client never reaches the backend. user is
	// "" for a login that names no user (a bearer token without one):
	// only the client's IP then counts (ARCHITECTURE.md §17). A login it
	// lets through holds a place, returned, until its result: one over
	// the places its failure records have left waits for one, until ctx
	// ends (ARCHITECTURE.md §12). A refusal returns no place.
	Login(ctx context.Context, user string) (LimitResult, LoginPlace)
	// Session is asked once a login succeeded (sessions per user);
	// release is called when the session ends.
	Session() (res LimitResult, release func())
	// Command is asked for each command after login, at its decision point.
	Command(cmd *imapwire.Command) LimitResult
	// Delivered is asked before message content goes to the client, in
	// whatever response it comes (FETCH, IDLE and NOOP pushes, NOTIFY):
	// the octets of one content item, and messages 1 at a message's
	// first. Exceeded ends the session at once with "* BYE [LIMIT]": the
	// item and nothing after it goes out (ARCHITECTURE.md §12). It runs
	// on the backend pump: it must not wait on the network.
	Delivered(octets int64, messages int) LimitResult
	// Snapshot returns the counters a policy may read
	// (input.session.limits); it allocates.
	Snapshot() map[string]int64
	// Release ends the connection's accounting.
	Release()
}

// LoginPlace is a login the Limiter let through, in flight until its
// result (ARCHITECTURE.md §12). It is good until its connection's next
// Login.
type LoginPlace interface {
	// Result records the credential check: a failure takes the place's
	// stead in the failure records, in one step; a success gives it back.
	// For a failure it returns how long to wait before answering, the same
	// whether the user exists. After Result or Release it does nothing.
	Result(ok bool) time.Duration
	// Release gives the place back, counting nothing, unless Result took
	// it. Every way out of a login calls it; it may be called again.
	Release()
}

// LimitResult is a Limiter's answer. The zero value means within limits.
type LimitResult struct {
	// Exceeded refuses the action.
	Exceeded bool
	// Delay is waited before going on (or before answering a refusal).
	Delay time.Duration
	// Alert records a hit without refusing (alert-only limits).
	Alert bool
	// Limit names the limit ("connections_per_ip", ...); Key says what it
	// was counted by ("ip", "subnet", "user", "user_ip", "session") — never
	// the user or address itself.
	Limit, Key string
	// Own: the refusal is for what the client's address did itself, not
	// for other addresses' failures (fail2ban bans on these only).
	Own bool
	// Code is the RFC 5530 response code (default LIMIT); Reason the text.
	Code, Reason string
	// Count, when set, is how many hits the record stands for: refusals
	// of a flood are recorded together (max_preauth_connections), and were
	// counted in the metrics one by one as they happened.
	Count int
}

// hit reports whether the result must be audited.
func (r LimitResult) hit() bool { return r.Exceeded || r.Alert }

func (r LimitResult) codeReason() (code, reason string) {
	code, reason = r.Code, r.Reason
	if code == "" {
		code = "LIMIT"
	}
	if reason == "" {
		reason = "Limit exceeded, try again later"
	}
	return code, reason
}
