package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/imapwarden/imapwarden/audit"
)

// Audit search on the admin listener: the filters of "imapwarden audit
// query" over the trail's files (audit.Query), newest records kept.
const (
	defaultSearchLimit = 100
	maxSearchLimit     = 1000
)

var (
	errNoTrail      = errors.New("no audit file: searching needs audit.path (the file sink)")
	errSearchesBusy = errors.New("too many audit searches at once; try again")
)

// badFilter is a search the user got wrong (400, not 500).
type badFilter struct{ error }

// searchResult is what a search found: the newest matches, oldest first.
type searchResult struct {
	Records []*audit.Record
	Lines   [][]byte
	// Matched counts every match; Truncated says older ones were left out.
	Matched   int
	Truncated bool
	Skipped   int // lines that are not records
}

// searchAudit runs a query over the trail's files, keeping the newest
// limit matches.
func (a *admin) searchAudit(ctx context.Context, fa auditFilterArgs, limit int) (*searchResult, error) {
	path := a.view.Load().auditPath
	if path == "" {
		return nil, errNoTrail
	}
	f, err := fa.filter(time.Now(), "")
	if err != nil {
		return nil, badFilter{err}
	}
	select {
	case a.searches <- struct{}{}:
		defer func() { <-a.searches }()
	default:
		return nil, errSearchesBusy
	}
	files, err := audit.Files(path)
	if err != nil {
		return nil, err
	}
	if limit <= 0 || limit > maxSearchLimit {
		limit = defaultSearchLimit
	}
	// A ring of the newest matches: lines are the scanner's, copied.
	res := &searchResult{}
	recs := make([]*audit.Record, limit)
	lines := make([][]byte, limit)
	// A search whose client went away stops: each holds one of
	// admin.audit_searches while it reads the trail.
	res.Skipped, err = audit.QueryContext(ctx, files, &f, func(r *audit.Record, line []byte) error {
		i := res.Matched % limit
		recs[i], lines[i] = r, append(lines[i][:0], line...)
		res.Matched++
		return nil
	})
	if err != nil {
		return nil, err
	}
	n := min(res.Matched, limit)
	res.Truncated = res.Matched > limit
	start := 0
	if res.Truncated {
		start = res.Matched % limit
	}
	for i := range n {
		j := (start + i) % limit
		res.Records = append(res.Records, recs[j])
		res.Lines = append(res.Lines, lines[j])
	}
	return res, nil
}

// auditSearch is GET /audit?user=...&limit=N: the records as stored.
func (a *admin) auditSearch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := defaultSearchLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > maxSearchLimit {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "limit: want 1 to " + strconv.Itoa(maxSearchLimit)})
			return
		}
		limit = n
	}
	res, err := a.searchAudit(r.Context(), filterArgsFrom(q), limit)
	switch {
	case errors.Is(err, errNoTrail):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
		return
	case errors.Is(err, errSearchesBusy):
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	case errors.As(err, new(badFilter)):
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	records := make([]json.RawMessage, 0, len(res.Lines))
	for _, l := range res.Lines {
		if json.Valid(l) {
			records = append(records, l)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"records": records, "matched": res.Matched, "truncated": res.Truncated, "skipped": res.Skipped})
}
