package deploytest

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/imapwarden/imapwarden/internal/dovecottest"
)

var deb struct {
	once sync.Once
	path string
	err  string
}

// buildDeb builds the package once per test binary with deploy/build-deb.sh,
// from the binary TestMain built and the pinned nfpm.
func buildDeb(t *testing.T) string {
	t.Helper()
	needCommand(t, "dpkg-deb", "dpkg")
	bin := needBinary(t)
	nfpm := needGoTool(t, nfpmModule)
	deb.once.Do(func() {
		out := filepath.Join(toolDir, "deb")
		stdout, stderr, err := tryCmd(repoRoot, []string{
			"IMAPWARDEN_BINARY=" + bin,
			"IMAPWARDEN_VERSION=" + testVersion,
			"GOARCH=" + runtime.GOARCH,
			"NFPM=" + nfpm,
		}, filepath.Join(repoRoot, "deploy/build-deb.sh"), out)
		if err != nil {
			deb.err = "deploy/build-deb.sh: " + err.Error() + "\n" + stdout + stderr
			return
		}
		deb.path = filepath.Join(out, "imapwarden_"+testVersion+"_"+runtime.GOARCH+".deb")
		if _, err := os.Stat(deb.path); err != nil {
			deb.err = "deploy/build-deb.sh made no " + deb.path + ":\n" + stdout + stderr
		}
	})
	if deb.err != "" {
		t.Fatal(deb.err)
	}
	return deb.path
}

// repoPolicies lists the files under policies/ (relative), if any.
func repoPolicies(t *testing.T) []string {
	t.Helper()
	var files []string
	root := filepath.Join(repoRoot, "policies")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return files
}

// TestDebPackage builds the Debian package with nfpm and checks it without
// installing it: control fields, file list and modes, conffiles, that the
// shipped unit and configuration are the repository's, and that the
// maintainer scripts parse.
func TestDebPackage(t *testing.T) {
	path := buildDeb(t)
	fields := runCmd(t, "", nil, "dpkg-deb", "-f", path, "Package", "Version", "Architecture", "Depends", "Section")
	for _, want := range []string{"Package: imapwarden", "Version: " + testVersion, "Architecture: " + runtime.GOARCH, "Depends: adduser, openssl", "Section: mail"} {
		if !strings.Contains(fields, want+"\n") {
			t.Errorf("control lacks %q:\n%s", want, fields)
		}
	}

	// dpkg-deb -c: "mode owner/group size date time ./path"
	modes := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(runCmd(t, "", nil, "dpkg-deb", "-c", path)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb -c line %q", line)
		}
		p := strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")
		modes[p] = f[0]
		if f[1] != "root/root" {
			t.Errorf("%s owned by %s, want root/root", p, f[1])
		}
	}
	want := map[string]string{
		"/usr/bin/imapwarden":                               "-rwxr-xr-x",
		"/lib/systemd/system/imapwarden.service":            "-rw-r--r--",
		"/usr/lib/sysusers.d/imapwarden.conf":               "-rw-r--r--",
		"/etc/imapwarden/imapwarden.yaml":                   "-rw-r--r--",
		"/etc/imapwarden/policies":                          "drwxr-xr-x",
		"/usr/share/doc/imapwarden/examples/reference.yaml": "-rw-r--r--",
		"/usr/share/doc/imapwarden/examples/dovecot.yaml":   "-rw-r--r--",
		"/usr/share/doc/imapwarden/examples/exchange.yaml":  "-rw-r--r--",
		"/usr/share/doc/imapwarden/examples/cyrus.yaml":     "-rw-r--r--",
		"/usr/share/doc/imapwarden/examples/courier.yaml":   "-rw-r--r--",
		"/usr/share/doc/imapwarden/README.deploy.md":        "-rw-r--r--",
	}
	policies := repoPolicies(t)
	for _, p := range policies {
		want["/etc/imapwarden/policies/"+p] = "-rw-r--r--"
	}
	t.Logf("%d policy files from policies/", len(policies))
	for p, mode := range want {
		if got, ok := modes[p]; !ok {
			t.Errorf("the package lacks %s", p)
		} else if got != mode {
			t.Errorf("%s has mode %s, want %s", p, got, mode)
		}
	}

	// Every file under /etc is a conffile, so that dpkg keeps local edits.
	ctrl := t.TempDir()
	runCmd(t, "", nil, "dpkg-deb", "-e", path, ctrl)
	conffiles := strings.Fields(string(mustRead(t, filepath.Join(ctrl, "conffiles"))))
	for p, mode := range modes {
		if strings.HasPrefix(p, "/etc/") && !strings.HasPrefix(mode, "d") && !slices.Contains(conffiles, p) {
			t.Errorf("%s is not a conffile: an upgrade would overwrite local changes", p)
		}
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		script := filepath.Join(ctrl, s)
		if !bytes.Equal(mustRead(t, script), mustRead(t, filepath.Join(repoRoot, "deploy/deb", s))) {
			t.Errorf("the package's %s differs from deploy/deb/%s", s, s)
		}
		runCmd(t, "", nil, "sh", "-n", script)
	}

	// The payload is the repository's files.
	root := t.TempDir()
	runCmd(t, "", nil, "dpkg-deb", "-x", path, root)
	for dst, src := range map[string]string{
		"lib/systemd/system/imapwarden.service": "deploy/systemd/imapwarden.service",
		"etc/imapwarden/imapwarden.yaml":        "deploy/deb/imapwarden.yaml",
		"usr/lib/sysusers.d/imapwarden.conf":    "deploy/systemd/imapwarden.sysusers",
	} {
		if !bytes.Equal(mustRead(t, filepath.Join(root, dst)), mustRead(t, filepath.Join(repoRoot, src))) {
			t.Errorf("/%s differs from %s", dst, src)
		}
	}
	out := runCmd(t, "", nil, filepath.Join(root, "usr/bin/imapwarden"), "version")
	if !strings.HasPrefix(out, "imapwarden "+testVersion+"\n") {
		t.Errorf("packaged imapwarden version: %q", out)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestDebInstall installs the package on this machine with dpkg, checks
// what postinst did (system user, self-signed certificate, audit key and
// admin tokens readable by the service's group only, service not started),
// runs imapwarden validate on the installed configuration as root and as
// the service user, reinstalls over it (the upgrade path: local config
// edits, the certificate and the tokens stay), then purges it and checks
// that nothing is left but the audit directory.
//
// It changes the system, so it runs only as root with CI=true or
// IMAPWARDEN_DEB_TEST=1, and refuses to touch an imapwarden installed by
// anything else.
func TestDebInstall(t *testing.T) {
	if !inCI && os.Getenv("IMAPWARDEN_DEB_TEST") != "1" {
		t.Skip("installs a package on this machine: set IMAPWARDEN_DEB_TEST=1 (as root) to run it; CI=true runs it too")
	}
	if os.Geteuid() != 0 {
		if inCI {
			t.Fatal("CI=true: the package install test needs root")
		}
		t.Skip("the package install test needs root")
	}
	needCommand(t, "dpkg", "dpkg")
	lockMachine(t)
	path := buildDeb(t)
	env := []string{"DEBIAN_FRONTEND=noninteractive"}

	// A package left by an earlier, interrupted run of this test is ours to
	// remove; any other installation is not.
	if v, _, err := tryCmd("", nil, "dpkg-query", "-W", "-f=${Version} ${Status}", "imapwarden"); err == nil && v != "" {
		if !strings.HasPrefix(v, testVersion+" ") {
			t.Fatalf("imapwarden %s is installed on this machine: not touching it", v)
		}
		runCmd(t, "", env, "dpkg", "--purge", "imapwarden")
	}
	for _, p := range []string{"/etc/imapwarden", "/usr/bin/imapwarden"} {
		if _, err := os.Stat(p); err == nil {
			t.Fatalf("%s exists without the package: not touching it", p)
		}
	}
	_, userErr := user.Lookup("imapwarden")
	createdUser := userErr != nil
	_, logErr := os.Stat("/var/log/imapwarden")
	createdLogDir := logErr != nil
	t.Cleanup(func() {
		if createdLogDir {
			// postrm keeps the trail (and its key); the test does not.
			os.RemoveAll("/var/log/imapwarden")
		}
		if _, _, err := tryCmd("", nil, "dpkg-query", "-W", "imapwarden"); err == nil {
			tryCmd("", env, "dpkg", "--purge", "imapwarden")
		}
		if createdUser {
			// postrm keeps the system user (Debian policy); the test does not.
			tryCmd("", nil, "userdel", "imapwarden")
			tryCmd("", nil, "groupdel", "imapwarden")
		}
	})

	out := runCmd(t, "", env, "dpkg", "-i", path)
	if !strings.Contains(out, "installed but not started") {
		t.Errorf("dpkg -i output lacks the not-started notice:\n%s", out)
	}
	if _, err := user.Lookup("imapwarden"); err != nil {
		t.Fatalf("no imapwarden user after install: %v", err)
	}
	group, err := user.LookupGroup("imapwarden")
	if err != nil {
		t.Fatalf("no imapwarden group after install: %v", err)
	}
	for p, want := range map[string]fs.FileMode{
		"/etc/imapwarden/tls":           fs.ModeDir | 0o750,
		"/etc/imapwarden/tls/key.pem":   0o640,
		"/etc/imapwarden/tls/cert.pem":  0o644,
		"/etc/imapwarden/audit.key":     0o640,
		"/etc/imapwarden/admin.token":   0o640,
		"/etc/imapwarden/metrics.token": 0o640,
		"/var/log/imapwarden":           fs.ModeDir | 0o750,
	} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("after install: %v", err)
			continue
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
		if gid := fileGID(fi); gid != group.Gid {
			t.Errorf("%s: group %s, want imapwarden (%s)", p, gid, group.Gid)
		}
	}

	if out := runCmd(t, "", nil, "/usr/bin/imapwarden", "version"); !strings.HasPrefix(out, "imapwarden "+testVersion) {
		t.Errorf("installed version: %q", out)
	}
	validate := []string{"/usr/bin/imapwarden", "validate", "-c", "/etc/imapwarden/imapwarden.yaml"}
	if out := runCmd(t, "", nil, validate[0], validate[1:]...); out != "ok\n" {
		t.Errorf("validate as root: %q", out)
	}
	// The service runs as imapwarden: it must be able to read the key.
	if runuser := needCommand(t, "runuser", "util-linux"); runuser != "" {
		args := append([]string{"-u", "imapwarden", "--"}, validate...)
		if out := runCmd(t, "", nil, runuser, args...); out != "ok\n" {
			t.Errorf("validate as imapwarden: %q", out)
		}
	}
	debSecureDefaults(t)
	if analyze, err := exec.LookPath("systemd-analyze"); err == nil {
		if out, errOut, err := tryCmd("", nil, analyze, "verify", "--man=no", "/lib/systemd/system/imapwarden.service"); err != nil || strings.TrimSpace(out+errOut) != "" {
			t.Errorf("systemd-analyze verify of the installed unit: %v\n%s%s", err, out, errOut)
		}
	}

	// Upgrade path: a local edit of the configuration and the generated
	// key survive a reinstall.
	key := mustRead(t, "/etc/imapwarden/tls/key.pem")
	adminToken := mustRead(t, "/etc/imapwarden/admin.token")
	f, err := os.OpenFile("/etc/imapwarden/imapwarden.yaml", os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("# local edit by TestDebInstall\n")
	f.Close()
	runCmd(t, "", env, "dpkg", "-i", path)
	if !bytes.Contains(mustRead(t, "/etc/imapwarden/imapwarden.yaml"), []byte("# local edit by TestDebInstall")) {
		t.Error("reinstall replaced the edited configuration")
	}
	if !bytes.Equal(mustRead(t, "/etc/imapwarden/tls/key.pem"), key) {
		t.Error("reinstall replaced the TLS key")
	}
	if !bytes.Equal(mustRead(t, "/etc/imapwarden/admin.token"), adminToken) {
		t.Error("reinstall replaced the admin token")
	}

	auditKey := mustRead(t, "/etc/imapwarden/audit.key")
	runCmd(t, "", env, "dpkg", "--purge", "imapwarden")
	// The trail is kept, and with it the key that verifies it.
	if k, err := os.ReadFile("/var/log/imapwarden/audit.key"); err != nil || !bytes.Equal(k, auditKey) {
		t.Errorf("after purge the audit key is not beside the kept trail: %v", err)
	}
	for _, p := range []string{"/usr/bin/imapwarden", "/lib/systemd/system/imapwarden.service", "/etc/imapwarden", "/var/lib/imapwarden"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s is left after purge", p)
		}
	}
}

// fileGID is the owning group of a file, as a decimal string.
func fileGID(fi fs.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "?"
	}
	return strconv.FormatUint(uint64(st.Gid), 10)
}

// debSecureDefaults runs the installed proxy from the installed
// configuration, unedited, as the unit does (user imapwarden with
// CAP_NET_BIND_SERVICE only), in front of a Dovecot answering on the
// configuration's 127.0.0.1:143: DELETE INBOX is refused by the shipped
// policies, the admin API answers only the tokens postinst made and the
// trail is an HMAC chain under the key postinst made.
func debSecureDefaults(t *testing.T) {
	t.Helper()
	dovecottest.Require(t)
	d := dovecottest.Start(t, dovecottest.Options{})
	forward(t, "127.0.0.1:143", d.Addr)
	argv := []string{"/usr/bin/imapwarden", "serve", "-c", "/etc/imapwarden/imapwarden.yaml"}
	if setpriv, err := exec.LookPath("setpriv"); err == nil {
		argv = append([]string{setpriv, "--reuid=imapwarden", "--regid=imapwarden", "--init-groups",
			"--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service", "--"}, argv...)
	}
	p := startProxy(t, argv...)
	if !strings.HasSuffix(p.addrs["imaps"], ":993") {
		t.Errorf("listening on %v, want imaps on port 993", p.addrs)
	}
	checkRefusesDeleteInbox(t, "127.0.0.1:993", "alice", dovecottest.DefaultUsers()["alice"])
	checkAdminTokens(t, p.addrs["admin"], "/etc/imapwarden/admin.token", "/etc/imapwarden/metrics.token")
	p.stop(t)
	checkHMACTrail(t, "/usr/bin/imapwarden", "/etc/imapwarden/audit.key", "/var/log/imapwarden/audit.jsonl")
}

// lockMachine makes the test the only one installing the package on this
// machine until it ends: two test runs at once (CI run twice in parallel)
// would otherwise install and purge it under each other, and dpkg refuses
// a second frontend. The lock is released after the test's other cleanups.
func lockMachine(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "imapwarden-deploytest-deb.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() }) // closing releases the lock
}
