package difftest

import (
	"bytes"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/audit"
)

// TestAttackCatenateURLSlashBeforeUIDValidity (atk-ext): a CATENATE URL
// whose mailbox ends with "/" before ";UIDVALIDITY=" (RFC 5092 §6:
// enc-mailbox [uidvalidity] "/" ...), "/INBOX.Legal/;UIDVALIDITY=n/;UID=1",
// is read by the proxy as the mailbox "INBOX.Legal/" (the "/" kept: with
// "." as the delimiter it is no empty level), a name that is not under
// legal hold and does not exist. Cyrus drops the "/" and copies UID 1 of
// INBOX.Legal. So the backend reads the held Legal while the decision
// input and the record name another mailbox as the source: a policy on
// what a command reads never sees Legal, and the trail says Legal was not
// read. The proxy must refuse the URL (BAD) or name Legal as its source.
func TestAttackCatenateURLSlashBeforeUIDValidity(t *testing.T) {
	Binary(t)
	for _, name := range Backends {
		t.Run(name, func(t *testing.T) {
			b := StartBackend(t, name)
			if !b.Caps["CATENATE"] {
				t.Skipf("%s has no CATENATE (RFC 4469)", name)
			}
			b.Setup(t, "alice")
			p := StartProxy(t, ProxyFor(b))
			direct := b.Login(t, "alice")
			defer direct.Close()
			legal, keep := b.Wire("Legal"), b.Wire("Keep")
			rs, err := direct.OK("s", "STATUS %s (UIDVALIDITY)", Quote(legal))
			if err != nil {
				t.Fatal(err)
			}
			m := regexp.MustCompile(`UIDVALIDITY (\d+)`).FindStringSubmatch(rs[0].Text)
			if m == nil {
				t.Fatalf("no UIDVALIDITY in %q", rs[0].Text)
			}
			cn := p.Login(t, "alice")
			trail := p.Audit()
			url := "/" + legal + "/;UIDVALIDITY=" + m[1] + "/;UID=1"
			rs, err = cn.Cmd("a", "APPEND %s CATENATE (URL %s)", Quote(keep), Quote(url))
			if err != nil {
				t.Fatal(err)
			}
			done := rs[len(rs)-1]
			t.Logf("APPEND CATENATE (URL %q): %s", url, done.Text)
			recs := trail.Read()
			if done.Status == "BAD" {
				for _, r := range recs {
					if r.Tag == "a" && r.Kind == audit.KindCommand {
						t.Errorf("refused URL reached the backend: %+v", r)
					}
				}
				return
			}
			if done.Status != "OK" {
				t.Fatalf("URL %q neither refused nor carried out: %s", url, done.Text)
			}
			// The backend copied a message: show that it is Legal's UID 1.
			um := regexp.MustCompile(`APPENDUID \d+ (\d+)`).FindStringSubmatch(done.Text)
			if um == nil {
				t.Fatalf("no APPENDUID in %q", done.Text)
			}
			body := func(box, uid string) []byte {
				t.Helper()
				if _, err := direct.OK("e", "EXAMINE %s", Quote(box)); err != nil {
					t.Fatal(err)
				}
				rs, err := direct.OK("f", "UID FETCH %s BODY.PEEK[]", uid)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range rs {
					if strings.Contains(r.Text, "FETCH") && len(r.Lits) == 1 {
						return r.Lits[0]
					}
				}
				t.Fatalf("no body of %s UID %s", box, uid)
				return nil
			}
			if got, want := body(keep, um[1]), body(legal, "1"); !bytes.Equal(got, want) {
				t.Fatalf("the copy is not Legal's UID 1 (%d vs %d octets)", len(got), len(want))
			}
			want := b.Canonical("Legal")
			for _, r := range recs {
				if r.Tag == "a" && r.Kind == audit.KindCommand {
					if !slices.Equal(r.Sources, []string{want}) {
						t.Errorf("the backend copied %s's UID 1 (URL %q); the record names sources %q, not %q", want, url, r.Sources, want)
					}
					return
				}
			}
			t.Error("no command record of the APPEND")
		})
	}
}
