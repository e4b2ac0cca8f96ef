package deploytest

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined and
// comments removed.
type instruction struct {
	Cmd  string // upper case: FROM, RUN, ...
	Args string
	Line int
}

// stage is a FROM and the instructions after it.
type stage struct {
	Image    string // with build arguments substituted
	Name     string // AS name, or ""
	Platform string
	Body     []instruction
}

// parseDockerfile splits a Dockerfile into global ARGs and stages. It
// knows what this project's Dockerfile uses: comments, parser directives,
// backslash continuations and ${VAR} in FROM.
func parseDockerfile(text string) (args map[string]string, stages []stage, err error) {
	var ins []instruction
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue // comments and blank lines, also inside continuations
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if rest, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(rest)
			cur.WriteByte(' ')
			continue
		}
		cur.WriteString(trimmed)
		cmd, rest, _ := strings.Cut(cur.String(), " ")
		ins = append(ins, instruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(rest), Line: start})
		cur.Reset()
	}
	if cur.Len() > 0 {
		return nil, nil, errors.New("Dockerfile ends in a continuation")
	}

	args = map[string]string{}
	expand := func(s string) string {
		return os.Expand(s, func(k string) string { return args[k] })
	}
	for _, in := range ins {
		switch {
		case in.Cmd == "FROM":
			f := strings.Fields(in.Args)
			st := stage{}
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				if v, ok := strings.CutPrefix(f[0], "--platform="); ok {
					st.Platform = v
				}
				f = f[1:]
			}
			switch {
			case len(f) == 1:
			case len(f) == 3 && strings.EqualFold(f[1], "AS"):
				st.Name = f[2]
			default:
				return nil, nil, errors.New("line " + strconv.Itoa(in.Line) + ": cannot parse FROM " + in.Args)
			}
			st.Image = expand(f[0])
			stages = append(stages, st)
		case len(stages) == 0 && in.Cmd == "ARG":
			k, v, _ := strings.Cut(in.Args, "=")
			args[k] = v
		case len(stages) == 0:
			return nil, nil, errors.New("line " + strconv.Itoa(in.Line) + ": " + in.Cmd + " before FROM")
		default:
			stages[len(stages)-1].Body = append(stages[len(stages)-1].Body, in)
		}
	}
	return args, stages, nil
}

func (s *stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.Body {
		if in.Cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// jsonArgs decodes an exec-form (JSON array) argument list.
func jsonArgs(t *testing.T, in instruction) []string {
	t.Helper()
	var v []string
	if err := json.Unmarshal([]byte(in.Args), &v); err != nil {
		t.Errorf("line %d: %s %s is not in exec (JSON array) form: %v", in.Line, in.Cmd, in.Args, err)
	}
	return v
}

// imageTag splits an image reference into name, tag and digest.
func imageTag(ref string) (name, tag, digest string) {
	name, digest, _ = strings.Cut(ref, "@")
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name, tag = name[:i], name[i+1:]
	}
	return name, tag, digest
}

// versionAtLeast compares dotted version numbers ("1.26.8").
func versionAtLeast(v, min string) bool {
	a, b := strings.Split(v, "."), strings.Split(min, ".")
	for i := 0; i < len(b); i++ {
		if i >= len(a) {
			return false
		}
		x, err1 := strconv.Atoi(a[i])
		y, err2 := strconv.Atoi(b[i])
		if err1 != nil || err2 != nil {
			return false
		}
		if x != y {
			return x > y
		}
	}
	return true
}

// goDirective is the go line of go.mod.
func goDirective(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(readFile(t, "go.mod"))
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	return m[1]
}

// TestDockerfile checks deploy/Dockerfile without a Docker engine: a Go
// builder stage at least as new as go.mod asks, a static trimmed build with
// the version stamped, a distroless non-root final stage with a numeric
// user, the ports, volumes and the exec-form entry point.
func TestDockerfile(t *testing.T) {
	args, stages, err := parseDockerfile(readFile(t, "deploy/Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a builder and a final stage", len(stages))
	}
	names := map[string]bool{}
	for _, st := range stages {
		if st.Name != "" {
			names[st.Name] = true
		}
	}
	for i, st := range stages {
		if names[st.Image] {
			continue // FROM an earlier stage
		}
		name, tag, digest := imageTag(st.Image)
		if strings.Contains(st.Image, "$") {
			t.Errorf("stage %d: image %q has an unresolved variable", i, st.Image)
		}
		if (tag == "" || tag == "latest") && digest == "" {
			t.Errorf("stage %d: image %q: pin a tag (not latest) or a digest", i, st.Image)
		}
		_ = name
	}

	// The builder: golang, no older than go.mod's go directive.
	build := stages[0]
	name, tag, _ := imageTag(build.Image)
	if name != "golang" && name != "docker.io/library/golang" {
		t.Errorf("builder image %q, want golang", build.Image)
	}
	if want := goDirective(t); !versionAtLeast(strings.SplitN(tag, "-", 2)[0], want) {
		t.Errorf("builder golang:%s is older than go.mod's go %s", tag, want)
	}
	if args["GO_VERSION"] == "" {
		t.Error("no global ARG GO_VERSION: the Go version should be one build argument")
	}
	if build.Name == "" {
		t.Error("the builder stage has no name for COPY --from")
	}
	var goBuild string
	for _, in := range build.all("RUN") {
		if strings.Contains(in.Args, "go build") {
			goBuild = in.Args
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "` + buildLDFlags + `"`, "./cmd/imapwarden"} {
		if !strings.Contains(goBuild, want) {
			t.Errorf("the go build RUN lacks %s:\n%s", want, goBuild)
		}
	}
	if !regexp.MustCompile(`(?m)^var version(, \w+)* string`).MatchString(readFile(t, "cmd/imapwarden/main.go")) {
		t.Error("cmd/imapwarden/main.go has no \"var version string\" for -X main.version")
	}

	// The final stage: distroless static, non-root by number, nothing run.
	final := stages[len(stages)-1]
	name, tag, _ = imageTag(final.Image)
	if name != "gcr.io/distroless/static-debian12" || !strings.Contains(tag, "nonroot") {
		t.Errorf("final image %q, want gcr.io/distroless/static-debian12:nonroot", final.Image)
	}
	if runs := final.all("RUN"); len(runs) > 0 {
		t.Errorf("line %d: RUN in the final stage: distroless has no shell", runs[0].Line)
	}
	if hc := final.all("HEALTHCHECK"); len(hc) > 0 {
		t.Errorf("line %d: HEALTHCHECK cannot run in distroless (no shell, no curl)", hc[0].Line)
	}
	users := final.all("USER")
	if len(users) != 1 {
		t.Fatalf("final stage has %d USER instructions, want 1", len(users))
	}
	if u := users[0].Args; u != "65532:65532" {
		t.Errorf("USER %s, want 65532:65532 (numeric, so that runAsNonRoot can check it)", u)
	}
	var copiedBinary bool
	chowned := map[string]bool{}
	for _, in := range final.all("COPY") {
		f := strings.Fields(in.Args)
		from := ""
		for _, a := range f {
			if v, ok := strings.CutPrefix(a, "--from="); ok {
				from = v
			}
		}
		dst := f[len(f)-1]
		if from == build.Name && dst == "/imapwarden" {
			copiedBinary = true
		}
		if slices.Contains(f, "--chown=65532:65532") {
			chowned[dst] = true
		}
	}
	if !copiedBinary {
		t.Errorf("no COPY --from=%s ... /imapwarden in the final stage", build.Name)
	}
	var exposed []string
	for _, in := range final.all("EXPOSE") {
		exposed = append(exposed, strings.Fields(in.Args)...)
	}
	for _, p := range []string{"993", "143", "9143"} {
		if !slices.Contains(exposed, p) && !slices.Contains(exposed, p+"/tcp") {
			t.Errorf("port %s not exposed (EXPOSE %v)", p, exposed)
		}
	}
	var volumes []string
	for _, in := range final.all("VOLUME") {
		volumes = append(volumes, jsonArgs(t, in)...)
	}
	for _, v := range []string{"/var/lib/imapwarden", "/var/log/imapwarden"} {
		if !slices.Contains(volumes, v) {
			t.Errorf("no VOLUME %s (have %v)", v, volumes)
		}
		if !chowned[v] {
			t.Errorf("%s is not created owned by 65532 (COPY --chown): a new volume would not be writable", v)
		}
	}
	if ep := final.all("ENTRYPOINT"); len(ep) != 1 || !slices.Equal(jsonArgs(t, ep[0]), []string{"/imapwarden"}) {
		t.Errorf(`ENTRYPOINT: want exactly ["/imapwarden"], have %v`, ep)
	}
	if cmd := final.all("CMD"); len(cmd) != 1 || !slices.Equal(jsonArgs(t, cmd[0]), []string{"serve", "-c", "/etc/imapwarden/imapwarden.yaml"}) {
		t.Errorf(`CMD: want ["serve", "-c", "/etc/imapwarden/imapwarden.yaml"], have %v`, cmd)
	}
}

// dockerignore is a parsed ignore file: patterns in order, "!" re-includes.
type dockerignore []struct {
	re      *regexp.Regexp
	include bool
}

func parseDockerignore(text string) dockerignore {
	var d dockerignore
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		include := strings.HasPrefix(line, "!")
		line = strings.Trim(strings.TrimPrefix(line, "!"), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(line); i++ {
			switch c := line[i]; {
			case strings.HasPrefix(line[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(line[i:], "**"):
				re.WriteString(".*")
				i++
			case c == '*':
				re.WriteString("[^/]*")
			case c == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		re.WriteString("$")
		d = append(d, struct {
			re      *regexp.Regexp
			include bool
		}{regexp.MustCompile(re.String()), include})
	}
	return d
}

// excluded reports whether path (slash-separated, relative to the context)
// is left out of the build context: a pattern matching the path or one of
// its parent directories excludes it; the last matching pattern wins.
func (d dockerignore) excluded(path string) bool {
	parts := strings.Split(path, "/")
	out := false
	for _, p := range d {
		for i := 1; i <= len(parts); i++ {
			if p.re.MatchString(strings.Join(parts[:i], "/")) {
				out = !p.include
				break
			}
		}
	}
	return out
}

// TestDockerignore checks that deploy/Dockerfile.dockerignore keeps
// everything the image build needs (go.mod, go.sum, every Go and embedded
// file of the packages cmd/imapwarden is built from, the policies) and
// drops the repository history and build output.
func TestDockerignore(t *testing.T) {
	d := parseDockerignore(readFile(t, "deploy/Dockerfile.dockerignore"))
	out := runCmd(t, repoRoot, nil, "go", "list", "-deps",
		"-f", `{{if and .Module .Module.Main}}{{range .GoFiles}}{{$.Dir}}/{{.}}{{"\n"}}{{end}}{{range .EmbedFiles}}{{$.Dir}}/{{.}}{{"\n"}}{{end}}{{end}}`,
		"./cmd/imapwarden")
	need := []string{"go.mod", "go.sum"}
	for _, f := range strings.Fields(out) {
		rel, ok := strings.CutPrefix(f, repoRoot+"/")
		if !ok {
			t.Fatalf("%s is outside %s", f, repoRoot)
		}
		need = append(need, rel)
	}
	if len(need) < 10 {
		t.Fatalf("go list found only %v", need)
	}
	if entries, err := os.ReadDir(repoRoot + "/policies"); err == nil {
		for _, e := range entries {
			need = append(need, "policies/"+e.Name())
		}
	}
	need = append(need, imageConfig)
	for _, f := range need {
		if d.excluded(f) {
			t.Errorf("the build needs %s, but the dockerignore excludes it", f)
		}
	}
	for _, f := range []string{".git/HEAD", "dist/imapwarden", "imapwarden_1.0.0_amd64.deb", "proxy/session_test.go", "cmd/imapwarden/testdata/example.yaml", "deploy/README.md"} {
		if !d.excluded(f) {
			t.Errorf("%s is sent to the build but not needed", f)
		}
	}
}

// TestReleaseBinary checks the binary built with the release flags: static
// (it runs on distroless/static and any Linux), no symbol table, no
// build-machine paths, and the version stamped.
func TestReleaseBinary(t *testing.T) {
	bin := needBinary(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has an ELF interpreter: it is dynamically linked (CGO_ENABLED=0 missing?)")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v", libs)
	}
	if _, err := f.Symbols(); !errors.Is(err, elf.ErrNoSymbols) {
		t.Errorf("the binary has a symbol table (-s missing?): %v", err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(repoRoot+"/proxy")) {
		t.Errorf("the binary contains the build path %s (-trimpath missing?)", repoRoot)
	}
	out := runCmd(t, "", nil, bin, "version")
	if want := "imapwarden " + testVersion + "\ncommit " + testRevision + "\ndate " + testRevisionDate + "\n"; !strings.HasPrefix(out, want) {
		t.Errorf("imapwarden version: %q, want the -X values %q", out, want)
	}
}
