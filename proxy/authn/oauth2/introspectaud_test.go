package oauth2

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/proxy"
)

// With an audience configured, an introspection answer must name it: aud
// is optional in RFC 7662 §2.2, and an issuer that leaves it out (Keycloak
// without an audience mapper) would otherwise let a token of any client
// of the realm log in. Each answer below differs from an accepted one in
// its aud alone.
func TestIntrospectionNeedsAudience(t *testing.T) {
	var answer string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(answer))
	}))
	t.Cleanup(srv.Close)
	exp := jsonTime(time.Now().Add(time.Hour))
	for _, tc := range []struct {
		aud  string // the answer's "aud" member, "" for none
		want bool
	}{
		{`"aud":"imap",`, true},
		{`"aud":["other","imap"],`, true},
		{"", false},
		{`"aud":null,`, false},
		{`"aud":[],`, false},
		{`"aud":"other",`, false},
		{`"aud":"IMAP",`, false},
	} {
		answer = `{"active":true,` + tc.aud + `"sub":"alice","iss":"` + srv.URL + `","exp":` + exp + `}`
		v := newVerifier(t, Options{Issuer: srv.URL, Introspection: true, IntrospectionURL: srv.URL + "/introspect", Audience: "imap"})
		id, err := verify(v, "alice", "opaque-token")
		switch {
		case tc.want && (err != nil || id.User != "alice"):
			t.Errorf("aud %q: %+v %v, want alice", tc.aud, id, err)
		case !tc.want && !errors.Is(err, proxy.ErrAuthFailed):
			t.Errorf("aud %q: %+v %v, want a refusal", tc.aud, id, err)
		case !tc.want && tc.aud == "" && !strings.Contains(err.Error(), "no audience"):
			t.Errorf("aud missing: refused as %v, want \"token names no audience\"", err)
		}
	}
	// Without an audience configured, introspection alone decides.
	answer = `{"active":true,"sub":"alice","iss":"` + srv.URL + `","exp":` + exp + `}`
	v := newVerifier(t, Options{Issuer: srv.URL, Introspection: true, IntrospectionURL: srv.URL + "/introspect"})
	if id, err := verify(v, "alice", "opaque-token"); err != nil || id.User != "alice" {
		t.Errorf("no audience configured: %+v %v", id, err)
	}
}
