package difftest

import (
	"crypto/tls"
	"encoding/json"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/audit"
	"github.com/imapwarden/imapwarden/internal/backendtest"
	"github.com/imapwarden/imapwarden/internal/cyrustest"
	"github.com/imapwarden/imapwarden/internal/testenv"
)

// A SETACL (RFC 4314 §3.1) is judged and recorded as the effect it is:
// whom it grants what. "SETACL INBOX anyone lrswipkxtea" opens a user's
// INBOX to every user of the server; "SETACL INBOX alice2 l" lets one
// colleague see it exists. The parser reads the identifier and the rights
// and drops them: the policy input and the audit record have only the
// mailbox and the effect "acl", so no policy can tell the two apart, and
// the trail of an ACL admin's grant does not say to whom nor what
// (attack46d).
func TestSetACLRecordNamesGranteeAndRights(t *testing.T) {
	cyrustest.Require(t)
	srv := cyrustest.Start(t, cyrustest.Options{Users: map[string]string{"alice": "alice-pw", "alice2": "alice2-pw"}})
	b := &Backend{Name: "cyrus", TLSAddr: srv.TLSAddr, CAFile: srv.CAFile, Delim: '.', Prefix: "INBOX."}
	b.tls = backendtest.TLSConfig(t, b.CAFile, "localhost")

	pc := ProxyFor(b)
	pc.PolicyData["acl"] = "admin_groups: [staff]\nallow_public_grants: true\n" // alice may change rights, also for anyone
	p := StartProxy(t, pc)
	cn, _, err := Dial(p.Addr, &tls.Config{InsecureSkipVerify: true}, testenv.IOTimeout())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cn.Close)
	if _, err := cn.OK("l", "LOGIN alice alice-pw"); err != nil {
		t.Fatal(err)
	}
	trail := p.Audit()
	if _, err := cn.OK("a", "SETACL INBOX anyone lrswipkxtea"); err != nil {
		t.Fatal(err)
	}
	rs, err := cn.OK("g", "GETACL INBOX")
	granted := false
	for _, r := range rs {
		granted = granted || strings.Contains(r.Text, "anyone lrswipkxte") // Cyrus adds its legacy c and d
	}
	if err != nil || !granted {
		for _, r := range rs {
			t.Log(r.Text)
		}
		t.Fatalf("GETACL after the grant: %v", err)
	}
	cn.Cmd("z", "LOGOUT")
	var rec *audit.Record
	for rec == nil && trail.Wait(testenv.IOTimeout()) {
		for _, r := range trail.Read() {
			if r.Kind == audit.KindCommand && r.Tag == "a" {
				rec = r
			}
		}
	}
	if rec == nil {
		t.Fatal("no record of the SETACL")
	}
	j, _ := json.Marshal(rec)
	if !strings.Contains(string(j), "anyone") || !strings.Contains(string(j), "lrswipkxtea") {
		t.Errorf("the record of SETACL INBOX anyone lrswipkxtea names neither grantee nor rights: %s", j)
	}
}
