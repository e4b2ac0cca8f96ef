package imapwire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

var fuzzSeeds = []string{
	"A1 NOOP\r\n",
	"A1 LOGIN {5}\r\nalice {6+}\r\nsecret\r\n",
	"A1 APPEND INBOX (\\Seen) ~{3}\r\n\x00\x01\x02\r\n",
	"A1 APPEND INBOX ~{2+}\r\nab {0}\r\n\r\n",
	"* 1 FETCH (BODY[] {5}\r\nhello)\r\n* 2 EXISTS\r\n",
	"A1 X {}\r\nA2 X {-1}\r\nA3 X {1a}\r\nA4 X {+}\r\n",
	"A1 X {18446744073709551621}\r\nA2 X {9223372036854775807}\r\n",
	"A1 FETCH 1 (BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.512>)\n",
	"A1 FETCH 1 BODY[HEADER.FIELDS ({4}\r\nFrom)]\r\n",
	"A1 STORE 1:* (UNCHANGEDSINCE 5) +FLAGS.SILENT (\\Deleted)\r\n",
	"A1 APPEND Drafts CATENATE (URL {3}\r\n/a; TEXT {2}\r\nhi)\r\n",
	"* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN] hi {3}\r\n",
	"* CAPABILITY IMAP4rev1 STARTTLS\r\n+ go\r\n",
	"A1 NO\x00OP\r\nA2\rX\nA3 \"a\\\"b\"\r\n",
	"x{000000000000000000000000000000000000000001}\r\n",
	"A1 SELECT &Jjo-\r\n",
}

// FuzzScanner checks that the Scanner is lossless and never panics:
// everything it returns, concatenated, is exactly the input read, whatever
// the buffer size, the read sizes and the mix of methods.
func FuzzScanner(f *testing.F) {
	for i, s := range fuzzSeeds {
		f.Add(uint8(i*37), []byte(s))
	}
	f.Fuzz(func(t *testing.T, mode uint8, data []byte) {
		var r io.Reader = bytes.NewReader(data)
		if mode&0x40 != 0 {
			r = iotest.OneByteReader(r)
		}
		bufSize := 16 + int(mode&0x0f)*4
		maxLine := 0
		if mode&0x10 != 0 {
			maxLine = 48
		}
		parts := mode&0x80 != 0
		s := NewScanner(bufio.NewReaderSize(r, bufSize), maxLine)
		var got []byte
		var err error
		for step := 0; err == nil; step++ {
			var lit Literal
			var ok bool
			if parts {
				var part []byte
				var final bool
				part, final, lit, ok, err = s.ReadLinePart()
				if len(part) > bufSize {
					t.Fatalf("piece of %d bytes with a buffer of %d", len(part), bufSize)
				}
				if ok && !final {
					t.Fatal("literal on a non-final piece")
				}
				got = append(got, part...)
			} else {
				var line []byte
				line, lit, ok, err = s.ReadLine()
				if maxLine > 0 && len(line) > maxLine {
					t.Fatalf("line of %d bytes, limit %d", len(line), maxLine)
				}
				got = append(got, line...)
			}
			if ok && (err != nil || lit.Size < 0) {
				t.Fatalf("literal %+v with error %v", lit, err)
			}
			if isSyntax(err) {
				err = nil // the line was consumed whole: go on
			}
			if err != nil || !ok {
				continue
			}
			if s.LiteralRemaining() != lit.Size {
				t.Fatalf("remaining %d, size %d", s.LiteralRemaining(), lit.Size)
			}
			switch step % 3 {
			case 0:
				for s.LiteralRemaining() > 0 && err == nil {
					var b []byte
					b, err = s.LiteralChunk()
					got = append(got, b...)
				}
			case 1:
				w := bytes.NewBuffer(got)
				_, err = s.CopyLiteral(w)
				got = w.Bytes()
			case 2:
				got, err = s.ReadLiteral(got, 4096)
				if err == ErrLiteralTooBig {
					_, err = s.CopyLiteral(appendWriter{&got})
				}
			}
		}
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			if !bytes.Equal(got, data) {
				t.Fatalf("not lossless:\n got %q\nwant %q", got, data)
			}
		case err == ErrLineTooLong:
			if !bytes.HasPrefix(data, got) {
				t.Fatalf("output is not a prefix of the input:\n got %q\nin %q", got, data)
			}
		default:
			t.Fatalf("unexpected error %v", err)
		}
	})
}

type appendWriter struct{ b *[]byte }

func (w appendWriter) Write(p []byte) (int, error) {
	*w.b = append(*w.b, p...)
	return len(p), nil
}

// FuzzCommand checks that CommandParser never panics and that what it
// reports is consistent, on input split by the Scanner as the proxy does.
var fuzzCtxs = []Context{
	{State: StateNotAuth},
	{State: StateAuth, Delim: '.'},
	{State: StateSelected, Delim: '/', Caps: ^Cap(0), QRESYNC: true},
	{State: StateSelected, Examined: true, UTF8: true, Caps: ^Cap(0)},
}

func FuzzCommand(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := NewScanner(bufio.NewReaderSize(bytes.NewReader(data), 64), 4096)
		var p CommandParser
		for range 100 {
			line, lit, ok, err := s.ReadLine()
			if err != nil && !isSyntax(err) {
				return
			}
			perr := p.Line(line, lit, ok)
			if perr != nil {
				var se *SyntaxError
				if !errors.As(perr, &se) {
					t.Fatalf("Line error %v is not a *SyntaxError", perr)
				}
			}
			// The grammar in every state: no panic, and what it accepts
			// has its derived fields within range.
			for _, ctx := range fuzzCtxs {
				if err := p.Check(&ctx); err == nil {
					if p.Command().Spec == nil {
						t.Fatal("Check accepted an unknown command")
					}
					if err := effectsWithinMay(p.Command()); err != nil {
						t.Fatal(err)
					}
				}
			}
			c := p.Command()
			if c.Complete && (ok || p.PendingIsMessage()) {
				t.Fatal("complete command with a literal pending")
			}
			if c.SetCount < -1 {
				t.Fatalf("SetCount %d", c.SetCount)
			}
			_, _ = DecodeMailbox(c.Mailbox)
			if q, ok := AppendQuoted(nil, c.Mailbox); ok && len(q) < len(c.Mailbox)+2 {
				t.Fatalf("AppendQuoted(%q) = %q", c.Mailbox, q)
			}
			if ok {
				if b, err := s.ReadLiteral(nil, 4096); err == nil {
					p.Literal(b)
				} else {
					size := s.LiteralRemaining()
					if s.DiscardLiteral() != nil {
						return
					}
					p.LiteralStreamed(size)
				}
			}
			if perr != nil || c.Complete {
				p.Reset()
			}
		}
	})
}

// FuzzResponse checks that ParseResponse and FilterCapabilities never panic
// and that filtering with a drop-nothing function changes nothing.
func FuzzResponse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := ParseResponse(line)
		if err == nil {
			_ = r.MayHaveLiteral()
			if r.Kind == Tagged && r.Status == StatusNone {
				t.Fatal("tagged response without status")
			}
		}
		prefix := []byte("p")
		out, changed := FilterCapabilities(prefix, line, func([]byte) bool { return false })
		if changed || string(out) != "p" {
			t.Fatalf("drop-nothing changed %q to %q", line, out)
		}
		out, changed = FilterCapabilities(nil, line, func(c []byte) bool {
			if len(c) == 0 || bytes.IndexByte(c, ' ') >= 0 {
				t.Fatalf("capability %q", c)
			}
			return true
		})
		if changed && len(out) >= len(line) {
			t.Fatalf("dropping grew %q to %q", line, out)
		}
		_, _ = SetCount(string(line))
	})
}
