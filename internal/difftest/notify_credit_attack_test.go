package difftest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestAttackNotifiedContentHiddenInMetadataFetch (atk-msgs): content a
// backend pushes under NOTIFY (RFC 5465 §5.2, MessageNew with fetch
// attributes) is recorded "fetch: body" when it arrives during another
// command (IDLE, NOOP), so that "audit query --fetch body" finds every
// message whose text left (audit/README.md). But when the push arrives
// while a FETCH of flags alone is the command in flight, it is credited
// to that FETCH (backendPump.delivered: the oldest command in flight),
// whose record keeps the class of its own items, "metadata"
// (cmd/imapwarden auditWire: "a FETCH keeps the class of its items"):
// the message's text went to the client and the trail files it under a
// flags fetch of another message, where --fetch body does not look.
// Dovecot syncs the selected mailbox at the end of a FETCH and sends the
// new message's NOTIFY data before the FETCH's completion; another
// session (here a direct one) appends it. Headers alone (ENVELOPE) get a
// delivery record of their own, "fetch: header", as ARCHITECTURE.md §11
// says: that step passes on main.
func TestAttackNotifiedContentHiddenInMetadataFetch(t *testing.T) {
	Binary(t)
	for _, name := range Backends {
		t.Run(name, func(t *testing.T) {
			b, p, direct, cn, box := watchedNotify(t, name)
			// Each step: NOTIFY's fetch attributes, what the push shows,
			// the audit query class that must find the pushed message.
			for i, st := range []struct{ atts, shows, class string }{
				{"UID BODY.PEEK[]", "BODY[]", "body"},
				{"UID ENVELOPE", "ENVELOPE", "header"},
			} {
				if _, err := cn.OK("n", "NOTIFY SET (SELECTED (MessageNew (%s) MessageExpunge))", st.atts); err != nil {
					t.Fatal(err)
				}
				trail := p.Audit()
				if err := b.Append(direct, box, "", Message(fmt.Sprintf("secret %d", i), 300)); err != nil {
					t.Fatal(err)
				}
				uid := uint32(i + 2) // the new message's
				rs, err := cn.OK("f", "FETCH 1 (FLAGS)")
				if err != nil {
					t.Fatal(err)
				}
				pushed := false
				for _, r := range rs {
					if strings.Contains(r.Text, st.shows) && strings.Contains(r.Text, fmt.Sprintf("UID %d ", uid)) {
						pushed = true
					}
					t.Logf("%.120q", r.Text)
				}
				if !pushed {
					t.Skipf("%s pushed no %s of UID %d during the FETCH", name, st.shows, uid)
				}
				for _, r := range trail.Read() {
					t.Logf("record: kind %s tag %s command %s fetch %q messages %d content %d uids %v", r.Kind, r.Tag, r.Command, r.Fetch, r.Messages, r.ContentBytes, r.UIDs)
				}
				// What an auditor runs to find whose text or headers left
				// the server.
				var uids []uint32
				for _, r := range p.AuditQuery(t, "--fetch", st.class, "--user", "alice") {
					uids = append(uids, r.UIDs...)
				}
				if !slices.Contains(uids, uid) {
					t.Errorf("audit query --fetch %s names UIDs %v: not UID %d, whose %s the backend pushed to the client during FETCH 1 (FLAGS)", st.class, uids, uid, st.shows)
				}
			}
		})
	}
}

// watchedNotify starts backend name (skipping one without NOTIFY), a proxy
// in front of it, alice's own connection to it and a new mailbox Watched
// holding one message, which alice's proxied session has selected.
func watchedNotify(t *testing.T, name string) (b *Backend, p *Proxy, direct, cn *Conn, box string) {
	t.Helper()
	b = StartBackend(t, name)
	if !b.Caps["NOTIFY"] {
		t.Skipf("%s offers no NOTIFY", name)
	}
	p = StartProxy(t, ProxyFor(b))
	direct = b.Login(t, "alice")
	t.Cleanup(func() { direct.Close() })
	box = b.Wire("Watched")
	if _, err := direct.OK("c", "CREATE %s", Quote(box)); err != nil {
		t.Fatal(err)
	}
	if err := b.Append(direct, box, "", Message("first", 200)); err != nil {
		t.Fatal(err)
	}
	cn = p.Login(t, "alice")
	if _, err := cn.OK("s", "SELECT %s", Quote(box)); err != nil {
		t.Fatal(err)
	}
	return b, p, direct, cn, box
}
