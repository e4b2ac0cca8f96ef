package audit

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRecordCaps(t *testing.T) {
	sink := &memSink{}
	tr, _ := New(Options{Sink: sink})
	uids := make([]uint32, 2000)
	for i := range uids {
		uids[i] = uint32(i + 1)
	}
	items := make([]string, 100)
	for i := range items {
		items[i] = "X" + strings.Repeat("Y", 300)
	}
	tr.Log(&Record{Kind: KindCommand, Command: "FETCH", Set: strings.Repeat("1,", 5000), UIDs: uids, Items: items})
	tr.Log(&Record{Kind: KindCommand, Command: "FETCH", UIDs: uids[:3], UIDCount: 3})
	tr.Log(&Record{Kind: KindCommand, Command: "FETCH", SharedWith: []string{"a", "b"}, SharedCount: 40})
	tr.Close()
	lines := sink.lines()
	if len(lines[1]) > 16000 {
		t.Errorf("record of %d bytes", len(lines[1]))
	}
	r, err := ParseRecord([]byte(lines[1]))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.UIDs) != MaxUIDs || r.UIDCount != 2000 || len(r.Set) != DefaultMaxFieldBytes || len(r.Items) != DefaultMaxListItems || len(r.Items[0]) != 301 {
		t.Errorf("caps: %d uids, count %d, set %d, %d items of %d", len(r.UIDs), r.UIDCount, len(r.Set), len(r.Items), len(r.Items[0]))
	}
	if want := []Cut{{Field: "set", Bytes: 10000}, {Field: "items", Bytes: 30100, Items: 100}}; !slices.Equal(r.Cut, want) {
		t.Errorf("cut %+v, want %+v", r.Cut, want)
	}
	if r, _ := ParseRecord([]byte(lines[2])); r.UIDCount != 3 || len(r.UIDs) != 3 {
		t.Errorf("small: %+v", r)
	}
	if r, _ := ParseRecord([]byte(lines[3])); r.SharedCount != 40 || len(r.SharedWith) != 2 {
		t.Errorf("shared: %+v", r)
	}
}

func TestRecordEscaping(t *testing.T) {
	sink := &memSink{}
	tr, _ := New(Options{Sink: sink})
	// A user name built to fake fields and lines.
	evil := "x\",\"ip\":\"6.6.6.6\",\"result\":\"success\"}\n{\"kind\":\"auth"
	tr.Log(&Record{Kind: KindAuth, IP: netip.MustParseAddr("192.0.2.9"), User: evil, Result: ResultFailure, Reason: "credentials"})
	tr.Close()
	lines := sink.lines()
	if len(lines) != 3 {
		t.Fatalf("%d lines: the record spans lines", len(lines))
	}
	if strings.Contains(lines[1], `"ip":"6.6.6.6"`) || strings.Contains(lines[1], `"result":"success"`) {
		t.Errorf("fake fields: %s", lines[1])
	}
	r, _ := ParseRecord([]byte(lines[1]))
	if r.User != evil || r.IP.String() != "192.0.2.9" {
		t.Errorf("round trip: %+v", r)
	}
}

func TestSummary(t *testing.T) {
	r := cmdRecord(3)
	r.UIDs, r.UIDCount = []uint32{4, 5}, 2
	if got := r.Summary(); got != "a3 UID FETCH 1:* [body] in INBOX => OK 1.5ms uids 4,5" {
		t.Errorf("command: %q", got)
	}
	r.SharedWith, r.SharedCount = []string{"b", "c"}, 30
	if got := r.Summary(); got != "a3 UID FETCH 1:* [body] in INBOX => OK 1.5ms uids 4,5 shared with b,c (30 in all)" {
		t.Errorf("shared: %q", got)
	}
	a := &Record{Kind: KindAuth, Mechanism: "PLAIN", Result: ResultFailure, Reason: "credentials", Attempt: 2}
	if got := a.Summary(); got != "PLAIN failure (credentials) attempt 2" {
		t.Errorf("auth: %q", got)
	}
}

// TestSummaryNamesOneReading: a name from outside reads back as itself
// in the summary (audit query's table), whatever it holds, so that a
// mailbox named "X => NO" cannot pass for another command's result.
func TestSummaryNamesOneReading(t *testing.T) {
	for _, name := range []string{"X => NO", "=>", "->", "in", "-", "a,b", `say "hi"`, `back\slash`,
		"tab\there", "Entwürfe", "[x]", "(y)", "nbsp\u00a0x", "INBOX"} {
		r := cmdRecord(3)
		r.Selected, r.Mailbox, r.Destination = "", name, name
		r.Command = "COPY"
		got := r.Summary()
		want := name
		if name != "INBOX" {
			want = strconv.Quote(name)
		}
		if !strings.Contains(got, " "+want+" -> "+want+" ") {
			t.Errorf("mailbox %q: summary %q does not name it as %s", name, got, want)
		}
		if r.Tag = name; !strings.HasPrefix(r.Summary(), want+" UID COPY") {
			t.Errorf("tag %q: summary %q", name, r.Summary())
		}
	}
	r := cmdRecord(3)
	r.SharedWith = []string{"a,b", "c"}
	if got := r.Summary(); !strings.Contains(got, `shared with "a,b",c`) {
		t.Errorf("shared with a user named a,b: %q", got)
	}
}

func TestQuery(t *testing.T) {
	sink := &memSink{}
	tr, _ := New(Options{Sink: sink})
	base := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	add := func(min int, r *Record) {
		r.Time = base.Add(time.Duration(min) * time.Minute)
		tr.Log(r)
	}
	ip := netip.MustParseAddr
	add(0, &Record{Kind: KindAuth, User: "alice", IP: ip("192.0.2.1"), Result: ResultSuccess})
	add(1, &Record{Kind: KindCommand, User: "alice", IP: ip("192.0.2.1"), Command: "SELECT", Mailbox: "INBOX"})
	add(2, &Record{Kind: KindCommand, User: "alice", IP: ip("192.0.2.1"), Command: "FETCH", UID: true, Selected: "INBOX", Fetch: FetchBody, UIDs: []uint32{7}})
	add(3, &Record{Kind: KindCommand, User: "Bob", IP: ip("2001:db8::5"), Command: "COPY", Mailbox: "", Selected: "inbox", Destination: "Archive/2026"})
	add(4, &Record{Kind: KindPolicyDeny, User: "bob", IP: ip("2001:db8::5"), Command: "DELETE", Mailbox: "Archive/2026"})
	add(5, &Record{Kind: KindPolicyWouldDeny, User: "carol", IP: ip("198.51.100.3"), Command: "FETCH", Fetch: FetchHeader})
	tr.Close()
	file := sink.save(t)
	query := func(f Filter) string {
		var got []string
		if _, err := Query([]string{file}, &f, func(r *Record, _ []byte) error {
			got = append(got, fmt.Sprintf("%d", r.Time.Sub(base)/time.Minute))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return strings.Join(got, ",")
	}
	for _, tc := range []struct {
		f    Filter
		want string
	}{
		{Filter{User: "alice"}, "0,1,2"},
		{Filter{User: "BOB"}, "3,4"},
		{Filter{UserGlob: "a*"}, "0,1,2"},
		{Filter{Mailbox: "INBOX"}, "1,2,3"},
		{Filter{MailboxGlob: "Archive/*"}, "3,4"},
		{Filter{Mailbox: "Archive/2026"}, "3,4"},
		{Filter{Net: netip.MustParsePrefix("2001:db8::/32")}, "3,4"},
		{Filter{Net: netip.MustParsePrefix("192.0.2.1/32")}, "0,1,2"},
		{Filter{Since: base.Add(2 * time.Minute), Until: base.Add(4 * time.Minute)}, "2,3"},
		{Filter{Kinds: []string{"policy"}}, "4,5"},
		{Filter{Kinds: []string{"policy.deny", "auth"}}, "0,4"},
		{Filter{Command: "uid fetch"}, "2"},
		{Filter{Command: "FETCH"}, "2,5"},
		{Filter{User: "alice", Fetch: FetchBody}, "2"},
		{Filter{Kinds: []string{"command"}, Since: base.Add(90 * time.Second)}, "2,3"},
	} {
		if got := query(tc.f); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.f, got, tc.want)
		}
	}
}

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 5, 2, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-05-01":                now.Add(-36 * time.Hour),
		"2026-05-01T10:00:00Z":      time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC),
		"2026-05-01T12:00:00+02:00": time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC),
		"2026-05-01 10:30":          time.Date(2026, 5, 1, 10, 30, 0, 0, time.UTC),
		"24h":                       now.Add(-24 * time.Hour),
		"-90m":                      now.Add(-90 * time.Minute),
	} {
		got, err := ParseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("%s: %v %v, want %v", in, got, err, want)
		}
	}
	if _, err := ParseTime("yesterday", now); err == nil {
		t.Error("yesterday accepted")
	}
}

func TestScanSkipsDamage(t *testing.T) {
	_, lines := writeTrail(t, 3, FileOptions{})
	lines[2] = "garbage"
	p := filepath.Join(t.TempDir(), "x.jsonl")
	writeLines(t, p, lines, `{"ts":"2026`)
	n := 0
	skipped, err := Scan([]string{p}, func(*Record, []byte) error { n++; return nil })
	if err != nil || n != 4 || skipped != 2 {
		t.Errorf("%d records, %d skipped, %v", n, skipped, err)
	}
}
