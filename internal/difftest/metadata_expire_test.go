package difftest

import (
	"crypto/tls"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/internal/backendtest"
	"github.com/imapwarden/imapwarden/internal/cyrustest"
	"github.com/imapwarden/imapwarden/internal/testenv"
)

// TestVendorAnnotationCannotExpireHeldMail (attack40 finding 2): on Cyrus a
// SETMETADATA of /shared/vendor/cmu/cyrus-imapd/expire on a held mailbox,
// or on a parent of one (the annotation is inherited), makes the server's
// cyr_expire expunge held mail later. The proxy gives the entry the
// effects of what the server does with it (expunge, delete-mailbox), so
// legal_hold refuses it; also when the entry follows a streamed value (the
// command is judged again before its end leaves); a vendor entry the proxy
// cannot classify is refused. The same annotation on an unheld mailbox is
// allowed and does expire its mail: the check is not vacuous.
func TestVendorAnnotationCannotExpireHeldMail(t *testing.T) {
	srv, direct, p := heldCyrus(t)
	login := func() *Conn {
		cn, _, err := Dial(p.Addr, &tls.Config{InsecureSkipVerify: true}, testenv.IOTimeout())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cn.Close)
		if _, err := cn.OK("l", "LOGIN alice alice-pw"); err != nil {
			t.Fatal(err)
		}
		return cn
	}
	cn := login()
	answers(t, cn, [][2]string{
		{"SETMETADATA INBOX.Legal (/shared/vendor/cmu/cyrus-imapd/expire \"1\")", "NO [NOPERM]"},
		{"SETMETADATA INBOX.Legal (/SHARED/vendor/cmu/cyrus-imapd/EXPIRE \"1\")", "NO [NOPERM]"},
		{"SETMETADATA INBOX.Legal (/shared/vendor/cmu/cyrus-imapd/delete \"1\")", "NO [NOPERM]"},
		{"SETMETADATA INBOX (/shared/vendor/cmu/cyrus-imapd/expire \"1\")", "NO [NOPERM]"}, // inherited by INBOX.Legal
		{"SETMETADATA INBOX.Legal (/shared/vendor/cmu/cyrus-imapd/sieve \"x\")", "NO [CANNOT]"},
		{"SETMETADATA INBOX.Legal (/shared/imapsieve/script \"x\")", "NO [CANNOT]"},
		{"SETMETADATA INBOX.Legal (/shared/comment \"kept for the court\")", "OK"},
		{"SETMETADATA INBOX.Other (/shared/vendor/cmu/cyrus-imapd/expire \"1\")", "OK"},
	})
	// The entry after a streamed value: the backend holds the command's
	// start when its end is read, so the refusal ends the session.
	if err := cn.Write([]byte("s SETMETADATA INBOX.Legal (/private/comment {3+}\r\nabc /shared/vendor/cmu/cyrus-imapd/expire \"1\")\r\n")); err != nil {
		t.Fatal(err)
	}
	var last *Resp
	for {
		r, err := cn.Next()
		if err != nil {
			break
		}
		last = r
	}
	if last == nil || !strings.HasPrefix(last.Text, "* BYE [NOPERM]") {
		t.Errorf("SETMETADATA with the expire entry after a streamed value: last response %v, want * BYE [NOPERM]", last)
	}

	// The server's own maintenance (cyrus.conf EVENTS runs it daily).
	dirs, _ := filepath.Glob(filepath.Join(backendtest.Root(), "cyrus/usr/lib/*-linux-gnu"))
	cmd := exec.Command("runuser", "-u", "cyrus", "--", filepath.Join(backendtest.Root(), "cyrus/usr/lib/cyrus/bin/cyr_expire"),
		"-C", filepath.Join(srv.Dir, "imapd.conf"), "-E", "1", "-X", "0", "-v")
	cmd.Env = backendtest.ChildEnv("LD_LIBRARY_PATH=" + strings.Join(dirs, ":"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cyr_expire: %v\n%s", err, out)
	}
	for box, want := range map[string]string{"INBOX.Legal": "MESSAGES 1)", "INBOX.Other": "MESSAGES 0)"} {
		rs, err := direct.OK("s", "STATUS %s (MESSAGES)", box)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if strings.HasPrefix(r.Text, "* STATUS") && !strings.Contains(r.Text, want) {
				t.Errorf("after cyr_expire: %s, want %s", r.Text, want)
			}
		}
	}
}

// heldCyrus starts Cyrus with alice's INBOX.Legal, held by legal_hold, and
// INBOX.Other, each holding a message received in 2020 (older than any
// expire value), and a proxy in front: the server (cyr_expire runs on
// its configuration), a direct connection as alice, and the proxy.
func heldCyrus(t *testing.T) (*cyrustest.Server, *Conn, *Proxy) {
	t.Helper()
	cyrustest.Require(t)
	srv := cyrustest.Start(t, cyrustest.Options{Users: map[string]string{"alice": "alice-pw"}})
	b := &Backend{Name: "cyrus", TLSAddr: srv.TLSAddr, CAFile: srv.CAFile, Delim: '.', Prefix: "INBOX."}
	b.tls = backendtest.TLSConfig(t, b.CAFile, "localhost")
	direct := b.Login(t, "alice")
	t.Cleanup(direct.Close)
	for i, box := range []string{"INBOX.Legal", "INBOX.Other"} {
		if _, err := direct.OK("c", "CREATE %s", box); err != nil {
			t.Fatal(err)
		}
		// A message received in 2020: older than any expire value.
		msg := Message("old", 200)
		tag := fmt.Sprintf("ap%d", i)
		if err := direct.Write([]byte(fmt.Sprintf("%s APPEND %s \"01-Jan-2020 00:00:00 +0000\" {%d+}\r\n%s\r\n", tag, box, len(msg), msg))); err != nil {
			t.Fatal(err)
		}
		if rs, err := direct.Until(tag); err != nil || rs[len(rs)-1].Status != "OK" {
			t.Fatalf("APPEND %s: %v %v", box, err, rs)
		}
	}

	pc := ProxyFor(b)
	pc.PolicyData["legal_hold"] = "users: []\nmailboxes: {\"*\": [\"INBOX.Legal\"]}\n"
	p := StartProxy(t, pc)
	return srv, direct, p
}
