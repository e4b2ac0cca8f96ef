package policy

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/util/channel"
)

// TestReport is the outcome of RunTests.
type TestReport struct {
	Results []*tester.Result
	// Passed, Failed and Errors count test cases (each sub-test of a
	// parameterized test counts); Skipped the todo_ ones.
	Passed, Failed, Errors, Skipped int
}

// OK reports that tests ran and none failed.
func (r *TestReport) OK() bool {
	return r.Failed == 0 && r.Errors == 0 && r.Passed > 0
}

// RunTests runs the Rego tests (rules named test_*, usually in *_test.rego
// files) found in paths, with their data files, through OPA's tester. The
// policies are compiled with the same capabilities as the Engine, so a test
// cannot pass on a builtin the proxy refuses.
//
// Each path is compiled alone, as the engine compiles each policy
// directory; a directory that is one policy of a tree (policies/legal_hold)
// gets the framework and its data where the engine puts them (loadPath).
func RunTests(ctx context.Context, paths ...string) (*TestReport, error) {
	rep := &TestReport{}
	for _, path := range paths {
		if err := rep.run(ctx, path); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

func (rep *TestReport) run(ctx context.Context, path string) error {
	res, err := loadPath(path, true)
	if err != nil {
		return fmt.Errorf("policy: load tests: %w", err)
	}
	modules := res.ParsedModules()
	store := inmem.NewFromObjectWithOpts(res.Documents, inmem.OptRoundTripOnWrite(false))
	compiler := ast.NewCompiler().
		WithCapabilities(capabilities()).
		WithEnablePrintStatements(true).
		WithDefaultRegoVersion(ast.RegoV1)
	ch, err := tester.NewRunner().
		SetCompiler(compiler).
		SetStore(store).
		SetDefaultRegoVersion(ast.RegoV1).
		CapturePrintOutput(true).
		RaiseBuiltinErrors(true).
		SetTimeout(30*time.Second).
		SetModules(modules).
		RunTests(ctx, nil)
	if err != nil {
		return fmt.Errorf("policy: compile tests: %w", err)
	}
	results := channel.Collect(ch)
	rep.Results = append(rep.Results, results...)
	for _, r := range results {
		switch {
		case r.Skip:
			rep.Skipped++
		case r.Error != nil:
			rep.Errors++
		case len(r.SubResults) > 0:
			for _, sr := range r.SubResults.Iter {
				if len(sr.SubResults) > 0 {
					continue
				}
				if sr.Fail {
					rep.Failed++
				} else {
					rep.Passed++
				}
			}
		case r.Fail:
			rep.Failed++
		default:
			rep.Passed++
		}
	}
	return nil
}

// Write prints the report as "opa test" does: failures (every test with
// verbose) with file:line, then the counts.
func (r *TestReport) Write(w io.Writer, verbose bool) error {
	ch := make(chan *tester.Result, len(r.Results))
	for _, x := range r.Results {
		ch <- x
	}
	close(ch)
	return tester.PrettyReporter{Output: w, Verbose: verbose, FailureLine: true}.Report(ch)
}
