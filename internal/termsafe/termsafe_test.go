package termsafe

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestString(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"alice@example.com", "alice@example.com"},
		{"Grüße/日本語 \uFFFD", "Grüße/日本語 \uFFFD"}, // printable Unicode and a real U+FFFD stay
		{`back\slash "q"`, `back\slash "q"`},
		{"x\x1b[2K\x1b[1G", `x\x1b[2K\x1b[1G`},
		{"a\tb\nc\rd\x00e\x7f", `a\tb\nc\rd\x00e\x7f`},
		{"csi\u009b31m nel\u0085", `csi\u009b31m nel\u0085`},
		{"ls\u2028ps\u2029", `ls\u2028ps\u2029`},
		{"evil\u202egpj.exe \u2066i\u2069 \u200f\u061c", `evil\u202egpj.exe \u2066i\u2069 \u200f\u061c`},
		{"bad\xff\xc2utf8\xe2\x80", `bad\xff\xc2utf8\xe2\x80`},
		{"\xc2\x9b", `\u009b`}, // C1 CSI encoded as UTF-8
		// Format and default-ignorable characters: "alice" to a reader.
		{"alice\u00ad \u200b\ufeff \u3164 \u034f \ufe0f", `alice\u00ad \u200b\ufeff \u3164 \u034f \ufe0f`},
		{"alice\U000e0020\U000e007f", `alice\U000e0020\U000e007f`},
	} {
		if got := String(c.in); got != c.want {
			t.Errorf("String(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestAppendText(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"{\n\t\"a\": 1\n}\n", "{\n\t\"a\": 1\n}\n"},
		{"msg\t{\"user\": \"x\u007fy\u009bz\u2028\u202e\"}\n", "msg\t{\"user\": \"x\\u007fy\\u009bz\\u2028\\u202e\"}\n"},
		{"a\rb\x1bc\xffd", `a\rb\u001bc\ufffdd`},
		{"\"alice\u00ad\U000e0020\"", `"alice\u00ad\udb40\udc20"`},
	} {
		if got := string(AppendText([]byte("pre:"), []byte(c.in))); got != "pre:"+c.want {
			t.Errorf("AppendText(%q) = %q, want %q", c.in, got, "pre:"+c.want)
		}
	}
}

// TestJSONKeepsValue: JSON from encoding/json, escaped, is still valid and
// decodes to the same value, with no raw character left to act on.
func TestJSONKeepsValue(t *testing.T) {
	v := map[string]string{"user": "x\x1b[2K\u009b\u007f\u2028\u202e\u0085é\u00ad\U000e0020\u3164", "ok": "plain"}
	b, err := json.MarshalIndent(v, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	out := AppendText(nil, b)
	var got map[string]string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("escaped JSON %q no longer valid: %v", out, err)
	}
	if got["user"] != v["user"] || got["ok"] != v["ok"] {
		t.Errorf("value changed: %q", got)
	}
	assertSafe(t, string(bytes.ReplaceAll(bytes.ReplaceAll(out, []byte("\n"), nil), []byte("\t"), nil)))
}

// assertSafe fails when s holds anything a terminal could act on.
func assertSafe(t *testing.T, s string) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Fatalf("invalid UTF-8 in %q", s)
	}
	for _, r := range s {
		if unsafeRune(r) {
			t.Fatalf("%U left raw in %q", r, s)
		}
	}
}

// TestEveryRune: every code point of the BMP and of plane 14 (tags,
// variation selectors) and every single byte comes out safe, and the safe
// ones unchanged.
func TestEveryRune(t *testing.T) {
	for r := rune(0); r < 0xe1000; r++ {
		if r >= 0xd800 && r < 0xe000 {
			continue
		}
		if r == 0x10000 {
			r = 0xe0000
		}
		s := "a" + string(r) + "b"
		got := String(s)
		assertSafe(t, got)
		if !unsafeRune(r) && got != s {
			t.Fatalf("String(%q) = %q, changed a safe character", s, got)
		}
		assertSafe(t, strings.NewReplacer("\t", "", "\n", "").Replace(string(AppendText(nil, []byte(s)))))
	}
	for b := 0; b < 256; b++ {
		assertSafe(t, String(string([]byte{byte(b)})))
	}
}

func FuzzString(f *testing.F) {
	f.Add("x\x1b[2K\x1b[1G2026-12-06 06:00:00  auth  root\x1b[8m")
	f.Add("\xc2\x9b\xe2\x80\xa8\xff")
	f.Fuzz(func(t *testing.T, s string) {
		got := String(s)
		assertSafe(t, got)
		if strings.ContainsAny(got, "\t\n\r") {
			t.Fatalf("layout character left in %q", got)
		}
		if clean(s, false) != (got == s) {
			t.Fatalf("fast path disagrees for %q", s)
		}
		txt := string(AppendText(nil, []byte(s)))
		assertSafe(t, strings.NewReplacer("\t", "", "\n", "").Replace(txt))
	})
}

func BenchmarkStringClean(b *testing.B) {
	s := "alice@example.com INBOX/Archive 2026"
	b.ReportAllocs()
	for b.Loop() {
		_ = String(s)
	}
}
