package compat

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
)

// extension is one cell row: the capabilities any of which make it
// applicable, and the check, run on a fresh logged-in connection through the
// proxy with box a new empty mailbox.
type extension struct {
	name string
	rfc  string
	caps []string
	run  func(c *cellT, e *env, r *rawConn, box string)
}

var extensions = []extension{
	{"LITERAL+", "RFC 7888", []string{"LITERAL+"}, func(c *cellT, e *env, r *rawConn, box string) {
		m := smallMessage(unique("literalplus"))
		r.ok(fmt.Sprintf("APPEND %s {%d+}\r\n%s", quote(box), len(m), m))
		wantMessages(c, r, box, 1)
	}},
	{"LITERAL-", "RFC 7888", []string{"LITERAL-"}, func(c *cellT, e *env, r *rawConn, box string) {
		m := smallMessage(unique("literalminus"))
		r.ok(fmt.Sprintf("APPEND %s {%d+}\r\n%s", quote(box), len(m), m))
		wantMessages(c, r, box, 1)
	}},
	{"BINARY", "RFC 3516", []string{"BINARY"}, func(c *cellT, e *env, r *rawConn, box string) {
		body := []byte("caf\xc3\xa9 8-bit \xff\xfe\x80 binary body\r\n")
		m := append([]byte("From: bob@example.com\r\nSubject: binary\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"), body...)
		r.ok(fmt.Sprintf("APPEND %s ~{%d}", quote(box), len(m)), string(m))
		r.ok("SELECT " + quote(box))
		un, _ := r.ok("FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])")
		f := find(c, un, "* 1 FETCH")
		if len(f.lits) != 1 || !bytes.Equal(f.lits[0], body) {
			c.Fatalf("BINARY.PEEK[1] = %q, want %q", f.lits, body)
		}
		if !strings.Contains(f.text, fmt.Sprintf("BINARY.SIZE[1] %d", len(body))) {
			c.Fatalf("BINARY.SIZE[1] missing or wrong in %q", f.text)
		}
	}},
	{"IDLE", "RFC 2177", []string{"IDLE"}, func(c *cellT, e *env, r *rawConn, box string) {
		un, _ := r.ok("SELECT INBOX")
		var n int
		for _, u := range un {
			fmt.Sscanf(u.text, "* %d EXISTS", &n)
		}
		r.tag++
		tag := fmt.Sprintf("c%d", r.tag)
		r.write(tag + " IDLE\r\n")
		if l := r.read(); !strings.HasPrefix(l.text, "+") {
			c.Fatalf("IDLE: %q", l.text)
		}
		e.deliver(c, smallMessage(unique("idle-ext")))
		for {
			l := r.read()
			var k int
			if _, err := fmt.Sscanf(l.text, "* %d EXISTS", &k); err == nil && k > n {
				break
			}
			if !strings.HasPrefix(l.text, "* ") {
				c.Fatalf("in IDLE: %q", l.text)
			}
		}
		r.write("DONE\r\n")
		for {
			l := r.read()
			if strings.HasPrefix(l.text, tag+" ") {
				if !strings.HasPrefix(l.text, tag+" OK") {
					c.Fatalf("IDLE: %q", l.text)
				}
				break
			}
		}
	}},
	{"MOVE", "RFC 6851", []string{"MOVE"}, func(c *cellT, e *env, r *rawConn, box string) {
		subject := unique("move")
		m := smallMessage(subject)
		r.ok(fmt.Sprintf("APPEND INBOX {%d}", len(m)), string(m))
		r.ok("SELECT INBOX")
		uid := r.searchUID("SUBJECT " + quote(subject))
		un, _ := r.ok("UID MOVE " + uid + " " + quote(box))
		find(c, un, "* ") // the EXPUNGE (or VANISHED)
		r.ok("UNSELECT")
		wantMessages(c, r, box, 1)
	}},
	{"UIDPLUS", "RFC 4315", []string{"UIDPLUS"}, func(c *cellT, e *env, r *rawConn, box string) {
		m := smallMessage(unique("uidplus"))
		_, st := r.ok(fmt.Sprintf("APPEND %s {%d}", quote(box), len(m)), string(m))
		var validity, uid uint64
		if _, err := fmt.Sscanf(st, "OK [APPENDUID %d %d]", &validity, &uid); err != nil {
			c.Fatalf("APPEND: no APPENDUID in %q", st)
		}
		r.ok("SELECT " + quote(box))
		_, st = r.ok(fmt.Sprintf("UID COPY %d %s", uid, quote(box)))
		if !strings.Contains(st, fmt.Sprintf("[COPYUID %d %d ", validity, uid)) {
			c.Fatalf("UID COPY: no COPYUID in %q", st)
		}
	}},
	{"CONDSTORE", "RFC 7162", []string{"CONDSTORE"}, func(c *cellT, e *env, r *rawConn, box string) {
		m := smallMessage(unique("condstore"))
		r.ok(fmt.Sprintf("APPEND %s {%d}", quote(box), len(m)), string(m))
		un, _ := r.ok("SELECT " + quote(box) + " (CONDSTORE)")
		find(c, un, "* OK [HIGHESTMODSEQ ")
		un, _ = r.ok("FETCH 1 (MODSEQ)")
		var mod uint64
		if _, err := fmt.Sscanf(find(c, un, "* 1 FETCH").text, "* 1 FETCH (MODSEQ (%d))", &mod); err != nil {
			c.Fatalf("FETCH MODSEQ: %q", un[0].text)
		}
		un, _ = r.ok(fmt.Sprintf("STORE 1 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)", mod))
		find(c, un, "* 1 FETCH")
	}},
	{"QRESYNC+ENABLE", "RFC 7162, RFC 5161", []string{"QRESYNC"}, func(c *cellT, e *env, r *rawConn, box string) {
		m := smallMessage(unique("qresync"))
		r.ok(fmt.Sprintf("APPEND %s {%d}", quote(box), len(m)), string(m))
		un, _ := r.ok("ENABLE QRESYNC")
		if !strings.Contains(strings.ToUpper(find(c, un, "* ENABLED").text), "QRESYNC") {
			c.Fatalf("ENABLE QRESYNC: %q", un[0].text)
		}
		un, _ = r.ok("STATUS " + quote(box) + " (UIDVALIDITY HIGHESTMODSEQ)")
		var validity, mod uint64
		st := find(c, un, "* STATUS").text
		i := strings.Index(st, "(")
		if _, err := fmt.Sscanf(st[i:], "(UIDVALIDITY %d HIGHESTMODSEQ %d)", &validity, &mod); err != nil {
			c.Fatalf("STATUS: %q", st)
		}
		// Expunge the message, then resynchronize from before: VANISHED.
		r.ok("SELECT " + quote(box))
		r.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
		r.ok("CLOSE")
		un, _ = r.ok(fmt.Sprintf("SELECT %s (QRESYNC (%d %d))", quote(box), validity, mod))
		find(c, un, "* VANISHED (EARLIER)")
	}},
	{"UTF8=ACCEPT", "RFC 6855", []string{"UTF8=ACCEPT"}, func(c *cellT, e *env, r *rawConn, box string) {
		un, _ := r.ok("ENABLE UTF8=ACCEPT")
		find(c, un, "* ENABLED UTF8=ACCEPT")
		name := box + "-Entwürfe"
		r.ok("CREATE " + quote(name))
		un, _ = r.ok(`LIST "" ` + quote(name))
		if !strings.Contains(find(c, un, "* LIST").text, "Entwürfe") {
			c.Fatalf("LIST of UTF-8 name: %q", un[0].text)
		}
		r.ok("DELETE " + quote(name))
	}},
	{"NAMESPACE", "RFC 2342", []string{"NAMESPACE"}, func(c *cellT, e *env, r *rawConn, box string) {
		un, _ := r.ok("NAMESPACE")
		ns := find(c, un, "* NAMESPACE ((").text
		if !strings.Contains(ns, quote(e.prefix)) {
			c.Fatalf("NAMESPACE %q lacks personal prefix %q", ns, e.prefix)
		}
	}},
	{"ACL", "RFC 4314", []string{"ACL"}, func(c *cellT, e *env, r *rawConn, box string) {
		un, _ := r.ok("MYRIGHTS " + quote(box))
		find(c, un, "* MYRIGHTS")
		un, _ = r.ok("GETACL " + quote(box))
		// Courier names the owner "owner" rather than the user.
		if a := find(c, un, "* ACL").text; !strings.Contains(a, "alice") && !strings.Contains(a, `"owner"`) {
			c.Fatalf("GETACL lacks alice: %q", a)
		}
		r.ok("SETACL " + quote(box) + " bob lr")
		un, _ = r.ok("GETACL " + quote(box))
		if !strings.Contains(find(c, un, "* ACL").text, "bob") {
			c.Fatalf("SETACL not seen by GETACL: %q", un[0].text)
		}
	}},
	{"QUOTA", "RFC 9208", []string{"QUOTA"}, func(c *cellT, e *env, r *rawConn, box string) {
		un, _ := r.ok("GETQUOTAROOT INBOX")
		find(c, un, "* QUOTAROOT")
	}},
	{"MULTIAPPEND", "RFC 3502", []string{"MULTIAPPEND"}, func(c *cellT, e *env, r *rawConn, box string) {
		m1, m2 := smallMessage(unique("multi1")), smallMessage(unique("multi2"))
		r.ok(fmt.Sprintf("APPEND %s {%d}", quote(box), len(m1)), fmt.Sprintf("%s {%d}", m1, len(m2)), string(m2))
		wantMessages(c, r, box, 2)
	}},
	{"CATENATE", "RFC 4469", []string{"CATENATE"}, func(c *cellT, e *env, r *rawConn, box string) {
		p1 := "From: bob@example.com\r\nSubject: catenate\r\n\r\n"
		p2 := "Body joined by CATENATE.\r\n"
		r.ok(fmt.Sprintf("APPEND %s CATENATE (TEXT {%d}", quote(box), len(p1)), fmt.Sprintf("%s TEXT {%d}", p1, len(p2)), p2+")")
		r.ok("SELECT " + quote(box))
		un, _ := r.ok("FETCH 1 BODY.PEEK[]")
		if f := find(c, un, "* 1 FETCH"); len(f.lits) != 1 || string(f.lits[0]) != p1+p2 {
			c.Fatalf("CATENATE result %q", f.lits)
		}
	}},
	{"ESEARCH", "RFC 4731", []string{"ESEARCH"}, func(c *cellT, e *env, r *rawConn, box string) {
		for i := 0; i < 3; i++ {
			m := smallMessage(unique("esearch"))
			r.ok(fmt.Sprintf("APPEND %s {%d}", quote(box), len(m)), string(m))
		}
		r.ok("SELECT " + quote(box))
		un, _ := r.ok("SEARCH RETURN (MIN MAX COUNT) ALL")
		es := find(c, un, "* ESEARCH").text
		for _, w := range []string{"MIN 1", "MAX 3", "COUNT 3"} {
			if !strings.Contains(es, w) {
				c.Fatalf("ESEARCH %q lacks %s", es, w)
			}
		}
	}},
	{"LIST-EXTENDED", "RFC 5258", []string{"LIST-EXTENDED"}, func(c *cellT, e *env, r *rawConn, box string) {
		r.ok("SUBSCRIBE " + quote(box))
		un, _ := r.ok(`LIST (SUBSCRIBED) "" ` + quote(box) + " RETURN (CHILDREN)")
		if l := find(c, un, "* LIST").text; !strings.Contains(l, `\Subscribed`) {
			c.Fatalf("LIST (SUBSCRIBED): %q", l)
		}
		r.ok("UNSUBSCRIBE " + quote(box))
	}},
	{"LIST-STATUS", "RFC 5819", []string{"LIST-STATUS"}, func(c *cellT, e *env, r *rawConn, box string) {
		m := smallMessage(unique("liststatus"))
		r.ok(fmt.Sprintf("APPEND %s {%d}", quote(box), len(m)), string(m))
		un, _ := r.ok(`LIST "" ` + quote(box) + " RETURN (STATUS (MESSAGES))")
		if s := find(c, un, "* STATUS").text; !strings.Contains(s, "MESSAGES 1") {
			c.Fatalf("LIST-STATUS: %q", s)
		}
	}},
	{"SPECIAL-USE", "RFC 6154", []string{"SPECIAL-USE"}, func(c *cellT, e *env, r *rawConn, box string) {
		un, _ := r.ok(`LIST "" "*" RETURN (SPECIAL-USE)`)
		find(c, un, "* LIST")
	}},
	{"NOTIFY", "RFC 5465", []string{"NOTIFY"}, func(c *cellT, e *env, r *rawConn, box string) {
		r.ok("NOTIFY SET (selected (MessageNew MessageExpunge))")
		r.ok("NOTIFY NONE")
	}},
	{"UNSELECT", "RFC 3691", []string{"UNSELECT"}, func(c *cellT, e *env, r *rawConn, box string) {
		m := smallMessage(unique("unselect"))
		r.ok(fmt.Sprintf("APPEND %s {%d}", quote(box), len(m)), string(m))
		r.ok("SELECT " + quote(box))
		r.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
		r.ok("UNSELECT")
		if _, st := r.run("FETCH 1 FLAGS"); strings.HasPrefix(st, "OK") {
			c.Fatalf("still selected after UNSELECT")
		}
		wantMessages(c, r, box, 1) // UNSELECT does not expunge
	}},
	{"ID", "RFC 2971", []string{"ID"}, func(c *cellT, e *env, r *rawConn, box string) {
		un, _ := r.ok(`ID ("name" "imapwarden-compat")`)
		find(c, un, "* ID ")
	}},
	// The issue asks that backend identity (ID details) not reach clients:
	// this row fails while the backend's version, OS or build environment
	// comes through.
	{"ID without backend details", "RFC 2971 §3.3", []string{"ID"}, func(c *cellT, e *env, r *rawConn, box string) {
		un, _ := r.ok(`ID ("name" "imapwarden-compat")`)
		id := find(c, un, "* ID ").text
		var leaked []string
		for _, field := range []string{`"version"`, `"os"`, `"os-version"`, `"environment"`, `"command"`, `"arguments"`} {
			if strings.Contains(strings.ToLower(id), field) {
				leaked = append(leaked, field)
			}
		}
		if len(leaked) > 0 {
			// The reply itself stays out of the note: it names this
			// machine's kernel and library versions.
			c.T.Logf("ID reply: %s", id)
			c.Errorf("ID reply through the proxy reveals the backend's %s fields", strings.Join(leaked, ", "))
		}
	}},
	{"COMPRESS=DEFLATE", "RFC 4978", []string{"COMPRESS=DEFLATE"}, func(c *cellT, e *env, r *rawConn, box string) {
		r.ok("COMPRESS DEFLATE")
		r.compress()
		un, _ := r.ok("SELECT INBOX")
		find(c, un, "* ")
		un, _ = r.ok("UID FETCH " + e.bigUID + " BODY.PEEK[]")
		if f := find(c, un, "* "); len(f.lits) != 1 || sum(f.lits[0]) != sum(e.big) {
			c.Fatalf("1 MB message over COMPRESS differs")
		}
	}},
}

// wantMessages checks STATUS MESSAGES of box.
func wantMessages(c *cellT, r *rawConn, box string, n int) {
	c.Helper()
	un, _ := r.ok("STATUS " + quote(box) + " (MESSAGES)")
	if s := find(c, un, "* STATUS").text; !strings.Contains(s, fmt.Sprintf("MESSAGES %d)", n)) {
		c.Fatalf("STATUS %s: %q, want %d messages", box, s, n)
	}
}

// advertised reports whether any of caps is in set; a prefix "QUOTA" also
// matches "QUOTA=RES-STORAGE".
func advertised(set map[string]bool, caps []string) bool {
	for _, want := range caps {
		for have := range set {
			if have == want || strings.HasPrefix(have, want+"=") {
				return true
			}
		}
	}
	return false
}

// runExtensions runs every extension cell of backend e.
func runExtensions(t *testing.T, res *results, e *env) {
	r := dialRaw(t, e, "imaps")
	viaProxy := r.caps()
	r.logout()
	d := dialTLSRaw(t, e.direct, e.directPool)
	d.ok("LOGIN alice alice-pw")
	direct := d.caps()
	d.logout()
	t.Logf("%s capabilities through the proxy: %v", e.name, slices.Sorted(maps.Keys(viaProxy)))
	t.Logf("%s capabilities direct: %v", e.name, slices.Sorted(maps.Keys(direct)))
	for _, x := range extensions {
		cell(t, res, "ext/"+x.name, e.name+" ext "+x.name, func(c *cellT) {
			if !advertised(viaProxy, x.caps) {
				if advertised(direct, x.caps) {
					c.notApplicable("%s advertises %s but the proxy removes it", e.name, strings.Join(x.caps, "/"))
				}
				c.notApplicable("%s does not advertise %s", e.name, strings.Join(x.caps, "/"))
			}
			r := dialRaw(c, e, "imaps")
			box := e.mailbox(unique("x-" + strings.ToLower(strings.NewReplacer("+", "p", "=", "-", "/", "-").Replace(x.name))))
			r.ok("CREATE " + quote(box))
			x.run(c, e, r, box)
			r.run("UNSELECT")
			r.run("DELETE " + quote(box))
			r.logout()
		})
	}
}
