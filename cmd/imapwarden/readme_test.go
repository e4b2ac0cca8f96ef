package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// The README's configuration reference is the example file, verbatim.
func TestReadmeConfigReference(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "<!-- example.yaml begin -->\n```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```\n<!-- example.yaml end -->")
	if !ok || !ok2 {
		t.Fatal("README lacks the example.yaml block")
	}
	if block != string(example) {
		t.Error("README's configuration block differs from testdata/example.yaml; copy the file into it")
	}
}

// TestReadmeExamplesLoad puts each "# e.g." value of the configuration
// reference in place of its key's value and builds the result, with the
// repository's policies/ for /etc/imapwarden/policies: an example that
// does not load (a policy directory without its framework, say) fails.
func TestReadmeExamplesLoad(t *testing.T) {
	path := exampleConfig(t)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	policies, err := filepath.Abs("../../policies")
	if err != nil {
		t.Fatal(err)
	}
	logDir := t.TempDir()
	etcFile := regexp.MustCompile(`/etc/imapwarden/[^\s,}\]"]+`)
	eg := regexp.MustCompile(`^(\s*-?\s*[a-z0-9_]+:) (\S.*?)\s+# e\.g\. (.+)$`)
	lines := strings.Split(string(data), "\n")
	n := 0
	for i, l := range lines {
		m := eg.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		n++
		v := strings.ReplaceAll(m[3], "/etc/imapwarden/policies", policies)
		v = strings.ReplaceAll(v, "/var/log/imapwarden", logDir)
		// Other files an example names (tokens, keys) are made, with
		// content good for any of them.
		v = etcFile.ReplaceAllStringFunc(v, func(f string) string {
			p := filepath.Join(logDir, filepath.Base(f))
			if err := os.WriteFile(p, []byte("readme-example-secret-0123456789abcdef\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		})
		lines[i] = m[1] + " " + v
		t.Logf("line %d: %s", i+1, lines[i])
	}
	if n < 4 {
		t.Fatalf("found %d examples, want at least 4", n)
	}
	cfg, err := parseConfig([]byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := check(cfg, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Policy.Dirs) != 2 || !cfg.Policy.Dirs[1].Shadow || cfg.Audit.Path == "" {
		t.Fatalf("examples not applied: policy %+v audit %+v", cfg.Policy, cfg.Audit)
	}
}

// TestReadmeQuickModeExample builds the README's quick-mode command line
// as serve would (its files made in a temporary directory): the flags
// parse and the configuration they describe checks.
func TestReadmeQuickModeExample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```sh\n(imapwarden serve --imaps .*?)\n```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README lacks the quick-mode example")
	}
	dir := t.TempDir()
	tlsFiles(t, dir)
	line := strings.ReplaceAll(string(m[1]), "\\\n", " ")
	line = strings.ReplaceAll(line, "/etc/imapwarden/tls/", dir+"/")
	line = strings.ReplaceAll(line, "/etc/imapwarden/backend-ca.pem", filepath.Join(dir, "backend-ca.pem"))
	var args []string
	for _, w := range regexp.MustCompile(`'[^']*'|\S+`).FindAllString(line, -1) {
		args = append(args, strings.Trim(w, "'"))
	}
	var f serveFlags
	if err := newServeFlags(&f).Parse(args[2:]); err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	cfg, err := f.quick.config()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := check(cfg, zap.NewNop()); err != nil {
		t.Fatalf("the README's quick-mode example: %v", err)
	}
	if !cfg.Backends["backend"].SendID || len(cfg.Listeners) != 2 {
		t.Errorf("parsed %+v", cfg)
	}
}
