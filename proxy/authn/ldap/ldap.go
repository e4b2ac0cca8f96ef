// Package ldap checks passwords against an LDAP directory (OpenLDAP,
// Active Directory, 389-DS): a bind as the user, found by a search with a
// service account or named by a DN template, then the user's groups and
// chosen attributes (mailHost may name the backend).
//
// Implementation notes:
//
//   - Never fail open: anything but a clear answer from the directory
//     (a network error, a timeout, an unexpected result code) is an error
//     that is not proxy.ErrAuthFailed, which the proxy turns into
//     NO [UNAVAILABLE].
//   - Input from the client reaches the directory escaped: RFC 4515 in
//     filters (a user "*)(uid=*" matches nobody), RFC 4514 in DNs. A user
//     name with control characters is refused before any request.
//   - An empty password is refused here: a simple bind with a DN and no
//     password is an unauthenticated bind that many servers accept
//     (RFC 4513 §5.1.2).
//   - TLS is verified (LDAPS, or StartTLS before anything else); the
//     certificate must name the URL's host unless TLS.ServerName says
//     otherwise.
//   - Every network step (dial, TLS, each request) has Timeout; a
//     directory that accepts and never answers costs at most a few
//     Timeouts, then the connection is dropped.
//   - Connections are pooled (PoolSize at most, each kind): service-bound
//     ones for searches, and others for the users' binds, so that a
//     service search never runs as a user.
package ldap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/proxy/authn"
)

// Options configure a Directory. Placeholders: {user} in BindDN (escaped
// as a DN value) and in the filters (escaped as a filter value): the name
// typed in BindDN and SearchFilter, which find the entry, and the entry's
// own UserAttribute value in GroupFilter (an entry without one is refused
// then); {dn} in GroupFilter, the user's DN.
type Options struct {
	// URL is ldaps://host[:636] or ldap://host[:389].
	URL string
	// StartTLS upgrades an ldap:// URL before anything is sent.
	StartTLS bool
	// TLS verifies the directory (RootCAs, ServerName); nil means the
	// system roots and the URL's host.
	TLS *tls.Config
	// AllowPlaintext permits ldap:// without StartTLS (a directory on the
	// same host). Passwords then cross the connection in clear.
	AllowPlaintext bool

	// BindDN, when set, binds directly as this DN, e.g.
	// "uid={user},ou=people,dc=example,dc=com". Otherwise the user is
	// searched with the service account: SearchBase and SearchFilter,
	// e.g. "(&(objectClass=inetOrgPerson)(uid={user}))".
	BindDN       string
	SearchBase   string
	SearchFilter string
	// ServiceDN and ServicePassword: the account that searches. Optional
	// with BindDN (searches then run as the user).
	ServiceDN, ServicePassword string

	// UserAttribute is the user's name as the directory spells it
	// (Identity.User); default uid. A login name must be its value
	// (ARCHITECTURE.md §17): another spelling the directory matches is
	// refused.
	UserAttribute string
	// Groups: GroupAttribute on the user's entry (memberOf: DNs), and/or
	// a search under GroupBase with GroupFilter, e.g. "(member={dn})",
	// naming each group by GroupNameAttribute (default cn).
	//
	// A GroupAttribute DN counts only under GroupAttributeBase (required
	// with it), named by its first RDN's GroupNameAttribute value: a
	// short name from anywhere would let a group a user may create
	// (self-service, another tenant) pass as the policies' "admins".
	GroupAttribute     string
	GroupAttributeBase string
	GroupBase          string
	GroupFilter        string
	GroupNameAttribute string
	// RouteAttribute (e.g. mailHost) becomes Identity.Route.
	RouteAttribute string
	// Attributes are copied into Identity.Attributes (first value each).
	Attributes []string

	// PoolSize bounds the connections of each kind; default 8.
	PoolSize int
	// Timeout bounds each network step; default 5s.
	Timeout time.Duration
}

// Defaults.
const (
	DefaultPoolSize = 8
	DefaultTimeout  = 5 * time.Second
	maxUserLen      = 256
)

// Directory is an authn.Verifier backed by LDAP.
type Directory struct {
	o     Options
	host  string // host:port to dial
	ldaps bool
	tls   *tls.Config
	svc   *pool // bound as the service account
	// groupAttrBase is GroupAttributeBase parsed.
	groupAttrBase *goldap.DN
	binds         *pool // for the users' binds (and searches as the user)
}

var _ authn.Verifier = (*Directory)(nil)

// New checks o; it does not connect.
func New(o Options) (*Directory, error) {
	u, err := url.Parse(o.URL)
	if err != nil || u.Host == "" || (u.Scheme != "ldap" && u.Scheme != "ldaps") || u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("ldap: url %q: want ldaps://host[:port] or ldap://host[:port]", o.URL)
	}
	d := &Directory{o: o, ldaps: u.Scheme == "ldaps", host: u.Host}
	if o.GroupAttribute != "" {
		if o.GroupAttributeBase == "" {
			return nil, errors.New("ldap: group_attribute needs group_attribute_base, the subtree whose groups count")
		}
		if d.groupAttrBase, err = goldap.ParseDN(o.GroupAttributeBase); err != nil {
			return nil, fmt.Errorf("ldap: group_attribute_base %q: %w", o.GroupAttributeBase, err)
		}
	}
	if u.Port() == "" {
		d.host = net.JoinHostPort(u.Hostname(), map[bool]string{true: "636", false: "389"}[d.ldaps])
	}
	switch {
	case d.ldaps && o.StartTLS:
		return nil, errors.New("ldap: start_tls is for ldap:// URLs; ldaps:// is TLS already")
	case !d.ldaps && !o.StartTLS && !o.AllowPlaintext:
		return nil, errors.New("ldap: ldap:// without start_tls sends passwords in clear")
	}
	d.tls = &tls.Config{MinVersion: tls.VersionTLS12}
	if o.TLS != nil {
		d.tls = o.TLS.Clone()
	}
	if d.tls.ServerName == "" {
		d.tls.ServerName = u.Hostname()
	}
	if o.BindDN == "" {
		if o.SearchBase == "" || o.SearchFilter == "" || o.ServiceDN == "" {
			return nil, errors.New("ldap: without bind_dn, search_base, search_filter and a service account are required")
		}
		if !strings.Contains(o.SearchFilter, "{user}") {
			return nil, errors.New("ldap: search_filter must contain {user}")
		}
	} else if !strings.Contains(o.BindDN, "{user}") {
		return nil, errors.New("ldap: bind_dn must contain {user}")
	}
	if (o.ServiceDN == "") != (o.ServicePassword == "") {
		return nil, errors.New("ldap: the service account needs both a DN and a password")
	}
	if (o.GroupBase == "") != (o.GroupFilter == "") {
		return nil, errors.New("ldap: group_base and group_filter go together")
	}
	for _, f := range []string{o.SearchFilter, o.GroupFilter} {
		if f != "" {
			if _, err := goldap.CompileFilter(strings.NewReplacer("{user}", "x", "{dn}", "x").Replace(f)); err != nil {
				return nil, fmt.Errorf("ldap: filter %q: %v", f, err)
			}
		}
	}
	if d.o.UserAttribute == "" {
		d.o.UserAttribute = "uid"
	}
	if d.o.GroupNameAttribute == "" {
		d.o.GroupNameAttribute = "cn"
	}
	if d.o.PoolSize <= 0 {
		d.o.PoolSize = DefaultPoolSize
	}
	if d.o.Timeout <= 0 {
		d.o.Timeout = DefaultTimeout
	}
	d.svc = newPool(d.o.PoolSize, func(ctx context.Context) (*goldap.Conn, error) {
		c, err := d.dial(ctx)
		if err != nil {
			return nil, err
		}
		if err := c.Bind(d.o.ServiceDN, d.o.ServicePassword); err != nil {
			c.Close()
			return nil, fmt.Errorf("ldap: service account bind: %w", err)
		}
		return c, nil
	})
	d.binds = newPool(d.o.PoolSize, d.dial)
	return d, nil
}

// Close closes the pooled connections.
func (d *Directory) Close() {
	d.svc.close()
	d.binds.close()
}

// dial connects, with TLS verified, every step bounded by Timeout.
func (d *Directory) dial(ctx context.Context) (*goldap.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.o.Timeout)
	defer cancel()
	nd := net.Dialer{KeepAlive: 30 * time.Second}
	raw, err := nd.DialContext(ctx, "tcp", d.host)
	if err != nil {
		return nil, fmt.Errorf("ldap: dial %s: %w", d.host, err)
	}
	deadline, _ := ctx.Deadline()
	raw.SetDeadline(deadline) // TLS and StartTLS; cleared below
	conn := raw
	if d.ldaps {
		tc := tls.Client(raw, d.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("ldap: tls with %s: %w", d.host, err)
		}
		conn = tc
	}
	c := goldap.NewConn(conn, d.ldaps)
	c.Start()
	c.SetTimeout(d.o.Timeout)
	if d.o.StartTLS {
		if err := c.StartTLS(d.tls); err != nil {
			c.Close()
			return nil, fmt.Errorf("ldap: starttls with %s: %w", d.host, err)
		}
	}
	raw.SetDeadline(time.Time{})
	return c, nil
}

// Verify implements authn.Verifier.
func (d *Directory) Verify(ctx context.Context, c *proxy.Credentials) (*proxy.Identity, error) {
	if c.IsToken() {
		return nil, authn.ErrNotApplicable
	}
	if c.Password == "" {
		// RFC 4513 §5.1.2: a DN with no password is an anonymous bind.
		return nil, fmt.Errorf("empty password: %w", proxy.ErrAuthFailed)
	}
	user := c.User
	if user == "" || len(user) > maxUserLen || strings.ContainsFunc(user, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, fmt.Errorf("user name not acceptable: %w", authn.ErrUnknownUser)
	}
	ctx, cancel := context.WithTimeout(ctx, 4*d.o.Timeout)
	defer cancel()
	var id *proxy.Identity
	var err error
	if d.o.BindDN != "" {
		id, err = d.verifyDirect(ctx, user, c.Password)
	} else {
		id, err = d.verifySearch(ctx, user, c.Password)
	}
	return id, err
}

// userAttrs are the attributes read from the user's entry.
func (d *Directory) userAttrs() []string {
	attrs := []string{d.o.UserAttribute}
	for _, a := range append([]string{d.o.GroupAttribute, d.o.RouteAttribute}, d.o.Attributes...) {
		if a != "" {
			attrs = append(attrs, a)
		}
	}
	return attrs
}

func (d *Directory) verifySearch(ctx context.Context, user, pw string) (*proxy.Identity, error) {
	filter := strings.ReplaceAll(d.o.SearchFilter, "{user}", goldap.EscapeFilter(user))
	var entry *goldap.Entry
	err := d.svc.do(ctx, func(c *goldap.Conn) error {
		// Two results at most: more than one is an ambiguous filter.
		res, err := c.Search(goldap.NewSearchRequest(d.o.SearchBase, goldap.ScopeWholeSubtree, goldap.NeverDerefAliases,
			2, int(d.o.Timeout/time.Second), false, filter, d.userAttrs(), nil))
		if err != nil && !goldap.IsErrorWithCode(err, goldap.LDAPResultSizeLimitExceeded) {
			return err
		}
		switch {
		case res == nil || len(res.Entries) == 0:
		case len(res.Entries) > 1:
			return errAmbiguous
		default:
			entry = res.Entries[0]
		}
		return nil
	})
	if errors.Is(err, errAmbiguous) {
		return nil, fmt.Errorf("%s matches several entries: %w", user, proxy.ErrAuthFailed)
	}
	if err != nil {
		return nil, fmt.Errorf("ldap: search: %w", err)
	}
	if entry == nil {
		// A bind that fails all the same, so that an unknown user costs
		// what a wrong password costs.
		d.bind(ctx, "cn=imapwarden-no-such-user,"+d.o.SearchBase, pw)
		return nil, authn.ErrUnknownUser
	}
	if err := d.ownName(entry, user); err != nil {
		// No bind: the password of another spelling is not checked.
		// Another bind costs the same, as for an unknown user.
		d.bind(ctx, "cn=imapwarden-no-such-user,"+d.o.SearchBase, pw)
		return nil, err
	}
	if err := d.bind(ctx, entry.DN, pw); err != nil {
		return nil, err
	}
	return d.identity(ctx, entry, user, d.svc)
}

// ownName refuses a login name that is not the entry's own (its
// UserAttribute, under proxy.SameUser): the directory's matching rules
// are wider than the proxy's (caseIgnoreMatch ignores insignificant
// spaces and folds Unicode with NFKC, RFC 4518 §2), and the filter may
// match other attributes (mail). Each such spelling would be a fresh
// lockout counter for one password (ARCHITECTURE.md §17). An entry
// without the attribute is named as typed.
func (d *Directory) ownName(e *goldap.Entry, user string) error {
	if own := e.GetAttributeValue(d.o.UserAttribute); own != "" && !proxy.SameUser(own, user) {
		return fmt.Errorf("the name is another spelling of the entry's %s: %w", d.o.UserAttribute, proxy.ErrAuthFailed)
	}
	return nil
}

func (d *Directory) verifyDirect(ctx context.Context, user, pw string) (*proxy.Identity, error) {
	dn := strings.ReplaceAll(d.o.BindDN, "{user}", goldap.EscapeDN(user))
	var id *proxy.Identity
	var idErr error
	err := d.binds.do(ctx, func(c *goldap.Conn) error {
		if err := c.Bind(dn, pw); err != nil {
			return err
		}
		if d.o.ServiceDN != "" {
			return nil // read below, as the service account
		}
		// Read the entry and groups as the user, on this connection.
		entry, err := readEntry(c, dn, d.userAttrs(), d.o.Timeout)
		if err != nil {
			return err
		}
		id, idErr = d.identity(ctx, entry, user, &single{c})
		return nil
	})
	if err != nil {
		return nil, bindError(err)
	}
	if id != nil || idErr != nil {
		return id, idErr
	}
	var entry *goldap.Entry
	if err := d.svc.do(ctx, func(c *goldap.Conn) error {
		var err error
		entry, err = readEntry(c, dn, d.userAttrs(), d.o.Timeout)
		return err
	}); err != nil {
		return nil, fmt.Errorf("ldap: read %s: %w", dn, err)
	}
	return d.identity(ctx, entry, user, d.svc)
}

var errAmbiguous = errors.New("ambiguous")

func readEntry(c *goldap.Conn, dn string, attrs []string, timeout time.Duration) (*goldap.Entry, error) {
	res, err := c.Search(goldap.NewSearchRequest(dn, goldap.ScopeBaseObject, goldap.NeverDerefAliases,
		1, int(timeout/time.Second), false, "(objectClass=*)", attrs, nil))
	if err != nil {
		return nil, err
	}
	if len(res.Entries) != 1 {
		return nil, fmt.Errorf("entry %s not readable", dn)
	}
	return res.Entries[0], nil
}

// bind checks the user's password on a connection of the bind pool.
func (d *Directory) bind(ctx context.Context, dn, pw string) error {
	err := d.binds.do(ctx, func(c *goldap.Conn) error { return c.Bind(dn, pw) })
	return bindError(err)
}

// bindError sorts a bind's outcome: wrong credentials (and the refusals
// a directory gives for a locked or expired account) are ErrAuthFailed;
// anything else is the directory not answering.
func bindError(err error) error {
	switch {
	case err == nil:
		return nil
	case goldap.IsErrorWithCode(err, goldap.LDAPResultInvalidCredentials),
		goldap.IsErrorWithCode(err, goldap.LDAPResultInvalidDNSyntax),
		goldap.IsErrorWithCode(err, goldap.LDAPResultNoSuchObject),
		goldap.IsErrorWithCode(err, goldap.LDAPResultInappropriateAuthentication),
		goldap.IsErrorWithCode(err, goldap.LDAPResultConstraintViolation),
		goldap.IsErrorWithCode(err, goldap.LDAPResultUnwillingToPerform):
		var le *goldap.Error
		if errors.As(err, &le) {
			return fmt.Errorf("%s: %w", goldap.LDAPResultCodeMap[le.ResultCode], proxy.ErrAuthFailed)
		}
		return fmt.Errorf("bind refused: %w", proxy.ErrAuthFailed)
	}
	return fmt.Errorf("ldap: bind: %w", err)
}

// searcher runs a search on some connection.
type searcher interface {
	do(ctx context.Context, fn func(c *goldap.Conn) error) error
}

// single is one connection already in hand.
type single struct{ c *goldap.Conn }

func (s *single) do(_ context.Context, fn func(c *goldap.Conn) error) error { return fn(s.c) }

// identity builds the Identity from the user's entry, with its groups.
func (d *Directory) identity(ctx context.Context, e *goldap.Entry, user string, s searcher) (*proxy.Identity, error) {
	if err := d.ownName(e, user); err != nil {
		// A bind DN template: the bind came first; the answer is a
		// wrong password's all the same.
		return nil, err
	}
	// From here on the user is the entry's own name, never the spelling
	// typed: the directory matched the entry under its own rules, and
	// what is derived from it (the group search's {user}: memberUid is
	// caseExactIA5Match, RFC 2307 §2.2) must read the entry's name, or
	// "CAROL" would be carol with none of her groups (ARCHITECTURE.md §17).
	id := &proxy.Identity{User: e.GetAttributeValue(d.o.UserAttribute), Groups: []string{}}
	if id.User == "" {
		if strings.Contains(d.o.GroupFilter, "{user}") {
			// The groups would be searched by the typed spelling.
			return nil, fmt.Errorf("ldap: entry %s has no %s for the group filter's {user}", e.DN, d.o.UserAttribute)
		}
		id.User = user
	}
	if a := d.o.GroupAttribute; a != "" {
		for _, v := range e.GetAttributeValues(a) {
			n, err := d.groupName(v)
			if err != nil {
				return nil, err
			}
			if n != "" {
				id.Groups = append(id.Groups, n)
			}
		}
	}
	if d.o.GroupBase != "" {
		filter := strings.NewReplacer("{dn}", goldap.EscapeFilter(e.DN), "{user}", goldap.EscapeFilter(id.User)).Replace(d.o.GroupFilter)
		err := s.do(ctx, func(c *goldap.Conn) error {
			res, err := c.Search(goldap.NewSearchRequest(d.o.GroupBase, goldap.ScopeWholeSubtree, goldap.NeverDerefAliases,
				1000, int(d.o.Timeout/time.Second), false, filter, []string{d.o.GroupNameAttribute}, nil))
			if err != nil {
				return err
			}
			for _, g := range res.Entries {
				if n := g.GetAttributeValue(d.o.GroupNameAttribute); n != "" {
					id.Groups = append(id.Groups, n)
				}
			}
			return nil
		})
		if err != nil {
			// Without its groups a user might escape a group's policy:
			// no login rather than a login with too few groups.
			return nil, fmt.Errorf("ldap: group search: %w", err)
		}
	}
	if a := d.o.RouteAttribute; a != "" {
		id.Route = e.GetAttributeValue(a)
	}
	for _, a := range d.o.Attributes {
		if v := e.GetAttributeValue(a); v != "" {
			if id.Attributes == nil {
				id.Attributes = map[string]string{}
			}
			id.Attributes[a] = v
		}
	}
	return id, nil
}

// groupName is "staff" for "cn=staff,ou=groups,dc=example,dc=com" under
// GroupAttributeBase "ou=groups,dc=example,dc=com", "" for a DN outside
// it. A DN that cannot be read, or whose first RDN is not one
// GroupNameAttribute value, is an error: a group of the user's that the
// policies could not see might be the one that restricts them.
func (d *Directory) groupName(dn string) (string, error) {
	p, err := goldap.ParseDN(dn)
	if err != nil {
		return "", fmt.Errorf("ldap: %s value %q: %w", d.o.GroupAttribute, dn, err)
	}
	// Attribute types and the naming attributes of groups (cn, ou, dc)
	// compare case-insensitively (RFC 4519).
	if !d.groupAttrBase.AncestorOfFold(p) {
		return "", nil
	}
	if r := p.RDNs[0]; len(r.Attributes) != 1 || !strings.EqualFold(r.Attributes[0].Type, d.o.GroupNameAttribute) || r.Attributes[0].Value == "" {
		return "", fmt.Errorf("ldap: %s value %q: want %s=<name> as its first RDN", d.o.GroupAttribute, dn, d.o.GroupNameAttribute)
	}
	return p.RDNs[0].Attributes[0].Value, nil
}
