package main

// Shell completion and the manual page, generated from the command table
// and the commands' flag sets, so that they cannot drift from the CLI.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// commandFlags gives the flag set of each command that has one.
var commandFlags = map[string]func() *flag.FlagSet{
	"serve":    func() *flag.FlagSet { return newServeFlags(nil) },
	"validate": func() *flag.FlagSet { return newValidateFlags(nil) },
	"demo":     func() *flag.FlagSet { return newDemoFlags(nil) },
	"config":   func() *flag.FlagSet { return newConfigFlags(nil) },
}

// subcommands of the commands that dispatch on a word.
var subcommands = map[string][]string{
	"audit":      {"verify", "query"},
	"policy":     {"test", "eval"},
	"config":     {"dump"},
	"completion": {"bash", "zsh"},
}

// flagInfo is one flag as completion and the manual show it.
type flagInfo struct {
	name, arg, usage string // arg: "" for a boolean flag
}

func flagsOf(name string) []flagInfo {
	mk, ok := commandFlags[name]
	if !ok {
		return nil
	}
	var out []flagInfo
	mk().VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			arg = ""
		}
		out = append(out, flagInfo{name: f.Name, arg: arg, usage: usage})
	})
	return out
}

// dash is how the help text writes a flag: one dash for one letter.
func dash(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// takesFile reports a flag whose argument is a file or directory name.
func takesFile(f flagInfo) bool {
	return f.arg == "FILE" || f.arg == "DIR" || strings.HasSuffix(f.arg, "FILE")
}

const completionUsage = `Usage: imapwarden completion bash|zsh

Print a completion script for the shell, made from imapwarden's own command
and flag definitions:

	imapwarden completion bash > /etc/bash_completion.d/imapwarden
	imapwarden completion zsh > "${fpath[1]}/_imapwarden"
`

func cmdCompletion(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("completion")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			fmt.Fprint(stdout, completionUsage)
			return exitOK
		}
		fmt.Fprintf(stderr, "imapwarden completion: %v\n%s", err, completionUsage)
		return exitUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprint(stderr, completionUsage)
		return exitUsage
	}
	switch fs.Arg(0) {
	case "bash":
		writeBashCompletion(stdout)
	case "zsh":
		writeZshCompletion(stdout)
	default:
		fmt.Fprintf(stderr, "imapwarden completion: unknown shell %q (want bash or zsh)\n", fs.Arg(0))
		return exitUsage
	}
	return exitOK
}

// completionOf gives what may follow a command: its flags, and the words
// of its subcommands (help takes a command name).
func completionOf(name string) ([]flagInfo, []string) {
	if name == "help" {
		return nil, commandNames()
	}
	return flagsOf(name), subcommands[name]
}

func commandNames() []string {
	var names []string
	for _, c := range commands {
		names = append(names, c.name)
	}
	return names
}

func writeBashCompletion(w io.Writer) {
	fmt.Fprintf(w, `# bash completion for imapwarden; made by "imapwarden completion bash".
_imapwarden() {
	local cur prev cmd
	cur="${COMP_WORDS[COMP_CWORD]}"
	prev="${COMP_WORDS[COMP_CWORD-1]}"
	cmd="${COMP_WORDS[1]}"
	COMPREPLY=()
	if [ "$COMP_CWORD" -eq 1 ]; then
		mapfile -t COMPREPLY < <(compgen -W %q -- "$cur")
		return
	fi
	case "$cmd" in
`, strings.Join(commandNames(), " ")+" --help --version")
	for _, c := range commands {
		flags, subs := completionOf(c.name)
		if len(flags) == 0 && len(subs) == 0 {
			continue
		}
		fmt.Fprintf(w, "\t%s)\n", c.name)
		var fileFlags, words []string
		for _, f := range flags {
			words = append(words, dash(f.name))
			if takesFile(f) {
				fileFlags = append(fileFlags, dash(f.name))
			}
		}
		if len(fileFlags) > 0 {
			fmt.Fprintf(w, "\t\tcase \"$prev\" in\n\t\t%s)\n\t\t\tmapfile -t COMPREPLY < <(compgen -f -- \"$cur\")\n\t\t\treturn\n\t\t\t;;\n\t\tesac\n", strings.Join(fileFlags, " | "))
		}
		if len(subs) > 0 {
			fmt.Fprintf(w, "\t\tif [ \"$COMP_CWORD\" -eq 2 ]; then\n\t\t\tmapfile -t COMPREPLY < <(compgen -W %q -- \"$cur\")\n\t\t\treturn\n\t\tfi\n", strings.Join(subs, " "))
		}
		if len(words) > 0 {
			fmt.Fprintf(w, "\t\tmapfile -t COMPREPLY < <(compgen -W %q -- \"$cur\")\n", strings.Join(words, " "))
		}
		fmt.Fprint(w, "\t\t;;\n")
	}
	fmt.Fprint(w, `	esac
}
complete -o default -F _imapwarden imapwarden
`)
}

// zshQuote quotes s for a single-quoted zsh word.
func zshQuote(s string) string { return strings.ReplaceAll(s, "'", `'\''`) }

func writeZshCompletion(w io.Writer) {
	fmt.Fprint(w, "#compdef imapwarden\n# zsh completion for imapwarden; made by \"imapwarden completion zsh\".\n\n_imapwarden() {\n\tlocal -a commands\n\tcommands=(\n")
	for _, c := range commands {
		fmt.Fprintf(w, "\t\t'%s:%s'\n", c.name, zshQuote(c.synopsis))
	}
	fmt.Fprint(w, "\t)\n\tif (( CURRENT == 2 )); then\n\t\t_describe 'command' commands\n\t\treturn\n\tfi\n\tcase $words[2] in\n")
	for _, c := range commands {
		flags, subs := completionOf(c.name)
		if len(flags) == 0 && len(subs) == 0 {
			continue
		}
		fmt.Fprintf(w, "\t%s)\n\t\t_arguments \\\n", c.name)
		for _, f := range flags {
			help := zshQuote(strings.ReplaceAll(strings.ReplaceAll(f.usage, "[", `\[`), "]", `\]`))
			help = strings.ReplaceAll(help, ":", `\:`)
			switch {
			case f.arg == "":
				fmt.Fprintf(w, "\t\t\t'%s[%s]' \\\n", dash(f.name), help)
			case takesFile(f):
				fmt.Fprintf(w, "\t\t\t'%s[%s]:%s:_files' \\\n", dash(f.name), help, strings.ToLower(f.arg))
			default:
				fmt.Fprintf(w, "\t\t\t'%s[%s]:%s:' \\\n", dash(f.name), help, strings.ToLower(f.arg))
			}
		}
		if len(subs) > 0 {
			fmt.Fprintf(w, "\t\t\t'2:subcommand:(%s)' \\\n", strings.Join(subs, " "))
		}
		fmt.Fprint(w, "\t\t\t'*:file:_files'\n\t\t;;\n")
	}
	fmt.Fprint(w, "\tesac\n}\n\n_imapwarden \"$@\"\n")
}

const manUsage = `Usage: imapwarden man

Print imapwarden's manual page (roff, section 1), made from the commands'
own help and flags:

	imapwarden man > /usr/local/share/man/man1/imapwarden.1
	imapwarden man | man -l -
`

func cmdMan(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("man")
	if code, ok := parseFlags(fs, args, manUsage, stdout, stderr); !ok {
		return code
	}
	writeMan(stdout, time.Now())
	return exitOK
}

// roffEscape makes text safe in a roff body: backslashes doubled, and a
// line starting with . or ' protected.
func roffEscape(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			lines[i] = `\&` + l
		}
	}
	return strings.Join(lines, "\n")
}

func writeMan(w io.Writer, now time.Time) {
	fmt.Fprintf(w, `.TH IMAPWARDEN 1 %q "imapwarden %s" "User Commands"
.SH NAME
imapwarden \- IMAP security proxy: TLS, policies, rate limits and an audit trail in front of IMAP servers
.SH SYNOPSIS
.B imapwarden
.I command
.RI [ flags ]
.SH DESCRIPTION
imapwarden stands in front of IMAP servers (Dovecot, Cyrus, Courier, Exchange).
It terminates TLS toward clients, refuses passwords before TLS, logs in to the
right backend for each user, then parses every command so that OPA policies,
rate limits and a tamper-evident audit trail apply whatever the backend is.
.SH COMMANDS
`, now.UTC().Format("2006-01-02"), roffEscape(versionString()))
	for _, c := range commands {
		fmt.Fprintf(w, ".SS %s\n%s.\n.PP\n.nf\n", c.name, roffEscape(c.synopsis))
		var help strings.Builder
		c.usage(&help)
		text := help.String()
		// The flags are listed below, as roff, rather than as Go prints them.
		if i := strings.Index(text, "\nFlags:\n"); i >= 0 && len(flagsOf(c.name)) > 0 {
			text = text[:i]
		}
		fmt.Fprintf(w, "%s\n.fi\n", roffEscape(strings.TrimRight(strings.ReplaceAll(text, "\t", "    "), "\n")))
		for _, f := range flagsOf(c.name) {
			fmt.Fprintf(w, ".TP\n.B %s", strings.ReplaceAll(dash(f.name), "-", `\-`))
			if f.arg != "" {
				fmt.Fprintf(w, " \" \"\n.I %s", roffEscape(f.arg))
			}
			fmt.Fprintf(w, "\n%s\n", roffEscape(f.usage))
		}
	}
	fmt.Fprint(w, `.SH EXIT STATUS
.TP
.B 0
success.
.TP
.B 1
a runtime error: a configuration that does not check, a file that cannot be
read, a proxy that failed, a policy test that failed.
.TP
.B 2
a usage error: an unknown command or flag, a missing or extra argument, flags
that cannot go together.
.PP
"imapwarden audit verify" also exits 1 for a broken or short trail and 3 for
a truncated one (see its help).
.SH FILES
.TP
.I /etc/imapwarden/imapwarden.yaml
the configuration (the packages' default path).
.TP
.I /etc/imapwarden/policies
the shipped Rego policies, each configured by its data.yaml.
.TP
.I /var/log/imapwarden/audit.jsonl
the audit trail of the packaged configurations.
.SH SIGNALS
SIGHUP reloads the configuration, policies and certificates, keeping the
running ones if the new ones are wrong. SIGTERM and SIGINT turn readiness off,
keep serving for lame_duck, then drain sessions for up to drain_timeout; a
second signal stops at once.
.SH SEE ALSO
The README (configuration reference), policies/README.md, audit/README.md and
deploy/README.md of the imapwarden sources.
`)
}
