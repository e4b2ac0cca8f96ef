package deploytest

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// metric is one series imapwarden exports, as the dashboard may use it.
type metric struct {
	labels []string
	kind   string // counter, gauge or histogram
}

// mustShow are the metrics the dashboard must show. Everything it queries
// must be in exported, read from the proxy's own registry.
var mustShow = []string{
	"imapwarden_connections_total", "imapwarden_sessions_active", "imapwarden_tls_handshakes_total",
	"imapwarden_auth_attempts_total", "imapwarden_commands_total", "imapwarden_command_duration_seconds",
	"imapwarden_policy_evaluation_duration_seconds", "imapwarden_reloads_total", "imapwarden_limit_hits_total",
	"imapwarden_backend_dials_total", "imapwarden_backend_dial_duration_seconds", "imapwarden_relayed_bytes_total",
	"imapwarden_audit_queue_depth", "imapwarden_audit_dropped_total", "imapwarden_certificate_expiry_timestamp_seconds",
	"imapwarden_security_events_total", "imapwarden_build_info",
	"imapwarden_policy_denies_total", "imapwarden_lockouts_active", "imapwarden_reload_success", "imapwarden_audit_healthy",
	"imapwarden_backend_up", "imapwarden_backend_sessions", "imapwarden_backend_protocol_errors_total",
}

// exported are the metrics of a running proxy's registry (registryMetrics).
var exported map[string]metric

// Labels Prometheus adds to every series.
var targetLabels = []string{"job", "instance"}

var (
	selectorRe = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}`)
	matcherRe  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
	groupingRe = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	identRe    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	rangeFnRe  = regexp.MustCompile(`\b(rate|irate|increase|delta|idelta|deriv)\s*\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)`)
	promqlWord = []string{"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan"}
)

// seriesMetric resolves a series name to its exported metric: the name
// itself, or a histogram's _bucket, _sum or _count.
func seriesMetric(series string) (name string, m metric, ok bool) {
	if m, ok := exported[series]; ok && m.kind != "histogram" {
		return series, m, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, cut := strings.CutSuffix(series, suffix); cut {
			if m, ok := exported[base]; ok && m.kind == "histogram" {
				return base, m, true
			}
		}
	}
	return "", metric{}, false
}

// exprMetrics checks one PromQL expression against the exported metrics
// and returns the metrics it uses.
func exprMetrics(t *testing.T, where, expr string) []string {
	t.Helper()
	var used []string
	allowedLabels := map[string]bool{}
	for _, l := range targetLabels {
		allowedLabels[l] = true
	}
	// Selectors with matchers: each matcher names a label of its metric.
	for _, m := range selectorRe.FindAllStringSubmatch(expr, -1) {
		name, met, ok := seriesMetric(m[1])
		if !ok {
			continue // reported below
		}
		labels := slices.Concat(met.labels, targetLabels)
		if strings.HasSuffix(m[1], "_bucket") {
			labels = append(labels, "le")
		}
		for _, mm := range matcherRe.FindAllStringSubmatch(m[2], -1) {
			if !slices.Contains(labels, mm[1]) {
				t.Errorf("%s: %s has no label %q: %s", where, name, mm[1], expr)
			}
		}
	}
	// Strip what is not a metric name: label matchers, strings, ranges.
	rest := regexp.MustCompile(`\{[^}]*\}|"[^"]*"|\[[^\]]*\]`).ReplaceAllString(expr, " ")
	var grouping []string
	for _, g := range groupingRe.FindAllStringSubmatch(rest, -1) {
		for _, l := range strings.Split(g[2], ",") {
			if l = strings.TrimSpace(l); l != "" {
				grouping = append(grouping, l)
			}
		}
	}
	rest = groupingRe.ReplaceAllString(rest, " ")
	for _, loc := range identRe.FindAllStringIndex(rest, -1) {
		id := rest[loc[0]:loc[1]]
		after := strings.TrimLeft(rest[loc[1]:], " \t\n")
		if strings.HasPrefix(after, "(") || slices.Contains(promqlWord, id) {
			continue // a function, an aggregation or a keyword
		}
		if loc[0] > 0 && rest[loc[0]-1] == '$' {
			continue // a Grafana variable
		}
		name, met, ok := seriesMetric(id)
		if !ok {
			t.Errorf("%s: %q is not an exported imapwarden metric: %s", where, id, expr)
			continue
		}
		used = append(used, name)
		for _, l := range met.labels {
			allowedLabels[l] = true
		}
		if strings.HasSuffix(id, "_bucket") {
			allowedLabels["le"] = true
			if !slices.Contains(grouping, "le") {
				t.Errorf("%s: %s without by (le): %s", where, id, expr)
			}
		}
	}
	for _, l := range grouping {
		if !allowedLabels[l] {
			t.Errorf("%s: grouping by %q, which none of %v has: %s", where, l, used, expr)
		}
	}
	// rate() and friends only on counters and histogram series.
	for _, m := range rangeFnRe.FindAllStringSubmatch(expr, -1) {
		if _, met, ok := seriesMetric(m[2]); ok && met.kind == "gauge" {
			t.Errorf("%s: %s() of the gauge %s: %s", where, m[1], m[2], expr)
		}
	}
	return used
}

// TestGrafanaDashboard checks deploy/grafana/imapwarden.json: valid JSON
// that Grafana can import, every query over the exported metrics and their
// labels only, every metric shown somewhere, panels that do not overlap.
func TestGrafanaDashboard(t *testing.T) {
	exported = registryMetrics(t)
	var dash struct {
		UID        string `json:"uid"`
		Title      string `json:"title"`
		Schema     int    `json:"schemaVersion"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID         int    `json:"id"`
			Type       string `json:"type"`
			Title      string `json:"title"`
			Datasource *struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			GridPos struct{ X, Y, W, H int } `json:"gridPos"`
			Targets []struct {
				Expr       string `json:"expr"`
				Datasource *struct {
					UID string `json:"uid"`
				} `json:"datasource"`
			} `json:"targets"`
		} `json:"panels"`
	}
	data := readFile(t, "deploy/grafana/imapwarden.json")
	if err := json.Unmarshal([]byte(data), &dash); err != nil {
		t.Fatalf("imapwarden.json: %v", err)
	}
	if dash.UID == "" || dash.Title == "" || dash.Schema < 36 {
		t.Errorf("uid %q title %q schemaVersion %d", dash.UID, dash.Title, dash.Schema)
	}

	used := map[string]bool{}
	var vars []string
	for _, v := range dash.Templating.List {
		vars = append(vars, v.Name)
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Errorf("variable %s: query: %v", v.Name, err)
		}
		inner := regexp.MustCompile(`^label_values\((.*),\s*\w+\)$`).FindStringSubmatch(q.Query)
		if inner == nil {
			t.Errorf("variable %s: query %q is not label_values(series, label)", v.Name, q.Query)
			continue
		}
		for _, m := range exprMetrics(t, "variable "+v.Name, inner[1]) {
			used[m] = true
		}
	}
	for _, v := range []string{"datasource", "job", "instance"} {
		if !slices.Contains(vars, v) {
			t.Errorf("no dashboard variable %s (have %v)", v, vars)
		}
	}

	ids := map[int]bool{}
	type rect struct{ x, y, w, h int }
	var placed []rect
	var queries int
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		r := rect{p.GridPos.X, p.GridPos.Y, p.GridPos.W, p.GridPos.H}
		if r.w <= 0 || r.h <= 0 || r.x+r.w > 24 {
			t.Errorf("panel %q: gridPos %+v", p.Title, r)
		}
		for _, o := range placed {
			if r.x < o.x+o.w && o.x < r.x+r.w && r.y < o.y+o.h && o.y < r.y+r.h {
				t.Errorf("panel %q at %+v overlaps %+v", p.Title, r, o)
			}
		}
		placed = append(placed, r)
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource is not the ${datasource} variable", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			queries++
			if !strings.Contains(q.Expr, `job=~"$job"`) || !strings.Contains(q.Expr, `instance=~"$instance"`) {
				t.Errorf("panel %q: query ignores the job and instance variables: %s", p.Title, q.Expr)
			}
			for _, m := range exprMetrics(t, "panel "+p.Title, q.Expr) {
				used[m] = true
			}
		}
	}
	for _, name := range mustShow {
		if _, ok := exported[name]; !ok {
			t.Errorf("%s is not in the registry", name)
		}
		if !used[name] {
			t.Errorf("no panel shows %s", name)
		}
	}
	t.Logf("%d panels, %d queries", len(dash.Panels), queries)
}
