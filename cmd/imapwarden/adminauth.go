package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
)

// scope is what an admin token may do. A write token also reads.
type scope int

const (
	scopeNone scope = iota
	scopeRead
	scopeWrite
)

func (s scope) String() string {
	switch s {
	case scopeRead:
		return "read"
	case scopeWrite:
		return "write"
	}
	return "none"
}

func parseScope(s string) (scope, error) {
	switch s {
	case "read":
		return scopeRead, nil
	case "write":
		return scopeWrite, nil
	}
	return scopeNone, fmt.Errorf("unknown scope %q (want read or write)", s)
}

// adminToken is one configured token, kept as its SHA-256 so that every
// comparison takes the same time whatever the lengths.
type adminToken struct {
	name   string
	scope  scope
	digest [sha256.Size]byte
}

// identity is who made an admin request: the token's name and scope.
type identity struct {
	name  string
	scope scope
}

// Name and Scope are for the console's templates.
func (i identity) Name() string  { return i.name }
func (i identity) Scope() string { return i.scope.String() }

// adminTokens are the tokens of the admin listener. With none, the
// listener is loopback-only (buildAdmin insists) and every request has
// write scope as "loopback".
type adminTokens []adminToken

var loopbackIdentity = identity{name: "loopback", scope: scopeWrite}

// match returns the identity of a presented token. Every configured token
// is compared, in constant time, so that the time taken tells nothing
// about which one came close.
func (ts adminTokens) match(presented string) (identity, bool) {
	d := sha256.Sum256([]byte(presented))
	var found identity
	ok := 0
	for i := range ts {
		eq := subtle.ConstantTimeCompare(d[:], ts[i].digest[:])
		if eq == 1 {
			found = identity{name: ts[i].name, scope: ts[i].scope}
		}
		ok |= eq
	}
	return found, ok == 1
}

// bearer extracts the credentials of an "Authorization: Bearer ..."
// header. The scheme is case-insensitive (RFC 9110 §11.1) and may be
// followed by more than one space (RFC 9110 §11.4: 1*SP).
func bearer(h string) (string, bool) {
	scheme, rest, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok := strings.TrimLeft(rest, " ")
	if tok == "" || strings.ContainsAny(tok, " \t") {
		return "", false
	}
	return tok, true
}

var tokenName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// adminTokenConfig is one entry of admin.tokens.
type adminTokenConfig struct {
	// Name says who holds the token in the audit trail ("soc", "oncall").
	Name  string `yaml:"name"`
	Scope string `yaml:"scope"` // read | write
	File  string `yaml:"file"`  // holds the token, at least 16 characters
}

// buildAdminTokens reads admin.token_file (a write token named "admin")
// and admin.tokens.
func buildAdminTokens(p *problems, c adminConfig) adminTokens {
	var ts adminTokens
	add := func(key, name, sc, file string) {
		s, err := parseScope(sc)
		if err != nil {
			p.add("%s.scope: %v", key, err)
		}
		if !tokenName.MatchString(name) {
			p.add("%s.name: %q: want letters, digits, '.', '_' or '-' (at most 64)", key, name)
		}
		tok, err := readSecretFile(file)
		switch {
		case file == "":
			p.add("%s.file: required", key)
			return
		case err != nil:
			p.add("%s: %v", key, err)
			return
		case len(tok) < 16:
			p.add("%s: the token is shorter than 16 characters", key)
			return
		}
		d := sha256.Sum256([]byte(tok))
		for _, o := range ts {
			if o.name == name {
				p.add("%s.name: %q is used twice; each token needs its own name", key, name)
			}
			if o.digest == d {
				p.add("%s: the same token as %q: give each its own", key, o.name)
			}
		}
		ts = append(ts, adminToken{name: name, scope: s, digest: d})
	}
	if c.TokenFile != "" {
		add("admin.token_file", "admin", "write", c.TokenFile)
	}
	for i, t := range c.Tokens {
		add(fmt.Sprintf("admin.tokens[%d]", i), t.Name, t.Scope, t.File)
	}
	return ts
}

// authenticate tells who sent r. With no tokens configured, only requests
// addressed to a loopback host pass: a web page cannot reach the listener
// through DNS rebinding (its Host would be the attacker's name).
func (ts adminTokens) authenticate(r *http.Request) (identity, bool) {
	if len(ts) == 0 {
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		return loopbackIdentity, isLoopback(strings.Trim(host, "[]"))
	}
	tok, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		return identity{}, false
	}
	return ts.match(tok)
}

// needs is the scope a request needs: reading is GET and HEAD, anything
// else changes something. Profiles cost CPU and show the program's
// internals: they need write scope too.
func needs(r *http.Request) scope {
	if strings.HasPrefix(r.URL.Path, "/debug/") {
		return scopeWrite
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return scopeRead
	}
	return scopeWrite
}
