package inflate

import (
	"bytes"
	"compress/flate"
	"io"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// zlib's Z_PARTIAL_FLUSH output for "3 NOOP\r\n" (raw deflate, level 6), as
// mbsync sends a command: decoded without waiting for more input.
var partialFlush = []byte{0x32, 0x56, 0xf0, 0xf3, 0xf7, 0x0f, 0xe0, 0xe5, 0x02, 0x08}

func TestPartialFlushYields(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write(partialFlush) // the connection stays open
	done := make(chan string, 1)
	go func() {
		buf := make([]byte, 64)
		n, _ := NewReader(pr).Read(buf)
		done <- string(buf[:n])
	}()
	select {
	case got := <-done:
		if got != "3 NOOP\r\n" {
			t.Fatalf("got %q", got)
		}
	case <-time.After(testenv.IOTimeout()):
		t.Fatal("the decoder waited for input after a partial flush")
	}
}

// The fork still decodes what the standard writer makes, whole.
func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestSpeed)
	msg := bytes.Repeat([]byte("* 1 FETCH (UID 1 FLAGS (\\\\Seen))\r\n"), 5000)
	w.Write(msg)
	w.Close()
	got, err := io.ReadAll(NewReader(&buf))
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("round trip: %d bytes, %v", len(got), err)
	}
}
