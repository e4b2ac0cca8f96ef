package difftest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"unicode/utf8"
)

// The generators: every spelling of a command the harness sends is made
// here, from a seed, so that a run is reproducible and a failure names the
// spelling that found it.

// litKind is a literal's form (RFC 9051 §4.3, RFC 7888, RFC 3516).
type litKind int

const (
	litSync  litKind = iota // {n}
	litPlus                 // {n+}
	lit8                    // ~{n}
	lit8Plus                // ~{n+}
)

func (k litKind) marker(n int) string {
	switch k {
	case litPlus:
		return fmt.Sprintf("{%d+}", n)
	case lit8:
		return fmt.Sprintf("~{%d}", n)
	case lit8Plus:
		return fmt.Sprintf("~{%d+}", n)
	}
	return fmt.Sprintf("{%d}", n)
}

func (k litKind) sync() bool { return k == litSync || k == lit8 }

// seg is a piece of a command: text, or a literal (its marker ends a line).
type seg struct {
	text string
	lit  bool
	kind litKind
}

// T is text, L a literal.
func T(s string) seg            { return seg{text: s} }
func L(s string, k litKind) seg { return seg{text: s, lit: true, kind: k} }

// Build turns a tag and segments ("tag" + segs + CRLF) into a command.
func Build(tag string, segs ...seg) Cmd {
	c := Cmd{Tag: tag}
	cur := tag
	for _, s := range segs {
		if !s.lit {
			cur += s.text
			continue
		}
		cur += s.kind.marker(len(s.text)) + "\r\n"
		c.Parts = append(c.Parts, Part{Data: []byte(cur), Cont: s.kind.sync()})
		cur = s.text
	}
	c.Parts = append(c.Parts, Part{Data: []byte(cur + "\r\n")})
	return c
}

// Line is Build of one line of text.
func Line(tag, text string) Cmd { return Build(tag, T(" "+text)) }

// Spelling is one way to write an argument.
type Spelling struct {
	Label string
	Segs  []seg
}

func sp(label string, segs ...seg) Spelling { return Spelling{Label: label, Segs: segs} }

// Quoted spells s as a quoted string, escaping only DQUOTE and "\".
func quotedSp(s string) Spelling { return sp("quoted "+Quote(s), T(Quote(s))) }

// Gen makes the spellings of one backend's harness run.
type Gen struct {
	B   *Backend
	rnd *rand.Rand
}

// NewGen returns a generator seeded with seed (and the backend's name, so
// that the backends get different samples of the large families).
func NewGen(b *Backend, seed uint64) *Gen {
	var h uint64
	for _, c := range b.Name {
		h = h*31 + uint64(c)
	}
	return &Gen{B: b, rnd: rand.New(rand.NewPCG(seed, h))}
}

// printable is every printable ASCII character, SP included.
var printable = func() []byte {
	var out []byte
	for c := byte(0x20); c < 0x7f; c++ {
		out = append(out, c)
	}
	return out
}()

// NameFamilies returns the spellings of a logical mailbox name, by family:
// "form" (atom, quoted, the four literal forms), "case", "delim", "utf7",
// "split" (a character a backend ends a word at, atom and quoted), "nil"
// are small and always used; "escape" (a backslash before every
// character of the name and before every printable character) and "char"
// (every printable character added) are large and sampled.
func (g *Gen) NameFamilies(logical string) map[string][]Spelling {
	w := g.B.Wire(logical)
	d := string(g.B.Delim)
	o := "/"
	if d == "/" {
		o = "."
	}
	f := map[string][]Spelling{}
	add := func(fam string, s ...Spelling) { f[fam] = append(f[fam], s...) }

	add("form",
		sp("atom "+w, T(w)), quotedSp(w),
		sp("literal {n} "+w, L(w, litSync)), sp("literal {n+} "+w, L(w, litPlus)),
		sp("literal8 ~{n} "+w, L(w, lit8)), sp("literal8 ~{n+} "+w, L(w, lit8Plus)))

	cases := []string{strings.ToLower(w), strings.ToUpper(w)}
	if len(w) >= 5 && strings.EqualFold(w[:5], "INBOX") {
		cases = append(cases, "inbox"+w[5:], "Inbox"+w[5:], "iNbOx"+w[5:])
	}
	for _, c := range cases {
		if c != w {
			add("case", quotedSp(c), sp("atom "+c, T(c)))
		}
	}

	delims := []string{d + w, w + d, w + d + d, w + d + ".", w + d + "..", "." + d + w, ".." + d + w,
		"INBOX" + d + ".." + d + w, "INBOX" + o + ".." + o + w, w + o, w + o + ".." + o + "x", w + d + d + "x"}
	if strings.Contains(w, d) {
		delims = append(delims, strings.Replace(w, d, d+d, 1), strings.Replace(w, d, d+"."+d, 1),
			strings.Replace(w, d, d+".."+d, 1), strings.ReplaceAll(w, d, o))
	}
	for _, x := range delims {
		add("delim", quotedSp(x))
	}

	// Modified UTF-7 (RFC 3501 §5.1.3) written wrongly, and written as
	// UTF-8.
	box := g.B.Box(logical)
	if !isASCII(box) {
		add("utf7", sp("quoted UTF-8 "+Quote(box), T(Quote(box))), sp("literal UTF-8 "+box, L(box, litSync)))
	}
	first := strings.LastIndex(w, d) + 1 // the last level's first character
	if first < len(w) && w[first] != '&' {
		// The character encoded although printable: "&AEw-egal".
		add("utf7", quotedSp(w[:first]+"&"+b64.EncodeToString([]byte{0, w[first]})+"-"+w[first+1:]))
	}
	if i := strings.Index(w, "&"); i >= 0 && i+1 < len(w) && w[i+1] != '-' {
		j := i + strings.IndexByte(w[i:], '-')
		inner := w[i+1 : j]
		add("utf7",
			quotedSp(w[:j]+w[j+1:]),                        // unterminated shift
			quotedSp(w[:i+1]+bumpLast(inner)+w[j:]),        // non-zero padding bits
			quotedSp(w[:i+1]+inner[:len(inner)-1]+w[j:]),   // odd length
			quotedSp(w[:j+1]+"&AHI-"+w[j+1:]),              // a second shift right after (and 'r' encoded)
			quotedSp(w[:j+1]+"&"+inner+"-"+w[j+1:]),        // the shift again right after: "-&" joins two runs
			quotedSp(w[:i]+"&-"+w[i+1:]),                   // "&-" for "&"
			quotedSp(w[:i+1]+strings.ToLower(inner)+w[j:]), // other base64
		)
	}
	add("utf7", quotedSp(w+"&"), quotedSp(w+"&-"), quotedSp(w+"&2D0AQQ-"), quotedSp(w+"&,,,-"), quotedSp(w+"&AAA-"))

	// The characters a backend ends an unquoted word at (Courier: "[",
	// "]", "}", "~"): an atom with one is refused, quoted it is a name.
	for _, x := range "[]}~" {
		add("split", sp(fmt.Sprintf("atom %s%c", w, x), T(w+string(x))), sp(fmt.Sprintf("atom %c%s", x, w), T(string(x)+w)),
			quotedSp(w+string(x)), quotedSp(string(x)+w))
	}

	add("nil", sp("atom NIL", T("NIL")), sp("atom nil", T("nil")), quotedSp("NIL"), quotedSp(""), sp("literal {0}", L("", litSync)))

	for i := 0; i < len(w); i++ {
		add("escape", sp(fmt.Sprintf(`quoted with \ before %q`, w[i]), T(`"`+escapeQ(w[:i])+`\`+string(w[i])+escapeQ(w[i+1:])+`"`)))
	}
	for _, x := range printable {
		k := len(w) - 1
		add("escape", sp(fmt.Sprintf(`quoted with \%c inside`, x), T(`"`+escapeQ(w[:k])+`\`+string(x)+escapeQ(w[k:])+`"`)))
	}
	for _, x := range printable {
		add("char",
			quotedSp(w+string(x)), quotedSp(string(x)+w),
			sp(fmt.Sprintf("atom %s%c", w, x), T(w+string(x))))
	}
	return f
}

// escapeQ escapes DQUOTE and "\" for the inside of a quoted string.
func escapeQ(s string) string { return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) }

// bumpLast changes the last base64 character of a shift so that its
// unused bits are not zero.
func bumpLast(s string) string {
	if s == "" {
		return s
	}
	const alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"
	i := strings.IndexByte(alpha, s[len(s)-1])
	return s[:len(s)-1] + string(alpha[(i+1)%64])
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// NameSpellings returns every spelling of a logical name.
func (g *Gen) NameSpellings(logical string) []Spelling {
	f := g.NameFamilies(logical)
	var out []Spelling
	for _, fam := range []string{"form", "case", "delim", "utf7", "split", "nil", "escape", "char"} {
		out = append(out, f[fam]...)
	}
	return out
}

// Pick draws n steps from cases (all of them for n = 0), in turn from
// each case, so that every case gets its share; which steps of a case,
// the seed decides.
func (g *Gen) Pick(cases []*Case, n int) []*Step {
	var queues [][]*Step
	for _, c := range cases {
		q := slices.Clone(c.Steps)
		g.rnd.Shuffle(len(q), func(i, j int) { q[i], q[j] = q[j], q[i] })
		queues = append(queues, q)
	}
	var out []*Step
	for more := true; more && (n == 0 || len(out) < n); {
		more = false
		for i, q := range queues {
			if len(q) == 0 || (n > 0 && len(out) == n) {
				continue
			}
			out = append(out, q[0])
			queues[i], more = q[1:], true
		}
	}
	return out
}
