package imapwire

import (
	"bufio"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// parseWire feeds one command, as sent on the wire, through a Scanner and a
// CommandParser the way the proxy does: message literals are streamed,
// others buffered. It returns the messages seen by PendingIsMessage.
func parseWire(p *CommandParser, wire string) (msgs []bool, err error) {
	s := NewScanner(bufio.NewReaderSize(strings.NewReader(wire), 64), 0)
	for {
		line, lit, ok, err := s.ReadLine()
		if err != nil && !isSyntax(err) {
			return msgs, err
		}
		if err := p.Line(line, lit, ok); err != nil {
			return msgs, err
		}
		if err != nil {
			return msgs, err
		}
		if !ok {
			return msgs, nil
		}
		msgs = append(msgs, p.PendingIsMessage())
		if p.PendingIsMessage() {
			if err := s.DiscardLiteral(); err != nil {
				return msgs, err
			}
			p.LiteralStreamed(lit.Size)
			continue
		}
		b, err := s.ReadLiteral(nil, 4096)
		if err != nil {
			return msgs, err
		}
		p.Literal(b)
	}
}

// argsString renders arguments compactly: atoms bare, quoted strings
// quoted, literals {n}"content" or {n}streamed, lists in parentheses.
func argsString(args []Arg) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		switch a.Kind {
		case ArgAtom:
			b.WriteString(a.Value)
		case ArgQuoted:
			b.WriteString(strconv.Quote(a.Value))
		case ArgLiteral:
			b.WriteString("{" + strconv.FormatInt(a.Size, 10) + "}")
			if a.Streamed {
				b.WriteString("streamed")
			} else {
				b.WriteString(strconv.Quote(a.Value))
			}
		case ArgList:
			b.WriteString("(" + argsString(a.List) + ")")
		default:
			b.WriteString("?")
		}
	}
	return b.String()
}

func TestCommandParser(t *testing.T) {
	tests := []struct {
		name string
		wire string
		args string  // argsString of Args
		want Command // fields compared, except Args
		msgs []bool  // PendingIsMessage at each literal
	}{
		{
			name: "noop", wire: "a001 NOOP\r\n",
			want: Command{Tag: "a001", Name: "NOOP"},
		},
		{
			name: "lower case name", wire: "a1 select INBOX\r\n", args: "INBOX",
			want: Command{Tag: "a1", Name: "SELECT", Mailbox: "INBOX"},
		},
		{
			name: "tag with specials", wire: "A.1-x]y select INBOX\r\n", args: "INBOX",
			want: Command{Tag: "A.1-x]y", Name: "SELECT", Mailbox: "INBOX"},
		},
		{
			name: "select quoted with escapes", wire: `A1 SELECT "a \"b\" \\c \d"` + "\r\n", args: `"a \"b\" \\c \\d"`,
			want: Command{Tag: "A1", Name: "SELECT", Mailbox: `a "b" \c \d`},
		},
		{
			name: "select with options", wire: "A1 SELECT INBOX (CONDSTORE)\r\n", args: "INBOX (CONDSTORE)",
			want: Command{Tag: "A1", Name: "SELECT", Mailbox: "INBOX"},
		},
		{
			name: "quoted 8-bit", wire: "A1 CREATE \"caf\xc3\xa9\"\r\n", args: `"café"`,
			want: Command{Tag: "A1", Name: "CREATE", Mailbox: "café"},
		},
		{
			name: "mailbox literal", wire: "A1 SELECT {5}\r\nIN BX\r\n", args: `{5}"IN BX"`,
			want: Command{Tag: "A1", Name: "SELECT", Mailbox: "IN BX", Literals: 1, LiteralBytes: 5},
			msgs: []bool{false},
		},
		{
			name: "login literals", wire: "A1 LOGIN {5+}\r\nalice {6}\r\nsecret\r\n", args: `{5}"alice" {6}"secret"`,
			want: Command{Tag: "A1", Name: "LOGIN", Literals: 2, LiteralBytes: 11},
			msgs: []bool{false, false},
		},
		{
			name: "uid fetch", wire: "A1 UID FETCH 1:* (FLAGS UID)\r\n", args: "1:* (FLAGS UID)",
			want: Command{Tag: "A1", Name: "FETCH", UID: true, Set: "1:*", SetCount: -1, FetchItems: []string{"FLAGS", "UID"}},
		},
		{
			name: "uid lower", wire: "A1 uid fetch 4,2:3 fast\r\n", args: "4,2:3 fast",
			want: Command{Tag: "A1", Name: "FETCH", UID: true, Set: "4,2:3", SetCount: 3, FetchItems: []string{"FAST"}},
		},
		{
			name: "fetch sections",
			wire: "A1 FETCH 1:10 (body.peek[header.fields (From To)]<0.512> BODY[1.2.MIME] BINARY.PEEK[1] RFC822.SIZE) (CHANGEDSINCE 5)\r\n",
			args: "1:10 (body.peek[header.fields (From To)]<0.512> BODY[1.2.MIME] BINARY.PEEK[1] RFC822.SIZE) (CHANGEDSINCE 5)",
			want: Command{Tag: "A1", Name: "FETCH", Set: "1:10", SetCount: 10, FetchItems: []string{
				"BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.512>", "BODY[1.2.MIME]", "BINARY.PEEK[1]", "RFC822.SIZE"}},
		},
		{
			name: "fetch section with quoted ]", wire: `A1 FETCH 1 BODY[HEADER.FIELDS ("a]b")]` + "\r\n",
			args: `1 BODY[HEADER.FIELDS ("a]b")]`,
			want: Command{Tag: "A1", Name: "FETCH", Set: "1", SetCount: 1, FetchItems: []string{`BODY[HEADER.FIELDS ("A]B")]`}},
		},
		{
			name: "fetch section with literal", wire: "A1 FETCH 1 (UID BODY[HEADER.FIELDS ({4}\r\nFrom To)]<0.10>)\r\n",
			args: "1 (UID BODY[HEADER.FIELDS (From To)]<0.10>)",
			want: Command{Tag: "A1", Name: "FETCH", Set: "1", SetCount: 1, Literals: 1, LiteralBytes: 4,
				FetchItems: []string{"UID", "BODY[HEADER.FIELDS (FROM TO)]<0.10>"}},
			msgs: []bool{false},
		},
		{
			name: "unbalanced bracket is an atom char", wire: "A1 CREATE a[b\r\n", args: "a[b",
			want: Command{Tag: "A1", Name: "CREATE", Mailbox: "a[b"},
		},
		{
			name: "gmail mailbox atom", wire: "A1 SELECT [Gmail]/All\r\n", args: "[Gmail]/All",
			want: Command{Tag: "A1", Name: "SELECT", Mailbox: "[Gmail]/All"},
		},
		{
			name: "store silent", wire: "A1 STORE 2:4 +FLAGS.SILENT (\\Deleted $Junk)\r\n", args: `2:4 +FLAGS.SILENT (\Deleted $Junk)`,
			want: Command{Tag: "A1", Name: "STORE", Set: "2:4", SetCount: 3, StoreOp: "+FLAGS.SILENT", StoreFlags: []string{`\Deleted`, "$Junk"}},
		},
		{
			name: "uid store unchangedsince", wire: "A1 UID STORE 7 (UNCHANGEDSINCE 320162338) -flags \\Seen \\Flagged\r\n",
			args: `7 (UNCHANGEDSINCE 320162338) -flags \Seen \Flagged`,
			want: Command{Tag: "A1", Name: "STORE", UID: true, Set: "7", SetCount: 1, StoreOp: "-FLAGS", StoreFlags: []string{`\Seen`, `\Flagged`}},
		},
		{
			name: "copy", wire: "A1 COPY 1:3,2:5 \"Saved Items\"\r\n", args: `1:3,2:5 "Saved Items"`,
			want: Command{Tag: "A1", Name: "COPY", Set: "1:3,2:5", SetCount: 5, Destination: "Saved Items"},
		},
		{
			name: "uid move searchres", wire: "A1 UID MOVE $ Trash\r\n", args: "$ Trash",
			want: Command{Tag: "A1", Name: "MOVE", UID: true, Set: "$", SetCount: -1, Destination: "Trash"},
		},
		{
			name: "move literal destination", wire: "A1 MOVE 5 {5}\r\nTrash\r\n", args: `5 {5}"Trash"`,
			want: Command{Tag: "A1", Name: "MOVE", Set: "5", SetCount: 1, Destination: "Trash", Literals: 1, LiteralBytes: 5},
			msgs: []bool{false},
		},
		{
			name: "rename", wire: "A1 RENAME Old \"New Name\"\r\n", args: `Old "New Name"`,
			want: Command{Tag: "A1", Name: "RENAME", Mailbox: "Old", Destination: "New Name"},
		},
		{
			name: "uid expunge", wire: "A1 UID EXPUNGE 3000:3002\r\n", args: "3000:3002",
			want: Command{Tag: "A1", Name: "EXPUNGE", UID: true, Set: "3000:3002", SetCount: 3},
		},
		{
			name: "uid search", wire: "A1 UID SEARCH CHARSET UTF-8 SUBJECT {5}\r\ncafé\r\n", args: `CHARSET UTF-8 SUBJECT {5}"café"`,
			want: Command{Tag: "A1", Name: "SEARCH", UID: true, Literals: 1, LiteralBytes: 5},
			msgs: []bool{false},
		},
		{
			name: "list", wire: "A1 LIST \"\" \"%\"\r\n", args: `"" "%"`,
			want: Command{Tag: "A1", Name: "LIST", Reference: "", Mailbox: "%"},
		},
		{
			name: "list extended", wire: "A1 LIST (SUBSCRIBED) \"ref/\" (\"a*\" b) RETURN (CHILDREN)\r\n",
			args: `(SUBSCRIBED) "ref/" ("a*" b) RETURN (CHILDREN)`,
			want: Command{Tag: "A1", Name: "LIST", Reference: "ref/", Mailbox: "a*"},
		},
		{
			name: "lsub", wire: "A1 LSUB #news. comp.mail.*\r\n", args: "#news. comp.mail.*",
			want: Command{Tag: "A1", Name: "LSUB", Reference: "#news.", Mailbox: "comp.mail.*"},
		},
		{
			name: "status", wire: "A1 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n", args: "blurdybloop (UIDNEXT MESSAGES)",
			want: Command{Tag: "A1", Name: "STATUS", Mailbox: "blurdybloop"},
		},
		{
			name: "getmetadata options", wire: "A1 GETMETADATA (MAXSIZE 1024) INBOX /private/comment\r\n",
			args: "(MAXSIZE 1024) INBOX /private/comment",
			want: Command{Tag: "A1", Name: "GETMETADATA", Mailbox: "INBOX"},
		},
		{
			name: "setacl", wire: "A1 SETACL Shared fred +rw\r\n", args: "Shared fred +rw",
			want: Command{Tag: "A1", Name: "SETACL", Mailbox: "Shared"},
		},
		{
			name: "append", wire: "A1 APPEND saved-messages (\\Seen) \"05-jan-1999 20:55:23 +0000\" {11}\r\nHello World\r\n",
			args: `saved-messages (\Seen) "05-jan-1999 20:55:23 +0000" {11}streamed`,
			want: Command{Tag: "A1", Name: "APPEND", Mailbox: "saved-messages", Literals: 1, LiteralBytes: 11},
			msgs: []bool{true},
		},
		{
			name: "append literal8 non-sync", wire: "A1 APPEND INBOX ~{3+}\r\n\x00\x01\x02\r\n", args: `INBOX {3}streamed`,
			want: Command{Tag: "A1", Name: "APPEND", Mailbox: "INBOX", Literals: 1, LiteralBytes: 3},
			msgs: []bool{true},
		},
		{
			name: "append mailbox literal", wire: "A1 APPEND {5}\r\nDraft (\\Draft) {3}\r\nabc\r\n", args: `{5}"Draft" (\Draft) {3}streamed`,
			want: Command{Tag: "A1", Name: "APPEND", Mailbox: "Draft", Literals: 2, LiteralBytes: 8},
			msgs: []bool{false, true},
		},
		{
			name: "multiappend", wire: "A1 APPEND INBOX (\\Seen) {3}\r\none (\\Draft) \"01-Jan-2024 00:00:00 +0000\" {3}\r\ntwo {5+}\r\nthree\r\n",
			args: `INBOX (\Seen) {3}streamed (\Draft) "01-Jan-2024 00:00:00 +0000" {3}streamed {5}streamed`,
			want: Command{Tag: "A1", Name: "APPEND", Mailbox: "INBOX", Literals: 3, LiteralBytes: 11},
			msgs: []bool{true, true, true},
		},
		{
			name: "catenate", wire: "A1 APPEND Drafts CATENATE (URL {9}\r\n/a;UID=20 TEXT {4}\r\nbody URL \"/b\")\r\n",
			args: `Drafts CATENATE (URL {9}"/a;UID=20" TEXT {4}streamed URL "/b")`,
			want: Command{Tag: "A1", Name: "APPEND", Mailbox: "Drafts", Literals: 2, LiteralBytes: 13},
			msgs: []bool{false, true},
		},
		{
			name: "utf8 append", wire: "A1 APPEND INBOX UTF8 (~{3}\r\nabc)\r\n", args: `INBOX UTF8 ({3}streamed)`,
			want: Command{Tag: "A1", Name: "APPEND", Mailbox: "INBOX", Literals: 1, LiteralBytes: 3},
			msgs: []bool{true},
		},
		{
			name: "nested lists", wire: "A1 X ((a) ((b c)) ()) d\r\n", args: "((a) ((b c)) ()) d",
			want: Command{Tag: "A1", Name: "X"},
		},
		{
			name: "extra spaces tolerated", wire: "A1 SELECT  INBOX \r\n", args: "INBOX",
			want: Command{Tag: "A1", Name: "SELECT", Mailbox: "INBOX"},
		},
		{
			name: "zero literal", wire: "A1 LOGIN {0}\r\n {0}\r\n\r\n", args: `{0}"" {0}""`,
			want: Command{Tag: "A1", Name: "LOGIN", Literals: 2},
			msgs: []bool{false, false},
		},
	}
	var p CommandParser
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.Reset() // one parser for all: Reset must leave nothing behind
			msgs, err := parseWire(&p, tt.wire)
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if !reflect.DeepEqual(msgs, tt.msgs) {
				t.Errorf("PendingIsMessage = %v, want %v", msgs, tt.msgs)
			}
			c := p.Command()
			if got := argsString(c.Args); got != tt.args {
				t.Errorf("args:\n got %s\nwant %s", got, tt.args)
			}
			got := *c
			got.Args = nil
			if len(got.FetchItems) == 0 {
				got.FetchItems = nil
			}
			if len(got.StoreFlags) == 0 {
				got.StoreFlags = nil
			}
			want := tt.want
			want.Complete = true
			if !reflect.DeepEqual(got, want) {
				t.Errorf("command:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestCommandParserErrors(t *testing.T) {
	tests := []struct {
		wire, err string
	}{
		{"\r\n", "empty command line"},
		{"A1\r\n", "missing command name"},
		{"A1 \r\n", "missing command name"},
		{"A+1 NOOP\r\n", "bad character in tag"},
		{"A*1 NOOP\r\n", "bad character in tag"},
		{"\"A1\" NOOP\r\n", "bad character in tag"},
		{" A1 NOOP\r\n", "bad character in tag"},
		{"A1 NO(OP\r\n", "bad character in command name"},
		{"A1 UID\r\n", "UID without command"},
		{"A1 UID \r\n", "UID without command"},
		{"A1 SELECT \"INBOX\r\n", "unterminated quoted string"},
		{"A1 SELECT \"IN\\\"\r\n", "unterminated quoted string"},
		{"A1 SELECT \"a\x00b\"\r\n", "NUL, CR or LF in quoted string"},
		{"A1 FETCH 1 (FLAGS))\r\n", "unexpected ')'"},
		{"A1 FETCH 1 (FLAGS\r\n", "unterminated list"},
		{"A1 FETCH 1 FLAGS(UID)\r\n", "missing SP between arguments"},
		{"A1 SELECT \"a\"\"b\"\r\n", "missing SP between arguments"},
		{"A1 LOGIN {5} x\r\n", "unexpected '{' (a literal marker must end the line)"},
		{"A1 LOGIN a{3}\r\nabc\r\n", "missing SP before literal"},
		{"A1 LOGIN {3}\r\nabcdef\r\n", "missing SP after literal"},
		{"A1 X {1a}\r\n", "unexpected '{' (a literal marker must end the line)"},
		{"A1 SELECT a\x01b\r\n", "control character in command"},
		{"A1 X " + strings.Repeat("(", 33) + strings.Repeat(")", 33) + "\r\n", "lists nested too deep"},
		{"A1 X" + strings.Repeat(" a", 10001) + "\r\n", "too many arguments"},
		{"A1 FETCH 1 BODY[HEADER.FIELDS ({4}\r\nFrom\r\n", "unterminated '['"},
	}
	for _, tt := range tests {
		var p CommandParser
		_, err := parseWire(&p, tt.wire)
		var se *SyntaxError
		if !errors.As(err, &se) || se.Msg != tt.err {
			t.Errorf("%.40q: error %v, want %q", tt.wire, err, tt.err)
		}
		// Sticky, and Command still answers.
		if err2 := p.Line([]byte("A2 NOOP\r\n"), Literal{}, false); err2 != err {
			t.Errorf("%.40q: error not sticky: %v", tt.wire, err2)
		}
		_ = p.Command()
	}
}

func TestCommandParserMisuse(t *testing.T) {
	var p CommandParser
	p.Literal([]byte("x"))
	if err := p.Line([]byte("A1 NOOP\r\n"), Literal{}, false); err == nil {
		t.Error("literal without announcement accepted")
	}
	p.Reset()
	if err := p.Line([]byte("A1 LOGIN {3}\r\n"), Literal{Size: 3}, true); err != nil {
		t.Fatal(err)
	}
	if err := p.Line([]byte(" x\r\n"), Literal{}, false); err == nil {
		t.Error("line accepted before the literal was fed")
	}
	p.Reset()
	p.Line([]byte("A1 NOOP\r\n"), Literal{}, false)
	if err := p.Line([]byte("A2 NOOP\r\n"), Literal{}, false); err == nil {
		t.Error("line accepted after the end of the command")
	}
	p.Reset()
	if err := p.Line([]byte("A1 NOOP\r\n"), Literal{Size: 3}, true); err == nil {
		t.Error("hasLit without marker accepted")
	}
}

func TestCommandIncomplete(t *testing.T) {
	// At a synchronizing literal the proxy asks the policy with what is
	// known so far (DESIGN §3).
	var p CommandParser
	if err := p.Line([]byte("A1 UID COPY 1:4 {5}\r\n"), Literal{Size: 5}, true); err != nil {
		t.Fatal(err)
	}
	c := p.Command()
	if c.Complete || c.Name != "COPY" || !c.UID || c.Set != "1:4" || c.SetCount != 4 || c.Destination != "" {
		t.Fatalf("partial command %+v", c)
	}
	p.Literal([]byte("Trash"))
	p.Line([]byte("\r\n"), Literal{}, false)
	if c := p.Command(); !c.Complete || c.Destination != "Trash" {
		t.Fatalf("complete command %+v", c)
	}

	p.Reset()
	p.Line([]byte("A1 APPEND Drafts CATENATE (TEXT {3}\r\n"), Literal{Size: 3}, true)
	if c := p.Command(); c.Mailbox != "Drafts" || !p.PendingIsMessage() {
		t.Fatalf("catenate: %+v %v", c, p.PendingIsMessage())
	}
}

func TestSetCount(t *testing.T) {
	tests := []struct {
		set  string
		n    int64
		fail bool
	}{
		{"1", 1, false},
		{"1:5", 5, false},
		{"5:1", 5, false},
		{"1:5,7,9:10", 8, false},
		{"1:5,3:7", 7, false},
		{"1,1,1", 1, false},
		{"1:4294967295", 4294967295, false},
		{"1:4294967295,1:4294967295", 4294967295, false},
		{"1:*", -1, false},
		{"*", -1, false},
		{"1,*:3", -1, false},
		{"$", -1, false},
		{strings.Repeat("1,", 100) + "2", 2, false},
		{"", 0, true},
		{"0", 0, true},
		{"0:5", 0, true},
		{"01", 0, true},
		{"4294967296", 0, true},
		{"1,", 0, true},
		{",1", 0, true},
		{"1::2", 0, true},
		{"1:", 0, true},
		{"a", 0, true},
		{"$,1", 0, true},
		{"-1", 0, true},
	}
	for _, tt := range tests {
		n, err := SetCount(tt.set)
		if (err != nil) != tt.fail || n != tt.n {
			t.Errorf("SetCount(%.30q) = %d, %v; want %d, fail %v", tt.set, n, err, tt.n, tt.fail)
		}
	}
}

func TestDecodeMailbox(t *testing.T) {
	tests := []struct {
		in, out string
		fail    bool
	}{
		{"INBOX", "INBOX", false},
		{"~peter/mail/&U,BTFw-/&ZeVnLIqe-", "~peter/mail/台北/日本語", false},
		{"&-", "&", false},
		{"Tom &- Jerry", "Tom & Jerry", false},
		{"&AOk-t&AOk-", "été", false},
		{"&2D3eAA-", "\U0001F600", false},
		{"&Jjo-!", "☺!", false},
		{"&AGE-", "", true},       // "a" must not be encoded
		{"&Jjo", "", true},        // unterminated
		{"&Jj*-", "", true},       // bad BASE64
		{"&Jjp-", "", true},       // non-zero padding bits
		{"&2D0-", "", true},       // lone high surrogate
		{"&3gA-", "", true},       // lone low surrogate
		{"&AA-", "", true},        // less than one UTF-16 unit
		{"caf\xc3\xa9", "", true}, // raw 8-bit
		{"a\tb", "", true},
	}
	for _, tt := range tests {
		out, err := DecodeMailbox(tt.in)
		if (err != nil) != tt.fail || out != tt.out {
			t.Errorf("DecodeMailbox(%q) = %q, %v; want %q, fail %v", tt.in, out, err, tt.out, tt.fail)
		}
	}
}

func TestAppendQuoted(t *testing.T) {
	tests := []struct {
		in, quoted, astring string
		ok                  bool
	}{
		{"INBOX", `"INBOX"`, "INBOX", true},
		{`a "b" \c`, `"a \"b\" \\c"`, `"a \"b\" \\c"`, true},
		{"", `""`, `""`, true},
		{"nil", `"nil"`, `"nil"`, true},
		{"a]b", `"a]b"`, "a]b", true},
		{"a%", `"a%"`, `"a%"`, true},
		{"a\r\nb", "", "", false},
		{"a\x00", "", "", false},
		{"café", "", "", false},
	}
	for _, tt := range tests {
		q, ok := AppendQuoted([]byte("x"), tt.in)
		if ok != tt.ok || (ok && string(q) != "x"+tt.quoted) || (!ok && string(q) != "x") {
			t.Errorf("AppendQuoted(%q) = %q, %v", tt.in, q, ok)
		}
		a, ok := AppendAString(nil, tt.in)
		if ok != tt.ok || string(a) != tt.astring {
			t.Errorf("AppendAString(%q) = %q, %v", tt.in, a, ok)
		}
	}
}

// At an APPEND's decision point the message literal's size is known before
// any of its bytes: PendingLiteral.
func TestCommandPendingLiteral(t *testing.T) {
	var p CommandParser
	line := []byte("a APPEND INBOX (\\Seen) {5000}\r\n")
	if err := p.Line(line, Literal{Size: 5000}, true); err != nil {
		t.Fatal(err)
	}
	if c := p.Command(); c.PendingLiteral != 5000 || c.LiteralBytes != 0 || !p.PendingIsMessage() {
		t.Fatalf("pending %d, bytes %d, message %v", c.PendingLiteral, c.LiteralBytes, p.PendingIsMessage())
	}
	p.LiteralStreamed(5000)
	if c := p.Command(); c.PendingLiteral != 0 || c.LiteralBytes != 5000 {
		t.Fatalf("after the literal: pending %d, bytes %d", c.PendingLiteral, c.LiteralBytes)
	}
	if err := p.Line([]byte(" {7}\r\n"), Literal{Size: 7}, true); err != nil {
		t.Fatal(err)
	}
	if c := p.Command(); c.PendingLiteral != 7 {
		t.Fatalf("second message pending %d", c.PendingLiteral)
	}
}
