package archtest

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestArchitectureDocuments keeps the repository's map of itself true:
// ARCHITECTURE.md's code map (§3) and README's Layout table name every
// package of the module and no other; no file cites the team's design or
// style notes, which live outside the repository; and every
// "ARCHITECTURE.md §n" a file cites is a section of ARCHITECTURE.md.
func TestArchitectureDocuments(t *testing.T) {
	root := moduleRoot(t)
	pkgs := modulePackages(t)
	arch := readFile(t, filepath.Join(root, "ARCHITECTURE.md"))
	readme := readFile(t, filepath.Join(root, "README.md"))

	missing, stale := compareLists(codeMap(arch), pkgs)
	for _, p := range missing {
		t.Errorf("ARCHITECTURE.md §3 lacks package %s: add a \"### `%s`\" paragraph (what it owns, its key types, what it must not import)", p, p)
	}
	for _, p := range stale {
		t.Errorf("ARCHITECTURE.md §3 describes %s, which is not a package of the module", p)
	}
	missing, stale = compareLists(layoutTable(readme), pkgs)
	for _, p := range missing {
		t.Errorf("README.md's Layout table lacks package %s: add a \"| `%s` | ... |\" row", p, p)
	}
	for _, p := range stale {
		t.Errorf("README.md's Layout table lists %s, which is not a package of the module", p)
	}

	sections := sectionNumbers(arch)
	if len(sections) == 0 {
		t.Fatal("ARCHITECTURE.md has no \"## §n Name\" sections")
	}
	defined := make(map[string]bool) // the module's tests, benchmarks and fuzz targets
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".git") || d.Name() == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.IndexByte(b[:min(len(b), 8000)], 0) >= 0 {
			return nil // binary
		}
		rel, _ := filepath.Rel(root, path)
		if strings.HasSuffix(path, "_test.go") {
			for _, m := range testFunc.FindAllSubmatch(b, -1) {
				defined[string(m[1])] = true
			}
		}
		for _, c := range outsideCitations(b) {
			t.Errorf("%s:%d cites %q, a note outside the repository: cite ARCHITECTURE.md §n or an RFC section", rel, c.line, c.text)
		}
		for _, c := range architectureCitations(b) {
			if !sections[c.section] {
				t.Errorf("%s:%d cites ARCHITECTURE.md §%d, which does not exist", rel, c.line, c.section)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// What proves an invariant must exist to prove it.
	for _, name := range citedTests(arch) {
		if !defined[name] {
			t.Errorf("ARCHITECTURE.md names %s, which is no test, benchmark or fuzz target of the module", name)
		}
	}
}

// TestDocumentChecksCatch feeds the checks of TestArchitectureDocuments
// what they must refuse, so that a check that passes everything fails here.
func TestDocumentChecksCatch(t *testing.T) {
	arch := "# x\n\n## §1 One\n\n## §3 Code map\n\n### `proxy`\ntext\n\n### `gone`\ntext\n\n## §4 Next\n\n### `notinmap`\n"
	missing, stale := compareLists(codeMap(arch), []string{"proxy", "audit"})
	if !slices.Equal(missing, []string{"audit"}) || !slices.Equal(stale, []string{"gone"}) {
		t.Errorf("code map: missing %q stale %q", missing, stale)
	}
	readme := "# r\n\n## Layout\n\n| package | what |\n|---|---|\n| `proxy` | p |\n| `old` | o |\n\nText `audit`.\n\n## Next\n| `audit` | a |\n"
	missing, stale = compareLists(layoutTable(readme), []string{"proxy", "audit"})
	if !slices.Equal(missing, []string{"audit"}) || !slices.Equal(stale, []string{"old"}) {
		t.Errorf("layout: missing %q stale %q", missing, stale)
	}
	secs := sectionNumbers(arch)
	if !secs[1] || !secs[3] || !secs[4] || secs[2] {
		t.Errorf("sections %v", secs)
	}
	design, style := "DESIGN", "STYLE"
	src := []byte("// ok (RFC 9051 §6.2.3)\n// bad (" + design + " §3a)\n# bad " + design + ".md §2\nsee ../shared/" + design + ".md\n// (" + design + "\n// §5, split)\n// bad (" + style + ".md)\n// bad " + style + " §2\n// ok: a STYLE attribute\n")
	var lines []int
	for _, c := range outsideCitations(src) {
		lines = append(lines, c.line)
	}
	if !slices.Equal(lines, []int{2, 3, 4, 5, 7, 8}) {
		t.Errorf("outside citations on lines %v, want [2 3 4 5 7 8]", lines)
	}
	if got := citedTests("Proved by: `TestA`, `FuzzB` (`BenchmarkC`), `TestD.run`, `Tested`, TestE.\n"); !slices.Equal(got, []string{"TestA", "FuzzB", "BenchmarkC"}) {
		t.Errorf("cited tests %q", got)
	}
	if got := testFunc.FindAllSubmatch([]byte("func TestA(t *testing.T) {}\nfunc (x) TestB() {}\nfunc FuzzC(f *testing.F) {}\n"), -1); len(got) != 2 || string(got[1][1]) != "FuzzC" {
		t.Errorf("test functions %q", got)
	}
	cites := architectureCitations([]byte("a\n// (ARCHITECTURE.md §12) and ARCHITECTURE.md, §5\nARCHITECTURE.md alone\n"))
	if len(cites) != 2 || cites[0].section != 12 || cites[1].section != 5 || cites[0].line != 2 {
		t.Errorf("architecture citations %+v", cites)
	}
}

// moduleRoot is the directory of the module's go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// modulePackages lists the module's packages relative to the module path.
func modulePackages(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("go", "list", module+"/...").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	var pkgs []string
	for _, p := range strings.Fields(string(out)) {
		if rel, ok := strings.CutPrefix(p, module+"/"); ok {
			pkgs = append(pkgs, rel)
		}
	}
	if len(pkgs) == 0 {
		t.Fatal("go list found no packages")
	}
	return pkgs
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// compareLists returns the packages missing from listed and the entries
// of listed that are no package.
func compareLists(listed, pkgs []string) (missing, stale []string) {
	for _, p := range pkgs {
		if !slices.Contains(listed, p) {
			missing = append(missing, p)
		}
	}
	for _, l := range listed {
		if !slices.Contains(pkgs, l) {
			stale = append(stale, l)
		}
	}
	return missing, stale
}

var (
	sectionHeading = regexp.MustCompile(`(?m)^## §(\d+) \S`)
	packageHeading = regexp.MustCompile("(?m)^### `([^`]+)`\\s*$")
	layoutRow      = regexp.MustCompile("(?m)^\\| `([^`]+)` \\|")
	// A citation of the team's design or style notes, which are not in
	// the repository: the file name, or the note's name before a section
	// sign.
	outsideCitation = regexp.MustCompile(`(DESIGN|STYLE)(\.md\b|[,\s/#*]*§)`)
	archCitation    = regexp.MustCompile(`ARCHITECTURE\.md,? §(\d+)`)
	citedTest       = regexp.MustCompile("`((?:Test|Benchmark|Fuzz)[A-Z][A-Za-z0-9_]*)`")
	testFunc        = regexp.MustCompile(`(?m)^func ((?:Test|Benchmark|Fuzz)[A-Z][A-Za-z0-9_]*)\(`)
)

// citedTests returns the tests, benchmarks and fuzz targets a document
// names in backquotes.
func citedTests(doc string) []string {
	var out []string
	for _, m := range citedTest.FindAllStringSubmatch(doc, -1) {
		out = append(out, m[1])
	}
	return out
}

// codeMap returns the packages §3 of ARCHITECTURE.md describes, one
// "### `path`" heading each.
func codeMap(arch string) []string {
	var out []string
	for _, m := range packageHeading.FindAllStringSubmatch(section(arch, 3), -1) {
		out = append(out, m[1])
	}
	return out
}

// section returns the text of "## §n ..." up to the next "## " heading.
func section(doc string, n int) string {
	head := regexp.MustCompile(`(?m)^## §` + strconv.Itoa(n) + ` .*$`)
	loc := head.FindStringIndex(doc)
	if loc == nil {
		return ""
	}
	rest := doc[loc[1]:]
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// layoutTable returns the first column of README's Layout table.
func layoutTable(readme string) []string {
	_, rest, ok := strings.Cut(readme, "\n## Layout\n")
	if !ok {
		return nil
	}
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	var out []string
	for _, m := range layoutRow.FindAllStringSubmatch(rest, -1) {
		out = append(out, m[1])
	}
	return out
}

// sectionNumbers returns the numbers of ARCHITECTURE.md's sections.
func sectionNumbers(arch string) map[int]bool {
	out := make(map[int]bool)
	for _, m := range sectionHeading.FindAllStringSubmatch(arch, -1) {
		n, _ := strconv.Atoi(m[1])
		out[n] = true
	}
	return out
}

type citation struct {
	line    int
	text    string
	section int
}

func outsideCitations(b []byte) []citation {
	var out []citation
	for _, loc := range outsideCitation.FindAllIndex(b, -1) {
		out = append(out, citation{line: lineOf(b, loc[0]), text: string(b[loc[0]:loc[1]])})
	}
	return out
}

func architectureCitations(b []byte) []citation {
	var out []citation
	for _, m := range archCitation.FindAllSubmatchIndex(b, -1) {
		n, _ := strconv.Atoi(string(b[m[2]:m[3]]))
		out = append(out, citation{line: lineOf(b, m[0]), text: string(b[m[0]:m[1]]), section: n})
	}
	return out
}

func lineOf(b []byte, off int) int { return bytes.Count(b[:off], []byte("\n")) + 1 }
