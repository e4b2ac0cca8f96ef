package deploytest

import (
	"os"
	"path/filepath"
	"testing"
)

// TestShellScripts runs shellcheck on the package's maintainer scripts,
// deploy/build-deb.sh and .ci/install-deploy-tools.sh.
func TestShellScripts(t *testing.T) {
	shellcheck := needCommand(t, "shellcheck", "shellcheck")
	scripts := []string{"deploy/build-deb.sh", "deploy/deb/postinst", "deploy/deb/prerm", "deploy/deb/postrm", ".ci/install-deploy-tools.sh"}
	for _, s := range scripts {
		if fi, err := os.Stat(filepath.Join(repoRoot, s)); err != nil {
			t.Error(err)
		} else if fi.Mode()&0o111 == 0 {
			t.Errorf("%s is not executable", s)
		}
	}
	out, errOut, err := tryCmd(repoRoot, nil, shellcheck, scripts...)
	if err != nil {
		t.Errorf("shellcheck: %v\n%s%s", err, out, errOut)
	}
}
