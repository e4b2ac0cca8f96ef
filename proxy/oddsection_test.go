package proxy

import (
	"crypto/tls"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/couriertest"
	"github.com/imapwarden/imapwarden/internal/cyrustest"
	"github.com/imapwarden/imapwarden/internal/dovecottest"
	"github.com/imapwarden/imapwarden/internal/testenv"
)

// Whatever header names a client puts in a HEADER.FIELDS list the proxy
// lets through, the FETCH's record names the message read and counts the
// content after that item: each backend echoes the names in the
// response's item name (RFC 9051 §7.5.2), "[" and "]" included
// (ARCHITECTURE.md §11, §12).
func TestOddHeaderFieldNamesStillCounted(t *testing.T) {
	for _, name := range []string{"dovecot", "cyrus", "courier"} {
		t.Run(name, func(t *testing.T) {
			var addr, caFile string
			var deliver func([]byte)
			switch name {
			case "dovecot":
				dovecottest.Require(t)
				s := dovecottest.Start(t, dovecottest.Options{})
				addr, caFile, deliver = s.Addr, s.CAFile, func(m []byte) { s.Deliver(t, "alice", "INBOX", m) }
			case "cyrus":
				cyrustest.Require(t)
				s := cyrustest.Start(t, cyrustest.Options{})
				addr, caFile, deliver = s.Addr, s.CAFile, func(m []byte) { s.Deliver(t, "alice", "INBOX", m) }
			case "courier":
				couriertest.Require(t)
				s := couriertest.Start(t, couriertest.Options{})
				addr, caFile, deliver = s.Addr, s.CAFile, func(m []byte) { s.Deliver(t, "alice", "INBOX", m) }
			}
			const size = 64 << 10
			deliver(bigMessage(size))
			h := newHarness(t, func(o *Options) {
				o.Router = &StaticRouter{Default: &Backend{Name: name, Addr: addr, Security: BackendStartTLS,
					TLS: &tls.Config{RootCAs: caPool(t, caFile), ServerName: "localhost"}}}
			})
			for i, names := range []string{`"X[Y"`, `"X]Y"`, `"X[Y]"`, `"[" "]"`, `"X[" FROM`, `"X]" FROM`, `"X-%*~}" FROM`, `"X-*~}" FROM`, "X-Y"} {
				c := h.login()
				c.transact("s SELECT INBOX", "s OK")
				tag := fmt.Sprintf("f%d", i)
				c.send(fmt.Sprintf("%s FETCH 1 (BODY.PEEK[HEADER.FIELDS (%s)] BODY.PEEK[])", tag, names))
				var lines []string
				for {
					l := c.line()
					lines = append(lines, l)
					if strings.HasPrefix(l, tag+" ") {
						break
					}
					if j := strings.LastIndexByte(l, '{'); j >= 0 && strings.HasSuffix(l, "}") {
						var n int64
						fmt.Sscanf(l[j:], "{%d}", &n)
						c.c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
						io.CopyN(io.Discard, c.br, n)
					}
				}
				c.transact("z LOGOUT", "z OK")
				last := lines[len(lines)-1]
				if !strings.HasPrefix(last, tag+" OK") {
					// Refused (by the proxy: BAD [CLIENTBUG], never
					// forwarded; or by the backend): nothing read.
					t.Logf("%s: %q", names, lines)
					continue
				}
				var rec *CommandEvent
				waitFor(t, func() bool {
					h.audit.mu.Lock()
					defer h.audit.mu.Unlock()
					for k := range h.audit.commands {
						if h.audit.commands[k].Command.Tag == tag {
							rec = &h.audit.commands[k]
						}
					}
					return rec != nil
				})
				h.audit.mu.Lock()
				r := *rec
				h.audit.mu.Unlock()
				t.Logf("%s: %q → record content %d, UIDs %v", names, lines, r.Content, r.UIDs)
				if r.Content < size || len(r.UIDs) != 1 || r.UIDs[0] != 1 {
					t.Errorf("%s: the client read BODY[] of UID 1 (%d+ octets); the record says %d octets, UIDs %v", names, size, r.Content, r.UIDs)
				}
			}
		})
	}
}
