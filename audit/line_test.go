package audit

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

var lineRecords = flag.Int("line-records", 2000, "generated records TestLineMatchesZap encodes")

// jsonLine writes, for every generated record under every kind of caps,
// the bytes zapcore's JSON encoder wrote and the same link (zapref_test.go
// keeps that encoder): every field, every escape class, bytes that are not
// UTF-8, keys that fold together, cut fields, shrink steps, with and
// without a key. The seed is logged; LINE_SEED repeats a run.
func TestLineMatchesZap(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("LINE_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("LINE_SEED=%d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := range *lineRecords {
		r := genRecord(rng)
		c := genCaps(rng)
		whole := 0
		if rng.IntN(4) == 0 {
			whole = rng.IntN(1 << 20)
		}
		var key []byte
		if i%2 == 1 {
			key = testKey()
		}
		var prev [64]byte
		for j := range prev {
			prev[j] = hexDigits[rng.IntN(16)]
		}
		seq := rng.Uint64()
		if rng.IntN(2) == 0 {
			seq = uint64(rng.IntN(1000))
		}

		old := &encoding{caps: c, whole: whole}
		want, wantLink := zapLine(r, seq, newLinker(key), prev, old)

		tr := &Trail{link: newLinker(key), seq: seq, prevHex: prev}
		tr.batch = append(tr.batch, "{\"x\":1}\n"...) // what an earlier record left
		tr.enc.caps, tr.enc.whole = c, whole
		tr.write(r)
		got := tr.batch[len("{\"x\":1}\n"):]
		if !bytes.Equal(got, want) || tr.prevHex != wantLink || !reflect.DeepEqual(tr.enc.cut, old.cut) {
			n := 0
			for n < min(len(got), len(want)) && got[n] == want[n] {
				n++
			}
			t.Fatalf("record %d (LINE_SEED=%d), caps %+v, whole %d: differs at byte %d:\nzap:  %q\nline: %q\nlinks %s %s\ncut %+v %+v",
				i, seed, c, whole, n, want[max(0, n-100):min(len(want), n+100)], got[max(0, n-100):min(len(got), n+100)],
				wantLink[:], tr.prevHex[:], old.cut, tr.enc.cut)
		}
		if _, err := ParseRecord(got[:len(got)-1]); err != nil && !zapUnreadable(r) {
			t.Fatalf("record %d (LINE_SEED=%d): %v: %.300q", i, seed, err, got)
		}
	}
}

// appendRFC3339Nano writes what AppendFormat writes, for days from 1970
// to 9999 (leap days, centuries), fractions of each length, and times
// outside its range or in another zone, which it hands over.
func TestAppendRFC3339Nano(t *testing.T) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	check := func(tm time.Time) {
		t.Helper()
		want := tm.AppendFormat(nil, time.RFC3339Nano)
		if got := appendRFC3339Nano(nil, tm); !bytes.Equal(got, want) {
			t.Fatalf("%v: %s, want %s", tm, got, want)
		}
	}
	for d := time.Unix(0, 0).UTC(); d.Year() < 10000; d = d.AddDate(0, 0, 1+rng.IntN(20)) {
		check(d.Add(time.Duration(rng.Int64N(int64(24 * time.Hour)))).Truncate(time.Duration(math.Pow10(rng.IntN(10)))))
	}
	for _, y := range []int{1970, 1972, 2000, 2024, 2100, 2400, 9996, 9999} {
		for _, md := range [][2]int{{1, 1}, {2, 28}, {2, 29}, {3, 1}, {12, 31}} {
			check(time.Date(y, time.Month(md[0]), md[1], 23, 59, 59, 999999999, time.UTC))
		}
	}
	for _, tm := range []time.Time{time.Unix(0, 0).UTC(), time.Unix(maxRFC3339Unix-1, 999999999).UTC(),
		time.Unix(maxRFC3339Unix, 0).UTC(), time.Unix(-1, 5).UTC(), time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Now(), time.Now().In(time.FixedZone("x", -3600)), time.Time{}} {
		check(tm)
	}
}

// zapUnreadable tells a record whose line no reader takes, whoever
// encodes it: no kind, or a time that does not decode.
func zapUnreadable(r *Record) bool {
	badYear := func(t time.Time) bool { return t.UTC().Year() < 0 || t.UTC().Year() > 9999 }
	return r.Kind == "" || badYear(r.Time) || badYear(r.NotAfter)
}

// Generated records written to a keyed file trail are read by verify and
// query, and a restart continues the chain after them.
func TestGeneratedRecordsReadBack(t *testing.T) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	fs, err := OpenFile(FileOptions{Path: path, MaxSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(Options{Sink: fs, Logger: zap.NewNop(), Key: testKey(), MaxRecordBytes: MinRecordBytes})
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	logged := 0
	for range n {
		r := genRecord(rng)
		if zapUnreadable(r) {
			continue
		}
		r.Session = fmt.Sprint("t", logged) // the proxy's own: never cut
		if err := tr.Log(r); err != nil {
			t.Fatal(err)
		}
		logged++
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, []string{path}, VerifyOptions{Keys: [][]byte{testKey()}})
	read := 0
	skipped, err := Query([]string{path}, &Filter{}, func(r *Record, _ []byte) error {
		if strings.HasPrefix(r.Session, "t") {
			read++
		}
		return nil
	})
	if err != nil || skipped != 0 || read != logged {
		t.Fatalf("query read %d of %d records, skipped %d (%v)", read, logged, skipped, err)
	}
	fs2, err := OpenFile(FileOptions{Path: path, MaxSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	tr2, err := New(Options{Sink: fs2, Logger: zap.NewNop(), Key: testKey()})
	if err != nil {
		fs2.Close()
		t.Fatalf("restart: %v", err)
	}
	tr2.Close()
	mustVerify(t, []string{path}, VerifyOptions{Keys: [][]byte{testKey()}})
}

// genCaps returns configured caps, or one of their shrink steps.
func genCaps(rng *rand.Rand) caps {
	c := confCaps(rng.IntN(1500), rng.IntN(40), 1+rng.IntN(70))
	c.identBytes = rng.IntN(4000)
	if k := rng.IntN(6); k < 4 {
		c = shrinkCaps(c)[k]
	}
	return c
}

// genRecord fills each field of a Record, found by reflection so that a
// field added later is generated too, with probability one half.
func genRecord(rng *rand.Rand) *Record {
	r := &Record{}
	v := reflect.ValueOf(r).Elem()
	for i := range v.NumField() {
		f, sf := v.Field(i), v.Type().Field(i)
		if !sf.IsExported() || rng.IntN(2) == 0 {
			continue
		}
		switch sf.Name {
		case "Set":
			f.SetString(genSet(rng))
			continue
		case "Kind":
			kinds := []Kind{KindCommand, KindAuth, KindSessionClose, KindLimit, KindAuditStart, Kind(genString(rng))}
			f.SetString(string(kinds[rng.IntN(len(kinds))]))
			continue
		}
		genValue(rng, f, 0)
	}
	if r.Kind == "" && rng.IntN(8) != 0 {
		r.Kind = KindCommand
	}
	return r
}

func genValue(rng *rand.Rand, f reflect.Value, depth int) {
	switch f.Interface().(type) {
	case time.Time:
		f.Set(reflect.ValueOf(genTime(rng)))
		return
	case time.Duration:
		ds := []time.Duration{1, 999, 1000, 1500 * time.Microsecond, time.Hour, -time.Millisecond, math.MaxInt64, math.MinInt64, time.Duration(rng.Int64())}
		f.SetInt(int64(ds[rng.IntN(len(ds))]))
		return
	case netip.Addr:
		f.Set(reflect.ValueOf(genAddr(rng)))
		return
	case map[string]any:
		m := map[string]any{}
		for range 1 + rng.IntN(6) {
			m[genKey(rng)] = genAny(rng, 1)
		}
		f.Set(reflect.ValueOf(m))
		return
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(genString(rng))
	case reflect.Bool:
		f.SetBool(true)
	case reflect.Int, reflect.Int64:
		ns := []int64{1, -1, 7, 1 << 31, math.MaxInt64, math.MinInt64, rng.Int64N(100000)}
		f.SetInt(ns[rng.IntN(len(ns))])
	case reflect.Uint16, reflect.Uint32, reflect.Uint64:
		ns := []uint64{1, 65535, 1<<32 - 1, math.MaxUint64, rng.Uint64N(100000)}
		f.SetUint(ns[rng.IntN(len(ns))] & (math.MaxUint64 >> (64 - 8*f.Type().Size())))
	case reflect.Slice:
		n := rng.IntN(40)
		if rng.IntN(8) == 0 {
			n = rng.IntN(700)
		}
		s := reflect.MakeSlice(f.Type(), n, n)
		for j := range n {
			genValue(rng, s.Index(j), depth+1)
		}
		f.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(f.Type())
		for range rng.IntN(40) {
			k := reflect.New(f.Type().Key()).Elem()
			k.SetString(genKey(rng))
			e := reflect.New(f.Type().Elem()).Elem()
			genValue(rng, e, depth+1)
			m.SetMapIndex(k, e)
		}
		f.Set(m)
	case reflect.Struct:
		for j := range f.NumField() {
			if f.Type().Field(j).IsExported() {
				genValue(rng, f.Field(j), depth+1)
			}
		}
	}
}

// genString draws from every escape class: plain text, quotes and
// backslashes, control characters (those with a short escape and those
// without), DEL, multi-byte UTF-8, U+FFFD itself, U+2028, bytes that are
// not UTF-8 and truncated sequences, and long strings that hit the caps.
func genString(rng *rand.Rand) string {
	pieces := []string{"a", "INBOX", "x y", "\"", "\\", "\n", "\r", "\t", "\x00", "\x01", "\x1f", "\x7f",
		"é", "€", "😀", "\ufffd", "\u2028", "ſ", "K", "\xff", "\xfe", "\xc3", "\xe2\x82", "\xf0\x9f\x98", "<>&", "}", "{", ",", ":", "[", "]", " "}
	var b strings.Builder
	n := rng.IntN(12)
	if rng.IntN(30) == 0 {
		n = rng.IntN(1200)
	}
	for range n {
		b.WriteString(pieces[rng.IntN(len(pieces))])
	}
	return b.String()
}

// genKey draws map keys from small alphabets and fold orbits, so that
// keys that a reader takes for one are frequent.
func genKey(rng *rand.Rand) string {
	pieces := []string{"s", "S", "ſ", "k", "K", "K", "\xff", "\ufffd", "a", "\"", "\x01"}
	var b strings.Builder
	for range 1 + rng.IntN(3) {
		b.WriteString(pieces[rng.IntN(len(pieces))])
	}
	if rng.IntN(20) == 0 {
		b.WriteString(strings.Repeat("long", rng.IntN(400)))
	}
	return b.String()
}

func genAny(rng *rand.Rand, depth int) any {
	k := rng.IntN(9)
	if depth > 3 {
		k = rng.IntN(5)
	}
	switch k {
	case 0:
		return genString(rng)
	case 1:
		return rng.Float64() * 1e6
	case 2:
		return rng.IntN(2) == 0
	case 3:
		return nil
	case 4:
		if rng.IntN(40) == 0 {
			return math.NaN() // encoding/json refuses it: annotations_error
		}
		return rng.Int64()
	case 5, 6:
		m := map[string]any{}
		for range rng.IntN(6) {
			m[genKey(rng)] = genAny(rng, depth+1)
		}
		return m
	default:
		l := make([]any, rng.IntN(5))
		for i := range l {
			l[i] = genAny(rng, depth+1)
		}
		return l
	}
}

func genSet(rng *rand.Rand) string {
	if rng.IntN(5) == 0 {
		return genString(rng)
	}
	var b strings.Builder
	for i := range 1 + rng.IntN(300) {
		if i > 0 {
			b.WriteByte(',')
		}
		num := func() string {
			switch rng.IntN(6) {
			case 0:
				return "*"
			case 1:
				return "4294967295"
			default:
				return fmt.Sprint(1 + rng.IntN(5000))
			}
		}
		switch rng.IntN(4) {
		case 0:
			b.WriteString(num())
		case 1:
			b.WriteString("$")
		default:
			b.WriteString(num() + ":" + num())
		}
	}
	return b.String()
}

func genTime(rng *rand.Rand) time.Time {
	switch rng.IntN(8) {
	case 0:
		return time.Time{}
	case 1:
		return time.Date(2026, 12, 7, 13, 0, 0, 0, time.UTC)
	case 2:
		return time.Date(2026, 12, 7, 13, 0, 0, 120000000, time.FixedZone("x", 3600))
	case 3:
		return time.Date(1+rng.IntN(12000), 1, 1, 0, 0, 0, 1, time.UTC)
	case 4:
		return time.Date(-rng.IntN(100), 1, 1, 0, 0, 0, 0, time.UTC)
	default:
		return time.Unix(rng.Int64N(1<<35), rng.Int64N(1e9)).In(time.Local)
	}
}

func genAddr(rng *rand.Rand) netip.Addr {
	switch rng.IntN(5) {
	case 0:
		return netip.Addr{}
	case 1:
		return netip.AddrFrom4([4]byte{byte(rng.IntN(256)), 0, 2, 7})
	case 2:
		return netip.MustParseAddr("::ffff:192.0.2.1")
	case 3:
		return netip.MustParseAddr("fe80::1").WithZone(genString(rng))
	default:
		var a [16]byte
		for i := range a {
			a[i] = byte(rng.IntN(256))
		}
		return netip.AddrFrom16(a)
	}
}

// Millis writes what Float writes for float64(us)/1000: at every
// magnitude, both signs, the ends of its exact range and past them, next
// to powers of ten and with every count of trailing zeros.
func TestMillisMatchesFloat(t *testing.T) {
	check := func(us int64) {
		var a, b jsonLine
		a.Millis("d", us)
		b.Float("d", float64(us)/1000)
		if !bytes.Equal(a.b, b.b) {
			t.Fatalf("%d µs: Millis %q, Float %q", us, a.b, b.b)
		}
	}
	for _, us := range []int64{0, 1, 10, 100, 999, 1000, 1001, 1500, 1e15 - 1, 1e15, 1e15 + 1, 1<<53 - 1, 1 << 53, math.MaxInt64, math.MinInt64} {
		check(us)
		check(-us)
	}
	for p := int64(1); p < 1e18; p *= 10 {
		for d := int64(-3); d <= 3; d++ {
			check(p + d)
			check(-p - d)
		}
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 4))
	for range 1000000 {
		us := rng.Int64N(int64(math.Pow10(rng.IntN(19))) + 1)
		if rng.IntN(3) == 0 {
			us -= us % int64(math.Pow10(rng.IntN(4)))
		}
		if rng.IntN(2) == 0 {
			us = -us
		}
		check(us)
	}
}
