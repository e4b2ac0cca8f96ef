package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/imapwarden/imapwarden/audit"
	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/proxy"
)

// hostile is what an attacker puts in every string it controls: the
// issue's forged-line sequence, the other C0 controls, DEL, a C1 CSI,
// line separators, a bidi override and invalid UTF-8.
const hostile = "x\x1b[2K\x1b[1G2026-12-06 06:00:00  auth  root\x1b[8m\r\n\t\x00\a\b\x7f\u009b31m\u0085\u2028\u2029\u202egpj\u2066\xff\xc2"

// requireTerminalSafe fails when out holds a byte sequence a terminal
// could act on. It is written independently of internal/termsafe, as an
// oracle: only printable ASCII, line feed (and tab where the layout has
// tabs) and valid UTF-8 without C1, U+2028, U+2029 or bidi controls.
func requireTerminalSafe(t *testing.T, what, out string, tabs bool) {
	t.Helper()
	for i := 0; i < len(out); {
		r, n := utf8.DecodeRuneInString(out[i:])
		bad := r == utf8.RuneError && n == 1 ||
			r < 0x20 && r != '\n' && !(tabs && r == '\t') ||
			r >= 0x7f && r <= 0x9f || r == 0x2028 || r == 0x2029 || r == 0x061c ||
			r == 0x200e || r == 0x200f || r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069
		if bad {
			lo, hi := max(0, i-40), min(len(out), i+40)
			t.Fatalf("%s: raw %q at byte %d, in %q", what, out[i:i+n], i, out[lo:hi])
		}
		i += n
	}
}

// fillHostile sets every string, string slice and map of r to hostile
// values, whatever fields the record has now or gains later.
func fillHostile(r *audit.Record) {
	v := reflect.ValueOf(r).Elem()
	for i := range v.NumField() {
		f, name := v.Field(i), v.Type().Field(i).Name
		switch {
		case name == "Kind" || name == "Prev" || name == "HMAC":
			// Kind chooses the summary; the writer sets the chain.
		case f.Kind() == reflect.String:
			f.SetString(name + hostile)
		case f.Type() == reflect.TypeFor[[]string]():
			f.Set(reflect.ValueOf([]string{name + hostile, hostile}))
		case f.Type() == reflect.TypeFor[map[string]string]():
			f.Set(reflect.ValueOf(map[string]string{"name" + hostile: name + hostile}))
		case f.Type() == reflect.TypeFor[map[string]int]():
			f.Set(reflect.ValueOf(map[string]int{name + hostile: 1}))
		case f.Type() == reflect.TypeFor[map[string]any]():
			f.Set(reflect.ValueOf(map[string]any{name + hostile: []any{hostile}}))
		}
	}
	r.IP = netip.MustParseAddr("192.0.2.66")
	r.Attempt, r.Commands, r.Messages, r.UIDs = 2, 3, 1, []uint32{7}
	r.Duration, r.Delay = time.Second, time.Second
}

// TestAuditQueryHostileRecords writes, through the real trail, one record
// of every kind with every field hostile, and one of a hostile kind; the
// table and the JSON lines of "audit query" must show it all escaped.
// Before the table escaped its cells, ESC, DEL and C1 reached the
// auditor's terminal (issue 17).
func TestAuditQueryHostileRecords(t *testing.T) {
	path, tr := newFileTrail(t, nil)
	kinds := []audit.Kind{audit.KindSessionOpen, audit.KindSessionClose, audit.KindTLS, audit.KindAuth, audit.KindCommand,
		audit.KindPolicyDeny, audit.KindPolicyWouldDeny, audit.KindLimit, audit.KindBackend, audit.KindSecurity, audit.KindReload,
		audit.KindCert, audit.KindAuditDropped, audit.KindAuditStart, audit.Kind("evil" + hostile)}
	for _, k := range kinds {
		r := new(audit.Record)
		fillHostile(r)
		r.Kind = k
		if err := tr.Log(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	if !bytes.Contains(raw, []byte("\u009b")) || !bytes.Contains(raw, []byte("\x7f")) {
		t.Fatalf("the trail holds no raw C1 or DEL: this test would prove nothing:\n%s", raw)
	}

	code, table, errOut := runAuditCLI("query", path, "--ip", "192.0.2.66")
	if code != 0 {
		t.Fatalf("query: exit %d: %s", code, errOut)
	}
	requireTerminalSafe(t, "query table", table, false)
	lines := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	if len(lines) != 1+len(kinds) {
		t.Fatalf("%d table lines for %d records:\n%s", len(lines), len(kinds), table)
	}
	for _, w := range []string{`User` + `x\x1b[2K\x1b[1G2026-12-06 06:00:00  auth  root\x1b[8m\r\n\t\x00\x07\x08\x7f\u009b31m\u0085\u2028\u2029\u202egpj\u2066` + "\uFFFD\uFFFD",
		`Session` + `x\x1b[2K`, `evilx\x1b[2K`, `Mailboxx\x1b[2K`, `Reasonx\x1b`, `SNIx\x1b`, `Listenerx\x1b`} {
		if !strings.Contains(table, w) {
			t.Errorf("table lacks %s", w)
		}
	}

	code, js, errOut := runAuditCLI("query", path, "--ip", "192.0.2.66", "--format", "json")
	if code != 0 {
		t.Fatalf("query json: exit %d: %s", code, errOut)
	}
	requireTerminalSafe(t, "query json", js, false)
	// The JSON keeps its value: the escapes are JSON's.
	n := 0
	for line := range strings.Lines(js) {
		r, err := audit.ParseRecord([]byte(line))
		if err != nil {
			t.Fatalf("json line no longer a record: %v\n%s", err, line)
		}
		// The writer stored each invalid byte as U+FFFD.
		if want := "User" + strings.TrimSuffix(hostile, "\xff\xc2") + "\uFFFD\uFFFD"; r.User != want {
			t.Fatalf("user %q, want %q", r.User, want)
		}
		n++
	}
	if n != len(kinds) {
		t.Fatalf("%d json lines for %d records", n, len(kinds))
	}
}

// TestAuditVerifyHostileNames: verify's report quotes file names and
// messages; a hostile name does not reach the terminal raw.
func TestAuditVerifyHostileNames(t *testing.T) {
	good := auditTestTrail(t, nil)
	b, _ := os.ReadFile(good)
	bad := filepath.Join(t.TempDir(), "trail\x1b[2K\u009b\u2028.jsonl")
	if err := os.WriteFile(bad, append(b, `{"ts":"x`...), 0o600); err != nil {
		t.Skipf("file name not allowed here: %v", err)
	}
	code, out, errOut := runAuditCLI("verify", bad)
	if code != auditExitTruncated {
		t.Fatalf("verify: exit %d\n%s%s", code, out, errOut)
	}
	requireTerminalSafe(t, "verify report", out, false)
	if !strings.Contains(out, `trail\x1b[2K\u009b\u2028.jsonl`) {
		t.Errorf("report does not name the file escaped:\n%s", out)
	}
	code, _, errOut = runAuditCLI("verify", bad+"\x1b[31mmissing")
	if code != exitUsage {
		t.Fatalf("missing file: exit %d", code)
	}
	requireTerminalSafe(t, "verify error", errOut, false)
}

// issueUser is the user name of issue 17: refused at login but recorded,
// it used to erase the real "failure" line on the auditor's terminal and
// draw a forged "root ... success" one.
const issueUser = "x\x1b[2K\x1b[1G2026-12-06 06:00:00  auth  root ... LOGIN success ...\x1b[8m"

// TestAuditQueryHostileLoginThroughProxy sends the issue's user name as a
// LOGIN literal through the real proxy in front of Dovecot, with hostile
// ID values and a hostile mailbox after a real login, then checks "audit
// query" byte by byte.
func TestAuditQueryHostileLoginThroughProxy(t *testing.T) {
	dovecottest.Require(t)
	p := startAudProxy(t, dovecotBackend(t, dovecottest.Start(t, dovecottest.Options{})))
	c := dialAud(t, p.addr)
	c.do("i1", "OK", `ID ("name" "evil`+"\x1b]0;pwned\x07"+`" "version" "`+"\u009b2J\u2028\u202e"+`")`)
	c.literal("a1", "LOGIN", issueUser, " wrong-password")
	c.expect("a1", "NO")
	c.do("a2", "OK", "LOGIN alice alice-pw")
	// Control characters in a name never reach the backend (two readings,
	// ARCHITECTURE.md §10); a right-to-left override, valid modified UTF-7, does.
	c.literal("a3", "SELECT", "INBOX\x1b[2K\x7f\u009b", "")
	c.expect("a3", "BAD")
	c.do("a3", "NO", `SELECT "INBOX&IC4-x"`)
	c.do("a4", "OK", "LOGOUT")
	p.stop()

	code, table, errOut := runAuditCLI("query", p.file)
	if code != 0 {
		t.Fatalf("query: exit %d: %s", code, errOut)
	}
	t.Logf("imapwarden audit query audit.jsonl\n%s", table)
	requireTerminalSafe(t, "query table", table, false)
	var authLine string
	for line := range strings.Lines(table) {
		if strings.Contains(line, " auth ") && strings.Contains(line, "failure") {
			authLine = line
		}
	}
	want := `x\x1b[2K\x1b[1G2026-12-06 06:00:00  auth  root ... LOGIN success ...\x1b[8m`
	if !strings.Contains(authLine, want) || !strings.Contains(authLine, "LOGIN failure") {
		t.Errorf("the failed login is not shown escaped, want %s in:\n%s", want, table)
	}
	if !strings.Contains(table, `INBOX\u202ex`) {
		t.Errorf("the hostile mailbox is not shown escaped:\n%s", table)
	}
	code, js, _ := runAuditCLI("query", p.file, "--format", "json")
	if code != 0 {
		t.Fatalf("query json: exit %d", code)
	}
	requireTerminalSafe(t, "query json", js, false)
	for _, w := range []string{`evil\u001b]0;pwned\u0007`, `\u009b2J\u2028\u202e`} {
		if !strings.Contains(js, w) {
			t.Errorf("client ID not recorded escaped as %s:\n%s", w, js)
		}
	}
}

type hostileStringer struct{}

func (hostileStringer) String() string { return "stringer" + hostile }

type hostileObject struct{}

func (hostileObject) MarshalLogObject(e zapcore.ObjectEncoder) error {
	e.AddString("inner"+hostile, hostile)
	e.AddByteString("bytes", []byte(hostile))
	return nil
}

// TestLogEscapes: whatever a field, message or logger name holds, a log
// line in either format shows it escaped, and JSON keeps its values.
// zap's console format wrote the message raw, and both formats wrote
// DEL, C1, U+2028 and bidi controls raw.
func TestLogEscapes(t *testing.T) {
	for _, format := range []string{"console", "json"} {
		var buf bytes.Buffer
		log := newLogger(&buf, zapcore.DebugLevel, format).Named("n" + hostile).With(zap.String("with", hostile))
		log.Info("msg"+hostile, zap.String("user", hostile), zap.Error(errors.New("err"+hostile)),
			zap.Stringer("s", hostileStringer{}), zap.Any("any", map[string]any{"k" + hostile: []string{hostile}}),
			zap.Object("obj", hostileObject{}), zap.Strings("list", []string{hostile}), zap.Namespace("ns"+hostile),
			zap.ByteString("b", []byte(hostile)))
		out := buf.String()
		requireTerminalSafe(t, format, out, true)
		if strings.Count(out, "\n") != 1 {
			t.Errorf("%s: not one line:\n%s", format, out)
		}
		if format == "console" {
			for _, w := range []string{`msgx\x1b[2K\x1b[1G`, `nx\x1b[2K`, `\u001b[2K`, `\u007f\u009b31m\u0085\u2028\u2029\u202egpj\u2066`} {
				if !strings.Contains(out, w) {
					t.Errorf("console line lacks %s:\n%s", w, out)
				}
			}
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
			t.Fatalf("json line no longer JSON: %v\n%s", err, out)
		}
		if want := strings.TrimSuffix(hostile, "\xff\xc2") + "\uFFFD\uFFFD"; m["user"] != want || m["msg"] != "msg"+want {
			t.Errorf("json values changed: user %q msg %q", m["user"], m["msg"])
		}
	}
}

// TestConsoleLogHostileLoginThroughProxy: the issue's user name, sent as
// a LOGIN literal through the real proxy logging in console format (the
// proxy's log auditor included), does not reach the log raw.
func TestConsoleLogHostileLoginThroughProxy(t *testing.T) {
	p := startAudProxyLog(t, &proxy.Backend{Name: "mem", Addr: memBackendAddr(t), Security: proxy.BackendPlain}, "console")
	c := dialAud(t, p.addr)
	c.do("i1", "OK", `ID ("name" "evil`+"\x1b]0;pwned\x07\u009b2J"+`")`)
	c.literal("a1", "LOGIN", issueUser, " wrong-password")
	c.expect("a1", "NO")
	// zap escapes C0 in fields itself, not these.
	c.literal("a2", "LOGIN", "bob\u009b2J\x7f\u2028\u202e", " wrong-password")
	c.expect("a2", "NO")
	c.do("a3", "OK", "LOGOUT")
	p.stop()
	out := p.logs.String()
	if !strings.Contains(out, `bob\u009b2J\u007f\u2028\u202e`) {
		t.Errorf("the second user name is not in the log, escaped:\n%s", out)
	}
	t.Logf("log.format: console\n%s", out)
	requireTerminalSafe(t, "console log", out, true)
	if !strings.Contains(out, `x\u001b[2K\u001b[1G2026-12-06 06:00:00  auth  root ... LOGIN success ...\u001b[8m`) {
		t.Errorf("the user name is not in the log, escaped:\n%s", out)
	}
}

// TestPolicyEvalHostileInput: "policy eval" on an input pasted from a
// hostile client's record prints the decision (which echoes the client's
// strings) escaped, as JSON with the same values, and its fail-closed
// error escaped too. encoding/json wrote DEL, C1 and bidi controls raw.
func TestPolicyEvalHostileInput(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p.rego"), []byte(`package imapwarden

decision := {"allow": false, "reason": sprintf("no %s for %s", [input.command.mailbox, input.session.user]),
	"annotations": {"client": input.session.client_id}} if input.point == "command"

decision := {"allow": input.session.user} if input.point == "auth"
`), 0o644)
	in, _ := json.Marshal(map[string]any{"point": "command",
		"session": map[string]any{"user": hostile, "client_id": map[string]string{"name" + hostile: hostile}},
		"command": map[string]any{"name": "DELETE", "mailbox": "Sent" + hostile}})
	input := filepath.Join(dir, "in.json")
	os.WriteFile(input, in, 0o644)
	code, out, errOut := runPolicyCLI("eval", "-input", input, "-policy", dir)
	if code != 0 {
		t.Fatalf("code %d\n%s\n%s", code, out, errOut)
	}
	requireTerminalSafe(t, "policy eval", out, false)
	var res struct{ Decision struct{ Reason string } }
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	valid := strings.TrimSuffix(hostile, "\xff\xc2") + "\uFFFD\uFFFD"
	if want := "no Sent" + valid + " for " + valid; res.Decision.Reason != want {
		t.Errorf("reason %q, want %q", res.Decision.Reason, want)
	}

	in, _ = json.Marshal(map[string]any{"point": "auth", "session": map[string]any{"user": hostile}})
	os.WriteFile(input, in, 0o644)
	code, out, errOut = runPolicyCLI("eval", "-input", input, "-policy", dir)
	if code != 1 || !strings.Contains(errOut, "would deny") {
		t.Fatalf("malformed decision: code %d\n%s\n%s", code, out, errOut)
	}
	requireTerminalSafe(t, "policy eval", out, false)
	requireTerminalSafe(t, "policy eval error", errOut, false)
}

// TestAdminAPIHostileUser: the admin API's JSON, read with curl, shows a
// hostile user name sent as a LOGIN literal escaped, with its value
// intact. encoding/json wrote its C1, DEL and bidi controls raw.
func TestAdminAPIHostileUser(t *testing.T) {
	f := startAdminFixture(t, "")
	c := f.session()
	user := "bob\u009b2J\x7f\u2028\u202e" + issueUser
	fmt.Fprintf(c.c, "a1 LOGIN {%d}\r\n", len(user))
	if l := c.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("LOGIN literal: %q", l)
	}
	fmt.Fprintf(c.c, "%s wrong-password\r\n", user)
	if l := c.line(); !strings.HasPrefix(l, "a1 NO") {
		t.Fatalf("LOGIN: %q", l)
	}
	var body string
	deadline := time.Now().Add(time.Minute)
	for {
		// The trail is written asynchronously.
		_, body = f.do("GET", "/audit?kind=auth", testReadToken, "", "")
		if strings.Contains(body, `"records": [`) && !strings.Contains(body, `"records": []`) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	requireTerminalSafe(t, "/audit", body, false)
	var res struct{ Records []struct{ User string } }
	if err := json.Unmarshal([]byte(body), &res); err != nil || len(res.Records) == 0 || res.Records[0].User != user {
		t.Fatalf("/audit: %v %+v\n%s", err, res, body)
	}
}

// BenchmarkLogLine: what escaping adds to encoding a typical log line.
func BenchmarkLogLine(b *testing.B) {
	fields := []zap.Field{zap.String("session", "7CMTPYEULLPNZJSL"), zap.String("listener", "imaps"), zap.String("client", "192.0.2.7:51234"),
		zap.String("user", "alice@example.com"), zap.String("mechanism", "LOGIN"), zap.Bool("success", true), zap.Int("attempt", 1)}
	ent := zapcore.Entry{Level: zapcore.InfoLevel, Time: time.Now(), LoggerName: "audit", Message: "auth"}
	ec := zap.NewProductionEncoderConfig()
	for _, c := range []struct {
		name string
		enc  zapcore.Encoder
	}{
		{"json/zap", zapcore.NewJSONEncoder(ec)},
		{"json/escaped", safeEncoder{Encoder: zapcore.NewJSONEncoder(ec)}},
		{"console/zap", zapcore.NewConsoleEncoder(ec)},
		{"console/escaped", safeEncoder{Encoder: zapcore.NewConsoleEncoder(ec), console: true}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				buf, _ := c.enc.EncodeEntry(ent, fields)
				buf.Free()
			}
		})
	}
}
