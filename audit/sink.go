package audit

import (
	"errors"
	"fmt"
	"io"
	"syscall"
)

// A Sink stores or forwards records. The trail never calls it
// concurrently: its writer goroutine or, for a directSink, a LogWait
// caller holding the write side.
type Sink interface {
	// Write takes one or more whole records, each ending in "\n". It
	// returns nil only when all of them were handed to the OS; on an
	// error none of them should be considered written (a file sink cuts a
	// partial write back off), and the trail retries or drops them.
	Write(records []byte) error
	// Sync makes what was written durable (fsync). Sinks that cannot
	// return nil.
	Sync() error
	Close() error
}

// directSink is a sink that LogWait callers may write to themselves
// (Trail.logDirect): its Write waits on nothing but the local kernel, so
// that a caller never sits in a write past its timeout on a failing
// sink.
type directSink interface {
	// writeDirect writes records as Write does when that is such a
	// write (a file sink: no rotation due), deciding and writing in one
	// step; otherwise it writes nothing and returns false.
	writeDirect(records []byte) (wrote bool, err error)
}

// fileSyncer is a sink whose file may be fsynced while records are
// written to it (Trail.tickSync). syncFile, called with the write side
// held, returns the file to sync (an *os.File), nil when there is none.
type fileSyncer interface {
	syncFile() interface{ Sync() error }
}

// A Resumer is a sink that can read back the last record it stored, so
// that a restarted trail continues the chain instead of starting a new
// one.
type Resumer interface {
	// LastRecord returns the last complete record (without its "\n"), or
	// nil when there is none. A torn last line (the previous process was
	// killed in a write) is cut off first and its length returned.
	LastRecord() (record []byte, torn int64, err error)
}

// WriterSink writes records to an io.Writer such as os.Stdout, for a
// collector that reads the process's output. Whoever reads it keeps the
// chain: every start of the proxy begins a new one (seq 1).
type WriterSink struct{ w io.Writer }

// NewWriterSink returns a sink writing to w. It never closes w.
func NewWriterSink(w io.Writer) *WriterSink { return &WriterSink{w: w} }

func (s *WriterSink) Write(p []byte) error {
	if _, err := s.w.Write(p); err != nil {
		return fmt.Errorf("audit: write: %w", err)
	}
	return nil
}

// Sync calls w's Sync when it has one; pipes and terminals cannot sync,
// which is not an error for them.
func (s *WriterSink) Sync() error {
	sy, ok := s.w.(interface{ Sync() error })
	if !ok {
		return nil
	}
	err := sy.Sync()
	if err == nil || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EROFS) {
		return nil
	}
	return fmt.Errorf("audit: sync: %w", err)
}

func (s *WriterSink) Close() error { return nil }
