package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// requireShellTool finds a program the test runs; CI installs it (.ci/run).
func requireShellTool(t *testing.T, name string) string {
	t.Helper()
	return testenv.NeedTool(t, name)
}

// TestBashCompletion runs the generated script in bash as bash would on
// TAB: commands, flags of a command, subcommands, file names after a flag
// that takes a file.
func TestBashCompletion(t *testing.T) {
	bash := requireShellTool(t, "bash")
	code, script, _ := runCLI("completion", "bash")
	if code != 0 {
		t.Fatalf("completion bash: %d", code)
	}
	dir := t.TempDir()
	path := filepath.Join(t.TempDir(), "imapwarden.bash")
	os.WriteFile(path, []byte(script), 0o644)
	os.WriteFile(filepath.Join(dir, "imapwarden.yaml"), nil, 0o644)
	complete := func(words ...string) string {
		t.Helper()
		q := make([]string, len(words))
		for i, w := range words {
			q[i] = "'" + w + "'"
		}
		cmd := exec.Command(bash, "-c", `source "$0"; COMP_WORDS=(`+strings.Join(q, " ")+`); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _imapwarden; printf '%s\n' "${COMPREPLY[@]}"`, path)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return strings.Join(strings.Fields(string(out)), " ")
	}
	for _, tc := range []struct {
		words []string
		want  string
	}{
		{[]string{"imapwarden", "se"}, "serve"},
		{[]string{"imapwarden", "co"}, "config completion"},
		{[]string{"imapwarden", "serve", "--adm"}, "--admin"},
		{[]string{"imapwarden", "serve", "--log-f"}, "--log-format"},
		{[]string{"imapwarden", "validate", "-c", "imapw"}, "imapwarden.yaml"},
		{[]string{"imapwarden", "audit", "v"}, "verify"},
		{[]string{"imapwarden", "policy", ""}, "test eval"},
		{[]string{"imapwarden", "completion", "z"}, "zsh"},
		{[]string{"imapwarden", "help", "de"}, "demo"},
	} {
		if got := complete(tc.words...); got != tc.want {
			t.Errorf("%q: completes to %q, want %q", tc.words, got, tc.want)
		}
	}
}

// TestZshCompletion checks the zsh script's syntax and that it names every
// command and serve's flags.
func TestZshCompletion(t *testing.T) {
	zsh := requireShellTool(t, "zsh")
	code, script, _ := runCLI("completion", "zsh")
	if code != 0 {
		t.Fatalf("completion zsh: %d", code)
	}
	path := filepath.Join(t.TempDir(), "_imapwarden")
	os.WriteFile(path, []byte(script), 0o644)
	if out, err := exec.Command(zsh, "-n", path).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
	for _, c := range commands {
		if !strings.Contains(script, "'"+c.name+":") {
			t.Errorf("zsh completion lacks the command %s", c.name)
		}
	}
	for _, f := range flagsOf("serve") {
		if !strings.Contains(script, "'"+dash(f.name)+"[") {
			t.Errorf("zsh completion lacks serve %s", dash(f.name))
		}
	}
}

// TestManPage formats the generated page with groff, warnings on, and
// checks that it documents every command, serve's flags and the exit codes.
func TestManPage(t *testing.T) {
	groff := requireShellTool(t, "groff")
	code, page, _ := runCLI("man")
	if code != 0 {
		t.Fatalf("man: %d", code)
	}
	cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z")
	cmd.Stdin = strings.NewReader(page)
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("groff -ww: %v\n%s", err, out)
	}
	cmd = exec.Command(groff, "-man", "-Tascii")
	cmd.Stdin = strings.NewReader(page)
	text, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range commands {
		if !strings.Contains(page, ".SS "+c.name+"\n") {
			t.Errorf("the man page lacks the command %s", c.name)
		}
	}
	for _, f := range flagsOf("serve") {
		if !strings.Contains(page, ".B "+strings.ReplaceAll(dash(f.name), "-", `\-`)+"\n") && !strings.Contains(page, ".B "+strings.ReplaceAll(dash(f.name), "-", `\-`)+` " "`) {
			t.Errorf("the man page lacks serve %s", dash(f.name))
		}
	}
	if !strings.Contains(string(text), "imapwarden serve -c FILE") || !strings.Contains(page, ".SH EXIT STATUS") || !strings.Contains(page, "a usage error") {
		t.Error("the man page lacks the exit status")
	}
}

// TestEveryCommandDocumented: a command with flags has them in
// commandFlags, so completion and the man page know them.
func TestEveryCommandDocumented(t *testing.T) {
	for _, c := range commands {
		var b strings.Builder
		c.usage(&b)
		if strings.Contains(b.String(), "\nFlags:\n") && commandFlags[c.name] == nil {
			t.Errorf("%s has flags but no entry in commandFlags", c.name)
		}
	}
}

// TestExitCodes: 2 for every usage error (unknown command, flag or
// subcommand, missing or extra argument), 1 for every runtime error (a
// file that cannot be read, a configuration that does not check), 0 for
// help, for every command.
func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("listeners: nope\n"), 0o644)
	missing := filepath.Join(dir, "missing")
	for _, tc := range []struct {
		code int
		args []string
	}{
		{2, nil},
		{2, []string{"nope"}},
		{0, []string{"--help"}},
		{0, []string{"--version"}},
		{2, []string{"help", "nope"}},
		{2, []string{"help", "a", "b"}},
		{2, []string{"serve"}},
		{2, []string{"serve", "--bogus"}},
		{2, []string{"serve", "extra"}},
		{2, []string{"serve", "--backend", "pop3://h:110", "--imaps", ":993", "--cert", "c", "--key", "k"}},
		{1, []string{"serve", "-c", missing}},
		{1, []string{"serve", "-c", bad}},
		{2, []string{"validate"}},
		{2, []string{"validate", "-c"}},
		{1, []string{"validate", "-c", missing}},
		{1, []string{"validate", "-c", bad}},
		{2, []string{"demo", "--bogus"}},
		{2, []string{"demo", "--log-level", "loud"}},
		{2, []string{"config", "--bogus"}},
		{2, []string{"audit"}},
		{2, []string{"audit", "nope"}},
		{2, []string{"audit", "query", "--bogus"}},
		{2, []string{"audit", "verify", "--bogus"}},
		{2, []string{"policy"}},
		{2, []string{"policy", "nope"}},
		{2, []string{"policy", "test", "--bogus"}},
		{2, []string{"policy", "eval"}},
		{1, []string{"policy", "test", missing}},
		{1, []string{"policy", "eval", "-input", missing}},
		{0, []string{"version"}},
		{2, []string{"version", "extra"}},
		{2, []string{"completion"}},
		{2, []string{"completion", "fish"}},
		{0, []string{"completion", "-h"}},
		{2, []string{"man", "extra"}},
		{0, []string{"man", "-h"}},
	} {
		if code, out, errOut := runCLI(tc.args...); code != tc.code {
			t.Errorf("imapwarden %q: exit %d, want %d\n%s%s", tc.args, code, tc.code, out, errOut)
		}
	}
}
