package imapwire

import (
	"errors"
	"reflect"
	"testing"
)

// TestCommandArgumentsKept: what a SETACL, DELETEACL, LISTRIGHTS,
// GETQUOTA, SETQUOTA, ENABLE and SETMETADATA do depends on arguments
// besides their mailbox; Check keeps them for the policy and the audit
// (ARCHITECTURE.md §10), and refuses those with more than one reading.
func TestCommandArgumentsKept(t *testing.T) {
	cyrus := testCtx
	cyrus.Names = &Names{Rights: BackendRights([]string{"IMAP4rev1", "ACL", "RIGHTS=kxten"})}
	for _, tt := range []struct {
		wire string
		ctx  *Context
		want Named
	}{
		{"A SETACL INBOX anyone lrswipkxtea\r\n", nil, Named{Identifier: "anyone", Rights: "lrswipkxtea"}},
		{"A SETACL INBOX \"-bob\" +lr\r\n", nil, Named{Identifier: "-bob", Rights: "+lr"}},
		{"A SETACL INBOX {6}\r\n$staff {2}\r\n-w\r\n", nil, Named{Identifier: "$staff", Rights: "-w"}},
		{"A SETACL INBOX Bob \"\"\r\n", nil, Named{Identifier: "Bob"}},
		{"A SETACL INBOX bob lrn\r\n", &cyrus, Named{Identifier: "bob", Rights: "lrn"}},
		{"A DELETEACL INBOX -anyone\r\n", nil, Named{Identifier: "-anyone"}},
		{"A LISTRIGHTS INBOX group:staff\r\n", nil, Named{Identifier: "group:staff"}},
		{"A GETQUOTA \"\"\r\n", nil, Named{}},
		{"A SETQUOTA user.bob (storage 0 MESSAGE 10)\r\n", nil, Named{QuotaRoot: "user.bob", Quota: []QuotaLimit{{"STORAGE", 0}, {"MESSAGE", 10}}}},
		{"A ENABLE CONDSTORE utf8=accept\r\n", nil, Named{Enable: []string{"CONDSTORE", "UTF8=ACCEPT"}}},
		{"A SETMETADATA INBOX (/Private/Comment \"x\")\r\n", nil, Named{Entries: []string{"/private/comment"}}},
	} {
		var p CommandParser
		if _, err := parseWire(&p, tt.wire); err != nil {
			t.Fatalf("%q: %v", tt.wire, err)
		}
		ctx := testCtx
		if tt.ctx != nil {
			ctx = *tt.ctx
		}
		if err := p.Check(&ctx); err != nil {
			t.Errorf("%q: %v", tt.wire, err)
			continue
		}
		got := *p.Command().Extra()
		got.Quota, got.Enable, got.Entries = nilIfEmpty(got.Quota), nilIfEmpty(got.Enable), nilIfEmpty(got.Entries)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q: %+v, want %+v", tt.wire, got, tt.want)
		}
	}
	for _, tt := range []struct {
		wire string
		err  error
	}{
		{"A SETACL INBOX anyone lrswipkxteac\r\n", errACLRights}, // c: RFC 2086's, mapped differently (RFC 4314 §2.1.1)
		{"A SETACL INBOX anyone lrd\r\n", errACLRights},
		{"A SETACL INBOX anyone LR\r\n", errACLRights},
		{"A SETACL INBOX anyone lrl\r\n", errACLRights},
		{"A SETACL INBOX anyone +-lr\r\n", errACLRights},
		{"A SETACL INBOX anyone lrn\r\n", errACLRights}, // n: not advertised
		{"A SETACL INBOX anyone \"l r\"\r\n", errACLRights},
		{"A SETACL INBOX anyone l0\r\n", errACLRights},
		{"A SETACL INBOX - lr\r\n", errACLIdentifier},
		{"A SETACL INBOX --bob lr\r\n", errACLIdentifier},
		{"A SETACL INBOX \"\" lr\r\n", errACLIdentifier},
		{"A SETACL INBOX \"bob\tx\" lr\r\n", errACLIdentifier},
		{"A DELETEACL INBOX \"-\"\r\n", errACLIdentifier},
		{"A SETQUOTA \"\" (STORAGE 10 storage 0)\r\n", errQuotaResource},
	} {
		var p CommandParser
		if _, err := parseWire(&p, tt.wire); err != nil {
			t.Fatalf("%q: %v", tt.wire, err)
		}
		ctx := testCtx
		if err := p.Check(&ctx); !errors.Is(err, tt.err) {
			t.Errorf("%q: %v, want %v", tt.wire, err, tt.err)
		}
	}
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}
