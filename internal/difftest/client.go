package difftest

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Resp is one server response (RFC 9051 §7): its lines with the literals
// between them, as received.
type Resp struct {
	// Text is the response with its literals inlined and CRLFs removed
	// between lines: for matching, never for counting octets.
	Text string
	// Lits are the literals, in order, and LitAt the offset in Text where
	// each started.
	Lits  [][]byte
	LitAt []int
	// Tag is "*", "+" or the tag; Status "OK", "NO", "BAD", "BYE",
	// "PREAUTH" or "" for data.
	Tag, Status string
}

// Cont reports a continuation request.
func (r *Resp) Cont() bool { return r.Tag == "+" }

// Conn is a raw IMAP connection. A goroutine reads responses into a
// channel, so that writes never wait on a server blocked writing to us.
type Conn struct {
	c       net.Conn
	resps   chan *Resp
	readErr error // valid once resps is closed
	timeout time.Duration
}

// Dial connects over TLS and reads the greeting.
func Dial(addr string, conf *tls.Config, timeout time.Duration) (*Conn, *Resp, error) {
	d := &net.Dialer{Timeout: timeout}
	c, err := tls.DialWithDialer(d, "tcp", addr, conf)
	if err != nil {
		return nil, nil, err
	}
	cn := &Conn{c: c, resps: make(chan *Resp, 256), timeout: timeout}
	go cn.readLoop(bufio.NewReaderSize(c, 64<<10))
	g, err := cn.Next()
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("greeting: %w", err)
	}
	return cn, g, nil
}

// Close closes the connection; the reader ends.
func (cn *Conn) Close() { cn.c.Close() }

func (cn *Conn) readLoop(br *bufio.Reader) {
	defer close(cn.resps)
	for {
		r, err := readResp(br)
		if err != nil {
			cn.readErr = err
			return
		}
		cn.resps <- r
	}
}

// errClosed is the end of the server's stream.
var errClosed = errors.New("connection closed")

// Next returns the next response; errClosed after the server closed, an
// error after cn's timeout without one.
func (cn *Conn) Next() (*Resp, error) {
	t := time.NewTimer(cn.timeout)
	defer t.Stop()
	select {
	case r, ok := <-cn.resps:
		if !ok {
			if cn.readErr == io.EOF || cn.readErr == nil {
				return nil, errClosed
			}
			return nil, fmt.Errorf("%w: %v", errClosed, cn.readErr)
		}
		return r, nil
	case <-t.C:
		return nil, fmt.Errorf("no response within %v", cn.timeout)
	}
}

// Write sends bytes.
func (cn *Conn) Write(b []byte) error {
	cn.c.SetWriteDeadline(time.Now().Add(cn.timeout))
	_, err := cn.c.Write(b)
	return err
}

// Cmd sends one command line (tag added) and returns its responses, the
// tagged completion last.
func (cn *Conn) Cmd(tag, format string, args ...any) ([]*Resp, error) {
	if err := cn.Write([]byte(tag + " " + fmt.Sprintf(format, args...) + "\r\n")); err != nil {
		return nil, err
	}
	return cn.Until(tag)
}

// Until reads responses up to and including the completion of tag.
func (cn *Conn) Until(tag string) ([]*Resp, error) {
	var out []*Resp
	for {
		r, err := cn.Next()
		if err != nil {
			return out, err
		}
		out = append(out, r)
		if r.Tag == tag {
			return out, nil
		}
	}
}

// OK is Cmd that fails unless the completion is OK.
func (cn *Conn) OK(tag, format string, args ...any) ([]*Resp, error) {
	rs, err := cn.Cmd(tag, format, args...)
	if err != nil {
		return rs, err
	}
	if last := rs[len(rs)-1]; last.Status != "OK" {
		return rs, fmt.Errorf("%s: %s", strings.Fields(fmt.Sprintf(format, args...))[0], last.Text)
	}
	return rs, nil
}

// readResp reads one response: a line, and while it ends with a literal
// marker, the literal and the line after it.
func readResp(br *bufio.Reader) (*Resp, error) {
	r := &Resp{}
	var text strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if line != "" && text.Len() == 0 {
				return nil, fmt.Errorf("partial line %q: %w", line, err)
			}
			return nil, err
		}
		line = strings.TrimRight(line, "\r\n")
		text.WriteString(line)
		n, ok := literalAtEnd(line)
		if !ok || strings.HasPrefix(text.String(), "+") {
			break
		}
		lit := make([]byte, n)
		if _, err := io.ReadFull(br, lit); err != nil {
			return nil, err
		}
		r.LitAt = append(r.LitAt, text.Len())
		r.Lits = append(r.Lits, lit)
		text.Write(lit)
	}
	r.Text = text.String()
	r.Tag, _, _ = strings.Cut(r.Text, " ")
	rest := strings.TrimPrefix(r.Text, r.Tag+" ")
	word, _, _ := strings.Cut(rest, " ")
	switch w := strings.ToUpper(word); w {
	case "OK", "NO", "BAD", "BYE", "PREAUTH":
		if r.Tag != "+" {
			r.Status = w
		}
	}
	return r, nil
}

// literalAtEnd parses a "{n}" ending a line (servers send no "+").
func literalAtEnd(line string) (int, bool) {
	if !strings.HasSuffix(line, "}") {
		return 0, false
	}
	i := strings.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.Atoi(line[i+1 : len(line)-1])
	if err != nil || n < 0 || n > 1<<30 {
		return 0, false
	}
	return n, true
}

// Quote returns s as an IMAP quoted string (RFC 9051 §4.3).
func Quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// quotable reports whether s can be a quoted string.
func quotable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

// token is one token of a response: an atom, a string (quoted or
// literal, its content), or a parenthesis.
type token struct {
	s    string
	kind byte // 'a' atom, 's' string, '(' or ')'
}

// tokens splits the data of a response from offset base on into tokens,
// roughly: enough for LIST, STATUS and FETCH answers. An atom holding a
// section ("BODY[HEADER.FIELDS (A B)]") is one token.
func tokens(r *Resp, base int) []token {
	s := r.Text[base:]
	var out []token
	litIdx := 0
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ':
			i++
		case c == '(' || c == ')':
			out = append(out, token{string(c), c})
			i++
		case c == '"':
			var b strings.Builder
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
			}
			out = append(out, token{b.String(), 's'})
			i = j + 1
		case c == '{':
			j := strings.IndexByte(s[i:], '}')
			if j < 0 {
				return out
			}
			// The literal's content follows in Text at a recorded offset.
			at := base + i + j + 1
			for litIdx < len(r.LitAt) && r.LitAt[litIdx] < at {
				litIdx++
			}
			if litIdx >= len(r.LitAt) || r.LitAt[litIdx] != at {
				return out
			}
			lit := r.Lits[litIdx]
			out = append(out, token{string(lit), 's'})
			i += j + 1 + len(lit)
			litIdx++
		default:
			j := i
			for j < len(s) && s[j] != ' ' && s[j] != '(' && s[j] != ')' {
				if s[j] == '[' {
					if k := strings.IndexByte(s[j:], ']'); k > 0 {
						j += k
					}
				}
				j++
			}
			out = append(out, token{s[i:j], 'a'})
			i = j
		}
	}
	return out
}
