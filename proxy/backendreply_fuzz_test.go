package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// FuzzBackendReply has a scripted backend answer one command of a logged-in
// session with arbitrary bytes (a hostile or broken backend, ARCHITECTURE.md
// §13): the session must never panic and must answer the client or close,
// within BackendTimeout when the backend goes silent; the harness's cleanup
// checks that no goroutine is left.
func FuzzBackendReply(f *testing.F) {
	for _, s := range []string{
		"* 1 FETCH (FLAGS (\\Seen) UID 1)\r\nTAG OK done\r\n",
		"* 1 FETCH (UID 1 BODY[] {5}\r\nhello)\r\nTAG OK done\r\n",
		"* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {3}\r\nabc UID 2)\r\nTAG OK\r\n",
		"* 1 FETCH (BODY[] \"abc\" UID 3)\r\n* 2 EXPUNGE\r\n* 3 EXISTS\r\nTAG OK\r\n",
		"+ go\r\nTAG OK\r\n",
		"* BYE x\r\nTAG OK\r\n",
		"* 1 FETCH (BODY[] {3}\r\nab",
		"* LIST () \"/\" {3}\r\nabc\r\nTAG OK\r\n",
		"* 1 FETCH (BODYSTRUCTURE ((\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1)(\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1) \"mixed\") UID 4)\r\nTAG OK\r\n",
		"* ENABLED QRESYNC\r\n* VANISHED (EARLIER) 1:5\r\nTAG OK\r\n",
		"* OK [COPYUID 1 1:2 3:4] x\r\nTAG OK [ALERT] {5}\r\n",
	} {
		for cmd := range uint8(4) {
			f.Add(s, cmd)
		}
	}
	var mu sync.Mutex
	var reply string
	b := startScripted(f, func(c net.Conn, tag, line string) {
		mu.Lock()
		r := reply
		mu.Unlock()
		if strings.HasPrefix(line, "SELECT") || strings.HasPrefix(line, "EXAMINE") {
			fmt.Fprintf(c, "* 3 EXISTS\r\n* OK [UIDVALIDITY 1] x\r\n%s OK [READ-WRITE] done\r\n", tag)
			return
		}
		if r == "" {
			fmt.Fprintf(c, "%s OK fine\r\n", tag)
			return
		}
		mu.Lock()
		reply = ""
		mu.Unlock()
		c.Write([]byte(strings.ReplaceAll(r, "TAG", tag)))
	})
	h := newHarness(f, func(o *Options) {
		o.Logger = zap.NewNop()
		o.Limits.BackendTimeout = time.Second
		o.Router = &StaticRouter{Default: &Backend{Name: "scripted", Addr: b.ln.Addr().String(), Security: BackendPlain, Login: LoginCommand}}
	})
	cmds := []string{
		"a2 FETCH 1:* (UID FLAGS BODY.PEEK[])",
		"a2 NOOP",
		"a2 UID FETCH 1:* (BODY[HEADER.FIELDS (SUBJECT)] BODYSTRUCTURE)",
		"a2 UID EXPUNGE 1:*",
	}
	f.Fuzz(func(t *testing.T, in string, cmd uint8) {
		mu.Lock()
		reply = ""
		mu.Unlock()
		raw, err := tls.Dial("tcp", h.imaps, clientTLS("imap"))
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(testenv.IOTimeout()))
		br := bufio.NewReader(raw)
		io.WriteString(raw, "l1 LOGIN alice alice-pw\r\na1 SELECT INBOX\r\n")
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("setup: %v", err)
			}
			if strings.HasPrefix(l, "a1 ") {
				break
			}
		}
		mu.Lock()
		reply = in
		mu.Unlock()
		io.WriteString(raw, cmds[int(cmd)%len(cmds)]+"\r\na3 LOGOUT\r\n")
		_, err = io.Copy(io.Discard, br)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("no close for %q", in)
		}
	})
}
