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

// testCtx is a selected session with every capability the proxy knows, a
// "/" delimiter and QRESYNC enabled.
var testCtx = Context{State: StateSelected, Delim: '/', Caps: ^Cap(0), QRESYNC: true}

// summary renders what Check derived, for comparison.
func summary(c *Command) string {
	var b strings.Builder
	b.WriteString(c.Tag + " ")
	if c.UID {
		b.WriteString("UID ")
	}
	b.WriteString(c.Name)
	add := func(k, v string) {
		if v != "" {
			b.WriteString(" " + k + "=" + v)
		}
	}
	add("mailbox", c.Mailbox)
	if c.MailboxRaw != c.Mailbox {
		add("raw", c.MailboxRaw)
	}
	add("ref", c.Reference)
	add("dest", c.Destination)
	if c.Set != "" {
		add("set", c.Set+"#"+strconv.FormatInt(c.SetCount, 10))
	}
	if len(c.FetchItems) > 0 {
		add("items", strings.Join(c.FetchItems, ","))
	}
	add("store", c.StoreOp)
	if len(c.StoreFlags) > 0 {
		add("flags", strings.Join(c.StoreFlags, ","))
	}
	if c.AppendURLs > 0 {
		add("urls", strconv.Itoa(c.AppendURLs))
	}
	add("sources", strings.Join(c.Sources(), ","))
	if len(c.Patterns()) > 1 {
		add("patterns", strings.Join(c.Patterns(), ","))
	}
	var filters []string
	for _, f := range c.NotifyFilters() {
		filters = append(filters, strings.Join(append([]string{f.Filter}, f.Mailboxes...), ":"))
	}
	add("notify", strings.Join(filters, ","))
	add("mailboxes", strings.Join(c.Mailboxes(), ","))
	if c.Literals > 0 {
		add("literals", strconv.Itoa(c.Literals)+"/"+strconv.FormatInt(c.LiteralBytes, 10))
	}
	var effs []string
	for i := 0; i < c.Effects.Len(); i++ {
		e := c.Effects.At(i)
		effs = append(effs, e.Effect.String()+"@"+[...]string{"-", "sel", "mbox", "dest", "any", "src"}[e.Target])
	}
	add("eff", strings.Join(effs, ","))
	return b.String()
}

func TestCommandParser(t *testing.T) {
	tests := []struct {
		name string
		wire string
		args string // argsString of Args
		want string // summary after Check
		msgs []bool // PendingIsMessage at each literal
		ctx  *Context
	}{
		{name: "noop", wire: "a001 NOOP\r\n", want: "a001 NOOP"},
		{name: "lower case name", wire: "a1 select INBOX\r\n", args: "INBOX",
			want: "a1 SELECT mailbox=INBOX eff=select-read-write@mbox,read-metadata@mbox"},
		{name: "tag with every accepted special", wire: "A.1-x!#$&',/:;<=>?@^_`| NOOP\r\n", want: "A.1-x!#$&',/:;<=>?@^_`| NOOP"},
		{name: "inbox folded", wire: "A1 EXAMINE inBox/Sub\r\n", args: "inBox/Sub",
			want: "A1 EXAMINE mailbox=INBOX/Sub raw=inBox/Sub eff=select@mbox,read-metadata@mbox"},
		// An escaped backslash parses too, and is refused as a name (below).
		{name: "select quoted with escapes", wire: `A1 SELECT "a \"b\" c"` + "\r\n", args: `"a \"b\" c"`,
			want: `A1 SELECT mailbox=a "b" c eff=select-read-write@mbox,read-metadata@mbox`},
		{name: "select condstore", wire: "A1 SELECT INBOX (CONDSTORE)\r\n", args: "INBOX (CONDSTORE)",
			want: "A1 SELECT mailbox=INBOX eff=select-read-write@mbox,read-metadata@mbox"},
		{name: "select qresync", wire: "A1 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n",
			args: "INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))",
			want: "A1 SELECT mailbox=INBOX eff=select-read-write@mbox,read-metadata@mbox"},
		{name: "modified utf-7", wire: "A1 CREATE \"&AOQ-rger\"\r\n", args: `"&AOQ-rger"`,
			want: "A1 CREATE mailbox=ärger raw=&AOQ-rger eff=create-mailbox@mbox"},
		{name: "utf8 accept", wire: "A1 CREATE \"caf\xc3\xa9\"\r\n", args: `"café"`,
			ctx:  &Context{State: StateAuth, Delim: '/', Caps: ^Cap(0), UTF8: true},
			want: "A1 CREATE mailbox=café eff=create-mailbox@mbox"},
		{name: "mailbox literal", wire: "A1 SELECT {5}\r\nIN BX\r\n", args: `{5}"IN BX"`,
			want: "A1 SELECT mailbox=IN BX literals=1/5 eff=select-read-write@mbox,read-metadata@mbox", msgs: []bool{false}},
		{name: "login literals", wire: "A1 LOGIN {5+}\r\nalice {6}\r\nsecret\r\n", args: `{5}"alice" {6}"secret"`,
			ctx: &Context{State: StateNotAuth}, want: "A1 LOGIN literals=2/11", msgs: []bool{false, false}},
		{name: "uid fetch", wire: "A1 UID FETCH 1:* (FLAGS UID)\r\n", args: "1:* (FLAGS UID)",
			want: "A1 UID FETCH set=1:*#-1 items=FLAGS,UID eff=read-metadata@sel"},
		{name: "uid lower", wire: "A1 uid fetch 4,2:3 fast\r\n", args: "4,2:3 fast",
			want: "A1 UID FETCH set=4,2:3#3 items=FAST eff=read-metadata@sel"},
		{name: "fetch sections",
			wire: "A1 FETCH 1:10 (body.peek[header.fields (From To)]<0.512> BODY[1.2.MIME] BINARY.PEEK[1] RFC822.SIZE) (CHANGEDSINCE 5)\r\n",
			args: "1:10 (body.peek[header.fields (From To)]<0.512> BODY[1.2.MIME] BINARY.PEEK[1] RFC822.SIZE) (CHANGEDSINCE 5)",
			want: "A1 FETCH set=1:10#10 items=BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.512>,BODY[1.2.MIME],BINARY.PEEK[1],RFC822.SIZE eff=read-metadata@sel,read-content@sel,set-flags@sel"},
		{name: "fetch examined", wire: "A1 FETCH 1 BODY[]\r\n", args: "1 BODY[]",
			ctx:  &Context{State: StateSelected, Examined: true, Delim: '/', Caps: ^Cap(0)},
			want: "A1 FETCH set=1#1 items=BODY[] eff=read-metadata@sel,read-content@sel"},
		{name: "fetch preview lazy", wire: "A1 FETCH 1 (UID PREVIEW (LAZY))\r\n", args: "1 (UID PREVIEW (LAZY))",
			want: "A1 FETCH set=1#1 items=UID,PREVIEW eff=read-metadata@sel,read-content@sel"},
		{name: "fetch section with quoted name", wire: `A1 FETCH 1 BODY.PEEK[HEADER.FIELDS ("a-b" X-*~})]` + "\r\n",
			args: `1 BODY.PEEK[HEADER.FIELDS ("a-b" X-*~})]`,
			want: `A1 FETCH set=1#1 items=BODY.PEEK[HEADER.FIELDS ("A-B" X-*~})] eff=read-metadata@sel,read-content@sel`},
		{name: "fetch section with literal", wire: "A1 FETCH 1 (UID BODY.PEEK[HEADER.FIELDS ({4}\r\nFrom To)]<0.10>)\r\n",
			args: "1 (UID BODY.PEEK[HEADER.FIELDS (From To)]<0.10>)",
			want: "A1 FETCH set=1#1 items=UID,BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.10> literals=1/4 eff=read-metadata@sel,read-content@sel",
			msgs: []bool{false}},
		{name: "gmail mailbox quoted", wire: "A1 SELECT \"[Gmail]/All\"\r\n", args: `"[Gmail]/All"`,
			want: "A1 SELECT mailbox=[Gmail]/All eff=select-read-write@mbox,read-metadata@mbox"},
		{name: "flag quoted chars", wire: "A1 CREATE \"a]b}c~d[e\"\r\n", args: `"a]b}c~d[e"`,
			want: "A1 CREATE mailbox=a]b}c~d[e eff=create-mailbox@mbox"},
		{name: "store silent", wire: "A1 STORE 2:4 +FLAGS.SILENT (\\Deleted $Junk)\r\n", args: `2:4 +FLAGS.SILENT (\Deleted $Junk)`,
			want: `A1 STORE set=2:4#3 store=+FLAGS.SILENT flags=\Deleted,$Junk eff=set-flags@sel,mark-deleted@sel`},
		{name: "store replace deleted", wire: "A1 STORE 1 FLAGS \\DELETED\r\n", args: `1 FLAGS \DELETED`,
			want: `A1 STORE set=1#1 store=FLAGS flags=\DELETED eff=set-flags@sel,mark-deleted@sel`},
		{name: "uid store unchangedsince", wire: "A1 UID STORE 7 (UNCHANGEDSINCE 320162338) -flags \\Seen \\Flagged\r\n",
			args: `7 (UNCHANGEDSINCE 320162338) -flags \Seen \Flagged`,
			want: `A1 UID STORE set=7#1 store=-FLAGS flags=\Seen,\Flagged eff=set-flags@sel`},
		{name: "copy", wire: "A1 COPY 1:3,2:5 \"Saved Items\"\r\n", args: `1:3,2:5 "Saved Items"`,
			want: "A1 COPY dest=Saved Items set=1:3,2:5#5 eff=create-messages@dest,read-metadata@sel"},
		// "$" where a command destroys, copies or moves is refused
		// (TestSavedResultRefusedWhereUnnamed); elsewhere it is a set.
		{name: "uid store searchres", wire: "A1 UID STORE $ -FLAGS (\\Deleted)\r\n", args: `$ -FLAGS (\Deleted)`,
			want: `A1 UID STORE set=$#-1 store=-FLAGS flags=\Deleted eff=set-flags@sel`},
		{name: "move literal destination", wire: "A1 MOVE 5 {5}\r\nTrash\r\n", args: `5 {5}"Trash"`,
			want: "A1 MOVE dest=Trash set=5#1 literals=1/5 eff=create-messages@dest,expunge@sel", msgs: []bool{false}},
		{name: "rename", wire: "A1 RENAME Old \"New Name\"\r\n", args: `Old "New Name"`,
			want: "A1 RENAME mailbox=Old dest=New Name eff=rename-mailbox@mbox,create-mailbox@dest"},
		{name: "close read-write expunges", wire: "A1 CLOSE\r\n", want: "A1 CLOSE eff=select@-,expunge@sel"},
		{name: "close examined", wire: "A1 CLOSE\r\n", ctx: &Context{State: StateSelected, Examined: true}, want: "A1 CLOSE eff=select@-"},
		{name: "uid expunge", wire: "A1 UID EXPUNGE 3000:3002\r\n", args: "3000:3002",
			want: "A1 UID EXPUNGE set=3000:3002#3 eff=expunge@sel"},
		{name: "uid search", wire: "A1 UID SEARCH CHARSET UTF-8 SUBJECT {5}\r\ncafé\r\n", args: `CHARSET UTF-8 SUBJECT {5}"café"`,
			want: "A1 UID SEARCH literals=1/5 eff=read-metadata@sel,read-content@sel", msgs: []bool{false}},
		{name: "search program", wire: "A1 SEARCH RETURN (MIN COUNT SAVE) OR (FROM x SINCE 1-Feb-1994) NOT UID 1:4,7 HEADER X-Y \"\" LARGER 10 $\r\n",
			args: `RETURN (MIN COUNT SAVE) OR (FROM x SINCE 1-Feb-1994) NOT UID 1:4,7 HEADER X-Y "" LARGER 10 $`,
			want: "A1 SEARCH eff=read-metadata@sel,read-content@sel"},
		{name: "sort", wire: "A1 UID SORT (REVERSE DATE SUBJECT) UTF-8 ALL\r\n", args: "(REVERSE DATE SUBJECT) UTF-8 ALL",
			want: "A1 UID SORT eff=read-metadata@sel,read-content@sel"},
		{name: "list", wire: "A1 LIST \"\" \"%\"\r\n", args: `"" "%"`, want: "A1 LIST mailbox=% eff=read-metadata@any"},
		{name: "list extended", wire: "A1 LIST (SUBSCRIBED) \"ref/\" (\"a*\" b) RETURN (CHILDREN STATUS (MESSAGES))\r\n",
			args: `(SUBSCRIBED) "ref/" ("a*" b) RETURN (CHILDREN STATUS (MESSAGES))`,
			want: "A1 LIST mailbox=a* ref=ref/ patterns=a*,b eff=read-metadata@any"},
		{name: "lsub", wire: "A1 LSUB #news. comp.mail.*\r\n", args: "#news. comp.mail.*",
			want: "A1 LSUB mailbox=comp.mail.* ref=#news. eff=read-metadata@any"},
		{name: "status", wire: "A1 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n", args: "blurdybloop (UIDNEXT MESSAGES)",
			want: "A1 STATUS mailbox=blurdybloop eff=read-metadata@mbox"},
		{name: "getmetadata options", wire: "A1 GETMETADATA (MAXSIZE 1024) INBOX /private/comment\r\n",
			args: "(MAXSIZE 1024) INBOX /private/comment", want: "A1 GETMETADATA mailbox=INBOX eff=read-metadata@mbox"},
		{name: "setmetadata server", wire: "A1 SETMETADATA \"\" (/private/comment {3}\r\nabc)\r\n",
			args: `"" (/private/comment {3}streamed)`, want: "A1 SETMETADATA literals=1/3 eff=metadata@mbox", msgs: []bool{true}},
		{name: "setacl", wire: "A1 SETACL Shared fred +rw\r\n", args: "Shared fred +rw",
			want: "A1 SETACL mailbox=Shared eff=acl@mbox"},
		{name: "append", wire: "A1 APPEND saved-messages (\\Seen) \"05-jan-1999 20:55:23 +0000\" {11}\r\nHello World\r\n",
			args: `saved-messages (\Seen) "05-jan-1999 20:55:23 +0000" {11}streamed`,
			want: "A1 APPEND mailbox=saved-messages literals=1/11 eff=create-messages@mbox", msgs: []bool{true}},
		{name: "append literal8 non-sync", wire: "A1 APPEND INBOX ~{3+}\r\n\x00\x01\x02\r\n", args: `INBOX {3}streamed`,
			want: "A1 APPEND mailbox=INBOX literals=1/3 eff=create-messages@mbox", msgs: []bool{true}},
		{name: "append mailbox literal", wire: "A1 APPEND {5}\r\nDraft (\\Draft) {3}\r\nabc\r\n", args: `{5}"Draft" (\Draft) {3}streamed`,
			want: "A1 APPEND mailbox=Draft literals=2/8 eff=create-messages@mbox", msgs: []bool{false, true}},
		{name: "multiappend", wire: "A1 APPEND INBOX (\\Seen) {3}\r\none (\\Draft) \"01-Jan-2024 00:00:00 +0000\" {3}\r\ntwo {5+}\r\nthree\r\n",
			args: `INBOX (\Seen) {3}streamed (\Draft) "01-Jan-2024 00:00:00 +0000" {3}streamed {5}streamed`,
			want: "A1 APPEND mailbox=INBOX literals=3/11 eff=create-messages@mbox", msgs: []bool{true, true, true}},
		{name: "catenate", wire: "A1 APPEND Drafts CATENATE (URL {10}\r\n/a/;UID=20 TEXT {4}\r\nbody URL \"/inbox/b;UIDVALIDITY=7/;UID=3/;SECTION=1.TEXT\" URL \"/a/;uid=2\")\r\n",
			args: `Drafts CATENATE (URL {10}"/a/;UID=20" TEXT {4}streamed URL "/inbox/b;UIDVALIDITY=7/;UID=3/;SECTION=1.TEXT" URL "/a/;uid=2")`,
			want: "A1 APPEND mailbox=Drafts urls=3 sources=a,INBOX/b literals=2/14 eff=create-messages@mbox,read-content@src", msgs: []bool{false, true}},
		{name: "utf8 append", wire: "A1 APPEND INBOX UTF8 (~{3}\r\nabc)\r\n", args: `INBOX UTF8 ({3}streamed)`,
			want: "A1 APPEND mailbox=INBOX literals=1/3 eff=create-messages@mbox", msgs: []bool{true}},
		// A message stored \Deleted is marked deleted in the target mailbox,
		// whatever the form of its data and in any case (RFC 9051 §2.3.2).
		{name: "append deleted", wire: "A1 APPEND Legal (\\Seen \\deleted) {3}\r\nabc\r\n", args: `Legal (\Seen \deleted) {3}streamed`,
			want: "A1 APPEND mailbox=Legal literals=1/3 eff=create-messages@mbox,mark-deleted@mbox", msgs: []bool{true}},
		{name: "append deleted literal8", wire: "A1 APPEND Legal (\\DELETED) ~{3+}\r\nabc\r\n", args: `Legal (\DELETED) {3}streamed`,
			want: "A1 APPEND mailbox=Legal literals=1/3 eff=create-messages@mbox,mark-deleted@mbox", msgs: []bool{true}},
		{name: "append deleted utf8", wire: "A1 APPEND Legal (\\Deleted) UTF8 (~{3}\r\nabc)\r\n", args: `Legal (\Deleted) UTF8 ({3}streamed)`,
			want: "A1 APPEND mailbox=Legal literals=1/3 eff=create-messages@mbox,mark-deleted@mbox", msgs: []bool{true}},
		{name: "append deleted catenate", wire: "A1 APPEND Legal (\\Deleted) CATENATE (TEXT {3}\r\nabc)\r\n", args: `Legal (\Deleted) CATENATE (TEXT {3}streamed)`,
			want: "A1 APPEND mailbox=Legal literals=1/3 eff=create-messages@mbox,mark-deleted@mbox", msgs: []bool{true}},
		{name: "multiappend later deleted", wire: "A1 APPEND Legal (\\Seen) {3}\r\none (\\Deleted) {3}\r\ntwo\r\n",
			args: `Legal (\Seen) {3}streamed (\Deleted) {3}streamed`,
			want: "A1 APPEND mailbox=Legal literals=2/6 eff=create-messages@mbox,mark-deleted@mbox", msgs: []bool{true, true}},
		{name: "append keyword not deleted", wire: "A1 APPEND Legal ($Deleted \\Draft) {3}\r\nabc\r\n", args: `Legal ($Deleted \Draft) {3}streamed`,
			want: "A1 APPEND mailbox=Legal literals=1/3 eff=create-messages@mbox", msgs: []bool{true}},
		{name: "notify with bodies", wire: "A1 NOTIFY SET (selected (MessageNew (UID BODY.PEEK[]) MessageExpunge)) (personal (MailboxName))\r\n",
			args: "SET (selected (MessageNew (UID BODY.PEEK[]) MessageExpunge)) (personal (MailboxName))",
			want: "A1 NOTIFY notify=selected,personal eff=session@-,read-metadata@any,read-content@sel"},
		{name: "notify names mailboxes", wire: "A1 NOTIFY SET STATUS (subtree (Legal &AOQ-) (MessageNew)) (mailboxes inbox/x (MessageExpunge)) (mailboxes (Legal) NONE)\r\n",
			args: "SET STATUS (subtree (Legal &AOQ-) (MessageNew)) (mailboxes inbox/x (MessageExpunge)) (mailboxes (Legal) NONE)",
			want: "A1 NOTIFY notify=subtree:Legal:ä,mailboxes:INBOX/x,mailboxes:Legal mailboxes=Legal,ä,INBOX/x eff=session@-,read-metadata@any"},
		{name: "login words only the proxy reads", wire: "A1 LOGIN al~ce p[a]s}s\r\n", args: "al~ce p[a]s}s",
			ctx: &Context{State: StateNotAuth}, want: "A1 LOGIN"},
		{name: "zero literal", wire: "A1 LOGIN {0}\r\n {0}\r\n\r\n", args: `{0}"" {0}""`,
			ctx: &Context{State: StateNotAuth}, want: "A1 LOGIN literals=2/0", msgs: []bool{false, false}},
		{name: "id", wire: "A1 ID (\"name\" \"Thunderbird\" \"version\" NIL)\r\n", args: `("name" "Thunderbird" "version" NIL)`,
			want: "A1 ID eff=session@-"},
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
			ctx := testCtx
			if tt.ctx != nil {
				ctx = *tt.ctx
			}
			if err := p.Check(&ctx); err != nil {
				t.Fatalf("Check: %v", err)
			}
			if !c.Complete {
				t.Error("not complete")
			}
			if got := summary(c); got != tt.want {
				t.Errorf("summary:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// The tokenizer alone, before any grammar.
func TestCommandTokens(t *testing.T) {
	var p CommandParser
	if _, err := parseWire(&p, "A1 X ((a) ((b c)) ()) d\r\n"); err != nil {
		t.Fatal(err)
	}
	if got := argsString(p.Command().Args); got != "((a) ((b c)) ()) d" {
		t.Errorf("args %s", got)
	}
	if err := p.Check(&testCtx); err == nil || err.Error() != "imapwire: unknown command" {
		t.Errorf("Check of X: %v", err)
	}
}

// Every input with more than one reading is refused (ARCHITECTURE.md §7): by the
// tokenizer (lexical rules of RFC 9051 §9) or by Check (the grammar of the
// command in the session's state). Each line here was read otherwise by
// at least one of Dovecot, Cyrus and Courier (internal/difftest).
func TestCommandParserErrors(t *testing.T) {
	const splitAtom = `unquoted word with "[", "]", "}" or "~", where a server may end the word: quote it (RFC 9051 §4.3)`
	tests := []struct {
		wire, err string
		ctx       *Context
	}{
		{"\r\n", "empty command line", nil},
		{"A1\r\n", "missing command name", nil},
		{"A1 \r\n", "missing command name", nil},
		{"A+1 NOOP\r\n", "bad character in tag", nil},
		{"A*1 NOOP\r\n", "bad character in tag", nil},
		{"\"A1\" NOOP\r\n", "bad character in tag", nil},
		{" A1 NOOP\r\n", "bad character in tag", nil},
		// Dovecot refuses "]" in a tag; Courier cuts it at "[", "}", "~"
		// and answers "x NO" for "x[y" (attack D of issue 11).
		{"a]b SELECT INBOX\r\n", "bad character in tag", nil},
		{"x[y NOOP\r\n", "bad character in tag", nil},
		{"x}y NOOP\r\n", "bad character in tag", nil},
		{"x~y NOOP\r\n", "bad character in tag", nil},
		{"x%y NOOP\r\n", "bad character in tag", nil},
		{"x\x80y NOOP\r\n", "bad character in tag", nil},
		{strings.Repeat("t", 65) + " NOOP\r\n", "tag too long", nil},
		{"A1 NO(OP\r\n", "bad character in command name", nil},
		{"A1 NO1P\r\n", "bad character in command name", nil},
		{"A1 UID\r\n", "UID without command", nil},
		{"A1 UID \r\n", "UID without command", nil},
		{"A1 SELECT \"INBOX\r\n", "unterminated quoted string", nil},
		{"A1 SELECT \"IN\\\"\r\n", "unterminated quoted string", nil},
		{"A1 SELECT \"a\x00b\"\r\n", "NUL, CR or LF in quoted string", nil},
		// Attack A: Dovecot drops a "\" before an ordinary character.
		{"A1 SELECT \"Lega\\l\"\r\n", `"\" in a quoted string escapes only DQUOTE and "\" (RFC 9051 §9)`, nil},
		{"A1 RENAME \"Sen\\t\" X\r\n", `"\" in a quoted string escapes only DQUOTE and "\" (RFC 9051 §9)`, nil},
		{"A1 SEARCH SUBJECT \"caf\xc3\"\r\n", "invalid UTF-8 in quoted string", nil},
		{"A1 FETCH 1 (FLAGS))\r\n", "unexpected ')'", nil},
		{"A1 FETCH 1 (FLAGS\r\n", "unterminated list", nil},
		{"A1 FETCH 1 FLAGS(UID)\r\n", "missing SP between arguments", nil},
		{"A1 SELECT \"a\"\"b\"\r\n", "missing SP between arguments", nil},
		// One SP, and none after "(" or before ")" (Cyrus refuses, Dovecot
		// and Courier do not).
		{"A1 SELECT  INBOX\r\n", "SP where none may stand (RFC 9051 §9: one SP between arguments)", nil},
		{"A1 SELECT INBOX \r\n", "SP where none may stand (RFC 9051 §9: one SP between arguments)", nil},
		{"A1 NOOP \r\n", "SP where none may stand (RFC 9051 §9: one SP between arguments)", nil},
		{"A1 STATUS INBOX ( MESSAGES)\r\n", "SP where none may stand (RFC 9051 §9: one SP between arguments)", nil},
		{"A1 STATUS INBOX (MESSAGES )\r\n", "SP where none may stand (RFC 9051 §9: one SP between arguments)", nil},
		{"A1 LOGIN {5} x\r\n", "unexpected '{' (a literal marker must end the line)", nil},
		{"A1 LOGIN a{3}\r\nabc\r\n", "missing SP before literal", nil},
		{"A1 LOGIN {3}\r\nabcdef\r\n", "missing SP after literal", nil},
		{"A1 X {1a}\r\n", "unexpected '{' (a literal marker must end the line)", nil},
		{"A1 SELECT a\x01b\r\n", "control character in command", nil},
		{"A1 SELECT caf\xc3\xa9\r\n", "8-bit byte outside a string", nil},
		{"A1 X " + strings.Repeat("(", 33) + strings.Repeat(")", 33) + "\r\n", "lists nested too deep", nil},
		{"A1 X" + strings.Repeat(" a", 10001) + "\r\n", "too many arguments", nil},
		{"A1 FETCH 1 BODY[HEADER.FIELDS ({4}\r\nFrom\r\n", "unterminated '['", nil},
		// Header field names a backend echoes in a form the response
		// tracker cannot read back (Cyrus: BODY[HEADER.FIELDS (X[Y)]).
		{"A1 FETCH 1 BODY.PEEK[HEADER.FIELDS (\"a]b\")]\r\n", errArgHeaderName.Msg, nil},
		{"A1 FETCH 1 BODY.PEEK[HEADER.FIELDS (\"X[Y\")]\r\n", errArgHeaderName.Msg, nil},
		{"A1 FETCH 1 BODY.PEEK[HEADER.FIELDS (\"X[Y]\")]\r\n", errArgHeaderName.Msg, nil},
		{"A1 FETCH 1 BODY.PEEK[HEADER.FIELDS (X[Y])]\r\n", "bad FETCH section", nil},
		{"A1 FETCH 1 BODY.PEEK[HEADER.FIELDS (\"[\" \"]\")]\r\n", errArgHeaderName.Msg, nil},
		{"A1 FETCH 1 BODY.PEEK[HEADER.FIELDS.NOT (\"X]\" FROM)]\r\n", errArgHeaderName.Msg, nil},
		{"A1 FETCH 1 BODY.PEEK[HEADER.FIELDS (\"X{2}\")]\r\n", errArgHeaderName.Msg, nil},
		{"A1 FETCH 1 BODY.PEEK[HEADER.FIELDS (\"X Y\")]\r\n", errArgHeaderName.Msg, nil},
		{"A1 FETCH 1 BODY.PEEK[HEADER.FIELDS (\"\")]\r\n", errArgHeaderName.Msg, nil},
		{"A1 FETCH 1 BODY.PEEK[HEADER.FIELDS (\"X:\")]\r\n", errArgHeaderName.Msg, nil},
		{"A1 FETCH 1 BODY.PEEK[HEADER.FIELDS (\"X\\\\Y\")]\r\n", errArgHeaderName.Msg, nil},
		{"A1 FETCH 1 BODY.PEEK[HEADER.FIELDS (\"X%Y\")]\r\n", errArgHeaderName.Msg, nil}, // Cyrus echoes it as a literal
		{"A1 FETCH 1 BODY.PEEK[HEADER.FIELDS (\"caf\xc3\xa9\")]\r\n", errArgHeaderName.Msg, nil},
		{"A1 FETCH 1 BODY.PEEK[HEADER.FIELDS ({3}\r\nX[Y)]\r\n", errArgHeaderName.Msg, nil},
		{"A1 FETCH 1 BODY.PEEK[HEADER.FIELDS ({3}\r\nX Y)]\r\n", errArgHeaderName.Msg, nil},
		{"A1 FETCH 1 BODY.PEEK[HEADER.FIELDS ({0}\r\n)]\r\n", errArgHeaderName.Msg, nil},
		{"A1 FETCH 1 BODY.PEEK[HEADER.FIELDS ({3}\r\n\"X\")]\r\n", errArgHeaderName.Msg, nil},
		{"A1 FETCH 1 BODY.PEEK[HEADER.FIELDS (A{1}\r\nB)]\r\n", errCmdSectionLit.Msg, nil},
		{"A1 FETCH 1 BODY.PEEK[HEADER.FIELDS ({1}\r\nA{1}\r\nB)]\r\n", errCmdSectionLit.Msg, nil},
		{"A1 FETCH 1 BODY.PEEK[HEADER.FIELDS ({1}\r\nAB)]\r\n", errCmdSectionLit.Msg, nil},
		{"A1 FETCH 1 BODY.PEEK[{6}\r\nHEADER]\r\n", errCmdSectionLit.Msg, nil},
		// The grammar.
		{"A1 FOO\r\n", "unknown command", nil},
		{"A1 NOOP x\r\n", "unexpected argument", nil},
		{"A1 CLOSE x\r\n", "unexpected argument", nil},
		{"A1 CAPABILITY x\r\n", "unexpected argument", nil},
		{"A1 SELECT INBOX x\r\n", "wrong kind of argument", nil},
		// Courier ends a word at "[", "]", "}" and "~" (ARCHITECTURE.md
		// §7): outside a FETCH section they stand only quoted.
		{"A1 SELECT a[b c]\r\n", splitAtom, nil},
		{"A1 CREATE a[b\r\n", splitAtom, nil},
		{"A1 SELECT [Gmail]/All\r\n", splitAtom, nil},
		{"A1 DELETE INBOX.Legal]\r\n", splitAtom, nil},
		{"A1 RENAME Victim Legal}\r\n", splitAtom, nil},
		{"A1 SUBSCRIBE Victim~\r\n", splitAtom, nil},
		{"A1 STORE 1 +FLAGS (\\Deleted])\r\n", splitAtom, nil},
		{"A1 STORE 1 +FLAGS (\\Deleted~)\r\n", splitAtom, nil},
		{"A1 FETCH 1 (FLAGS])\r\n", splitAtom, nil},
		{"A1 FETCH 1 BODY[]]\r\n", splitAtom, nil},
		{"A1 FETCH 1 BODY[]~\r\n", splitAtom, nil},
		{"A1 LIST \"\" a}%\r\n", splitAtom, nil},
		{"A1 SELECT In%box\r\n", "character not allowed in this argument", nil},
		{"A1 SELECT INB\\OX\r\n", "character not allowed in this argument", nil},
		{"A1 SELECT NIL\r\n", "NIL is not a mailbox name (quote it)", nil},
		{"A1 UID SELECT INBOX\r\n", "no UID form of this command", nil},
		{"A1 FETCH 1 FLAGS\r\n", "no mailbox selected", &Context{State: StateAuth, Caps: ^Cap(0)}},
		{"A1 SELECT INBOX\r\n", "command not valid in this state", &Context{State: StateNotAuth}},
		{"A1 MOVE 1 Trash\r\n", "command not available: its capability was not offered", &Context{State: StateSelected}},
		{"A1 FETCH 1 (FLAGS MODSEQ)\r\n", "extension not offered", &Context{State: StateSelected}},
		{"A1 FETCH 0 FLAGS\r\n", "bad sequence set", nil},
		{"A1 FETCH 1,,2 FLAGS\r\n", "bad sequence set", nil},
		{"A1 FETCH {3}\r\nabc FLAGS\r\n", "literal where none may stand", nil},
		{"A1 CREATE ~{3}\r\nabc\r\n", "literal8 where none may stand (RFC 3516)", nil},
		{"A1 FETCH 1 BODY[HEADER.FIELDS]\r\n", "bad FETCH section", nil},
		{"A1 FETCH 1 BODY[0]\r\n", "bad FETCH section", nil},
		{"A1 FETCH 1 BODY[]<5>\r\n", "bad FETCH item", nil},
		{"A1 FETCH 1 NOPE\r\n", "bad FETCH item", nil},
		{"A1 STORE 1 FLAGS (\\Seen\\Deleted)\r\n", "bad flag", nil},
		{"A1 STORE 1 FLAGS (a%b)\r\n", "bad flag", nil},
		{"A1 SEARCH FROMX y\r\n", "bad search key", nil},
		{"A1 SEARCH SINCE 32-Foo-2024\r\n", "bad date", nil},
		{"A1 APPEND INBOX \"1-Jan-2024\" {3}\r\nabc\r\n", "bad date", nil},
		// Mailbox names with two readings.
		{"A1 CREATE \"&Jjo\"\r\n", "mailbox name is not valid modified UTF-7 (RFC 3501 §5.1.3)", nil},
		{"A1 CREATE \"&AGE-\"\r\n", "mailbox name is not valid modified UTF-7 (RFC 3501 §5.1.3)", nil},
		{"A1 CREATE \"caf\xc3\xa9\"\r\n", "mailbox name is not valid modified UTF-7 (RFC 3501 §5.1.3)", nil},
		// Two BASE64 runs joined by "-&": Courier reads "&AOQA5A-",
		// Dovecot and Cyrus refuse the name.
		{"A1 CREATE \"&AOQ-&AOQ-\"\r\n", "mailbox name is not valid modified UTF-7 (RFC 3501 §5.1.3)", nil},
		{"A1 RENAME Keep \"Entw&APw-&APw-rfe\"\r\n", "mailbox name is not valid modified UTF-7 (RFC 3501 §5.1.3)", nil},
		{"A1 LIST \"\" \"&AOQ-&AOQ-*\"\r\n", "mailbox name is not valid modified UTF-7 (RFC 3501 §5.1.3)", nil},
		{"A1 LIST \"&AOQ-&AOQ-/\" \"%\"\r\n", "mailbox name is not valid modified UTF-7 (RFC 3501 §5.1.3)", nil},
		{"A1 STATUS \"x&AOQ-&APw-\" (MESSAGES)\r\n", "mailbox name is not valid modified UTF-7 (RFC 3501 §5.1.3)", nil},
		{"A1 DELETE \"Sent/\"\r\n", "empty hierarchy level in mailbox name", nil},
		// Courier answers OK to CREATE "foo/" and creates nothing; Dovecot
		// and Cyrus create "foo".
		{"A1 CREATE Projects/\r\n", "empty hierarchy level in mailbox name", nil},
		{"A1 RENAME Projects \"Archive/\"\r\n", "empty hierarchy level in mailbox name", nil},
		{"A1 DELETE \"a//b\"\r\n", "empty hierarchy level in mailbox name", nil},
		{"A1 DELETE \"/Sent\"\r\n", "empty hierarchy level in mailbox name", nil},
		{"A1 DELETE \"INBOX/../Sent\"\r\n", `"." or ".." as a hierarchy level in mailbox name`, nil},
		// Cyrus opens INBOX for SELECT "\\INBOX" (internal/difftest).
		{"A1 SELECT \"\\\\INBOX\"\r\n", "backslash in a mailbox name: backends read it differently", nil},
		{"A1 CREATE \"a\\\\b\"\r\n", "backslash in a mailbox name: backends read it differently", nil},
		{"A1 CREATE \"a&b\"\r\n", `"&" in a mailbox name after UTF8=ACCEPT has two readings`, &Context{State: StateAuth, UTF8: true}},
		// Empty lists where the grammar has 1*item, and parameters given
		// twice (internal/difftest TestBadSelectLeavesStateAsBackendHasIt,
		// TestEmptyAndRepeatedParams): Dovecot opens "EXAMINE Keep ()",
		// Cyrus answers BAD keeping its mailbox, Courier NO deselecting.
		{"A1 EXAMINE Keep ()\r\n", "empty list where the grammar needs at least one item", nil},
		{"A1 SELECT Keep ()\r\n", "empty list where the grammar needs at least one item", nil},
		{"A1 SELECT Keep (CONDSTORE CONDSTORE)\r\n", "parameter given more than once", nil},
		{"A1 SELECT Keep (QRESYNC (1 1) QRESYNC (1 1))\r\n", "parameter given more than once", nil},
		// Dovecot: BAD "Invalid QRESYNC sets"; Cyrus: OK.
		{"A1 SELECT Keep (QRESYNC (1 1 1:3 (1:3 1:2)))\r\n", "bad sequence set", nil},
		{"A1 SELECT Keep (QRESYNC (1 1 1:* (1:3 1:3)))\r\n", "bad sequence set", nil},
		{"A1 SELECT Keep (QRESYNC (1 1 1:3 (1:* 1:3)))\r\n", "bad sequence set", nil},
		// Dovecot OK, Cyrus BAD "Invalid Fetch modifier".
		{"A1 FETCH 1 (FLAGS) ()\r\n", "empty list where the grammar needs at least one item", nil},
		{"A1 FETCH 1 (FLAGS) (CHANGEDSINCE 1 CHANGEDSINCE 5)\r\n", "parameter given more than once", nil},
		{"A1 UID FETCH 1 (FLAGS) (VANISHED CHANGEDSINCE 1 VANISHED)\r\n", "parameter given more than once", nil},
		// Cyrus: BAD "Missing metadata entry".
		{"A1 GETMETADATA () \"\" /shared/comment\r\n", "empty list where the grammar needs at least one item", nil},
		{"A1 GETMETADATA (MAXSIZE 1 MAXSIZE 100) \"\" /shared/comment\r\n", "parameter given more than once", nil},
		{"A1 CREATE New (USE ())\r\n", "empty list where the grammar needs at least one item", nil},
		{"A1 LIST \"\" \"*\" RETURN (STATUS (MESSAGES) STATUS (UIDNEXT))\r\n", "parameter given more than once", nil},
		// Dovecot: BAD "Invalid arguments".
		{"A1 NOTIFY SET (SELECTED ())\r\n", "empty list where the grammar needs at least one item", nil},
		{"A1 NOTIFY SET (SELECTED (MessageNew ()))\r\n", "empty list where the grammar needs at least one item", nil},
	}
	for _, tt := range tests {
		var p CommandParser
		_, err := parseWire(&p, tt.wire)
		if err == nil {
			ctx := testCtx
			if tt.ctx != nil {
				ctx = *tt.ctx
			}
			err = p.Check(&ctx)
		}
		var se *SyntaxError
		if !errors.As(err, &se) || se.Msg != tt.err {
			t.Errorf("%.40q: error %v, want %q", tt.wire, err, tt.err)
			continue
		}
		// Sticky, and Command still answers.
		if err2 := p.Line([]byte("A2 NOOP\r\n"), Literal{}, false); err2 != err && !p.Command().Complete {
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
	// known so far (ARCHITECTURE.md §10): Check judges what is there.
	var p CommandParser
	if err := p.Line([]byte("A1 UID COPY 1:4 {5}\r\n"), Literal{Size: 5}, true); err != nil {
		t.Fatal(err)
	}
	if err := p.Check(&testCtx); err != nil {
		t.Fatal(err)
	}
	c := p.Command()
	if c.Complete || c.Name != "COPY" || !c.UID || c.Set != "1:4" || c.SetCount != 4 || c.Destination != "" {
		t.Fatalf("partial command %+v", c)
	}
	p.Literal([]byte("Trash"))
	p.Line([]byte("\r\n"), Literal{}, false)
	if err := p.Check(&testCtx); err != nil {
		t.Fatal(err)
	}
	if c := p.Command(); !c.Complete || c.Destination != "Trash" {
		t.Fatalf("complete command %+v", c)
	}

	p.Reset()
	p.Line([]byte("A1 APPEND Drafts CATENATE (TEXT {3}\r\n"), Literal{Size: 3}, true)
	if err := p.Check(&testCtx); err != nil {
		t.Fatal(err)
	}
	if c := p.Command(); c.Mailbox != "Drafts" || !p.PendingIsMessage() {
		t.Fatalf("catenate: %+v %v", c, p.PendingIsMessage())
	}

	// A later message's \Deleted, read after the first message was
	// streamed, adds mark-deleted to the command read so far (what
	// clientPump.redecide compares).
	p.Reset()
	p.Line([]byte("A1 APPEND Legal {3}\r\n"), Literal{Size: 3}, true)
	if err := p.Check(&testCtx); err != nil {
		t.Fatal(err)
	}
	first := p.Command().Effects
	if first.Has(EffMarkDeleted) {
		t.Fatalf("first message: %s", summary(p.Command()))
	}
	p.LiteralStreamed(3)
	p.Line([]byte(" (\\Deleted) CATENATE (URL \"/Legal/;UID=1\")\r\n"), Literal{}, false)
	if err := p.Check(&testCtx); err != nil {
		t.Fatal(err)
	}
	if c := p.Command(); !c.Complete || !c.Effects.Has(EffMarkDeleted) || c.Effects == first {
		t.Fatalf("later message: %s", summary(c))
	}

	// A literal where none may stand is refused before its "+".
	for _, line := range []string{"A1 FETCH {3}\r\n", "A1 STORE 1 {5}\r\n", "A1 SELECT INBOX ({4}\r\n", "A1 UID EXPUNGE {1}\r\n"} {
		p.Reset()
		if err := p.Line([]byte(line), Literal{Size: 3}, true); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if err := p.Check(&testCtx); err == nil {
			t.Errorf("%q: literal accepted", line)
		}
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
		// Two runs joined by "-&": one reading at Courier ("&AOQA5A-"),
		// a refusal at Dovecot and Cyrus.
		{"&AOQ-&AOQ-", "", true},
		{"x&AOQ-&AOQ-y", "", true},
		{"&AOQ-&2D3eAA-", "", true},
		{"&AOQA5A-", "ää", false},
		{"&AOQ-&-&AOQ-", "ä&ä", false}, // "&-" is the ampersand, not a run
		{"&-&AOQ-", "&ä", false},
		{"&AOQ-x&AOQ-", "äxä", false},
		{"&AOQ--&AOQ-", "ä-ä", false},
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

// PendingMessageSize is the size of the message a pending message literal
// is part of: the TEXT parts of one CATENATE add up (RFC 4469 §5), URL
// parts count nothing (their size is unknown here), each message of a
// MULTIAPPEND (RFC 3502) and each SETMETADATA value stands alone.
func TestPendingMessageSize(t *testing.T) {
	for _, tt := range []struct {
		wire string
		want []int64 // at each literal; 0: not message data
	}{
		{"a APPEND INBOX {5}\r\nhello\r\n", []int64{5}},
		{"a APPEND INBOX CATENATE (TEXT {3}\r\nabc TEXT {4}\r\nabcd URL \"/INBOX;UIDVALIDITY=1/;UID=1\" TEXT {5}\r\nabcde)\r\n",
			[]int64{3, 7, 12}},
		{"a APPEND INBOX CATENATE (TEXT {3}\r\nabc) (\\Seen) CATENATE (TEXT {4}\r\nabcd TEXT {1}\r\nx) {2}\r\nab UTF8 ({3}\r\nabc)\r\n",
			[]int64{3, 4, 5, 2, 3}},
		{"a APPEND {5}\r\nINBOX CATENATE (TEXT {2}\r\nab)\r\n", []int64{0, 2}},
		{"a SETMETADATA INBOX (/private/comment {3}\r\nabc /shared/comment {4}\r\nabcd)\r\n", []int64{3, 4}},
	} {
		var p CommandParser
		s := NewScanner(bufio.NewReaderSize(strings.NewReader(tt.wire), 64), 0)
		var got []int64
		for {
			line, lit, ok, err := s.ReadLine()
			if err == nil {
				err = p.Line(line, lit, ok)
			}
			if err != nil {
				t.Fatalf("%q: %v", tt.wire, err)
			}
			if !ok {
				break
			}
			got = append(got, p.PendingMessageSize())
			b, err := s.ReadLiteral(nil, 4096)
			if err != nil {
				t.Fatal(err)
			}
			if p.PendingIsMessage() {
				p.LiteralStreamed(int64(len(b)))
			} else {
				p.Literal(b)
			}
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q: PendingMessageSize %v, want %v", tt.wire, got, tt.want)
		}
	}
}

// TestSavedResultRefusedWhereUnnamed: "$" (RFC 5182) names messages the
// trail cannot, so a command that marks them deleted, expunges, copies or
// moves them is refused; reading, searching or unflagging them is not.
func TestSavedResultRefusedWhereUnnamed(t *testing.T) {
	var p CommandParser
	for line, refused := range map[string]bool{
		"A1 UID STORE $ +FLAGS.SILENT (\\Deleted)\r\n": true,
		"A1 STORE $ FLAGS (\\Deleted \\Seen)\r\n":      true,
		"A1 UID EXPUNGE $\r\n":                         true,
		"A1 MOVE $ Keep\r\n":                           true,
		"A1 UID COPY $ Keep\r\n":                       true,
		"A1 UID STORE $ -FLAGS (\\Deleted)\r\n":        false,
		"A1 STORE $ +FLAGS (\\Seen)\r\n":               false,
		"A1 UID FETCH $ (BODY.PEEK[])\r\n":             false,
		"A1 UID SEARCH UID $\r\n":                      false,
		"A1 UID STORE 1:3 +FLAGS (\\Deleted)\r\n":      false,
	} {
		p.Reset()
		if err := p.Line([]byte(line), Literal{}, false); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		err := p.Check(&testCtx)
		if got := err == ErrSavedResultUnnamed; got != refused {
			t.Errorf("%q: error %v, refused %v, want %v", line, err, got, refused)
		}
	}
}

// Each bound of a command's shape holds at its value and refuses one
// past it, at the defaults and at a configured value (limits.max_tag,
// max_list_depth, max_arguments, max_search_depth; ARCHITECTURE.md §12).
func TestBoundsConfigurable(t *testing.T) {
	tag := func(n int) string { return strings.Repeat("t", n) + " NOOP\r\n" }
	list := func(n int) string {
		return "A1 STORE 1 FLAGS " + strings.Repeat("(", n) + `\Seen` + strings.Repeat(")", n) + "\r\n"
	}
	args := func(n int) string { // FETCH 1 (FLAGS ...): n arguments in all
		return "A1 FETCH 1 (" + strings.TrimSpace(strings.Repeat("FLAGS ", n-2)) + ")\r\n"
	}
	search := func(n int) string { // n nested NOTs: search keys n+1 deep
		return "A1 SEARCH " + strings.Repeat("NOT ", n) + "SEEN\r\n"
	}
	for _, b := range []*Bounds{nil, {MaxTag: 5, MaxListDepth: 3, MaxArguments: 40, MaxSearchDepth: 7}} {
		eff := defaultBounds
		if b != nil {
			eff = b.WithDefaults()
		}
		for _, tt := range []struct {
			name    string
			at, too string
			err     string
		}{
			{"tag", tag(eff.MaxTag), tag(eff.MaxTag + 1), "tag too long"},
			{"list depth", list(eff.MaxListDepth - 1), list(eff.MaxListDepth + 1), errCmdDepth.Msg},
			{"arguments", args(eff.MaxArguments), args(eff.MaxArguments + 1), errCmdTooManyArgs.Msg},
			{"search depth", search(eff.MaxSearchDepth), search(eff.MaxSearchDepth + 1), errArgSearch.Msg},
		} {
			for i, wire := range []string{tt.at, tt.too} {
				p := CommandParser{Bounds: b}
				_, err := parseWire(&p, wire)
				if err == nil && tt.name != "list depth" { // nested flag lists parse, no grammar takes them
					ctx := testCtx
					ctx.State = StateSelected
					err = p.Check(&ctx)
				}
				var se *SyntaxError
				switch {
				case i == 0 && err != nil:
					t.Errorf("%v %s: at the bound: %v", b, tt.name, err)
				case i == 1 && (!errors.As(err, &se) || se.Msg != tt.err):
					t.Errorf("%v %s: past the bound: %v, want %q", b, tt.name, err, tt.err)
				}
			}
		}
	}
}
