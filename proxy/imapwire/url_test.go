package imapwire

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// TestURLSource: the one form of CATENATE URL the proxy reads gives its
// mailbox, canonical like any name; every other form is refused.
func TestURLSource(t *testing.T) {
	slash := &Context{State: StateAuth, Delim: '/'}
	dot := &Context{State: StateAuth, Delim: '.'}
	utf8 := &Context{State: StateAuth, Delim: '/', UTF8: true}
	tests := []struct {
		ctx  *Context
		url  string
		want string
		err  error
	}{
		{slash, "/Legal/;UID=1", "Legal", nil},
		{slash, "/Legal/;uid=1", "Legal", nil}, // RFC 5234: keywords are case-insensitive
		{slash, "/inbox/;UID=4294967295", "INBOX", nil},
		{slash, "/Legal/Sub;UIDVALIDITY=1234/;UID=20/;SECTION=1.2.MIME/;PARTIAL=0.1024", "Legal/Sub", nil},
		{slash, "/Legal/;UID=20/;PARTIAL=512", "Legal", nil},
		{slash, "/Legal/;UID=20/;SECTION=HEADER.FIELDS%20(FROM)", "Legal", nil},
		{slash, "/Le%67al/;UID=1", "Legal", nil},
		{slash, "/Entw%26APw-rfe/;UID=1", "", errURLName}, // "&" after decoding: mUTF-7 or UTF-8?
		{slash, "/Entw&APw-rfe/;UID=1", "", errURLName},
		{slash, "/&AOQ-&AOQ-/;UID=1", "", errURLName},
		{slash, "/Entw%C3%BCrfe/;UID=1", "", errURLName},
		{utf8, "/Entw%C3%BCrfe/;UID=1", "Entwürfe", nil},
		{utf8, "/Entw%FCrfe/;UID=1", "", errNameUTF8},
		{dot, "/INBOX.Legal/;UID=1", "INBOX.Legal", nil},
		{dot, "/user.alice.Legal/;UID=1", "user.alice.Legal", nil},
		// Names the name model refuses stay refused.
		{slash, "/Legal/../INBOX/;UID=1", "", errNameDots},
		{slash, "/Legal%0A/;UID=1", "", errNameUTF7},
		{utf8, "/Legal%0A/;UID=1", "", errNameCTL},
		// "/" other than as the delimiter between two levels: Cyrus
		// strips a trailing one before ";UIDVALIDITY=" (and reads
		// INBOX.Legal), a "." hierarchy has no "/" level at all.
		{dot, "/INBOX.Legal/;UIDVALIDITY=1/;UID=1", "", errURLSlash},
		{dot, "/INBOX.Legal//;UID=1", "", errURLSlash},
		{dot, "/INBOX.Le/gal/;UID=1", "", errURLSlash},
		{dot, "/INBOX.Legal%2F/;UID=1", "", errURLPctDelim},
		{&Context{State: StateAuth}, "/Le/gal/;UID=1", "", errURLSlash},
		{slash, "/Legal/;UIDVALIDITY=1/;UID=1", "", errURLSlash},
		{slash, "/Legal//;UID=1", "", errURLSlash},
		{slash, "/Legal//Sub/;UID=1", "", errURLSlash},
		// List-wildcards: a pattern to some backends (named for the
		// audit of the refusal).
		{dot, "/INBOX.*/;UID=1", "INBOX.*", ErrNameWildcard},
		{dot, "/INBOX.%2A;UIDVALIDITY=1/;UID=1", "INBOX.*", ErrNameWildcard},
		{slash, "/Legal%25/;UID=1", "Legal%", ErrNameWildcard},
		// Percent-encoded separators: another name to a server that
		// decodes before it splits.
		{slash, "/Legal%2FSub/;UID=1", "", errURLPctDelim},
		{slash, "/Legal%3bUID=1/;UID=1", "", errURLPctDelim},
		{slash, "/Legal%2/;UID=1", "", errURLPct},
		{slash, "/Legal%zz/;UID=1", "", errURLPct},
		{slash, "/Le gal/;UID=1", "", errURLChar},
		{slash, "/Le\"gal/;UID=1", "", errURLChar},
		// Not a message of this server.
		{slash, "imap://bob@other.example/Legal/;UID=1", "", errURLAbsolute},
		{slash, "IMAP://mail/Legal/;UID=1", "", errURLAbsolute},
		{slash, "//other.example/Legal/;UID=1", "", errURLAbsolute},
		{slash, "Legal/;UID=1", "", errURLForm},
		{slash, ";UID=1", "", errURLForm},
		{slash, "/;UID=1", "", errURLForm},
		{slash, "", "", errURLForm},
		{slash, "/", "", errURLForm},
		{slash, "/Legal", "", errURLForm},
		{slash, "/Legal/", "", errURLForm},
		{slash, "/Legal;UID=1", "", errURLForm},
		{slash, "/Legal/;UID=0", "", errURLNumber},
		{slash, "/Legal/;UID=01", "", errURLNumber},
		{slash, "/Legal/;UID=4294967296", "", errURLNumber},
		{slash, "/Legal/;UID=", "", errURLNumber},
		{slash, "/Legal/;UID=1x", "", errURLForm},
		{slash, "/Legal;UIDVALIDITY=0/;UID=1", "", errURLNumber},
		{slash, "/Legal/;UID=1/;PARTIAL=01", "", errURLNumber},
		{slash, "/Legal/;UID=1/;PARTIAL=0.0", "", errURLNumber},
		{slash, "/Legal/;UID=1/;SECTION=", "", errURLForm},
		{slash, "/Legal/;UID=1/;PARTIAL=1/;SECTION=TEXT", "", errURLForm},
		{slash, "/Legal/;UID=1/;UID=2", "", errURLForm},
		{slash, "/Legal/;UID=1;foo", "", errURLForm},
		// URLAUTH (RFC 4467): authorisation the proxy cannot check.
		{slash, "/Legal/;UID=1;EXPIRE=2030-01-01T00:00:00Z;URLAUTH=anonymous:internal:91354a473744909de610943775f92038", "", errURLAuth},
		{slash, "/Legal/;UID=1;urlauth=anonymous", "", errURLAuth},
		{slash, "/Legal/;UID=1/;SECTION=TEXT;URLAUTH=user+bob", "", errURLAuth},
	}
	for _, tt := range tests {
		got, err := tt.ctx.URLSource(tt.url)
		if got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("URLSource(%q) = %q, %v; want %q, %v", tt.url, got, err, tt.want, tt.err)
		}
	}
}

// TestCatenateURLRefused: a URL the proxy cannot read makes the APPEND
// BAD, before anything is forwarded; a TEXT part alone names no source.
func TestCatenateURLRefused(t *testing.T) {
	ctx := &Context{State: StateAuth, Delim: '/', Caps: ^Cap(0)}
	for _, u := range []string{"imap://other/Legal/;UID=1", "/Legal/;UID=1;URLAUTH=anonymous", "/Legal", "/Le%2Fgal/;UID=1"} {
		var p CommandParser
		if err := p.Line([]byte(fmt.Sprintf("a APPEND Keep CATENATE (URL %q)\r\n", u)), Literal{}, false); err != nil {
			t.Fatal(err)
		}
		var se *SyntaxError
		if err := p.Check(ctx); !errors.As(err, &se) {
			t.Errorf("APPEND CATENATE (URL %q): Check = %v, want a syntax error (BAD)", u, err)
		}
	}
	var p CommandParser
	p.Line([]byte("a APPEND Keep CATENATE (URL \"/Legal/;UID=1\" URL \"/legal/;UID=2\" URL \"/Legal/;UID=3\")\r\n"), Literal{}, false)
	if err := p.Check(ctx); err != nil {
		t.Fatal(err)
	}
	c := p.Command()
	if strings.Join(c.Sources(), ",") != "Legal,legal" || c.AppendURLs != 3 || !c.Effects.Has(EffReadContent) || c.ContentItems {
		t.Errorf("sources %q, %d urls, effects %+v", c.Sources(), c.AppendURLs, c.Effects)
	}
}

// FuzzURLSource: URLSource never panics; what it accepts is of the one
// form (it starts with "/", names a UID, carries no URLAUTH), its name is
// canonical, and the name percent-encoded back reads the same.
func FuzzURLSource(f *testing.F) {
	for _, s := range []string{"/Legal/;UID=1", "/a%2Fb/;UID=1", "/x;UIDVALIDITY=3/;UID=2/;SECTION=1.TEXT/;PARTIAL=0.10",
		"imap://h/x/;UID=1", "/x/;UID=1;URLAUTH=a", "/Entw%C3%BCrfe/;uid=9", "/INBOX.a/;UID=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, u string) {
		for i := range fuzzCtxs {
			ctx := &fuzzCtxs[i]
			name, err := ctx.URLSource(u)
			if err != nil {
				var se *SyntaxError
				if !errors.As(err, &se) {
					t.Fatalf("URLSource(%q): %v is not a *SyntaxError", u, err)
				}
				continue
			}
			up := strings.ToUpper(u)
			if u[0] != '/' || !strings.Contains(up, "/;UID=") || strings.Contains(up, "URLAUTH") {
				t.Fatalf("URLSource(%q) accepted %q", u, name)
			}
			if again, err := ctx.Canonical(name); err != nil || again != name {
				t.Fatalf("URLSource(%q) = %q, not canonical (%q, %v)", u, name, again, err)
			}
			enc := strings.ReplaceAll(url.PathEscape(name), "%2F", "/")
			if back, err := ctx.URLSource("/" + enc + "/;UID=1"); err != nil || back != name {
				t.Fatalf("URLSource(%q) = %q; encoded back %q reads %q, %v", u, name, enc, back, err)
			}
		}
	})
}

// TestURLAuthCommandsRefused: the commands of URLAUTH (RFC 4467) mint
// and redeem URLs whose reads the proxy would never see; they are not in
// the table, so the proxy answers them BAD, and the capability is not
// offered.
func TestURLAuthCommandsRefused(t *testing.T) {
	ctx := &Context{State: StateSelected, Delim: '/', Caps: ^Cap(0)}
	for _, line := range []string{
		`a GENURLAUTH "imap://alice@h/Legal/;UID=1;URLAUTH=anonymous" INTERNAL`,
		`a URLFETCH "imap://alice@h/Legal/;UID=1;URLAUTH=anonymous:internal:0123"`,
		`a RESETKEY`,
	} {
		var p CommandParser
		if err := p.Line([]byte(line+"\r\n"), Literal{}, false); err != nil {
			t.Fatal(err)
		}
		if err := p.Check(ctx); !errors.Is(err, errUnknownCommand) {
			t.Errorf("%s: Check = %v, want the unknown command's BAD", line, err)
		}
	}
	for _, c := range []string{"URLAUTH", "URLAUTH=BINARY"} {
		if _, ok := RelayCapability([]byte(c)); ok {
			t.Errorf("capability %s is relayed", c)
		}
	}
}
