package policy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/proxy"
)

// newTestEngine loads dir with polling off and an observed logger.
func newTestEngine(t *testing.T, opts Options) (*Engine, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	opts.Logger = zap.New(core)
	if opts.PollInterval == 0 {
		opts.PollInterval = -1
	}
	if opts.EvalTimeout == 0 {
		// The race detector on a busy machine: the tests compare
		// decisions, TestEvalTimeoutDenies the deadline.
		opts.EvalTimeout = time.Hour
	}
	e, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e, logs
}

// regoDir writes Rego (and data) files into a new directory.
func regoDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		writeFile(t, filepath.Join(dir, name), content)
	}
	return dir
}

func command(t testing.TB, user, line string) *proxy.DecisionInput {
	return &proxy.DecisionInput{Point: proxy.PointCommand, Session: testSession(user), Command: parseCommand(t, line)}
}

func TestDecideShipped(t *testing.T) {
	e, _ := newTestEngine(t, Options{
		Dirs:   []Dir{{Path: policySubset(t, map[string]string{"legal_hold": "users: [erin]\nmailboxes: {}\n"})}},
		Groups: map[string][]string{"Erin": {"legal"}, "root": {"admins"}},
	})
	ctx := context.Background()
	rev := e.Revision()
	if len(rev) != 12 {
		t.Fatalf("revision %q", rev)
	}
	cases := []struct {
		name     string
		in       *proxy.DecisionInput
		allow    bool
		code     string
		policy   string
		fastPath bool
	}{
		{"fetch not inspected", command(t, "alice", "a UID FETCH 1:* (FLAGS)"), true, "", "", true},
		{"store seen", command(t, "erin", `a STORE 1 +FLAGS (\Seen)`), true, "", "", false},
		{"store deleted held", command(t, "erin", `a UID STORE 1:3 +FLAGS.SILENT (\Deleted)`), false, "NOPERM", "legal_hold", false},
		{"delete protected", command(t, "alice", `a DELETE "Drafts"`), false, "NOPERM", "protected_folders", false},
		{"delete inbox lower case", command(t, "alice", `a DELETE inbox`), false, "NOPERM", "protected_folders", false},
		{"setacl user", command(t, "alice", `a SETACL Shared bob lr`), false, "NOPERM", "acl", false},
		{"setacl admin", command(t, "root", `a SETACL Shared bob lr`), true, "", "", false},
		// The proxy terminates COMPRESS: the shipped baseline allows it
		// without even looking (not in inspect).
		{"compress", command(t, "alice", `a COMPRESS DEFLATE`), true, "", "", true},
		{"auth", &proxy.DecisionInput{Point: proxy.PointAuth, Session: testSession("alice")}, true, "", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.Stats().Evaluations + e.Stats().CacheHits
			d := e.Decide(ctx, c.in)
			if d.Allow != c.allow || d.Code != c.code {
				t.Fatalf("decision %+v, want allow=%v code=%q", d, c.allow, c.code)
			}
			if d.Annotations[AnnotationRevision] != rev {
				t.Errorf("annotations %v lack the revision %s", d.Annotations, rev)
			}
			if c.policy != "" && d.Annotations["policy"] != c.policy {
				t.Errorf("denied by %v, want %s", d.Annotations["policy"], c.policy)
			}
			if !c.allow && d.Reason == "" {
				t.Error("denial without a reason")
			}
			after := e.Stats().Evaluations + e.Stats().CacheHits
			if fast := after == before; fast != c.fastPath {
				t.Errorf("fast path %v, want %v", fast, c.fastPath)
			}
		})
	}
}

func TestFastPathAllocatesNothing(t *testing.T) {
	e, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: policySubset(t, nil)}}})
	in := command(t, "alice", "a UID FETCH 1:* (FLAGS)")
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() { e.Decide(ctx, in) }); n != 0 {
		t.Fatalf("fast path allocates %v times", n)
	}
	// A cached decision allocates nothing either.
	in = command(t, "alice", `a STORE 1 +FLAGS (\Seen)`)
	e.Decide(ctx, in)
	if n := testing.AllocsPerRun(100, func() { e.Decide(ctx, in) }); n != 0 {
		t.Fatalf("cached decision allocates %v times", n)
	}
}

func TestFailClosed(t *testing.T) {
	cases := map[string]string{
		"runtime error": `package imapwarden
decision := {"allow": true, "x": to_number(input.command.name)}`,
		"undefined": `package imapwarden
decision := {"allow": true} if input.command.name == "NOPE"`,
		"allow not boolean": `package imapwarden
decision := {"allow": "yes"}`,
		"not an object": `package imapwarden
decision := true`,
		"bad code": `package imapwarden
decision := {"allow": false, "code": "NO] * BYE"}`,
		"conflict": `package imapwarden
decision := {"allow": true} if input.point == "command"
decision := {"allow": false} if input.command.name == "NOOP"`,
	}
	for name, src := range cases {
		t.Run(name, func(t *testing.T) {
			e, logs := newTestEngine(t, Options{Dirs: []Dir{{Path: regoDir(t, map[string]string{"p.rego": src})}}})
			d := e.Decide(context.Background(), command(t, "alice", "a NOOP"))
			if d.Allow || d.Code != "UNAVAILABLE" || d.Annotations[AnnotationError] != true {
				t.Fatalf("decision %+v, want a fail-closed denial", d)
			}
			if l := logs.FilterMessage("policy evaluation failed, denied").All(); len(l) != 1 || l[0].ContextMap()["error"] == nil {
				t.Fatalf("log %v", logs.All())
			}
			// Failures are not cached: each decision is evaluated.
			e.Decide(context.Background(), command(t, "alice", "a NOOP"))
			if s := e.Stats(); s.Errors != 2 || s.CacheHits != 0 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"syntax", map[string]string{"a/p.rego": "package imapwarden\n\ndecision := {\n\nx := 1\n"}, "p.rego:5"},
		{"unsafe", map[string]string{"a/p.rego": "package imapwarden\n\ndecision := {\"allow\": tru}\n"}, "a/p.rego:3: rego_unsafe_var_error"},
		// A module in another package is no policy of a tree: no framework
		// is added, so a misspelt package cannot allow everything.
		{"no decision", map[string]string{"p.rego": "package imapwardn\nx := 1\n"}, "no rule defines data.imapwarden.decision"},
		{"no modules", map[string]string{"data.json": "{}"}, "no Rego modules"},
		{"http.send refused", map[string]string{"p.rego": "package imapwarden\n\ndecision := http.send({\"method\": \"get\", \"url\": \"http://x\"}).body\n"}, "p.rego:3"},
		{"inspect reads input", map[string]string{"p.rego": "package imapwarden\ndecision := {\"allow\": true}\ninspect contains input.command.name\n"}, "p.rego:3: data.imapwarden.inspect must not depend on input"},
		{"inspect not names", map[string]string{"p.rego": "package imapwarden\ndecision := {\"allow\": true}\ninspect contains 1\n"}, "not a command name"},
		{"bad yaml", map[string]string{"p.rego": "package imapwarden\ndecision := {\"allow\": true}\n", "d/data.yaml": "a: [\n"}, "data.yaml"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(Options{Dirs: []Dir{{Path: regoDir(t, c.files)}}, PollInterval: -1})
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("error %v, want a *LoadError", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q lacks %q", err, c.want)
			}
		})
	}
}

const allowAll = "package imapwarden\ndecision := {\"allow\": true}\n"

const denyStore = `package imapwarden
inspect contains "STORE"
decision := {"allow": false, "reason": "no", "code": "NOPERM"} if input.command.name == "STORE"
else := {"allow": true}
`

func TestReload(t *testing.T) {
	dir := regoDir(t, map[string]string{"p.rego": allowAll})
	e, logs := newTestEngine(t, Options{Dirs: []Dir{{Path: dir}}})
	ctx := context.Background()
	store := command(t, "alice", `a STORE 1 +FLAGS (\Seen)`)
	rev1 := e.Revision()
	if !e.Decide(ctx, store).Allow {
		t.Fatal("denied before reload")
	}

	// Touching without changing keeps the revision (and the cache).
	if err := os.Chtimes(filepath.Join(dir, "p.rego"), time.Now(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := e.Reload(); err != nil || e.Revision() != rev1 || e.Stats().Reloads != 0 {
		t.Fatalf("touch: %v, revision %s, stats %+v", err, e.Revision(), e.Stats())
	}

	writeFile(t, filepath.Join(dir, "p.rego"), denyStore)
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	rev2 := e.Revision()
	if rev2 == rev1 || e.Decide(ctx, store).Allow {
		t.Fatalf("after reload: revision %s, decision allowed", rev2)
	}
	if d := e.Decide(ctx, command(t, "alice", "a FETCH 1 FLAGS")); !d.Allow || d.Annotations[AnnotationRevision] != rev2 {
		t.Fatalf("fast path after reload: %+v", d)
	}

	// A broken policy keeps the one in force and says where it broke.
	writeFile(t, filepath.Join(dir, "p.rego"), "package imapwarden\n\ndecision := {\"allow\": tru}\n")
	err := e.Reload()
	if err == nil || !strings.Contains(err.Error(), "p.rego:3") {
		t.Fatalf("reload of a broken policy: %v", err)
	}
	if e.Revision() != rev2 || e.Decide(ctx, store).Allow {
		t.Fatal("the broken policy replaced the one in force")
	}
	s := e.Stats()
	if s.Reloads != 1 || s.ReloadFailures != 1 || !strings.Contains(s.LastError, "p.rego:3") {
		t.Fatalf("stats %+v", s)
	}
	l := logs.FilterMessage("policy reload failed, keeping the policy in force").All()
	if len(l) != 1 || l[0].ContextMap()["line"] != int64(3) || !strings.HasSuffix(l[0].ContextMap()["file"].(string), "p.rego") {
		t.Fatalf("log %v", l)
	}
}

func TestPollReloads(t *testing.T) {
	dir := regoDir(t, map[string]string{"p.rego": allowAll})
	e, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: dir}}, PollInterval: 10 * time.Millisecond})
	rev1 := e.Revision()
	writeFile(t, filepath.Join(dir, "sub", "p2.rego"), "package imapwarden\ninspect contains \"X\"\n")
	deadline := time.Now().Add(testenv.IOTimeout())
	for e.Revision() == rev1 {
		if time.Now().After(deadline) {
			t.Fatal("no reload after a file was added")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A broken file is reported once, not at every poll.
	writeFile(t, filepath.Join(dir, "sub", "p2.rego"), "package imapwarden\ninspect contains \n")
	for e.Stats().ReloadFailures == 0 {
		if time.Now().After(deadline) {
			t.Fatal("broken file not noticed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for range 3 { // more polls of the same broken file
		e.pollOnce()
	}
	if n := e.Stats().ReloadFailures; n != 1 {
		t.Fatalf("%d failures for one broken file", n)
	}
}

func TestShadow(t *testing.T) {
	enforced := regoDir(t, map[string]string{"p.rego": allowAll})
	trial := regoDir(t, map[string]string{"p.rego": denyStore})
	e, logs := newTestEngine(t, Options{Dirs: []Dir{{Path: trial, Shadow: true}, {Path: enforced}}})
	d := e.Decide(context.Background(), command(t, "alice", `a STORE 1 +FLAGS (\Seen)`))
	if !d.Allow {
		t.Fatalf("shadow policy enforced: %+v", d)
	}
	sd, ok := d.Annotations[AnnotationShadowDeny].(map[string]any)
	if !ok || sd["dir"] != trial || sd["reason"] != "no" || sd["code"] != "NOPERM" {
		t.Fatalf("annotations %v", d.Annotations)
	}
	if logs.FilterMessage("shadow policy would deny").Len() != 1 {
		t.Fatal("would-deny not logged")
	}
	// A cached would-deny still counts.
	e.Decide(context.Background(), command(t, "alice", `a STORE 1 +FLAGS (\Seen)`))
	if s := e.Stats(); s.ShadowDenies != 2 || s.Denies != 0 || s.CacheHits != 1 {
		t.Fatalf("stats %+v", s)
	}
	// An enforced denial is not annotated with the trial's opinion.
	e2, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: trial, Shadow: true}, {Path: regoDir(t, map[string]string{"p.rego": denyStore})}}})
	d = e2.Decide(context.Background(), command(t, "alice", `a STORE 1 +FLAGS (\Seen)`))
	if d.Allow || d.Annotations[AnnotationShadowDeny] != nil {
		t.Fatalf("decision %+v", d)
	}
	// A broken shadow policy never denies.
	broken := regoDir(t, map[string]string{"p.rego": "package imapwarden\ndecision := to_number(\"x\")\n"})
	e3, logs3 := newTestEngine(t, Options{Dirs: []Dir{{Path: broken, Shadow: true}, {Path: enforced}}})
	if d := e3.Decide(context.Background(), command(t, "alice", "a NOOP")); !d.Allow {
		t.Fatalf("broken shadow denied: %+v", d)
	}
	if logs3.FilterMessage("shadow policy evaluation failed").Len() != 1 {
		t.Fatal("shadow failure not logged")
	}
}

func TestInspectAllWithoutInspect(t *testing.T) {
	src := `package imapwarden
decision := {"allow": false, "reason": "no fetch"} if input.command.name == "FETCH"
else := {"allow": true}
`
	e, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: regoDir(t, map[string]string{"p.rego": src})}}})
	if d := e.Decide(context.Background(), command(t, "alice", "a FETCH 1 FLAGS")); d.Allow {
		t.Fatal("a policy without inspect must see every command")
	}
}

func TestCacheFollowsInput(t *testing.T) {
	now := time.Date(2026, 3, 2, 17, 58, 0, 0, time.UTC) // a Monday
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	dir := policySubset(t, map[string]string{
		"business_hours": "end_sessions: true\ngroups: {shift: {days: [Mon, Tue, Wed, Thu, Fri], start: \"08:00\", end: \"18:00\"}}\n",
	})
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err) // time/tzdata is linked in (policy/tzdata.go)
	}
	e, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: dir}}, Groups: map[string][]string{"frank": {"shift"}}, Now: clock, Location: berlin})
	ctx := context.Background()
	fetch := command(t, "frank", "a FETCH 1 FLAGS")
	// 17:58 UTC is 18:58 in Berlin: after hours there.
	if d := e.Decide(ctx, fetch); d.Allow || !d.Disconnect {
		t.Fatalf("after hours in Berlin: %+v", d)
	}
	mu.Lock()
	now = time.Date(2026, 3, 2, 16, 30, 0, 0, time.UTC)
	mu.Unlock()
	if d := e.Decide(ctx, fetch); !d.Allow {
		t.Fatalf("within hours: %+v", d)
	}
	// Same minute, same input: cached.
	hits := e.Stats().CacheHits
	e.Decide(ctx, fetch)
	if e.Stats().CacheHits != hits+1 {
		t.Fatal("no cache hit for an unchanged input")
	}
	// A different mailbox is a different decision.
	if d := e.Decide(ctx, command(t, "frank", "a DELETE Sent")); d.Allow {
		t.Fatal("cached decision reused for another mailbox")
	}
	if d := e.Decide(ctx, command(t, "frank", "a DELETE Old")); !d.Allow {
		t.Fatal("cached denial reused for another mailbox")
	}
}

func TestNondeterministicNotCached(t *testing.T) {
	src := `package imapwarden
decision := {"allow": time.now_ns() > 0}
`
	e, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: regoDir(t, map[string]string{"p.rego": src})}}})
	for range 3 {
		e.Decide(context.Background(), command(t, "alice", "a NOOP"))
	}
	if s := e.Stats(); s.CacheHits != 0 || s.Evaluations != 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestGroupsFile(t *testing.T) {
	dir := regoDir(t, map[string]string{
		"p.rego": `package imapwarden
decision := {"allow": false, "reason": concat(",", input.session.groups)} if input.point == "auth"
else := {"allow": true}
`,
		"../groups.yaml": "admins: [Alice, root]\nreadonly: dave alice\n",
	})
	gf := filepath.Join(filepath.Dir(dir), "groups.yaml")
	e, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: dir}}, GroupsFile: gf, Groups: map[string][]string{"ALICE": {"staff"}}})
	auth := &proxy.DecisionInput{Point: proxy.PointAuth, Session: testSession("alice")}
	if d := e.Decide(context.Background(), auth); d.Reason != "admins,readonly,staff" {
		t.Fatalf("groups %q", d.Reason)
	}
	rev := e.Revision()
	writeFile(t, gf, "admins: [root]\n")
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	if d := e.Decide(context.Background(), auth); d.Reason != "staff" || e.Revision() == rev {
		t.Fatalf("after groups change: %q, revision %s", d.Reason, e.Revision())
	}
}

func TestConcurrentDecideAndReload(t *testing.T) {
	dir := regoDir(t, map[string]string{"p.rego": allowAll})
	e, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: dir}}})
	ctx := context.Background()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := command(t, "alice", `a STORE 1 +FLAGS (\Seen)`)
			in.Session.ID = string(rune('a' + i))
			for {
				select {
				case <-stop:
					return
				default:
				}
				d := e.Decide(ctx, in)
				if d.Annotations[AnnotationRevision] == nil {
					t.Error("decision without a revision")
					return
				}
			}
		}()
	}
	for i := range 5 {
		src := allowAll
		if i%2 == 0 {
			src = denyStore
		}
		writeFile(t, filepath.Join(dir, "p.rego"), src)
		if err := e.Reload(); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
}
