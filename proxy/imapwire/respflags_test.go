package imapwire

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// flagsBases are lines of the two FLAGS shapes plainFetchRun matches
// first, and their near relatives it must leave to plainFetchLine.
var flagsBases = []string{
	"* 1 FETCH (UID 1 FLAGS ())\r\n",
	"* 12 FETCH (UID 4567 FLAGS (\\Seen))\r\n",
	"* 1234567 FETCH (UID 123456789012345 FLAGS (\\Seen \\Answered $Forwarded NonJunk))\r\n",
	"* 3 FETCH (FLAGS (\\Seen \\Flagged) UID 9)\r\n",
	"* 3 FETCH (FLAGS () UID 12345678)\r\n",
	"* 12345678 FETCH (UID 1 FLAGS ())\r\n",
	"* 4294967295 FETCH (FLAGS () UID 1)\r\n",
	"* 1 FETCH (UID 1234567890123456 FLAGS ())\r\n",
	"* 1 FETCH (UID 1 FLAGS ((\\Seen)))\r\n",
	"* 1 FETCH (UID 1 MODSEQ (5) FLAGS (\\Seen))\r\n",
	"* 1 FETCH (FLAGS (\\Seen) UID 1 MODSEQ (5))\r\n",
	"* 1 FETCH (uid 1 flags (\\Seen))\r\n",
}

// flagsNext is what may follow a line in the backend's buffer: nothing
// (the end of what was read), another line, or bytes that are none.
var flagsNext = []string{"", "* 2 FETCH (UID 2 FLAGS ())\r\n", "a1 OK done\r\n", "\x00\r\n\r\n{9}", "12345678901234567890"}

// genFlagsLine builds a line of one of the FLAGS shapes from rng, with
// numbers of 0 to 20 digits (leading zeros among them), flag lists of
// pList bytes and others, and, one time in three, a byte inserted,
// replaced or deleted, or the line cut short.
func genFlagsLine(rng *rand.Rand) []byte {
	num := func() string {
		switch rng.IntN(8) {
		case 0:
			return ""
		case 1:
			return strings.Repeat("0", rng.IntN(12)) + fmt.Sprint(rng.Uint32())
		case 2:
			return fmt.Sprint(rng.Uint64())
		}
		return fmt.Sprint(rng.IntN(1 << (rng.IntN(30) + 1)))
	}
	flagWords := []string{"\\Seen", "\\Answered", "$Forwarded", "NonJunk", "\\*", "(", ")", "\"x\"", "[a]", "{3}", "~", "%", "\\", "\x1b", "\xc3\xa9", "\x7f", ""}
	var f []string
	for range rng.IntN(4) {
		f = append(f, flagWords[rng.IntN(len(flagWords))])
	}
	flags := "(" + strings.Join(f, " ") + ")"
	var b []byte
	if rng.IntN(2) == 0 {
		b = fmt.Appendf(nil, "* %s FETCH (UID %s FLAGS %s)\r\n", num(), num(), flags)
	} else {
		b = fmt.Appendf(nil, "* %s FETCH (FLAGS %s UID %s)\r\n", num(), flags, num())
	}
	switch rng.IntN(9) {
	case 0:
		i := rng.IntN(len(b) + 1)
		b = append(b[:i], append([]byte{byte(rng.IntN(256))}, b[i:]...)...)
	case 1:
		b[rng.IntN(len(b))] = byte(rng.IntN(256))
	case 2:
		i := rng.IntN(len(b))
		b = append(b[:i], b[i+1:]...)
	}
	if rng.IntN(6) == 0 {
		b = b[:rng.IntN(len(b)+1)]
	}
	return b
}

// flagsVariants is every line one edit away from each of flagsBases:
// each byte replaced by every byte value, each position given an extra
// byte of every value, each byte deleted, each length cut; each with
// every flagsNext after it.
func flagsVariants(yield func([]byte)) {
	for _, base := range flagsBases {
		for _, next := range flagsNext {
			with := func(l []byte) { yield(append(l, next...)) }
			with([]byte(base))
			for i := range len(base) + 1 {
				for c := range 256 {
					if i < len(base) {
						r := []byte(base)
						r[i] = byte(c)
						with(r)
					}
					with([]byte(base[:i] + string([]byte{byte(c)}) + base[i:]))
				}
				if i < len(base) {
					with([]byte(base[:i] + base[i+1:]))
				}
				with([]byte(base[:i]))
			}
		}
	}
}

// checkFlagsLine holds the fast reading of b to the general one: it
// takes the line plainFetchLine takes, with the same length, or leaves it
// (0); and a line it takes is one the full path finds plain (checkPlain).
// It reports whether the fast reading took the line.
func checkFlagsLine(t *testing.T, b []byte) bool {
	t.Helper()
	n, lines := plainFetchRun(b, 1, 1<<20, false)
	if n == 0 {
		if lines != 0 {
			t.Fatalf("%q: no line but a count of %d", b, lines)
		}
		return false
	}
	if g := plainFetchLine(b); n != g || lines != 1 {
		t.Fatalf("%q: the fast reading takes %d bytes (%d lines), plainFetchLine %d", b, n, lines, g)
	}
	checkPlain(t, b[:n])
	return true
}

// The fast reading of the two FLAGS shapes takes a line only where the
// general reading takes it, with the same length, and such a line is one
// the full path finds plain: over every line one edit away from lines of
// those shapes and their relatives, and over generated ones. It must
// also take most well-formed lines of those shapes, or it saves nothing.
func TestFlagsLineDefers(t *testing.T) {
	flagsVariants(func(b []byte) { checkFlagsLine(t, b) })
	took, general := 0, 0
	rng := rand.New(rand.NewPCG(49, 1))
	for range 200000 {
		b := genFlagsLine(rng)
		b = append(b, flagsNext[rng.IntN(len(flagsNext))]...)
		if checkFlagsLine(t, b) {
			took++
		}
		if plainFetchLine(b) > 0 {
			general++
		}
	}
	if took < general/3 {
		t.Errorf("the fast reading took %d lines of the %d plainFetchLine takes", took, general)
	}
	for _, l := range flagsBases[:5] {
		if !checkFlagsLine(t, []byte(l+flagsNext[1])) {
			t.Errorf("%q: not taken by the fast reading", l)
		}
	}
	for _, l := range flagsBases[5:] {
		if n, _ := plainFetchRun([]byte(l+flagsNext[1]), 1, 1<<20, false); n != 0 {
			t.Errorf("%q: taken by the fast reading, which must leave it to plainFetchLine", l)
		}
	}
}

// PlainFetchRun's run is the lines plainFetchLine takes one after
// another, stopping at the first it does not take, at most most of them
// and none longer than max.
func TestPlainFetchRunLines(t *testing.T) {
	rng := rand.New(rand.NewPCG(49, 2))
	for range 20000 {
		var b []byte
		for range rng.IntN(10) + 1 {
			if rng.IntN(3) == 0 {
				b = append(b, genFlagsLine(rng)...)
			} else {
				b = append(b, flagsBases[rng.IntN(len(flagsBases))]...)
			}
		}
		most, max := rng.IntN(12), int64(rng.IntN(80))
		wantN, wantLines := 0, 0
		for wantLines < most {
			l := plainFetchLine(b[wantN:])
			if l == 0 || int64(l) > max {
				break
			}
			wantN += l
			wantLines++
		}
		if n, lines := PlainFetchRun(b, most, max); n != wantN || lines != wantLines {
			t.Fatalf("%q most %d max %d: %d bytes, %d lines; line by line %d, %d", b, most, max, n, lines, wantN, wantLines)
		}
	}
}

func FuzzFlagsLine(f *testing.F) {
	for _, l := range flagsBases {
		f.Add([]byte(l + flagsNext[1]))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkFlagsLine(t, b)
	})
}

// checkPlain fails unless the full path finds l plain: a whole line, no
// literal, untagged FETCH data, no content item, nothing lineCheck
// refuses.
func checkPlain(t *testing.T, l []byte) {
	t.Helper()
	if why := checkPiece(l, true); why != "" || bytes.IndexByte(l, '\n') != len(l)-1 {
		t.Fatalf("%q: %s", l, why)
	}
	if _, ok, err := parseMarker(l, true); ok || err != nil {
		t.Fatalf("%q: marker %v %v", l, ok, err)
	}
	r, err := ParseResponse(l)
	var tr FetchTracker
	if err != nil || !tr.BeginResponse(&r) || !strings.EqualFold(string(r.Name), "FETCH") {
		t.Fatalf("%q: %+v %v", l, r, err)
	}
	tr.Part(l)
	if tr.Items != 0 || tr.Content != 0 || tr.st != fsDone {
		t.Fatalf("%q: items %d content %d state %d", l, tr.Items, tr.Content, tr.st)
	}
}
