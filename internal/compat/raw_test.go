package compat

import (
	"bufio"
	"compress/flate"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// rawConn is a small IMAP client that reads like a transcript: every
// command is tagged automatically and its untagged responses collected.
type rawConn struct {
	t   testing.TB
	c   net.Conn
	br  *bufio.Reader
	tag int
	// zw, after COMPRESS DEFLATE, compresses what write sends.
	zw *flate.Writer
}

// compress starts DEFLATE both ways after a successful COMPRESS DEFLATE
// (RFC 4978 §3). Data the server sent after the tagged OK is already
// compressed, so the buffered reader is replaced only now.
func (c *rawConn) compress() {
	c.br = bufio.NewReader(flate.NewReader(c.br))
	c.zw, _ = flate.NewWriter(c.c, flate.DefaultCompression)
}

// resp is one server response: its text with literal markers kept, and the
// literals' contents in order.
type resp struct {
	text string
	lits [][]byte
}

// dialRaw connects to the proxy over implicit TLS and logs in as alice.
func dialRaw(t testing.TB, e *env, _ string) *rawConn {
	t.Helper()
	c := dialTLSRaw(t, e.imaps, e.pool)
	c.ok("LOGIN alice alice-pw")
	return c
}

func dialTLSRaw(t testing.TB, addr string, pool *x509.CertPool) *rawConn {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr,
		&tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &rawConn{t: t, c: conn, br: bufio.NewReader(conn)}
	if r := c.read(); !strings.HasPrefix(r.text, "* OK") {
		t.Fatalf("greeting %q", r.text)
	}
	return c
}

var literalAtEnd = regexp.MustCompile(`~?\{(\d+)\+?\}$`)

// read reads one response, literals included.
func (c *rawConn) read() resp {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
	var r resp
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read: %v (after %q)", err, r.text)
		}
		line = strings.TrimRight(line, "\r\n")
		r.text += line
		m := literalAtEnd.FindStringSubmatch(line)
		if m == nil {
			return r
		}
		n, _ := strconv.Atoi(m[1])
		lit := make([]byte, n)
		if _, err := io.ReadFull(c.br, lit); err != nil {
			c.t.Fatalf("read literal: %v", err)
		}
		r.lits = append(r.lits, lit)
	}
}

func (c *rawConn) write(s string) {
	c.t.Helper()
	c.c.SetWriteDeadline(time.Now().Add(testenv.IOTimeout()))
	var w io.Writer = c.c
	if c.zw != nil {
		w = c.zw
	}
	if _, err := io.WriteString(w, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
	if c.zw != nil {
		if err := c.zw.Flush(); err != nil {
			c.t.Fatalf("write: %v", err)
		}
	}
}

// run sends a command made of segments: every segment but the last ends
// with a synchronizing literal header ({n} or ~{n}), after which run waits
// for the continuation request. It returns the untagged responses and the
// tagged status line (without the tag).
func (c *rawConn) run(segments ...string) ([]resp, string) {
	c.t.Helper()
	c.tag++
	tag := fmt.Sprintf("c%d", c.tag)
	var untagged []resp
	for i, s := range segments {
		if i == 0 {
			s = tag + " " + s
		}
		if i == len(segments)-1 {
			c.write(s + "\r\n")
			break
		}
		c.write(s + "\r\n")
		for {
			r := c.read()
			if strings.HasPrefix(r.text, "+") {
				break
			}
			if strings.HasPrefix(r.text, tag+" ") {
				return untagged, strings.TrimPrefix(r.text, tag+" ")
			}
			untagged = append(untagged, r)
		}
	}
	for {
		r := c.read()
		if strings.HasPrefix(r.text, tag+" ") {
			return untagged, strings.TrimPrefix(r.text, tag+" ")
		}
		untagged = append(untagged, r)
	}
}

// ok runs a command and fails unless it completes with OK.
func (c *rawConn) ok(segments ...string) ([]resp, string) {
	c.t.Helper()
	un, st := c.run(segments...)
	if !strings.HasPrefix(st, "OK") {
		c.t.Fatalf("%.80q: %s", segments[0], st)
	}
	return un, st
}

// find returns the first untagged response starting with prefix
// (case-insensitive), failing the test when there is none.
func find(t testing.TB, un []resp, prefix string) resp {
	t.Helper()
	for _, r := range un {
		if strings.HasPrefix(strings.ToUpper(r.text), strings.ToUpper(prefix)) {
			return r
		}
	}
	var texts []string
	for _, r := range un {
		texts = append(texts, r.text)
	}
	t.Fatalf("no %q response in %q", prefix, texts)
	return resp{}
}

// caps returns the capabilities after login.
func (c *rawConn) caps() map[string]bool {
	c.t.Helper()
	un, _ := c.ok("CAPABILITY")
	m := map[string]bool{}
	for _, w := range strings.Fields(find(c.t, un, "* CAPABILITY ").text)[2:] {
		m[strings.ToUpper(w)] = true
	}
	return m
}

// searchUID returns the only UID matching criteria.
func (c *rawConn) searchUID(criteria string) string {
	c.t.Helper()
	un, _ := c.ok("UID SEARCH " + criteria)
	f := strings.Fields(find(c.t, un, "* SEARCH").text)[2:]
	if len(f) != 1 {
		c.t.Fatalf("UID SEARCH %s: %v", criteria, f)
	}
	return f[0]
}

func (c *rawConn) logout() {
	c.t.Helper()
	c.run("LOGOUT")
	c.c.Close()
}

func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
