package compat

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

func runClient(c *cellT, e *env, client, mode string) {
	switch client {
	case "curl":
		runCurl(c, e, mode)
	case "imaplib":
		runImaplib(c, e, mode)
	case "mbsync":
		runMbsync(c, e, mode)
	case "goimap":
		runGoimap(c, e, mode)
	default:
		c.Fatalf("unknown client %s", client)
	}
}

// command runs a client program with a deadline, returning its output.
func command(c *cellT, timeout time.Duration, name string, args ...string) []byte {
	c.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		c.Fatalf("%s: %v: %s", filepath.Base(name), err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes()
}

// curlURL is the proxy's URL for curl in mode.
func curlURL(e *env, mode, path string) []string {
	if mode == "imaps" {
		return []string{"imaps://" + e.imaps + path}
	}
	return []string{"--ssl-reqd", "imap://" + e.starttls + path}
}

// runCurl lists the mailboxes and fetches the 1 MB message by UID.
func runCurl(c *cellT, e *env, mode string) {
	curl := needTool(c, "curl", "curl")
	base := []string{"-sS", "--cacert", e.certFile, "-u", "alice:alice-pw"}
	list := command(c, time.Minute, curl, append(base, curlURL(e, mode, "/")...)...)
	if !bytes.Contains(list, []byte("INBOX")) {
		c.Fatalf("LIST through curl lacks INBOX: %q", list)
	}
	body := command(c, time.Minute, curl, append(base, curlURL(e, mode, "/INBOX;UID="+e.bigUID)...)...)
	if sum(body) != sum(e.big) {
		c.Fatalf("1 MB message by UID %s differs: %d bytes, want %d", e.bigUID, len(body), len(e.big))
	}
}

// runImaplib runs testdata/imaplib_client.py; it prints IDLING once in
// IDLE, and a message is then delivered to the backend directly.
func runImaplib(c *cellT, e *env, mode string) {
	py := needTool(c, "python3", "python3")
	host, port, _ := strings.Cut(e.addr(mode), ":")
	subject := unique("imaplib")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "testdata/imaplib_client.py",
		host, port, mode, e.certFile, "alice", "alice-pw", bigID, sum(e.big), subject)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.StdoutPipe()
	if err != nil {
		c.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		c.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var steps []string
	for sc.Scan() {
		l := sc.Text()
		steps = append(steps, l)
		if l == "IDLING" {
			e.deliver(c, smallMessage(unique("idle-imaplib")))
		}
	}
	if err := cmd.Wait(); err != nil {
		c.Fatalf("imaplib: %v after %q: %s", err, steps, lastLines(errb.String(), 3))
	}
	if len(steps) == 0 || steps[len(steps)-1] != "DONE" {
		c.Fatalf("imaplib did not finish: %q", steps)
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}

// runMbsync pulls INBOX into a new Maildir and looks for the 1 MB message.
func runMbsync(c *cellT, e *env, mode string) {
	mbsync := needTool(c, "mbsync", "isync")
	dir := c.TempDir()
	host, port, _ := strings.Cut(e.addr(mode), ":")
	ssl := "IMAPS"
	if mode == "starttls" {
		ssl = "STARTTLS"
	}
	conf := fmt.Sprintf(`IMAPAccount proxy
Host %s
Port %s
User alice
Pass alice-pw
SSLType %s
CertificateFile %s

IMAPStore remote
Account proxy

MaildirStore local
Path %[5]s/mail/
Inbox %[5]s/mail/INBOX

Channel pull
Far :remote:
Near :local:
Patterns INBOX
Sync Pull
Create Near
SyncState %[5]s/state/
`, host, port, ssl, e.certFile, dir)
	os.MkdirAll(filepath.Join(dir, "state"), 0o700)
	os.MkdirAll(filepath.Join(dir, "mail"), 0o700)
	cfg := filepath.Join(dir, "mbsyncrc")
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		c.Fatal(err)
	}
	command(c, 2*time.Minute, mbsync, "-c", cfg, "-a")
	// Maildir stores LF line endings, IMAP's are CRLF; and mbsync adds an
	// X-TUID header to the messages it propagates (isync's "TUID" tracking).
	want := sum(e.big)
	found, files, largest := false, 0, []byte(nil)
	filepath.WalkDir(filepath.Join(dir, "mail"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.Contains(p, "/cur/") && !strings.Contains(p, "/new/") {
			return nil
		}
		files++
		b, err := os.ReadFile(p)
		if len(b) > len(largest) {
			largest = b
		}
		if h, body, ok := bytes.Cut(b, []byte("\n\n")); ok {
			h = tuidHeader.ReplaceAll(h, nil)
			b = append(append(h, "\n\n"...), body...)
		}
		if err == nil && (sum(b) == want || sum(bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))) == want) {
			found = true
		}
		return nil
	})
	if !found {
		head, _, _ := bytes.Cut(largest, []byte("\n\n"))
		c.Fatalf("mbsync: 1 MB message not in the Maildir (%d messages synced, largest %d bytes, want %d; its header %q)", files, len(largest), len(e.big), head)
	}
}

var tuidHeader = regexp.MustCompile(`\nX-TUID: [^\n]*`)

// runGoimap drives the go-imap v2 client through every operation.
func runGoimap(c *cellT, e *env, mode string) {
	exists := make(chan uint32, 16)
	opts := &imapclient.Options{
		TLSConfig: &tls.Config{RootCAs: e.pool, ServerName: "localhost"},
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					select {
					case exists <- *d.NumMessages:
					default:
					}
				}
			},
		},
	}
	var cl *imapclient.Client
	var err error
	if mode == "imaps" {
		cl, err = imapclient.DialTLS(e.imaps, opts)
	} else {
		cl, err = imapclient.DialStartTLS(e.starttls, opts)
	}
	if err != nil {
		c.Fatalf("dial: %v", err)
	}
	defer cl.Close()
	if err := cl.Login("alice", "alice-pw").Wait(); err != nil {
		c.Fatalf("LOGIN: %v", err)
	}
	list, err := cl.List("", "*", nil).Collect()
	if err != nil {
		c.Fatalf("LIST: %v", err)
	}
	if !slicesContainsFunc(list, func(l *imap.ListData) bool { return strings.EqualFold(l.Mailbox, "INBOX") }) {
		c.Fatalf("LIST lacks INBOX")
	}
	if _, err := cl.Select("INBOX", nil).Wait(); err != nil {
		c.Fatalf("SELECT: %v", err)
	}
	sd, err := cl.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Message-ID", Value: bigID}}}, nil).Wait()
	if err != nil || len(sd.AllUIDs()) != 1 {
		c.Fatalf("UID SEARCH big: %v %v", err, sd)
	}
	section := &imap.FetchItemBodySection{Peek: true}
	msgs, err := cl.Fetch(imap.UIDSetNum(sd.AllUIDs()[0]), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	if err != nil || len(msgs) != 1 {
		c.Fatalf("FETCH big: %v (%d messages)", err, len(msgs))
	}
	if got := msgs[0].FindBodySection(section); sum(got) != sum(e.big) {
		c.Fatalf("1 MB message differs: %d bytes, want %d", len(got), len(e.big))
	}

	subject := unique("goimap")
	msg := smallMessage(subject)
	ap := cl.Append("INBOX", int64(len(msg)), nil)
	ap.Write(msg)
	ap.Close()
	if _, err := ap.Wait(); err != nil {
		c.Fatalf("APPEND: %v", err)
	}
	if err := cl.Noop().Wait(); err != nil {
		c.Fatalf("NOOP: %v", err)
	}
	sr, err := cl.Search(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: subject}}}, nil).Wait()
	if err != nil || len(sr.AllSeqNums()) != 1 {
		c.Fatalf("SEARCH appended: %v %v", err, sr)
	}
	seq := sr.AllSeqNums()[0]
	fl, err := cl.Store(imap.SeqSetNum(seq), &imap.StoreFlags{Op: imap.StoreFlagsAdd,
		Flags: []imap.Flag{imap.FlagFlagged, imap.FlagDeleted}}, nil).Collect()
	if err != nil || len(fl) != 1 || !slicesContains(fl[0].Flags, imap.FlagDeleted) || !slicesContains(fl[0].Flags, imap.FlagFlagged) {
		c.Fatalf("STORE: %v %v", err, fl)
	}
	gone, err := cl.Expunge().Collect()
	if err != nil || !slicesContains(gone, seq) {
		c.Fatalf("EXPUNGE: %v, expunged %v, want %d", err, gone, seq)
	}
	sr, err = cl.Search(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: subject}}}, nil).Wait()
	if err != nil || len(sr.AllSeqNums()) != 0 {
		c.Fatalf("SEARCH after EXPUNGE: %v %v", err, sr)
	}

	// Forget the EXISTS of the APPEND above: only a count above the
	// mailbox's current one, reported in IDLE, counts.
	for len(exists) > 0 {
		<-exists
	}
	before := cl.Mailbox().NumMessages
	idle, err := cl.Idle() // returns once the server sent "+"
	if err != nil {
		c.Fatalf("IDLE: %v", err)
	}
	e.deliver(c, smallMessage(unique("idle-goimap")))
	timeout := time.After(testenv.IOTimeout())
wait:
	for {
		select {
		case n := <-exists:
			if n > before {
				break wait
			}
		case <-timeout:
			idle.Close()
			c.Fatalf("IDLE: no EXISTS within %v (had %d messages)", testenv.IOTimeout(), before)
		}
	}
	if err := idle.Close(); err != nil {
		c.Fatalf("DONE: %v", err)
	}
	if err := idle.Wait(); err != nil {
		c.Fatalf("IDLE: %v", err)
	}
	if err := cl.Logout().Wait(); err != nil {
		c.Fatalf("LOGOUT: %v", err)
	}
}

func slicesContains[T comparable](s []T, v T) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func slicesContainsFunc[T any](s []T, f func(T) bool) bool {
	for _, x := range s {
		if f(x) {
			return true
		}
	}
	return false
}
