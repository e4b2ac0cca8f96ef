package imapwire

import (
	"reflect"
	"strings"
	"testing"
)

// NAMESPACE answers of the three backends (RFC 2342 §5), as their
// fixtures give them, and Dovecot's with a shared-mailbox namespace
// ("Other Users/%u/", doc.dovecot.org shared mailboxes).
const (
	nsCyrus   = "* NAMESPACE ((\"INBOX.\" \".\")) ((\"user.\" \".\")) ((\"\" \".\"))\r\n"
	nsDovecot = "* NAMESPACE ((\"\" \"/\")) ((\"Other Users/\" \"/\")) NIL\r\n"
	nsCourier = "* NAMESPACE ((\"INBOX.\" \".\")) NIL ((\"#shared.\" \".\")(\"shared.\" \".\"))\r\n"
)

func mustNS(t *testing.T, line string) *Namespaces {
	t.Helper()
	ns, ok, err := ParseNamespace([]byte(line))
	if !ok || err != nil {
		t.Fatalf("ParseNamespace(%q): ok %v, %v", line, ok, err)
	}
	return ns
}

func TestParseNamespace(t *testing.T) {
	good := []struct {
		line string
		want []Namespace
	}{
		{nsCyrus, []Namespace{{NSPersonal, "INBOX.", '.'}, {NSOther, "user.", '.'}, {NSShared, "", '.'}}},
		{nsDovecot, []Namespace{{NSPersonal, "", '/'}, {NSOther, "Other Users/", '/'}}},
		{nsCourier, []Namespace{{NSPersonal, "INBOX.", '.'}, {NSShared, "#shared.", '.'}, {NSShared, "shared.", '.'}}},
		{"* NAMESPACE NIL NIL NIL\r\n", nil},
		{"* namespace ((\"\" NIL)) NIL NIL\r\n", []Namespace{{NSPersonal, "", 0}}},
		// A Namespace-Response-Extension (RFC 2342 §5) and an escape.
		{"* NAMESPACE ((\"\" \"/\" \"X-PARAM\" (\"A\" \"B\"))) ((\"~\\\\\" \"/\")) NIL\r\n",
			[]Namespace{{NSPersonal, "", '/'}, {NSOther, "~\\", '/'}}},
		// Modified UTF-7 prefixes are decoded like names.
		{"* NAMESPACE ((\"\" \"/\")) ((\"Andere Benutzer&AOQ-/\" \"/\")) NIL\r\n",
			[]Namespace{{NSPersonal, "", '/'}, {NSOther, "Andere Benutzerä/", '/'}}},
	}
	for _, tc := range good {
		ns := mustNS(t, tc.line)
		if !reflect.DeepEqual(ns.List, tc.want) {
			t.Errorf("%q: %+v, want %+v", tc.line, ns.List, tc.want)
		}
	}
	bad := []string{
		"* NAMESPACE ((\"\" \"/\")) NIL\r\n",            // two lists
		"* NAMESPACE ((\"\" \"/\")) NIL NIL NIL\r\n",    // four
		"* NAMESPACE ((\"\" \"//\")) NIL NIL\r\n",       // a two-character delimiter
		"* NAMESPACE (({0}\r\n",                         // a literal
		"* NAMESPACE ((\"\" \"/\") ) NIL NIL\r\n",       // SP before ")"
		"* NAMESPACE (()) NIL NIL\r\n",                  // an empty namespace
		"* NAMESPACE () NIL NIL\r\n",                    // an empty list
		"* NAMESPACE ((\"&Jjo\" \"/\")) NIL NIL\r\n",    // bad modified UTF-7
		"* NAMESPACE ((\"\" \"/\" \"X\")) NIL NIL\r\n",  // an extension without values
		"* NAMESPACE ((\"\" \"/\")) NIL NIL junk\r\n",   // trailing
		"* NAMESPACE ((\"\" \"/\"))  NIL NIL\r\n",       // two SP
		"* NAMESPACE ((\"a\\b\" \"/\")) NIL NIL\r\n",    // an escape of "b"
		"* NAMESPACE ((\"\" \"/\"))\tNIL NIL\r\n",       // a TAB
		"* NAMESPACE\r\n",                               // nothing
		"* NAMESPACE ((\"\" \"\xff\")) NIL NIL\r\n",     // an 8-bit delimiter
		"* NAMESPACE ((\"\" \"/\")) NIL ((\"x\")) \r\n", // no delimiter
	}
	for _, line := range bad {
		if _, ok, err := ParseNamespace([]byte(line)); !ok || err == nil {
			t.Errorf("%q: ok %v, err %v; want a malformed NAMESPACE", line, ok, err)
		}
	}
	for _, line := range []string{"* LIST () \"/\" \"\"\r\n", "a1 OK NAMESPACE done\r\n", "* OK [NAMESPACE] x\r\n"} {
		if _, ok, _ := ParseNamespace([]byte(line)); ok {
			t.Errorf("%q read as a NAMESPACE response", line)
		}
	}
}

func TestNamespaceWhere(t *testing.T) {
	cyrus, dovecot, courier := mustNS(t, nsCyrus), mustNS(t, nsDovecot), mustNS(t, nsCourier)
	tests := []struct {
		ns   *Namespaces
		name string
		want NameInfo
	}{
		{cyrus, "INBOX", NameInfo{Kind: NSPersonal}},
		{cyrus, "INBOX.Legal", NameInfo{Kind: NSPersonal}},
		{cyrus, "Shared", NameInfo{Kind: NSShared}},
		{cyrus, "user.bob.Legal", NameInfo{Kind: NSOther, Owner: "bob", OwnerName: "INBOX.Legal"}},
		{cyrus, "user.bob.inbox.x", NameInfo{Kind: NSOther, Owner: "bob", OwnerName: "INBOX.inbox.x"}},
		{cyrus, "user.bob", NameInfo{Kind: NSOther, Owner: "bob", OwnerName: "INBOX"}},
		{cyrus, "USER.bob.Legal", NameInfo{Kind: NSOther, Owner: "bob", OwnerName: "INBOX.Legal"}},
		{cyrus, "user.", NameInfo{Kind: NSOther}},
		{cyrus, "user", NameInfo{Kind: NSShared}},
		{dovecot, "Legal", NameInfo{Kind: NSPersonal}},
		{dovecot, "Other Users/bob/Legal/Sub", NameInfo{Kind: NSOther, Owner: "bob", OwnerName: "Legal/Sub"}},
		{dovecot, "Other Users/bob/inbox", NameInfo{Kind: NSOther, Owner: "bob", OwnerName: "INBOX"}},
		{dovecot, "Other Users/bob", NameInfo{Kind: NSOther, Owner: "bob"}},
		{courier, "INBOX.Sent", NameInfo{Kind: NSPersonal}},
		{courier, "shared.alice.Legal", NameInfo{Kind: NSShared}},
		{courier, "#shared.x", NameInfo{Kind: NSShared}},
		{courier, "Other", NameInfo{}},
		{nil, "user.bob", NameInfo{}},
		{nil, "INBOX", NameInfo{}},
	}
	for _, tc := range tests {
		var n *Names
		if tc.ns != nil {
			n = &Names{NS: tc.ns, User: "alice"}
		}
		if got, err := n.Where(tc.name); got != tc.want || err != nil {
			t.Errorf("%q: %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
}

// TestOwnerLogin: the owner a policy reads is the login the backend maps
// the owner level to, or the name is refused where the backends the
// proxy knows read it as different logins (finding: Cyrus's
// "user.bob^smith.Legal" is bob.smith's, and a policy given "bob^smith"
// did not hold it).
func TestOwnerLogin(t *testing.T) {
	cyrus, dovecot := mustNS(t, nsCyrus), mustNS(t, nsDovecot)
	for _, tc := range []struct {
		ns         *Namespaces
		user, name string
		owner      string // "" for refused
	}{
		{cyrus, "alice", "user.bob^smith.Legal", "bob.smith"},
		{cyrus, "alice", "user.bob^smith", "bob.smith"},
		{cyrus, "alice", "user.a^b^c.x", "a.b.c"},
		{cyrus, "alice", "user.Bob^Smith.Legal", "Bob.Smith"},
		{cyrus, "alice", "user.bob.Legal", "bob"},
		{cyrus, "alice", "user.b\u00f6b^x.Legal", "b\u00f6b.x"},
		{cyrus, "alice", "user.bob@example^com.Legal", "bob@example.com"},
		{cyrus, "alice@example.com", "user.bob@example^com.Legal", "bob@example.com"},
		{cyrus, "alice@example.com", "user.bob.Legal", ""}, // virtdomains: bob@example.com; without: bob
		{dovecot, "alice", "Other Users/bob.smith/Legal", "bob.smith"},
		{dovecot, "alice", "Other Users/bob^smith/Legal", ""}, // Cyrus (unixhierarchysep: yes): bob.smith
		{dovecot, "alice@example.com", "Other Users/bob@example.com/Legal", "bob@example.com"},
		{dovecot, "alice@example.com", "Other Users/bob/Legal", ""}, // "%%n": bob@example.com
	} {
		name := tc.name
		n := &Names{NS: tc.ns, User: tc.user}
		got, err := n.Where(name)
		if tc.owner == "" {
			if err != ErrOwnerUnread || got.Owner != "" {
				t.Errorf("%s: %q: %+v, %v; want ErrOwnerUnread", tc.user, name, got, err)
			}
		} else if err != nil || got.Owner != tc.owner {
			t.Errorf("%s: %q: %+v, %v; want owner %q", tc.user, name, got, err, tc.owner)
		}
		// Every mailbox argument is read alike: refused, or named with
		// the same owner.
		ctx := Context{State: StateAuth, Delim: tc.ns.List[0].Delim, Caps: ^Cap(0), Names: n}
		_, cerr := ctx.Canonical(name)
		if (tc.owner == "") != (cerr == ErrOwnerUnread) {
			t.Errorf("%s: Canonical(%q): %v", tc.user, name, cerr)
		}
	}
}

func TestSameUser(t *testing.T) {
	for _, tc := range []struct {
		owner, user string
		want        bool
	}{
		{"alice", "alice", true},
		{"ALICE", "alice", true},
		{"alice", "alice@example.com", true},
		{"alice@example.com", "alice", true},
		{"Alice@Example.com", "alice@example.com", true},
		{"alice^smith", "alice.smith", true}, // Cyrus's "^" for "." (unixhierarchysep: no)
		{"alice2", "alice", false},
		{"bob", "alice", false},
		{"", "alice", false},
		{"alice", "", false},
	} {
		if got := SameUser(tc.owner, tc.user); got != tc.want {
			t.Errorf("SameUser(%q, %q) = %v", tc.owner, tc.user, got)
		}
	}
}

// TestOwnMailboxAliasEveryCommand: every command of the table that names a
// mailbox refuses the user's own mailbox spelled in the other-users
// namespace, and takes its personal name (attack40 finding 1); the
// commands are mailboxLines'.
func TestOwnMailboxAliasEveryCommand(t *testing.T) {
	named := mailboxLines(t)
	aliases := []string{`user.alice`, `user.alice.Legal`, `"user.ALICE.Legal"`, `USER.alice.Sent`,
		`"user.alice@example.com.Legal"`}
	own := []string{`INBOX`, `INBOX.Legal`, `user`, `Shared.x`}
	// Other users' names: "&-" is "&", not alice. A user with a domain
	// reads an owner level without one two ways (OwnerLogin): refused.
	others := []string{`user.bob.Legal`, `user.alice2`, `"user.&-alice.x"`}
	var ctx Context
	var p CommandParser
	check := func(wire string) error {
		p.Reset()
		_, err := parseWire(&p, wire)
		if err == nil {
			err = p.Check(&ctx)
		}
		return err
	}
	for _, user := range []string{"alice@example.com", "alice"} {
		ctx = Context{State: StateSelected, Delim: '.', Caps: ^Cap(0), Names: &Names{NS: mustNS(t, nsCyrus), User: user}}
		var wantOther error
		if strings.Contains(user, "@") {
			wantOther = ErrOwnerUnread
		}
		for cmd, lines := range named {
			wantOther := wantOther
			if cmd == "LIST" || cmd == "LSUB" {
				// Patterns, with no owner a policy reads: only the
				// user's own levels are refused (patternAlias).
				wantOther = nil
			}
			for _, l := range lines {
				for _, mbox := range aliases {
					wire := "a " + strings.Replace(l, "%s", mbox, 1) + "\r\n"
					if err := check(wire); err != ErrOwnMailboxAlias {
						t.Errorf("%s: %q: %v, want ErrOwnMailboxAlias", user, wire, err)
					}
				}
				for _, mbox := range own {
					wire := "a " + strings.Replace(l, "%s", mbox, 1) + "\r\n"
					if err := check(wire); err != nil {
						t.Errorf("%s: %q: %v", user, wire, err)
					}
				}
				for _, mbox := range others {
					wire := "a " + strings.Replace(l, "%s", mbox, 1) + "\r\n"
					if err := check(wire); err != wantOther {
						t.Errorf("%s: %q: %v, want %v", user, wire, err, wantOther)
					}
				}
			}
		}
	}
	ctx.Names.User = "alice@example.com"
	// The name refused is kept for the audit of the refusal.
	p.Reset()
	if _, err := parseWire(&p, "a DELETE user.Alice.Legal\r\n"); err != nil {
		t.Fatal(err)
	}
	if err := p.Check(&ctx); err != ErrOwnMailboxAlias || p.Command().Mailbox != "user.Alice.Legal" {
		t.Errorf("DELETE: %v, mailbox %q", err, p.Command().Mailbox)
	}
	// Without namespaces (a backend without NAMESPACE): as before.
	p.Reset()
	if _, err := parseWire(&p, "a DELETE user.alice.Legal\r\n"); err != nil {
		t.Fatal(err)
	}
	noNS := ctx
	noNS.Names = &Names{User: "alice"}
	if err := p.Check(&noNS); err != nil {
		t.Errorf("without namespaces: %v", err)
	}
}

// TestDeclaredAlias: a declared alias of the personal namespace (Dovecot
// alias_for, hidden from NAMESPACE) gives every name under it its personal
// name, which policies judge (finding: "mail/Legal" was a mailbox nothing
// held); a name with no one personal name is refused.
func TestDeclaredAlias(t *testing.T) {
	d := &Declared{List: []Namespace{
		{Kind: NSAlias, Prefix: "mail/", Delim: '/'},
		{Kind: NSAlias, Prefix: "dots.", Delim: '.'},
		{Kind: NSOther, Prefix: "shared/", Delim: '/'},
	}}
	dovecot := mustNS(t, nsDovecot)
	ns := d.Over(dovecot)
	if d.Over(dovecot) != ns {
		t.Error("Over: the sessions of a backend do not share one value")
	}
	ctx := Context{State: StateAuth, Delim: '/', Names: &Names{NS: ns, User: "alice"}}
	for _, tc := range []struct {
		raw, want string
		err       error
	}{
		{"mail/Legal", "Legal", nil},
		{"mail/Legal/Sub", "Legal/Sub", nil},
		{"mail/inbox", "", ErrAliasUnread}, // the alias has no INBOX: an ordinary mailbox there
		{"mail/INBOX", "", ErrAliasUnread},
		{"mail/Inbox", "", ErrAliasUnread},
		{"mail/INBOX/x", "", ErrAliasUnread},
		{"mail/inBox/x/y", "", ErrAliasUnread},
		{"mail/INBOXes", "INBOXes", nil},
		{"mail/mail", "", ErrAliasUnread}, // a folder of the alias; "mail" is its root to the proxy
		{"mail/MAIL/x", "", ErrAliasUnread},
		{"mail/shared", "", ErrAliasUnread}, // another namespace's root
		{"mail/Shared/bob/x", "", ErrAliasUnread},
		{"mail/dots", "", ErrAliasUnread},
		{"mailx/Legal", "mailx/Legal", nil},
		{"mail", "", ErrAliasUnread}, // the alias's root
		{"Mail", "", ErrAliasUnread},
		{"Legal", "Legal", nil},
		{"MAIL/Legal", "", ErrAliasUnread},      // the backend may or may not fold the prefix
		{"mail/mail/Legal", "", ErrAliasUnread}, // Dovecot: the personal "mail/Legal"
		{"dots.Legal", "", ErrAliasUnread},      // another delimiter than the personal one
		{"mail/", "", errNameEmptyPart},
	} {
		got, err := ctx.Canonical(tc.raw)
		if err != tc.err || (err == nil && got != tc.want) {
			t.Errorf("Canonical(%q) = %q, %v; want %q, %v", tc.raw, got, err, tc.want, tc.err)
		}
	}
	// A declared other-users namespace gives owners as an announced one.
	if got, err := ctx.Names.Where("shared/bob/Legal"); err != nil || got != (NameInfo{Kind: NSOther, Owner: "bob", OwnerName: "Legal"}) {
		t.Errorf("Where(shared/bob/Legal) = %+v, %v", got, err)
	}
	if _, err := ctx.Canonical("shared/alice/Legal"); err != ErrOwnMailboxAlias {
		t.Errorf("own mailbox through a declared other-users namespace: %v", err)
	}
	// Without a personal namespace an alias names nothing known.
	noPersonal := Context{State: StateAuth, Delim: '/', Names: &Names{NS: d.Over(nil), User: "alice"}}
	if _, err := noPersonal.Canonical("mail/Legal"); err != ErrAliasUnread {
		t.Errorf("alias without a personal namespace: %v", err)
	}
	// A declared prefix replaces the announced namespace of that prefix.
	over := (&Declared{List: []Namespace{{Kind: NSShared, Prefix: "Other Users/", Delim: '/'}}}).Over(dovecot)
	if !reflect.DeepEqual(over.List, []Namespace{{Kind: NSPersonal, Delim: '/'}, {Kind: NSShared, Prefix: "Other Users/", Delim: '/'}}) {
		t.Errorf("declared over announced: %+v", over.List)
	}
}

// mailboxLines are, for each command of the table that names a mailbox,
// command lines with %s for a mailbox argument; a command added to the
// table must be added here, with its mailbox arguments, or to noMailbox.
func mailboxLines(t *testing.T) map[string][]string {
	t.Helper()
	named := map[string][]string{
		"SELECT":       {"SELECT %s", "SELECT %s (CONDSTORE)"},
		"EXAMINE":      {"EXAMINE %s"},
		"CREATE":       {"CREATE %s"},
		"DELETE":       {"DELETE %s"},
		"RENAME":       {"RENAME %s INBOX.New", "RENAME INBOX.Old %s"},
		"SUBSCRIBE":    {"SUBSCRIBE %s"},
		"UNSUBSCRIBE":  {"UNSUBSCRIBE %s"},
		"LIST":         {`LIST "" %s`, `LIST %s ""`, `LIST "" (INBOX %s)`, `LIST (SUBSCRIBED) "" %s RETURN (CHILDREN)`},
		"LSUB":         {`LSUB "" %s`, `LSUB %s ".*"`},
		"STATUS":       {"STATUS %s (MESSAGES)"},
		"APPEND":       {"APPEND %s {1+}\r\nx"},
		"NOTIFY":       {"NOTIFY SET (MAILBOXES %s (MessageNew))", "NOTIFY SET (SUBTREE (INBOX %s) (MessageNew))"},
		"GETACL":       {"GETACL %s"},
		"MYRIGHTS":     {"MYRIGHTS %s"},
		"LISTRIGHTS":   {"LISTRIGHTS %s bob"},
		"SETACL":       {"SETACL %s bob lr"},
		"DELETEACL":    {"DELETEACL %s bob"},
		"GETQUOTAROOT": {"GETQUOTAROOT %s"},
		"GETMETADATA":  {"GETMETADATA %s /shared/comment", "GETMETADATA (DEPTH 1) %s (/shared/comment)"},
		"SETMETADATA":  {`SETMETADATA %s (/shared/comment "x")`},
		"COPY":         {"COPY 1 %s", "UID COPY 1 %s"},
		"MOVE":         {"MOVE 1 %s", "UID MOVE 1 %s"},
	}
	noMailbox := map[string]bool{
		"CAPABILITY": true, "NOOP": true, "LOGOUT": true, "ID": true, "STARTTLS": true, "AUTHENTICATE": true,
		"LOGIN": true, "ENABLE": true, "NAMESPACE": true, "IDLE": true, "GETQUOTA": true, "SETQUOTA": true,
		"COMPRESS": true, "CHECK": true, "CLOSE": true, "UNSELECT": true, "EXPUNGE": true, "SEARCH": true,
		"FETCH": true, "STORE": true, "SORT": true, "THREAD": true,
	}
	for _, s := range Specs() {
		if _, ok := named[s.Name]; !ok && !noMailbox[s.Name] {
			t.Errorf("%s is in the table but not in mailboxLines", s.Name)
		}
	}
	return named
}

// TestWildcardNameEveryCommand: "*" or "%" in any mailbox argument that
// names one mailbox is refused (ErrNameWildcard; atk-ext: Cyrus expands
// SETMETADATA "INBOX.*" to every mailbox it matches), and the name is
// kept for the audit of the refusal; LIST and LSUB patterns, and the
// reference joined to them, keep their wildcards (RFC 9051 §6.3.9).
func TestWildcardNameEveryCommand(t *testing.T) {
	ctx := Context{State: StateSelected, Delim: '.', Caps: ^Cap(0), Names: &Names{NS: mustNS(t, nsCyrus), User: "alice"}}
	var p CommandParser
	for cmd, lines := range mailboxLines(t) {
		var want error = ErrNameWildcard
		if cmd == "LIST" || cmd == "LSUB" {
			want = nil
		}
		for _, l := range lines {
			for _, mbox := range []string{`"INBOX.*"`, `"INBOX.%"`, `"A*B"`, `"*"`, `"%"`, `"INBOX.Le%gal"`} {
				p.Reset()
				wire := "a " + strings.Replace(l, "%s", mbox, 1) + "\r\n"
				_, err := parseWire(&p, wire)
				if err == nil {
					err = p.Check(&ctx)
				}
				if err != want {
					t.Errorf("%q: %v, want %v", wire, err, want)
				}
			}
		}
	}
	p.Reset()
	if _, err := parseWire(&p, "a SETMETADATA \"inbox.*\" (/shared/vendor/cmu/cyrus-imapd/expire \"1\")\r\n"); err != nil {
		t.Fatal(err)
	}
	if err := p.Check(&ctx); err != ErrNameWildcard || p.Command().Mailbox != "inbox.*" || !ErrNameWildcard.Audit {
		t.Errorf("SETMETADATA: %v, mailbox %q", err, p.Command().Mailbox)
	}
}
