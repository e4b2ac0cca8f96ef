package difftest

import (
	"crypto/tls"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/internal/backendtest"
	"github.com/imapwarden/imapwarden/internal/couriertest"
	"github.com/imapwarden/imapwarden/internal/cyrustest"
	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/internal/testenv"
)

// Backends are the servers every differential test runs against.
var Backends = []string{"dovecot", "cyrus", "courier"}

// Users of every backend and proxy (password: name + "-pw"): alice (and
// alice2..alice4, for workers in parallel) is the harness's ordinary user;
// rouser is read-only (policies/readonly); small has a 2000-byte APPEND
// limit (policies/append_size); capf, capg and capp have a 20 KiB /
// 10-message daily content cap, one user per test that spends it.
var Users = []string{"alice", "alice2", "alice3", "alice4", "rouser", "small", "capf", "capg", "capp"}

// MaxWorkers is how many Envs may share a backend (alice..alice4).
const MaxWorkers = 4

// Caps of the "capped" group, as issue 11's attack F set them.
const (
	CapBytes    = 20 * 1024
	CapMessages = 10
)

// Backend is one running IMAP server.
type Backend struct {
	Name    string
	TLSAddr string
	CAFile  string
	// Prefix is the personal namespace's ("INBOX." for Cyrus and
	// Courier), Delim the hierarchy delimiter.
	Prefix string
	Delim  byte
	// Caps are the capabilities the backend offers alice after login.
	Caps map[string]bool
	tls  *tls.Config
}

// StartBackend starts a private server. Dovecot runs with "/" as its
// separator (the layout issue 11 was found on; Cyrus and Courier use "."),
// so that both delimiters are covered.
func StartBackend(t testing.TB, name string) *Backend {
	t.Helper()
	users := map[string]string{}
	for _, u := range Users {
		users[u] = u + "-pw"
	}
	b := startServer(t, name, users, false)
	cn := b.Login(t, "alice")
	rs, err := cn.OK("c", "CAPABILITY")
	if err != nil {
		t.Fatal(err)
	}
	b.Caps = map[string]bool{}
	for _, r := range rs {
		if rest, ok := strings.CutPrefix(r.Text, "* CAPABILITY "); ok {
			for _, c := range strings.Fields(rest) {
				b.Caps[strings.ToUpper(c)] = true
			}
		}
	}
	cn.Close()
	return b
}

// startServer starts a private server for users; acl lets users share
// mailboxes by ACL (RFC 4314): Dovecot's ACL plugins, Courier's virtual
// shared folders ("#shared.bob.Legal"); Cyrus and Courier always offer ACL,
// Cyrus always shows what is shared ("user.bob.Legal").
func startServer(t testing.TB, name string, users map[string]string, acl bool) *Backend {
	t.Helper()
	b := &Backend{Name: name}
	switch name {
	case "dovecot":
		s := dovecottest.Start(t, dovecottest.Options{Users: users, Separator: "/", ACL: acl})
		b.TLSAddr, b.CAFile, b.Delim = s.TLSAddr, s.CAFile, '/'
	case "cyrus":
		cyrustest.Require(t)
		s := cyrustest.Start(t, cyrustest.Options{Users: users})
		b.TLSAddr, b.CAFile, b.Delim, b.Prefix = s.TLSAddr, s.CAFile, '.', "INBOX."
	case "courier":
		couriertest.Require(t)
		s := couriertest.Start(t, couriertest.Options{Users: users, SharedFolders: acl})
		b.TLSAddr, b.CAFile, b.Delim, b.Prefix = s.TLSAddr, s.CAFile, '.', "INBOX."
	default:
		t.Fatalf("unknown backend %q", name)
	}
	b.tls = backendtest.TLSConfig(t, b.CAFile, "localhost")
	return b
}

// Login opens a direct connection to the backend as user.
func (b *Backend) Login(t testing.TB, user string) *Conn {
	t.Helper()
	cn, _, err := Dial(b.TLSAddr, b.tls, testenv.IOTimeout())
	if err != nil {
		t.Fatalf("%s: %v", b.Name, err)
	}
	if _, err := cn.OK("l", "LOGIN %s %s", user, Quote(user+"-pw")); err != nil {
		cn.Close()
		t.Fatalf("%s: login %s: %v", b.Name, user, err)
	}
	return cn
}

// Box returns the backend's name of a logical mailbox: "/" separates
// levels, a first level other than INBOX goes under the personal prefix.
func (b *Backend) Box(logical string) string {
	n := strings.ReplaceAll(logical, "/", string(b.Delim))
	if strings.EqualFold(logical, "INBOX") || strings.HasPrefix(strings.ToUpper(logical), "INBOX/") {
		return n
	}
	return b.Prefix + n
}

// Wire is the backend's name of a logical mailbox as sent: modified UTF-7.
func (b *Backend) Wire(logical string) string { return EncodeMUTF7(b.Box(logical)) }

// Canonical is the name the proxy's audit must give a logical mailbox.
func (b *Backend) Canonical(logical string) string { return Canon(b.Wire(logical), b.Delim) }

// Fixture is a mailbox every test starts from: its messages' flags, in
// order. The counts differ, so that a mailbox's STATUS or SELECT answer
// tells which one the backend opened; every mailbox's last message is
// \Deleted, so that an expunge anywhere shows.
type Fixture struct {
	Name  string // logical
	Flags []string
}

// Fixtures are alice's mailboxes. Legal (and Legal/Sub) is under legal
// hold, INBOX, Sent, Drafts and Entwürfe are protected folders.
var Fixtures = func() []Fixture {
	mk := func(name string, n int) Fixture {
		f := Fixture{Name: name}
		for i := 1; i <= n; i++ {
			fl := ""
			switch {
			case i == n:
				fl = `\Deleted`
			case i == 1:
				fl = `\Seen`
			}
			f.Flags = append(f.Flags, fl)
		}
		return f
	}
	return []Fixture{
		mk("INBOX", 3), mk("Legal", 2), mk("Legal/Sub", 9), mk("Sent", 4), mk("Drafts", 5),
		mk("Keep", 6), mk("Victim", 7), mk("Entwürfe", 8),
	}
}()

// Held and Protected name the fixtures the policies guard.
var (
	Held      = []string{"Legal", "Legal/Sub"}
	Protected = []string{"INBOX", "Sent", "Drafts", "Entwürfe"}
)

// Message returns a small message; tag makes it unique.
func Message(tag string, size int) []byte {
	return backendtest.Message(tag, size)
}

// Append adds a message over a direct connection, with flags (IMAP
// syntax, may be empty).
func (b *Backend) Append(cn *Conn, box, flags string, msg []byte) error {
	if flags != "" {
		flags = "(" + flags + ") "
	}
	if b.Caps["LITERAL+"] {
		if err := cn.Write([]byte(fmt.Sprintf("ap APPEND %s %s{%d+}\r\n%s\r\n", Quote(box), flags, len(msg), msg))); err != nil {
			return err
		}
	} else {
		if err := cn.Write([]byte(fmt.Sprintf("ap APPEND %s %s{%d}\r\n", Quote(box), flags, len(msg)))); err != nil {
			return err
		}
		r, err := cn.Next()
		if err != nil {
			return err
		}
		if !r.Cont() {
			return fmt.Errorf("APPEND %s: %s", box, r.Text)
		}
		if err := cn.Write(append(append([]byte(nil), msg...), "\r\n"...)); err != nil {
			return err
		}
	}
	rs, err := cn.Until("ap")
	if err != nil {
		return err
	}
	if st := rs[len(rs)-1]; st.Status != "OK" {
		return fmt.Errorf("APPEND %s: %s", box, st.Text)
	}
	return nil
}

// fill appends a fixture's messages.
func (b *Backend) fill(cn *Conn, f Fixture) error {
	box := b.Wire(f.Name)
	for i, fl := range f.Flags {
		if err := b.Append(cn, box, fl, Message(fmt.Sprintf("%s %d", f.Name, i+1), 200)); err != nil {
			return err
		}
	}
	return nil
}

// Setup creates alice's fixtures (on a fresh backend).
func (b *Backend) Setup(t testing.TB, user string) {
	t.Helper()
	cn := b.Login(t, user)
	defer cn.Close()
	for _, f := range Fixtures {
		if f.Name != "INBOX" {
			if _, err := cn.OK("cr", "CREATE %s", Quote(b.Wire(f.Name))); err != nil {
				t.Fatalf("%s: %v", b.Name, err)
			}
		}
		if err := b.fill(cn, f); err != nil {
			t.Fatalf("%s: %v", b.Name, err)
		}
	}
}

// shape is what a reset restores: fixture mailboxes with their messages'
// flags (as a multiset: which message has which does not matter), no
// other mailbox, the baseline's subscriptions.
func (b *Backend) shapeProblems(st *State, subs map[string]bool) (fix []Fixture, extra []string) {
	want := map[string]bool{}
	for _, f := range Fixtures {
		c := b.Canonical(f.Name)
		want[c] = true
		box, ok := st.Boxes[c]
		if !ok || box.NoSelect || !sameFlags(box, f) {
			fix = append(fix, f)
		}
	}
	for n, box := range st.Boxes {
		if !want[n] && !box.NoSelect {
			extra = append(extra, n)
		}
	}
	// Deepest first: children before parents.
	slices.SortFunc(extra, func(x, y string) int { return len(y) - len(x) })
	return fix, extra
}

// sameFlags compares a mailbox's messages' flags with a fixture's.
func sameFlags(box *Box, f Fixture) bool {
	have := slices.Sorted(maps.Values(box.Msgs))
	want := slices.Sorted(slices.Values(f.Flags))
	return slices.Equal(have, want)
}

// Reset brings user's mailboxes back to the fixtures over cn and returns
// the new state. A mailbox is repaired, not refilled: messages with
// flags no longer wanted are flagged anew, missing ones appended, extra
// ones removed by UID EXPUNGE (RFC 4315), so that a step that expunged
// two messages costs two APPENDs.
func (b *Backend) Reset(cn *Conn, st *State, subs map[string]bool) (*State, error) {
	var failed []string // answers that were not OK, for the error
	note := func(rs []*Resp, err error) {
		if err != nil {
			failed = append(failed, err.Error())
		} else if last := rs[len(rs)-1]; last.Status != "OK" {
			failed = append(failed, last.Text)
		}
	}
	for pass := 0; pass < 3; pass++ {
		fix, extra := b.shapeProblems(st, subs)
		var subFix []string
		for n := range st.Subs {
			if !subs[n] {
				subFix = append(subFix, "UNSUBSCRIBE "+n)
			}
		}
		for n := range subs {
			if !st.Subs[n] {
				subFix = append(subFix, "SUBSCRIBE "+n)
			}
		}
		if len(fix) == 0 && len(extra) == 0 && len(subFix) == 0 {
			return st, nil
		}
		for _, n := range extra {
			note(cn.Cmd("rd", "DELETE %s", nameArg(st.Boxes[n].Raw)))
		}
		for _, f := range fix {
			box := b.Wire(f.Name)
			cur, ok := st.Boxes[b.Canonical(f.Name)]
			if !ok || cur.NoSelect {
				if _, err := cn.OK("rc", "CREATE %s", Quote(box)); err != nil {
					return nil, err
				}
				if err := b.fill(cn, f); err != nil {
					return nil, err
				}
				continue
			}
			if err := b.repair(cn, box, cur, f); err != nil {
				return nil, err
			}
		}
		for _, s := range subFix {
			verb, n, _ := strings.Cut(s, " ")
			raw := EncodeMUTF7(n)
			if box, ok := st.Boxes[n]; ok {
				raw = box.Raw
			}
			note(cn.Cmd("ru", "%s %s", verb, nameArg(raw)))
		}
		var err error
		if st, err = Snapshot(cn, b.Delim); err != nil {
			return nil, err
		}
	}
	fix, extra := b.shapeProblems(st, subs)
	return nil, fmt.Errorf("%s: reset left %d fixtures wrong, %q extra, subscriptions %q, want %q; refused: %q", b.Name, len(fix), extra, slices.Sorted(maps.Keys(st.Subs)), slices.Sorted(maps.Keys(subs)), failed)
}

// repair makes a mailbox's messages carry a fixture's flags.
func (b *Backend) repair(cn *Conn, box string, cur *Box, f Fixture) error {
	need := map[string]int{}
	for _, fl := range f.Flags {
		need[fl]++
	}
	var spare []uint32 // messages whose flags are not needed
	for _, u := range slices.Sorted(maps.Keys(cur.Msgs)) {
		if fl := cur.Msgs[u]; need[fl] > 0 {
			need[fl]--
		} else {
			spare = append(spare, u)
		}
	}
	if _, err := cn.OK("rs", "SELECT %s", Quote(box)); err != nil {
		return err
	}
	for _, fl := range slices.Sorted(maps.Keys(need)) {
		for ; need[fl] > 0; need[fl]-- {
			if len(spare) > 0 {
				if _, err := cn.OK("rf", "UID STORE %d FLAGS.SILENT (%s)", spare[0], fl); err != nil {
					return err
				}
				spare = spare[1:]
				continue
			}
			if err := b.Append(cn, box, fl, Message(fmt.Sprintf("%s again", f.Name), 200)); err != nil {
				return err
			}
		}
	}
	if len(spare) > 0 {
		var set []string
		for _, u := range spare {
			set = append(set, fmt.Sprint(u))
		}
		uids := strings.Join(set, ",")
		if _, err := cn.OK("rg", `UID STORE %s +FLAGS.SILENT (\Deleted)`, uids); err != nil {
			return err
		}
		if _, err := cn.OK("rx", "UID EXPUNGE %s", uids); err != nil {
			return err
		}
	}
	// A failed EXAMINE leaves nothing selected (see Snapshot).
	cn.Cmd("ry", "EXAMINE difftest-none")
	return nil
}

// nameArg spells a backend's own name back to it.
func nameArg(raw string) string {
	if quotable(raw) {
		return Quote(raw)
	}
	return Quote(raw) // never sent by our fixtures; the backend refuses it
}
