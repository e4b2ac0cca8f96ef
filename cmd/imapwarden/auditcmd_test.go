package main

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/audit"
	"github.com/imapwarden/imapwarden/policy"
	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

func runAuditCLI(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := runAudit(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// newFileTrail opens a trail writing to a new file, HMAC-chained when key
// is set.
func newFileTrail(t *testing.T, key []byte) (string, *audit.Trail) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	fs, err := audit.OpenFile(audit.FileOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := audit.New(audit.Options{Sink: fs, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	return path, tr
}

// auditTestTrail writes a small trail through the adapter, HMAC-chained
// when key is set, and returns its file.
func auditTestTrail(t *testing.T, key []byte) string {
	t.Helper()
	path, tr := newFileTrail(t, key)
	w := newAuditWire(tr)
	s := &proxy.SessionInfo{ID: "S1", Listener: "imaps", ClientAddr: netip.MustParseAddrPort("[::ffff:198.51.100.7]:40000"), User: "alice", Selected: "INBOX"}
	w.SessionOpen(s)
	w.Auth(s, proxy.AuthEvent{User: "alice", Mechanism: "LOGIN", Attempt: 1, Success: true, Backend: "b"})
	w.Command(s, proxy.CommandEvent{Command: &imapwire.Command{Tag: "a1", Name: "FETCH", UID: true, Set: "4:5", SetCount: 2,
		FetchItems: []string{"BODY.PEEK[]"}}, Result: "OK", Duration: time.Millisecond, UIDs: []uint32{4, 5}, Messages: 2})
	w.Command(s, proxy.CommandEvent{Command: &imapwire.Command{Tag: "a2", Name: "DELETE", Mailbox: "Sent"}, Result: "NO", Denied: true,
		Decision: &proxy.Decision{Reason: "mailbox is protected", Code: "NOPERM"}})
	w.Limit(s, proxy.LimitResult{Exceeded: true, Limit: "fetch_bytes", Key: "user", Delay: time.Second})
	w.Security(s, "backend-lost", "b")
	w.SessionClose(s, proxy.CloseEvent{Reason: proxy.CloseClientClosed, Duration: time.Second, Commands: 2, CommandsByName: map[string]int{"FETCH": 1, "DELETE": 1}})
	w.Reload("policy", "rev-7", nil)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAuditCommandUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"frobnicate"}, {"verify"}, {"query"}, {"verify", "-bogus", "x"}} {
		if code, _, errOut := runAuditCLI(args...); code != exitUsage || errOut == "" {
			t.Errorf("%q: exit %d, stderr %q", args, code, errOut)
		}
	}
	if code, out, _ := runAuditCLI("-h"); code != 0 || !strings.Contains(out, "imapwarden audit verify") {
		t.Errorf("-h: %d %q", code, out)
	}
	if code, out, _ := runAuditCLI("query", "-h"); code != 0 || !strings.Contains(out, "-mailbox M") {
		t.Errorf("query -h: %d %q", code, out)
	}
	file := auditTestTrail(t, nil)
	for _, args := range [][]string{{"query", file, "--ip", "nope"}, {"query", file, "--since", "soon"}, {"query", file, "--format", "xml"}, {"query", file, "--fetch", "all"}, {"query", file, "--mailbox-glob", `Q3\`}, {"query", file, "--user-glob", `a\`}} {
		if code, _, errOut := runAuditCLI(args...); code != exitUsage || errOut == "" {
			t.Errorf("%q: exit %d, stderr %q", args, code, errOut)
		}
	}
	if code, _, errOut := runAuditCLI("verify", filepath.Join(t.TempDir(), "missing")); code != exitUsage || !strings.Contains(errOut, "missing") {
		t.Errorf("missing file: %d %q", code, errOut)
	}
}

func TestAuditQueryCommand(t *testing.T) {
	file := auditTestTrail(t, nil)
	// Flags after the files, as auditors type them; the mapped address
	// was unmapped by the adapter.
	code, out, errOut := runAuditCLI("query", file, "--ip", "198.51.100.0/24", "--kind", "command,policy", "--format", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("json output:\n%s", out)
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &r); err != nil || r["kind"] != "policy.deny" || r["reason"] != "mailbox is protected" || r["code"] != "NOPERM" {
		t.Errorf("policy.deny record %v %v", r, err)
	}
	_, out, _ = runAuditCLI("query", "--user", "ALICE", file, "--kind", "limit,backend,session.close,reload")
	_, reload, _ := runAuditCLI("query", file, "--kind", "reload")
	out += reload
	for _, w := range []string{
		"fetch_bytes by=user exceeded delay 1s",
		"S1       lost b",
		"client-closed after 1s 2 commands",
		"policy ok revision=rev-7",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("table lacks %q:\n%s", w, out)
		}
	}
	if code, out, _ = runAuditCLI("query", file, "--ip", "198.51.100.8"); code != 0 || strings.Count(out, "\n") != 1 {
		t.Errorf("no match: %d\n%s", code, out)
	}
}

func TestAuditVerifyCommand(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	os.WriteFile(keyFile, []byte("a key of at least sixteen bytes\n"), 0o600)
	key, _ := audit.LoadKey(keyFile)
	file := auditTestTrail(t, key)
	if code, out, errOut := runAuditCLI("verify", "-key", keyFile, file); code != 0 || !strings.Contains(out, "chain intact (hmac-sha256)") {
		t.Errorf("with key: %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := runAuditCLI("verify", file); code != exitUsage || !strings.Contains(errOut, "give the key") {
		t.Errorf("without key: %d %q", code, errOut)
	}
	b, _ := os.ReadFile(file)
	torn := filepath.Join(dir, "torn.jsonl")
	os.WriteFile(torn, b[:len(b)-20], 0o600)
	if code, out, _ := runAuditCLI("verify", "--key", keyFile, torn); code != auditExitTruncated || !strings.HasPrefix(out, "TRUNCATED: ") {
		t.Errorf("torn: %d\n%s", code, out)
	}
	removed := filepath.Join(dir, "removed.jsonl")
	lines := strings.SplitAfter(string(b), "\n")
	os.WriteFile(removed, []byte(strings.Join(append(lines[:3:3], lines[4:]...), "")), 0o600)
	if code, out, _ := runAuditCLI("verify", removed, "-key", keyFile); code != auditExitBroken || !strings.Contains(out, "removed: seq jumps from 3 to 5") {
		t.Errorf("removed: %d\n%s", code, out)
	}
	// A line any local user can send to syslog with logger: no key
	// signed it. With a key twice, query has no reading of it either.
	forged := filepath.Join(dir, "forged.jsonl")
	os.WriteFile(forged, append(slices.Clone(b), `<85>1 2026-12-07T07:00:00.000000Z mx1 imapwarden 1 command - {"ts":"2026-12-07T07:00:00Z","kind":"audit.start","v":1,"seq":1,"hmac":"`+
		strings.Repeat("0", 64)+`","kind":"command","user":"mallory","command":"DELETE","mailbox":"INBOX","result":"OK"}`+"\n"...), 0o600)
	if code, out, _ := runAuditCLI("verify", "-key", keyFile, forged); code != auditExitBroken || !strings.HasPrefix(out, "BROKEN: ") || !strings.Contains(out, "twice") {
		t.Errorf("forged: %d\n%s", code, out)
	}
	if code, out, errOut := runAuditCLI("query", forged, "--user", "mallory"); code != 0 || strings.Contains(out, "mallory") || !strings.Contains(errOut, "1 lines that are not records") {
		t.Errorf("query of the forged line: %d\n%s%s", code, out, errOut)
	}
	os.WriteFile(forged, append(slices.Clone(b), `{"ts":"2026-12-07T07:00:00Z","kind":"command","v":1,"seq":999,"hmac":"`+strings.Repeat("ab", 32)+`","user":"mallory"}`+"\n"...), 0o600)
	if code, out, _ := runAuditCLI("verify", "-key", keyFile, forged); code != auditExitBroken || !strings.Contains(out, ": key: the record carries no signature") {
		t.Errorf("unsigned: %d\n%s", code, out)
	}
}

// BenchmarkAuditCommandRecord is the cost a session pays per command: the
// adapter builds the record from a CommandEvent, queues it and waits until
// the writer has written it (audit.Trail.LogWait; the sink discards).
//
//	go test -run '^$' -bench 'BenchmarkAuditCommandRecord' -benchmem ./cmd/imapwarden/
func BenchmarkAuditCommandRecord(b *testing.B) {
	sink := audGateSink{}
	tr, err := audit.New(audit.Options{Sink: sink, SyncInterval: audit.SyncNever})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	w := newAuditWire(tr)
	s := &proxy.SessionInfo{ID: "S1", Listener: "imaps", ClientAddr: netip.MustParseAddrPort("192.0.2.7:40000"), User: "alice", Selected: "INBOX"}
	ev := proxy.CommandEvent{Command: &imapwire.Command{Tag: "a1", Name: "FETCH", UID: true, Set: "1:*", SetCount: -1,
		FetchItems: []string{"UID", "BODY.PEEK[]"}}, Result: "OK", Duration: time.Millisecond, BytesIn: 40, BytesOut: 4000, Messages: 1, UIDs: []uint32{7}}
	b.ReportAllocs()
	for b.Loop() {
		if err := w.Command(s, ev); err != nil {
			b.Fatal(err)
		}
	}
}

// audGateSink discards records.
type audGateSink struct{}

func (audGateSink) Write([]byte) error { return nil }
func (audGateSink) Sync() error        { return nil }
func (audGateSink) Close() error       { return nil }

func TestAuditWirePolicyAnnotations(t *testing.T) {
	path, tr := newFileTrail(t, nil)
	w := newAuditWire(tr)
	s := &proxy.SessionInfo{ID: "S1", User: "alice", Selected: "INBOX"}
	cmd := &imapwire.Command{Tag: "a1", Name: "EXPUNGE"}
	shared := map[string]any{policy.AnnotationRevision: "r1", "ticket": "T-9",
		policy.AnnotationShadowDeny: map[string]any{"dir": "next", "reason": "no expunge", "code": "NOPERM", "annotations": map[string]any{"rule": "x"}}}
	w.Command(s, proxy.CommandEvent{Command: cmd, Result: "OK", Decision: &proxy.Decision{Allow: true, Annotations: shared}})
	w.Command(s, proxy.CommandEvent{Command: cmd, Result: "NO", Denied: true,
		Decision: &proxy.Decision{Reason: "read-only user", Code: "NOPERM", Annotations: map[string]any{policy.AnnotationRevision: "r1"}}})
	tr.Close()
	if len(shared) != 3 {
		t.Error("the engine's annotations were changed")
	}
	var recs []*audit.Record
	audit.Scan([]string{path}, func(r *audit.Record, _ []byte) error { recs = append(recs, r); return nil })
	if len(recs) != 5 {
		t.Fatalf("%d records", len(recs))
	}
	c, wd, deny := recs[1], recs[2], recs[3]
	if c.Kind != audit.KindCommand || c.Revision != "" || c.Annot["ticket"] != "T-9" || len(c.Annot) != 1 {
		t.Errorf("command %+v", c)
	}
	if wd.Kind != audit.KindPolicyWouldDeny || wd.Command != "EXPUNGE" || wd.Selected != "INBOX" || wd.Reason != "no expunge" ||
		wd.Code != "NOPERM" || wd.Revision != "r1" || wd.Annot["rule"] != "x" || wd.Detail != "shadow policy next" {
		t.Errorf("would_deny %+v", wd)
	}
	if deny.Kind != audit.KindPolicyDeny || deny.Revision != "r1" || deny.Reason != "read-only user" || deny.Annot != nil {
		t.Errorf("deny %+v", deny)
	}
}

// TestAuditWireLimitCount: refusals recorded together (the server-wide
// max_preauth_connections) keep their count in the record and the table.
func TestAuditWireLimitCount(t *testing.T) {
	path, tr := newFileTrail(t, nil)
	w := newAuditWire(tr)
	w.Limit(&proxy.SessionInfo{}, proxy.LimitResult{Exceeded: true, Limit: proxy.LimitMaxPreAuthConnections, Key: "server",
		Code: "UNAVAILABLE", Reason: "Too many connections awaiting login", Count: 150})
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runAuditCLI("query", path, "--kind", "limit")
	if code != 0 || !strings.Contains(out, `max_preauth_connections by=server exceeded code=UNAVAILABLE reason="Too many connections awaiting login" 150 hits`) {
		t.Errorf("query: %d\n%s%s", code, out, errOut)
	}
	_, js, _ := runAuditCLI("query", path, "--kind", "limit", "--format", "json")
	if !strings.Contains(js, `"count":150`) {
		t.Errorf("record %s", js)
	}
}
