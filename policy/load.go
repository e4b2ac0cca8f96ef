package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"

	"github.com/imapwarden/imapwarden/internal/filemode"
	"github.com/imapwarden/imapwarden/policies"
)

// BuiltinFramework names the framework module built into the binary when
// it stands in for a missing file (errors and revisions show it).
const BuiltinFramework = "(built in)/" + policies.FrameworkFile

// loadPath reads the Rego modules (tests too with tests) and data
// documents under path, a directory or a file.
//
// policies/ is one loadable unit: a directory whose modules add to package
// imapwarden without defining data.imapwarden.decision is one policy of
// such a tree (say policies/legal_hold). It gets the framework, imapwarden.rego, from its
// parent directory, or the one built in when the parent has none, and its
// data documents are placed under data.<directory name>, where they are
// when the whole tree is loaded. So any subdirectory can be loaded, tested
// and trialled in shadow mode alone, without a copy of the framework.
func loadPath(path string, tests bool) (*loader.Result, error) {
	skip := skipFile
	if tests {
		skip = skipHidden
	}
	res, err := loader.NewFileLoader().
		WithRegoVersion(ast.RegoV1).
		WithProcessAnnotation(true).
		Filtered([]string{path}, skip)
	if err != nil {
		return nil, loadError(path, err)
	}
	if !needsFramework(res.Modules) {
		return res, nil
	}
	name, src, err := framework(path)
	if err != nil {
		return nil, loadError(path, err)
	}
	m, err := ast.ParseModuleWithOpts(name, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
	if err != nil {
		return nil, loadError(path, err)
	}
	res.Modules[name] = &loader.RegoFile{Name: name, Parsed: m, Raw: src}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		res.Documents = map[string]any{filepath.Base(filepath.Clean(path)): res.Documents}
	}
	return res, nil
}

// frameworkPath is where a policy directory's framework file would be: in
// its parent. The engine watches it with the directory.
func frameworkPath(path string) string {
	return filepath.Join(filepath.Dir(filepath.Clean(path)), policies.FrameworkFile)
}

// framework returns the framework for a policy directory: the parent's
// imapwarden.rego (an operator may have edited it), else the built-in one.
func framework(path string) (name string, src []byte, err error) {
	fp := frameworkPath(path)
	src, err = os.ReadFile(fp)
	switch {
	case err == nil:
		return fp, src, nil
	case errors.Is(err, fs.ErrNotExist):
		return BuiltinFramework, bytes.Clone(policies.Framework), nil
	}
	return "", nil, err
}

var (
	frameworkPackage = ast.MustParseRef("data.imapwarden")
	decisionRule     = ast.Ref{ast.VarTerm("decision")}
)

// needsFramework reports whether modules are a policy without the
// framework: some add to package imapwarden, none defines its decision.
// Modules in other packages only never get it, so that a misspelt package
// stays an error ("no rule defines data.imapwarden.decision") rather than a
// policy that allows everything.
func needsFramework(modules map[string]*loader.RegoFile) bool {
	policy := false
	for _, f := range modules {
		if !f.Parsed.Package.Path.Equal(frameworkPackage) {
			continue
		}
		policy = true
		for _, r := range f.Parsed.Rules {
			if r.Head.Ref().Equal(decisionRule) {
				return false
			}
		}
	}
	return policy
}

// skipHidden leaves hidden files out (editors and version control keep
// theirs in policy directories).
func skipHidden(_ string, info fs.FileInfo, depth int) bool {
	return depth > 0 && len(info.Name()) > 0 && info.Name()[0] == '.'
}

// trustedTree refuses a policy directory when other users may change it,
// a file the engine reads from it, or the framework in its parent
// (filemode.Trusted): the engine polls them and applies what it reads.
func trustedTree(dir string) error {
	var errs []error
	check := func(path string) {
		if err := filemode.Trusted(path); err != nil {
			errs = append(errs, fmt.Errorf("policy: %w", err))
		}
	}
	_ = filepath.WalkDir(dir, func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			return nil // the loader reports what cannot be read
		}
		info, err := de.Info()
		if err != nil {
			return nil
		}
		if path != dir && skipFile(path, info, 1) {
			if de.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		check(path)
		return nil
	})
	check(frameworkPath(dir))
	return errors.Join(errs...)
}
