package policy

import (
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// shippedDir is the repository's policies/ directory.
func shippedDir(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller")
	}
	return filepath.Join(filepath.Dir(file), "..", "policies")
}

// policySubset copies the framework and the named policies of policies/
// (all when none are named) into a new directory, with data files replaced
// by data (policy name → YAML text) where given.
func policySubset(t testing.TB, data map[string]string, names ...string) string {
	t.Helper()
	src := shippedDir(t)
	dst := t.TempDir()
	if len(names) == 0 {
		entries, err := os.ReadDir(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.IsDir() {
				names = append(names, e.Name())
			}
		}
	}
	copyFile(t, filepath.Join(src, "imapwarden.rego"), filepath.Join(dst, "imapwarden.rego"))
	for _, n := range names {
		if err := os.MkdirAll(filepath.Join(dst, n), 0o755); err != nil {
			t.Fatal(err)
		}
		files, err := filepath.Glob(filepath.Join(src, n, "*"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			copyFile(t, f, filepath.Join(dst, n, filepath.Base(f)))
		}
		if d, ok := data[n]; ok {
			writeFile(t, filepath.Join(dst, n, "data.yaml"), d)
		}
	}
	return dst
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, string(b))
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	// Atomically, as editors and config management do: a poller must never
	// see half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// testSession is a logged-in session over TLS.
func testSession(user string) *proxy.SessionInfo {
	return &proxy.SessionInfo{
		ID:         "s1",
		Listener:   "imaps",
		ClientAddr: netip.MustParseAddrPort("192.0.2.10:50123"),
		LocalAddr:  netip.MustParseAddrPort("192.0.2.1:993"),
		TLS:        &proxy.TLSInfo{Version: "TLS1.3", Cipher: "TLS_AES_128_GCM_SHA256", ServerName: "mail.example.com", ALPN: "imap"},
		User:       user,
		Mechanism:  "PLAIN",
		ClientID:   map[string]string{"name": "Thunderbird", "version": "128.0"},
		Backend:    "dovecot",
		Started:    time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC),
		Selected:   "INBOX",
	}
}

// parseCommand parses one command line (literals, if any, inline as
// {n}\r\n data, all buffered).
func parseCommand(t testing.TB, line string) *imapwire.Command {
	t.Helper()
	var p imapwire.CommandParser
	rest := line + "\r\n"
	for {
		i := strings.Index(rest, "\r\n")
		l := rest[:i+2]
		rest = rest[i+2:]
		var lit imapwire.Literal
		hasLit := false
		if j := strings.LastIndexByte(l, '{'); j >= 0 && strings.HasSuffix(l, "}\r\n") {
			n, err := strconv.Atoi(strings.TrimSuffix(l[j+1:len(l)-3], "+"))
			if err == nil {
				lit, hasLit = imapwire.Literal{Size: int64(n), NonSync: strings.HasSuffix(l, "+}\r\n")}, true
			}
		}
		if err := p.Line([]byte(l), lit, hasLit); err != nil {
			t.Fatalf("parse %q: %v", line, err)
		}
		if !hasLit {
			break
		}
		p.Literal([]byte(rest[:lit.Size]))
		rest = rest[lit.Size:]
	}
	if err := p.Check(&testCtx); err != nil {
		t.Fatalf("check %q: %v", line, err)
	}
	return p.Command()
}

// testCtx is the session the test commands are read in: INBOX selected
// read-write, "/" as the delimiter, every capability offered.
var testCtx = imapwire.Context{State: imapwire.StateSelected, Delim: '/', Caps: ^imapwire.Cap(0)}
