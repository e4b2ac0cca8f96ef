package imapwire

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"testing"
)

// benchInput is a reusable stream: a bytes.Reader reset each iteration.
type benchInput struct {
	data []byte
	r    *bytes.Reader
	br   *bufio.Reader
	s    *Scanner
}

func newBenchInput(data []byte, bufSize int) *benchInput {
	in := &benchInput{data: data, r: bytes.NewReader(data)}
	in.br = bufio.NewReaderSize(in.r, bufSize)
	in.s = NewScanner(in.br, 0)
	return in
}

func (in *benchInput) reset() {
	in.r.Reset(in.data)
	in.br.Reset(in.r)
	in.s.Reset(in.br)
}

// BenchmarkScanLiteralHeavy relays FETCH responses with 64 KiB to 1 MiB
// literals: the bulk FETCH path (ARCHITECTURE.md §16), which must not allocate.
func BenchmarkScanLiteralHeavy(b *testing.B) {
	var data []byte
	for i, size := range []int{64 << 10, 256 << 10, 1 << 20} {
		data = fmt.Appendf(data, "* %d FETCH (UID %d BODY[] {%d}\r\n", i+1, i+1, size)
		data = append(data, bytes.Repeat([]byte("x"), size)...)
		data = append(data, ")\r\n"...)
	}
	data = append(data, "A1 OK FETCH completed\r\n"...)
	in := newBenchInput(data, 32<<10)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		in.reset()
		for {
			_, final, _, ok, err := in.s.ReadLinePart()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if final && ok {
				if _, err := in.s.CopyLiteral(io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
}

// BenchmarkScanCommandHeavy parses a pipelined burst of short commands, as
// a client syncing flags sends them.
func BenchmarkScanCommandHeavy(b *testing.B) {
	var data []byte
	cmds := []string{
		"UID FETCH %d:* (FLAGS)",
		"UID FETCH %d (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE)])",
		"UID STORE %d +FLAGS.SILENT (\\Seen)",
		"NOOP",
		"SELECT INBOX",
		"UID COPY %d Archive",
	}
	for i := range 1000 {
		c := cmds[i%len(cmds)]
		if bytes.Contains([]byte(c), []byte("%d")) {
			c = fmt.Sprintf(c, i+1)
		}
		data = fmt.Appendf(data, "a%d %s\r\n", i, c)
	}
	in := newBenchInput(data, 4096)
	var p CommandParser
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		in.reset()
		for {
			line, lit, ok, err := in.s.ReadLine()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if err := CheckCommandLine(line); err != nil {
				b.Fatal(err)
			}
			p.Reset()
			if err := p.Line(line, lit, ok); err != nil {
				b.Fatal(err)
			}
			_ = p.Command()
		}
	}
}

// BenchmarkResponseSmall relays the reply to UID FETCH 1:* (FLAGS): many
// small untagged FETCH lines, the small-response path (ARCHITECTURE.md §16), which
// must not allocate.
func BenchmarkResponseSmall(b *testing.B) {
	var data []byte
	for i := 1; i <= 10000; i++ {
		data = fmt.Appendf(data, "* %d FETCH (UID %d FLAGS (\\Seen))\r\n", i, i)
	}
	data = append(data, "A1 OK Fetch completed.\r\n"...)
	in := newBenchInput(data, 4096)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		in.reset()
		first := true
		for {
			part, final, _, ok, err := in.s.ReadLinePart()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if first {
				r, err := ParseResponse(part)
				if err != nil {
					b.Fatal(err)
				}
				if ok && !r.MayHaveLiteral() {
					b.Fatal("unexpected literal")
				}
			}
			first = final
		}
	}
}
