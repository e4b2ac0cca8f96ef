package imapwire

import "testing"

func TestFetchUID(t *testing.T) {
	for _, tc := range []struct {
		in  string
		uid uint32
		ok  bool
	}{
		{"* 1 FETCH (UID 42 BODY[] {5}\r\n", 42, true},
		{"* 1 FETCH (FLAGS (\\Seen \\Answered) UID 7)\r\n", 7, true},
		{"* 3 fetch (RFC822.SIZE 100 uid 9 BODY[HEADER.FIELDS (UID)] {3}\r\n", 9, true},
		{"* 1 FETCH (BODY[HEADER.FIELDS (UID)] {30}\r\n", 0, false},
		{"* 1 FETCH (ENVELOPE (\"date\" \"UID 5\" NIL) UID 11)\r\n", 11, true},
		{"* 1 FETCH (BODY[] {5}\r\n", 0, false},
		{"* 1 FETCH (FLAGS (\\Seen))\r\n", 0, false},
		{"* 1 FETCH (UID 0)\r\n", 0, false},
		{"* 1 FETCH (UID 4294967296)\r\n", 0, false},
		{"* 1 EXPUNGE\r\n", 0, false},
		{"a1 OK FETCH done\r\n", 0, false},
		{"* 1 FETCH (UID", 0, false},
	} {
		uid, ok := FetchUID([]byte(tc.in))
		if uid != tc.uid || ok != tc.ok {
			t.Errorf("FetchUID(%q) = %d, %v; want %d, %v", tc.in, uid, ok, tc.uid, tc.ok)
		}
	}
	if n := testing.AllocsPerRun(100, func() { FetchUID([]byte("* 1 FETCH (FLAGS (\\Seen) UID 7 BODY[] {5}\r\n")) }); n != 0 {
		t.Errorf("FetchUID allocates %v", n)
	}
}

func FuzzFetchUID(f *testing.F) {
	f.Add("* 1 FETCH (UID 42 BODY[] {5}\r\n")
	f.Add("* 1 FETCH (ENVELOPE (\"a\" (\"b\" NIL)) UID 1)\r\n")
	f.Fuzz(func(t *testing.T, s string) { FetchUID([]byte(s)) })
}
