package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// quickFlags are serve's flags for running without a config file.
type quickFlags struct {
	imaps, starttls string
	backend         string
	cert, key       string
	sendID          bool
	hostname        string
	admin           optionalString
}

// optionalString is a string flag that knows whether it was given, so
// that --admin "" (off) differs from no --admin (the default).
type optionalString struct {
	set bool
	v   string
}

func (o *optionalString) String() string { return o.v }
func (o *optionalString) Set(s string) error {
	o.set, o.v = true, s
	return nil
}

// any reports whether any quick-mode flag was given.
func (q *quickFlags) any() bool {
	return q.imaps != "" || q.starttls != "" || q.backend != "" || q.cert != "" || q.key != "" || q.sendID || q.hostname != "" || q.admin.set
}

// config turns the flags into the same structure a config file gives, so
// that both paths share every check.
func (q *quickFlags) config() (*fileConfig, error) {
	var errs []error
	if q.imaps == "" && q.starttls == "" {
		errs = append(errs, errors.New("--imaps ADDR or --starttls ADDR (or both) is required"))
	}
	if q.backend == "" {
		errs = append(errs, errors.New("--backend URL is required"))
	}
	if q.cert == "" || q.key == "" {
		errs = append(errs, errors.New("--cert FILE and --key FILE are required"))
	}
	cfg := &fileConfig{
		Hostname: q.hostname,
		Log:      logConfig{Format: "console"},
		TLS:      tlsConfig{Certificates: []certConfig{{Cert: q.cert, Key: q.key}}},
		Routes:   routesConfig{Default: "backend"},
	}
	if q.admin.set {
		// Quick mode has no token: the admin listener stays on loopback
		// (build refuses another address without admin.token_file).
		a := q.admin.v
		if h, p, err := net.SplitHostPort(a); err == nil && h == "" {
			a = net.JoinHostPort("127.0.0.1", p)
		}
		cfg.Admin.Address = &a
	}
	if q.imaps != "" {
		cfg.Listeners = append(cfg.Listeners, listenerConfig{Name: "imaps", Address: q.imaps, Mode: "tls"})
	}
	if q.starttls != "" {
		cfg.Listeners = append(cfg.Listeners, listenerConfig{Name: "imap", Address: q.starttls, Mode: "starttls"})
	}
	if q.backend != "" {
		b, err := parseBackendURL(q.backend)
		if err != nil {
			errs = append(errs, fmt.Errorf("--backend: %w", err))
		} else {
			b.SendID = q.sendID
			cfg.Backends = map[string]*backendConfig{"backend": b}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return cfg, nil
}

// backendSchemes maps a --backend URL scheme to a backend security.
var backendSchemes = map[string]string{
	"imap":          "plain",
	"imap+starttls": "starttls",
	"imaps":         "tls",
}

// parseBackendURL reads imap://host:port, imap+starttls://host:port or
// imaps://host:port, with the query parameters insecure=1, ca=FILE and
// server_name=NAME for the TLS ones.
func parseBackendURL(s string) (*backendConfig, error) {
	const want = "want imap://, imap+starttls:// or imaps:// and host:port"
	if !strings.Contains(s, "://") {
		return nil, fmt.Errorf("%q is not a backend URL: %s", s, want)
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("invalid URL %q: %w", s, err)
	}
	sec, ok := backendSchemes[strings.ToLower(u.Scheme)]
	if !ok {
		return nil, fmt.Errorf("%q: unknown scheme %q: %s", s, u.Scheme, want)
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, fmt.Errorf("%q: want %s://host:port", s, u.Scheme)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%q: credentials do not belong in the backend URL: the proxy logs in with each client's own", redactURL(u))
	}
	if u.Port() == "" {
		return nil, fmt.Errorf("%q: the port is missing, as in %s://%s:%s", s, u.Scheme, u.Hostname(), map[string]string{"plain": "143", "starttls": "143", "tls": "993"}[sec])
	}
	if (u.Path != "" && u.Path != "/") || u.Fragment != "" {
		return nil, fmt.Errorf("%q: a backend URL has no path or fragment", s)
	}
	if err := checkHostPort(u.Host, false); err != nil {
		return nil, fmt.Errorf("%q: %w", s, err)
	}
	b := &backendConfig{Address: u.Host, Security: sec}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("%q: invalid query: %w", s, err)
	}
	for _, k := range sortedKeys(q) {
		v := q[k]
		if len(v) != 1 {
			return nil, fmt.Errorf("%q: %s given %d times", s, k, len(v))
		}
		if sec == "plain" {
			return nil, fmt.Errorf("%q: %s applies to TLS only; use imap+starttls:// or imaps://", s, k)
		}
		if b.TLS == nil {
			b.TLS = &backendTLSConfig{}
		}
		switch k {
		case "insecure":
			switch v[0] {
			case "1", "true", "yes":
				b.TLS.Insecure = true
			case "0", "false", "no":
			default:
				return nil, fmt.Errorf("%q: insecure=%s: want 1 or 0", s, v[0])
			}
		case "ca":
			b.TLS.CAFile = v[0]
		case "server_name":
			b.TLS.ServerName = v[0]
		default:
			return nil, fmt.Errorf("%q: unknown parameter %q (want insecure, ca or server_name)", s, k)
		}
	}
	return b, nil
}

func redactURL(u *url.URL) string {
	c := *u
	c.User = url.User("REDACTED")
	return c.String()
}
