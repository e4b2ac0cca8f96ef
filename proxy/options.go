package proxy

import (
	"crypto/tls"
	"net"
	"net/netip"
	"time"

	"github.com/imapwarden/imapwarden/proxy/imapwire"
	"go.uber.org/zap"
)

// ListenerMode says how a listener starts TLS.
type ListenerMode string

const (
	// ImplicitTLS: TLS from the first byte (port 993, RFC 8314 §3.2).
	ImplicitTLS ListenerMode = "tls"
	// StartTLS: plaintext greeting, STARTTLS required before any
	// credential (port 143, RFC 9051 §6.2.1).
	StartTLS ListenerMode = "starttls"
)

// ListenerOptions configures one client-facing listener.
type ListenerOptions struct {
	// Name labels the listener in logs, audit and policy input.
	Name string
	// Addr is the address to bind, e.g. "0.0.0.0:993". Ignored when
	// Listener is set.
	Addr string
	// Listener, when set, is used instead of binding Addr (tests, socket
	// activation).
	Listener net.Listener
	Mode     ListenerMode
	// TLS is the server configuration (certificates, ALPN); required.
	TLS *tls.Config
	// PlaintextAuthFrom lists networks from which LOGIN and AUTHENTICATE
	// are accepted before TLS. Empty (the default) means never. The server
	// logs a warning at start when it is set.
	PlaintextAuthFrom []netip.Prefix
	// ProxyProtocolFrom lists the load balancers whose connections start
	// with a PROXY protocol header (v1 or v2); its source address is then
	// the client's for policy, limits and audit. Connections from other
	// addresses are never asked for one.
	ProxyProtocolFrom []netip.Prefix
	// CertLogin offers AUTHENTICATE EXTERNAL (RFC 4422 App. A) to clients
	// whose TLS certificate was verified (TLS.ClientAuth with ClientCAs):
	// the certificate's email SAN, else its common name, is the user, and
	// the backend is logged in to as a master user.
	CertLogin bool
}

// BackendSecurity is how the proxy talks to a backend.
type BackendSecurity string

const (
	BackendPlain    BackendSecurity = "plain"
	BackendStartTLS BackendSecurity = "starttls"
	BackendTLS      BackendSecurity = "tls"
)

// LoginMode is how the proxy logs in to a backend.
type LoginMode string

const (
	// LoginAuto replays the client's credentials with AUTHENTICATE PLAIN
	// when the backend offers it, else LOGIN.
	LoginAuto LoginMode = ""
	// LoginCommand replays the credentials with LOGIN.
	LoginCommand LoginMode = "login"
	// LoginPlain replays them with AUTHENTICATE PLAIN.
	LoginPlain LoginMode = "plain"
	// LoginMaster authenticates as MasterUser with the client's user as
	// authorization identity (AUTHENTICATE PLAIN, RFC 4616 §2), as Dovecot
	// and Cyrus accept, or as "user*master" (MasterSeparator). The client's
	// password is then checked by nobody but the Authenticator, so
	// LoginMaster requires one other than the backend.
	LoginMaster LoginMode = "master"
)

// Backend is one IMAP server the proxy fronts.
type Backend struct {
	Name string
	// Addr is the server's host:port. A backend with several servers has
	// Servers instead, which picks one per login and hands back a Backend
	// of the server's own, whose Server names it in its pool.
	Addr     string
	Servers  Balancer
	Server   string
	Security BackendSecurity
	// TLS is the client configuration for starttls and tls backends
	// (verification, server name, client certificate).
	TLS   *tls.Config
	Login LoginMode
	// MasterUser and MasterPassword are used with LoginMaster.
	MasterUser     string
	MasterPassword string
	// MasterSeparator, when set, logs in with LOGIN "user<sep>master"
	// (Dovecot's auth_master_user_separator, e.g. "*") instead of
	// AUTHENTICATE PLAIN with the user as authorization identity.
	MasterSeparator string
	// Namespaces are the namespaces the operator declares over the
	// backend's NAMESPACE answer: those it serves but does not announce
	// (Dovecot hidden = yes), which the proxy cannot discover
	// (ARCHITECTURE.md §8); nil: the announced ones alone.
	Namespaces *imapwire.Declared
	// ConnectTimeout bounds dialing, greeting and STARTTLS (default 10 s);
	// LoginTimeout bounds the login exchange (default 30 s).
	ConnectTimeout time.Duration
	LoginTimeout   time.Duration
	// SendID sends ID with x-originating-ip/-port, x-connected-ip and
	// x-session-id before login, so that the backend logs and penalises
	// the real client (Dovecot honours it from login_trusted_networks).
	SendID bool
	// SendProxy sends a PROXY protocol v2 header with the client's address
	// first (Dovecot: haproxy_trusted_networks), instead of or besides ID.
	SendProxy bool
}

// Limits bound what a client may make the proxy do. Zero values take the
// defaults below (ARCHITECTURE.md §12).
type Limits struct {
	MaxLine            int   // bytes in one command line; 64 KiB
	MaxBufferedLiteral int   // literal held in memory (mailbox names, LOGIN); 4 KiB
	MaxAppendLiteral   int64 // one APPEND message (a CATENATE's TEXT parts together); 64 MiB
	// MaxCommandBytes bounds what the proxy holds of one command after
	// login: its line pieces, buffered literals and parsed arguments
	// (a streamed message literal is not held; MaxAppendLiteral bounds
	// it); 1 MiB. MaxPreAuthCommandBytes is the same before login, an
	// AUTHENTICATE exchange with its responses one command; 64 KiB.
	MaxCommandBytes        int
	MaxPreAuthCommandBytes int
	// MaxPreAuthCommands bounds the commands before login, however
	// answered; 16. PreAuthIdle is the idle time before login, restarted
	// only by a command read whole; 60 s (Session.preAuthDone).
	MaxPreAuthCommands int
	PreAuthIdle        time.Duration
	AuthIdle           time.Duration // idle after login; 30 min (RFC 9051 §5.4: not less)
	IdleTimeout        time.Duration // one IDLE without DONE; 30 min (≥ the 29 min of RFC 9051 §6.3.13)
	WriteTimeout       time.Duration // one write to the client; 60 s
	MaxAuthFailures    int           // failed logins on one connection before BYE; 3
	// MaxCredentialBytes bounds what a login may give that the proxy
	// replays to a backend: user name, authorization identity and
	// password together. Longer is answered NO [LIMIT] before anything is
	// checked: backends end the connection on what they cannot hold
	// (Dovecot's login process reads LOGIN into 1 KiB, an escaped
	// password taking twice its size); 480.
	MaxCredentialBytes int
	// MaxCompressSessions bounds the sessions using COMPRESS=DEFLATE at
	// once: each holds a deflater of about 1.2 MiB; 100.
	MaxCompressSessions int
	// MaxPreAuthConnections bounds the connections awaiting login,
	// server-wide (preauth.go); DefaultMaxPreAuthConnections().
	MaxPreAuthConnections int
	// MaxInflight bounds the commands of one session in flight at the
	// backend: beyond it the client is read no further until one
	// completes (back-pressure, nothing dropped or reordered); 1000.
	MaxInflight int
	// MaxInflightBytes bounds what the records of one session's commands
	// in flight hold (each command's set, names, items and what the
	// backend pump adds to a FETCH's: its ranges, keys and UIDs): past
	// it the client is read no further until one completes, as past
	// MaxInflight. A single command over it is MaxCommandBytes' business;
	// 2 MiB (1000 ordinary commands take about 500 KiB).
	MaxInflightBytes int64
	// BackendTimeout is how long a backend may stay silent while it owes
	// an answer (a command it has whole, other than an IDLE waiting for
	// DONE; a literal's "+"; the rest of a response or literal), or take
	// none of an upload's bytes; then the client gets
	// "* BYE [UNAVAILABLE]"; 5 min. Bytes flowing reset it. Never while
	// the client's bytes of a command still come (ARCHITECTURE.md §13).
	BackendTimeout time.Duration
	// MaxResponseLine bounds one response line of a backend (literals
	// not counted): a huge SEARCH result fits; 16 MiB.
	MaxResponseLine int64
	// MaxAuditUIDs caps the UIDs one command's record names
	// (CommandEvent.UIDs); 1000. MaxAuditSharedWith caps the other
	// FETCHes it names as sharing its content (CommandEvent.SharedWith;
	// SharedCount says how many there were): a pipeline of hundreds of
	// FETCHes of one message would otherwise have each record name all
	// the others; 16.
	MaxAuditUIDs       int
	MaxAuditSharedWith int
	// MaxAuditMailboxNames bounds the distinct mailboxes one command
	// names in Named.Sources (CATENATE URLs) or Named.Mailboxes (NOTIFY
	// filters): its record names each of them, so a command naming more
	// than the trail's record holds is refused, NO [LIMIT], not recorded
	// without some (fail closed, ARCHITECTURE.md §11); the audit trail's
	// MaxMailboxNames (limits.max_audit_mailbox_names), else 64.
	MaxAuditMailboxNames int
	// MaxAuditNameBytes bounds what the names a command's record holds
	// whole total, encoded as JSON strings: the user, the command, its
	// mailbox, destination, sources and mailboxes, the selected mailbox,
	// a SETACL's identifier and rights. A command naming more is refused,
	// NO [LIMIT], not recorded cut (ARCHITECTURE.md §11); the audit
	// trail's MaxNameBytes (limits.max_audit_name_bytes), else 13568.
	MaxAuditNameBytes int
	// ParkAfter is how long a session's pumps wait with nothing to do
	// (between commands, or in IDLE) before each gives up its goroutine
	// until its peer sends something (parker_linux.go): the backend pump
	// with nothing owed, the client pump with nothing read (not with
	// COMPRESS); 10 ms, hotLinger: a pump that did work then parks from
	// its own goroutine, and none lingers (ARCHITECTURE.md §5). Negative:
	// never.
	ParkAfter time.Duration
	// MaxTag, MaxListDepth, MaxArguments and MaxSearchDepth bound one
	// command's shape as the parser reads it (imapwire.Bounds): a tag's
	// characters, 64; parenthesized list nesting, 32; arguments, nested
	// ones included, 10,000; search-key nesting (NOT, OR, parentheses),
	// 64. Past one: BAD, as any command the proxy cannot read.
	MaxTag         int
	MaxListDepth   int
	MaxArguments   int
	MaxSearchDepth int
}

// Default limits (ARCHITECTURE.md §12).
const (
	DefaultMaxLine                = 64 << 10
	DefaultMaxBufferedLiteral     = 4 << 10
	DefaultMaxAppendLiteral       = 64 << 20
	DefaultMaxCommandBytes        = 1 << 20
	DefaultMaxPreAuthCommandBytes = 64 << 10
	DefaultMaxPreAuthCommands     = 16
	DefaultPreAuthIdle            = 60 * time.Second
	DefaultAuthIdle               = 30 * time.Minute
	DefaultIdleTimeout            = 30 * time.Minute
	DefaultWriteTimeout           = 60 * time.Second
	DefaultMaxAuthFailures        = 3
	DefaultMaxCredentialBytes     = 480
	DefaultMaxCompressSessions    = 100
	DefaultMaxInflight            = 1000
	DefaultMaxInflightBytes       = 2 << 20
	DefaultBackendTimeout         = 5 * time.Minute
	DefaultMaxResponseLine        = 16 << 20
	DefaultParkAfter              = 10 * time.Millisecond
	DefaultMaxAuditUIDs           = 1000
	DefaultMaxAuditSharedWith     = 16
	DefaultMaxAuditMailboxNames   = 64
	DefaultMaxAuditNameBytes      = 13568 // an audit trail's MaxNameBytes at its defaults
	DefaultConnectTimeout         = 10 * time.Second
	DefaultLoginTimeout           = 30 * time.Second
)

// literalMinusMax caps non-synchronizing literals under LITERAL- (RFC 7888 §5).
const literalMinusMax = 4096

func (l Limits) withDefaults() Limits {
	orDefault(&l.MaxLine, DefaultMaxLine)
	orDefault(&l.MaxBufferedLiteral, DefaultMaxBufferedLiteral)
	orDefault(&l.MaxAppendLiteral, DefaultMaxAppendLiteral)
	orDefault(&l.MaxCommandBytes, DefaultMaxCommandBytes)
	orDefault(&l.MaxPreAuthCommandBytes, DefaultMaxPreAuthCommandBytes)
	orDefault(&l.MaxPreAuthCommands, DefaultMaxPreAuthCommands)
	orDefault(&l.PreAuthIdle, DefaultPreAuthIdle)
	orDefault(&l.AuthIdle, DefaultAuthIdle)
	orDefault(&l.IdleTimeout, DefaultIdleTimeout)
	orDefault(&l.WriteTimeout, DefaultWriteTimeout)
	orDefault(&l.MaxAuthFailures, DefaultMaxAuthFailures)
	orDefault(&l.MaxCredentialBytes, DefaultMaxCredentialBytes)
	orDefault(&l.MaxAuditMailboxNames, DefaultMaxAuditMailboxNames)
	orDefault(&l.MaxAuditNameBytes, DefaultMaxAuditNameBytes)
	orDefault(&l.MaxCompressSessions, DefaultMaxCompressSessions)
	if l.MaxPreAuthConnections <= 0 {
		l.MaxPreAuthConnections = DefaultMaxPreAuthConnections()
	}
	orDefault(&l.MaxInflight, DefaultMaxInflight)
	orDefault(&l.MaxInflightBytes, DefaultMaxInflightBytes)
	orDefault(&l.BackendTimeout, DefaultBackendTimeout)
	orDefault(&l.MaxResponseLine, DefaultMaxResponseLine)
	orDefault(&l.MaxAuditUIDs, DefaultMaxAuditUIDs)
	orDefault(&l.MaxAuditSharedWith, DefaultMaxAuditSharedWith)
	if l.ParkAfter == 0 {
		l.ParkAfter = DefaultParkAfter
	}
	b := l.bounds()
	l.MaxTag, l.MaxListDepth, l.MaxArguments, l.MaxSearchDepth = b.MaxTag, b.MaxListDepth, b.MaxArguments, b.MaxSearchDepth
	return l
}

// bounds are l's limits of a command's shape, as the parser takes them.
func (l *Limits) bounds() imapwire.Bounds {
	return imapwire.Bounds{MaxTag: l.MaxTag, MaxListDepth: l.MaxListDepth, MaxArguments: l.MaxArguments, MaxSearchDepth: l.MaxSearchDepth}.WithDefaults()
}

// orDefault sets *v to def unless it is positive.
func orDefault[T int | int64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Options configure a Server. The zero value of every hook works: allow
// everything, route nowhere, audit to the logger.
type Options struct {
	Listeners []ListenerOptions
	// Router picks the backend for a user; required.
	Router Router
	// Decider is asked on connect, auth and every command; nil allows all.
	Decider Decider
	// Auditor receives session, auth and command events; nil logs them
	// with Logger.
	Auditor Auditor
	// Limiter enforces rate limits and lockouts; nil means none.
	Limiter Limiter
	// Authenticator, when set, checks credentials before any backend is
	// contacted (required for LoginMaster backends).
	Authenticator Authenticator
	Logger        *zap.Logger
	// Metrics, when set, are updated by the proxy (NewMetrics).
	Metrics *Metrics
	Limits  Limits
	// AllowAuthzid accepts AUTHENTICATE PLAIN with an authorization
	// identity different from the authentication identity.
	AllowAuthzid bool
	// UserSeparators are the strings some backend reads in a login name
	// as a master-user or authorization split (Dovecot's
	// auth_master_user_separator), each backend's MasterSeparator among
	// them: a name containing one is refused before anything is checked
	// (ARCHITECTURE.md §17). nil means DefaultUserSeparators; an empty
	// list, none.
	UserSeparators []string
	// ShowBackendID relays the backend's ID response (RFC 2971) as it is.
	// By default it is replaced with the proxy's own: backends such as
	// Cyrus name their exact version, kernel and TLS library there.
	ShowBackendID bool
	// Hostname appears in the greeting; default "imapwarden".
	Hostname string
	// CutGrace is how long Shutdown waits, once its context is done, for
	// the sessions to end at a response boundary (a FETCH after the
	// message being sent) before it closes what is left; default 10 s.
	CutGrace time.Duration

	// afterReply, in tests, runs on the backend pump once a tagged reply
	// reached the client writer: a window other goroutines can act in.
	afterReply func()
	// wrapBackend, in tests, wraps the backend connection the relay
	// reads, writes and sets deadlines through: a window right after
	// bytes leave, a view of the deadlines.
	wrapBackend func(net.Conn) net.Conn
	// wrapClient, in tests, wraps each client's TCP connection (the
	// session then cannot park its client pump).
	wrapClient func(net.Conn) net.Conn
	// unarming, in tests, runs on the backend pump before it clears the
	// read deadline of a read with nothing owed any more.
	unarming func()
	// beforeBackendRead, in tests, runs on the backend pump before it reads
	// each response line, or each run of lines it relays in one pass
	// (plainRun): held says it keeps the client writer, whole that the
	// line is already in its buffer (no wait on the backend).
	beforeBackendRead func(held, whole bool)
	// plainRun, in tests, runs on the backend pump with the number of
	// lines of each run it relays by its one-pass path
	// (backendPump.plainRun); noPlainRun turns that path off, so that
	// every line takes the full one.
	plainRun   func(lines int)
	noPlainRun bool
	// lingerOwed, in tests, runs on the client pump each time it lingered
	// ParkAfter with an answer owed and lingers on (clientPump.park).
	lingerOwed func()
}

// DefaultCutGrace is Options.CutGrace's default.
const DefaultCutGrace = 10 * time.Second
