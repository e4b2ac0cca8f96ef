package main

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/proxy/pool"
)

// backendsAPI serves the backends' pools on the admin listener
// (docs/admin-api.md):
//
//	GET  /backends                                     every backend and server: health, admin state, sessions
//	POST /backends/{backend}/servers/{server}/drain    no new logins; sessions go on (?kick=true ends them)
//	POST /backends/{backend}/servers/{server}/disable  maintenance: no new logins, no health checks (?kick=true)
//	POST /backends/{backend}/servers/{server}/enable   back in service
//
// The POSTs need the write scope and are audited by admin.authorize
// (kind admin, event backend.drain|disable|enable), refused ones too.
// Kicked sessions end at their next command boundary with
// "* BYE [UNAVAILABLE]", like a shutdown.
type backendsAPI struct {
	mon *pool.Monitor
	srv *proxy.Server
}

func (b *backendsAPI) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /backends", b.list)
	mux.HandleFunc("POST /backends/{backend}/servers/{server}/{action}", b.act)
}

func (b *backendsAPI) list(w http.ResponseWriter, _ *http.Request) {
	set := b.mon.Set()
	if set == nil {
		writeJSON(w, http.StatusOK, []pool.BackendStatus{})
		return
	}
	writeJSON(w, http.StatusOK, set.Status())
}

// kickText is what the sessions of a server taken out of service hear.
const kickText = "Backend server taken out of service, please reconnect"

func (b *backendsAPI) act(w http.ResponseWriter, r *http.Request) {
	backend, server, verb := r.PathValue("backend"), r.PathValue("server"), r.PathValue("action")
	act := action{event: "backend." + verb, backend: backend, server: server}
	fail := func(code int, err error) {
		act.detail = err.Error()
		note(r, act)
		writeJSON(w, code, map[string]string{"error": err.Error()})
	}
	state, ok := pool.ParseAdmin(verb)
	if !ok {
		fail(http.StatusNotFound, errors.New("unknown action "+strconv.Quote(verb)+": want drain, disable or enable"))
		return
	}
	args, code, err := readAdminArgs(r, []string{"kick"})
	if err != nil {
		fail(code, err)
		return
	}
	kick := false
	if v := args["kick"]; v != "" {
		var err error
		if kick, err = strconv.ParseBool(v); err != nil {
			fail(http.StatusBadRequest, errors.New("kick: want true or false"))
			return
		}
	}
	if kick && state == pool.Enabled {
		fail(http.StatusBadRequest, errors.New("kick goes with drain or disable, not enable"))
		return
	}
	set := b.mon.Set()
	if set == nil {
		fail(http.StatusServiceUnavailable, errors.New("no backends yet"))
		return
	}
	prev, st, err := set.SetAdmin(backend, server, state)
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, pool.ErrNotFound) {
			code = http.StatusNotFound
		}
		fail(code, err)
		return
	}
	ended := 0
	act.detail = "from " + prev.String()
	if kick {
		ended = b.srv.EndServerSessions(backend, server, kickText)
		act.detail += ", kick: " + strconv.Itoa(ended) + " sessions ended"
	}
	note(r, act)
	writeJSON(w, http.StatusOK, map[string]any{"backend": backend, "previous": prev.String(), "server": st, "sessions_ended": ended})
}
