package audit

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"go.uber.org/zap"
)

// foldOrbits returns every set of keys the trail's readers take for one
// (dupKey: bytes.EqualFold): each of Unicode's simple-fold orbits of more
// than one rune (unicode.SimpleFold), and bytes that are not UTF-8, which
// both encoders write as U+FFFD.
func foldOrbits() [][]string {
	var orbits [][]string
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if unicode.SimpleFold(r) == r || smallestInOrbit(r) != r {
			continue
		}
		o := []string{string(r)}
		for g := unicode.SimpleFold(r); g != r; g = unicode.SimpleFold(g) {
			o = append(o, string(g))
		}
		orbits = append(orbits, o)
	}
	return append(orbits, []string{"\xff", "\xfe", "\ufffd"})
}

func smallestInOrbit(r rune) rune {
	m := r
	for g := unicode.SimpleFold(r); g != r; g = unicode.SimpleFold(g) {
		m = min(m, g)
	}
	return m
}

// Every record the writer writes has one reading by its own readers
// (ARCHITECTURE.md §11): a map keyed by outside text (client_id, counts,
// quota, annotations at any depth) whose keys fold together is written
// with one of them, the others named in cut; verify, query and a restart
// on the trail all read every record.
func TestFoldEqualKeysWrittenOnce(t *testing.T) {
	orbits := foldOrbits()
	if len(orbits) < 1000 {
		t.Fatalf("%d fold orbits", len(orbits))
	}
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	fs, err := OpenFile(FileOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(Options{Sink: fs, Logger: zap.NewNop(), Key: testKey()})
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range orbits {
		id, counts, quota, inner := map[string]string{}, map[string]int{}, map[string]int64{}, map[string]any{}
		for j, k := range o {
			id[k], id["x"+k+"y"] = fmt.Sprint(j), fmt.Sprint(j)
			counts[k], quota[k], inner[k] = j+1, int64(j+1), j
		}
		kind := KindAuth
		if i%2 == 1 {
			kind = KindSessionClose
		}
		r := &Record{Time: time.Now(), Kind: kind, Session: fmt.Sprint("S", i), User: "u" + o[0], ClientID: id,
			Counts: counts, Quota: quota, Annot: map[string]any{"a": inner, "l": []any{inner}}}
		if i == len(orbits)-1 {
			if err := tr.LogWait(r, time.Minute); err != nil {
				t.Fatal(err)
			}
			continue
		}
		tr.Log(r)
	}
	// Killed here: a restart continues from what the file holds.
	killed, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tr.Close()

	for _, p := range []string{path, writeTemp(t, nil)} {
		if err := os.WriteFile(p, killed, 0o600); err != nil {
			t.Fatal(err)
		}
		mustVerify(t, []string{p}, VerifyOptions{Keys: [][]byte{testKey()}})
		var read int
		skipped, err := Query([]string{p}, &Filter{}, func(r *Record, _ []byte) error {
			if r.Kind != KindAuth && r.Kind != KindSessionClose {
				return nil
			}
			read++
			for _, m := range []struct {
				field string
				keys  []string
			}{{"client_id", mapKeys(r.ClientID)}, {"counts", mapKeys(r.Counts)}, {"quota", mapKeys(r.Quota)}} {
				if !slices.ContainsFunc(r.Cut, func(c Cut) bool { return c.Field == m.field }) {
					t.Errorf("%s: a record of %s with %v left out keys that fold together and does not say so: %+v", r.Session, m.field, m.keys, r.Cut)
				}
			}
			if !slices.ContainsFunc(r.Cut, func(c Cut) bool { return c.Field == "annotations" }) || r.Annot["a"] == nil {
				t.Errorf("%s: annotations %v, cut %+v", r.Session, r.Annot, r.Cut)
			}
			return nil
		})
		if err != nil || skipped != 0 || read != len(orbits) {
			t.Errorf("query read %d of %d records, skipped %d (%v)", read, len(orbits), skipped, err)
		}
	}
	fs2, err := OpenFile(FileOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	tr2, err := New(Options{Sink: fs2, Logger: zap.NewNop(), Key: testKey()})
	if err != nil {
		fs2.Close()
		t.Fatalf("restart after the writer's own records: %v", err)
	}
	tr2.Close()
	mustVerify(t, []string{path}, VerifyOptions{Keys: [][]byte{testKey()}})
}

func mapKeys[V any](m map[string]V) []string {
	var l []string
	for k := range m {
		l = append(l, k)
	}
	slices.Sort(l)
	if len(l) > 0 && !utf8.ValidString(l[0]) {
		l[0] = fmt.Sprintf("%q", l[0])
	}
	return l
}
