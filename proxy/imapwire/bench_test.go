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

// tracker is what BenchmarkFetchTracker drives: FetchTracker, or the
// byte-at-a-time reference it replaced (respfetch_ref_test.go).
type tracker interface {
	Begin([]byte) bool
	Part([]byte)
	Literal(int64) bool
	End() bool
}

// BenchmarkFetchTracker feeds whole FETCH response lines, as the relay
// does for each line it relays: FLAGS lines (the small-response path),
// header fetches with a quoted section and ENVELOPE lines.
func BenchmarkFetchTracker(b *testing.B) {
	lines := map[string]string{
		"flags":    "* 12345 FETCH (UID 12345 FLAGS (\\Seen \\Answered))\r\n",
		"header":   "* 7 FETCH (UID 7 RFC822.SIZE 2048 BODY[HEADER.FIELDS (FROM TO SUBJECT DATE)] {5}\r\n",
		"envelope": "* 7 FETCH (UID 7 ENVELOPE (\"Sun, 6 Dec 2026 13:45:13 +0000\" \"a subject of some length\" ((\"Alice\" NIL \"alice\" \"example.org\")) NIL NIL ((\"Bob\" NIL \"bob\" \"example.org\")) NIL NIL NIL \"<id@example.org>\"))\r\n",
	}
	for _, name := range []string{"flags", "header", "envelope"} {
		line := []byte(lines[name])
		for _, impl := range []struct {
			name string
			t    tracker
		}{{"new", new(FetchTracker)}, {"ref", new(refTracker)}} {
			b.Run(name+"/"+impl.name, func(b *testing.B) {
				t := impl.t
				b.SetBytes(int64(len(line)))
				b.ReportAllocs()
				cpu0 := processCPU(b)
				for b.Loop() {
					t.Begin(line)
					t.Part(line)
					t.Literal(5)
					t.End()
				}
				b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// BenchmarkPlainFetchLine is the one-pass path's reading of a FETCH line
// without content (PlainFetchLine), beside what the full path does with
// it (ParseResponse, the FetchTracker): the relay's cost per line of the
// reply to UID FETCH 1:* (FLAGS) (issue 12).
func BenchmarkPlainFetchLine(b *testing.B) {
	lines := map[string]string{
		"flags":  "* 12345 FETCH (UID 12345 FLAGS (\\Seen))\r\n",
		"modseq": "* 12345 FETCH (UID 12345 MODSEQ (987654) FLAGS (\\Seen \\Answered $Forwarded))\r\n",
		"size":   "* 7 FETCH (UID 7 RFC822.SIZE 2048 INTERNALDATE \"17-Jul-1996 02:44:25 -0700\")\r\n",
	}
	for _, name := range []string{"flags", "modseq", "size"} {
		line := []byte(lines[name])
		b.Run(name+"/onepass", func(b *testing.B) {
			b.SetBytes(int64(len(line)))
			b.ReportAllocs()
			cpu0 := processCPU(b)
			for b.Loop() {
				if PlainFetchLine(line) != len(line) {
					b.Fatal("not plain")
				}
			}
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
		b.Run(name+"/full", func(b *testing.B) {
			var t FetchTracker
			b.SetBytes(int64(len(line)))
			b.ReportAllocs()
			cpu0 := processCPU(b)
			for b.Loop() {
				r, _ := ParseResponse(line)
				t.BeginResponse(&r)
				t.Part(line)
				t.End()
			}
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkPlainFetchReply reads a whole reply to UID FETCH 1:* (FLAGS)
// over 1,000 messages as the relay does, in runs of 64 lines: numbers of 1 to
// 4 digits and flag lists that vary from line to line, so that the
// branches of PlainFetchLine are not the same each time as in
// BenchmarkPlainFetchLine.
func BenchmarkPlainFetchReply(b *testing.B) {
	flags := []string{"()", "(\\Seen)", "(\\Seen \\Answered)", "(\\Seen $Forwarded NonJunk)"}
	var reply []byte
	for i := 1; i <= 1000; i++ {
		reply = fmt.Appendf(reply, "* %d FETCH (UID %d FLAGS %s)\r\n", i, i*7/3+1, flags[(i*i)%len(flags)])
	}
	b.SetBytes(int64(len(reply)))
	b.ReportAllocs()
	cpu0 := processCPU(b)
	for b.Loop() {
		for n := 0; n < len(reply); {
			l, _ := PlainFetchRun(reply[n:], 64, 1<<16)
			if l == 0 {
				b.Fatalf("not plain at %d", n)
			}
			n += l
		}
	}
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
}
