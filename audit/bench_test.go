package audit

import (
	"bytes"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkLog measures what a session pays per record: Log of a command
// record, the record's allocation included. The writer is held in the
// sink meanwhile so that only the enqueue is timed; every 64 Ki records
// the timer stops while the queue drains.
//
//	go test -run '^$' -bench 'BenchmarkLog$' -benchmem ./audit/
func BenchmarkLog(b *testing.B) {
	const chunk = 64 << 10
	sink := &memSink{}
	tr, err := New(Options{Sink: sink, QueueSize: chunk + 1, SyncInterval: SyncNever})
	if err != nil {
		b.Fatal(err)
	}
	proto := cmdRecord(1)
	stall := func() chan struct{} {
		gate := make(chan struct{})
		sink.mu.Lock()
		sink.gate, sink.entered = gate, make(chan struct{}, 1)
		entered := sink.entered
		sink.buf.Reset()
		sink.mu.Unlock()
		tr.enqueue(cmdRecord(0), nil) // the writer's, not Log's direct write
		<-entered
		return gate
	}
	gate := stall()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i > 0 && i%chunk == 0 {
			b.StopTimer()
			close(gate)
			for tr.Stats().Queued > 0 {
				time.Sleep(time.Millisecond)
			}
			gate = stall()
			b.StartTimer()
		}
		r := NewRecord()
		*r = *proto
		if err := tr.Log(r); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	close(gate)
	tr.Close()
}

// BenchmarkEncode measures what the writer spends on each record before
// the sink: numbering, the JSON line and the chain's link, for a NOOP's
// command record as the proxy makes it. Under callgrind, two runs of
// different -benchtime give instructions per record.
//
//	go test -run '^$' -bench 'BenchmarkEncode' -benchmem ./audit/
func BenchmarkEncode(b *testing.B) {
	for _, bc := range []struct {
		name string
		key  []byte
	}{{"sha256", nil}, {"hmac", testKey()}} {
		b.Run(bc.name, func(b *testing.B) {
			tr, err := New(Options{Sink: &memSink{}, Key: bc.key, SyncInterval: SyncNever})
			if err != nil {
				b.Fatal(err)
			}
			r := &Record{Time: time.Now(), Kind: KindCommand, Session: "2f9c1a7e5b3d", IP: netip.MustParseAddr("192.0.2.7"),
				Port: 50123, Listener: "imaps", User: "alice@example.org", Tag: "a0042", Command: "NOOP",
				Selected: "INBOX", UIDValidity: 1733580000, Result: "OK", Duration: 187 * time.Microsecond,
				BytesIn: 12, BytesOut: 24}
			tr.wmu.Lock()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				tr.batch = tr.batch[:0]
				tr.encode(r)
			}
			b.StopTimer()
			tr.batch = tr.batch[:0]
			tr.wmu.Unlock()
			tr.Close()
		})
	}
}

// BenchmarkWriteFile measures the sustained rate of chained records
// written to a file (encoding, SHA-256 chain, write(2); fsync every
// second): one producer logs b.N command records as fast as the trail
// takes them, and Close waits until all are written.
//
//	go test -run '^$' -bench 'BenchmarkWriteFile' -benchtime 1000000x ./audit/
func BenchmarkWriteFile(b *testing.B) {
	for _, bc := range []struct {
		name string
		key  []byte
	}{{"sha256", nil}, {"hmac", []byte("0123456789abcdef0123456789abcdef")}} {
		b.Run(bc.name, func(b *testing.B) {
			fs, err := OpenFile(FileOptions{Path: filepath.Join(b.TempDir(), "audit.jsonl"), MaxSize: -1})
			if err != nil {
				b.Fatal(err)
			}
			tr, err := New(Options{Sink: fs, Key: bc.key})
			if err != nil {
				b.Fatal(err)
			}
			proto := cmdRecord(1)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				r := NewRecord()
				*r = *proto
				tr.Log(r)
			}
			if err := tr.Close(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
		})
	}
}

// BenchmarkLogWait measures a command's audit hand-off as the proxy makes
// it (auditWire.commandLog): LogWait of a command record to a file, the
// default fsync interval, from 1 and from 16 goroutines at once. cpu-ns/op
// is the process's CPU time (getrusage) per record, writer included;
// writes/record how many write(2) calls the records took (under 1 when
// callers combine: logDirect).
//
//	go test -run '^$' -bench 'BenchmarkLogWait' -benchmem ./audit/
func BenchmarkLogWait(b *testing.B) {
	for _, g := range []int{1, 16} {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) {
			fs, err := OpenFile(FileOptions{Path: filepath.Join(b.TempDir(), "audit.jsonl"), MaxSize: -1})
			if err != nil {
				b.Fatal(err)
			}
			cs := &countingSink{FileSink: fs}
			tr, err := New(Options{Sink: cs})
			if err != nil {
				b.Fatal(err)
			}
			proto := cmdRecord(1)
			w0, r0 := cs.writes.Load(), cs.records.Load()
			start := time.Now()
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for w := range g {
				n := b.N / g
				if w < b.N%g {
					n++
				}
				wg.Go(func() {
					for range n {
						r := NewRecord()
						*r = *proto
						if err := tr.LogWait(r, time.Minute); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
			b.ReportMetric(float64(cs.writes.Load()-w0)/float64(cs.records.Load()-r0), "writes/record")
			if err := tr.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// countingSink is a FileSink that counts writes and the records in them.
type countingSink struct {
	*FileSink
	writes, records atomic.Uint64
}

func (s *countingSink) Write(p []byte) error {
	s.count(p)
	return s.FileSink.Write(p)
}

func (s *countingSink) writeDirect(p []byte) (bool, error) {
	wrote, err := s.FileSink.writeDirect(p)
	if wrote {
		s.count(p)
	}
	return wrote, err
}

func (s *countingSink) count(p []byte) {
	s.writes.Add(1)
	s.records.Add(uint64(bytes.Count(p, []byte{'\n'})))
}
