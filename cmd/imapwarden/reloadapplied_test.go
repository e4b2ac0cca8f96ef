package main

import (
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// TestReloadAppliesLimitsAndRoutes: keys reloadkeys.go calls applied
// change what new sessions get (ARCHITECTURE.md §18), one per class the
// proxy reads at a session's start: limits before and after login, the
// backend a route names, and a backend's address. Each probe sees the
// old value before the SIGHUP and the new one after.
func TestReloadAppliesLimitsAndRoutes(t *testing.T) {
	closed := func() string { // an address nothing listens on
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := ln.Addr().String()
		ln.Close()
		return a
	}
	login := func(t *testing.T, srv *servedText) string {
		return last(dialIMAPS(t, srv.imaps).send("l", `LOGIN demo "demo-password"`))
	}
	for _, tc := range []struct {
		name  string
		after func(common string) string
		probe func(t *testing.T, srv *servedText) (applied bool, what string)
	}{
		{
			name:  "limits.max_credential_bytes",
			after: func(c string) string { return c + "limits: {max_credential_bytes: 64}\n" },
			probe: func(t *testing.T, srv *servedText) (bool, string) {
				l := last(dialIMAPS(t, srv.imaps).send("a", `LOGIN demo "`+strings.Repeat("p", 100)+`"`))
				return strings.HasPrefix(l, "a NO [LIMIT]"), l
			},
		},
		{
			name:  "limits.max_auth_failures",
			after: func(c string) string { return c + "limits: {max_auth_failures: 1}\n" },
			probe: func(t *testing.T, srv *servedText) (bool, string) {
				c := dialIMAPS(t, srv.imaps)
				c.send("a", "LOGIN demo wrong")
				l := last(c.send("b", "LOGIN demo wrong"))
				return strings.HasPrefix(l, "* BYE") || l == "", "a second failed login: " + l
			},
		},
		{
			name:  "limits.max_line",
			after: func(c string) string { return c + "limits: {max_line: 1KiB}\n" },
			probe: func(t *testing.T, srv *servedText) (bool, string) {
				c := dialIMAPS(t, srv.imaps)
				c.cmd("l", "OK", `LOGIN demo "demo-password"`)
				l := last(c.send("a", `STATUS "`+strings.Repeat("n", 1500)+`" (MESSAGES)`))
				return strings.Contains(l, "TOOBIG") || l == "", "a 1.5 KB line: " + l
			},
		},
		{
			name: "routes.users",
			after: func(c string) string {
				return strings.Replace(c, "backends: {mem: ", "backends: {gone: {address: \""+closed()+"\", security: plain}, mem: ", 1) +
					"routes: {users: {demo: gone}}\n"
			},
			probe: func(t *testing.T, srv *servedText) (bool, string) {
				l := login(t, srv)
				return strings.HasPrefix(l, "l NO [UNAVAILABLE]"), "LOGIN demo routed to a server that is gone: " + l
			},
		},
		{
			name: "backends.*.address",
			after: func(c string) string {
				i := strings.Index(c, "backends: {mem: {address: \"")
				j := strings.Index(c[i:], "\", security")
				return c[:i] + "backends: {mem: {address: \"" + closed() + c[i+j:]
			},
			probe: func(t *testing.T, srv *servedText) (bool, string) {
				l := login(t, srv)
				return strings.HasPrefix(l, "l NO [UNAVAILABLE]"), "LOGIN demo after the backend moved: " + l
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, auditPath, common := demoServeConfig(t)
			common += "admin: {address: \"\"}\nrate_limits: {enabled: false}\n"
			srv := startServeText(t, dir, common)
			if applied, what := tc.probe(t, srv); applied {
				t.Fatalf("before the reload: %s", what)
			}
			if err := os.WriteFile(srv.cfgFile, []byte(tc.after(common)), 0o600); err != nil {
				t.Fatal(err)
			}
			srv.hup <- syscall.SIGHUP
			waitReloadRecord(t, auditPath)
			if applied, what := tc.probe(t, srv); !applied {
				t.Errorf("reloaded, not applied to a new session: %s", what)
			}
		})
	}
}

// send writes a tagged command and returns the lines up to its
// completion or the end of the connection, whichever comes first.
func (c *imapConn) send(tag, command string) []string {
	c.t.Helper()
	fmt.Fprintf(c.c, "%s %s\r\n", tag, command)
	var lines []string
	for {
		c.c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
		l, err := c.r.ReadString('\n')
		if l != "" {
			lines = append(lines, strings.TrimRight(l, "\r\n"))
		}
		if err != nil || strings.HasPrefix(l, tag+" ") {
			return lines
		}
	}
}

// last is the last line of lines, "" for none.
func last(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return lines[len(lines)-1]
}
