package main

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/tlsterm"
)

// certMetrics exposes the client certificates: when each expires (read at
// scrape time; a timestamp, so that an alert is "minus time()" and a value
// does not change by itself) and certificate events by kind.
type certMetrics struct {
	events *prometheus.CounterVec
	expiry *prometheus.Desc
	srv    atomic.Pointer[tlsterm.Server]
	// audit is the setup's trail, once open: it records each event.
	audit *atomic.Pointer[auditWire]
	// reloads learns of certificate files reloaded (or not) by polling.
	reloads *reloadMetrics
}

func newCertMetrics(reg prometheus.Registerer, audit *atomic.Pointer[auditWire]) *certMetrics {
	m := &certMetrics{
		audit: audit,
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imapwarden_certificate_events_total", Help: "Certificate events (obtained, renewed, failed, expiring) by kind and source.",
		}, []string{"kind", "source"}),
		expiry: prometheus.NewDesc("imapwarden_certificate_expiry_timestamp_seconds",
			"When each served certificate expires (its notAfter, Unix time), by its first name and source: alert on it minus time().", []string{"name", "source"}, nil),
	}
	reg.MustRegister(m.events, m)
	return m
}

// watch starts reporting srv's certificates.
func (m *certMetrics) watch(srv *tlsterm.Server) { m.srv.Store(srv) }

// event is the tlsterm OnEvent callback: count and log. Names are the
// operator's own certificate names, a bounded set.
func (m *certMetrics) event(log *zap.Logger) func(tlsterm.CertEvent) {
	return func(e tlsterm.CertEvent) {
		m.events.WithLabelValues(string(e.Kind), e.Source).Inc()
		if m.reloads != nil && e.Source == tlsterm.SourceFile {
			switch e.Kind {
			case tlsterm.CertFailed:
				m.reloads.record(reloadTLS, e.Err)
			case tlsterm.CertRenewed:
				m.reloads.record(reloadTLS, nil)
			}
		}
		if w := m.audit.Load(); w != nil {
			w.Cert(string(e.Kind), e.Name, "", []string{e.Name}, e.NotAfter, e.Err)
		}
		fields := []zap.Field{zap.String("kind", string(e.Kind)), zap.String("name", e.Name), zap.String("source", e.Source),
			zap.Time("not_after", e.NotAfter)}
		if e.Err != nil {
			log.Warn("certificate event", append(fields, zap.Error(e.Err))...)
			return
		}
		log.Info("certificate event", fields...)
	}
}

func (m *certMetrics) Describe(ch chan<- *prometheus.Desc) { ch <- m.expiry }

func (m *certMetrics) Collect(ch chan<- prometheus.Metric) {
	srv := m.srv.Load()
	if srv == nil {
		return
	}
	seen := map[string]bool{}
	for _, c := range srv.Certificates() {
		name := ""
		if len(c.Names) > 0 {
			name = c.Names[0]
		}
		if seen[name+"\x00"+c.Source] {
			continue
		}
		seen[name+"\x00"+c.Source] = true
		ch <- prometheus.MustNewConstMetric(m.expiry, prometheus.GaugeValue, float64(c.NotAfter.Unix()), name, c.Source)
	}
}
