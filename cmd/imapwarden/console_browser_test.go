package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// browser starts a headless Chromium (Debian's chromium) with a fresh
// profile and returns a tab's context. Console messages that report a
// Content-Security-Policy violation or a script error fail the test;
// confirm() dialogs are accepted, as a person would.
func browser(t *testing.T) context.Context {
	t.Helper()
	exe := testenv.NeedTool(t, "chromium")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 900),
	}
	// A bound on the whole browser session so that a broken page fails
	// the test instead of hanging it; nothing in it is a timing check.
	ctx, cancelTimeout := context.WithTimeout(context.Background(), 5*time.Minute)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelTab(); cancelAlloc(); cancelTimeout() })
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	// confirm() dialogs are accepted, from another goroutine than the one
	// that receives the events.
	go func() {
		for _, err := range chromedp.Events(bctx, cdppage.JavascriptDialogOpening) {
			if err != nil {
				return
			}
			go chromedp.Do(bctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
				_, err := cdp.Call(ctx, tg, cdppage.HandleJavaScriptDialog, cdppage.HandleJavaScriptDialogParams{Accept: true})
				return err
			}))
		}
	}()
	var mu sync.Mutex
	var problems []string
	err := chromedp.Listen(bctx, func(ev any) {
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			mu.Lock()
			problems = append(problems, "exception: "+e.ExceptionDetails.Text)
			mu.Unlock()
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				mu.Lock()
				problems = append(problems, fmt.Sprintf("console error: %v", e.Args))
				mu.Unlock()
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range problems {
			t.Errorf("browser: %s", p)
		}
	})
	return bctx
}

// screenshot saves the page as NAME.png into $IMAPWARDEN_SCREENSHOTS,
// when set.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("IMAPWARDEN_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", path)
}

// step runs browser actions; on failure it reports where the page is and
// what it shows. Each step has a minute: a bound against a hang, not a
// timing check.
func step(t *testing.T, ctx context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		where, _ := chromedp.Run(dctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
		t.Fatalf("%v; the page: %s", err, where)
	}
}

// textOf is the text content of the first element matching sel.
func textOf(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	step(t, ctx, chromedp.WaitVisible(chromedp.CSS(sel)))
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// evalJS runs a JavaScript expression in the page.
func evalJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// loginLiteral tries LOGIN with a user name sent as a literal (RFC 9051
// §4.3), so that it may hold any octet but NUL, CR and LF.
func loginLiteral(c *imapConn, tag, user string) {
	c.t.Helper()
	fmt.Fprintf(c.c, "%s LOGIN {%d}\r\n", tag, len(user))
	if l := c.line(); !strings.HasPrefix(l, "+") {
		c.t.Fatalf("LOGIN literal: %q", l)
	}
	fmt.Fprintf(c.c, "%s wrong\r\n", user)
	for l := c.line(); !strings.HasPrefix(l, tag+" "); l = c.line() {
	}
}

// TestConsoleBrowser drives the console in a real headless Chromium:
// sign in with a token, the live sessions, the lockouts with an unlock
// click, the denials and limit hits, and an audit search, each checked
// on the rendered DOM, with client-chosen names shown escaped.
func TestConsoleBrowser(t *testing.T) {
	ctx := browser(t)
	f := startAdminFixture(t, "")
	// Markup, since control, format and bidi characters in a login name
	// are refused before any lockout counts it (ARCHITECTURE.md §17; their
	// marking is TestVis's).
	const hostile = `mallory<img src=x onerror="document.title='pwned'">`

	// A live session with a mailbox selected and a refused command.
	live := f.session()
	live.cmd("a", "OK", `LOGIN demo "demo-password"`)
	live.cmd("b", "OK", "SELECT INBOX")
	live.cmd("c", "NO [NOPERM]", "DELETE INBOX")
	live.cmd("d", "OK", "FETCH 1 BODY.PEEK[HEADER]")
	// Lockouts: bob, and a user whose name is made to fool a reader;
	// another try while locked out is a limit hit.
	bad := f.session()
	bad.cmd("e", "NO", "LOGIN bob wrong")
	bad.cmd("f", "NO", "LOGIN bob wrong")
	bad = f.session()
	loginLiteral(bad, "g", hostile)
	loginLiteral(bad, "h", hostile)
	f.session().cmd("i", "NO", "LOGIN bob wrong")

	base := "http://" + f.admin
	// Signed out, the console asks for a token.
	step(t, ctx, chromedp.Navigate(base+"/console/"), chromedp.WaitVisible(chromedp.CSS("#login")))
	screenshot(t, ctx, "console-login")
	step(t, ctx,
		chromedp.SendKeys(chromedp.CSS("#token"), testWriteToken),
		chromedp.Submit(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#sessions")),
	)
	// The token never reaches script: the cookie is HttpOnly.
	if ck := evalJS[string](t, ctx, "document.cookie"); ck != "" {
		t.Errorf("document.cookie = %q", ck)
	}
	if who := textOf(t, ctx, "#who"); who != "oncall (write)" {
		t.Errorf("signed in as %q", who)
	}

	// Sessions: user, client, TLS, backend, selected mailbox, bytes.
	row := evalJS[[]string](t, ctx, `Array.from(document.querySelectorAll("#sessions tbody tr"))
		.filter(tr => tr.querySelector(".user").textContent === "demo")
		.map(tr => Array.from(tr.cells).map(td => td.textContent.trim()).join("|"))`)
	if len(row) != 1 {
		t.Fatalf("session rows of demo: %q", row)
	}
	cells := strings.Split(row[0], "|")
	if cells[1] == "" || !strings.HasPrefix(cells[1], "127.0.0.1:") || cells[2] != "imaps" || !strings.HasPrefix(cells[3], "TLS1.") ||
		cells[4] != "mem" || cells[5] != "INBOX" || !strings.HasSuffix(cells[7], "B") || !strings.HasSuffix(cells[8], "B") || cells[8] == "0 B" {
		t.Errorf("demo's session row: %q", cells)
	}
	screenshot(t, ctx, "console-sessions")

	// Lockouts: the hostile name is shown as text, never as markup.
	step(t, ctx, chromedp.Navigate(base+"/console/lockouts"), chromedp.WaitVisible(chromedp.CSS("#lockouts")))
	users := evalJS[[]string](t, ctx, `Array.from(document.querySelectorAll("#lockouts td.user")).map(td => td.textContent)`)
	want := strings.ToLower(hostile) // lockouts keep user names lower-cased
	if !contains(users, "bob") || !contains(users, want) {
		t.Fatalf("locked users %q, want bob and %q", users, want)
	}
	if n := evalJS[int](t, ctx, `document.querySelectorAll("#lockouts img").length`); n != 0 {
		t.Errorf("%d img elements in the lockouts table: a user name became markup", n)
	}
	if title := evalJS[string](t, ctx, "document.title"); strings.Contains(title, "pwned") {
		t.Errorf("a user name ran script: title %q", title)
	}
	if raw := evalJS[bool](t, ctx, `/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/.test(document.body.textContent)`); raw {
		t.Error("a raw control or bidi character in the page")
	}
	screenshot(t, ctx, "console-lockouts")
	// Unlock bob with a click (the confirmation is accepted).
	step(t, ctx,
		chromedp.Click(chromedp.CSS(`#lockouts tr[data-user="bob"] button.unlock`)),
		chromedp.WaitVisible(chromedp.CSS("#flash")),
	)
	if flash := textOf(t, ctx, "#flash"); !strings.Contains(flash, "Unlocked user bob") {
		t.Errorf("flash after unlock: %q", flash)
	}
	users = evalJS[[]string](t, ctx, `Array.from(document.querySelectorAll("#lockouts td.user")).map(td => td.textContent)`)
	if contains(users, "bob") || !contains(users, want) {
		t.Errorf("after unlocking bob: %q", users)
	}
	screenshot(t, ctx, "console-unlocked")
	recs := f.adminRecords(2)
	if len(recs) != 2 || recs[0].Event != "console.login" || recs[1].Event != "console.unlock" || recs[1].User != "bob" ||
		recs[1].Actor != "oncall" || recs[1].Scope != "write" || recs[1].Detail != "user bob: 2 removed" {
		t.Errorf("audit of the sign-in and the unlock click: %+v", recs)
	}

	// Denials and limit hits.
	step(t, ctx, chromedp.Navigate(base+"/console/events"), chromedp.WaitVisible(chromedp.CSS("#events")))
	events := evalJS[[]string](t, ctx, `Array.from(document.querySelectorAll("#events tbody tr")).map(tr => Array.from(tr.cells).map(td => td.textContent.trim()).join("|"))`)
	var deny, limit bool
	for _, e := range events {
		deny = deny || strings.Contains(e, "policy deny (command)|demo|127.0.0.1|DELETE|INBOX|NOPERM|INBOX is protected")
		limit = limit || strings.Contains(e, "limit exceeded") && strings.Contains(e, "login_failures_per_user by user")
	}
	if !deny || !limit {
		t.Errorf("events (deny %v, limit %v): %q", deny, limit, events)
	}
	screenshot(t, ctx, "console-denials")

	// Audit search with the filters of "audit query".
	step(t, ctx,
		chromedp.Navigate(base+"/console/audit"),
		chromedp.WaitVisible(chromedp.CSS("#audit-form")),
		chromedp.SendKeys(chromedp.CSS(`#audit-form input[name="user"]`), "demo"),
		chromedp.SetValue(chromedp.CSS(`#audit-form select[name="kind"]`), "policy"),
		chromedp.Click(chromedp.CSS("#audit-search")),
		chromedp.WaitVisible(chromedp.CSS("#audit")),
	)
	if n := textOf(t, ctx, "#audit-count"); !strings.HasPrefix(n, "1 record matches") {
		t.Errorf("audit count: %q", n)
	}
	found := evalJS[[]string](t, ctx, `Array.from(document.querySelectorAll("#audit tbody tr")).map(tr => tr.querySelector(".kind").textContent + " " + tr.querySelector(".what").textContent)`)
	if len(found) != 1 || !strings.HasPrefix(found[0], "policy.deny c DELETE INBOX => NO [NOPERM]") {
		t.Errorf("audit rows: %q", found)
	}
	screenshot(t, ctx, "console-audit")
	// The fetch filter: header reads of demo.
	step(t, ctx, chromedp.Navigate(base+"/console/audit?search=1&user=demo&kind=command&fetch=header"), chromedp.WaitVisible(chromedp.CSS("#audit")))
	if found := evalJS[[]string](t, ctx, `Array.from(document.querySelectorAll("#audit td.what")).map(td => td.textContent)`); len(found) != 1 || !strings.Contains(found[0], "FETCH 1") {
		t.Errorf("fetch=header rows: %q", found)
	}

	// Backends and the effective configuration.
	step(t, ctx, chromedp.Navigate(base+"/console/backends"), chromedp.WaitVisible(chromedp.CSS("#backends")))
	if b := evalJS[string](t, ctx, `document.querySelector("#backends tbody tr").textContent`); !strings.Contains(b, "mem") || !strings.Contains(b, "plain") {
		t.Errorf("backends row: %q", b)
	}
	screenshot(t, ctx, "console-backends")
	step(t, ctx, chromedp.Navigate(base+"/console/config"), chromedp.WaitVisible(chromedp.CSS("#config")))
	if conf := textOf(t, ctx, "#config"); strings.Contains(conf, testWriteToken) || !strings.Contains(conf, "name: oncall") {
		t.Errorf("config page shows a token or lacks the token names")
	}

	// End demo's session from the sessions page.
	step(t, ctx,
		chromedp.Navigate(base+"/console/"),
		chromedp.WaitVisible(chromedp.CSS("#sessions")),
		chromedp.Click(chromedp.CSS(`#sessions tr[data-user="demo"] button.danger`)),
		chromedp.WaitVisible(chromedp.CSS("#flash")),
	)
	fmt.Fprintf(live.c, "z NOOP\r\n")
	for l := live.line(); !strings.HasPrefix(l, "* BYE"); l = live.line() {
	}

	// A read token: the same pages, no buttons.
	step(t, ctx,
		chromedp.Submit(chromedp.CSS(`form.who`)),
		chromedp.WaitVisible(chromedp.CSS("#login")),
		chromedp.SendKeys(chromedp.CSS("#token"), testReadToken),
		chromedp.Submit(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#sessions")),
		chromedp.Navigate(base+"/console/lockouts"),
		chromedp.WaitVisible(chromedp.CSS("#lockouts")),
	)
	if n := evalJS[int](t, ctx, `document.querySelectorAll("button.unlock, button.danger").length`); n != 0 {
		t.Errorf("%d action buttons for a read token", n)
	}
	if who := textOf(t, ctx, "#who"); who != "soc (read)" {
		t.Errorf("signed in as %q", who)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
