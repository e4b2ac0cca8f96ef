// Command imapwarden is an IMAP security proxy: it stands in front of IMAP
// servers, owns TLS and authentication toward clients and inspects every
// command after login.
//
// This package is the only wiring point (ARCHITECTURE.md §4): it reads the
// configuration, builds each package's Options, the loggers and the TLS
// servers, and handles signals. Run "imapwarden help" for the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
)

// version, commit and date are set at build time:
//
//	go build -ldflags "-X main.version=v1.2.3 -X main.commit=$(git rev-parse HEAD) -X main.date=2026-12-06T10:00:00Z" ./cmd/imapwarden
//
// When empty, what the Go toolchain recorded is used: the module version,
// and the VCS revision and commit time of a build from a checkout.
var version, commit, date string

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// command is one subcommand.
type command struct {
	name     string
	synopsis string
	// run parses args (after the subcommand name) and does the work.
	run func(ctx context.Context, args []string, stdout, stderr io.Writer) int
	// usage writes the full help text.
	usage func(w io.Writer)
}

// commands is filled by init to avoid an initialization cycle through
// cmdHelp, which lists the commands.
var commands []*command

func init() {
	commands = []*command{
		{"serve", "run the proxy", cmdServe, func(w io.Writer) { printFlagUsage(w, serveUsage, newServeFlags(nil)) }},
		{"validate", "check a configuration file without starting", cmdValidate, func(w io.Writer) { printFlagUsage(w, validateUsage, newValidateFlags(nil)) }},
		{"demo", "run a self-contained demo on localhost", cmdDemo, func(w io.Writer) { printFlagUsage(w, demoUsage, newDemoFlags(nil)) }},
		{"config", "print the effective configuration, secrets redacted", cmdConfig, func(w io.Writer) { printFlagUsage(w, configUsage, newConfigFlags(nil)) }},
		{"audit", "verify and query audit trails", func(_ context.Context, a []string, o, e io.Writer) int { return runAudit(a, o, e) }, func(w io.Writer) { fmt.Fprint(w, auditUsage) }},
		{"policy", "test and evaluate Rego policies", func(_ context.Context, a []string, o, e io.Writer) int { return runPolicy(a, o, e) }, func(w io.Writer) { fmt.Fprint(w, policyUsage) }},
		{"hash-password", "hash a password from standard input for a file authenticator", cmdHashPassword, func(w io.Writer) { fmt.Fprint(w, hashPasswordUsage) }},
		{"version", "print the version", cmdVersion, func(w io.Writer) { fmt.Fprint(w, versionUsage) }},
		{"completion", "print a bash or zsh completion script", cmdCompletion, func(w io.Writer) { fmt.Fprint(w, completionUsage) }},
		{"man", "print the manual page (roff)", cmdMan, func(w io.Writer) { fmt.Fprint(w, manUsage) }},
		{"help", "show help for a command", cmdHelp, func(w io.Writer) { fmt.Fprint(w, helpUsage) }},
	}
}

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches to a subcommand and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		mainUsage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		mainUsage(stdout)
		return exitOK
	case "-version", "--version":
		return cmdVersion(ctx, nil, stdout, stderr)
	}
	if c := findCommand(args[0]); c != nil {
		return c.run(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "imapwarden: unknown command %q\n\n", args[0])
	mainUsage(stderr)
	return exitUsage
}

func findCommand(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func mainUsage(w io.Writer) {
	fmt.Fprint(w, `imapwarden is an IMAP security proxy: it terminates TLS, authenticates clients
and inspects every IMAP command before passing it to the backend server.

Usage:

	imapwarden <command> [flags]

Commands:

`)
	for _, c := range commands {
		fmt.Fprintf(w, "\t%-10s %s\n", c.name, c.synopsis)
	}
	fmt.Fprint(w, `
Run "imapwarden help <command>" or "imapwarden <command> -h" for a command's flags.
Try it out with "imapwarden demo".
`)
}

const helpUsage = `Usage: imapwarden help [command]

Show the help text of a command, or the list of commands.
`

func cmdHelp(_ context.Context, args []string, stdout, stderr io.Writer) int {
	switch len(args) {
	case 0:
		mainUsage(stdout)
		return exitOK
	case 1:
		if c := findCommand(args[0]); c != nil {
			c.usage(stdout)
			return exitOK
		}
		fmt.Fprintf(stderr, "imapwarden help: unknown command %q\n", args[0])
	default:
		fmt.Fprint(stderr, helpUsage)
	}
	return exitUsage
}

// newFlagSet makes a FlagSet that leaves help and error output to
// parseFlags.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses args. On -h it prints the usage to stdout; on an error it
// prints the error and a hint to stderr. ok is false when the caller should
// return code.
func parseFlags(fs *flag.FlagSet, args []string, usage string, stdout, stderr io.Writer) (code int, ok bool) {
	err := fs.Parse(args)
	switch {
	case err == nil && fs.NArg() > 0:
		fmt.Fprintf(stderr, "imapwarden %s: unexpected argument %q\nRun \"imapwarden help %s\" for usage.\n", fs.Name(), fs.Arg(0), fs.Name())
		return exitUsage, false
	case err == nil:
		return 0, true
	case errors.Is(err, flag.ErrHelp):
		printFlagUsage(stdout, usage, fs)
		return exitOK, false
	default:
		fmt.Fprintf(stderr, "imapwarden %s: %v\nRun \"imapwarden help %s\" for usage.\n", fs.Name(), err, fs.Name())
		return exitUsage, false
	}
}

// printFlagUsage writes text, then every flag with its help.
func printFlagUsage(w io.Writer, text string, fs *flag.FlagSet) {
	fmt.Fprint(w, text)
	fmt.Fprint(w, "\nFlags:\n")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

const versionUsage = `Usage: imapwarden version

Print imapwarden's version, the commit it was built from (with "-dirty" when
the checkout had changes) and that commit's date, and the Go version it was
built with. "imapwarden --version" prints the same.
`

func cmdVersion(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version")
	if code, ok := parseFlags(fs, args, versionUsage, stdout, stderr); !ok {
		return code
	}
	b := buildDetails()
	fmt.Fprintf(stdout, "imapwarden %s\ncommit %s\ndate %s\n%s %s/%s\n", versionString(), b.revision, b.date, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}

// buildInfo is what is known of the build: revision and date are "unknown"
// when neither -ldflags nor the toolchain recorded them.
type buildInfo struct{ revision, date string }

func buildDetails() buildInfo {
	b := buildInfo{revision: commit, date: date}
	if bi, ok := debug.ReadBuildInfo(); ok {
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if b.revision == "" {
					b.revision = s.Value
				}
			case "vcs.time":
				if b.date == "" {
					b.date = s.Value
				}
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty && commit == "" && b.revision != "" {
			b.revision += "-dirty"
		}
	}
	if b.revision == "" {
		b.revision = "unknown"
	}
	if b.date == "" {
		b.date = "unknown"
	}
	return b
}

// versionString is the -ldflags version, else the module version from the
// build information ("(devel)" for a build from a checkout).
func versionString() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Main.Version == "" {
		return "(unknown)"
	}
	v := bi.Main.Version
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if v == "(devel)" && rev != "" {
		v += " " + rev[:min(len(rev), 12)] + dirty
	}
	return v
}

// indent prefixes every line of s with two spaces, for error lists.
func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}
