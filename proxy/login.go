package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Login, in order (ARCHITECTURE.md §6; no step tells a guesser more than "wrong"):
//
//  1. The Limiter's lockouts, before anything is checked.
//  2. The Authenticator verifies the credentials (a directory, a token, a
//     file), or leaves them to the backend ("backend" authenticator).
//  3. The Router picks the backend (it may read SessionInfo.Identity).
//  4. With the backend authenticator, the backend login is the check.
//  5. The auth-point policy decides, knowing who the user really is. A
//     refusal is answered exactly like a wrong password, after the same
//     work and the same Limiter delay; the audit keeps the true reason.
//  6. Otherwise the proxy logs in to the backend: as a master user, or
//     replaying the client's password.

// replyAuthFailed is the one answer to every credential-class failure:
// wrong password, unknown user, refused token, policy refusal, no route.
var replyAuthFailed = no("AUTHENTICATIONFAILED", "Authentication failed")

// The other refusals of a login, each given on more than one path.
var (
	replyLoginPrivacy       = no("PRIVACYREQUIRED", "LOGIN is disabled until TLS is active")
	replyAuthzidRefused     = no("AUTHORIZATIONFAILED", "Authorization identity not allowed")
	replyAuthUnavailable    = no("UNAVAILABLE", "Authentication temporarily unavailable")
	replyBackendUnavailable = no("UNAVAILABLE", "Backend unavailable, try again later")
	replyCredentialsTooLong = no("LIMIT", "User name and password too long")
)

// certAuthenticator names the verifier of SASL EXTERNAL logins (the TLS
// client certificate) in Identity.Authenticator.
const certAuthenticator = "certificate"

// backendAuthenticator names the default verifier, the backend itself.
const backendAuthenticator = "backend"

// authed is what a successful login hands the relay, which owns it
// (ARCHITECTURE.md §5): the backend connection logged in as the user
// (be.caps is the backend's capability list) and the accounting the login
// began. Who the user is, hooks read in SessionInfo (User, Identity). The
// zero authed is no login.
type authed struct {
	be *backendConn
	// limitRelease ends the Limiter's count of the session, serverRelease
	// the Balancer's count of it on be's server; nil when not counted.
	limitRelease, serverRelease func()
}

// drop gives up a login's backend connection that will not be used, and
// its place on its server.
func (a *authed) drop() {
	a.be.release()
	if a.serverRelease != nil {
		a.serverRelease()
	}
	*a = authed{}
}

// loginFailed forgets who a failed login claimed to be, once its auth
// record holds the name as typed: the session's later records (limits,
// security, its close) and the admin API would otherwise name a user
// nobody verified.
func (s *Session) loginFailed() {
	s.infoMu.Lock()
	s.info.User, s.info.Mechanism, s.info.Backend, s.info.Server, s.info.Identity = "", "", "", "", nil
	s.infoMu.Unlock()
}

// login verifies, routes, decides and logs in to the backend. On success
// it answers the client and returns the login; else the zero authed. sx
// is the AUTHENTICATE exchange (nil for LOGIN), which a refused token
// continues (tokenRefused).
func (s *Session) login(tag string, cr *Credentials, sx *saslExchange) (res authed) {
	// Every way out but success forgets the name tried, once recorded.
	defer func() {
		if res.be == nil {
			s.loginFailed()
		}
	}()
	mech := cr.Mechanism
	var authDecision *Decision
	ev := AuthEvent{Mechanism: mech}
	// fail answers at once: the client's mistakes and unavailability.
	fail := func(reason string, r *reply) authed {
		s.info.AuthFailures++
		ev.User, ev.Attempt, ev.Reason, ev.Backend, ev.Decision = cr.User, s.info.AuthFailures, reason, s.info.Backend, authDecision
		s.srv.auditor.Auth(&s.info, ev)
		s.answer(tag, r)
		return authed{}
	}
	if !s.authAllowed() {
		return fail("privacy-required", replyLoginPrivacy)
	}
	if (cr.User == "" && !cr.IsToken()) || strings.ContainsAny(cr.User, "\x00\r\n") || strings.ContainsAny(cr.Password, "\x00\r\n") ||
		strings.ContainsAny(cr.AuthzID, "\x00\r\n") || strings.ContainsAny(cr.Token, "\x00\r\n") {
		return fail("invalid-characters", no("AUTHENTICATIONFAILED", "Invalid characters in credentials"))
	}
	// What a backend would be sent of the client's (ARCHITECTURE.md §12):
	// refused here, clearly, before any backend ends the connection on it.
	// Token logins replay no token.
	if n := len(cr.User) + len(cr.AuthzID) + len(cr.Password); n > s.lim.MaxCredentialBytes {
		ev.Detail = "credentials of " + strconv.Itoa(n) + " bytes, over max_credential_bytes"
		return fail("credentials-too-long", replyCredentialsTooLong)
	}
	// One name per login (ARCHITECTURE.md §17): a name some component
	// would read as another user never gets further. Only an allowed
	// authzid (below) or the proxy's own master login acts as another user.
	seps := s.dyn.userSeparators()
	for _, name := range []string{cr.User, cr.AuthzID} {
		if p := nameProblem(name, seps); p != "" {
			ev.Detail = "user name: " + p
			return fail("ambiguous-name", no("AUTHENTICATIONFAILED", "User name has more than one reading"))
		}
	}
	authzid := cr.AuthzID
	if authzid == cr.User {
		authzid = ""
	}
	if authzid != "" && !s.dyn.AllowAuthzid {
		return fail("authzid-refused", replyAuthzidRefused)
	}
	// Under infoMu: the admin API reads them.
	s.infoMu.Lock()
	s.info.User = cr.User
	if authzid != "" {
		s.info.User = authzid
	}
	s.info.Mechanism = mech
	s.info.Backend, s.info.Server = "", ""
	s.info.Identity = nil
	s.infoMu.Unlock()
	lim := s.limit
	// Failed logins count against the identity whose password is checked
	// (the authcid), not the authzid it would act as: else each authzid
	// would be a fresh counter for guessing one password.
	limitUser := cr.User
	// The login's connections (authenticator, router, backend) and its
	// wait for a place end with the session (ARCHITECTURE.md §15).
	ctx, stop := s.loginContext()
	defer stop()
	var place LoginPlace
	if lim != nil {
		// Before anything is checked: a locked-out client never reaches
		// an authenticator or the backend. A login waits for a place
		// among its user's and address's logins in flight at most as long
		// as the client may be idle before login (ARCHITECTURE.md §12).
		wctx, cancel := context.WithTimeout(ctx, s.lim.PreAuthIdle)
		res, p := lim.Login(wctx, limitUser)
		cancel()
		if p != nil {
			// Every way out of the login gives the place back.
			place = p
			defer p.Release()
		}
		if res.hit() {
			s.srv.auditor.Limit(&s.info, res)
			if res.Exceeded {
				time.Sleep(res.Delay)
				return fail("limit", limitReply(res))
			}
		}
	}
	// failed answers a credential-class failure, whatever its true reason,
	// with one text after the Limiter's delay (the same for unknown users,
	// wrong passwords and refusals).
	var a authed
	// counted gives up the backend login, if any, and has the lockouts
	// count a failed login, with their delay.
	counted := func(detail string) {
		if a.be != nil {
			a.drop()
		}
		if place != nil {
			time.Sleep(place.Result(false))
		}
		ev.Detail = detail
	}
	// refused answers a refusal of what the client asked (an authzid the
	// backend's login cannot carry) with its own code, counted like a
	// wrong password: the client's doing, never the server's fault
	// (ARCHITECTURE.md §13).
	refused := func(reason, detail string, r *reply) authed {
		counted(detail)
		return fail(reason, r)
	}
	failed := func(reason, detail string) authed {
		counted(detail)
		if cr.IsToken() {
			s.info.AuthFailures++
			ev.User, ev.Attempt, ev.Reason, ev.Backend, ev.Decision = cr.User, s.info.AuthFailures, reason, s.info.Backend, authDecision
			s.srv.auditor.Auth(&s.info, ev)
			s.tokenRefused(sx)
			return authed{}
		}
		return fail(reason, replyAuthFailed)
	}
	// 2. Verify.
	ident, backendVerifies, err := s.verify(ctx, cr)
	if ident != nil {
		ev.Authenticator = ident.Authenticator
	}
	var ae *AuthError
	if errors.As(err, &ae) {
		ev.Authenticator = ae.Authenticator
	}
	switch {
	case errors.Is(err, ErrAuthFailed):
		return failed("credentials", err.Error())
	case err != nil:
		s.logger().Warn("authenticator failed", zap.Error(err))
		ev.Detail = err.Error()
		return fail("authenticator-unavailable", replyAuthUnavailable)
	}
	if !backendVerifies {
		// The authenticator's name for the user must be the one typed
		// (under FoldUser), which the lockout counted: a verifier that
		// matched a wider spelling would make each spelling a fresh
		// counter for one password (ARCHITECTURE.md §17).
		switch {
		case nameProblem(ident.User, seps) != "":
			return failed("ambiguous-identity", "authenticator "+ident.Authenticator+" named a user with more than one reading: "+nameProblem(ident.User, seps))
		case cr.User != "" && !SameUser(ident.User, cr.User):
			return failed("identity-mismatch", "authenticator "+ident.Authenticator+" verified another spelling of the user")
		}
		s.infoMu.Lock()
		s.info.Identity = ident
		if authzid == "" && ident.User != "" {
			// The directory's or the token's spelling of the user.
			s.info.User = ident.User
		}
		s.infoMu.Unlock()
	}

	// 3. Route.
	b, err := s.route(ctx, cr)
	if err != nil {
		if !errors.Is(err, ErrNoRoute) {
			s.logger().Warn("routing failed", zap.Error(err))
			return fail("route-error", replyAuthUnavailable)
		}
		// Same answer as a wrong password: no user enumeration.
		return failed("no-route", err.Error())
	}
	s.infoMu.Lock()
	s.info.Backend = b.Name
	s.infoMu.Unlock()
	switch {
	case b.Login == LoginMaster && backendVerifies:
		// Nobody checks the password: the backend takes any for a master
		// login. An ordinary failure for the client (the user is unknown
		// to every authenticator that could check it).
		return failed("no-verifier", "no authenticator verified the user and backend "+b.Name+" takes master logins")
	case b.Login != LoginMaster && (certAuthenticated(mech) || cr.IsToken()):
		// Nothing to replay: the backend must take a master login.
		s.logger().Error("certificate and token logins need a master-user backend", zap.String("backend", b.Name))
		return fail("misconfigured", replyAuthUnavailable)
	case b.Login == LoginMaster && authzid != "":
		// The proxy verified one user; the master login would act as
		// another, which nobody authorized.
		return fail("authzid-refused", replyAuthzidRefused)
	case b.Login == LoginCommand && authzid != "":
		// LOGIN has no place for an authzid: refused before any dial
		// (RFC 5530 AUTHORIZATIONFAILED). Under LoginAuto it is known
		// only after the greeting (errNoAuthzid, below).
		return refused("authzid-refused", "backend "+b.Name+" logs in with LOGIN, which cannot carry an authorization identity", replyAuthzidRefused)
	}

	// 4. The backend checks the password.
	if backendVerifies {
		a, err = s.backendLogin(ctx, b, cr)
		switch {
		case errors.Is(err, errBackendAuth):
			return failed("credentials", "backend "+b.Name+" refused the credentials")
		case errors.Is(err, errLoginDropped):
			// A failed login like any other, which the lockouts count
			// (ARCHITECTURE.md §13).
			return failed("backend-dropped", "backend "+b.Name+" ended the connection on the login")
		case errors.Is(err, errNoAuthzid):
			return refused("authzid-refused", "backend "+b.Name+" offers no AUTH=PLAIN: its LOGIN cannot carry an authorization identity", replyAuthzidRefused)
		}
		if err != nil {
			return fail("backend-unavailable", replyBackendUnavailable)
		}
		s.infoMu.Lock()
		s.info.Identity = ident
		s.infoMu.Unlock()
	}

	// 5. The policy, once the user is known to be who they say.
	d := s.decide(PointAuth, nil, false, nil)
	if !d.Allow || d.Reason != "" || len(d.Annotations) > 0 {
		authDecision = &d
	}
	if !d.Allow {
		// Even a disconnect is answered like a wrong password: the
		// session ends at max_auth_failures, as for any guesser.
		return failed("policy", "")
	}

	// 6. Log in to the backend.
	if a.be == nil {
		a, err = s.backendLogin(ctx, b, cr)
		switch {
		case errors.Is(err, errBackendAuth):
			// The proxy verified the user, the backend does not know it
			// (or its master user is misconfigured).
			return failed("backend-refused", "backend "+b.Name+" refused the login")
		case errors.Is(err, errLoginDropped):
			return failed("backend-dropped", "backend "+b.Name+" ended the connection on the login")
		case errors.Is(err, errNoAuthzid):
			return refused("authzid-refused", "backend "+b.Name+" offers no AUTH=PLAIN: its LOGIN cannot carry an authorization identity", replyAuthzidRefused)
		}
		if err != nil {
			return fail("backend-unavailable", replyBackendUnavailable)
		}
	}
	if lim != nil {
		if place != nil {
			place.Result(true)
		}
		res, release := lim.Session()
		if res.hit() {
			s.srv.auditor.Limit(&s.info, res)
		}
		if res.Exceeded {
			if release != nil {
				release()
			}
			a.drop()
			ev.User, ev.Attempt, ev.Reason, ev.Backend = s.info.User, s.info.AuthFailures+1, "limit", b.Name
			s.srv.auditor.Auth(&s.info, ev)
			s.answer(tag, limitReply(res))
			return authed{}
		}
		a.limitRelease = release
	}
	if a.be.delim != 0 {
		s.infoMu.Lock()
		s.info.Delimiter = string(a.be.delim)
		s.infoMu.Unlock()
	}
	ev.User, ev.Attempt, ev.Success, ev.Backend, ev.Decision = s.info.User, s.info.AuthFailures+1, true, b.Name, authDecision
	s.srv.auditor.Auth(&s.info, ev)
	s.writef("%s OK [CAPABILITY %s COMPRESS=DEFLATE] Logged in\r\n", tag, strings.Join(filterCaps(a.be.caps), " "))
	return a
}

// verify runs step 2: the identity, and whether the backend must still
// check the password. EXTERNAL was verified by the TLS handshake.
func (s *Session) verify(ctx context.Context, cr *Credentials) (*Identity, bool, error) {
	if certAuthenticated(cr.Mechanism) {
		return &Identity{Authenticator: certAuthenticator, User: cr.User}, false, nil
	}
	a := s.dyn.Authenticator
	if a == nil {
		if cr.IsToken() {
			return nil, false, &AuthError{Authenticator: backendAuthenticator, Err: ErrAuthFailed}
		}
		return &Identity{Authenticator: backendAuthenticator, User: cr.User}, true, nil
	}
	id, err := a.Authenticate(ctx, &s.info, cr)
	if errors.Is(err, ErrBackendVerifies) {
		if id == nil {
			id = &Identity{Authenticator: backendAuthenticator}
		}
		if id.User == "" {
			id.User = cr.User
		}
		if cr.IsToken() {
			return id, false, &AuthError{Authenticator: id.Authenticator, Err: ErrAuthFailed}
		}
		return id, true, nil
	}
	if err == nil && (id == nil || id.User == "") {
		// A verifier that names nobody has verified nothing.
		return nil, false, errors.New("authenticator returned no identity")
	}
	return id, false, err
}

// route asks the Router for the backend, with the password when it wants
// one (a LoginRouter, such as a lookup service that checks it).
func (s *Session) route(ctx context.Context, cr *Credentials) (*Backend, error) {
	if lr, ok := s.dyn.Router.(LoginRouter); ok {
		return lr.RouteLogin(ctx, &s.info, s.info.User, cr.Password)
	}
	return s.dyn.Router.Route(ctx, &s.info, s.info.User)
}

// backendLogin dials b and logs in: as the master user for the verified
// user, or with the client's credentials. A backend with several servers
// (Backend.Servers) fails over: a server that cannot be reached or does
// not answer is reported to the Balancer (which may mark it down) and the
// next server it picks is tried, until none is left. Refused credentials
// end the attempts: another server of the same backend would say the
// same. On success the session counts on its server until it ends
// (authed.serverRelease).
func (s *Session) backendLogin(ctx context.Context, b *Backend, cr *Credentials) (authed, error) {
	var tried []string
	var dropped error // a server ended the connection on the login
	for {
		sb := b
		if b.Servers != nil {
			var err error
			if sb, err = b.Servers.Pick(&s.info, s.info.User, tried); err != nil {
				if dropped != nil {
					return authed{}, dropped
				}
				s.logger().Warn("backend unavailable", zap.String("backend", b.Name), zap.Error(err))
				return authed{}, err
			}
		}
		s.infoMu.Lock()
		s.info.Server = sb.Server
		s.infoMu.Unlock()
		dialStart := time.Now()
		be, unwatch, err := dialBackend(ctx, sb, &s.info)
		s.srv.opts.Metrics.backendDial(b.Name, err, time.Since(dialStart))
		if err == nil {
			err = be.login(ctx, s.info.User, cr.AuthzID, cr.User, cr.Password, cr.Mechanism)
			if !unwatch() && err == nil {
				err = context.Cause(ctx) // closed under the login's end
			}
			if err != nil {
				be.release()
			}
		}
		if ctx.Err() != nil {
			// The session ended the login (ARCHITECTURE.md §15): nothing
			// is known of the server.
			return authed{}, fmt.Errorf("login to backend %s ended: %w", b.Name, errors.Join(context.Cause(ctx), err))
		}
		if errors.Is(err, errLoginDropped) {
			// Not reported to the Balancer: a login the server ended may
			// be the client's doing, and one client must not count
			// against every user's server; its health checks judge it
			// (ARCHITECTURE.md §13). Yet the server may also have died
			// under it: the next one is tried, as for a fault, and the
			// login is refused only when every server ended it.
			s.logger().Info("backend dropped a login", zap.String("backend", b.Name), zap.String("server", sb.Server), zap.Error(err))
			if b.Servers == nil {
				return authed{}, err
			}
			dropped = err
			tried = append(tried, sb.Server)
			continue
		}
		client := clientsLoginError(err)
		if b.Servers != nil {
			health := err
			if client {
				// It answered: the refusal is of what the client sent,
				// never the server's health (ARCHITECTURE.md §13).
				health = nil
			}
			b.Servers.Result(sb, health)
		}
		if err == nil {
			a := authed{be: be}
			if b.Servers != nil {
				a.serverRelease = b.Servers.Acquire(sb)
			}
			return a, nil
		}
		if client {
			// Another server of the backend would refuse it alike.
			return authed{}, err
		}
		s.logger().Warn("backend unavailable", zap.String("backend", b.Name), zap.String("server", sb.Server), zap.Error(err))
		s.srv.auditor.Security(&s.info, "backend-connect-failed", b.Name)
		if errors.Is(err, errBackendInjection) {
			s.srv.auditor.Security(&s.info, "backend-starttls-injection", b.Name)
		}
		if b.Servers == nil {
			return authed{}, err
		}
		tried = append(tried, sb.Server)
	}
}

// certAuthenticated reports a login whose credential was the client
// certificate (EXTERNAL): no password exists to check or to replay.
func certAuthenticated(mech string) bool { return mech == "EXTERNAL" }

// tokenAuth reports whether bearer tokens are accepted, and what to say
// when one is refused.
func (s *Session) tokenAuth() (TokenChallenge, bool) {
	if ta, ok := s.dyn.Authenticator.(TokenAuthenticator); ok {
		return ta.Tokens()
	}
	return TokenChallenge{}, false
}

// tokenRefused ends a refused OAUTHBEARER or XOAUTH2 exchange as RFC 7628
// §3.2.2 asks: an error in a challenge, the client's dummy response
// (%x01; XOAUTH2 clients send an empty one), then NO. The status is
// always invalid_token: an expired token, a wrong audience and a policy
// refusal look alike.
func (s *Session) tokenRefused(sx *saslExchange) {
	tc, _ := s.tokenAuth()
	msg := tokenError{Status: "invalid_token", Schemes: "bearer", Scope: tc.Scope, OpenIDConfiguration: tc.OpenIDConfiguration}
	blob, _ := json.Marshal(msg)
	if _, ok := s.saslResponse(sx, blob); ok {
		s.answer(sx.tag, replyAuthFailed)
	}
}

// tokenError is the RFC 7628 §3.2.2 error.
type tokenError struct {
	Status              string `json:"status"`
	Schemes             string `json:"schemes,omitempty"`
	Scope               string `json:"scope,omitempty"`
	OpenIDConfiguration string `json:"openid-configuration,omitempty"`
}

// tokenServer reads the client's OAUTHBEARER (RFC 7628 §3.1) or XOAUTH2
// message into Credentials. It is strict: anything but the grammar fails.
type tokenServer struct {
	mech string
	cr   *Credentials
	done bool
}

var errTokenSyntax = errors.New("malformed token message")

func (t *tokenServer) Next(resp []byte) ([]byte, bool, error) {
	if t.done {
		return nil, false, errTokenSyntax
	}
	if resp == nil {
		// No initial response: an empty challenge asks for it.
		return []byte{}, false, nil
	}
	t.done = true
	var err error
	if t.mech == "XOAUTH2" {
		t.cr.User, t.cr.Token, err = parseXOAUTH2(resp)
	} else {
		t.cr.AuthzID, t.cr.Token, err = parseOAuthBearer(resp)
		// OAUTHBEARER has no authentication identity: the token is it, and
		// a= names the user the client means (RFC 7628 §3.1).
		t.cr.User, t.cr.AuthzID = t.cr.AuthzID, ""
	}
	return nil, true, err
}

// parseXOAUTH2 reads "user=" user ^A "auth=Bearer " token ^A ^A.
func parseXOAUTH2(m []byte) (user, token string, err error) {
	rest, ok := bytes.CutSuffix(m, []byte("\x01\x01"))
	if !ok {
		return "", "", errTokenSyntax
	}
	u, a, ok := bytes.Cut(rest, []byte{1})
	if !ok {
		return "", "", errTokenSyntax
	}
	uv, ok := bytes.CutPrefix(u, []byte("user="))
	if !ok {
		return "", "", errTokenSyntax
	}
	av, ok := bytes.CutPrefix(a, []byte("auth="))
	if !ok {
		return "", "", errTokenSyntax
	}
	tok, ok := cutBearer(av)
	if !ok {
		return "", "", errTokenSyntax
	}
	return string(uv), tok, nil
}

// parseOAuthBearer reads RFC 7628 §3.1: gs2-header kvsep *(kvpair)
// kvsep, with an "auth" pair. Channel binding ("p=") is not offered.
func parseOAuthBearer(m []byte) (authzid, token string, err error) {
	flag, rest, ok := bytes.Cut(m, []byte{','})
	if !ok || !(string(flag) == "n" || string(flag) == "y") {
		return "", "", errTokenSyntax
	}
	az, rest, ok := bytes.Cut(rest, []byte{','})
	if !ok {
		return "", "", errTokenSyntax
	}
	if len(az) > 0 {
		name, ok := bytes.CutPrefix(az, []byte("a="))
		if !ok {
			return "", "", errTokenSyntax
		}
		if authzid, ok = unescapeSASLName(string(name)); !ok {
			return "", "", errTokenSyntax
		}
	}
	rest, ok = bytes.CutPrefix(rest, []byte{1})
	if !ok {
		return "", "", errTokenSyntax
	}
	rest, ok = bytes.CutSuffix(rest, []byte{1})
	if !ok {
		return "", "", errTokenSyntax
	}
	found := false
	for len(rest) > 0 {
		var kv []byte
		kv, rest, ok = bytes.Cut(rest, []byte{1})
		if !ok {
			return "", "", errTokenSyntax
		}
		k, v, ok := bytes.Cut(kv, []byte{'='})
		if !ok || len(k) == 0 || !isAlpha(k) {
			return "", "", errTokenSyntax
		}
		if string(k) == "auth" {
			if found {
				return "", "", errTokenSyntax
			}
			if token, ok = cutBearer(v); !ok {
				return "", "", errTokenSyntax
			}
			found = true
		}
		// host and port (and others, RFC 7628 §3.1) are informational.
	}
	if !found {
		return "", "", errTokenSyntax
	}
	return authzid, token, nil
}

// cutBearer reads `"Bearer" 1*SP b64token` (RFC 6750 §2.1; the scheme is
// case-insensitive).
func cutBearer(v []byte) (string, bool) {
	if len(v) < 7 || !strings.EqualFold(string(v[:6]), "bearer") || v[6] != ' ' {
		return "", false
	}
	tok := bytes.TrimLeft(v[7:], " ")
	if len(tok) == 0 {
		return "", false
	}
	for _, c := range tok {
		// b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~+/=", c) >= 0) {
			return "", false
		}
	}
	return string(tok), true
}

func isAlpha(b []byte) bool {
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// unescapeSASLName decodes "=2C" and "=3D" (RFC 5801 §4); any other "="
// is an error.
func unescapeSASLName(s string) (string, bool) {
	if !strings.Contains(s, "=") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", false
		}
		i += 2
	}
	return b.String(), true
}

// saslDetail is the audit text of a SASL failure: ours, or a generic one
// (a library's error might quote the client's message).
func saslDetail(err error) string {
	if errors.Is(err, errTokenSyntax) {
		return err.Error()
	}
	return "malformed SASL response"
}
