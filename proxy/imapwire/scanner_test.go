package imapwire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

func newTestScanner(in string, bufSize, maxLine int) *Scanner {
	return NewScanner(bufio.NewReaderSize(strings.NewReader(in), bufSize), maxLine)
}

// transcript reads s to the end with ReadLine, consuming each literal with
// LiteralChunk, and describes what it saw, one entry per call result:
//
//	L "line" [lit=SIZE[+][~]] [err=...]
//	B "literal chunk"
//	E err
func transcript(s *Scanner) []string {
	var out []string
	for range 1000 {
		line, lit, ok, err := s.ReadLine()
		if line == nil && err != nil {
			return append(out, "E "+errString(err))
		}
		e := "L " + strconv.Quote(string(line))
		if ok {
			e += " lit=" + litString(lit)
		}
		if err != nil {
			e += " err=" + errString(err)
		}
		out = append(out, e)
		if err != nil && !isSyntax(err) {
			return out
		}
		if !ok {
			continue
		}
		body := ""
		for s.LiteralRemaining() > 0 {
			b, err := s.LiteralChunk()
			if err != nil {
				if body != "" {
					out = append(out, "B "+strconv.Quote(body))
				}
				return append(out, "E "+errString(err))
			}
			body += string(b)
		}
		out = append(out, "B "+strconv.Quote(body))
	}
	panic("transcript: too many lines")
}

func litString(l Literal) string {
	s := strconv.FormatInt(l.Size, 10)
	if l.NonSync {
		s += "+"
	}
	if l.Binary {
		s = "~" + s
	}
	return s
}

func errString(err error) string {
	var se *SyntaxError
	if errors.As(err, &se) {
		return "syntax: " + se.Msg
	}
	return err.Error()
}

func isSyntax(err error) bool {
	var se *SyntaxError
	return errors.As(err, &se)
}

func TestScannerReadLine(t *testing.T) {
	long := strings.Repeat("x", 100)
	tests := []struct {
		name    string
		in      string
		bufSize int // 0: 4096
		maxLine int // 0: DefaultMaxLine
		want    []string
	}{
		{name: "atoms", in: "A1 NOOP\r\nA2 LOGOUT\r\n", want: []string{
			`L "A1 NOOP\r\n"`, `L "A2 LOGOUT\r\n"`, "E EOF"}},
		{name: "bare LF kept", in: "A1 NOOP\nA2 X\r\n", want: []string{
			`L "A1 NOOP\n"`, `L "A2 X\r\n"`, "E EOF"}},
		{name: "empty", in: "", want: []string{"E EOF"}},
		{name: "sync literal", in: "A1 LOGIN {5}\r\nalice {6}\r\nsecret\r\n", want: []string{
			`L "A1 LOGIN {5}\r\n" lit=5`, `B "alice"`, `L " {6}\r\n" lit=6`, `B "secret"`, `L "\r\n"`, "E EOF"}},
		{name: "non-sync literal", in: "A1 LOGIN {3+}\r\nbob x\r\n", want: []string{
			`L "A1 LOGIN {3+}\r\n" lit=3+`, `B "bob"`, `L " x\r\n"`, "E EOF"}},
		{name: "literal8", in: "A1 APPEND INBOX ~{2}\r\n\x00\xff\r\n", want: []string{
			`L "A1 APPEND INBOX ~{2}\r\n" lit=~2`, `B "\x00\xff"`, `L "\r\n"`, "E EOF"}},
		{name: "non-sync literal8", in: "A1 APPEND INBOX ~{2+}\r\nab\r\n", want: []string{
			`L "A1 APPEND INBOX ~{2+}\r\n" lit=~2+`, `B "ab"`, `L "\r\n"`, "E EOF"}},
		{name: "literal with bare LF", in: "* 1 FETCH (BODY[] {1}\nx)\r\n", want: []string{
			`L "* 1 FETCH (BODY[] {1}\n" lit=1`, `B "x"`, `L ")\r\n"`, "E EOF"}},
		{name: "literal holding CRLF", in: "A1 X {4}\r\n\r\n\r\n\r\n", want: []string{
			`L "A1 X {4}\r\n" lit=4`, `B "\r\n\r\n"`, `L "\r\n"`, "E EOF"}},
		{name: "zero literal", in: "A1 LOGIN {0}\r\n {0+}\r\n\r\n", want: []string{
			`L "A1 LOGIN {0}\r\n" lit=0`, `B ""`, `L " {0+}\r\n" lit=0+`, `B ""`, `L "\r\n"`, "E EOF"}},
		{name: "max size", in: "* 1 FETCH (BODY[] {9223372036854775807}\r\n", want: []string{
			`L "* 1 FETCH (BODY[] {9223372036854775807}\r\n" lit=9223372036854775807`, "E unexpected EOF"}},
		{name: "marker not at end", in: "A1 X {5} y\r\n", want: []string{`L "A1 X {5} y\r\n"`, "E EOF"}},
		{name: "marker before CR CR LF", in: "A1 X {5}\r\r\n", want: []string{`L "A1 X {5}\r\r\n"`, "E EOF"}},
		{name: "text brace", in: "* OK done}\r\n", want: []string{`L "* OK done}\r\n"`, "E EOF"}},
		{name: "braces with space", in: "* OK {a b}\r\n", want: []string{`L "* OK {a b}\r\n"`, "E EOF"}},
		{name: "empty marker", in: "A1 X {}\r\nA2 Y\r\n", want: []string{
			`L "A1 X {}\r\n" err=syntax: literal marker without size`, `L "A2 Y\r\n"`, "E EOF"}},
		{name: "plus only", in: "A1 X {+}\r\n", want: []string{`L "A1 X {+}\r\n" err=syntax: literal marker without size`, "E EOF"}},
		{name: "negative", in: "A1 X {-1}\r\n", want: []string{`L "A1 X {-1}\r\n" err=syntax: literal size is not a number`, "E EOF"}},
		{name: "leading plus", in: "A1 X {+5}\r\n", want: []string{`L "A1 X {+5}\r\n" err=syntax: literal size is not a number`, "E EOF"}},
		{name: "letters", in: "A1 X {1a}\r\n", want: []string{`L "A1 X {1a}\r\n" err=syntax: literal size is not a number`, "E EOF"}},
		{name: "overflow 2^64+5", in: "A1 X {18446744073709551621}\r\n", want: []string{
			`L "A1 X {18446744073709551621}\r\n" err=syntax: literal size has more than 19 digits`, "E EOF"}},
		{name: "overflow 2^63", in: "A1 X {9223372036854775808+}\r\n", want: []string{
			`L "A1 X {9223372036854775808+}\r\n" err=syntax: literal size over 2^63-1`, "E EOF"}},
		{name: "20 digits with zeros", in: "A1 X {00000000000000000005}\r\n", want: []string{
			`L "A1 X {00000000000000000005}\r\n" err=syntax: literal size has more than 19 digits`, "E EOF"}},
		{name: "19 digits with zeros", in: "A1 X {0000000000000000005}\r\nabcde\r\n", want: []string{
			`L "A1 X {0000000000000000005}\r\n" lit=5`, `B "abcde"`, `L "\r\n"`, "E EOF"}},
		{name: "digit run past window", in: "A1 X {" + strings.Repeat("0", 50) + "5}\r\n", want: []string{
			`L "A1 X {` + strings.Repeat("0", 50) + `5}\r\n" err=syntax: literal size has more than 19 digits`, "E EOF"}},
		{name: "missing line end at EOF", in: "A1 NOOP", want: []string{`L "A1 NOOP" err=unexpected EOF`}},
		{name: "EOF inside literal", in: "A1 LOGIN {10}\r\nabc", want: []string{
			`L "A1 LOGIN {10}\r\n" lit=10`, `B "abc"`, "E unexpected EOF"}},
		{name: "long line assembled", in: "A1 " + long + " {2}\r\nab\r\n", bufSize: 16, want: []string{
			`L "A1 ` + long + ` {2}\r\n" lit=2`, `B "ab"`, `L "\r\n"`, "E EOF"}},
		{name: "long line at EOF", in: "A1 " + long, bufSize: 16, want: []string{
			`L "A1 ` + long + `" err=unexpected EOF`}},
		{name: "line exactly maxLine", in: "A1 NOOP\r\n", maxLine: 9, want: []string{`L "A1 NOOP\r\n"`, "E EOF"}},
		{name: "too long in buffer", in: "A1 NOOP\r\nA2 X\r\n", maxLine: 8, want: []string{"E " + ErrLineTooLong.Error()}},
		{name: "too long assembled", in: "A1 " + long + "\r\n", bufSize: 16, maxLine: 64, want: []string{"E " + ErrLineTooLong.Error()}},
		{name: "too long final piece", in: strings.Repeat("y", 30) + "\r\n", bufSize: 16, maxLine: 31, want: []string{"E " + ErrLineTooLong.Error()}},
		{name: "no LF at all", in: strings.Repeat("y", 200), bufSize: 16, maxLine: 64, want: []string{"E " + ErrLineTooLong.Error()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs := tt.bufSize
			if bs == 0 {
				bs = 4096
			}
			got := transcript(newTestScanner(tt.in, bs, tt.maxLine))
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestScannerLineTooLongSticky(t *testing.T) {
	s := newTestScanner(strings.Repeat("a", 100)+"\r\nA1 NOOP\r\n", 16, 50)
	for range 2 {
		if _, _, _, err := s.ReadLine(); err != ErrLineTooLong {
			t.Fatalf("err = %v, want ErrLineTooLong", err)
		}
	}
	s.Reset(bufio.NewReader(strings.NewReader("A1 NOOP\r\n")))
	if line, _, _, err := s.ReadLine(); err != nil || string(line) != "A1 NOOP\r\n" {
		t.Fatalf("after Reset: %q, %v", line, err)
	}
}

func TestScannerLiteralOpen(t *testing.T) {
	s := newTestScanner("A1 LOGIN {5}\r\nalice bob\r\n", 4096, 0)
	if _, lit, ok, err := s.ReadLine(); err != nil || !ok || lit.Size != 5 {
		t.Fatalf("ReadLine: %v %v %v", lit, ok, err)
	}
	if _, _, _, err := s.ReadLine(); err != ErrLiteralOpen {
		t.Fatalf("ReadLine with literal open: %v", err)
	}
	if _, _, _, _, err := s.ReadLinePart(); err != ErrLiteralOpen {
		t.Fatalf("ReadLinePart with literal open: %v", err)
	}
	b, err := s.LiteralChunk()
	if err != nil || string(b) != "alice" {
		t.Fatalf("LiteralChunk: %q %v", b, err)
	}
	if s.LiteralRemaining() != 0 {
		t.Fatalf("remaining %d", s.LiteralRemaining())
	}
	if _, err := s.LiteralChunk(); err != io.EOF {
		t.Fatalf("LiteralChunk after the end: %v", err)
	}
	if line, _, _, err := s.ReadLine(); err != nil || string(line) != " bob\r\n" {
		t.Fatalf("ReadLine: %q %v", line, err)
	}
	for name, f := range map[string]func() error{
		"LiteralChunk":   func() error { _, err := s.LiteralChunk(); return err },
		"CopyLiteral":    func() error { _, err := s.CopyLiteral(io.Discard); return err },
		"StreamLiteral":  func() error { _, err := s.StreamLiteral(bufio.NewWriter(io.Discard)); return err },
		"DiscardLiteral": s.DiscardLiteral,
		"ReadLiteral":    func() error { _, err := s.ReadLiteral(nil, 10); return err },
	} {
		if err := f(); err != ErrNoLiteral {
			t.Errorf("%s without literal: %v", name, err)
		}
	}
}

func TestScannerLiteralMethods(t *testing.T) {
	body := strings.Repeat("0123456789", 1000)
	in := fmt.Sprintf("* 1 FETCH (BODY[] {%d}\r\n%s)\r\n", len(body), body)
	t.Run("CopyLiteral", func(t *testing.T) {
		s := newTestScanner(in, 64, 0)
		s.ReadLine()
		var w bytes.Buffer
		n, err := s.CopyLiteral(&w)
		if err != nil || n != int64(len(body)) || w.String() != body {
			t.Fatalf("CopyLiteral: %d %v", n, err)
		}
		if line, _, _, err := s.ReadLine(); string(line) != ")\r\n" || err != nil {
			t.Fatalf("next line %q %v", line, err)
		}
	})
	t.Run("CopyLiteral short write", func(t *testing.T) {
		s := newTestScanner(in, 64, 0)
		s.ReadLine()
		n, err := s.CopyLiteral(&limitedWriter{n: 100})
		if err != io.ErrShortWrite || n != 100 || s.LiteralRemaining() != int64(len(body)-100) {
			t.Fatalf("CopyLiteral: %d %v remaining %d", n, err, s.LiteralRemaining())
		}
		var w bytes.Buffer
		if _, err := s.CopyLiteral(&w); err != nil || w.String() != body[100:] {
			t.Fatalf("rest: %v", err)
		}
	})
	t.Run("DiscardLiteral", func(t *testing.T) {
		s := newTestScanner(in, 64, 0)
		s.ReadLine()
		if err := s.DiscardLiteral(); err != nil {
			t.Fatal(err)
		}
		if line, _, _, err := s.ReadLine(); string(line) != ")\r\n" || err != nil {
			t.Fatalf("next line %q %v", line, err)
		}
	})
	t.Run("ReadLiteral", func(t *testing.T) {
		s := newTestScanner(in, 64, 0)
		s.ReadLine()
		dst := []byte("prefix:")
		got, err := s.ReadLiteral(dst, len(body)-1)
		if err != ErrLiteralTooBig || string(got) != "prefix:" || s.LiteralRemaining() != int64(len(body)) {
			t.Fatalf("over the cap: %q %v", got, err)
		}
		got, err = s.ReadLiteral(dst, len(body))
		if err != nil || string(got) != "prefix:"+body {
			t.Fatalf("ReadLiteral: %v", err)
		}
	})
	t.Run("EOF inside", func(t *testing.T) {
		for name, f := range map[string]func(*Scanner) error{
			"CopyLiteral": func(s *Scanner) error { _, err := s.CopyLiteral(io.Discard); return err },
			"StreamLiteral": func(s *Scanner) error {
				var w bytes.Buffer
				bw := bufio.NewWriterSize(&w, 16)
				_, err := s.StreamLiteral(bw)
				bw.Flush()
				if w.String() != "abc" {
					t.Errorf("StreamLiteral partial %q", w.String())
				}
				return err
			},
			"DiscardLiteral": func(s *Scanner) error { return s.DiscardLiteral() },
			"ReadLiteral": func(s *Scanner) error {
				b, err := s.ReadLiteral(nil, 1<<20)
				if string(b) != "abc" {
					t.Errorf("ReadLiteral partial %q", b)
				}
				return err
			},
		} {
			s := newTestScanner("A1 X {10}\r\nabc", 16, 0)
			s.ReadLine()
			if err := f(s); err != io.ErrUnexpectedEOF {
				t.Errorf("%s: %v", name, err)
			}
		}
	})
	t.Run("IgnoreLiteral", func(t *testing.T) {
		s := newTestScanner("* OK [ALERT] see {5}\r\n* 2 EXISTS\r\n", 4096, 0)
		if _, _, ok, _ := s.ReadLine(); !ok {
			t.Fatal("no literal")
		}
		s.IgnoreLiteral()
		if s.LiteralRemaining() != 0 {
			t.Fatal("literal still open")
		}
		if line, _, _, err := s.ReadLine(); string(line) != "* 2 EXISTS\r\n" || err != nil {
			t.Fatalf("next line %q %v", line, err)
		}
	})
}

type limitedWriter struct{ n int }

func (w *limitedWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		n := w.n
		w.n = 0
		return n, nil
	}
	w.n -= len(p)
	return len(p), nil
}

// TestStreamLiteralAgreesWithCopyLiteral: whatever the sizes of the
// reader's buffer, the writer's buffer and the reads the source gives,
// StreamLiteral writes what CopyLiteral writes, and leaves the scanner at
// the same place.
func TestStreamLiteralAgreesWithCopyLiteral(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		size := rng.IntN(200000)
		body := make([]byte, size)
		for j := range body {
			body[j] = byte(1 + rng.IntN(255))
		}
		in := fmt.Sprintf("* 1 FETCH (BODY[] {%d}\r\n%s)\r\na OK done\r\n", size, body)
		rbuf, wbuf, chunk := 16+rng.IntN(70000), 16+rng.IntN(70000), 1+rng.IntN(80000)
		run := func(stream bool) (out []byte, n int64, rest []string) {
			src := &chunkReader{r: strings.NewReader(in), max: chunk}
			s := NewScanner(bufio.NewReaderSize(src, rbuf), 0)
			if _, _, ok, err := s.ReadLine(); !ok || err != nil {
				t.Fatalf("ReadLine: %v %v", ok, err)
			}
			var w bytes.Buffer
			var err error
			if stream {
				bw := bufio.NewWriterSize(&w, wbuf)
				n, err = s.StreamLiteral(bw)
				bw.Flush()
			} else {
				n, err = s.CopyLiteral(&w)
			}
			if err != nil {
				t.Fatalf("stream=%v: %v", stream, err)
			}
			return w.Bytes(), n, transcript(s)
		}
		got, gn, grest := run(true)
		want, wn, wrest := run(false)
		if !bytes.Equal(got, want) || gn != wn || !slices.Equal(grest, wrest) {
			t.Fatalf("case %d (size %d, buffers %d/%d, reads of %d): StreamLiteral %d octets then %q; CopyLiteral %d then %q",
				i, size, rbuf, wbuf, chunk, gn, grest, wn, wrest)
		}
	}
}

// TestStreamLiteralReadsIntoWriter: once what the reader buffered is
// written, the literal is read straight into the writer's buffer, not
// through the reader's.
func TestStreamLiteralReadsIntoWriter(t *testing.T) {
	body := strings.Repeat("x", 1<<20)
	in := fmt.Sprintf("* 1 FETCH (BODY[] {%d}\r\n%s)\r\n", len(body), body)
	src := &chunkReader{r: strings.NewReader(in), max: 1 << 30}
	s := NewScanner(bufio.NewReaderSize(src, 32<<10), 0)
	s.ReadLine()
	// Not io.Discard: an io.ReaderFrom would be handed the reading.
	bw := bufio.NewWriterSize(struct{ io.Writer }{io.Discard}, 64<<10)
	wbuf := &bw.AvailableBuffer()[:1][0]
	src.into = wbuf
	if n, err := s.StreamLiteral(bw); err != nil || n != int64(len(body)) {
		t.Fatalf("StreamLiteral: %d %v", n, err)
	}
	// 1 MiB in reads of 64 KiB into the writer: the first fill of the
	// reader's buffer aside, all of it.
	if src.direct < len(body)-64<<10 {
		t.Errorf("%d of %d octets read straight into the writer's buffer", src.direct, len(body))
	}
}

// chunkReader gives at most max bytes a read, and counts those read into
// the buffer starting at into.
type chunkReader struct {
	r      io.Reader
	max    int
	into   *byte
	direct int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(p) > c.max {
		p = p[:c.max]
	}
	n, err := c.r.Read(p)
	if len(p) > 0 && &p[0] == c.into {
		c.direct += n
	}
	return n, err
}

func TestCopyLiteralAllocs(t *testing.T) {
	body := strings.Repeat("x", 1<<18)
	in := fmt.Sprintf("* 1 FETCH (BODY[] {%d}\r\n%s)\r\n", len(body), body)
	// Not io.Discard, an io.ReaderFrom: StreamLiteral reads into bw.
	bw := bufio.NewWriterSize(struct{ io.Writer }{io.Discard}, 64<<10)
	for name, copyLit := range map[string]func(*Scanner) error{
		"CopyLiteral":   func(s *Scanner) error { _, err := s.CopyLiteral(io.Discard); return err },
		"StreamLiteral": func(s *Scanner) error { _, err := s.StreamLiteral(bw); return err },
	} {
		r := strings.NewReader(in)
		br := bufio.NewReaderSize(r, 4096)
		s := NewScanner(br, 0)
		allocs := testing.AllocsPerRun(20, func() {
			r.Reset(in)
			br.Reset(r)
			s.Reset(br)
			s.ReadLine()
			if err := copyLit(s); err != nil {
				t.Fatal(err)
			}
			s.ReadLine()
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocs per literal, want 0", name, allocs)
		}
	}
}

func TestReadLinePart(t *testing.T) {
	// Lines longer than the 16-byte buffer arrive in pieces; the marker
	// must be found wherever the cut falls, including inside it.
	for pad := 0; pad < 40; pad++ {
		for _, marker := range []string{"{12}", "{12+}", "~{12}", "~{12+}"} {
			line := "* 1 FETCH (" + strings.Repeat("A", pad) + " BODY[] " + marker + "\r\n"
			in := line + "0123456789ab)\r\n* 2 EXISTS\r\n"
			s := newTestScanner(in, 16, 0)
			var got []byte
			for {
				part, final, lit, ok, err := s.ReadLinePart()
				if err != nil {
					t.Fatalf("pad %d %s: %v", pad, marker, err)
				}
				if len(part) > 16 {
					t.Fatalf("piece of %d bytes", len(part))
				}
				got = append(got, part...)
				if !final {
					if ok {
						t.Fatalf("literal on a non-final piece")
					}
					continue
				}
				want := Literal{Size: 12, NonSync: strings.Contains(marker, "+"), Binary: marker[0] == '~'}
				if !ok || lit != want {
					t.Fatalf("pad %d %s: lit %+v ok %v", pad, marker, lit, ok)
				}
				break
			}
			if string(got) != line {
				t.Fatalf("pieces %q", got)
			}
			var body bytes.Buffer
			s.CopyLiteral(&body)
			if body.String() != "0123456789ab" {
				t.Fatalf("body %q", body.String())
			}
			part, final, _, ok, err := s.ReadLinePart()
			if string(part) != ")\r\n" || !final || ok || err != nil {
				t.Fatalf("after literal %q %v %v %v", part, final, ok, err)
			}
		}
	}
}

func TestReadLinePartErrors(t *testing.T) {
	t.Run("malformed straddling", func(t *testing.T) {
		in := "* 1 FETCH (BODY[] {18446744073709551621}\r\n* 2 EXISTS\r\n"
		s := newTestScanner(in, 16, 0)
		for {
			_, final, _, ok, err := s.ReadLinePart()
			if final {
				if ok || !isSyntax(err) {
					t.Fatalf("ok %v err %v", ok, err)
				}
				break
			}
		}
		if part, _, _, _, err := s.ReadLinePart(); string(part) != "* 2 EXISTS\r\n" || err != nil {
			t.Fatalf("next %q %v", part, err)
		}
	})
	t.Run("huge line no limit", func(t *testing.T) {
		line := "* SEARCH" + strings.Repeat(" 12345", 100000) + "\r\n"
		s := newTestScanner(line, 4096, 100)
		n := 0
		for {
			part, final, _, _, err := s.ReadLinePart()
			if err != nil {
				t.Fatal(err)
			}
			n += len(part)
			if final {
				break
			}
		}
		if n != len(line) {
			t.Fatalf("read %d of %d", n, len(line))
		}
	})
	t.Run("ReadLine mid part", func(t *testing.T) {
		s := newTestScanner(strings.Repeat("x", 40)+"\r\n", 16, 0)
		s.ReadLinePart()
		if _, _, _, err := s.ReadLine(); err != ErrPartialLine {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("EOF mid line", func(t *testing.T) {
		s := newTestScanner(strings.Repeat("x", 20), 16, 0)
		if _, final, _, _, err := s.ReadLinePart(); final || err != nil {
			t.Fatalf("first piece %v %v", final, err)
		}
		if part, final, _, _, err := s.ReadLinePart(); string(part) != "xxxx" || final || err != io.ErrUnexpectedEOF {
			t.Fatalf("last piece %q %v %v", part, final, err)
		}
		if _, _, _, _, err := s.ReadLinePart(); err != io.EOF {
			t.Fatalf("after: %v", err)
		}
	})
	t.Run("EOF at piece boundary", func(t *testing.T) {
		s := newTestScanner(strings.Repeat("x", 16), 16, 0)
		s.ReadLinePart()
		if part, _, _, _, err := s.ReadLinePart(); len(part) != 0 || err != io.ErrUnexpectedEOF {
			t.Fatalf("%q %v", part, err)
		}
	})
}

func TestScannerBufferDropped(t *testing.T) {
	small := strings.Repeat("s", 1000) + "\r\n"
	big := strings.Repeat("b", 10000) + "\r\n"
	s := newTestScanner(small+big+small, 16, 0)
	line, _, _, _ := s.ReadLine()
	if string(line) != small || s.buf == nil {
		t.Fatalf("small long line: buffer not kept")
	}
	line, _, _, _ = s.ReadLine()
	if string(line) != big {
		t.Fatalf("big line")
	}
	if s.buf != nil {
		t.Fatalf("buffer of %d bytes kept after a big line", cap(s.buf))
	}
	if line, _, _, _ = s.ReadLine(); string(line) != small {
		t.Fatalf("small line after big")
	}
}

func TestScannerSlowReader(t *testing.T) {
	in := "A1 LOGIN {5}\r\nalice {6+}\r\nsecret\r\n* 3 FETCH (BODY[] ~{3}\r\nabc)\r\n"
	s := NewScanner(bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(in)), 16), 0)
	var got []byte
	for {
		line, _, ok, err := s.ReadLine()
		got = append(got, line...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			b, _ := s.ReadLiteral(nil, 100)
			got = append(got, b...)
		}
	}
	if string(got) != in {
		t.Fatalf("got %q", got)
	}
}

func TestParseMarkerWindow(t *testing.T) {
	// ReadLine examines only the last tailSize bytes: a valid marker of
	// maximal length with CRLF must fit.
	m := "~{9223372036854775807+}\r\n"
	if len(m) > tailSize {
		t.Fatalf("tailSize %d too small for %q", tailSize, m)
	}
	lit, ok, err := parseMarker([]byte(m), false)
	if !ok || err != nil || lit != (Literal{Size: MaxLiteralSize, NonSync: true, Binary: true}) {
		t.Fatalf("%+v %v %v", lit, ok, err)
	}
}

func TestCheckCommandLine(t *testing.T) {
	tests := []struct {
		in, err string
	}{
		{"A1 NOOP\r\n", ""},
		{"\r\n", ""},
		{"A1 LOGIN {5}\r\n", ""},
		{"A1 NOOP\n", "bare LF"},
		{"A1 NOOP", "missing CRLF"},
		{"", "missing CRLF"},
		{"A1 NOOP\r", "missing CRLF"},
		{"A1 NO\x00OP\r\n", "NUL in command"},
		{"A1 NO\rOP\r\n", "bare CR"},
		{"A1 NO\nOP\r\n", "bare LF"},
		{"A1 SELECT \"caf\xc3\xa9\"\r\n", ""},
	}
	for _, tt := range tests {
		err := CheckCommandLine([]byte(tt.in))
		got := ""
		if err != nil {
			if !isSyntax(err) {
				t.Errorf("%q: %v is not a *SyntaxError", tt.in, err)
			}
			got = err.(*SyntaxError).Msg
		}
		if got != tt.err {
			t.Errorf("%q: got %q, want %q", tt.in, got, tt.err)
		}
	}
}

// scriptReader returns its steps one per Read: data, or an error.
type scriptReader struct{ steps []any }

func (r *scriptReader) Read(p []byte) (int, error) {
	if len(r.steps) == 0 {
		return 0, io.EOF
	}
	step := r.steps[0]
	r.steps = r.steps[1:]
	if err, ok := step.(error); ok {
		return 0, err
	}
	return copy(p, step.(string)), nil
}

func TestReadLinePartResumesAfterTimeout(t *testing.T) {
	timeout := errors.New("i/o timeout")
	r := &scriptReader{steps: []any{"* 1 FETCH (BODY[] {1", timeout, "2}\r\n", "0123456789ab)\r\n"}}
	s := NewScanner(bufio.NewReaderSize(r, 64), 0)
	part, final, _, _, err := s.ReadLinePart()
	if string(part) != "* 1 FETCH (BODY[] {1" || final || err != timeout {
		t.Fatalf("first: %q %v %v", part, final, err)
	}
	part, final, lit, ok, err := s.ReadLinePart()
	if string(part) != "2}\r\n" || !final || !ok || lit.Size != 12 || err != nil {
		t.Fatalf("second: %q %v %+v %v %v", part, final, lit, ok, err)
	}
}

// A client's literal holds CHAR8, never NUL, unless it is a literal8
// (RFC 9051 §4.3, RFC 3516 §4.2): with RefuseNUL neither a streamed nor a
// buffered literal lets a NUL or anything after it through.
func TestScannerRefuseNUL(t *testing.T) {
	for _, c := range []struct {
		marker string
		refuse bool
		wantOK bool
	}{
		{"{7}", true, false}, {"{7+}", true, false}, {"~{7}", true, true}, {"{7}", false, true},
	} {
		in := "a APPEND x " + c.marker + "\r\nab\x00cdef\r\n"
		for _, how := range []string{"copied", "read", "streamed"} {
			s := newTestScanner(in, 4, 0) // the NUL arrives in a later chunk
			if c.refuse {
				s.RefuseNUL()
			}
			if _, _, ok, err := s.ReadLine(); !ok || err != nil {
				t.Fatalf("%q: ReadLine: %v %v", in, ok, err)
			}
			var got []byte
			var err error
			switch how {
			case "copied":
				var w bytes.Buffer
				_, err = s.CopyLiteral(&w)
				got = w.Bytes()
			case "streamed":
				var w bytes.Buffer
				bw := bufio.NewWriterSize(&w, 16)
				_, err = s.StreamLiteral(bw)
				bw.Flush()
				got = w.Bytes()
			default:
				got, err = s.ReadLiteral(nil, 100)
			}
			var se *SyntaxError
			switch {
			case c.wantOK && (err != nil || string(got) != "ab\x00cdef"):
				t.Errorf("%s refuse=%v %s: %q %v, want all of it", c.marker, c.refuse, how, got, err)
			case !c.wantOK && (!errors.As(err, &se) || bytes.IndexByte(got, 0) >= 0):
				t.Errorf("%s %s: %q %v, want a SyntaxError and no NUL", c.marker, how, got, err)
			}
		}
	}
}
