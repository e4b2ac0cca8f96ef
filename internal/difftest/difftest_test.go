package difftest

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	code := m.Run()
	CleanupBinary()
	os.Exit(code)
}

// The harness's size and sample: DIFFTEST_CASES steps per backend
// (default defaultCases; "all" for every spelling the generator makes,
// some ten thousand), drawn with DIFFTEST_SEED (default: from the clock,
// and logged, so that a failing run can be repeated).
const defaultCases = 300

func seed() uint64 {
	if v, err := strconv.ParseUint(os.Getenv("DIFFTEST_SEED"), 10, 64); err == nil {
		return v
	}
	return uint64(time.Now().UnixNano())
}

func budget(t *testing.T) int {
	switch v := os.Getenv("DIFFTEST_CASES"); v {
	case "":
		return defaultCases
	case "all":
		return 0
	default:
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("DIFFTEST_CASES=%q: want a positive number or \"all\"", v)
		}
		return n
	}
}

// maxReported bounds the problems reported per backend.
const maxReported = 60

// workers is how many users run a backend's spellings at once: Courier
// takes two seconds over every DELETE and RENAME.
var workers = map[string]int{"dovecot": 2, "cyrus": 3, "courier": 4}

// TestDifferential is the harness (issue 11, part 5): every case's
// spellings through imapwarden to each backend, the backend's own state
// compared with what imapwarden decided and audited after each. The
// backends, and a backend's workers, run at once (goroutines calling
// t.Run, not parallel subtests, which -parallel would queue on a 2-core
// machine).
func TestDifferential(t *testing.T) {
	sd, n := seed(), budget(t)
	repro := fmt.Sprintf("DIFFTEST_SEED=%d DIFFTEST_CASES=%s", sd, os.Getenv("DIFFTEST_CASES"))
	t.Logf("%s go test -run TestDifferential ./internal/difftest repeats this run", repro)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("to repeat: %s go test -run TestDifferential ./internal/difftest", repro)
		}
	})
	forEachBackend(t, func(t *testing.T, e *Env) {
		start := time.Now()
		g := NewGen(e.B, sd)
		cases := g.Cases()
		steps := g.Pick(cases, n)
		runSteps(t, e, steps)
		t.Logf("%d of %d spellings of %d cases, %d workers, %v", len(steps), Spellings(cases), len(cases), workers[e.B.Name], time.Since(start).Round(time.Second))
	})
}

// runSteps runs steps on the backend's workers and reports their problems.
func runSteps(t *testing.T, e *Env, steps []*Step) {
	// Steps of special users go to the first worker, the rest round
	// the workers.
	nw := workers[e.B.Name]
	parts := make([][]*Step, nw)
	for i, st := range steps {
		k := 0
		if st.User == "" {
			k = i % nw
		}
		parts[k] = append(parts[k], st)
	}
	var wg sync.WaitGroup
	for k := range nw {
		wg.Go(func() {
			t.Run(fmt.Sprintf("worker%d", k), func(t *testing.T) {
				w := e.Worker(t, k)
				reported := 0
				for _, st := range parts[k] {
					_, probs := w.Run(st)
					for _, p := range probs {
						if reported++; reported <= maxReported {
							t.Errorf("%s: %s", st.Label, p)
						}
					}
				}
				t.Logf("%d spellings, %d resets, %d logins, %d problems", len(parts[k]), w.Resets, w.Logins, reported)
			})
		})
	}
	wg.Wait()
}

// TestHeaderNamesDifferential runs every spelling of headerNameCase (the
// harness samples a few of them): whatever header field names a FETCH
// names, the content each backend sends after its echo of them is in the
// trail, and no echo is one the proxy cannot read (attack46c;
// ARCHITECTURE.md §7, §12).
func TestHeaderNamesDifferential(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *Env) {
		runSteps(t, e, NewGen(e.B, seed()).headerNameCase().Steps)
	})
}
