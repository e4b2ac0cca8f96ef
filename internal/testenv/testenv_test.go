package testenv

import (
	"testing"
	"time"
)

func TestCI(t *testing.T) {
	for v, want := range map[string]bool{"": false, "true": true, "1": true, "TRUE": true, "false": false, "0": false, "yes": false} {
		t.Setenv("CI", v)
		if got := CI(); got != want {
			t.Errorf("CI=%q: %v, want %v", v, got, want)
		}
	}
}

// recordTB records how a helper ended the test.
type recordTB struct {
	testing.TB
	skipped, failed bool
}

func (r *recordTB) Helper()               {}
func (r *recordTB) Skipf(string, ...any)  { r.skipped = true }
func (r *recordTB) Fatalf(string, ...any) { r.failed = true }

func TestNeedToolSkipsOutsideCIAndFailsUnderCI(t *testing.T) {
	t.Setenv("CI", "")
	r := &recordTB{TB: t}
	NeedTool(r, "no-such-tool-imapwarden")
	if !r.skipped || r.failed {
		t.Errorf("outside CI: skipped %v failed %v, want a skip", r.skipped, r.failed)
	}
	t.Setenv("CI", "true")
	r = &recordTB{TB: t}
	NeedTool(r, "no-such-tool-imapwarden")
	if !r.failed {
		t.Error("under CI a missing tool must fail the test")
	}
	r = &recordTB{TB: t}
	if p := NeedTool(r, "sh"); p == "" || r.failed || r.skipped {
		t.Errorf("sh: %q skipped %v failed %v", p, r.skipped, r.failed)
	}
}

func TestDeadlineIsBounded(t *testing.T) {
	d := Deadline(t)
	if left := time.Until(d); left <= 0 || left > IOTimeout() {
		t.Errorf("deadline in %v, want within (0, %v]", left, IOTimeout())
	}
	if _, ok := Context(t).Deadline(); !ok {
		t.Error("Context has no deadline")
	}
}
