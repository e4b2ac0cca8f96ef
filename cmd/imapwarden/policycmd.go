package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/imapwarden/imapwarden/internal/termsafe"
	"github.com/imapwarden/imapwarden/policy"
)

const policyUsage = `Usage:

	imapwarden policy test [-v] [DIR...]
	imapwarden policy eval -input FILE [-policy DIR]

"policy test" runs the Rego tests (rules named test_* in *_test.rego files)
found in each DIR (default: the current directory), with the data files
beside them, through OPA's tester; the exit code is 1 if a test fails.

"policy eval" evaluates the policy in DIR (default: the current directory)
for the input document in FILE ("-" for standard input), shaped like the
input imapwarden builds (see policies/README.md), and prints the policy
revision, whether the command would be inspected at all, and the decision
as JSON. The exit code is 1 when imapwarden would fail closed (deny) on it
because the decision is missing or malformed.
`

// runPolicy runs "imapwarden policy ..." with args after "policy".
func runPolicy(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, policyUsage)
		return exitUsage
	}
	switch args[0] {
	case "test":
		return runPolicyTest(args[1:], stdout, stderr)
	case "eval":
		return runPolicyEval(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, policyUsage)
		return exitOK
	}
	fmt.Fprintf(stderr, "imapwarden policy: unknown subcommand %q\n\n%s", args[0], policyUsage)
	return exitUsage
}

// parsePolicyFlags parses a policy subcommand's flags, allowing positional
// arguments.
func parsePolicyFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (int, bool) {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return 0, true
	case errors.Is(err, flag.ErrHelp):
		printFlagUsage(stdout, policyUsage, fs)
		return exitOK, false
	}
	fmt.Fprintf(stderr, "imapwarden %s: %v\nRun \"imapwarden policy -h\" for usage.\n", fs.Name(), err)
	return exitUsage, false
}

func runPolicyTest(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("policy test")
	verbose := fs.Bool("v", false, "list every test, not only failures")
	if code, ok := parsePolicyFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	dirs := fs.Args()
	if len(dirs) == 0 {
		dirs = []string{"."}
	}
	rep, err := policy.RunTests(context.Background(), dirs...)
	if err != nil {
		fmt.Fprintf(stderr, "imapwarden policy test: %v\n", err)
		return exitError
	}
	if err := rep.Write(stdout, *verbose); err != nil {
		fmt.Fprintf(stderr, "imapwarden policy test: %v\n", err)
		return exitError
	}
	if rep.Passed+rep.Failed+rep.Errors == 0 {
		fmt.Fprintf(stderr, "imapwarden policy test: no tests found in %v\n", dirs)
		return exitError
	}
	if !rep.OK() {
		return exitError
	}
	return exitOK
}

func runPolicyEval(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("policy eval")
	input := fs.String("input", "", "JSON input document (`FILE`, - for standard input); required")
	dir := fs.String("policy", ".", "policy `DIR`ectory")
	if code, ok := parsePolicyFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 || *input == "" {
		fmt.Fprint(stderr, "imapwarden policy eval: -input FILE is required, and nothing else\nRun \"imapwarden policy -h\" for usage.\n")
		return exitUsage
	}
	var b []byte
	var err error
	if *input == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(*input)
	}
	if err != nil {
		fmt.Fprintf(stderr, "imapwarden policy eval: %v\n", err)
		return exitError
	}
	res, err := policy.EvalInput(context.Background(), *dir, b)
	if err != nil {
		fmt.Fprintf(stderr, "imapwarden policy eval: %s\n", termsafe.String(err.Error()))
		return exitError
	}
	// The input may be pasted from an audit record: its strings are the
	// client's, and reach the decision's reason and the errors.
	out, err := json.MarshalIndent(res, "", "  ")
	if err == nil {
		_, err = stdout.Write(append(termsafe.AppendText(nil, out), '\n'))
	}
	if err != nil {
		fmt.Fprintf(stderr, "imapwarden policy eval: %s\n", termsafe.String(err.Error()))
		return exitError
	}
	if res.Error != "" {
		fmt.Fprintf(stderr, "imapwarden policy eval: imapwarden would deny: %s\n", termsafe.String(res.Error))
		return exitError
	}
	return exitOK
}
