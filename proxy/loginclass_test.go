package proxy

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// What a client's login request causes is the client's refused login,
// counted by the lockouts and never reported to the Balancer as the
// server's failure; the server's own faults (here a BYE greeting) are
// (ARCHITECTURE.md §13). An authzid a LOGIN backend cannot carry is
// refused AUTHORIZATIONFAILED (RFC 5530 §3): before any dial under
// `login: command`, after the greeting under `login: auto` without
// AUTH=PLAIN.
func TestLoginErrorsOfTheClientSpareTheServer(t *testing.T) {
	plainIR := func(authzid, user, pass string) string {
		return base64.StdEncoding.EncodeToString([]byte(authzid + "\x00" + user + "\x00" + pass))
	}
	for _, c := range []struct {
		name     string
		login    LoginMode
		greeting string
		answer   string // the backend's answer to LOGIN, after its tag
		cmd      string
		want     string
		reason   string
		dials    int64
		failures int // reported to the Balancer
		lockouts int
	}{
		{name: "authzid-login-command", login: LoginCommand, greeting: "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi",
			cmd: "a AUTHENTICATE PLAIN " + plainIR("bob", "mallory", "guess"), want: "a NO [AUTHORIZATIONFAILED]",
			reason: "authzid-refused", dials: 0, lockouts: 1},
		{name: "authzid-auto-without-plain", login: LoginAuto, greeting: "* OK [CAPABILITY IMAP4rev1] hi",
			cmd: "a AUTHENTICATE PLAIN " + plainIR("bob", "mallory", "guess"), want: "a NO [AUTHORIZATIONFAILED]",
			reason: "authzid-refused", dials: 1, lockouts: 1},
		{name: "login-answered-bad", login: LoginCommand, greeting: "* OK [CAPABILITY IMAP4rev1] hi", answer: "BAD Invalid arguments",
			cmd: "a LOGIN alice alice-pw", want: "a NO [AUTHENTICATIONFAILED]", reason: "credentials", dials: 1, lockouts: 1},
		{name: "login-answered-no", login: LoginCommand, greeting: "* OK [CAPABILITY IMAP4rev1] hi", answer: "NO [AUTHENTICATIONFAILED] no",
			cmd: "a LOGIN alice alice-pw", want: "a NO [AUTHENTICATIONFAILED]", reason: "credentials", dials: 1, lockouts: 1},
		// The server's own fault, for contrast: reported, not counted.
		{name: "greeting-bye", login: LoginCommand, greeting: "* BYE not today",
			cmd: "a LOGIN alice alice-pw", want: "a NO [UNAVAILABLE]", reason: "backend-unavailable", dials: 1, failures: 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			var dials atomic.Int64
			ln := serveEach(t, func(conn net.Conn) {
				dials.Add(1)
				conn.Write([]byte(c.greeting + "\r\n"))
				r := bufio.NewReader(conn)
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					tag, rest, _ := strings.Cut(l, " ")
					switch {
					case strings.HasPrefix(rest, "LOGIN "):
						conn.Write([]byte(tag + " " + c.answer + "\r\n"))
					default:
						conn.Write([]byte(tag + " BAD unexpected\r\n"))
					}
				}
			})
			bal := &recBalancer{}
			be := &Backend{Name: "b", Addr: ln.Addr().String(), Security: BackendPlain, Login: c.login, Servers: bal}
			bal.b = &Backend{Name: "b", Server: "s0", Addr: be.Addr, Security: BackendPlain, Login: c.login}
			fl := &fakeLimiter{failures: map[string]int{}}
			h := newHarness(t, func(o *Options) {
				o.Router = &StaticRouter{Default: be}
				o.Limiter = fl
				o.AllowAuthzid = true
			})
			conn := dialTLS(t, h.imaps)
			conn.expect("* OK")
			conn.transact(c.cmd, c.want)
			if ev := h.audit.lastAuth(t); ev.Reason != c.reason {
				t.Errorf("audited reason %q, want %q", ev.Reason, c.reason)
			}
			if n := dials.Load(); n != c.dials {
				t.Errorf("the backend was dialled %d times, want %d", n, c.dials)
			}
			if f := bal.failures(); len(f) != c.failures {
				t.Errorf("reported to the Balancer as the server's failure %d times, want %d: %v", len(f), c.failures, f)
			}
			fl.mu.Lock()
			n := fl.failures["mallory"] + fl.failures["alice"]
			fl.mu.Unlock()
			if n != c.lockouts {
				t.Errorf("the lockouts counted %d failed logins, want %d", n, c.lockouts)
			}
		})
	}
}

// loginErrClass is who a backend login's error is about: the client's
// request (refused login, counted, never a Balancer report: it must carry
// a sentinel clientsLoginError knows), the server (reported to the
// Balancer), or the session's own end (nothing known of the server).
type loginErrClass int

const (
	classServer loginErrClass = iota + 1
	classClient
	classSession
)

// loginErrPath are the functions an error of Session.backendLogin comes
// through; each error they raise or take from a call is classified below.
var loginErrPath = []string{"Session.backendLogin", "dialBackend", "connectBackend", "handshakeBackend",
	"backendConn.greeting", "backendConn.startTLS", "backendConn.login", "backendConn.authPlain",
	"backendConn.loginCommand", "backendConn.command", "backendConn.commandSteps", "backendConn.readResponse",
	"backendConn.flush", "closedErr"}

// loginErrSources classifies every error construction on loginErrPath (a
// format string, a sentinel) and every call it takes an error from that
// is not on the path (the call as written).
var loginErrSources = map[string]loginErrClass{
	// Calls outside the path.
	"b.Servers.Pick":          classServer, // no server left: nothing reported
	"d.DialContext":           classServer,
	"raw.Write":               classServer,
	"tc.HandshakeContext":     classServer,
	"bc.sc.ReadLine":          classServer,
	"imapwire.ParseResponse":  classServer,
	"bc.sc.DiscardLiteral":    classServer,
	"bc.sc.ResponseMarker":    classServer, // a malformed literal size in untagged data
	"bc.bw.Flush":             classServer,
	"c.Start":                 classClient, // the SASL PLAIN message of the credentials
	"imapwire.ParseNamespace": classServer,
	"context.Cause":           classSession,
	// Constructions.
	"login to backend %s ended: %w":  classSession,
	"%w (%w)":                        classSession,
	"dial %s: %w":                    classServer,
	"send PROXY header to %s: %w":    classServer,
	"tls handshake with %s: %w":      classServer,
	"greeting from %s: %w":           classServer,
	"greeting from %s: %q":           classServer,
	"backend %s refused STARTTLS":    classServer,
	"[errBackendInjection]":          classServer,
	"starttls handshake with %s: %w": classServer,
	"backend %s advertises LOGINDISABLED: use security starttls or tls": classServer, // the same for every client: the operator's setting
	"backend %s: %w [errNoAuthzid]":                                     classClient,
	"%w: %w [errLoginDropped]":                                          classClient,
	"%w: %w [errBackendClosed]":                                         classServer, // errLoginDropped at the login
	"%w: SASL PLAIN: %w [errBackendAuth]":                               classClient,
	"backend %s: login unavailable":                                     classServer, // the server says so of itself
	"[errBackendAuth]":                                                  classClient,
	"%w: backend %s rejected the login command [errBackendAuth]":        classClient, // BAD to the client's credentials
	"backend %s answered the login command %v":                          classServer,
	"backend %s: LIST \"\" \"\" failed":                                 classServer,
	"backend %s: malformed NAMESPACE response":                          classServer,
	"write to %s: %w":                                                   classServer,
	"read from %s: %w":                                                  classServer, // a close is errLoginDropped at the login (closedErr)
	"backend %s said BYE: %w [errBackendClosed]":                        classServer, // errLoginDropped at the login
	"backend %s: no tagged response":                                    classServer,
	"%s response: %w":                                                   classServer, // a malformed literal size in untagged data
}

// clientSentinels are the errors clientsLoginError takes for the client's.
var clientSentinels = []string{"errBackendAuth", "errLoginDropped", "errNoAuthzid"}

// Every error a backend login can return is classified: the test walks
// the functions on loginErrPath, and fails on an error raised there
// (fmt.Errorf, a sentinel) or taken from a call off the path that
// loginErrSources does not name, on a function the path calls that is not
// on it, and on a client's error without a sentinel clientsLoginError
// knows (ARCHITECTURE.md §13).
func TestEveryBackendLoginErrorClassified(t *testing.T) {
	fset, files := parseProxyFiles(t)
	funcs := map[string]*ast.FuncDecl{}
	sentinels := map[string]bool{}
	for _, f := range files {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				name := d.Name.Name
				if d.Recv != nil {
					rt := d.Recv.List[0].Type
					if st, ok := rt.(*ast.StarExpr); ok {
						rt = st.X
					}
					name = rt.(*ast.Ident).Name + "." + name
				}
				funcs[name] = d
			case *ast.GenDecl:
				for _, sp := range d.Specs {
					if vs, ok := sp.(*ast.ValueSpec); ok && d.Tok == token.VAR {
						for _, n := range vs.Names {
							if strings.HasPrefix(n.Name, "err") {
								sentinels[n.Name] = true
							}
						}
					}
				}
			}
		}
	}
	onPath := func(call *ast.CallExpr) bool {
		switch fn := call.Fun.(type) {
		case *ast.Ident:
			return slices.Contains(loginErrPath, fn.Name)
		case *ast.SelectorExpr:
			return slices.ContainsFunc(loginErrPath, func(n string) bool { return strings.HasSuffix(n, "."+fn.Sel.Name) })
		}
		return false
	}
	text := func(e ast.Expr) string {
		var b strings.Builder
		printer.Fprint(&b, fset, e)
		return b.String()
	}
	seen := map[string]bool{}
	check := func(key string, at token.Pos) {
		seen[key] = true
		if _, ok := loginErrSources[key]; !ok {
			t.Errorf("%s: error %q of the backend login has no class (loginErrSources: the client's, the server's or the session's)", fset.Position(at), key)
		}
	}
	// construction is the key of an error made here: the format and the
	// sentinels it wraps.
	construction := func(call *ast.CallExpr) string {
		var ws []string
		for _, a := range call.Args[1:] {
			if id, ok := a.(*ast.Ident); ok && sentinels[id.Name] {
				ws = append(ws, id.Name)
			}
		}
		f, _ := strconv.Unquote(text(call.Args[0]))
		if len(ws) > 0 {
			f += " [" + strings.Join(ws, " ") + "]"
		}
		return f
	}
	isErrorf := func(call *ast.CallExpr) bool { return text(call.Fun) == "fmt.Errorf" || text(call.Fun) == "errors.New" }
	for _, name := range loginErrPath {
		fd := funcs[name]
		if fd == nil {
			t.Errorf("%s is on loginErrPath but not in package proxy", name)
			continue
		}
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.FuncLit:
				return false
			case *ast.CallExpr:
				if isErrorf(n) {
					check(construction(n), n.Pos())
				}
			case *ast.AssignStmt:
				// An error taken from a call.
				takesErr := slices.ContainsFunc(n.Lhs, func(e ast.Expr) bool { id, ok := e.(*ast.Ident); return ok && id.Name == "err" })
				if call, ok := n.Rhs[0].(*ast.CallExpr); ok && takesErr && len(n.Rhs) == 1 && !isErrorf(call) && !onPath(call) {
					check(text(call.Fun), call.Pos())
				}
			case *ast.ReturnStmt:
				if len(n.Results) == 0 {
					break
				}
				switch e := n.Results[len(n.Results)-1].(type) {
				case *ast.Ident:
					if sentinels[e.Name] {
						check("["+e.Name+"]", e.Pos())
					}
				case *ast.CallExpr:
					if len(n.Results) == 1 && !isErrorf(e) && !onPath(e) && text(e.Fun) != "fmt.Errorf" {
						check(text(e.Fun), e.Pos())
					}
				}
			}
			return true
		})
	}
	for key, class := range loginErrSources {
		if !seen[key] {
			t.Errorf("loginErrSources names %q, which no function on loginErrPath raises or calls", key)
			continue
		}
		client := slices.ContainsFunc(clientSentinels, func(s string) bool { return strings.Contains(key, "["+s) || strings.Contains(key, " "+s+"]") })
		if strings.Contains(key, "[") && client != (class == classClient) {
			t.Errorf("error %q is classed %d but clientsLoginError reads it as the client's: %v", key, class, client)
		}
	}
	for _, s := range clientSentinels {
		if e := sentinelErr(s); e == nil || !clientsLoginError(fmt.Errorf("wrapped: %w", e)) {
			t.Errorf("clientsLoginError does not take %s for the client's", s)
		}
	}
	for _, e := range []error{errBackendClosed, errBackendInjection, errors.New("dial: refused")} {
		if clientsLoginError(e) {
			t.Errorf("clientsLoginError takes %v for the client's", e)
		}
	}
}

func sentinelErr(name string) error {
	return map[string]error{"errBackendAuth": errBackendAuth, "errLoginDropped": errLoginDropped, "errNoAuthzid": errNoAuthzid}[name]
}

// parseProxyFiles parses the package's own (non-test) files.
func parseProxyFiles(t *testing.T) (*token.FileSet, []*ast.File) {
	t.Helper()
	fset := token.NewFileSet()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return fset, files
}
