package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/imapwarden/imapwarden/audit"
	"github.com/imapwarden/imapwarden/internal/filemode"
	"github.com/imapwarden/imapwarden/proxy"
)

// auditConfig is the tamper-evident trail (package audit).
type auditConfig struct {
	// Sink: file (the default when path is set) | stdout | syslog.
	Sink        string    `yaml:"sink"`
	Path        string    `yaml:"path"`
	MaxSize     *byteSize `yaml:"max_size"`     // default 100 MiB
	RotateEvery *duration `yaml:"rotate_every"` // default never
	// Fsync: interval (default, every fsync_interval) | always | never.
	Fsync         string    `yaml:"fsync"`
	FsyncInterval *duration `yaml:"fsync_interval"` // default 1s
	QueueSize     int       `yaml:"queue_size"`     // default 8192
	// OnFull: block (fail closed: commands wait for their records) |
	// drop (fail open: records are dropped and counted).
	OnFull string `yaml:"on_full"`
	// AckTimeout (block): how long a command's reply waits for its
	// record to be durable before the session ends with BYE.
	AckTimeout *duration `yaml:"ack_timeout"` // default 10s
	// DropReadiness (drop): a dropped record fails /readyz for a while.
	DropReadiness       *bool     `yaml:"drop_readiness"`        // default true
	DropReadinessWindow *duration `yaml:"drop_readiness_window"` // default 10s
	// CheckpointFile receives a signed checkpoint at every fsync; needs
	// key_file. Put it on another file system than path.
	CheckpointFile string `yaml:"checkpoint_file"`
	KeyFile        string `yaml:"key_file"` // HMAC key: the chain cannot be recomputed without it
	// CreateKey makes key_file with a random key when serve starts and it
	// does not exist: a container has no install step to make one.
	CreateKey bool              `yaml:"create_key"`
	Syslog    auditSyslogConfig `yaml:"syslog"`
	// What one record carries of text from outside the proxy (audit
	// package: DefaultMaxFieldBytes, DefaultMaxListItems,
	// DefaultMaxRecordBytes).
	MaxFieldBytes  int `yaml:"max_field_bytes"`
	MaxListItems   int `yaml:"max_list_items"`
	MaxRecordBytes int `yaml:"max_record_bytes"`
	// mailboxNames is limits.max_audit_mailbox_names when set: the
	// distinct mailboxes one record must name.
	mailboxNames int
	// nameBytes is limits.max_audit_name_bytes when set: what the names
	// one record must hold whole may total.
	nameBytes int
}

// defaultAckTimeout is audit.ack_timeout's default: well under the
// minute IMAP clients commonly wait for a reply.
const defaultAckTimeout = 10 * time.Second

type auditSyslogConfig struct {
	Network  string `yaml:"network"` // unix (default) | unixgram | unixstream | udp | tcp | tls
	Address  string `yaml:"address"` // default /dev/log
	Facility string `yaml:"facility"`
	AppName  string `yaml:"app_name"`
}

// buildAudit checks the audit section; in serve mode it opens the trail
// and makes it the Auditor (with the operational log beside it).
func buildAudit(p *problems, s *setup, c auditConfig, checkOnly bool, log *zap.Logger) {
	sink := c.Sink
	if sink == "" && c.Path != "" {
		sink = "file"
	}
	if sink == "" {
		return
	}
	o := audit.Options{QueueSize: c.QueueSize, SyncInterval: c.FsyncInterval.get(0), Logger: log.Named("audit-trail"), Software: "imapwarden " + versionString(),
		MaxFieldBytes: c.MaxFieldBytes, MaxListItems: c.MaxListItems, MaxRecordBytes: c.MaxRecordBytes,
		MaxMailboxNames: c.mailboxNames, MaxNameBytes: c.nameBytes}
	if c.MaxFieldBytes < 0 || c.MaxListItems < 0 {
		p.add("audit.max_field_bytes, audit.max_list_items: must not be negative")
	}
	if c.MaxRecordBytes != 0 && c.MaxRecordBytes < audit.MinRecordBytes {
		p.add("audit.max_record_bytes: at least %d (RFC 5426 §3.2)", audit.MinRecordBytes)
	}
	switch c.Fsync {
	case "", "interval":
	case "always":
		o.SyncInterval = audit.SyncAlways
	case "never":
		o.SyncInterval = audit.SyncNever
	default:
		p.add("audit.fsync: unknown value %q (want interval, always or never)", c.Fsync)
	}
	switch c.OnFull {
	case "", "block":
		o.Overflow = audit.Block
	case "drop":
		o.Overflow = audit.Drop
	default:
		p.add("audit.on_full: unknown value %q (want block or drop)", c.OnFull)
	}
	switch {
	case c.CreateKey && c.KeyFile == "":
		p.add("audit.create_key: needs audit.key_file, where the key is made")
	case c.KeyFile == "":
	case c.CreateKey && checkOnly && !exists(c.KeyFile):
		// validate and reloads create nothing: serve makes it at start.
		if st, err := os.Stat(filepath.Dir(c.KeyFile)); err != nil || !st.IsDir() {
			p.add("audit.key_file: directory %s does not exist", filepath.Dir(c.KeyFile))
		}
	default:
		if c.CreateKey {
			created, err := createKey(c.KeyFile)
			if err != nil {
				p.add("audit.key_file: %v", err)
				break
			}
			if created {
				log.Warn("created a new audit key: keep a copy, audit verify needs it", zap.String("key_file", c.KeyFile))
			}
		}
		if err := filemode.Secret(c.KeyFile); err != nil {
			// Whoever reads the key can sign a forged trail.
			p.add("audit.key_file: %v", err)
			break
		}
		k, err := audit.LoadKey(c.KeyFile)
		if err != nil {
			p.add("audit.key_file: %v", err)
		}
		o.Key = k
	}
	if c.DropReadiness != nil {
		o.DropKeepsHealthy = !*c.DropReadiness
	}
	if o.DropHealthWindow = c.DropReadinessWindow.get(audit.DefaultDropHealthWindow); o.DropHealthWindow <= 0 {
		p.add("audit.drop_readiness_window: must be positive")
	}
	if c.CheckpointFile != "" {
		if c.KeyFile == "" {
			p.add("audit.checkpoint_file: checkpoints are signed with the trail's key: set audit.key_file")
		} else if st, err := os.Stat(filepath.Dir(c.CheckpointFile)); err != nil || !st.IsDir() {
			p.add("audit.checkpoint_file: directory %s does not exist", filepath.Dir(c.CheckpointFile))
		}
		o.Checkpoint = audit.NewCheckpointFile(c.CheckpointFile)
	}
	var open func() (audit.Sink, error)
	switch sink {
	case "file":
		if c.Path == "" {
			p.add("audit.path: required for the file sink")
			return
		}
		if st, err := os.Stat(filepath.Dir(c.Path)); err != nil || !st.IsDir() {
			p.add("audit.path: directory %s does not exist", filepath.Dir(c.Path))
			return
		}
		fo := audit.FileOptions{Path: c.Path, RotateEvery: c.RotateEvery.get(0),
			OnModeFixed: func(path string, from, to os.FileMode) {
				log.Warn("audit file readable by others, mode narrowed", zap.String("path", path),
					zap.String("from", fmt.Sprintf("%04o", from)), zap.String("to", fmt.Sprintf("%04o", to)))
			}}
		if c.MaxSize != nil {
			fo.MaxSize = int64(*c.MaxSize)
		}
		open = func() (audit.Sink, error) { return audit.OpenFile(fo) }
	case "stdout":
		open = func() (audit.Sink, error) { return audit.NewWriterSink(os.Stdout), nil }
	case "syslog":
		so := audit.SyslogOptions{Network: c.Syslog.Network, Addr: c.Syslog.Address, AppName: c.Syslog.AppName, Logger: log.Named("audit-trail")}
		if so.Network == "" {
			so.Network = "unix"
		}
		if so.Addr == "" {
			so.Addr = "/dev/log"
		}
		if c.Syslog.Facility != "" {
			f, err := audit.ParseFacility(c.Syslog.Facility)
			if err != nil {
				p.add("audit.syslog.facility: %v", err)
			}
			so.Facility = f
		}
		open = func() (audit.Sink, error) { return audit.DialSyslog(so) }
	default:
		p.add("audit.sink: unknown value %q (want file, stdout or syslog)", sink)
		return
	}
	if len(*p) > 0 {
		return
	}
	if checkOnly {
		if _, _, err := audit.CheckCaps(o); err != nil {
			p.add("audit: %v", err)
		}
		return
	}
	snk, err := open()
	if err != nil {
		p.add("audit: %v", err)
		return
	}
	o.Sink = snk
	t, err := audit.New(o)
	if err != nil {
		p.add("audit: %v", err)
		return
	}
	s.trail, s.auditWire = t, newAuditWire(t)
	// A command naming more mailboxes than a record holds is refused
	// (ARCHITECTURE.md §11).
	s.opts.Limits.MaxAuditMailboxNames = t.MaxMailboxNames()
	s.opts.Limits.MaxAuditNameBytes = t.MaxNameBytes()
	s.auditWire.ackTimeout = c.AckTimeout.get(defaultAckTimeout)
	s.auditWire.failOpen = o.Overflow == audit.Drop
	s.opts.Auditor = teeAuditor{s.auditWire, s.opts.Auditor}
	s.queueSize = o.QueueSize
	if s.queueSize <= 0 {
		s.queueSize = 8192
	}
	if s.reg != nil {
		s.reg.MustRegister(auditCollector{t})
	}
}

// auditReady fails while the sink fails (from its first failed write:
// in block mode commands are no longer acknowledged), after a record was
// dropped (drop mode, unless audit.drop_readiness is false), and when the
// queue is nearly full: the sink is stalled.
func auditReady(t *audit.Trail, size int) func() error {
	return func() error {
		if err := t.Health(); err != nil {
			return err
		}
		if st := t.Stats(); st.Queued >= size*9/10 {
			return fmt.Errorf("audit queue %d/%d full: the sink is not keeping up", st.Queued, size)
		}
		return nil
	}
}

// teeAuditor sends every event to the trail and to the operational log.
type teeAuditor struct{ a, b proxy.Auditor }

func (t teeAuditor) SessionOpen(s *proxy.SessionInfo) { t.a.SessionOpen(s); t.b.SessionOpen(s) }
func (t teeAuditor) TLSStarted(s *proxy.SessionInfo)  { t.a.TLSStarted(s); t.b.TLSStarted(s) }
func (t teeAuditor) Auth(s *proxy.SessionInfo, e proxy.AuthEvent) {
	t.a.Auth(s, e)
	t.b.Auth(s, e)
}

// Command fails when either side failed: each must hold the record.
func (t teeAuditor) Command(s *proxy.SessionInfo, e proxy.CommandEvent) error {
	return errors.Join(t.a.Command(s, e), t.b.Command(s, e))
}
func (t teeAuditor) Security(s *proxy.SessionInfo, kind, detail string) {
	t.a.Security(s, kind, detail)
	t.b.Security(s, kind, detail)
}
func (t teeAuditor) Limit(s *proxy.SessionInfo, r proxy.LimitResult) {
	t.a.Limit(s, r)
	t.b.Limit(s, r)
}
func (t teeAuditor) Delivered(s *proxy.SessionInfo, e proxy.DeliveryEvent) {
	t.a.Delivered(s, e)
	t.b.Delivered(s, e)
}
func (t teeAuditor) SessionClose(s *proxy.SessionInfo, e proxy.CloseEvent) {
	t.a.SessionClose(s, e)
	t.b.SessionClose(s, e)
}

// Ready is not ready when either side is not (proxy.AuditReadiness): a
// command whose record one side cannot hold is not carried out.
func (t teeAuditor) Ready() error { return errors.Join(readyOf(t.a), readyOf(t.b)) }

func readyOf(a proxy.Auditor) error {
	if r, ok := a.(proxy.AuditReadiness); ok {
		return r.Ready()
	}
	return nil
}

// logSessions reports whether the operational log repeats the session
// events (log.sessions): by default only when no audit trail records
// them all, since a line costs about as much as the record (encoding, one
// write each; four per login). A trail that drops records when full
// (audit.on_full: drop, fail open) may lose them: auto logs them then.
// "off" without a trail records logins nowhere, which warn reports.
func logSessions(p *problems, cfg *fileConfig, warn func(key, format string, args ...any)) bool {
	trail := cfg.Audit.Sink != "" || cfg.Audit.Path != ""
	switch cfg.Log.Sessions {
	case "", "auto":
		return !trail || cfg.Audit.OnFull == "drop"
	case "on":
		return true
	case "off":
		if !trail {
			warn("log.sessions", "off without an audit trail: successful logins, session opens and closes are recorded nowhere")
		}
		return false
	}
	p.add("log.sessions: unknown value %q (want auto, on or off)", cfg.Log.Sessions)
	return true
}

// sessionsUnlogged is the operational log without the session events the
// audit trail records: open, TLS, a successful login, close. A failed
// login, security events, limits and refused commands are still logged.
type sessionsUnlogged struct{ proxy.Auditor }

func (sessionsUnlogged) SessionOpen(*proxy.SessionInfo)                    {}
func (sessionsUnlogged) TLSStarted(*proxy.SessionInfo)                     {}
func (sessionsUnlogged) SessionClose(*proxy.SessionInfo, proxy.CloseEvent) {}
func (q sessionsUnlogged) Auth(s *proxy.SessionInfo, e proxy.AuthEvent) {
	if !e.Success {
		q.Auditor.Auth(s, e)
	}
}

// auditCollector exports the trail's counters at scrape time.
type auditCollector struct{ t *audit.Trail }

var (
	auditQueueDesc   = prometheus.NewDesc("imapwarden_audit_queue_depth", "Audit records waiting to be written.", nil, nil)
	auditDroppedDesc = prometheus.NewDesc("imapwarden_audit_dropped_total", "Audit records lost (drop mode, or a sink failing at close).", nil, nil)
	auditWrittenDesc = prometheus.NewDesc("imapwarden_audit_records_total", "Audit records written.", nil, nil)
	auditErrorsDesc  = prometheus.NewDesc("imapwarden_audit_sink_errors_total", "Failed audit writes and syncs.", nil, nil)
	auditShrunkDesc  = prometheus.NewDesc("imapwarden_audit_shrunk_total", "Audit records over audit.max_record_bytes, written with tighter caps.", nil, nil)
	auditHealthyDesc = prometheus.NewDesc("imapwarden_audit_healthy", "1 while the trail holds every record durably; 0 while its sink fails (block mode refuses commands) or just after it dropped records (drop mode).", nil, nil)
)

func (c auditCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{auditQueueDesc, auditDroppedDesc, auditWrittenDesc, auditErrorsDesc, auditShrunkDesc, auditHealthyDesc} {
		ch <- d
	}
}

func (c auditCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.t.Stats()
	ch <- prometheus.MustNewConstMetric(auditQueueDesc, prometheus.GaugeValue, float64(st.Queued))
	ch <- prometheus.MustNewConstMetric(auditDroppedDesc, prometheus.CounterValue, float64(st.Dropped))
	ch <- prometheus.MustNewConstMetric(auditWrittenDesc, prometheus.CounterValue, float64(st.Written))
	ch <- prometheus.MustNewConstMetric(auditErrorsDesc, prometheus.CounterValue, float64(st.SinkErrors))
	ch <- prometheus.MustNewConstMetric(auditShrunkDesc, prometheus.CounterValue, float64(st.Shrunk))
	healthy := 1.0
	if c.t.Health() != nil {
		healthy = 0
	}
	ch <- prometheus.MustNewConstMetric(auditHealthyDesc, prometheus.GaugeValue, healthy)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// createKey writes a new random HMAC key (32 bytes, hex) to path unless it
// exists, readable by its owner only; it reports whether it made one.
func createKey(path string) (bool, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var b [32]byte
	rand.Read(b[:])
	_, err = fmt.Fprintf(f, "%x\n", b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	return true, nil
}
