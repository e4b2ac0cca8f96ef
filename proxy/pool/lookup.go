package pool

import (
	"container/list"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/imapwarden/imapwarden/proxy"
)

// LookupOptions configure a Lookup.
type LookupOptions struct {
	// URL of the service (http or https), e.g. http://127.0.0.1:9000/auth.
	URL string
	// Timeout of one request, connection included; default 5 s.
	Timeout time.Duration
	// CacheTTL: how long a successful answer is reused for the same user,
	// client address (and password, when sent); default 30 s, negative
	// turns the cache off. Refusals are never cached.
	CacheTTL time.Duration
	// CacheSize bounds the cache; default 10000 answers.
	CacheSize int
	// SendPassword sends the client's password as Auth-Pass, for a
	// service that checks it. Off by default: the backend checks it. It
	// needs an https URL, or http to a loopback address: a password never
	// crosses the network in clear.
	SendPassword bool
	// MaxWait caps the Auth-Wait a service asks for; default 10 s.
	MaxWait time.Duration
	// Header is added to every request, e.g. a shared secret the service
	// checks (nginx's auth_http_header).
	Header http.Header
	// TLS is the client configuration for an https service, e.g. the
	// roots of a private CA; nil means the system roots.
	TLS *tls.Config
	// Client, when set, makes the requests (tests); its Timeout is not
	// used: Timeout is.
	Client *http.Client
}

// Lookup defaults.
const (
	DefaultLookupTimeout   = 5 * time.Second
	DefaultLookupCacheTTL  = 30 * time.Second
	DefaultLookupCacheSize = 10000
	DefaultLookupMaxWait   = 10 * time.Second
	// lookupWaitRounds bounds how often an "Auth-Status: WAIT" answer is
	// asked again.
	lookupWaitRounds = 3
	// maxLookupHeader bounds the answer's headers; its body is ignored.
	maxLookupHeader = 16 << 10
)

// Lookup asks an HTTP service where a user's mailbox is, with nginx's mail
// auth_http protocol, so that services written for nginx (nauthilus,
// home-grown ones) work unchanged. The request is a GET with the login in
// headers: Auth-Method, Auth-User, Auth-Pass (only with SendPassword),
// Auth-Protocol (imap), Auth-Login-Attempt, Client-IP, Client-Host (always
// "[UNAVAILABLE]": the proxy does not resolve names), and, over TLS,
// Auth-SSL, Auth-SSL-Verify and Auth-SSL-Subject. User and password are
// escaped as nginx does (space, "%", control and non-ASCII bytes as %XX).
// The answer is in the headers, whatever the HTTP status, as with nginx:
//
//	Auth-Status: OK           Auth-Server and Auth-Port name the server
//	Auth-Status: WAIT         ask again after Auth-Wait seconds
//	Auth-Status: <any text>   refused; Auth-Wait seconds before answering
//
// Auth-Server may be an address (nginx), a host name, a configured
// backend's name or a server's name, with or without Auth-Port; it must
// name a configured backend or server (Set.Resolve). Auth-Status OK with
// no Auth-Server leaves the choice to the configured routes. Auth-User and
// Auth-Pass in an answer are ignored: the proxy logs in to the backend
// with the client's own credentials.
type Lookup struct {
	o      LookupOptions
	url    string
	client *http.Client
	key    [32]byte // keys the cache's hashes of passwords

	mu    sync.Mutex
	cache map[string]*list.Element
	order *list.List // of *cacheEntry, oldest first
}

type cacheEntry struct {
	key string
	a   answer
	exp time.Time
}

// answer is what the service said.
type answer struct {
	ok     bool
	server string        // "host:port", a name, or "" (OK without a server)
	status string        // Auth-Status as sent, for the log and audit
	wait   time.Duration // Auth-Wait, capped
}

// loopbackHost: "localhost" or a loopback address, where http does not
// leave the host.
func loopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// ErrLookup wraps every failure to get a usable answer from the service:
// the login then gets NO [UNAVAILABLE] (fail closed).
var ErrLookup = errors.New("route lookup failed")

// NewLookup checks o and returns a Lookup.
func NewLookup(o LookupOptions) (*Lookup, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("lookup: url %q: want http:// or https:// with a host", o.URL)
	}
	if o.SendPassword && u.Scheme == "http" && !loopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("lookup: send_password over http would send every password in clear to %s: use https (http only to a loopback address)", u.Host)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultLookupTimeout
	}
	if o.CacheTTL == 0 {
		o.CacheTTL = DefaultLookupCacheTTL
	}
	if o.CacheSize <= 0 {
		o.CacheSize = DefaultLookupCacheSize
	}
	if o.MaxWait <= 0 {
		o.MaxWait = DefaultLookupMaxWait
	}
	l := &Lookup{o: o, url: o.URL, client: o.Client, cache: map[string]*list.Element{}, order: list.New()}
	if l.client == nil {
		l.client = &http.Client{
			Transport: &http.Transport{
				Proxy:                  nil, // a lookup never goes through HTTP_PROXY
				MaxIdleConnsPerHost:    32,
				IdleConnTimeout:        90 * time.Second,
				MaxResponseHeaderBytes: maxLookupHeader,
				DialContext:            (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext,
				TLSClientConfig:        o.TLS,
			},
			// A redirect would send the credentials elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if _, err := rand.Read(l.key[:]); err != nil {
		return nil, fmt.Errorf("lookup: %w", err)
	}
	return l, nil
}

// ask returns the service's answer for a login, from the cache when a
// fresh OK is there. Errors wrap ErrLookup.
func (l *Lookup) ask(ctx context.Context, s *proxy.SessionInfo, user, pass string) (answer, error) {
	h := l.header(s, user, pass)
	key := l.cacheKey(h)
	if a, ok := l.cached(key); ok {
		return a, nil
	}
	for round := 0; ; round++ {
		a, err := l.request(ctx, h)
		if err != nil {
			return a, fmt.Errorf("%w: %v", ErrLookup, err)
		}
		if a.status != "WAIT" {
			if a.ok {
				l.store(key, a)
			}
			return a, nil
		}
		if round+1 >= lookupWaitRounds {
			return a, fmt.Errorf("%w: still WAIT after %d rounds", ErrLookup, lookupWaitRounds)
		}
		if err := sleep(ctx, a.wait); err != nil {
			return a, fmt.Errorf("%w: %v", ErrLookup, err)
		}
	}
}

func (l *Lookup) request(ctx context.Context, h http.Header) (answer, error) {
	ctx, cancel := context.WithTimeout(ctx, l.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.url, nil)
	if err != nil {
		return answer{}, err
	}
	req.Header = h
	resp, err := l.client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	// The body is ignored (nginx); read a little so that the connection
	// can be reused.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	return l.parse(resp.Header)
}

// header is what the service is told of a login: all it may judge.
func (l *Lookup) header(s *proxy.SessionInfo, user, pass string) http.Header {
	h := http.Header{}
	for k, vs := range l.o.Header {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	method := "plain"
	switch m := strings.ToLower(s.Mechanism); m {
	case "", "login", "plain":
	default:
		method = m // external, and mechanisms nginx does not know
	}
	h.Set("Auth-Method", method)
	h.Set("Auth-User", escapeMailAuth(user))
	if l.o.SendPassword {
		h.Set("Auth-Pass", escapeMailAuth(pass))
	}
	h.Set("Auth-Protocol", "imap")
	h.Set("Auth-Login-Attempt", strconv.Itoa(s.AuthFailures+1))
	if s.ClientAddr.IsValid() {
		h.Set("Client-IP", s.ClientAddr.Addr().Unmap().String())
	}
	h.Set("Client-Host", "[UNAVAILABLE]")
	if t := s.TLS; t != nil {
		h.Set("Auth-SSL", "on")
		switch {
		case t.ClientCertVerified:
			h.Set("Auth-SSL-Verify", "SUCCESS")
		case t.ClientCertSubject != "":
			h.Set("Auth-SSL-Verify", "FAILED")
		default:
			h.Set("Auth-SSL-Verify", "NONE")
		}
		if t.ClientCertSubject != "" {
			h.Set("Auth-SSL-Subject", escapeMailAuth(t.ClientCertSubject))
		}
	}
	return h
}

// parse reads an answer's headers.
func (l *Lookup) parse(h http.Header) (answer, error) {
	status := strings.TrimSpace(h.Get("Auth-Status"))
	if status == "" {
		return answer{}, errors.New("answer without Auth-Status")
	}
	a := answer{status: status, ok: status == "OK"}
	if w := strings.TrimSpace(h.Get("Auth-Wait")); w != "" {
		// nginx ignores a wait it cannot read; so do we.
		if n, err := strconv.Atoi(w); err == nil && n > 0 {
			a.wait = min(time.Duration(n)*time.Second, l.o.MaxWait)
		}
	}
	if !a.ok {
		return a, nil
	}
	srv := strings.TrimSpace(h.Get("Auth-Server"))
	port := strings.TrimSpace(h.Get("Auth-Port"))
	switch {
	case srv == "" && port != "":
		return a, fmt.Errorf("Auth-Port %q without Auth-Server", port)
	case srv == "":
	case port == "":
		a.server = srv
	default:
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return a, fmt.Errorf("invalid Auth-Port %q", port)
		}
		a.server = net.JoinHostPort(strings.Trim(srv, "[]"), port)
	}
	return a, nil
}

// escapeMailAuth escapes as nginx's NGX_ESCAPE_MAIL_AUTH does: control
// bytes, space, "%" and bytes from 0x7f up become %XX.
func escapeMailAuth(s string) string {
	const hex = "0123456789ABCDEF"
	n := 0
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == '%' || c >= 0x7f {
			n++
		}
	}
	if n == 0 {
		return s
	}
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == '%' || c >= 0x7f {
			b = append(b, '%', hex[c>>4], hex[c&15])
			continue
		}
		b = append(b, c)
	}
	return string(b)
}

// cacheKey identifies a login for the cache by everything the service
// was told of it (header: the method, user, address, the client
// certificate's verification and subject, the attempt, the password when
// sent), under a keyed hash (the password itself is never kept): an
// answer is reused only for a login the service would have judged alike,
// never an OK of a certificate login for one without a certificate.
func (l *Lookup) cacheKey(h http.Header) string {
	if l.o.CacheTTL < 0 {
		return ""
	}
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	slices.Sort(names)
	m := hmac.New(sha256.New, l.key[:])
	for _, k := range names {
		for _, v := range h[k] {
			// Lengths first: no two headers write the same bytes.
			var n [16]byte
			binary.BigEndian.PutUint64(n[:8], uint64(len(k)))
			binary.BigEndian.PutUint64(n[8:], uint64(len(v)))
			m.Write(n[:])
			m.Write([]byte(k))
			m.Write([]byte(v))
		}
	}
	return string(m.Sum(nil))
}

func (l *Lookup) cached(key string) (answer, bool) {
	if key == "" {
		return answer{}, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.cache[key]
	if !ok {
		return answer{}, false
	}
	e := el.Value.(*cacheEntry)
	if time.Now().After(e.exp) {
		l.order.Remove(el)
		delete(l.cache, key)
		return answer{}, false
	}
	return e.a, true
}

func (l *Lookup) store(key string, a answer) {
	if key == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.cache[key]; ok {
		l.order.Remove(el)
		delete(l.cache, key)
	}
	for l.order.Len() >= l.o.CacheSize {
		oldest := l.order.Front()
		l.order.Remove(oldest)
		delete(l.cache, oldest.Value.(*cacheEntry).key)
	}
	l.cache[key] = l.order.PushBack(&cacheEntry{key: key, a: a, exp: time.Now().Add(l.o.CacheTTL)})
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
