package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// The first message of the demo INBOX, as clients must see it.
const (
	firstSubject   = "Subject: Welcome to the imapwarden demo"
	firstMessageID = "Message-ID: <20250303091200.1@example.org>"
)

// syncBuffer is a bytes.Buffer safe for the demo goroutine and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startDemo runs runDemo on free loopback ports until stop is called (or the
// test ends).
func startDemo(t *testing.T) (info demoInfo, out *syncBuffer, logs *observer.ObservedLogs, stop func()) {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	log := zap.New(zapcore.NewTee(core, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)).Core()))
	ctx, cancel := context.WithCancel(context.Background())
	out = new(syncBuffer)
	started := make(chan demoInfo, 1)
	done := make(chan error, 1)
	go func() {
		done <- runDemo(ctx, demoOptions{
			IMAPS:    ":0", // no host: the demo must pick 127.0.0.1
			StartTLS: "127.0.0.1:0",
			Admin:    "127.0.0.1:0",
			Logger:   log,
			Started:  func(i demoInfo) { started <- i },
		}, out)
	}()
	select {
	case info = <-started:
	case err := <-done:
		cancel()
		t.Fatalf("runDemo: %v", err)
	case <-time.After(testenv.IOTimeout()):
		cancel()
		t.Fatal("demo did not start")
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("runDemo: %v", err)
				}
			case <-time.After(testenv.IOTimeout()):
				t.Error("demo did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return info, out, logs, stop
}

// runTool runs a command with a deadline and returns its standard output.
func runTool(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testenv.IOTimeout())
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s %q: %w\nstderr: %s", name, args, err, stderr.String())
	}
	return stdout.String(), err
}

func checkFirstMessage(t *testing.T, what, out string) {
	t.Helper()
	for _, want := range []string{firstSubject, firstMessageID, "From: Alice Martin <alice@example.org>", "this message came to you through imapwarden"} {
		if !strings.Contains(out, want) {
			t.Errorf("%s: output lacks %q:\n%s", what, want, out)
		}
	}
}

// pythonFetch logs in with imaplib, selects INBOX and fetches message 1.
const pythonFetch = `
import imaplib, ssl, sys
host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
if mode == "imaps":
    c = imaplib.IMAP4_SSL(host, port, ssl_context=ctx)
else:
    c = imaplib.IMAP4(host, port)
    c.starttls(ssl_context=ctx)
typ, _ = c.login("demo", "demo-password")
assert typ == "OK", typ
typ, data = c.select("INBOX")
assert typ == "OK" and data[0] == b"3", (typ, data)
typ, data = c.fetch("1", "(RFC822)")
assert typ == "OK", typ
sys.stdout.write(data[0][1].decode())
c.logout()
`

func TestDemoEndToEnd(t *testing.T) {
	curl := testenv.NeedTool(t, "curl")
	python := testenv.NeedTool(t, "python3")
	baseline := runtime.NumGoroutine()

	info, out, logs, stop := startDemo(t)
	if !strings.HasPrefix(info.IMAPS, "127.0.0.1:") || !strings.HasPrefix(info.StartTLS, "127.0.0.1:") {
		t.Fatalf("demo listens on %+v, want 127.0.0.1", info)
	}
	imapsHost, imapsPort, _ := net.SplitHostPort(info.IMAPS)
	starttlsHost, starttlsPort, _ := net.SplitHostPort(info.StartTLS)

	// The shipped policies and the trail: the demo shows a refusal and the
	// audit query that finds it, and the printed verify command passes.
	t.Run("policies and audit trail", func(t *testing.T) {
		text := out.String()
		for _, want := range []string{"S: b NO [NOPERM] INBOX is protected", "imapwarden audit query ", "policy.deny", "b DELETE INBOX => NO [NOPERM]", "imapwarden audit verify -key "} {
			if !strings.Contains(text, want) {
				t.Errorf("demo output lacks %q:\n%s", want, text)
			}
		}
		m := regexp.MustCompile(`imapwarden audit verify -key (\S+) (\S+)`).FindStringSubmatch(text)
		if m == nil {
			t.Fatal("no verify command")
		}
		var o, e strings.Builder
		if code := runAudit([]string{"verify", "-key", m[1], m[2]}, &o, &e); code != 0 {
			t.Errorf("printed verify: %d %s%s", code, o.String(), e.String())
		}
		if code := runAudit([]string{"verify", m[2]}, &o, &e); code == 0 {
			t.Error("the demo trail verifies without its key: not HMAC-chained")
		}
	})

	t.Run("curl STARTTLS", func(t *testing.T) {
		got, err := runTool(t, curl, "--silent", "--show-error", "--insecure", "--ssl-reqd", "--user", "demo:demo-password",
			"imap://"+info.StartTLS+"/INBOX;UID=1")
		if err != nil {
			t.Fatal(err)
		}
		checkFirstMessage(t, "curl imap://", got)
	})
	t.Run("curl implicit TLS", func(t *testing.T) {
		got, err := runTool(t, curl, "--silent", "--show-error", "--insecure", "--user", "demo:demo-password",
			"imaps://"+info.IMAPS+"/INBOX;UID=1")
		if err != nil {
			t.Fatal(err)
		}
		checkFirstMessage(t, "curl imaps://", got)
	})
	t.Run("curl wrong password", func(t *testing.T) {
		if _, err := runTool(t, curl, "--silent", "--insecure", "--user", "demo:wrong", "imaps://"+info.IMAPS+"/INBOX;UID=1"); err == nil {
			t.Error("curl succeeded with a wrong password")
		}
	})
	t.Run("python imaplib implicit TLS", func(t *testing.T) {
		got, err := runTool(t, python, "-c", pythonFetch, imapsHost, imapsPort, "imaps")
		if err != nil {
			t.Fatal(err)
		}
		checkFirstMessage(t, "imaplib IMAP4_SSL", got)
	})
	t.Run("python imaplib STARTTLS", func(t *testing.T) {
		got, err := runTool(t, python, "-c", pythonFetch, starttlsHost, starttlsPort, "starttls")
		if err != nil {
			t.Fatal(err)
		}
		checkFirstMessage(t, "imaplib starttls", got)
	})
	// The instructions the demo prints must work as printed: run each
	// command line through the shell, as a reader pasting it would.
	t.Run("printed commands", func(t *testing.T) {
		testenv.NeedTool(t, "sh")
		text := out.String()
		for _, want := range []string{"implicit TLS  " + info.IMAPS, "STARTTLS      " + info.StartTLS, "user          demo", "password      demo-password"} {
			if !strings.Contains(text, want) {
				t.Errorf("output lacks %q:\n%s", want, text)
			}
		}
		var cmds, adminCmds []string
		for _, line := range strings.Split(text, "\n") {
			line = strings.TrimSpace(line)
			switch {
			case strings.HasPrefix(line, "curl -s http://"):
				adminCmds = append(adminCmds, line)
			case strings.HasPrefix(line, "curl ") || strings.HasPrefix(line, "python3 "):
				cmds = append(cmds, line)
			}
		}
		if len(cmds) != 4 || len(adminCmds) != 2 {
			t.Fatalf("found %d mail and %d admin commands, want 2 curl and 2 python3, and 2 admin:\n%s", len(cmds), len(adminCmds), text)
		}
		for _, c := range adminCmds {
			got, err := runTool(t, "sh", "-c", c)
			if err != nil || !(strings.HasPrefix(got, "{") && strings.Contains(got, `"sessions":`) || strings.Contains(got, `imapwarden_connections_total{listener="imaps"}`)) {
				t.Errorf("printed admin command %q: %v\n%s", c, err, got)
			}
		}
		for _, c := range cmds {
			got, err := runTool(t, "sh", "-c", c)
			if err != nil {
				t.Errorf("printed command failed: %v", err)
				continue
			}
			checkFirstMessage(t, c, got)
		}
		if !strings.Contains(text, "curl --insecure --ssl-reqd --user demo:demo-password 'imap://"+info.StartTLS+"/INBOX;UID=1'") {
			t.Errorf("STARTTLS curl command not printed as documented:\n%s", text)
		}
	})

	waitSessionsClosed(t, logs)
	stop()
	checkGoroutines(t, baseline)
}

func TestDemoAddresses(t *testing.T) {
	for in, want := range map[string]string{"": "", ":0": "127.0.0.1:0", ":9993": "127.0.0.1:9993", "0.0.0.0:1": "0.0.0.0:1", "[::1]:5": "[::1]:5"} {
		if got, err := demoListenAddr(in); err != nil || got != want {
			t.Errorf("demoListenAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"9993", "localhost:imaps", "1.2.3.4:70000"} {
		if _, err := demoListenAddr(in); err == nil {
			t.Errorf("demoListenAddr(%q): no error", in)
		}
	}
	for in, want := range map[string]string{"0.0.0.0:993": "127.0.0.1:993", "[::]:993": "[::1]:993", "127.0.0.1:5": "127.0.0.1:5", "[::1]:5": "[::1]:5"} {
		a, err := net.ResolveTCPAddr("tcp", in)
		if err != nil {
			t.Fatal(err)
		}
		if got := clientHostPort(a); got != want {
			t.Errorf("clientHostPort(%s) = %s, want %s", in, got, want)
		}
	}
	err := runDemo(context.Background(), demoOptions{}, new(bytes.Buffer))
	if err == nil || !strings.Contains(err.Error(), "both listeners are off") {
		t.Errorf("runDemo without listeners: %v", err)
	}
}

// checkGoroutines waits for the goroutines of the proxy, the TLS server and
// the in-memory backend to end, and for the count to fall back to baseline.
func checkGoroutines(t *testing.T, baseline int) {
	t.Helper()
	deadline := time.Now().Add(testenv.IOTimeout())
	for {
		left := ourGoroutines()
		n := runtime.NumGoroutine()
		if len(left) == 0 && n <= baseline {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d goroutines, %d before the test; still running:\n\n%s", n, baseline, strings.Join(left, "\n\n"))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ourGoroutines() []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var left []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, pkg := range []string{"imapwarden/proxy.", "imapwarden/tlsterm.", "go-imap/v2/imapserver", "main.runDemo", "main.runServe", "main.startDemoBackend"} {
			if strings.Contains(g, pkg) {
				left = append(left, g)
				break
			}
		}
	}
	return left
}
