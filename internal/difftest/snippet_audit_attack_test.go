package difftest

import (
	"strings"
	"testing"
)

// TestAttackSnippetReadRecordedAsMetadata (atk-audit): Dovecot's SNIPPET
// (LAZY=FUZZY) returns the start of each message's text, as PREVIEW
// (RFC 8970) does; the proxy's table knows it reads content (a policy
// refusing content refuses it; its octets are charged to the caps), but
// the record files it as "fetch":"metadata", so "audit query --fetch
// body", the documented question "which messages did alice read", does
// not name the messages whose text went to the client. PREVIEW, the
// same read, is found (the control).
func TestAttackSnippetReadRecordedAsMetadata(t *testing.T) {
	Binary(t)
	for _, name := range Backends {
		t.Run(name, func(t *testing.T) {
			b := StartBackend(t, name)
			if !b.Caps["SNIPPET=FUZZY"] {
				t.Skipf("%s offers no SNIPPET=FUZZY", name)
			}
			p := StartProxy(t, ProxyFor(b))
			direct := b.Login(t, "alice")
			defer direct.Close()
			box := b.Wire("Snippets")
			if _, err := direct.OK("c", "CREATE %s", Quote(box)); err != nil {
				t.Fatal(err)
			}
			if err := b.Append(direct, box, "", Message("confidential merger terms", 400)); err != nil {
				t.Fatal(err)
			}
			cn := p.Login(t, "alice")
			if _, err := cn.OK("s", "SELECT %s", Quote(box)); err != nil {
				t.Fatal(err)
			}
			for _, item := range []string{"PREVIEW", "SNIPPET (LAZY=FUZZY)"} {
				if item == "PREVIEW" && !b.Caps["PREVIEW"] {
					continue
				}
				word, _, _ := strings.Cut(item, " ")
				rs, err := cn.OK("f", "UID FETCH 1:* (%s)", item)
				if err != nil {
					t.Fatalf("UID FETCH (%s): %v", item, err)
				}
				got := false
				for _, r := range rs {
					got = got || (strings.HasPrefix(r.Text, "* ") && strings.Contains(r.Text, word+" "))
				}
				if !got {
					t.Fatalf("UID FETCH (%s): no %s of the text reached the client: %q", item, word, texts(rs))
				}
				named := false
				for _, r := range p.AuditQuery(t, "--user", "alice", "--fetch", "body", "--command", "UID FETCH") {
					named = named || (len(r.Items) > 0 && strings.Contains(strings.Join(r.Items, " "), word))
				}
				if !named {
					var classes []string
					for _, r := range p.AuditQuery(t, "--user", "alice", "--command", "UID FETCH") {
						classes = append(classes, r.Fetch+" "+strings.Join(r.Items, ","))
					}
					t.Errorf("%s of a message's text reached the client, but audit query --fetch body names no UID FETCH of it; the trail has %q", word, classes)
				}
			}
		})
	}
}

func texts(rs []*Resp) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Text)
	}
	return out
}
