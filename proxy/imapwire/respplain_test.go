package imapwire

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
)

func TestPlainFetchLine(t *testing.T) {
	plainLines := []string{
		"* 1 FETCH (UID 1 FLAGS (\\Seen))\r\n",
		"* 4294967295 FETCH (FLAGS ())\r\n",
		"* 0 FETCH (FLAGS ())\r\n", // ParseResponse takes it: so does the relay
		"* 12 FETCH (UID 12 FLAGS (\\Seen \\Answered $Forwarded NonJunk) MODSEQ (12345))\r\n",
		"* 3 FETCH (UID 3 RFC822.SIZE 2048 INTERNALDATE \"17-Jul-1996 02:44:25 -0700\")\r\n",
		"* 3 FETCH (X-GM-MSGID 1278455344230334865 EMAILID (M6d99ac3275bb4e) THREADID NIL)\r\n",
		"* 3 FETCH (UID 3)\r\n",
	}
	for _, l := range plainLines {
		if n := PlainFetchLine([]byte(l + "* 2 FETCH")); n != len(l) {
			t.Errorf("%q: %d, want %d", l, n, len(l))
		}
	}
	notPlain := []string{
		"* 1 FETCH (UID 1 BODY[] {5}\r\n",                          // a literal
		"* 1 FETCH (UID 1 FLAGS (\\Seen))",                         // not whole
		"* 1 FETCH (UID 1 FLAGS (\\Seen))\r",                       // not whole
		"* 1 FETCH (UID 1 FLAGS (\\Seen))\n",                       // bare LF: lineCheck's fault
		"* 1 FETCH (UID 1 FLAGS (\\Seen\r))\r\n",                   // bare CR
		"* 1 FETCH (UID 1 FLAGS (\\Seen\x00))\r\n",                 // NUL
		"* 1 FETCH (UID 1 FLAGS (\\Seen\x1b[2J))\r\n",              // a terminal escape
		"* 1 FETCH (UID 1 FLAGS (\\Se\xc3\xa9n))\r\n",              // 8-bit
		"* 1 FETCH (UID 1 FLAGS (\\Seen)) {5}\r\n",                 // text after the list
		"* 1 FETCH (UID 1 FLAGS (\\Seen) BODY[] \"x\")\r\n",        // content
		"* 1 FETCH (UID 1 RFC822 \"x\")\r\n",                       // content
		"* 1 FETCH (UID 1 rfc822.header NIL)\r\n",                  // content (even NIL: the cap counts it)
		"* 1 FETCH (UID 1 RFC822.TEXT NIL)\r\n",                    //
		"* 1 FETCH (UID 1 Preview \"x\")\r\n",                      //
		"* 1 FETCH (UID 1 SNIPPET (FUZZY \"x\"))\r\n",              //
		"* 1 FETCH (BINARY.SIZE[1] 300)\r\n",                       // "[": the full path reads sections
		"* 1 FETCH (UID 1 INTERNALDATE \"a\\\"b\")\r\n",            // an escape
		"* 1 FETCH (UID 1 X (\"a\"))\r\n",                          // a quoted string in a list
		"* 1 FETCH (UID 1 X ~{3}\r\n",                              // literal8
		"* 1 FETCH (UID 1 X {3})\r\n",                              //
		"* 1 FETCH (UID  1)\r\n",                                   // two SP
		"* 1 FETCH ( UID 1)\r\n",                                   //
		"* 1 FETCH (UID 1 )\r\n",                                   //
		"* 1 FETCH ()\r\n",                                         // empty: the full path's
		"* 1 FETCH (UID )\r\n",                                     //
		"* 1 FETCH (UID 1 FLAGS (\\Seen)\r\n",                      // unclosed
		"* 1 FETCH (FLAGS (\\Seen\")\r\n",                          //
		"* 1 FETCH (UID 1 FLAGS ((\\Seen))\r\n",                    // unbalanced
		"* 1 FETCH (UID 1 FLAGS (\\Seen)))\r\n",                    //
		"* 1 fetch (UID 1)\r\n",                                    // the full path's
		"* 1 FETCH(UID 1)\r\n",                                     //
		"* 4294967296 FETCH (UID 1)\r\n",                           // ParseResponse refuses it
		"* 00000000001 FETCH (UID 1)\r\n",                          // the full path's
		"* FETCH (UID 1)\r\n",                                      //
		"* 1 EXISTS\r\n",                                           //
		"* BAD (UID 1)\r\n",                                        //
		"a1 OK FETCH (UID 1)\r\n",                                  //
		"+ FETCH (UID 1)\r\n",                                      //
		"*  1 FETCH (UID 1)\r\n",                                   //
		"* 1 FETCH (UID 1 FLAGS (\\Seen)\r\n* 2 FETCH (UID 2)\r\n", // unbalanced across lines
		// Headers: the record names the message (FetchTracker.Headers).
		"* 3 FETCH (BODYSTRUCTURE (a (b c)) uid 3)\r\n",
		"* 3 FETCH (UID 3 envelope (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL))\r\n",
		"* 3 FETCH (UID 3 BODY (a b))\r\n",
	}
	for _, l := range notPlain {
		if n := PlainFetchLine([]byte(l)); n != 0 {
			t.Errorf("%q: %d, want 0", l, n)
		}
	}
}

// respRecord is what the relay takes from one response: the bytes aside,
// its shape and, for a FETCH response that carries content, the content,
// items and UID (backendPump.delivered); a FETCH response without content
// or header items leaves nothing else (its UID is recorded only with them).
type respRecord struct {
	kind    ResponseKind
	status  Status
	fetch   bool
	content int64
	items   int
	headers int
	uid     uint32
	uidOK   bool
}

// streamResult is everything a reading of a response stream gives.
type streamResult struct {
	out   []byte
	resps []respRecord
	err   string
	fast  int // lines the one-pass path took
}

// readStream reads a backend's response stream the way the backend pump
// does, with a read buffer of buf bytes: at each line start, when fast,
// the run of whole PlainFetchLine lines already buffered is taken in one
// pass (Scanner.Buffered, Skip); everything else line by line through
// ReadLinePart, a lineCheck of each piece, ParseResponse on the first and
// a FetchTracker over a FETCH response, its literals copied.
func readStream(wire []byte, buf int, fast bool) (res streamResult) {
	s := NewScanner(bufio.NewReaderSize(bytes.NewReader(wire), buf), 0)
	sawBye := false
	var part []byte
	var final, hasLit bool
	// next reads the next piece and holds it to lineCheck.
	next := func() bool {
		var err error
		if part, final, _, hasLit, err = s.ReadLinePart(); err != nil {
			res.err = err.Error()
			return false
		}
		if why := checkPiece(part, final); why != "" {
			res.err = why
			return false
		}
		return true
	}
	for range 1000 {
		if fast && !sawBye {
			b := s.Buffered()
			n := 0
			for {
				l := PlainFetchLine(b[n:])
				if l == 0 {
					break
				}
				n += l
				res.fast++
				res.resps = append(res.resps, respRecord{kind: Untagged, fetch: true})
			}
			if n > 0 {
				res.out = append(res.out, b[:n]...)
				s.Skip(n)
				continue
			}
		}
		if !next() {
			return res
		}
		r, err := ParseResponse(part)
		if err != nil {
			res.err = err.Error()
			return res
		}
		if sawBye && r.Kind != Tagged {
			res.err = "response after BYE"
			return res
		}
		if r.Kind == Untagged && r.Status == StatusBAD {
			res.err = "untagged BAD"
			return res
		}
		sawBye = sawBye || r.Status == StatusBYE && r.Kind == Untagged
		var tr FetchTracker
		rec := respRecord{kind: r.Kind, status: r.Status, fetch: tr.BeginResponse(&r)}
		for {
			tr.Part(part)
			res.out = append(res.out, part...)
			if !final {
				if !next() {
					return res
				}
				continue
			}
			if !hasLit {
				break
			}
			if !r.MayHaveLiteral() {
				s.IgnoreLiteral()
				break
			}
			tr.Literal(s.LiteralRemaining())
			lit, err := s.ReadLiteral(nil, 1<<20)
			res.out = append(res.out, lit...)
			if err != nil {
				res.err = err.Error()
				return res
			}
			if !next() {
				return res
			}
		}
		if rec.fetch {
			rec.content, rec.items, rec.headers = tr.Content, tr.Items, tr.Headers
			if tr.Items > 0 || tr.Headers > 0 {
				rec.uid, rec.uidOK = tr.UID()
			}
		}
		res.resps = append(res.resps, rec)
	}
	return res
}

// checkPiece is the backend pump's lineCheck for a piece that is a whole
// line or the first or last of one: no NUL, CR only in the final CRLF.
func checkPiece(p []byte, final bool) string {
	if bytes.IndexByte(p, 0) >= 0 {
		return "NUL"
	}
	body := p
	if final {
		if len(p) < 2 || p[len(p)-2] != '\r' {
			return "bare LF"
		}
		body = p[:len(p)-2]
	} else if len(p) > 0 && p[len(p)-1] == '\r' {
		body = p[:len(p)-1]
	}
	if bytes.IndexByte(body, '\r') >= 0 {
		return "bare CR"
	}
	return ""
}

// plainItems and plainValues build FETCH responses that are mostly plain,
// with content items, literals and hostile bytes among them.
var (
	plainItems = []string{
		"UID", "FLAGS", "uid", "RFC822.SIZE", "MODSEQ", "INTERNALDATE", "X-GM-MSGID", "EMAILID",
		"BODYSTRUCTURE", "BODY", "RFC822", "rfc822.header", "RFC822.TEXT", "PREVIEW", "Snippet",
		"BODY[]", "BINARY[1]", "BINARY.SIZE[1]", "RFC822.SIZEX", "X-VERY-LONG-ITEM-NAME-PAST-16",
		"RFC822.HEADERX", "SNIPPET.", "P", "",
	}
	plainValues = []string{
		"7", "4294967295", "NIL", "()", "(\\Seen)", "(\\Seen \\Answered $Label)", "(12345)",
		"((a b) (c))", "\"17-Jul-1996 02:44:25 -0700\"", "\"\"", "{5}\r\nhello", "~{2}\r\n\x01\x02",
		"\"a\\\"b\"", "(\"x\" NIL)", "(a {1}\r\nb)", "\"hi\"", "(", ")", "",
	}
	hostileBytes = []string{
		"\x00", "\r", "\n", "\r\n", "\x1b", "\xc3\xa9", "[", "]", "{", "}", "~", "\"", "\\", "(", ")",
		" ", "  ", "*", "%", "{3}\r\n", "\x7f",
	}
	otherLines = []string{
		"* 3 EXISTS\r\n", "* 1 EXPUNGE\r\n", "* OK [UIDNEXT 4] x\r\n", "* BYE going\r\n",
		"* BAD no\r\n", "* NO {5}\r\n", "+ go\r\n", "* SEARCH 1 2 3\r\n", "a1 OK done\r\n",
	}
)

// genPlainStream builds a response stream of n lines from rng.
func genPlainStream(rng *rand.Rand, n int) []byte {
	var b []byte
	for range n {
		switch rng.IntN(10) {
		case 0:
			b = append(b, otherLines[rng.IntN(len(otherLines))]...)
			continue
		case 1:
			b = append(b, genFetch(rng, rng.IntN(6)+1)...)
			continue
		}
		line := fmt.Appendf(nil, "* %d FETCH (", rng.IntN(5000))
		for k := range rng.IntN(4) + 1 {
			if k > 0 {
				line = append(line, ' ')
			}
			if rng.IntN(5) > 0 {
				line = append(line, "UID "...)
				line = fmt.Appendf(line, "%d FLAGS (\\Seen)", rng.IntN(5000))
				continue
			}
			line = append(line, plainItems[rng.IntN(len(plainItems))]...)
			line = append(line, ' ')
			line = append(line, plainValues[rng.IntN(len(plainValues))]...)
		}
		line = append(line, ")\r\n"...)
		if rng.IntN(6) == 0 {
			i := rng.IntN(len(line) + 1)
			h := hostileBytes[rng.IntN(len(hostileBytes))]
			line = append(line[:i], append([]byte(h), line[i:]...)...)
		}
		b = append(b, line...)
	}
	return b
}

// The one-pass path reads every stream as the full path does: the same
// bytes relayed, the same responses with the same content, items and
// UIDs, the same error at the same place, whatever the buffer's size and
// so wherever lines are cut (issue 12). Streams that refuse to be read
// (NUL, a bare CR, an untagged BAD, a response after BYE) included.
func TestPlainFetchDifferential(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 3))
	fast := 0
	for range 2000 {
		wire := genPlainStream(rng, rng.IntN(30)+1)
		for _, buf := range []int{16, 17, 23, 40, 64, 97, 256, 4096} {
			fast += diffPlain(t, wire, buf)
		}
	}
	if fast < 5000 {
		t.Errorf("the one-pass path took %d lines: the generator does not exercise it", fast)
	}
}

func diffPlain(t *testing.T, wire []byte, buf int) int {
	t.Helper()
	f, s := readStream(wire, buf, true), readStream(wire, buf, false)
	fast := f.fast
	f.fast = 0
	if !reflect.DeepEqual(f, s) {
		t.Fatalf("buf %d %q:\none-pass %+v\nfull     %+v", buf, wire, f, s)
	}
	return fast
}

func FuzzPlainFetchDifferential(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 12))
	for range 20 {
		f.Add(genPlainStream(rng, 10), uint8(40))
	}
	f.Add([]byte("* 1 FETCH (UID 1 FLAGS (\\Seen))\r\n* 2 FETCH (UID 2 RFC822 {1}\r\nx)\r\n"), uint8(200))
	f.Fuzz(func(t *testing.T, wire []byte, buf uint8) {
		diffPlain(t, wire, 16+int(buf))
	})
}

// A line PlainFetchLine takes is one the full path finds plain: a whole
// line, no literal, untagged FETCH data, no content item, nothing
// lineCheck refuses.
func FuzzPlainFetchLine(f *testing.F) {
	f.Add([]byte("* 1 FETCH (UID 1 FLAGS (\\Seen))\r\n"))
	f.Add([]byte("* 1 FETCH (UID 1 RFC822.SIZE 5 INTERNALDATE \"x\" MODSEQ (1))\r\n"))
	f.Fuzz(func(t *testing.T, line []byte) {
		if n := PlainFetchLine(line); n > 0 {
			checkPlain(t, line[:n])
		}
	})
}
