package backendtest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Client is a minimal raw-socket IMAP client: enough to set up and prove the
// fixtures, deliberately independent of any IMAP library (and of the proxy's
// own code). It is not safe for concurrent use.
type Client struct {
	c   net.Conn
	r   *bufio.Reader
	seq int
	// Timeout bounds each read and write; zero means 30 s.
	Timeout time.Duration
}

// DialClient connects to addr, over TLS when tlsConf is not nil, and reads the
// greeting, which must be "* OK".
func DialClient(addr string, tlsConf *tls.Config) (*Client, string, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	var c net.Conn
	var err error
	if tlsConf != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, tlsConf)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return nil, "", err
	}
	cl := &Client{c: c, r: bufio.NewReader(c)}
	g, err := cl.ReadLine()
	if err != nil {
		c.Close()
		return nil, "", fmt.Errorf("greeting: %w", err)
	}
	if !strings.HasPrefix(g, "* OK") {
		c.Close()
		return nil, g, fmt.Errorf("greeting: %q", g)
	}
	return cl, g, nil
}

// NetConn returns the underlying connection (a *tls.Conn after TLS).
func (cl *Client) NetConn() net.Conn { return cl.c }

// Close closes the connection.
func (cl *Client) Close() error { return cl.c.Close() }

func (cl *Client) timeout() time.Duration {
	if cl.Timeout > 0 {
		return cl.Timeout
	}
	return 30 * time.Second
}

var literalRE = regexp.MustCompile(`\{(\d+)\}$`)

// ReadLine reads one response line without its CRLF, with any literals ({n})
// inlined.
func (cl *Client) ReadLine() (string, error) {
	_ = cl.c.SetReadDeadline(time.Now().Add(cl.timeout()))
	var b strings.Builder
	for {
		line, err := cl.r.ReadString('\n')
		if err != nil {
			return b.String() + line, err
		}
		line = strings.TrimSuffix(line, "\r\n")
		b.WriteString(line)
		m := literalRE.FindStringSubmatch(line)
		if m == nil {
			return b.String(), nil
		}
		n, err := strconv.Atoi(m[1])
		if err != nil {
			return b.String(), err
		}
		b.Grow(n)
		if _, err := io.CopyN(&b, cl.r, int64(n)); err != nil {
			return b.String(), fmt.Errorf("literal: %w", err)
		}
	}
}

// Write sends raw bytes.
func (cl *Client) Write(p []byte) error {
	_ = cl.c.SetWriteDeadline(time.Now().Add(cl.timeout()))
	_, err := cl.c.Write(p)
	return err
}

// nextTag returns a new tag.
func (cl *Client) nextTag() string {
	cl.seq++
	return fmt.Sprintf("a%d", cl.seq)
}

// Command sends one tagged command line (format and args as for fmt.Sprintf;
// quote strings with Quote) and returns the untagged lines and the tagged
// status line without its tag ("OK ...", "NO ...", "BAD ...").
func (cl *Client) Command(format string, args ...any) (untagged []string, status string, err error) {
	tag := cl.nextTag()
	if err := cl.Write([]byte(tag + " " + fmt.Sprintf(format, args...) + "\r\n")); err != nil {
		return nil, "", err
	}
	return cl.readTagged(tag)
}

func (cl *Client) readTagged(tag string) (untagged []string, status string, err error) {
	for {
		l, err := cl.ReadLine()
		if err != nil {
			return untagged, "", err
		}
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			return untagged, rest, nil
		}
		untagged = append(untagged, l)
	}
}

// OK is Command that also fails unless the status is OK.
func (cl *Client) OK(format string, args ...any) ([]string, error) {
	u, st, err := cl.Command(format, args...)
	if err == nil && !strings.HasPrefix(st, "OK") {
		err = fmt.Errorf("%s: %s", strings.Fields(fmt.Sprintf(format, args...))[0], st)
	}
	return u, err
}

// StartTLS runs STARTTLS and a handshake with conf. Bytes buffered after the
// OK are an error (RFC 9051 §6.2.1: the server must not send any).
func (cl *Client) StartTLS(conf *tls.Config) error {
	if _, err := cl.OK("STARTTLS"); err != nil {
		return err
	}
	if cl.r.Buffered() != 0 {
		return errors.New("bytes after STARTTLS OK")
	}
	tc := tls.Client(cl.c, conf)
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("STARTTLS handshake: %w", err)
	}
	_ = tc.SetDeadline(time.Time{})
	cl.c = tc
	cl.r = bufio.NewReader(tc)
	return nil
}

// Append appends msg to mailbox with a synchronizing literal.
func (cl *Client) Append(mailbox string, msg []byte) error {
	tag := cl.nextTag()
	if err := cl.Write([]byte(fmt.Sprintf("%s APPEND %s {%d}\r\n", tag, Quote(mailbox), len(msg)))); err != nil {
		return err
	}
	l, err := cl.ReadLine()
	if err != nil {
		return err
	}
	if !strings.HasPrefix(l, "+") {
		return fmt.Errorf("APPEND: %q instead of a continuation", l)
	}
	if err := cl.Write(append(append([]byte(nil), msg...), "\r\n"...)); err != nil {
		return err
	}
	_, st, err := cl.readTagged(tag)
	if err == nil && !strings.HasPrefix(st, "OK") {
		err = fmt.Errorf("APPEND: %s", st)
	}
	return err
}

// Quote returns s as an IMAP quoted string (RFC 9051 §4.3). s must not
// contain CR, LF or NUL.
func Quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// Deliver logs in to addr (implicit TLS verified by pool) as user, creates and
// subscribes mailbox if LIST does not show it, and appends msg there.
func Deliver(addr string, pool *x509.CertPool, user, password, mailbox string, msg []byte) error {
	cl, _, err := DialClient(addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		return err
	}
	defer cl.Close()
	if _, err := cl.OK("LOGIN %s %s", Quote(user), Quote(password)); err != nil {
		return err
	}
	if !strings.EqualFold(mailbox, "INBOX") {
		u, err := cl.OK(`LIST "" %s`, Quote(mailbox))
		if err != nil {
			return err
		}
		if len(u) == 0 {
			if _, err := cl.OK("CREATE %s", Quote(mailbox)); err != nil {
				return err
			}
			if _, err := cl.OK("SUBSCRIBE %s", Quote(mailbox)); err != nil {
				return err
			}
		}
	}
	if err := cl.Append(mailbox, msg); err != nil {
		return err
	}
	_, _, _ = cl.Command("LOGOUT")
	return nil
}

// Conn wraps a Client for tests: every error ends the test.
type Conn struct {
	*Client
	t testing.TB
}

// Dial is DialClient that ends the test on error and closes the connection
// at Cleanup.
func Dial(t testing.TB, addr string, tlsConf *tls.Config) *Conn {
	t.Helper()
	cl, _, err := DialClient(addr, tlsConf)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { cl.Close() })
	return &Conn{Client: cl, t: t}
}

// Cmd is Client.Command that ends the test on an I/O error.
func (c *Conn) Cmd(format string, args ...any) (untagged []string, status string) {
	c.t.Helper()
	u, st, err := c.Command(format, args...)
	if err != nil {
		c.t.Fatalf("%s: %v", strings.Fields(fmt.Sprintf(format, args...))[0], err)
	}
	return u, st
}

// MustOK is Client.OK that ends the test unless the status is OK.
func (c *Conn) MustOK(format string, args ...any) []string {
	c.t.Helper()
	u, err := c.OK(format, args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return u
}

// MustStartTLS is Client.StartTLS that ends the test on error.
func (c *Conn) MustStartTLS(conf *tls.Config) {
	c.t.Helper()
	if err := c.StartTLS(conf); err != nil {
		c.t.Fatal(err)
	}
}

// MustReadLine is Client.ReadLine that ends the test on error.
func (c *Conn) MustReadLine() string {
	c.t.Helper()
	l, err := c.ReadLine()
	if err != nil {
		c.t.Fatalf("read: %v (after %q)", err, l)
	}
	return l
}

// TLSConfig returns a client configuration that trusts only the PEM CA in
// caFile and expects serverName.
func TLSConfig(t testing.TB, caFile, serverName string) *tls.Config {
	t.Helper()
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	return &tls.Config{RootCAs: pool, ServerName: serverName}
}

// HasLine reports whether a line of lines contains substr.
func HasLine(lines []string, substr string) bool {
	for _, l := range lines {
		if strings.Contains(l, substr) {
			return true
		}
	}
	return false
}

// Message returns an RFC 5322 message with CRLF line endings whose body
// makes it at least bodySize bytes long.
func Message(subject string, bodySize int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: sender@example.com\r\nTo: alice@example.com\r\nSubject: %s\r\n"+
		"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\nMessage-ID: <%s@example.com>\r\n\r\n",
		subject, strings.ReplaceAll(subject, " ", "."))
	line := strings.Repeat("x", 76) + "\r\n"
	for b.Len() < bodySize {
		b.WriteString(line)
	}
	b.WriteString("end\r\n")
	return b.Bytes()
}
