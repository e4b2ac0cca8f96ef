package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/policies"
	"github.com/imapwarden/imapwarden/proxy"
)

// demoHooks gives the demo what the packages enable: the shipped policies
// (copied from the binary into dir/policies) and an HMAC-chained audit
// trail in dir, built by the same code as serve.
func demoHooks(dir string, log *zap.Logger) (*setup, error) {
	pdir := filepath.Join(dir, "policies")
	if err := os.CopyFS(pdir, policies.FS); err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	s := &setup{reg: newRegistry()}
	s.opts.Auditor = proxy.NewLogAuditor(log)
	var p problems
	buildPolicy(&p, s, policyConfig{Dirs: []policyDirConfig{{Path: pdir}}, PollInterval: ptr(duration(-1))}, nil, log)
	buildAudit(&p, s, auditConfig{Path: filepath.Join(dir, "audit.jsonl"), KeyFile: filepath.Join(dir, "audit.key"), CreateKey: true, Fsync: "always"}, false, log)
	if err := p.err(nil); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func ptr[T any](v T) *T { return &v }

// demoRefusal logs in through the proxy, sends DELETE INBOX, which the
// shipped protected_folders policy refuses, and prints the exchange and
// the audit query that finds it in the trail.
func demoRefusal(w io.Writer, info demoInfo, dir string) error {
	var c net.Conn
	var err error
	d := &net.Dialer{Timeout: 30 * time.Second}
	tc := &tls.Config{InsecureSkipVerify: true} // the demo's own self-signed certificate
	r := (*bufio.Reader)(nil)
	if info.IMAPS != "" {
		c, err = tls.DialWithDialer(d, "tcp", info.IMAPS, tc)
	} else {
		c, err = d.Dial("tcp", info.StartTLS)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r = bufio.NewReader(c)
	cmd := func(tag, line string) (string, error) {
		if _, err := fmt.Fprintf(c, "%s %s\r\n", tag, line); err != nil {
			return "", err
		}
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return "", err
			}
			if strings.HasPrefix(l, tag+" ") {
				return strings.TrimRight(l, "\r\n"), nil
			}
		}
	}
	if _, err := r.ReadString('\n'); err != nil { // greeting
		return err
	}
	if info.IMAPS == "" {
		if _, err := cmd("s", "STARTTLS"); err != nil {
			return err
		}
		t := tls.Client(c, tc)
		c, r = t, bufio.NewReader(t)
	}
	if l, err := cmd("a", fmt.Sprintf("LOGIN %s %s", demoUser, demoPassword)); err != nil || !strings.HasPrefix(l, "a OK") {
		return fmt.Errorf("login: %q %v", l, err)
	}
	refused, err := cmd("b", "DELETE INBOX")
	if err != nil {
		return err
	}
	cmd("c", "LOGOUT")
	trail, key := filepath.Join(dir, "audit.jsonl"), filepath.Join(dir, "audit.key")
	var out, errOut strings.Builder
	runAudit([]string{"query", trail, "--command", "DELETE"}, &out, &errOut)
	fmt.Fprintf(w, `The shipped policies are enforced (%s). The demo just sent a command they refuse:

  C: b DELETE INBOX
  S: %s

Every session, login, command and refusal goes to an HMAC-chained audit trail. Find the refusal:

  imapwarden audit query %s --command DELETE

%s%s
and prove the trail untouched with its key:

  imapwarden audit verify -key %s %s

`, filepath.Join(dir, "policies"), refused, trail, indentLines(out.String()), indentLines(errOut.String()), key, trail)
	return nil
}

// indentLines indents each line of s by two spaces.
func indentLines(s string) string {
	if s == "" {
		return ""
	}
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ") + "\n"
}
