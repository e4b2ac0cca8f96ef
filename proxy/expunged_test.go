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
			rest, ok := v.begin(f, []byte(" "+set[:cut]), DefaultMaxAuditUIDs)
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
			if got := fmt.Sprint(f.expungedCount(), " ", f.uids); got != want {
				t.Fatalf("cut at %d, %d: %s, want %s", cut, cut2, got, want)
			}
			if v.f != nil {
				t.Fatal("scan still open after the final piece")
			}
		}
	}
	var v vanishedScan
	if _, ok := v.begin(new(inflight), []byte(" (EARLIER) 1:5\r\n"), DefaultMaxAuditUIDs); ok {
		t.Error("VANISHED (EARLIER) read as this command's expunges")
	}
	f := new(inflight)
	rest, _ := v.begin(f, []byte(" 0,x,123456789012345678901234567890,5\r\n"), DefaultMaxAuditUIDs)
	v.piece(rest, true)
	if f.expungedCount() != 1 || fmt.Sprint(f.uids) != "[5]" {
		t.Errorf("malformed elements: expunged %d, uids %v", f.expungedCount(), f.uids)
	}
}
