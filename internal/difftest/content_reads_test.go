package difftest

import (
	"crypto/tls"
	"encoding/json"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// nocontentPolicy refuses message content to the users it lists, on the
// read-content effect, whichever command has it.
const nocontentPolicy = `package imapwarden

inspect_effects contains "read-content"

deny contains {"policy": "nocontent", "code": "NOPERM", "reason": "No message content for this account"} if {
	input.point == "command"
	in_list(data.nocontent.users)
	some _ in effects_of({"read-content"})
}
`

// TestHeaderAndSearchReadsAreContent (attack40 finding 6): FETCH ENVELOPE
// delivers Subject, From, To and Message-ID, BODYSTRUCTURE an attached
// message's envelope, and SEARCH, SORT and THREAD by text tell whether a
// message holds a string: a policy refusing read-content refuses them on
// Dovecot, while flags, dates and sizes stay readable. For another user
// the envelopes are delivered and, not being content octets, counted in
// no content_bytes or messages of the trail (the fetch caps count those);
// a search by text is recorded with its mailbox and the kind of its keys
// (search_keys), never the text searched for.
func TestHeaderAndSearchReadsAreContent(t *testing.T) {
	Binary(t)
	b := StartBackend(t, "dovecot")
	b.Setup(t, "alice")
	b.Setup(t, "alice2")
	pc := ProxyFor(b)
	pc.Policies = map[string]string{"nocontent/nocontent.rego": nocontentPolicy, "nocontent/data.yaml": "users: [alice]\n"}
	p := StartProxy(t, pc)
	login := func(user string) *Conn {
		cn, _, err := Dial(p.Addr, &tls.Config{InsecureSkipVerify: true}, testenv.IOTimeout())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cn.Close)
		if _, err := cn.OK("l", "LOGIN %s %s-pw", user, user); err != nil {
			t.Fatal(err)
		}
		if _, err := cn.OK("e", "EXAMINE INBOX"); err != nil {
			t.Fatal(err)
		}
		return cn
	}
	cn := login("alice")
	answers(t, cn, [][2]string{
		{"FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE UID)", "OK"},
		{"FETCH 1 FAST", "OK"},
		{"SEARCH SEEN SINCE 1-Jan-2000 LARGER 1", "OK"},
		{"SORT (DATE SIZE) UTF-8 ALL", "OK"},
		{"FETCH 1 ENVELOPE", "NO [NOPERM]"},
		{"UID FETCH 1:* (FLAGS ENVELOPE)", "NO [NOPERM]"},
		{"FETCH 1 ALL", "NO [NOPERM]"},
		{"FETCH 1 BODYSTRUCTURE", "NO [NOPERM]"},
		{"FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]", "NO [NOPERM]"},
		{"SEARCH BODY secret", "NO [NOPERM]"},
		{"UID SEARCH OR SEEN SUBJECT secret", "NO [NOPERM]"},
		{"SEARCH HEADER Message-ID x", "NO [NOPERM]"},
		{"SORT (SUBJECT) UTF-8 ALL", "NO [NOPERM]"},
		{"THREAD REFERENCES UTF-8 ALL", "NO [NOPERM]"},
	})

	// alice2 reads envelopes; the trail says headers were read, and counts
	// no content octets for them.
	trail := p.Audit()
	cn = login("alice2")
	rs, err := cn.OK("f", "FETCH 1:* (FLAGS ENVELOPE)")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rs[0].Text, "ENVELOPE (") {
		t.Fatalf("no envelope delivered: %q", rs[0].Text)
	}
	if _, err := cn.OK("s", "SEARCH TEXT secret"); err != nil {
		t.Fatal(err)
	}
	cn.Cmd("z", "LOGOUT")
	seen := 0
	for seen < 2 && trail.Wait(testenv.IOTimeout()) {
		for _, r := range trail.Read() {
			if r.User != "alice2" || (r.Tag != "f" && r.Tag != "s") {
				continue
			}
			seen++
			if r.ContentBytes != 0 || r.Messages != 0 {
				t.Errorf("%s %s: content_bytes %d, messages %d: no content octets were delivered", r.Tag, r.Command, r.ContentBytes, r.Messages)
			}
			if r.Tag == "f" && r.Fetch != "header" {
				t.Errorf("FETCH ENVELOPE recorded as fetch %q, want header", r.Fetch)
			}
			// What the search probed, by kind, never the text.
			if r.Tag == "s" && (len(r.SearchKeys) != 1 || r.SearchKeys[0] != "TEXT" || r.Selected != "INBOX") {
				t.Errorf("SEARCH TEXT recorded with search_keys %v in %q, want [TEXT] in INBOX", r.SearchKeys, r.Selected)
			}
			if b, _ := json.Marshal(r); strings.Contains(string(b), "secret") {
				t.Errorf("the trail holds the text searched for: %s", b)
			}
		}
	}
	if seen != 2 {
		t.Errorf("%d of alice2's two records in the trail", seen)
	}
}

// answers sends each command of cases (command, answer) and checks that its
// completion starts with the answer ("NO [NOPERM]").
func answers(t *testing.T, cn *Conn, cases [][2]string) {
	t.Helper()
	for _, c := range cases {
		rs, err := cn.Cmd("a", "%s", c[0])
		if err != nil {
			t.Fatalf("%s: %v", c[0], err)
		}
		if got := rs[len(rs)-1].Text; !strings.HasPrefix(got, "a "+c[1]) {
			t.Errorf("%s: %q, want %s", c[0], got, c[1])
		}
	}
}
