package proxy

import (
	"fmt"
	"strconv"
	"testing"
	"unsafe"

	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

func TestInflightTable(t *testing.T) {
	var tb inflightTable
	fs := make([]*inflight, 100)
	for i := range fs {
		fs[i] = &inflight{cmd: imapwire.Command{Tag: "t" + strconv.Itoa(i)}}
		tb.push(fs[i])
	}
	if tb.len() != 100 || tb.byTag == nil || !tb.has("t99") || tb.has("t100") {
		t.Fatalf("len %d, index %v", tb.len(), tb.byTag != nil)
	}
	// Out of order: a hole the head skips later.
	if f := tb.take([]byte("t50")); f != fs[50] {
		t.Fatal("take t50")
	}
	if tb.has("t50") || tb.take([]byte("t50")) != nil {
		t.Fatal("t50 still in flight")
	}
	for i := 0; i < 100; i++ {
		if i == 50 {
			continue
		}
		if tb.oldest() != fs[i] {
			t.Fatalf("oldest is not t%d", i)
		}
		if f := tb.take([]byte(fs[i].cmd.Tag)); f != fs[i] {
			t.Fatalf("take t%d", i)
		}
	}
	if tb.len() != 0 || tb.q != nil || tb.byTag != nil {
		t.Fatalf("not emptied: len %d, cap %d", tb.len(), cap(tb.q))
	}
	// The same tag twice (the proxy refuses it, but the table copes):
	// oldest first.
	a, b := &inflight{cmd: imapwire.Command{Tag: "x"}}, &inflight{cmd: imapwire.Command{Tag: "x"}}
	tb.push(a)
	tb.push(b)
	if tb.take([]byte("x")) != a || tb.take([]byte("x")) != b {
		t.Fatal("duplicate tags out of order")
	}
}

// sliceTable is how completions were found before issue 17: scan the
// slice, shift the rest down. Kept here as the benchmark's reference.
type sliceTable struct{ q []*inflight }

func (s *sliceTable) take(tag []byte) *inflight {
	for i, f := range s.q {
		if f.cmd.Tag == string(tag) {
			s.q = append(s.q[:i], s.q[i+1:]...)
			return f
		}
	}
	return nil
}

// BenchmarkInflightCompletion: n pipelined commands completing in order,
// per command. The table pops its head; the old slice scanned and shifted
// (quadratic: 25k/50k/100k completions cost 0.1/0.4/1.5 s of CPU).
func BenchmarkInflightCompletion(b *testing.B) {
	for _, n := range []int{1000, 25000, 100000} {
		fs := make([]*inflight, n)
		tags := make([][]byte, n)
		for i := range fs {
			fs[i] = &inflight{cmd: imapwire.Command{Tag: "a" + strconv.Itoa(i)}}
			tags[i] = []byte(fs[i].cmd.Tag)
		}
		b.Run(fmt.Sprintf("table/n=%d", n), func(b *testing.B) {
			for range b.N {
				var tb inflightTable
				for _, f := range fs {
					tb.push(f)
				}
				for _, tag := range tags {
					tb.take(tag)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/command")
		})
		b.Run(fmt.Sprintf("before/n=%d", n), func(b *testing.B) {
			if n > 25000 && testing.Short() {
				b.Skip("quadratic")
			}
			for range b.N {
				st := sliceTable{q: append([]*inflight(nil), fs...)}
				for _, tag := range tags {
					st.take(tag)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/command")
		})
	}
}

// TestInflightTableSteadyPipeline: a client that always keeps a command
// in flight never empties the table; its array must stay the size of
// what is in flight, not grow by a slot for every command of the session.
func TestInflightTableSteadyPipeline(t *testing.T) {
	var tb inflightTable
	fs := make([]*inflight, 3)
	for i := range fs {
		fs[i] = &inflight{cmd: imapwire.Command{Tag: "t" + strconv.Itoa(i)}}
	}
	tb.push(fs[0])
	for i := 1; i <= 100000; i++ {
		tb.push(fs[i%3])
		if f := tb.take([]byte(fs[(i-1)%3].cmd.Tag)); f != fs[(i-1)%3] {
			t.Fatalf("command %d: take returned %v", i, f)
		}
		if tb.len() != 1 || tb.oldest() != fs[i%3] {
			t.Fatalf("command %d: len %d", i, tb.len())
		}
	}
	if c := cap(tb.q); c > 4*byTagFrom {
		t.Errorf("after 100000 commands with one in flight the table holds %d slots", c)
	}
}

// TestInflightTableHoles: a command that stays in flight while thousands
// complete behind it (a server may run commands concurrently, RFC 9051
// §5.5) neither grows the table by a slot per command nor makes each
// completion scan the holes: the array stays a small multiple of the
// commands in flight, and every command is found by its tag, and by its
// record.
func TestInflightTableHoles(t *testing.T) {
	for _, many := range []int{2, 40} { // without and with the tag index
		var tb inflightTable
		stay := make([]*inflight, many)
		for i := range stay {
			stay[i] = &inflight{cmd: imapwire.Command{Tag: "s" + strconv.Itoa(i)}}
			tb.push(stay[i])
		}
		for i := range 100000 {
			f := &inflight{cmd: imapwire.Command{Tag: "t" + strconv.Itoa(i)}}
			tb.push(f)
			if !tb.holds(f) || !tb.has(f.cmd.Tag) {
				t.Fatalf("%d: t%d not found", many, i)
			}
			if tb.take([]byte(f.cmd.Tag)) != f || tb.holds(f) || tb.has(f.cmd.Tag) {
				t.Fatalf("%d: take t%d", many, i)
			}
		}
		if c := cap(tb.q); c > 4*max(many, byTagFrom) {
			t.Errorf("%d in flight, after 100000 completed behind them the table holds %d slots", many, c)
		}
		for i, f := range stay {
			if !tb.holds(f) || tb.oldest() != f || tb.take([]byte(f.cmd.Tag)) != f {
				t.Fatalf("%d: s%d lost", many, i)
			}
		}
		if tb.len() != 0 {
			t.Errorf("%d left", tb.len())
		}
	}
}

// heldBy charges a FETCH's record at least what the backend pump may add
// to it while it is in flight (its fetchShare's ranges and keys, its
// UIDs, as append grows them), so that MaxInflightBytes bounds what the
// records hold, not only what the client sent (ARCHITECTURE.md §12).
func TestHeldByCoversWhatRecordsGrow(t *testing.T) {
	odd := func(n int) string {
		var b []byte
		for i := 1; i < 2*n; i += 2 {
			b = strconv.AppendInt(b, int64(i), 10)
			b = append(b, ',')
		}
		return string(b[:len(b)-1])
	}
	for _, c := range []struct {
		set   string
		count int64
		items []string
	}{
		{"1:*", -1, []string{"BODY.PEEK[]"}},
		{"7", 1, []string{"FULL"}},
		{"1,2,3,5", 4, []string{"ENVELOPE", "BODY[HEADER]", "FULL", "ALL"}},
		{odd(10), 10, []string{"BODY[TEXT]"}},
		{odd(300), 300, []string{"RFC822"}},
		{odd(12000), 12000, []string{"BINARY.PEEK[1]", "FULL"}},
	} {
		cmd := imapwire.Command{Tag: "f1", Name: "FETCH", Set: c.set, SetCount: c.count, FetchItems: c.items}
		rs, _ := imapwire.SetRanges(nil, c.set)
		ks := imapwire.ItemKeys(nil, c.items)
		var uids []uint32
		for i := int64(0); i < min(DefaultMaxAuditUIDs, c.count) || (c.count < 0 && i < DefaultMaxAuditUIDs); i++ {
			uids = append(uids, uint32(i))
		}
		grown := unsafe.Sizeof(fetchShare{}) + uintptr(cap(rs))*unsafe.Sizeof(imapwire.SetRange{}) +
			uintptr(cap(ks))*unsafe.Sizeof(imapwire.ItemKey{}) + uintptr(cap(uids))*4
		fixed := uintptr(heldBy(&cmd, false, DefaultMaxAuditUIDs))
		if got := uintptr(heldBy(&cmd, true, DefaultMaxAuditUIDs)); got < fixed+grown {
			t.Errorf("FETCH %.20s (%d items): charged %d, holds up to %d", c.set, len(c.items), got, fixed+grown)
		}
	}
}
