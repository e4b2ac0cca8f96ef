package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/imapwarden/imapwarden/audit"
	"github.com/imapwarden/imapwarden/internal/termsafe"
)

const auditUsage = `Usage:

	imapwarden audit verify [-key FILE]... [-checkpoint FILE] FILE...
	imapwarden audit query FILE... [--user U] [--mailbox M] [--ip CIDR]
		[--since T] [--until T] [--kind K] [--format table|json]

verify checks the hash chain of an audit trail: every record must carry the
hash of the one before it, with seq rising by one, across rotated files
(give them all, in any order: audit*.jsonl). It prints the first broken link:
an edited, removed, reordered or forged record (one with a key twice, or,
with -key, one the key did not sign), or a torn last line (the writer was
killed in the middle of a write: truncation, not tampering). Lines with a
syslog header before the record are read too. With -key, OK means that the
key signed every record; without it, anyone who can write the trail can
rebuild its chain. With -checkpoint (the file audit.checkpoint_file names,
signed with the trail's key: give -key), verify also proves completeness:
the record the checkpoint names must be in the files given and unchanged,
else the trail was cut short (SHORT) or the files are not linked to it.
Exit status: 0 intact, 1 broken, short or unlinked, 3 truncated (the
records before the torn line are intact), 2 usage error or unreadable files.

query prints the records that match every filter given, in chain order, as a
table (default) or as the original JSON lines. It does not check the chain:
run verify for that. Control characters and others a terminal would act on
are shown escaped (\x1b, \u2028); in JSON lines as JSON escapes, the same
value. Which messages did alice read last week?

	imapwarden audit query audit*.jsonl --user alice --fetch body --since 168h
`

const (
	auditExitBroken    = 1
	auditExitTruncated = 3
)

// runAudit runs "imapwarden audit verify|query ARGS".
func runAudit(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, auditUsage)
		return exitUsage
	}
	switch args[0] {
	case "verify":
		return auditVerify(args[1:], stdout, stderr)
	case "query":
		return auditQuery(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, auditUsage)
		return exitOK
	}
	fmt.Fprintf(stderr, "imapwarden audit: unknown subcommand %q\n\n%s", args[0], auditUsage)
	return exitUsage
}

// parseInterleaved parses flags that may come before, between or after
// the file names, as "audit query FILE... --user U" puts them.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var files []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return files, nil
		}
		files = append(files, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// auditFlags parses args; ok is false when the caller returns code.
func auditFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (files []string, code int, ok bool) {
	files, err := parseInterleaved(fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		printFlagUsage(stdout, auditUsage, fs)
		return nil, exitOK, false
	case err != nil:
		fmt.Fprintf(stderr, "imapwarden audit %s: %v\nRun \"imapwarden audit -h\" for usage.\n", fs.Name(), err)
		return nil, exitUsage, false
	case len(files) == 0:
		fmt.Fprintf(stderr, "imapwarden audit %s: no files given\nRun \"imapwarden audit -h\" for usage.\n", fs.Name())
		return nil, exitUsage, false
	}
	return files, 0, true
}

func auditVerify(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("verify")
	var keys [][]byte
	fs.Func("key", "`FILE` holding the HMAC key of an HMAC-chained trail (repeat for keys used over time, oldest first: a chain signed with a key before an earlier chain's is a break)", func(p string) error {
		k, err := audit.LoadKey(p)
		if err == nil {
			keys = append(keys, k)
		}
		return err
	})
	var cpPath string
	fs.StringVar(&cpPath, "checkpoint", "", "`FILE` holding the trail's last checkpoint (audit.checkpoint_file): fail when the trail is shorter")
	files, code, ok := auditFlags(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	vo := audit.VerifyOptions{Keys: keys}
	if cpPath != "" {
		cp, err := audit.ReadCheckpoint(cpPath, keys)
		if err != nil {
			fmt.Fprintf(stderr, "imapwarden audit verify: %v\n", err)
			return exitUsage
		}
		vo.Checkpoint = cp
	}
	rep, err := audit.Verify(files, vo)
	if err != nil {
		fmt.Fprintf(stderr, "imapwarden audit verify: %s\n", termsafe.String(err.Error()))
		return exitUsage
	}
	writeReport(stdout, rep)
	switch {
	case rep.Break == nil:
		return exitOK
	case rep.Break.Kind == audit.BreakTruncated:
		return auditExitTruncated
	}
	return auditExitBroken
}

func auditQuery(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("query")
	var fa auditFilterArgs
	var format string
	fs.StringVar(&fa.User, "user", "", "records of user `U`, exactly (case-insensitive)")
	fs.StringVar(&fa.UserGlob, "user-glob", "", "records of users matching `PATTERN` (case-insensitive; * any run, / too; ? one character; \\ escapes)")
	fs.StringVar(&fa.Mailbox, "mailbox", "", "records naming mailbox `M` exactly (as mailbox, destination, selected, source or watched; INBOX as first level in any case)")
	fs.StringVar(&fa.MailboxGlob, "mailbox-glob", "", "records naming a mailbox matching `PATTERN` (as --user-glob, case-sensitive)")
	fs.StringVar(&fa.IP, "ip", "", "records of clients in `CIDR` (or one IP)")
	fs.StringVar(&fa.Since, "since", "", "records at or after `T`: RFC 3339, a date (UTC), or a duration before now (24h)")
	fs.StringVar(&fa.Until, "until", "", "records before `T` (as for --since)")
	fs.StringVar(&fa.Kind, "kind", "", "records of kinds `K`, comma separated; \"policy\" means policy.*")
	fs.StringVar(&fa.Session, "session", "", "records of session `ID`")
	fs.StringVar(&fa.Command, "command", "", "commands named `NAME` (FETCH, \"UID FETCH\", ...)")
	fs.StringVar(&fa.Fetch, "fetch", "", "FETCH commands that read `CLASS`: body, header or metadata")
	fs.StringVar(&format, "format", "table", "output `FORMAT`: table or json (the records as stored, one a line)")
	files, code, ok := auditFlags(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "imapwarden audit query: "+format+"\n", a...)
		return exitUsage
	}
	f, err := fa.filter(time.Now(), "--")
	if err != nil {
		return bad("%v", err)
	}

	var emit func(r *audit.Record, line []byte) error
	var flush func() error
	switch format {
	case "json":
		var buf []byte
		emit = func(_ *audit.Record, line []byte) error {
			if !json.Valid(line) {
				return nil
			}
			buf = append(termsafe.AppendText(buf[:0], line), '\n')
			_, err := stdout.Write(buf)
			return err
		}
		flush = func() error { return nil }
	case "table":
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME (UTC)\tKIND\tUSER\tCLIENT\tSESSION\tWHAT")
		emit = func(r *audit.Record, _ []byte) error {
			client := "-"
			if r.IP.IsValid() {
				client = r.IP.String()
			}
			_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Time.UTC().Format("2006-01-02 15:04:05"), orDash(string(r.Kind)),
				orDash(r.User), client, orDash(r.Session), orDash(r.Summary()))
			return err
		}
		flush = tw.Flush
	default:
		return bad("--format %q: want table or json", format)
	}
	skipped, err := audit.Query(files, &f, emit)
	if err == nil {
		err = flush()
	}
	if err != nil {
		fmt.Fprintf(stderr, "imapwarden audit query: %s\n", termsafe.String(err.Error()))
		return exitError
	}
	if skipped > 0 {
		fmt.Fprintf(stderr, "imapwarden audit query: %d lines that are not records (torn, damaged or forged) were skipped (run verify)\n", skipped)
	}
	return exitOK
}

// orDash is a table cell: "-" for nothing, and a client's strings escaped,
// so that they can neither break the columns nor drive the auditor's
// terminal (erase the line, forge another).
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return termsafe.String(s)
}

// writeReport writes verify's report with every string in it escaped:
// file names and messages may quote what a trail's author chose.
func writeReport(w io.Writer, rep *audit.Report) {
	safe := *rep
	if b := rep.Break; b != nil {
		safe.Break = &audit.Break{Kind: audit.BreakKind(termsafe.String(string(b.Kind))), File: termsafe.String(b.File),
			Line: b.Line, Seq: b.Seq, Msg: termsafe.String(b.Msg)}
	}
	safe.Files = slices.Clone(rep.Files)
	for i := range safe.Files {
		safe.Files[i].Name = termsafe.String(safe.Files[i].Name)
	}
	safe.Chains = mapStrings(rep.Chains)
	safe.Notes = mapStrings(rep.Notes)
	safe.WriteText(w)
}

func mapStrings(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = termsafe.String(s)
	}
	return out
}

// auditFilterArgs are the filters of "audit query", as text: the CLI's
// flags and the admin API's and console's query parameters alike.
type auditFilterArgs struct {
	User, UserGlob, Mailbox, MailboxGlob, IP, Since, Until, Kind, Session, Command, Fetch string
}

// filterArgsFrom reads the filters from query parameters.
func filterArgsFrom(q interface{ Get(string) string }) auditFilterArgs {
	return auditFilterArgs{User: q.Get("user"), UserGlob: q.Get("user_glob"), Mailbox: q.Get("mailbox"), MailboxGlob: q.Get("mailbox_glob"),
		IP: q.Get("ip"), Since: q.Get("since"),
		Until: q.Get("until"), Kind: q.Get("kind"), Session: q.Get("session"), Command: q.Get("command"), Fetch: q.Get("fetch")}
}

// filter checks the arguments and makes the audit.Filter; relative times
// count back from now. prefix goes before the names in errors ("--").
func (fa auditFilterArgs) filter(now time.Time, prefix string) (audit.Filter, error) {
	f := audit.Filter{User: fa.User, UserGlob: fa.UserGlob, Mailbox: fa.Mailbox, MailboxGlob: fa.MailboxGlob,
		Session: fa.Session, Command: fa.Command, Fetch: fa.Fetch}
	if err := f.Check(); err != nil {
		return f, err
	}
	var err error
	if fa.IP != "" {
		if f.Net, err = netip.ParsePrefix(fa.IP); err != nil {
			a, aerr := netip.ParseAddr(fa.IP)
			if aerr != nil {
				return f, fmt.Errorf("%sip %q: want a CIDR or an IP address", prefix, fa.IP)
			}
			f.Net = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
	}
	if fa.Since != "" {
		if f.Since, err = audit.ParseTime(fa.Since, now); err != nil {
			return f, fmt.Errorf("%ssince: %v", prefix, err)
		}
	}
	if fa.Until != "" {
		if f.Until, err = audit.ParseTime(fa.Until, now); err != nil {
			return f, fmt.Errorf("%suntil: %v", prefix, err)
		}
	}
	if fa.Kind != "" {
		f.Kinds = strings.Split(fa.Kind, ",")
	}
	switch f.Fetch {
	case "", audit.FetchBody, audit.FetchHeader, audit.FetchMetadata:
	default:
		return f, fmt.Errorf("%sfetch %q: want body, header or metadata", prefix, f.Fetch)
	}
	return f, nil
}
