// Package testenv is the one place where tests learn about their
// environment: whether they run under CI, which programs they need, and
// how long real I/O may take on a busy machine.
//
// The rule it enforces: a test that needs something real (a server, a
// client program, root) skips when it is missing outside CI, and fails
// under CI, where .ci/run installs everything, so that a skip there cannot
// hide a test that never ran.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// CI reports whether the tests run under CI: the CI variable read with
// strconv.ParseBool (1, t, true, TRUE, ...). It is read on every call, so
// that a test can change it with t.Setenv.
func CI() bool {
	v, _ := strconv.ParseBool(os.Getenv("CI"))
	return v
}

// Require does nothing when err is nil. Otherwise it fails the test under
// CI and skips it elsewhere; what names the missing thing, hint says how
// to get it (".ci/run installs it with apt-get install redis-server").
func Require(t testing.TB, what string, err error, hint string) {
	t.Helper()
	if err == nil {
		return
	}
	if CI() {
		t.Fatalf("%s: CI=true but it cannot run: %v; %s", what, err, hint)
	}
	t.Skipf("%s: %v (%s)", what, err, hint)
}

// binDirs are searched after PATH: a non-root PATH often lacks sbin, where
// Debian puts daemons (slapd, dovecot, redis-server's sentinel...).
var binDirs = []string{"/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin", "/usr/local/bin"}

// LookTool finds a program in PATH, then in the sbin and bin directories.
func LookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range binDirs {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH or %v", name, binDirs)
}

// NeedTool returns the path of program name, or skips the test without
// it (fails it under CI: .ci/run installs every tool a test needs).
func NeedTool(t testing.TB, name string) string {
	t.Helper()
	p, err := LookTool(name)
	Require(t, name, err, ".ci/run installs it")
	return p
}

// NeedRoot skips the test unless it runs as root (fails it under CI, which
// runs as root); why says what root is for.
func NeedRoot(t testing.TB, why string) {
	t.Helper()
	var err error
	if os.Geteuid() != 0 {
		err = errors.New("needs root")
	}
	Require(t, why, err, "run the tests as root")
}

// Race reports whether the race detector is on. It makes sync.Pool drop
// what it is given at random, so allocation counts that rely on pools are
// only meaningful without it: .ci/run runs the Allocat tests a second
// time without -race (README.md).
func Race() bool { return raceEnabled }

// Slow reports whether the tests run slower than usual: under the race
// detector (about ten times the CPU) or under CI.
func Slow() bool { return raceEnabled || CI() }

// IOTimeout bounds one step of real I/O in a test (a reply from a real
// backend, a program's start): generous, because a test must pass on a
// busy 2-core machine running two suites at once. It never decides a
// test's outcome by itself; it only keeps a broken test from hanging.
func IOTimeout() time.Duration {
	if Slow() {
		return 2 * time.Minute
	}
	return 30 * time.Second
}

// Context returns a context ending at the test's own deadline (go test
// -timeout) less a margin to report in, or after IOTimeout when there is
// none, and canceled when the test ends.
func Context(t testing.TB) context.Context {
	ctx := t.Context()
	if d, ok := deadline(t); ok {
		c, cancel := context.WithDeadline(ctx, d)
		t.Cleanup(cancel)
		return c
	}
	c, cancel := context.WithTimeout(ctx, IOTimeout())
	t.Cleanup(cancel)
	return c
}

// Deadline is when I/O of the test should give up: the test's deadline
// less a margin, or IOTimeout from now.
func Deadline(t testing.TB) time.Time {
	if d, ok := deadline(t); ok {
		return d
	}
	return time.Now().Add(IOTimeout())
}

func deadline(t testing.TB) (time.Time, bool) {
	dt, ok := t.(interface{ Deadline() (time.Time, bool) })
	if !ok {
		return time.Time{}, false
	}
	d, ok := dt.Deadline()
	if !ok {
		return time.Time{}, false
	}
	// Leave time to report, and never more than IOTimeout per step.
	d = d.Add(-time.Until(d) / 10)
	if lim := time.Now().Add(IOTimeout()); d.After(lim) {
		d = lim
	}
	return d, true
}
