package policy

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/proxy"
)

// sessionFactsPolicy reads every session fact but limits, one by one, and
// annotates its denial with each: a decision tells every fact it was made
// on.
// clientID is how it reads the client ID (all of it, or its name).
func sessionFactsPolicy(clientID string) string {
	fields := []string{"id", "listener", "client_ip", "client_port", "local_ip", "local_port", "tls", "user",
		"mechanism", clientID, "groups", "authenticator", "identity", "backend", "auth_failures", "started_at", "delimiter"}
	var b strings.Builder
	b.WriteString("package imapwarden\n\nimport rego.v1\n\n")
	var names []string
	for i, f := range fields {
		fmt.Fprintf(&b, "default f%d := null\n\nf%d := input.session.%s\n\n", i, i, f)
		names = append(names, fmt.Sprintf("%q: f%d", f, i))
	}
	fmt.Fprintf(&b, "decision := {\"allow\": false, \"annotations\": {%s}}\n", strings.Join(names, ", "))
	return b.String()
}

// fullSession sets every field of proxy.SessionInfo.
func fullSession() *proxy.SessionInfo {
	s := testSession("alice")
	s.TLS.ClientCertSubject, s.TLS.ClientCertCN, s.TLS.ClientCertVerified = "CN=alice", "alice", true
	s.TLS.ClientCertSANs = []string{"email:alice@example.com", "DNS:a.example.com"}
	s.Server = "imap1"
	s.Identity = &proxy.Identity{Authenticator: "ldap", User: "alice", Groups: []string{"staff", "ops"},
		Issuer: "https://idp", ClientID: "mua", Scopes: []string{"imap"}, Attributes: map[string]string{"mailHost": "imap1"},
		Route: "dovecot"}
	s.AuthFailures = 1
	s.Delimiter = "/"
	return s
}

// cloneSession copies s deeply: a new session with the same facts.
func cloneSession(s *proxy.SessionInfo) *proxy.SessionInfo {
	c := *s
	if s.TLS != nil {
		tls := *s.TLS
		tls.ClientCertSANs = slices.Clone(tls.ClientCertSANs)
		c.TLS = &tls
	}
	if s.Identity != nil {
		id := *s.Identity
		id.Groups, id.Scopes, id.Attributes = slices.Clone(id.Groups), slices.Clone(id.Scopes), maps.Clone(id.Attributes)
		c.Identity = &id
	}
	c.ClientID = maps.Clone(s.ClientID)
	return &c
}

// sessionChanges are changes to every field of proxy.SessionInfo, made in
// place where the field is a pointer, slice or map (as the proxy or an
// authenticator might), found by reflection: a field added later is
// changed too.
func sessionChanges() []struct {
	name   string
	change func(*proxy.SessionInfo)
} {
	var out []struct {
		name   string
		change func(*proxy.SessionInfo)
	}
	add := func(name string, f func(*proxy.SessionInfo)) {
		out = append(out, struct {
			name   string
			change func(*proxy.SessionInfo)
		}{name, f})
	}
	// at follows path from a session to the value it names.
	type step func(reflect.Value) reflect.Value
	var walk func(name string, t reflect.Type, path []step)
	at := func(s *proxy.SessionInfo, path []step) reflect.Value {
		v := reflect.ValueOf(s).Elem()
		for _, p := range path {
			v = p(v)
		}
		return v
	}
	with := func(path []step, p step) []step { return append(slices.Clone(path), p) }
	walk = func(name string, t reflect.Type, path []step) {
		set := func(what string, f func(v reflect.Value)) {
			add(name+" "+what, func(s *proxy.SessionInfo) { f(at(s, path)) })
		}
		switch t {
		case reflect.TypeFor[netip.AddrPort]():
			set("port", func(v reflect.Value) {
				a := v.Interface().(netip.AddrPort)
				v.Set(reflect.ValueOf(netip.AddrPortFrom(a.Addr(), a.Port()+1)))
			})
			set("address", func(v reflect.Value) {
				a := v.Interface().(netip.AddrPort)
				v.Set(reflect.ValueOf(netip.AddrPortFrom(a.Addr().Next(), a.Port())))
			})
			set("invalid", func(v reflect.Value) { v.Set(reflect.ValueOf(netip.AddrPort{})) })
			return
		case reflect.TypeFor[time.Time]():
			set("later", func(v reflect.Value) { v.Set(reflect.ValueOf(v.Interface().(time.Time).Add(time.Second))) })
			set("zero", func(v reflect.Value) { v.Set(reflect.ValueOf(time.Time{})) })
			return
		}
		switch t.Kind() {
		case reflect.String:
			set("longer", func(v reflect.Value) { v.SetString(v.String() + "x") })
			set("empty", func(v reflect.Value) { v.SetString("") })
		case reflect.Bool:
			set("flipped", func(v reflect.Value) { v.SetBool(!v.Bool()) })
		case reflect.Int:
			set("+1", func(v reflect.Value) { v.SetInt(v.Int() + 1) })
		case reflect.Pointer:
			set("nil", func(v reflect.Value) { v.SetZero() })
			walk(name, t.Elem(), with(path, func(v reflect.Value) reflect.Value { return v.Elem() }))
		case reflect.Struct:
			for i := range t.NumField() {
				f := t.Field(i)
				walk(name+"."+f.Name, f.Type, with(path, func(v reflect.Value) reflect.Value { return v.Field(i) }))
			}
		case reflect.Slice:
			set("nil", func(v reflect.Value) { v.SetZero() })
			set("empty", func(v reflect.Value) { v.Set(reflect.MakeSlice(t, 0, 0)) })
			set("element in place", func(v reflect.Value) { v.Index(0).SetString(v.Index(0).String() + "x") })
			set("appended", func(v reflect.Value) { v.Set(reflect.Append(v, reflect.ValueOf("more"))) })
		case reflect.Map:
			set("nil", func(v reflect.Value) { v.SetZero() })
			set("value in place", func(v reflect.Value) {
				for _, k := range v.MapKeys() {
					v.SetMapIndex(k, reflect.ValueOf(v.MapIndex(k).String()+"x"))
				}
			})
			set("key deleted in place", func(v reflect.Value) {
				for _, k := range v.MapKeys() {
					v.SetMapIndex(k, reflect.Value{})
				}
			})
			set("key added in place", func(v reflect.Value) { v.SetMapIndex(reflect.ValueOf("other"), reflect.ValueOf("v")) })
		default:
			panic("sessionChanges: a field of kind " + t.Kind().String() + ": add its changes")
		}
	}
	walk("SessionInfo", reflect.TypeFor[proxy.SessionInfo](), nil)
	return out
}

// TestSessionEntryFollowsEveryField: a session's part of the key, made
// once per session (sessionTable), follows every change of the session's
// facts, wherever and however made: for each field of proxy.SessionInfo
// (found by reflection) changed in place after a decision, the next
// decision of that session is the one a fresh evaluation of a copy makes,
// and its entry's key is the one its fields make now.
func TestSessionEntryFollowsEveryField(t *testing.T) {
	ctx := context.Background()
	for _, clientID := range []string{"client_id", "client_id.name"} {
		t.Run(clientID, func(t *testing.T) {
			dir := regoDir(t, map[string]string{"p.rego": sessionFactsPolicy(clientID)})
			groups := map[string][]string{"alice": {"staff"}}
			cached, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: dir}}, Groups: groups})
			fresh, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: dir}}, Groups: groups, CacheSize: -1})
			st := cached.state.Load()
			if st.sessions == nil || st.sessions.uses != sessionSlots&^setOf(slotLimits) {
				t.Fatalf("the policy reads session slots %b, the table %v: the test proves nothing", st.uses&sessionSlots, st.sessions)
			}
			changed := 0
			for _, ch := range sessionChanges() {
				for _, point := range []proxy.Point{proxy.PointAuth, proxy.PointCommand} {
					s := fullSession()
					in := &proxy.DecisionInput{Point: point, Session: s}
					if point == proxy.PointCommand {
						in.Command = parseCommand(t, "a NOOP")
					}
					before := fmt.Sprint(cached.Decide(ctx, in))
					ch.change(s)
					got := fmt.Sprint(cached.Decide(ctx, in))
					want := fmt.Sprint(fresh.Decide(ctx, &proxy.DecisionInput{Point: point, Session: cloneSession(s), Command: in.Command}))
					if got != want {
						t.Fatalf("%s at %s: decided %s, a fresh evaluation %s", ch.name, point, got, want)
					}
					if got != before {
						changed++
					}
					c := newInputCtx(string(point), in)
					c.groups, c.ids = st.groups, st.ids
					if key, want := st.sessions.entry(st, &c).key, c.appendSlots(nil, st.sessions.uses); !bytes.Equal(key, want) {
						t.Fatalf("%s at %s: the entry's key %x, the session's %x", ch.name, point, key, want)
					}
				}
			}
			if changed < 40 {
				t.Fatalf("only %d changes changed the decision: the test proves little", changed)
			}
			if cached.Stats().CacheHits == 0 {
				t.Fatal("no decision was reused: the test proves nothing")
			}
		})
	}
}

// TestSessionIDKeysAreExact: a decision's key holds its session's part by
// that part's id (sessionEntry.appendKey): many sessions of a few sets of
// facts, in tables and caches small enough to be emptied and to lose
// entries over and over, decide as fresh evaluations do, and share their
// entries' parts where their facts are the same.
func TestSessionIDKeysAreExact(t *testing.T) {
	ctx := context.Background()
	dir := regoDir(t, map[string]string{"p.rego": sessionFactsPolicy("client_id")})
	cached, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: dir}}, CacheSize: 4})
	fresh, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: dir}}, CacheSize: -1})
	var sessions []*proxy.SessionInfo
	for i := range 40 {
		s := fullSession()
		s.User = fmt.Sprintf("user%d", i%5)
		sessions = append(sessions, s)
	}
	for round := range 5 {
		for i, s := range sessions {
			if round == 3 && i%2 == 0 {
				s.TLS.Cipher += "x" // in place, between decisions
			}
			in := &proxy.DecisionInput{Point: proxy.PointAuth, Session: s}
			for range 2 { // the second may be the first's, reused
				if got, want := fmt.Sprint(cached.Decide(ctx, in)), fmt.Sprint(fresh.Decide(ctx, in)); got != want {
					t.Fatalf("round %d session %d: decided %s, a fresh evaluation %s", round, i, got, want)
				}
			}
		}
	}
	if cached.Stats().CacheHits == 0 {
		t.Fatal("no decision was reused: the test proves nothing")
	}
	// Two sessions of the same facts: one part, one id.
	big, _ := newTestEngine(t, Options{Dirs: []Dir{{Path: dir}}})
	st := big.state.Load()
	entry := func(s *proxy.SessionInfo) *sessionEntry {
		c := newInputCtx(string(proxy.PointAuth), &proxy.DecisionInput{Point: proxy.PointAuth, Session: s})
		c.groups, c.ids = st.groups, st.ids
		return st.sessions.entry(st, &c)
	}
	a, b, other := entry(fullSession()), entry(fullSession()), fullSession()
	other.User = "bob"
	if a.part == nil || a.part != b.part {
		t.Fatalf("two sessions of the same facts: parts %p and %p, want one", a.part, b.part)
	}
	if o := entry(other); o.part == nil || o.part.id == a.part.id {
		t.Fatalf("another user's session has the part id %v of alice's", o.part)
	}
}
