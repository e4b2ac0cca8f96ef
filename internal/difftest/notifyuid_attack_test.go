package difftest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestAttackNotifyPushWithoutUIDNamesNoMessage (atk-msgid): a client's
// NOTIFY may ask for message text without UID (RFC 5465 §5.2: MessageNew
// with fetch attributes, here BODY.PEEK[] alone). The proxy adds UID to a
// FETCH by sequence number that reads content (imapwire.FetchUID), so that
// the trail names the messages read (ARCHITECTURE.md §11), but it sends
// NOTIFY's fetch attributes as they are: the backend pushes the new
// message's text with its sequence number only, and the delivery record
// says "fetch: body, messages 1" with no UID. The trail holds no sequence
// number for it either, so nothing says which message's text left: the
// question "which messages did alice read" has no answer for it. With UID
// in the attributes (the control, first step) the record names it.
func TestAttackNotifyPushWithoutUIDNamesNoMessage(t *testing.T) {
	Binary(t)
	for _, name := range Backends {
		t.Run(name, func(t *testing.T) {
			b, p, direct, cn, box := watchedNotify(t, name)
			for i, atts := range []string{"UID BODY.PEEK[]", "BODY.PEEK[]"} {
				if _, err := cn.OK("n", "NOTIFY SET (SELECTED (MessageNew (%s) MessageExpunge))", atts); err != nil {
					t.Fatal(err)
				}
				if err := b.Append(direct, box, "", Message(fmt.Sprintf("secret %d", i), 300)); err != nil {
					t.Fatal(err)
				}
				uid := uint32(i + 2) // the new message's
				rs, err := cn.OK("o", "NOOP")
				if err != nil {
					t.Fatal(err)
				}
				pushed := false
				for _, r := range rs {
					t.Logf("%.120q", r.Text)
					pushed = pushed || (strings.HasPrefix(r.Text, "* ") && strings.Contains(r.Text, "BODY[]"))
				}
				if !pushed {
					t.Skipf("%s pushed no BODY[] during NOOP", name)
				}
				var uids []uint32
				for _, r := range p.AuditQuery(t, "--fetch", "body", "--user", "alice") {
					t.Logf("record: kind %s tag %s command %s fetch %q messages %d content %d uids %v", r.Kind, r.Tag, r.Command, r.Fetch, r.Messages, r.ContentBytes, r.UIDs)
					uids = append(uids, r.UIDs...)
				}
				if !slices.Contains(uids, uid) {
					t.Errorf("NOTIFY (%s): the backend pushed the text of UID %d to the client; audit query --fetch body names UIDs %v, not it", atts, uid, uids)
				}
			}
		})
	}
}

// TestAttackDeliveryRecordWithoutUIDValidity (atk-msgid): every record
// that names UIDs carries the selected mailbox's UIDVALIDITY, which the
// UIDs are relative to (RFC 9051 §2.3.1.1; ARCHITECTURE.md §11: "Each
// record carries the selected mailbox's UIDVALIDITY"): a mailbox deleted
// and created again under the same name numbers its messages from 1 again.
// A delivery record (content NOTIFY pushed, RFC 5465 §5.2) names the
// pushed message's UID and the selected mailbox, but no uidvalidity
// (auditWire.Delivered), so its UIDs cannot be told from those of another
// mailbox of that name.
func TestAttackDeliveryRecordWithoutUIDValidity(t *testing.T) {
	Binary(t)
	for _, name := range Backends {
		t.Run(name, func(t *testing.T) {
			b := StartBackend(t, name)
			if !b.Caps["NOTIFY"] {
				t.Skipf("%s offers no NOTIFY", name)
			}
			p := StartProxy(t, ProxyFor(b))
			direct := b.Login(t, "alice")
			defer direct.Close()
			box := b.Wire("Pushed")
			if _, err := direct.OK("c", "CREATE %s", Quote(box)); err != nil {
				t.Fatal(err)
			}
			cn := p.Login(t, "alice")
			sel, err := cn.OK("s", "SELECT %s", Quote(box))
			if err != nil {
				t.Fatal(err)
			}
			validity := ""
			for _, r := range sel {
				if _, v, ok := strings.Cut(r.Text, "[UIDVALIDITY "); ok {
					validity, _, _ = strings.Cut(v, "]")
				}
			}
			if _, err := cn.OK("n", "NOTIFY SET (SELECTED (MessageNew (UID BODY.PEEK[]) MessageExpunge))"); err != nil {
				t.Fatal(err)
			}
			if err := b.Append(direct, box, "", Message("pushed", 300)); err != nil {
				t.Fatal(err)
			}
			rs, err := cn.OK("o", "NOOP")
			if err != nil {
				t.Fatal(err)
			}
			pushed := false
			for _, r := range rs {
				pushed = pushed || (strings.HasPrefix(r.Text, "* ") && strings.Contains(r.Text, "BODY[]"))
			}
			if !pushed {
				t.Skipf("%s pushed no BODY[] during NOOP", name)
			}
			found := false
			for _, r := range p.AuditQuery(t, "--user", "alice") {
				if r.Kind != "delivery" {
					continue
				}
				found = true
				t.Logf("delivery record: selected %q uids %v uidvalidity %d", r.Selected, r.UIDs, r.UIDValidity)
				if len(r.UIDs) > 0 && r.UIDValidity == 0 {
					t.Errorf("the delivery record names UIDs %v in %q but no uidvalidity (the SELECT answered UIDVALIDITY %s)", r.UIDs, r.Selected, validity)
				}
			}
			if !found {
				t.Fatal("no delivery record of the pushed message")
			}
		})
	}
}
