package imapwire

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

func TestParseResponse(t *testing.T) {
	tests := []struct {
		line   string
		kind   ResponseKind
		tag    string
		status Status
		code   string
		name   string
		num    uint32
		lit    bool // MayHaveLiteral
		err    string
	}{
		{line: "a1 OK [READ-WRITE] SELECT completed\r\n", kind: Tagged, tag: "a1", status: StatusOK, code: "READ-WRITE"},
		{line: "A2 no [TRYCREATE] no such mailbox\r\n", kind: Tagged, tag: "A2", status: StatusNO, code: "TRYCREATE"},
		{line: "A3 BAD\r\n", kind: Tagged, tag: "A3", status: StatusBAD},
		{line: "A3 BAD", kind: Tagged, tag: "A3", status: StatusBAD},
		{line: "A4 OK [CAPABILITY IMAP4rev1 IDLE] done\r\n", kind: Tagged, tag: "A4", status: StatusOK, code: "CAPABILITY"},
		{line: "A5 OK done {5}\r\n", kind: Tagged, tag: "A5", status: StatusOK},
		{line: "* OK [UIDNEXT 4392] Predicted next UID\r\n", kind: Untagged, status: StatusOK, code: "UIDNEXT"},
		{line: "* ok [ALERT] System shutdown in 10 minutes {5}\r\n", kind: Untagged, status: StatusOK, code: "ALERT"},
		{line: "* BYE [UNAVAILABLE] bye\r\n", kind: Untagged, status: StatusBYE, code: "UNAVAILABLE"},
		{line: "* PREAUTH [CAPABILITY IMAP4rev2] hi\r\n", kind: Untagged, status: StatusPREAUTH, code: "CAPABILITY"},
		{line: "* NO disk full\r\n", kind: Untagged, status: StatusNO},
		{line: "* OK [] odd\r\n", kind: Untagged, status: StatusOK},
		{line: "* 12 FETCH (FLAGS (\\Seen) BODY[] {5}\r\n", kind: Untagged, name: "FETCH", num: 12, lit: true},
		{line: "* 4294967295 EXISTS\r\n", kind: Untagged, name: "EXISTS", num: 4294967295, lit: true},
		{line: "* 3 expunge\r\n", kind: Untagged, name: "expunge", num: 3, lit: true},
		{line: "* CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN\r\n", kind: Untagged, name: "CAPABILITY", lit: true},
		{line: "* LIST () \"/\" {5}\r\n", kind: Untagged, name: "LIST", lit: true},
		{line: "* OKAY then\r\n", kind: Untagged, name: "OKAY", lit: true},
		{line: "* SEARCH\r\n", kind: Untagged, name: "SEARCH", lit: true},
		{line: "* FLAGS (\\Seen)\r\n", kind: Untagged, name: "FLAGS", lit: true},
		{line: "+ idling\r\n", kind: Continuation},
		{line: "+\r\n", kind: Continuation},
		{line: "+ {5}\r\n", kind: Continuation},
		{line: "+", kind: Continuation},
		{line: "", err: "empty response"},
		{line: "\r\n", err: "bad tag in response"},
		{line: "+x\r\n", err: `"+" not followed by SP`},
		{line: "*\r\n", err: `"*" not followed by SP`},
		{line: "* \r\n", err: "untagged response without name"},
		{line: "* 12\r\n", err: "bad message number"},
		{line: "* 12 \r\n", err: "untagged response without name"},
		{line: "* 4294967296 EXISTS\r\n", err: "bad message number"},
		{line: "* 1x FETCH\r\n", err: "bad message number"},
		{line: "A1 FOO bar\r\n", err: "tagged response without OK, NO or BAD"},
		{line: "A1\r\n", err: "bad tag in response"},
		{line: "HTTP/1.1 200 OK\r\n", err: "tagged response without OK, NO or BAD"},
		{line: "\x16\x03\x01\x02\x00", err: "bad tag in response"},
	}
	for _, tt := range tests {
		r, err := ParseResponse([]byte(tt.line))
		if tt.err != "" {
			if se, ok := err.(*SyntaxError); !ok || se.Msg != tt.err {
				t.Errorf("%q: error %v, want %q", tt.line, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.line, err)
			continue
		}
		if r.Kind != tt.kind || string(r.Tag) != tt.tag || r.Status != tt.status || string(r.Code) != tt.code ||
			string(r.Name) != tt.name || r.Num != tt.num || r.MayHaveLiteral() != tt.lit {
			t.Errorf("%q: got %v tag=%q %v code=%q name=%q num=%d lit=%v", tt.line, r.Kind, r.Tag, r.Status, r.Code, r.Name, r.Num, r.MayHaveLiteral())
		}
	}
}

func TestFilterCapabilities(t *testing.T) {
	drop := func(c []byte) bool {
		u := strings.ToUpper(string(c))
		return u == "STARTTLS" || u == "LOGINDISABLED" || strings.HasPrefix(u, "AUTH=") || strings.HasPrefix(u, "COMPRESS=")
	}
	tests := []struct {
		line, want string // want "" means unchanged
	}{
		{"* CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN LOGINDISABLED IDLE\r\n", "* CAPABILITY IMAP4rev1 IDLE\r\n"},
		{"* capability STARTTLS IMAP4rev1\r\n", "* capability IMAP4rev1\r\n"},
		{"* CAPABILITY IMAP4rev1  IDLE  AUTH=PLAIN \r\n", "* CAPABILITY IMAP4rev1  IDLE \r\n"},
		{"* CAPABILITY AUTH=PLAIN\r\n", "* CAPABILITY\r\n"},
		{"* CAPABILITY IMAP4rev1 AUTH=PLAIN\n", "* CAPABILITY IMAP4rev1\n"},
		{"* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN] Dovecot ready. [x] AUTH=PLAIN\r\n", "* OK [CAPABILITY IMAP4rev1] Dovecot ready. [x] AUTH=PLAIN\r\n"},
		{"a1 OK [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE MOVE] Logged in\r\n", "a1 OK [CAPABILITY IMAP4rev1 MOVE] Logged in\r\n"},
		{"* PREAUTH [capability AUTH=PLAIN IMAP4rev2] hi\r\n", "* PREAUTH [capability IMAP4rev2] hi\r\n"},
		{"a1 NO [CAPABILITY STARTTLS]\r\n", "a1 NO [CAPABILITY]\r\n"},
		// unchanged
		{"* CAPABILITY IMAP4rev1 IDLE\r\n", ""},
		{"* CAPABILITY\r\n", ""},
		{"* OK [CAPABILITY IMAP4rev1 IDLE] ready\r\n", ""},
		{"* OK [CAPABILITY IMAP4rev1 STARTTLS ready\r\n", ""}, // no "]"
		{"* OK ready STARTTLS\r\n", ""},
		{"* OK [ALERT] STARTTLS\r\n", ""},
		{"* 1 FETCH (STARTTLS)\r\n", ""},
		{"* CAPABILITYX STARTTLS\r\n", ""},
		{"+ STARTTLS\r\n", ""},
		{"garbage\r\n", ""},
	}
	for _, tt := range tests {
		prefix := []byte("keep:")
		out, changed := FilterCapabilities(prefix, []byte(tt.line), drop)
		if tt.want == "" {
			if changed || string(out) != "keep:" {
				t.Errorf("%q: changed to %q", tt.line, out)
			}
			continue
		}
		if !changed || string(out) != "keep:"+tt.want {
			t.Errorf("%q:\n got %q %v\nwant %q", tt.line, out, changed, tt.want)
		}
	}
	// drop is called once per capability, in order.
	var seen []string
	FilterCapabilities(nil, []byte("* CAPABILITY A B C\r\n"), func(c []byte) bool {
		seen = append(seen, string(c))
		return string(c) == "A"
	})
	if strings.Join(seen, ",") != "A,B,C" {
		t.Errorf("drop called with %v", seen)
	}
}

func TestResponseAllocs(t *testing.T) {
	lines := [][]byte{
		[]byte("* 12 FETCH (UID 12 FLAGS (\\Seen))\r\n"),
		[]byte("A1 OK [CAPABILITY IMAP4rev1 IDLE] done\r\n"),
		[]byte("* CAPABILITY IMAP4rev1 STARTTLS\r\n"),
		[]byte("garbage\r\n"),
	}
	buf := make([]byte, 0, 256)
	drop := func(c []byte) bool { return bytes.Equal(c, []byte("STARTTLS")) }
	allocs := testing.AllocsPerRun(100, func() {
		for _, l := range lines {
			r, _ := ParseResponse(l)
			_ = r.MayHaveLiteral()
			buf, _ = FilterCapabilities(buf[:0], l, drop)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocs, want 0", allocs)
	}
}

// A brace group at the end of resp-text is text whatever it holds; at the
// end of untagged data it is a literal or a syntax error (RFC 9051 §7.1).
func TestResponseMarker(t *testing.T) {
	for _, c := range []struct {
		line    string
		lit     bool
		wantErr bool
	}{
		{"* OK text x{y}\r\n", false, false},
		{"* NO text x{}\r\n", false, false},
		{"a1 NO text x{99999999999999999999}\r\n", false, false},
		{"a1 OK text {5}\r\n", false, false},
		{"* BYE x{5+}\r\n", false, false},
		{"+ go x{y}\r\n", false, false},
		{"* PREAUTH x{1a}\r\n", false, false},
		{"* 1 FETCH (BODY[] {5}\r\n", true, false},
		{"* 1 FETCH (BODY[] {x}\r\n", false, true},
		{"* LIST () \"/\" {}\r\n", false, true},
		{"* SEARCH 1 {99999999999999999999}\r\n", false, true},
	} {
		s := NewScanner(bufio.NewReader(strings.NewReader(c.line+"* 2 EXISTS\r\n")), 0)
		line, _, ok, err := s.ReadLine()
		r, perr := ParseResponse(line)
		if perr != nil {
			t.Fatalf("%q: %v", c.line, perr)
		}
		ok, err = s.ResponseMarker(&r, ok, err)
		if ok != c.lit || (err != nil) != c.wantErr || err != nil && !IsMarkerError(err) {
			t.Errorf("%q: literal %v, error %v; want literal %v, error %v", c.line, ok, err, c.lit, c.wantErr)
		}
		if ok {
			continue
		}
		// Nothing left open: the next line reads.
		if next, _, _, err := s.ReadLine(); err != nil || string(next) != "* 2 EXISTS\r\n" {
			t.Errorf("%q: next line %q, %v", c.line, next, err)
		}
	}
}
