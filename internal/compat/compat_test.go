package compat

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/imapwarden/imapwarden/internal/couriertest"
	"github.com/imapwarden/imapwarden/internal/cyrustest"
	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/tlsterm"
)

// docFile is the generated table, relative to this package.
const docFile = "../../docs/compatibility.md"

var (
	backends = []string{"dovecot", "cyrus", "courier"}
	clients  = []string{"curl", "imaplib", "mbsync", "goimap"}
	modes    = []string{"imaps", "starttls"}
)

// bigID is the Message-ID of the 1 MB message delivered to alice's INBOX.
const bigID = "<big-compat@example.com>"

// env is one backend behind one proxy, shared by that backend's cells.
type env struct {
	name     string
	imaps    string // proxy, implicit TLS
	starttls string // proxy, STARTTLS
	certFile string // the proxy's self-signed certificate (PEM), for clients
	pool     *x509.CertPool
	prefix   string // personal namespace prefix: "" or "INBOX."
	// direct is the backend's own implicit-TLS address and its CA, to see
	// what the backend advertises without the proxy.
	direct     string
	directPool *x509.CertPool
	deliver    func(t testing.TB, msg []byte) // to alice's INBOX, not through the proxy
	big        []byte
	bigUID     string
}

// addr is the proxy's address for mode.
func (e *env) addr(mode string) string {
	if mode == "imaps" {
		return e.imaps
	}
	return e.starttls
}

// mailbox is name in alice's personal namespace.
func (e *env) mailbox(name string) string { return e.prefix + name }

func ci() bool { return testenv.CI() }

// startEnv starts backend name, delivers the 1 MB message and puts a proxy
// in front of it.
func startEnv(t *testing.T, name string) *env {
	e := &env{name: name, big: bigMessage(1<<20, bigID)}
	var addr, caFile string
	switch name {
	case "dovecot":
		dovecottest.Require(t)
		s := dovecottest.Start(t, dovecottest.Options{})
		addr, caFile, e.direct = s.Addr, s.CAFile, s.TLSAddr
		e.deliver = func(t testing.TB, m []byte) { s.Deliver(t, "alice", "INBOX", m) }
	case "cyrus":
		cyrustest.Require(t)
		s := cyrustest.Start(t, cyrustest.Options{})
		addr, caFile, e.direct, e.prefix = s.Addr, s.CAFile, s.TLSAddr, "INBOX."
		e.deliver = func(t testing.TB, m []byte) { s.Deliver(t, "alice", "INBOX", m) }
	case "courier":
		couriertest.Require(t)
		s := couriertest.Start(t, couriertest.Options{})
		addr, caFile, e.direct, e.prefix = s.Addr, s.CAFile, s.TLSAddr, "INBOX."
		e.deliver = func(t testing.TB, m []byte) { s.Deliver(t, "alice", "INBOX", m) }
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	e.directPool = x509.NewCertPool()
	if !e.directPool.AppendCertsFromPEM(ca) {
		t.Fatal("no CA in", caFile)
	}
	e.deliver(t, e.big)

	certPEM, keyPEM, err := tlsterm.SelfSigned([]string{"localhost", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	e.certFile = filepath.Join(t.TempDir(), "proxy.pem")
	if err := os.WriteFile(e.certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	e.pool = x509.NewCertPool()
	e.pool.AppendCertsFromPEM(certPEM)
	serverTLS := func() *tls.Config {
		return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	srv, err := proxy.NewServer(proxy.Options{
		Listeners: []proxy.ListenerOptions{
			{Name: "imaps", Addr: "127.0.0.1:0", Mode: proxy.ImplicitTLS, TLS: serverTLS()},
			{Name: "imap", Addr: "127.0.0.1:0", Mode: proxy.StartTLS, TLS: serverTLS()},
		},
		Router: &proxy.StaticRouter{Default: &proxy.Backend{Name: name, Addr: addr, Security: proxy.BackendStartTLS,
			TLS: &tls.Config{RootCAs: e.directPool, ServerName: "localhost"}}},
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(); srv.Wait() })
	a := srv.Addrs()
	e.imaps, e.starttls = a[0].String(), a[1].String()

	c := dialRaw(t, e, "imaps")
	c.ok("SELECT INBOX")
	e.bigUID = c.searchUID("HEADER Message-ID " + quote(bigID))
	c.logout()
	return e
}

// bigMessage is a deterministic-layout message of about n bytes with
// Message-ID id and random base64 content.
func bigMessage(n int, id string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: bob@example.com\r\nTo: alice@example.com\r\nSubject: big\r\nMessage-ID: %s\r\nContent-Type: text/plain\r\n\r\n", id)
	raw := make([]byte, n*3/4)
	rand.Read(raw)
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return b.Bytes()
}

// smallMessage is a short message with a unique subject.
func smallMessage(subject string) []byte {
	return []byte(fmt.Sprintf("From: bob@example.com\r\nTo: alice@example.com\r\nSubject: %s\r\nMessage-ID: <%s@example.com>\r\n\r\nHello from %s.\r\n", subject, subject, subject))
}

var uniq struct {
	sync.Mutex
	n int
}

// unique returns a fresh token for subjects and mailbox names.
func unique(prefix string) string {
	uniq.Lock()
	defer uniq.Unlock()
	uniq.n++
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano()%1e6, uniq.n)
}

func sum(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }

// Outcomes of a cell.
const (
	pass = "pass"
	fail = "fail"
	na   = "n/a"
	skip = "skip"
)

// results are the outcomes of every cell run, keyed "backend client mode"
// or "backend ext NAME", with a note for failures, skips and n/a.
type results struct {
	// prev are the outcomes in docs/compatibility.md; a cell not "pass"
	// there fails softly (it is skipped with its error) unless updating.
	prev   map[string]string
	update bool

	mu    sync.Mutex
	out   map[string]string
	notes map[string]string
}

func (r *results) set(key, outcome, note string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.out[key] = outcome
	if note != "" {
		r.notes[key] = note
	}
}

// cellT is a cell's test: it remembers the first failure message and why
// the cell was skipped, for the table's notes.
type cellT struct {
	*testing.T
	// known is the cell's non-pass outcome in docs/compatibility.md: its
	// failures are recorded and end the cell as skipped, not failed.
	known string

	mu      sync.Mutex
	note    string
	outcome string // set by notApplicable / skipf / a known failure before skipping
	soft    bool   // an Errorf under known
}

func (c *cellT) remember(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.note == "" {
		if len(s) > 300 {
			s = s[:300] + "…"
		}
		c.note = s
	}
}

func (c *cellT) Errorf(format string, args ...any) {
	c.T.Helper()
	msg := fmt.Sprintf(format, args...)
	c.remember(msg)
	if c.known != "" {
		c.soft = true
		c.T.Logf("known failure (%s in %s): %s", c.known, docFile, msg)
		return
	}
	c.T.Error(msg)
}

func (c *cellT) Fatalf(format string, args ...any) {
	c.T.Helper()
	msg := fmt.Sprintf(format, args...)
	c.remember(msg)
	if c.known != "" {
		c.T.Logf("known failure (%s in %s): %s", c.known, docFile, msg)
		c.end(fail)
	}
	c.T.Fatal(msg)
}

// cellDone ends a cell early with its outcome recorded (see end).
type cellDone struct{}

// end stops the cell with outcome. It is not a skip: the cell passes when
// the outcome is the one docs/compatibility.md records, and fails when it
// changed (cell), so that CI checks n/a and known-failure cells too.
func (c *cellT) end(outcome string) {
	c.outcome = outcome
	panic(cellDone{})
}

func (c *cellT) Fatal(args ...any) {
	c.T.Helper()
	c.Fatalf("%s", strings.TrimSuffix(fmt.Sprintln(args...), "\n"))
}

func (c *cellT) Error(args ...any) {
	c.T.Helper()
	c.Errorf("%s", strings.TrimSuffix(fmt.Sprintln(args...), "\n"))
}

// notApplicable ends the cell as n/a.
func (c *cellT) notApplicable(format string, args ...any) {
	c.T.Helper()
	c.note = fmt.Sprintf(format, args...)
	c.T.Log("n/a: " + c.note)
	c.end(na)
}

// skipf ends the cell as skipped (never under CI=true, where it fails).
func (c *cellT) skipf(format string, args ...any) {
	c.T.Helper()
	msg := fmt.Sprintf(format, args...)
	if ci() {
		c.Fatalf("CI=true: %s", msg)
	}
	c.outcome = skip
	c.note = msg
	c.T.Skip(msg)
}

// cell runs f as subtest name and records its outcome under key.
func cell(t *testing.T, res *results, name, key string, f func(c *cellT)) {
	t.Run(name, func(t *testing.T) {
		c := &cellT{T: t}
		if was, ok := res.prev[key]; ok && was != pass && !res.update {
			c.known = was
		}
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(cellDone); !ok {
					panic(r)
				}
			}
			now := pass
			switch {
			case t.Failed() || c.soft:
				now = fail
			case c.outcome != "":
				now = c.outcome
			case t.Skipped():
				now = skip
			}
			note := c.note
			if now == pass {
				note = ""
			}
			res.set(key, now, note)
			// Any change fails the cell, improvements too (regenerate
			// the table); a skip is a missing tool outside CI only.
			if was, ok := res.prev[key]; !res.update && now != skip && res.prev != nil {
				switch {
				case !ok:
					t.Errorf("%s: %s, and not in %s: regenerate it with UPDATE_COMPAT=1", key, now, docFile)
				case was != now:
					t.Errorf("%s changed: %s in %s, now %s: %s", key, was, docFile, now, note)
				}
			}
		}()
		f(c)
	})
}

// needTool returns the path of a client program, skipping the cell (failing
// it under CI=true) when it is missing.
func needTool(c *cellT, name, pkg string) string {
	p, err := testenv.LookTool(name)
	if err != nil {
		c.skipf("%s not installed (Debian package %s)", name, pkg)
	}
	return p
}

func TestCompatibility(t *testing.T) {
	res := &results{out: map[string]string{}, notes: map[string]string{}, update: os.Getenv("UPDATE_COMPAT") != ""}
	if !res.update {
		old, err := os.ReadFile(docFile)
		if err != nil {
			t.Fatalf("%v (generate it with UPDATE_COMPAT=1)", err)
		}
		res.prev = parseResults(old)
	}
	t.Run("backends", func(t *testing.T) {
		for _, b := range backends {
			t.Run(b, func(t *testing.T) {
				t.Parallel()
				e := startEnv(t, b)
				for _, cl := range clients {
					for _, m := range modes {
						cell(t, res, cl+"/"+m, b+" "+cl+" "+m, func(c *cellT) { runClient(c, e, cl, m) })
					}
				}
				runExtensions(t, res, e)
			})
		}
	})
	if res.update {
		if want := len(backends) * (len(clients)*len(modes) + len(extensions)); len(res.out) != want {
			t.Fatalf("%d of %d cells ran (a -run filter?); not writing %s", len(res.out), want, docFile)
		}
		if err := os.MkdirAll(filepath.Dir(docFile), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(docFile, []byte(render(res, time.Now())), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", docFile)
		return
	}
	prev := res.prev
	for _, k := range slices.Sorted(maps.Keys(res.out)) {
		now, was := res.out[k], prev[k]
		switch {
		case was == pass && now != pass && now != skip:
			t.Errorf("regression: %s was pass in %s, now %s: %s", k, docFile, now, res.notes[k])
		case was == pass && now == skip:
			t.Logf("not checked: %s (pass in %s) was skipped: %s", k, docFile, res.notes[k])
		case was != pass && now == pass:
			t.Logf("improvement: %s is now pass (was %q); regenerate with UPDATE_COMPAT=1", k, was)
		}
	}
}

// render writes the results as markdown with a machine-readable copy in a
// trailing comment, which parseResults reads back.
func render(res *results, now time.Time) string {
	var b strings.Builder
	b.WriteString("# Compatibility\n\n")
	b.WriteString("<!-- Generated by internal/compat (UPDATE_COMPAT=1 go test ./internal/compat/); do not edit. -->\n\n")
	fmt.Fprintf(&b, "Generated on %s by `UPDATE_COMPAT=1 go test ./internal/compat/`. CI fails when a cell marked\n", now.UTC().Format("2006-01-02"))
	b.WriteString("pass here no longer passes. Every cell runs through imapwarden to a real backend started by the\n")
	b.WriteString("test (internal/dovecottest, internal/cyrustest, internal/couriertest), the proxy's backend leg in\n")
	b.WriteString("verified STARTTLS.\n\n")
	b.WriteString("Legend: **pass** the operations ran and their results were verified; **fail** they did not (see\n")
	b.WriteString("the notes); **n/a** the capability is not advertised after LOGIN through the proxy (the note says\n")
	b.WriteString("whether the backend itself advertises it); **skip** the backend or client was not available.\n\n")
	b.WriteString("## Clients\n\n")
	b.WriteString("Modes: *imaps* is implicit TLS (port 993 style), *starttls* is plaintext greeting then STARTTLS.\n")
	b.WriteString("curl fetches the 1 MB message by UID (checksum) and lists; mbsync pulls INBOX into a Maildir and\n")
	b.WriteString("the 1 MB file's checksum is compared; imaplib and go-imap log in, LIST, SELECT, fetch the 1 MB\n")
	b.WriteString("message (checksum), APPEND, SEARCH, STORE flags, EXPUNGE and wait in IDLE until a message\n")
	b.WriteString("delivered by another session arrives.\n\n")
	b.WriteString("| Backend | Client |")
	for _, m := range modes {
		b.WriteString(" " + m + " |")
	}
	b.WriteString("\n|---|---|" + strings.Repeat("---|", len(modes)) + "\n")
	var notes []string
	show := func(key string) string {
		o, ok := res.out[key]
		if !ok {
			return "not run"
		}
		if n := res.notes[key]; n != "" && o != pass {
			notes = append(notes, fmt.Sprintf("%d. `%s`: %s", len(notes)+1, key, strings.ReplaceAll(n, "\n", " ")))
			return fmt.Sprintf("%s [%d]", o, len(notes))
		}
		return o
	}
	for _, be := range backends {
		for _, cl := range clients {
			fmt.Fprintf(&b, "| %s | %s |", be, cl)
			for _, m := range modes {
				b.WriteString(" " + show(be+" "+cl+" "+m) + " |")
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("\n## Extensions\n\n")
	b.WriteString("Each extension is exercised through the proxy over implicit TLS with a raw IMAP client.\n\n")
	b.WriteString("| Extension | Spec |")
	for _, be := range backends {
		b.WriteString(" " + be + " |")
	}
	b.WriteString("\n|---|---|" + strings.Repeat("---|", len(backends)) + "\n")
	for _, x := range extensions {
		fmt.Fprintf(&b, "| %s | %s |", x.name, x.rfc)
		for _, be := range backends {
			b.WriteString(" " + show(be+" ext "+x.name) + " |")
		}
		b.WriteString("\n")
	}
	if len(notes) > 0 {
		b.WriteString("\n## Notes\n\n")
		b.WriteString(strings.Join(notes, "\n") + "\n")
	}
	b.WriteString("\n<!-- compat-results\n")
	for _, k := range slices.Sorted(maps.Keys(res.out)) {
		fmt.Fprintf(&b, "%s = %s\n", k, res.out[k])
	}
	b.WriteString("-->\n")
	return b.String()
}

// parseResults reads the compat-results comment written by render.
func parseResults(doc []byte) map[string]string {
	m := map[string]string{}
	in := false
	sc := bufio.NewScanner(bytes.NewReader(doc))
	for sc.Scan() {
		l := sc.Text()
		switch {
		case l == "<!-- compat-results":
			in = true
		case in && l == "-->":
			in = false
		case in:
			if k, v, ok := strings.Cut(l, " = "); ok {
				m[k] = v
			}
		}
	}
	return m
}
