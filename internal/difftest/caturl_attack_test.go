package difftest

import (
	"bytes"
	"regexp"
	"slices"
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
			e := startCatenate(t, name)
			b, p, legal, keep := e.b, e.p, e.legal, e.keep
			cn := p.Login(t, "alice")
			trail := p.Audit()
			url := "/" + legal + "/;UIDVALIDITY=" + e.uidv + "/;UID=1"
			rs, err := cn.Cmd("a", "APPEND %s CATENATE (URL %s)", Quote(keep), Quote(url))
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
			if got, want := e.body(t, keep, um[1]), e.body(t, legal, "1"); got == nil || !bytes.Equal(got, want) {
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
