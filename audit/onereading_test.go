package audit

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"
)

// A record that holds a key twice has two readings (the verifier's head
// reads the first, encoding/json the last, and matches field names
// case-insensitively after unescaping): verify, query, ParseRecord and
// ReadCheckpoint refuse it.
func TestRecordsWithAKeyTwiceHaveNoReading(t *testing.T) {
	path, lines := keyedTrail(t, 2)
	keys := [][]byte{testKey()}
	n := len(lines)
	for _, extra := range []string{`"kind":"command"`, `"KIND":"command"`, `"\u006bind":"command"`, `"\u212aind":"command"`,
		`"user":"mallory","user":"x"`, `"counts":{"FETCH":1,"FETCH":2}`, `"patterns":[{"a":1,"a":2}]`} {
		// A forged record placed where verify looks first: a duplicate
		// breaks it before its signature is checked.
		line := strings.Replace(lines[n-1], `"v":1,`, `"v":1,`+extra+",", 1)
		if extra == `"counts":{"FETCH":1,"FETCH":2}` || strings.HasPrefix(extra, `"patterns"`) {
			line = strings.Replace(lines[n-1], `"v":1,`, `"v":1,"user":"a",`+extra+",", 1)
		}
		if _, err := ParseRecord([]byte(line)); err == nil {
			t.Errorf("ParseRecord read %s", line)
		}
		if _, found := dupKey([]byte(line)); !found {
			t.Errorf("no duplicate found in %s", line)
		}
		p := writeTemp(t, slices.Concat(lines[:n-1], []string{line}))
		rep, err := Verify([]string{p}, VerifyOptions{Keys: keys})
		if err != nil {
			t.Fatal(err)
		}
		if b := rep.Break; b == nil || b.Kind != BreakCorrupt || b.Line != n || !strings.Contains(b.Msg, "twice") {
			t.Errorf("%s: %+v", extra, rep.Break)
		}
		skipped, err := Query([]string{p}, &Filter{}, func(r *Record, _ []byte) error {
			if r.Seq == uint64(n) {
				t.Errorf("query read %s as a %s record of %s", extra, r.Kind, r.User)
			}
			return nil
		})
		if err != nil || skipped != 1 {
			t.Errorf("%s: query skipped %d (%v)", extra, skipped, err)
		}
	}
	// Keys that only look alike, or repeat in different objects, are
	// one reading.
	for _, ok := range []string{`{"a":{"b":1},"b":[{"c":1},{"c":2}],"s":"\"a\":1,\"a\":2"}`, `{"kind":"x","kinds":1,"k":"kind"}`} {
		if k, found := dupKey([]byte(ok)); found {
			t.Errorf("%s: %q found twice", ok, k)
		}
	}
	mustVerify(t, []string{path}, VerifyOptions{Keys: keys})

	// A checkpoint with a key twice.
	_, cpFile := writeCheckpointed(t, 1)
	b, _ := os.ReadFile(cpFile)
	os.WriteFile(cpFile, bytes.Replace(b, []byte(`"v":1,`), []byte(`"v":1,"SEQ":1,`), 1), 0o600)
	if _, err := ReadCheckpoint(cpFile, keys); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("checkpoint with a key twice: %v", err)
	}
}
