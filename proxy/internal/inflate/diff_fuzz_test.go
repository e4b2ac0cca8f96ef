package inflate

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"
)

// maxOut caps what a comparison decodes: a few bytes of input can inflate
// a thousandfold, and the first MiB shows any difference as well.
const maxOut = 1 << 20

// errCap ends a decode at maxOut, for both decoders alike.
var errCap = errors.New("output cap reached")

// decodeAll reads what r yields, up to maxOut, with reads of size chunk.
func decodeAll(r io.Reader, chunk int) ([]byte, error) {
	var out []byte
	buf := make([]byte, chunk)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if len(out) >= maxOut {
			return out[:maxOut], errCap
		}
	}
}

// sameError reports whether two decoders failed alike: the same error
// value, or the same message (CorruptInputError names an offset, which
// must agree too).
func sameError(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	var ca CorruptInputError
	var cb flate.CorruptInputError
	if errors.As(a, &ca) && errors.As(b, &cb) {
		return int64(ca) == int64(cb)
	}
	return a.Error() == b.Error()
}

// compare decodes in with the fork and with compress/flate: the same
// bytes, and the same error, however the input arrives and however the
// output is read (the fork yields at block ends, the standard reader
// later; what they decode must not differ).
func compare(t *testing.T, in []byte) {
	t.Helper()
	want, werr := decodeAll(flate.NewReader(bytes.NewReader(in)), 32<<10)
	for _, v := range []struct {
		name  string
		r     io.Reader
		chunk int
	}{
		{"whole", bytes.NewReader(in), 32 << 10},
		{"one-byte-input", iotest.OneByteReader(bytes.NewReader(in)), 4096},
		{"small-reads", iotest.HalfReader(bytes.NewReader(in)), 7},
	} {
		got, gerr := decodeAll(NewReader(v.r), v.chunk)
		if !bytes.Equal(got, want) || !sameError(gerr, werr) {
			t.Fatalf("%s: fork %d bytes, %v; compress/flate %d bytes, %v (input %x)",
				v.name, len(got), gerr, len(want), werr, in[:min(len(in), 64)])
		}
	}
}

// Arbitrary input: attacker-controlled bytes after COMPRESS DEFLATE.
func FuzzInflateDifferential(f *testing.F) {
	f.Add(partialFlush)
	f.Add([]byte{})
	f.Add([]byte{0x01, 0x00, 0x00, 0xff, 0xff}) // empty stored block, final
	f.Add([]byte{0x03, 0x00})                   // empty fixed block, final
	f.Add([]byte{0x05, 0xc0, 0x21, 0x01, 0x00, 0x00, 0x00, 0x80, 0xa0, 0xfe, 0xaf, 0x1a})
	f.Fuzz(func(t *testing.T, in []byte) { compare(t, in) })
}

// Valid streams of the standard writer, then mutated: most corrupt bytes
// land deep inside real Huffman tables and back-references.
func FuzzInflateMutated(f *testing.F) {
	f.Add([]byte("3 NOOP\r\n"), int8(6), uint16(3), byte(0x10), false)
	f.Add(bytes.Repeat([]byte("* 1 FETCH (FLAGS (\\Seen))\r\n"), 40), int8(1), uint16(20), byte(0xff), true)
	f.Add([]byte("abcabcabcabcabcabc"), int8(9), uint16(0), byte(0), false)
	f.Add([]byte("x"), int8(0), uint16(5), byte(1), true) // stored
	f.Add([]byte("huffman only huffman only"), int8(-2), uint16(7), byte(0x40), false)
	f.Fuzz(func(t *testing.T, data []byte, level int8, pos uint16, xor byte, flush bool) {
		if len(data) > 64<<10 {
			data = data[:64<<10]
		}
		lvl := int(level) // -2..9 are the writer's levels
		if lvl < flate.HuffmanOnly || lvl > flate.BestCompression {
			lvl = flate.DefaultCompression
		}
		var buf bytes.Buffer
		w, err := flate.NewWriter(&buf, lvl)
		if err != nil {
			t.Fatal(err)
		}
		half := len(data) / 2
		w.Write(data[:half])
		if flush {
			w.Flush() // a sync flush mid-stream, as clients send commands
		}
		w.Write(data[half:])
		w.Close()
		in := buf.Bytes()
		compare(t, in) // valid: both decode data
		if len(in) > 0 {
			in[int(pos)%len(in)] ^= xor
			compare(t, in)
			compare(t, in[:int(pos)%len(in)]) // cut short there
		}
	})
}

func TestDifferentialSeeds(t *testing.T) {
	// The fuzz seeds run as plain tests too; one more, larger stream.
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestCompression)
	for i := range 3000 {
		fmt.Fprintf(w, "* %d FETCH (UID %d FLAGS (\\Seen))\r\n", i, i*7)
		if i%500 == 0 {
			w.Flush()
		}
	}
	w.Close()
	compare(t, buf.Bytes())
}
