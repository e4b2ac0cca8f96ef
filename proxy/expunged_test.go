package proxy

import (
	"fmt"
	"testing"
)

// TestVanishedScan: a VANISHED set is read whole however the backend's
// reads cut it (expunged.go), and an EARLIER one is not this command's.
func TestVanishedScan(t *testing.T) {
	const set = "1:3,7,12:10,4294967295\r\n"
	want := "8 [1 2 3 7 10 11 12 4294967295]"
	for cut := 0; cut <= len(set); cut++ {
		for cut2 := cut; cut2 <= len(set); cut2++ {
			f := new(inflight)
			var v vanishedScan
			var others uint32
			rest, ok := v.begin(f, &others, []byte(" "+set[:cut]), DefaultMaxAuditUIDs)
			if !ok {
				t.Fatal("not read")
			}
			v.piece(rest, cut == len(set))
			if cut < len(set) {
				v.piece([]byte(set[cut:cut2]), cut2 == len(set))
				if cut2 < len(set) {
					v.piece([]byte(set[cut2:]), true)
				}
			}
			// 12:10 is 10:12 (RFC 9051 §9 seq-range).
			if got := fmt.Sprint(f.expungedCount(), " ", f.expungedUIDs()); got != want || others != 0 || len(f.uids) != 0 {
				t.Fatalf("cut at %d, %d: %s, want %s", cut, cut2, got, want)
			}
			if v.f != nil || v.on {
				t.Fatal("scan still open after the final piece")
			}
		}
	}
	var v vanishedScan
	var others uint32
	if _, ok := v.begin(new(inflight), &others, []byte(" (EARLIER) 1:5\r\n"), DefaultMaxAuditUIDs); ok {
		t.Error("VANISHED (EARLIER) read as this command's expunges")
	}
	f := new(inflight)
	rest, _ := v.begin(f, &others, []byte(" 0,x,123456789012345678901234567890,5\r\n"), DefaultMaxAuditUIDs)
	v.piece(rest, true)
	if f.expungedCount() != 1 || fmt.Sprint(f.expungedUIDs()) != "[5]" {
		t.Errorf("malformed elements: expunged %d, uids %v", f.expungedCount(), f.expungedUIDs())
	}
	// A UID EXPUNGE's own are the UIDs of its set; the rest, and all of
	// a VANISHED no command may have caused, are another session's.
	f = new(inflight)
	f.cmd.UID, f.cmd.Set = true, "2:4,9"
	rest, _ = v.begin(f, &others, []byte(" 1:5,6,8:10\r\n"), DefaultMaxAuditUIDs)
	v.piece(rest, true)
	if f.expungedCount() != 4 || fmt.Sprint(f.expungedUIDs()) != "[2 3 4 9]" || others != 5 {
		t.Errorf("UID EXPUNGE 2:4,9, VANISHED 1:5,6,8:10: expunged %d, uids %v, others %d; want 4, [2 3 4 9], 5",
			f.expungedCount(), f.expungedUIDs(), others)
	}
	rest, _ = v.begin(nil, &others, []byte(" 1:5\r\n"), DefaultMaxAuditUIDs)
	v.piece(rest, true)
	if others != 10 {
		t.Errorf("VANISHED 1:5 with no command to credit: others %d, want 10", others)
	}
	rest, _ = v.begin(nil, &others, []byte(" 1:4294967295\r\n"), DefaultMaxAuditUIDs)
	v.piece(rest, true)
	if others != 1<<32-1 {
		t.Errorf("VANISHED 1:4294967295 after 10: others %d, want the count to stop at %d", others, uint32(1<<32-1))
	}
	f = new(inflight)
	rest, _ = v.begin(f, &others, []byte(" 1:4294967295\r\n"), DefaultMaxAuditUIDs)
	v.piece(rest, true)
	if f.expungedCount() != 1<<32-1 || len(f.expungedUIDs()) != DefaultMaxAuditUIDs {
		t.Errorf("EXPUNGE, VANISHED 1:4294967295: expunged %d, %d UIDs named", f.expungedCount(), len(f.expungedUIDs()))
	}
}
