package audit

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"
)

// hostileAuth is what an unauthenticated client can put in an auth
// record: a LOGIN name of a 64 KiB line and an ID of 30 values of 1024
// control characters (RFC 2971 §3.3's limits), each escaped to 6 bytes.
func hostileAuth() *Record {
	id := map[string]string{}
	for i := range 30 {
		id[strings.Repeat("k", 28)+string(rune('A'+i))] = strings.Repeat("\x01", 1024)
	}
	return &Record{Kind: KindAuth, Session: "s1", Listener: "imaps", User: strings.Repeat("\x01", 60000),
		Mechanism: "LOGIN", ClientID: id, Result: ResultFailure, Reason: "credentials"}
}

// Every string and list from outside the proxy is capped, the record as a
// whole bounded, what was cut named with its size, and the chain, signed
// over what was written, verifies.
func TestRecordCapsClientText(t *testing.T) {
	sink := &memSink{}
	tr, err := New(Options{Sink: sink, Key: testKey()})
	if err != nil {
		t.Fatal(err)
	}
	tr.Log(hostileAuth())
	tr.Log(&Record{Kind: KindAuth, User: strings.Repeat("\x01", 60000), Result: ResultFailure})
	tr.Log(&Record{Kind: KindCommand, Tag: "a1", Command: "STORE", Flags: []string{"\\Seen", strings.Repeat("é", 600)}, Mailbox: "INBOX"})
	tr.Close()
	lines := sink.lines()
	for i, l := range lines {
		if len(l) > DefaultMaxRecordBytes {
			t.Errorf("line %d: %d bytes", i, len(l))
		}
	}

	r, err := ParseRecord([]byte(lines[1]))
	if err != nil {
		t.Fatal(err)
	}
	if r.RecordBytes <= DefaultMaxRecordBytes || r.Result != ResultFailure || r.Session != "s1" || r.Listener != "imaps" {
		t.Errorf("hostile auth record: record_bytes %d, result %q, session %q", r.RecordBytes, r.Result, r.Session)
	}
	if !slices.ContainsFunc(r.Cut, func(c Cut) bool { return c.Field == "user" && c.Bytes == 60000 }) ||
		!slices.ContainsFunc(r.Cut, func(c Cut) bool { return c.Field == "client_id" && c.Items == 30 && c.Bytes == 30*(29+1024) }) {
		t.Errorf("cut: %+v", r.Cut)
	}

	// Under the field cap alone: 1024 bytes as written, 170 characters.
	r, _ = ParseRecord([]byte(lines[2]))
	if r.User != strings.Repeat("\x01", 170) || r.RecordBytes != 0 || !slices.Equal(r.Cut, []Cut{{Field: "user", Bytes: 60000}}) {
		t.Errorf("user of %d bytes, record_bytes %d, cut %+v", len(r.User), r.RecordBytes, r.Cut)
	}

	// Cut between runes, never inside one.
	r, _ = ParseRecord([]byte(lines[3]))
	if len(r.Flags) != 2 || r.Flags[0] != "\\Seen" || !utf8.ValidString(r.Flags[1]) || len(r.Flags[1]) != 1024 ||
		!slices.Equal(r.Cut, []Cut{{Field: "flags", Bytes: 5 + 1200, Items: 2}}) {
		t.Errorf("flags %q, cut %+v", r.Flags, r.Cut)
	}
	mustVerify(t, []string{sink.save(t)}, VerifyOptions{Keys: [][]byte{testKey()}})
}

// The caps and the bound are configurable; a record over the bound is
// written again with tighter caps, down to none of the fields from
// outside the proxy, and says so.
func TestRecordBoundConfigurable(t *testing.T) {
	sink := &memSink{}
	tr, err := New(Options{Sink: sink, MaxFieldBytes: 16, MaxListItems: 2})
	if err != nil {
		t.Fatal(err)
	}
	tr.Log(&Record{Kind: KindCommand, Tag: "a1", Command: "LIST", Patterns: []string{"a", "b", "c"}, Mailbox: strings.Repeat("m", 20)})
	tr.Close()
	c, _ := ParseRecord([]byte(sink.lines()[1]))
	// The mailbox is a name, within MaxNameBytes: whole, whatever the
	// field cap (ARCHITECTURE.md §11).
	if c.Mailbox != strings.Repeat("m", 20) || !slices.Equal(c.Patterns, []string{"a", "b"}) ||
		!slices.Equal(c.Cut, []Cut{{Field: "patterns", Bytes: 3, Items: 3}}) {
		t.Errorf("mailbox %q, patterns %q, cut %+v", c.Mailbox, c.Patterns, c.Cut)
	}

	// With a key, the bound holds the record's sig too.
	for _, key := range [][]byte{nil, testKey()} {
		sink = &memSink{}
		tr, err = New(Options{Sink: sink, MaxFieldBytes: 512, MaxListItems: 8, MaxRecordBytes: MinRecordBytes, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		r := hostileAuth()
		r.Groups, r.Scopes = slices.Repeat([]string{strings.Repeat("g", 300)}, 8), slices.Repeat([]string{strings.Repeat("s", 300)}, 8)
		r.Annot = map[string]any{"note": strings.Repeat("n", 600)}
		tr.Log(r)
		tr.Close()
		lines := sink.lines()
		if len(lines[1]) > MinRecordBytes {
			t.Errorf("record of %d bytes, bound %d: %s", len(lines[1]), MinRecordBytes, lines[1])
		}
		a, _ := ParseRecord([]byte(lines[1]))
		if a.RecordBytes <= MinRecordBytes || a.Result != ResultFailure || a.Reason != "credentials" ||
			!slices.ContainsFunc(a.Cut, func(c Cut) bool { return c.Field == "annotations" }) ||
			!slices.ContainsFunc(a.Cut, func(c Cut) bool { return c.Field == "groups" && c.Items == 8 && c.Bytes == 2400 }) {
			t.Errorf("shrunk record: %s", lines[1])
		}
		if st := tr.Stats(); st.Shrunk != 1 {
			t.Errorf("shrunk %d, want 1", st.Shrunk)
		}
		vo := VerifyOptions{}
		if key != nil {
			vo.Keys = [][]byte{key}
		}
		mustVerify(t, []string{sink.save(t)}, vo)
	}

	for _, o := range []Options{{MaxRecordBytes: MinRecordBytes - 1}, {MaxFieldBytes: -1}, {MaxListItems: -1}} {
		o.Sink = &memSink{}
		if _, err := New(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// clip's count of a string's encoded size is the encoder's.
func TestClipCountsAsEncoded(t *testing.T) {
	enc := zapcore.NewJSONEncoder(encoderConfig)
	for _, s := range []string{"plain", "quo\"te\\", "\x01\x1f\n\r\t", "é€😀", "\xff\xfebad", strings.Repeat("a\x01é\"\xff", 50)} {
		for n := range 2*len(s) + 8 {
			c, whole := clip(s, n)
			if !strings.HasPrefix(s, c) || whole != (c == s) {
				t.Fatalf("clip(%q, %d) = %q, %v", s, n, c, whole)
			}
			if strings.ToValidUTF8(c, "") != c && !strings.HasSuffix(s[:len(c)], "\xff") && !strings.HasSuffix(s[:len(c)], "\xfe") && utf8.ValidString(s) {
				t.Fatalf("clip(%q, %d) cut a rune: %q", s, n, c)
			}
			buf, err := enc.EncodeEntry(zapcore.Entry{}, []zapcore.Field{{Key: "k", Type: zapcore.StringType, String: c}})
			if err != nil {
				t.Fatal(err)
			}
			if got := encodedValueLen(buf); got > n {
				t.Fatalf("clip(%q, %d) = %q: %d bytes encoded", s, n, c, got)
			}
			if !whole {
				// One more rune would not have fitted.
				_, w := utf8.DecodeRuneInString(s[len(c):])
				if more, _ := clip(s[:len(c)+w], n); more != c {
					t.Fatalf("clip(%q, %d) = %q stops short", s, n, c)
				}
			}
		}
	}
}

// encodedValueLen is the length of the value of {"k":"..."} without quotes.
func encodedValueLen(b *buffer.Buffer) int {
	s := strings.TrimSpace(b.String())
	i := strings.Index(s, `"k":"`)
	return len(s[i+5:]) - len(`"}`)
}

// A record the transport refuses (EMSGSIZE: max_record_bytes set above
// what a datagram holds) does not stop the trail: a notice with its seq
// takes its place and the next records go on.
func TestSyslogOversizeNotice(t *testing.T) {
	srv, addr := udpSyslog(t)
	sink, err := DialSyslog(SyslogOptions{Network: "udp", Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	if m := sink.MaxRecordBytes(); m <= DefaultMaxRecordBytes || m >= maxUDP {
		t.Errorf("MaxRecordBytes %d over UDP", m)
	}
	big := `{"ts":"2026-05-04T08:00:01Z","kind":"auth","v":1,"seq":77,"user":"` + strings.Repeat("x", 70000) + `"}`
	if err := sink.Write([]byte(big + "\n" + `{"ts":"2026-05-04T08:00:01Z","kind":"auth","v":1,"seq":78}` + "\n")); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := srv.wait(t, 2)
	if !strings.Contains(got[0], fmt.Sprintf(" audit.oversize - audit record seq 77 (auth, %d bytes) not sent", len(big))) || !strings.Contains(got[1], `"seq":78`) || sink.Oversized() != 1 {
		t.Errorf("messages %q, oversized %d", got, sink.Oversized())
	}

	// A trail over it keeps its records to what a datagram holds.
	tr, err := New(Options{Sink: sink, MaxRecordBytes: 1 << 20, MaxFieldBytes: 1 << 20, MaxListItems: 100})
	if err != nil {
		t.Fatal(err)
	}
	tr.Log(hostileAuth())
	tr.Close()
	got = srv.wait(t, 5) // audit.start, auth, audit.stop
	if sink.Oversized() != 1 || !strings.Contains(got[3], `"record_bytes":`) {
		t.Errorf("oversized %d; auth record %.200q", sink.Oversized(), got[3])
	}
}
