// Package proxy is imapwarden's IMAP front end and inspecting relay.
//
// Implementation notes — invariants a reader must keep:
//
//   - Phase A (before login) the proxy is the IMAP server. The backend never
//     sees a byte the client sent before authentication succeeded.
//   - Before TLS, CAPABILITY shows STARTTLS and LOGINDISABLED and no AUTH=;
//     LOGIN and AUTHENTICATE get NO [PRIVACYREQUIRED] (RFC 9051 §6.2.3,
//     RFC 5530 §3), unless the client is in a listener's PlaintextAuthFrom.
//   - STARTTLS: after our OK, any byte already buffered from the client is
//     an injection attempt (CVE-2011-0411 class): audit and close. After the
//     handshake everything learned before it is forgotten (RFC 9051 §6.2.1).
//     The same holds toward a backend: bytes after its STARTTLS OK abort.
//   - The first command decides whether the peer speaks IMAP at all: an
//     unknown or malformed first line (HTTP, a TLS ClientHello) gets BYE.
//   - Connections awaiting login are capped server-wide
//     (Limits.MaxPreAuthConnections, preauth.go): one over the cap is
//     turned away at accept, before a byte is read from it.
//   - Phase B (after login) bytes are forwarded unchanged, command by
//     command, once the Decider allowed them. A command is held back until
//     its decision point: its end, or the first literal that is streamed
//     (message data, or larger than MaxBufferedLiteral).
//   - Literals (RFC 9051 §4.3, RFC 7888): a synchronizing literal gets "+"
//     only after the command so far was allowed; a denied one gets the
//     tagged NO instead. A denied non-synchronizing literal is discarded by
//     counting its octets; one over the limit closes the session. Sizes are
//     checked before anything is allocated.
//   - Small literals the proxy buffered were already answered with our own
//     "+"; when such a command is forwarded, the backend's "+" for them is
//     swallowed, never relayed.
//   - Never forwarded: STARTTLS, LOGIN, AUTHENTICATE or COMPRESS after
//     login; capabilities the proxy cannot parse or must own (STARTTLS,
//     LOGINDISABLED, AUTH=, COMPRESS=, referrals) are filtered from both
//     "* CAPABILITY" and "[CAPABILITY ...]". COMPRESS=DEFLATE is the
//     proxy's own (compress.go): only the client's leg is compressed, so
//     the scanner always sees plain IMAP.
//   - Responses are written in as few writes as possible: the backend pump
//     flushes only when the backend has nothing more buffered, so that
//     pipelined small replies leave in one segment (TCP_NODELAY is on).
//   - Logins (login.go): the credentials are verified (an Authenticator, or
//     the backend's own login) before the auth policy decides, and every
//     refused login gets one answer after the same delay; only the audit
//     knows the reason. An authenticator that cannot answer is
//     UNAVAILABLE, never a login.
//   - A backend with several servers (Backend.Servers, proxy/pool) picks
//     one per login; a server that cannot be reached or does not answer
//     is reported and the login fails over to the next. Sessions already
//     open never move.
//   - Nothing logged or audited carries a password, a token, a SASL
//     response or message content.
package proxy
