package main

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imapwarden/imapwarden/policy"
)

// Reload components: what a reload re-reads.
const (
	reloadConfig = "config" // the configuration file (SIGHUP)
	reloadPolicy = "policy" // policy files and groups (polled, and SIGHUP)
	reloadTLS    = "tls"    // client certificate files (polled, and SIGHUP)
	reloadUsers  = "users"  // the file authenticators' users files (polled)
)

// reloadMetrics reports reloads. A failed reload keeps the running
// configuration and keeps readiness (one bad ConfigMap on every replica
// must not empty the load balancer): it is this metric and an alert rule
// (deploy/prometheus/imapwarden-rules.yaml), not a 503.
type reloadMetrics struct {
	mu sync.Mutex
	// by component, for config, tls and users; policy is read from the
	// engine.
	ok      map[string]bool
	last    map[string]time.Time
	counts  map[[2]string]float64 // component, result
	engine  *policy.Engine
	started time.Time
}

var (
	reloadSuccessDesc = prometheus.NewDesc("imapwarden_reload_success",
		"1 when the last reload of the component succeeded (or none was tried), 0 when it failed and the previous one stays in force.", []string{"component"}, nil)
	reloadLastDesc = prometheus.NewDesc("imapwarden_reload_last_success_timestamp_seconds",
		"When the component in force was loaded.", []string{"component"}, nil)
	reloadsDesc = prometheus.NewDesc("imapwarden_reloads_total",
		"Reloads by component and result (ok, failed).", []string{"component", "result"}, nil)
)

func newReloadMetrics(reg prometheus.Registerer) *reloadMetrics {
	now := time.Now()
	m := &reloadMetrics{ok: map[string]bool{}, last: map[string]time.Time{}, counts: map[[2]string]float64{}, started: now}
	for _, c := range []string{reloadConfig, reloadTLS, reloadUsers} {
		m.ok[c], m.last[c] = true, now
	}
	reg.MustRegister(m)
	return m
}

// setEngine makes e the policy engine whose reloads are reported.
func (m *reloadMetrics) setEngine(e *policy.Engine) {
	if m == nil {
		return // demo: no reloads
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.engine = e
}

// record notes a reload of component; err nil is a success.
func (m *reloadMetrics) record(component string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	result := "ok"
	if err != nil {
		result = "failed"
	}
	m.counts[[2]string{component, result}]++
	m.setLocked(component, err)
}

// state notes the outcome of a reload that is counted elsewhere (the
// certificate events count the file reloads that changed or failed).
func (m *reloadMetrics) state(component string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.setLocked(component, err)
}

func (m *reloadMetrics) setLocked(component string, err error) {
	if err == nil {
		m.last[component] = time.Now()
	}
	m.ok[component] = err == nil
}

func (m *reloadMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- reloadSuccessDesc
	ch <- reloadLastDesc
	ch <- reloadsDesc
}

func (m *reloadMetrics) Collect(ch chan<- prometheus.Metric) {
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	m.mu.Lock()
	for _, c := range []string{reloadConfig, reloadTLS, reloadUsers} {
		ch <- prometheus.MustNewConstMetric(reloadSuccessDesc, prometheus.GaugeValue, b2f(m.ok[c]), c)
		ch <- prometheus.MustNewConstMetric(reloadLastDesc, prometheus.GaugeValue, float64(m.last[c].UnixNano())/1e9, c)
		for _, r := range []string{"ok", "failed"} {
			ch <- prometheus.MustNewConstMetric(reloadsDesc, prometheus.CounterValue, m.counts[[2]string{c, r}], c, r)
		}
	}
	e := m.engine
	m.mu.Unlock()
	if e == nil {
		return
	}
	st := e.Stats()
	ch <- prometheus.MustNewConstMetric(reloadSuccessDesc, prometheus.GaugeValue, b2f(st.LastError == ""), reloadPolicy)
	ch <- prometheus.MustNewConstMetric(reloadLastDesc, prometheus.GaugeValue, float64(st.LastSuccess.UnixNano())/1e9, reloadPolicy)
	ch <- prometheus.MustNewConstMetric(reloadsDesc, prometheus.CounterValue, float64(st.Reloads), reloadPolicy, "ok")
	ch <- prometheus.MustNewConstMetric(reloadsDesc, prometheus.CounterValue, float64(st.ReloadFailures), reloadPolicy, "failed")
}
