package proxy

import (
	"net"
	"testing"
	"time"
)

// writeDeadlines records the write deadlines set on it.
type writeDeadlines struct {
	net.Conn
	deadline time.Time
	sets     int
}

func (c *writeDeadlines) SetWriteDeadline(t time.Time) error {
	c.deadline, c.sets = t, c.sets+1
	return nil
}

func (c *writeDeadlines) Write(p []byte) (int, error) { return len(p), nil }

// Every write to the client has its deadline at least WriteTimeout ahead
// (a client that stops reading is cut, one that reads is never), yet a
// session's replies move the timer only once in WriteTimeout/8, not once
// each (ARCHITECTURE.md §16).
func TestWriteDeadlineMovesSeldom(t *testing.T) {
	const timeout = time.Hour // far beyond the test's own time: no write needs a second
	c := &writeDeadlines{}
	w := deadlineWriter{c: c, timeout: timeout}
	const writes = 1000
	for range writes {
		start := time.Now()
		if _, err := w.Write([]byte("a OK done\r\n")); err != nil {
			t.Fatal(err)
		}
		if left := c.deadline.Sub(start); left < timeout {
			t.Fatalf("a write began with %v of its deadline left, want at least %v", left, timeout)
		}
	}
	if c.sets != 1 {
		t.Errorf("%d deadlines set for %d writes within WriteTimeout/8, want 1", c.sets, writes)
	}
	// Once less than timeout is left, the next write moves it again.
	w.until -= int64(timeout / 4)
	c.sets = 0
	start := time.Now()
	w.Write([]byte("a OK done\r\n"))
	if left := c.deadline.Sub(start); c.sets != 1 || left < timeout {
		t.Errorf("with less than WriteTimeout left: %d deadlines set, %v left, want 1 and at least %v", c.sets, left, timeout)
	}
}
