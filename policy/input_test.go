package policy

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

func fullCtx(in *proxy.DecisionInput) inputCtx {
	c := newInputCtx(string(in.Point), in)
	c.now = time.Date(2026, 3, 2, 9, 5, 7, 0, time.UTC)
	c.zone = "UTC"
	c.groups = map[string][]string{"alice": {"admins", "staff"}}
	c.ids = idUse{all: true}
	return c
}

// TestInputDocument pins the input document that policies/README.md
// documents.
func TestInputDocument(t *testing.T) {
	s := testSession("Alice")
	s.ClientAddr = netip.MustParseAddrPort("[::ffff:192.0.2.10]:50123")
	s.Selected = "Entwürfe"
	in := &proxy.DecisionInput{Point: proxy.PointCommand, Session: s,
		Command: parseCommand(t, `a7 UID STORE 1:3,5 +FLAGS.SILENT (\Deleted $Junk)`)}
	c := fullCtx(in)
	got := c.build(allSlots)
	want := ast.MustParseTerm(`{
		"point": "command",
		"session": {
			"id": "s1", "listener": "imaps",
			"client_ip": "192.0.2.10", "client_port": 50123,
			"local_ip": "192.0.2.1", "local_port": 993,
			"tls": {"version": "TLS1.3", "cipher": "TLS_AES_128_GCM_SHA256", "sni": "mail.example.com", "alpn": "imap"},
			"user": "Alice", "mechanism": "PLAIN",
			"client_id": {"name": "Thunderbird", "version": "128.0"},
			"groups": ["admins", "staff"],
			"backend": "dovecot", "auth_failures": 0,
			"started_at": "2026-03-02T09:00:00Z"
		},
		"command": {
			"tag": "a7", "name": "STORE", "uid": true,
			"selected": {"mailbox": "Entwürfe", "read_only": false},
			"set": {"text": "1:3,5", "count": 4},
			"store": {"op": "+FLAGS", "silent": true, "flags": ["\\Deleted", "$Junk"]},
			"literal_bytes": 0, "literals": 0,
			"effects": [{"kind": "set-flags", "target": "selected", "mailbox": "Entwürfe"},
				{"kind": "mark-deleted", "target": "selected", "mailbox": "Entwürfe"}],
			"partial": false, "complete": true,
			"args": [{"kind": "atom", "size": 5}, {"kind": "atom", "size": 13}, {"kind": "list", "size": 2}]
		},
		"now": {"rfc3339": "2026-03-02T09:05:07Z", "unix": 1772442307, "weekday": "Monday",
			"hour": 9, "minute": 5, "clock": "09:05", "date": "2026-03-02", "zone": "UTC"}
	}`)
	if got.Value.Compare(want.Value) != 0 {
		t.Fatalf("input\n%v\nwant\n%v", got, want)
	}
}

func TestInputMailboxes(t *testing.T) {
	for line, want := range map[string]string{
		`a SELECT inbox`:              "INBOX",
		`a SELECT "InBox"`:            "INBOX",
		`a DELETE "&AOQ-rger"`:        "ärger",
		`a DELETE "Inbox/Sub"`:        "INBOX/Sub",
		"a RENAME {4}\r\nSent Old":    "Sent",
		`a APPEND Drafts (\Seen) {3}`: "Drafts",
	} {
		cmd := parseCommandPartial(t, line)
		c := fullCtx(&proxy.DecisionInput{Point: proxy.PointCommand, Session: testSession("alice"), Command: cmd})
		v := c.value(slotMailbox)
		if v == nil || v.Value.Compare(ast.String(want)) != 0 {
			t.Errorf("%q: mailbox %v, want %q", line, v, want)
		}
	}
}

// TestInputNamesEveryMailbox: the mailboxes a command reads or watches
// besides its mailbox argument are in the input: each CATENATE URL's
// source as a read-content effect on it (attack40 finding 4), NOTIFY's
// filters and LIST-EXTENDED's patterns, all of them (finding 8); the key
// of the effects tells sources apart.
func TestInputNamesEveryMailbox(t *testing.T) {
	doc := func(line, selected string, x slot) string {
		s := testSession("alice")
		s.Selected = selected
		c := fullCtx(&proxy.DecisionInput{Point: proxy.PointCommand, Session: s, Command: parseCommand(t, line)})
		v := c.value(x)
		if v == nil {
			return "undefined"
		}
		return v.String()
	}
	for _, tt := range []struct {
		line, selected string
		x              slot
		want           string
	}{
		{`a APPEND Keep CATENATE (URL "/Legal/;UID=1" TEXT {2}` + "\r\nhi" + ` URL "/inbox/;UID=2")`, "", slotEffects,
			`[{"kind": "create-messages", "mailbox": "Keep", "target": "mailbox"}, {"kind": "read-content", "mailbox": "Legal", "target": "source"}, {"kind": "read-content", "mailbox": "INBOX", "target": "source"}]`},
		{`a APPEND Keep CATENATE (URL "/Legal/;UID=1" URL "/Legal/;UID=2")`, "", slotSources, `["Legal"]`},
		{`a APPEND Keep {2}` + "\r\nhi", "", slotSources, `[]`},
		{`a LIST "" "%"`, "", slotSources, `undefined`},
		{`a LIST "" ("Legal/*" "%" "Legal/*")`, "", slotPatterns, `["Legal/*", "%", "Legal/*"]`},
		{`a LSUB "" "&AOQ-*"`, "", slotPatterns, `["ä*"]`},
		{`a NOTIFY SET (selected (MessageNew)) (subtree (Legal inbox) (MessageNew)) (personal (MailboxName))`, "Keep", slotNotify,
			`[{"filter": "selected", "mailboxes": ["Keep"]}, {"filter": "subtree", "mailboxes": ["Legal", "INBOX"]}, {"filter": "personal"}]`},
		{`a NOTIFY SET (mailboxes Legal (MessageNew)) (subtree (Legal) (MessageNew))`, "", slotMailboxes, `["Legal"]`},
		{`a NOTIFY NONE`, "", slotNotify, `[]`},
	} {
		if got := doc(tt.line, tt.selected, tt.x); got != tt.want {
			t.Errorf("%s: %v = %s, want %s", tt.line, slotNames[tt.x], got, tt.want)
		}
	}
	key := func(line string) string {
		c := fullCtx(&proxy.DecisionInput{Point: proxy.PointCommand, Session: testSession("alice"), Command: parseCommand(t, line)})
		return string(c.appendKey(nil, slotEffects))
	}
	if key(`a APPEND Keep CATENATE (URL "/Legal/;UID=1")`) == key(`a APPEND Keep CATENATE (URL "/Other/;UID=1")`) {
		t.Error("the effects' key does not tell the CATENATE sources apart")
	}
}

// parseCommandPartial is parseCommand that stops at a trailing literal
// announcement with nothing after it (the decision point of APPEND).
func parseCommandPartial(t testing.TB, line string) *imapwire.Command {
	if bytes.HasSuffix([]byte(line), []byte("}")) {
		var p imapwire.CommandParser
		if err := p.Line([]byte(line+"\r\n"), imapwire.Literal{Size: 3}, true); err != nil {
			t.Fatal(err)
		}
		if err := p.Check(&testCtx); err != nil {
			t.Fatal(err)
		}
		return p.Command()
	}
	return parseCommand(t, line)
}

// TestInputRedactsArguments: the args summary carries no argument text,
// and nothing from the command's literals.
func TestInputRedactsArguments(t *testing.T) {
	cmd := parseCommand(t, "a SEARCH TEXT {11}\r\nhunter2pass")
	c := fullCtx(&proxy.DecisionInput{Point: proxy.PointCommand, Session: testSession("alice"), Command: cmd})
	doc := c.build(allSlots).String()
	if bytes.Contains([]byte(doc), []byte("hunter2pass")) || bytes.Contains([]byte(doc), []byte("TEXT")) {
		t.Fatalf("input leaks argument text: %s", doc)
	}
}

func TestInputAbsentFields(t *testing.T) {
	s := testSession("")
	s.TLS, s.Selected, s.ClientID = nil, "", nil
	in := &proxy.DecisionInput{Point: proxy.PointConnect, Session: s}
	c := fullCtx(in)
	got := c.build(allSlots)
	obj := got.Value.(ast.Object)
	if obj.Get(ast.StringTerm("command")) != nil {
		t.Error("command at the connect point")
	}
	sess := obj.Get(ast.StringTerm("session")).Value.(ast.Object)
	if sess.Get(ast.StringTerm("tls")) != nil {
		t.Error("tls before TLS")
	}
	if g := sess.Get(ast.StringTerm("groups")); g == nil || g.Value.Compare(ast.NewArray()) != 0 {
		t.Errorf("groups %v, want []", g)
	}
	// A nil session (not sent by the proxy, but safe) builds too.
	c = fullCtx(&proxy.DecisionInput{Point: proxy.PointConnect})
	c.build(allSlots)
}

// TestKeyDistinguishesEverySlot: changing any one field changes the cache
// key of that field's slot, so a cached decision is never reused for an
// input a policy could tell apart.
func TestKeyDistinguishesEverySlot(t *testing.T) {
	base := func() *proxy.DecisionInput {
		return &proxy.DecisionInput{Point: proxy.PointCommand, Session: testSession("alice"),
			Command: parseCommand(t, `a1 UID STORE 1:3 +FLAGS (\Seen)`)}
	}
	mutations := map[slot]func(in *proxy.DecisionInput, c *inputCtx){
		slotPoint:     func(_ *proxy.DecisionInput, c *inputCtx) { c.point = "auth" },
		slotSessionID: func(in *proxy.DecisionInput, _ *inputCtx) { in.Session.ID = "s2" },
		slotListener:  func(in *proxy.DecisionInput, _ *inputCtx) { in.Session.Listener = "imap" },
		slotClientIP: func(in *proxy.DecisionInput, _ *inputCtx) {
			in.Session.ClientAddr = netip.MustParseAddrPort("192.0.2.11:50123")
		},
		slotClientPort: func(in *proxy.DecisionInput, _ *inputCtx) {
			in.Session.ClientAddr = netip.MustParseAddrPort("192.0.2.10:50124")
		},
		slotLocalIP: func(in *proxy.DecisionInput, _ *inputCtx) {
			in.Session.LocalAddr = netip.MustParseAddrPort("192.0.2.2:993")
		},
		slotLocalPort: func(in *proxy.DecisionInput, _ *inputCtx) {
			in.Session.LocalAddr = netip.MustParseAddrPort("192.0.2.1:143")
		},
		slotTLS:       func(in *proxy.DecisionInput, _ *inputCtx) { in.Session.TLS = &proxy.TLSInfo{Version: "TLS1.2"} },
		slotUser:      func(in *proxy.DecisionInput, _ *inputCtx) { in.Session.User = "bob" },
		slotMechanism: func(in *proxy.DecisionInput, _ *inputCtx) { in.Session.Mechanism = "LOGIN" },
		slotClientID:  func(in *proxy.DecisionInput, _ *inputCtx) { in.Session.ClientID = map[string]string{"name": "Outlook"} },
		slotGroups:    func(in *proxy.DecisionInput, _ *inputCtx) { in.Session.User = "bob" },
		slotAuthenticator: func(in *proxy.DecisionInput, _ *inputCtx) {
			in.Session.Identity = &proxy.Identity{Authenticator: "ldap"}
		},
		slotIdentity:     func(in *proxy.DecisionInput, _ *inputCtx) { in.Session.Identity = &proxy.Identity{User: "alice"} },
		slotBackend:      func(in *proxy.DecisionInput, _ *inputCtx) { in.Session.Backend = "other" },
		slotAuthFailures: func(in *proxy.DecisionInput, _ *inputCtx) { in.Session.AuthFailures = 1 },
		slotStartedAt:    func(in *proxy.DecisionInput, _ *inputCtx) { in.Session.Started = in.Session.Started.Add(time.Second) },
		slotLimits: func(_ *proxy.DecisionInput, c *inputCtx) {
			c.limitsFn = func() map[string]int64 { return map[string]int64{"login_failures_user": 3} }
			c.limits, c.limitsOK = nil, false
		},
		slotTag:         func(in *proxy.DecisionInput, _ *inputCtx) { in.Command.Tag = "a2" },
		slotName:        func(in *proxy.DecisionInput, _ *inputCtx) { in.Command.Name = "FETCH" },
		slotUID:         func(in *proxy.DecisionInput, _ *inputCtx) { in.Command.UID = false },
		slotMailbox:     func(in *proxy.DecisionInput, _ *inputCtx) { in.Command.Mailbox = "x" },
		slotReference:   func(in *proxy.DecisionInput, _ *inputCtx) { in.Command.Reference = "x" },
		slotDestination: func(in *proxy.DecisionInput, _ *inputCtx) { in.Command.Destination = "x" },
		slotDelimiter:   func(in *proxy.DecisionInput, _ *inputCtx) { in.Session.Delimiter = "." },
		slotMailboxRaw:  func(in *proxy.DecisionInput, _ *inputCtx) { in.Command.MailboxRaw = "x" },
		slotDestinationRaw: func(in *proxy.DecisionInput, _ *inputCtx) {
			in.Command.DestinationRaw = "x"
		},
		// The effects resolve the selected mailbox: a new one is another
		// input even for the same command.
		slotEffects: func(in *proxy.DecisionInput, _ *inputCtx) { in.Session.Selected = "Legal" },
		slotAppendURLs: func(in *proxy.DecisionInput, _ *inputCtx) {
			in.Command.Name, in.Command.AppendURLs = "APPEND", 1
		},
		slotSources: func(in *proxy.DecisionInput, _ *inputCtx) {
			in.Command.Name, in.Command.Named = "APPEND", &imapwire.Named{Sources: []string{"Legal"}}
		},
		slotPatterns: func(in *proxy.DecisionInput, _ *inputCtx) {
			in.Command.Name, in.Command.Named = "LIST", &imapwire.Named{Patterns: []string{"*"}}
		},
		slotMailboxes: func(in *proxy.DecisionInput, _ *inputCtx) {
			in.Command.Name, in.Command.Named = "NOTIFY", &imapwire.Named{Mailboxes: []string{"Legal"}}
		},
		slotNotify: func(in *proxy.DecisionInput, _ *inputCtx) {
			in.Command.Name, in.Command.Named = "NOTIFY", &imapwire.Named{Notify: []imapwire.NotifyFilter{{Filter: "personal"}}}
		},
		slotACL: func(in *proxy.DecisionInput, _ *inputCtx) {
			in.Command.Name, in.Command.Named = "SETACL", &imapwire.Named{Identifier: "anyone", Rights: "lr"}
		},
		slotQuota: func(in *proxy.DecisionInput, _ *inputCtx) {
			in.Command.Name, in.Command.Named = "SETQUOTA", &imapwire.Named{Quota: []imapwire.QuotaLimit{{Resource: "STORAGE"}}}
		},
		slotEnable: func(in *proxy.DecisionInput, _ *inputCtx) {
			in.Command.Name, in.Command.Named = "ENABLE", &imapwire.Named{Enable: []string{"UTF8=ACCEPT"}}
		},
		slotEntries: func(in *proxy.DecisionInput, _ *inputCtx) {
			in.Command.Name, in.Command.Named = "SETMETADATA", &imapwire.Named{Entries: []string{"/private/comment"}}
		},
		slotSelected:     func(in *proxy.DecisionInput, _ *inputCtx) { in.Session.SelectedReadOnly = true },
		slotSeqSet:       func(in *proxy.DecisionInput, _ *inputCtx) { in.Command.Set = "1:4" },
		slotFetchItems:   func(in *proxy.DecisionInput, _ *inputCtx) { in.Command.FetchItems = []string{"FLAGS"} },
		slotStore:        func(in *proxy.DecisionInput, _ *inputCtx) { in.Command.StoreFlags = []string{`\Deleted`} },
		slotLiteralBytes: func(in *proxy.DecisionInput, _ *inputCtx) { in.Command.LiteralBytes = 5 },
		slotLiterals:     func(in *proxy.DecisionInput, _ *inputCtx) { in.Command.Literals = 1 },
		slotLiteral:      func(_ *proxy.DecisionInput, c *inputCtx) { c.lit = &imapwire.Literal{Size: 9} },
		slotPartial:      func(_ *proxy.DecisionInput, c *inputCtx) { c.partial = true },
		slotComplete:     func(in *proxy.DecisionInput, _ *inputCtx) { in.Command.Complete = false },
		slotArgs:         func(in *proxy.DecisionInput, _ *inputCtx) { in.Command.Args = in.Command.Args[:1] },
		slotNowRFC3339:   func(_ *proxy.DecisionInput, c *inputCtx) { c.now = c.now.Add(time.Second) },
		slotNowUnix:      func(_ *proxy.DecisionInput, c *inputCtx) { c.now = c.now.Add(time.Second) },
		slotNowWeekday:   func(_ *proxy.DecisionInput, c *inputCtx) { c.now = c.now.AddDate(0, 0, 1) },
		slotNowHour:      func(_ *proxy.DecisionInput, c *inputCtx) { c.now = c.now.Add(time.Hour) },
		slotNowMinute:    func(_ *proxy.DecisionInput, c *inputCtx) { c.now = c.now.Add(time.Minute) },
		slotNowClock:     func(_ *proxy.DecisionInput, c *inputCtx) { c.now = c.now.Add(time.Minute) },
		slotNowDate:      func(_ *proxy.DecisionInput, c *inputCtx) { c.now = c.now.AddDate(0, 0, 1) },
	}
	for x := slot(0); x < numSlots; x++ {
		m, ok := mutations[x]
		if x == slotNowZone {
			continue // one zone per engine
		}
		if !ok {
			t.Errorf("no mutation for slot %v", slotNames[x])
			continue
		}
		in := base()
		c := fullCtx(in)
		k1 := c.appendKey(nil, x)
		v1 := c.value(x)
		in = base()
		c = fullCtx(in)
		m(in, &c)
		k2 := c.appendKey(nil, x)
		v2 := c.value(x)
		if bytes.Equal(k1, k2) {
			t.Errorf("slot %v: key unchanged", slotNames[x])
		}
		if v1 != nil && v2 != nil && v1.Equal(v2) && x != slotGroups {
			t.Errorf("slot %v: mutation does not change the value either", slotNames[x])
		}
	}
	// Length prefixes: moving a byte between two strings changes the key.
	in1, in2 := base(), base()
	in1.Command.Mailbox, in1.Command.Destination = "ab", "c"
	in2.Command.Mailbox, in2.Command.Destination = "a", "bc"
	c1, c2 := fullCtx(in1), fullCtx(in2)
	k1 := c1.appendKey(c1.appendKey(nil, slotMailbox), slotDestination)
	k2 := c2.appendKey(c2.appendKey(nil, slotMailbox), slotDestination)
	if bytes.Equal(k1, k2) {
		t.Error("keys ambiguous across fields")
	}
}

func TestSlotsOfRef(t *testing.T) {
	for ref, want := range map[string]slotSet{
		"input":                          allSlots,
		"input[x]":                       allSlots,
		"input.point":                    setOf(slotPoint),
		"input.session":                  sessionSlots,
		"input.session[x]":               sessionSlots,
		"input.session.tls.version":      setOf(slotTLS),
		"input.command.store.flags[_]":   setOf(slotStore),
		"input.now.hour":                 setOf(slotNowHour),
		"input.nothing.here":             0,
		"input.session.nothing":          0,
		"input.command.selected.mailbox": setOf(slotSelected),
	} {
		if got := slotsOfRef(ast.MustParseRef(ref)); got != want {
			t.Errorf("%s: %b, want %b", ref, got, want)
		}
	}
}

func TestAnalyzeClientID(t *testing.T) {
	for src, want := range map[string]idUse{
		"package imapwarden\ndecision := {\"allow\": input.session.client_id.name == \"x\"}\n": {keys: []string{"name"}},
		"package imapwarden\ndecision := {\"allow\": count(input.session.client_id) > 0}\n":    {all: true},
		"package imapwarden\ndecision := {\"allow\": true}\n":                                  {},
	} {
		p, err := compileDir(t.Context(), regoDir(t, map[string]string{"p.rego": src}), false)
		if err != nil {
			t.Fatal(err)
		}
		if p.ids.all != want.all || len(p.ids.keys) != len(want.keys) {
			t.Errorf("%s: %+v, want %+v", src, p.ids, want)
		}
	}
}

func TestAnnouncedLiteral(t *testing.T) {
	if announcedLiteral(&proxy.DecisionInput{}) != nil || announcedLiteral(nil) != nil {
		t.Fatal("a literal where none was announced")
	}
	lit := &imapwire.Literal{Size: 5000, NonSync: true}
	if got := announcedLiteral(&proxy.DecisionInput{Literal: lit}); got != lit {
		t.Fatalf("announced literal %+v, want %+v", got, lit)
	}
}

// TestIdentityInput: the verified identity reaches input.session (its
// groups merged with the groups file's), and every part of it changes the
// cache key, so a decision for one directory answer is never reused for
// another.
func TestIdentityInput(t *testing.T) {
	in := &proxy.DecisionInput{Point: proxy.PointAuth, Session: testSession("alice")}
	in.Session.Identity = &proxy.Identity{Authenticator: "corp", User: "alice", Groups: []string{"staff", "vpn"},
		Issuer: "https://sso.example.com/", ClientID: "thunderbird", Scopes: []string{"mail"},
		Attributes: map[string]string{"mailHost": "imap2"}, Route: "imap2"}
	c := fullCtx(in)
	c.groups = map[string][]string{"alice": {"admins", "staff"}}
	sess := c.build(allSlots).Get(ast.StringTerm("session"))
	want := map[string]string{
		"authenticator": `"corp"`,
		"groups":        `["admins", "staff", "vpn"]`,
		"identity": `{"attributes": {"mailHost": "imap2"}, "authenticator": "corp", "client_id": "thunderbird", "groups": ["staff", "vpn"], ` +
			`"issuer": "https://sso.example.com/", "route": "imap2", "scopes": ["mail"], "user": "alice"}`,
	}
	for k, w := range want {
		if g := sess.Get(ast.StringTerm(k)); g == nil || g.String() != w {
			t.Errorf("session.%s = %v, want %s", k, g, w)
		}
	}
	key := func() string {
		c := fullCtx(in)
		var b []byte
		for _, x := range []slot{slotGroups, slotIdentity} {
			b = c.appendKey(b, x)
		}
		return string(b)
	}
	base := key()
	for name, mut := range map[string]func(id *proxy.Identity){
		"groups":     func(id *proxy.Identity) { id.Groups = []string{"staff"} },
		"issuer":     func(id *proxy.Identity) { id.Issuer = "https://other/" },
		"client":     func(id *proxy.Identity) { id.ClientID = "outlook" },
		"scopes":     func(id *proxy.Identity) { id.Scopes = []string{"mail", "admin"} },
		"attributes": func(id *proxy.Identity) { id.Attributes = map[string]string{"mailHost": "imap3"} },
		"route":      func(id *proxy.Identity) { id.Route = "imap3" },
	} {
		saved := *in.Session.Identity
		mut(in.Session.Identity)
		if key() == base {
			t.Errorf("changing the identity's %s keeps the cache key", name)
		}
		*in.Session.Identity = saved
	}
	// Without an identity (before verification) both are absent.
	in.Session.Identity = nil
	c = fullCtx(in)
	sess = c.build(allSlots).Get(ast.StringTerm("session"))
	if sess.Get(ast.StringTerm("identity")) != nil || sess.Get(ast.StringTerm("authenticator")) != nil {
		t.Errorf("identity before verification: %v", sess)
	}
}

// TestLimitsInput: input.session.limits is built when a policy reads it
// (it once fell outside the session document's slots).
func TestLimitsInput(t *testing.T) {
	if got := slotsOfRef(ast.MustParseRef("input.session.limits")); got != setOf(slotLimits) {
		t.Fatalf("input.session.limits reads slots %b", got)
	}
	c := fullCtx(&proxy.DecisionInput{Point: proxy.PointAuth, Session: testSession("alice")})
	c.limitsFn = func() map[string]int64 { return map[string]int64{"login_failures_user": 3} }
	sess := c.build(setOf(slotLimits)).Get(ast.StringTerm("session"))
	if g := sess.Get(ast.StringTerm("limits")); g == nil || g.String() != `{"login_failures_user": 3}` {
		t.Errorf("session.limits = %v", g)
	}
}

// TestInputEffectNamespaces: each effect's mailbox carries its namespace
// and, in another user's namespace, the owner and the owner's own name
// for it (Cyrus: user.bob.Legal is bob's INBOX.Legal), from the
// backend's NAMESPACE answer; the cache key follows them (attack40
// finding 1).
func TestInputEffectNamespaces(t *testing.T) {
	ns, ok, err := imapwire.ParseNamespace([]byte("* NAMESPACE ((\"INBOX.\" \".\")) ((\"user.\" \".\")) ((\"\" \".\"))\r\n"))
	if !ok || err != nil {
		t.Fatal(ok, err)
	}
	s := testSession("alice")
	s.Selected = "user.bob^smith"
	in := &proxy.DecisionInput{Point: proxy.PointCommand, Session: s, Command: parseCommand(t, `a MOVE 1 user.bob.Legal`), Names: &imapwire.Names{NS: ns, User: "alice"}}
	c := fullCtx(in)
	got := c.value(slotEffects)
	// The owner is the login: Cyrus writes bob.smith's "." as "^"
	// (ARCHITECTURE.md §17).
	want := ast.MustParseTerm(`[
		{"kind": "create-messages", "target": "destination", "mailbox": "user.bob.Legal",
		 "namespace": "other", "owner": "bob", "owner_mailbox": "INBOX.Legal"},
		{"kind": "expunge", "target": "selected", "mailbox": "user.bob^smith",
		 "namespace": "other", "owner": "bob.smith", "owner_mailbox": "INBOX"}]`)
	if got == nil || got.Value.Compare(want.Value) != 0 {
		t.Fatalf("effects\n%v\nwant\n%v", got, want)
	}
	k1 := c.appendKey(nil, slotEffects)
	in.Names = nil
	c = fullCtx(in)
	if k2 := c.appendKey(nil, slotEffects); bytes.Equal(k1, k2) {
		t.Error("the key does not change with the namespaces")
	}
	want = ast.MustParseTerm(`[
		{"kind": "create-messages", "target": "destination", "mailbox": "user.bob.Legal"},
		{"kind": "expunge", "target": "selected", "mailbox": "user.bob^smith"}]`)
	if got := c.value(slotEffects); got == nil || got.Value.Compare(want.Value) != 0 {
		t.Fatalf("without namespaces: effects\n%v\nwant\n%v", got, want)
	}
}

// TestPartKeysFromDecisionKey: a decision's key (appendDecisionKey) is its
// slots' keys in their order, and the keys of the remembered parts read
// from it are the keys cachedDoc makes of their slots alone, whichever
// slots are used, for varied inputs.
func TestPartKeysFromDecisionKey(t *testing.T) {
	parts := map[inputPartKind]slotSet{partSession: sessionSlots, partNow: nowSlots, partEffects: setOf(slotEffects)}
	for i, in := range planInputs(t, 300, 71) {
		c := newInputCtx(string(in.Point), in)
		c.groups, c.ids = planGroups, idUse{all: true}
		c.now, c.zone = planTimes[i%len(planTimes)], "UTC"
		for _, uses := range []slotSet{allSlots, allSlots &^ setOf(slotPoint, slotSessionID, slotEffects+1), setOf(slotUser, slotEffects, slotNowClock)} {
			if key, want := c.appendDecisionKey(nil, uses), c.appendSlots(nil, uses); !bytes.Equal(key, want) {
				t.Fatalf("input %d: decision key %x, want %x", i, key, want)
			}
			for part, slots := range parts {
				if want := c.appendSlots(nil, uses&slots); !bytes.Equal(c.keys[part], want) {
					t.Fatalf("input %d, part %d: %x, want %x", i, part, c.keys[part], want)
				}
			}
		}
	}
}

// TestInputCommandArguments: the arguments that decide what a command
// does reach the policy: whom a SETACL grants what (RFC 4314 §3.1), a
// SETQUOTA's root and limits (RFC 9208 §4.1), ENABLE's capabilities, a
// SETMETADATA's entries.
func TestInputCommandArguments(t *testing.T) {
	for _, tc := range []struct{ line, field, want string }{
		{`a SETACL INBOX anyone lrswipkxtea`, "acl", `{"identifier": "anyone", "grantee": "anyone", "negative": false, "mode": "replace", "rights": "lrswipkxtea"}`},
		{`a SETACL INBOX "-bob" +lr`, "acl", `{"identifier": "-bob", "grantee": "bob", "negative": true, "mode": "add", "rights": "lr"}`},
		{"a SETACL INBOX {6}\r\n$staff -w", "acl", `{"identifier": "$staff", "grantee": "$staff", "negative": false, "mode": "remove", "rights": "w"}`},
		{`a SETACL INBOX Bob ""`, "acl", `{"identifier": "Bob", "grantee": "Bob", "negative": false, "mode": "replace", "rights": ""}`},
		{`a DELETEACL INBOX anyone`, "acl", `{"identifier": "anyone", "grantee": "anyone", "negative": false, "mode": "delete"}`},
		{`a LISTRIGHTS INBOX bob`, "acl", `{"identifier": "bob", "grantee": "bob", "negative": false}`},
		{`a SETQUOTA "" (STORAGE 0 message 10)`, "quota", `{"root": "", "limits": {"STORAGE": 0, "MESSAGE": 10}}`},
		{`a SETQUOTA user.bob ()`, "quota", `{"root": "user.bob", "limits": {}}`},
		{`a GETQUOTA user.bob`, "quota", `{"root": "user.bob"}`},
		{`a ENABLE utf8=accept CONDSTORE`, "enable", `["UTF8=ACCEPT", "CONDSTORE"]`},
		{`a SETMETADATA INBOX (/Private/Comment "x" /shared/admin NIL)`, "entries", `["/private/comment", "/shared/admin"]`},
	} {
		cmd := parseCommand(t, tc.line)
		c := fullCtx(&proxy.DecisionInput{Point: proxy.PointCommand, Session: testSession("alice"), Command: cmd})
		var x slot
		for x = 0; x < numSlots && slotNames[x][1] != tc.field; x++ {
		}
		got := c.value(x)
		if want := ast.MustParseTerm(tc.want); got == nil || got.Value.Compare(want.Value) != 0 {
			t.Errorf("%q: input.command.%s = %v, want %v", tc.line, tc.field, got, want)
		}
	}
}
