package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/imapwarden/imapwarden/internal/filemode"
	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/proxy/authn"
	"github.com/imapwarden/imapwarden/proxy/authn/ldap"
	"github.com/imapwarden/imapwarden/proxy/authn/oauth2"
)

// authenticatorConfig is one entry of auth.authenticators: a name, a
// type, and the section of that type.
type authenticatorConfig struct {
	Name   string            `yaml:"name"`
	Type   string            `yaml:"type"` // backend | file | ldap | oauth2
	File   *fileAuthConfig   `yaml:"file"`
	LDAP   *ldapAuthConfig   `yaml:"ldap"`
	OAuth2 *oauth2AuthConfig `yaml:"oauth2"`
}

type fileAuthConfig struct {
	Path          string `yaml:"path"`
	MaxConcurrent int    `yaml:"max_concurrent"` // default: the CPUs
}

type ldapAuthConfig struct {
	URL                 string    `yaml:"url"`
	StartTLS            bool      `yaml:"start_tls"`
	CAFile              string    `yaml:"ca_file"`
	ServerName          string    `yaml:"server_name"`
	BindDN              string    `yaml:"bind_dn"`
	SearchBase          string    `yaml:"search_base"`
	SearchFilter        string    `yaml:"search_filter"`
	ServiceDN           string    `yaml:"service_dn"`
	ServicePasswordFile string    `yaml:"service_password_file"`
	UserAttribute       string    `yaml:"user_attribute"`
	GroupAttribute      string    `yaml:"group_attribute"`
	GroupAttributeBase  string    `yaml:"group_attribute_base"`
	GroupBase           string    `yaml:"group_base"`
	GroupFilter         string    `yaml:"group_filter"`
	GroupNameAttribute  string    `yaml:"group_name_attribute"`
	RouteAttribute      string    `yaml:"route_attribute"`
	Attributes          []string  `yaml:"attributes"`
	PoolSize            int       `yaml:"pool_size"`
	Timeout             *duration `yaml:"timeout"`
}

type oauth2AuthConfig struct {
	Issuer           string `yaml:"issuer"`
	Audience         string `yaml:"audience"`
	JWKSURL          string `yaml:"jwks_url"`
	Introspection    bool   `yaml:"introspection"`
	IntrospectionURL string `yaml:"introspection_url"`
	ClientID         string `yaml:"client_id"`
	ClientSecretFile string `yaml:"client_secret_file"`
	UserClaim        string `yaml:"user_claim"`
	// AllowUnverifiedEmail: with user_claim email, take the email without
	// email_verified true (an issuer that assigns every address).
	AllowUnverifiedEmail bool      `yaml:"allow_unverified_email"`
	GroupsClaim          string    `yaml:"groups_claim"`
	Scope                string    `yaml:"scope"`
	Algorithms           []string  `yaml:"algorithms"`
	Leeway               *duration `yaml:"leeway"`
	JWKSCacheTTL         *duration `yaml:"jwks_cache_ttl"`
	JWKSMinRefresh       *duration `yaml:"jwks_min_refresh"`
	Timeout              *duration `yaml:"timeout"`
	MaxTokenSize         *byteSize `yaml:"max_token_size"`
	CAFile               string    `yaml:"ca_file"`
}

// verifiers says who may vouch for a user that a master-user backend
// takes on the proxy's word.
type verifiers struct {
	cert   bool // a listener offers certificate logins (EXTERNAL)
	proxy  bool // an authenticator other than backend checks passwords or tokens
	tokens bool // an oauth2 authenticator takes bearer tokens
}

func verifiersOf(cfg *fileConfig) verifiers {
	v := verifiers{cert: certLogin(cfg.Listeners)}
	for _, a := range cfg.Auth.Authenticators {
		switch a.Type {
		case "file", "ldap":
			v.proxy = true
		case "oauth2":
			v.proxy, v.tokens = true, true
		}
	}
	return v
}

// authCloser ends what authenticators hold open (LDAP connections, HTTP
// keep-alives).
type authCloser []func()

func (c authCloser) close() {
	for _, f := range c {
		f()
	}
}

// buildAuthenticators makes the chain of auth.authenticators; nil without
// any (the backend checks the credentials, as by default). files are its
// users files, which re-read themselves (setup.watchUsersFiles).
func buildAuthenticators(p *problems, cs []authenticatorConfig, warn func(key, format string, args ...any)) (_ proxy.Authenticator, _ authCloser, files []*authn.File) {
	if len(cs) == 0 {
		return nil, nil, nil
	}
	var list []authn.Named
	var closers authCloser
	names := map[string]int{}
	for i, c := range cs {
		key := fmt.Sprintf("auth.authenticators[%d]", i)
		if c.Name == "" {
			c.Name = c.Type // one of a kind needs no name
		}
		if c.Name == "" {
			p.add("%s.name: required", key)
			continue
		}
		if j, dup := names[c.Name]; dup {
			p.add("%s.name: %q is also the name of auth.authenticators[%d]", key, c.Name, j)
			continue
		}
		names[c.Name] = i
		sections := map[string]bool{"file": c.File != nil, "ldap": c.LDAP != nil, "oauth2": c.OAuth2 != nil}
		for s, set := range sections {
			if set && s != c.Type {
				p.add("%s.%s: set, but type is %q", key, s, c.Type)
			}
		}
		var v authn.Verifier
		switch c.Type {
		case "backend":
			if i != len(cs)-1 {
				p.add("%s.type: backend hands the password to the backend's login, so it must be the last authenticator", key)
			}
		case "file":
			if c.File == nil || c.File.Path == "" {
				p.add("%s.file.path: required", key)
				continue
			}
			f, err := authn.NewFile(authn.FileOptions{Path: c.File.Path, MaxConcurrent: c.File.MaxConcurrent})
			if err != nil {
				p.add("%s.file.path: %v", key, err)
				continue
			}
			v = f
			files = append(files, f)
		case "ldap":
			d := buildLDAP(p, key+".ldap", c.LDAP, warn)
			if d == nil {
				continue
			}
			v = d
			closers = append(closers, d.Close)
		case "oauth2":
			o := buildOAuth2(p, key+".oauth2", c.OAuth2, warn)
			if o == nil {
				continue
			}
			v = o
			closers = append(closers, o.Close)
		case "":
			p.add("%s.type: required (backend, file, ldap or oauth2)", key)
			continue
		default:
			p.add("%s.type: unknown type %q (want backend, file, ldap or oauth2)", key, c.Type)
			continue
		}
		list = append(list, authn.Named{Name: c.Name, Verifier: v})
	}
	if len(list) != len(cs) {
		closers.close()
		return nil, nil, nil
	}
	ch, err := authn.NewChain(list)
	if err != nil {
		p.add("auth.authenticators: %v", err)
		closers.close()
		return nil, nil, nil
	}
	return ch, closers, files
}

// caPool reads a PEM bundle of trusted roots.
func caPool(path string) (*x509.CertPool, error) {
	// A bundle decides whom the proxy trusts (a directory, an identity
	// provider, a hook): refused when other users may change it.
	if err := filemode.Trusted(path); err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

func buildLDAP(p *problems, key string, c *ldapAuthConfig, warn func(key, format string, args ...any)) *ldap.Directory {
	if c == nil || c.URL == "" {
		p.add("%s.url: required, such as ldaps://ldap.example.com", key)
		return nil
	}
	o := ldap.Options{
		URL: c.URL, StartTLS: c.StartTLS, BindDN: c.BindDN, SearchBase: c.SearchBase, SearchFilter: c.SearchFilter,
		ServiceDN: c.ServiceDN, UserAttribute: c.UserAttribute, GroupAttribute: c.GroupAttribute,
		GroupAttributeBase: c.GroupAttributeBase, GroupBase: c.GroupBase, GroupFilter: c.GroupFilter, GroupNameAttribute: c.GroupNameAttribute,
		RouteAttribute: c.RouteAttribute, Attributes: c.Attributes, PoolSize: c.PoolSize,
		Timeout: c.Timeout.get(ldap.DefaultTimeout),
	}
	if o.Timeout <= 0 {
		p.add("%s.timeout: must be positive", key)
		return nil
	}
	if c.ServicePasswordFile != "" {
		pw, err := readSecretFile(c.ServicePasswordFile)
		if err != nil {
			p.add("%s.service_password_file: %v", key, err)
			return nil
		}
		o.ServicePassword = pw
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CAFile != "" {
		pool, err := caPool(c.CAFile)
		if err != nil {
			p.add("%s.ca_file: %v", key, err)
			return nil
		}
		tc.RootCAs = pool
	}
	o.TLS = tc
	if u, err := url.Parse(c.URL); err == nil && u.Scheme == "ldap" && !c.StartTLS {
		// A directory on the same host may be reached in clear; anywhere
		// else passwords would cross the network.
		if isLoopback(u.Hostname()) {
			o.AllowPlaintext = true
			warn(key+".url", "ldap:// without start_tls: passwords go to %s unencrypted", u.Host)
		} else {
			p.add("%s.start_tls: ldap:// to %s without start_tls would send passwords in clear; set start_tls: true or use ldaps://", key, u.Host)
			return nil
		}
	}
	d, err := ldap.New(o)
	if err != nil {
		p.add("%s: %v", key, strings.TrimPrefix(err.Error(), "ldap: "))
		return nil
	}
	return d
}

func buildOAuth2(p *problems, key string, c *oauth2AuthConfig, warn func(key, format string, args ...any)) *oauth2.Verifier {
	if c == nil || c.Issuer == "" {
		p.add("%s.issuer: required, the exact \"iss\" of the tokens, such as https://sso.example.com/", key)
		return nil
	}
	switch {
	case c.AllowUnverifiedEmail && c.UserClaim == "email":
		warn(key+".allow_unverified_email", "a token's email names the user whether or not the issuer verified it: safe only if users cannot set their own address")
	case c.AllowUnverifiedEmail:
		p.add("%s.allow_unverified_email: only for user_claim email", key)
		return nil
	case c.UserClaim == "preferred_username":
		warn(key+".user_claim", "preferred_username is what the user chose and need not be unique (OpenID Connect Core 1.0 §5.1): safe only if users cannot set it")
	}
	o := oauth2.Options{
		Issuer: c.Issuer, Audience: c.Audience, JWKSURL: c.JWKSURL, Introspection: c.Introspection,
		IntrospectionURL: c.IntrospectionURL, ClientID: c.ClientID, UserClaim: c.UserClaim, GroupsClaim: c.GroupsClaim,
		AllowUnverifiedEmail: c.AllowUnverifiedEmail,
		Scope:                c.Scope, Algorithms: c.Algorithms, Leeway: c.Leeway.get(0), JWKSCacheTTL: c.JWKSCacheTTL.get(0),
		MinRefresh: c.JWKSMinRefresh.get(0), Timeout: c.Timeout.get(0),
	}
	if c.MaxTokenSize != nil {
		if *c.MaxTokenSize <= 0 || *c.MaxTokenSize > 1<<20 {
			p.add("%s.max_token_size: want 1 to 1MiB, got %d", key, *c.MaxTokenSize)
			return nil
		}
		o.MaxTokenSize = int(*c.MaxTokenSize)
	}
	if c.ClientSecretFile != "" {
		s, err := readSecretFile(c.ClientSecretFile)
		if err != nil {
			p.add("%s.client_secret_file: %v", key, err)
			return nil
		}
		o.ClientSecret = s
	}
	if c.CAFile != "" {
		pool, err := caPool(c.CAFile)
		if err != nil {
			p.add("%s.ca_file: %v", key, err)
			return nil
		}
		o.TLS = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	}
	v, err := oauth2.New(o)
	if err != nil {
		p.add("%s: %v", key, strings.TrimPrefix(err.Error(), "oauth2: "))
		return nil
	}
	return v
}

const hashPasswordUsage = `Usage: imapwarden hash-password < password

Reads one password (its first line) from standard input and prints its
Argon2id hash (19 MiB, 2 passes), for a line "user:HASH[:groups]" of a file
authenticator (auth.authenticators, type file). The password is never echoed.
`

// stdin is what hash-password reads (tests replace it).
var stdin io.Reader = os.Stdin

func cmdHashPassword(_ context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprint(stderr, hashPasswordUsage)
		return exitUsage
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
	if err != nil && err != io.EOF {
		fmt.Fprintf(stderr, "imapwarden hash-password: %v\n", err)
		return exitError
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		fmt.Fprintln(stderr, "imapwarden hash-password: no password on standard input")
		return exitUsage
	}
	h, err := authn.HashPassword(pw)
	if err != nil {
		fmt.Fprintf(stderr, "imapwarden hash-password: %v\n", err)
		return exitError
	}
	fmt.Fprintln(stdout, h)
	return exitOK
}
