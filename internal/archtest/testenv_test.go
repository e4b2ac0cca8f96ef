package archtest

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// ciRead matches a test reading the CI switch itself, in either spelling
// (== "true" or strconv.ParseBool), instead of asking internal/testenv.
var ciRead = regexp.MustCompile(`Getenv\("CI"\)|LookupEnv\("CI"\)`)

// TestCISwitchOnlyInTestenv keeps one reading of CI (issue 13): a test
// comparing it with "true" skips under CI=1, hiding a missing tool.
func TestCISwitchOnlyInTestenv(t *testing.T) {
	root := moduleRoot(t)
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".git") || d.Name() == "node_modules" || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		if !strings.HasSuffix(path, ".go") || strings.HasPrefix(rel, filepath.Join("internal", "testenv")+string(filepath.Separator)) || strings.HasPrefix(rel, filepath.Join("internal", "archtest")+string(filepath.Separator)) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		checked++
		if loc := ciRead.FindIndex(b); loc != nil {
			t.Errorf("%s:%d reads CI itself: use testenv.CI, NeedTool or Require", rel, lineOf(b, loc[0]))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked == 0 {
		t.Fatal("no Go file checked")
	}
}
