package audit

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Syslog facilities (RFC 5424 §6.2.1) that suit an audit trail.
const (
	FacilityAuth     = 4
	FacilityAuthPriv = 10
	FacilityLogAudit = 13
	FacilityLocal0   = 16
)

// Syslog severities used (RFC 5424 §6.2.1).
const (
	sevWarning = 4
	sevNotice  = 5
	sevInfo    = 6
)

var facilityNames = map[string]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
	"uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "audit": 13, "alert": 14, "clock": 15,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

// ParseFacility maps a facility name ("authpriv", "local0", ...) to its
// number.
func ParseFacility(name string) (int, error) {
	if f, ok := facilityNames[strings.ToLower(name)]; ok {
		return f, nil
	}
	return 0, fmt.Errorf("audit: unknown syslog facility %q", name)
}

// SyslogOptions configure a SyslogSink.
type SyslogOptions struct {
	// Network is "unixgram" (or "unix": datagram, then stream, as
	// /dev/log may be either), "unixstream", "udp" (RFC 5426), "tcp"
	// (RFC 6587 octet counting) or "tls" (RFC 5425).
	Network string
	// Addr is the socket path or host:port; "" with a unix network means
	// /dev/log.
	Addr string
	// TLS configures "tls" (server name, roots, client certificate).
	TLS *tls.Config
	// Facility; default FacilityAuthPriv: records name users.
	Facility int
	// Hostname and AppName of the header; defaults os.Hostname and
	// "imapwarden".
	Hostname string
	AppName  string
	// Timeout bounds a dial and a write; default 5 s. A receiver that
	// stalls longer makes the write fail, so that the trail's overflow
	// policy applies instead of a hang.
	Timeout time.Duration
	// Logger receives a record the transport refused as too large (see
	// Write); nil logs nothing.
	Logger *zap.Logger
}

// SyslogSink sends each record as one RFC 5424 message whose MSG is the
// record's JSON, unchanged, so that verify can check the chain on what
// the syslog server stored. A broken connection is dialled again at the
// next write.
type SyslogSink struct {
	o        SyslogOptions
	oversize atomic.Uint64
	stream   bool // octet-counting framing (RFC 6587 §3.4.1)
	conn     net.Conn
	header   []byte // " HOSTNAME APP-NAME PROCID "
	msg      []byte // one message
	buf      []byte // a stream's batch of framed messages
}

// DialSyslog checks the options and connects.
func DialSyslog(o SyslogOptions) (*SyslogSink, error) {
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Facility == 0 {
		o.Facility = FacilityAuthPriv
	}
	if o.Facility < 0 || o.Facility > 23 {
		return nil, fmt.Errorf("audit: syslog facility %d out of range", o.Facility)
	}
	if o.AppName == "" {
		o.AppName = "imapwarden"
	}
	if o.Hostname == "" {
		o.Hostname, _ = os.Hostname()
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	s := &SyslogSink{o: o}
	switch o.Network {
	case "unix", "unixgram", "unixstream":
		if o.Addr == "" {
			s.o.Addr = "/dev/log"
		}
	case "udp":
	case "tcp", "tls":
		s.stream = true
	default:
		return nil, fmt.Errorf("audit: syslog network %q: want unix, unixgram, unixstream, udp, tcp or tls", o.Network)
	}
	if s.o.Addr == "" {
		return nil, fmt.Errorf("audit: syslog %s without an address", o.Network)
	}
	s.header = fmt.Appendf(nil, " %s %s %d ", headerField(o.Hostname, 255), headerField(o.AppName, 48), os.Getpid())
	if err := s.dial(); err != nil {
		return nil, err
	}
	return s, nil
}

// headerField makes a header field valid: printable US-ASCII without
// spaces, at most n octets, "-" when empty (RFC 5424 §6).
func headerField(v string, n int) string {
	v = strings.Map(func(r rune) rune {
		if r <= ' ' || r > '~' {
			return -1
		}
		return r
	}, v)
	if len(v) > n {
		v = v[:n]
	}
	if v == "" {
		return "-"
	}
	return v
}

func (s *SyslogSink) dial() error {
	d := net.Dialer{Timeout: s.o.Timeout}
	var c net.Conn
	var err error
	switch s.o.Network {
	case "unix":
		if c, err = d.Dial("unixgram", s.o.Addr); err != nil {
			c, err = d.Dial("unix", s.o.Addr)
			s.stream = err == nil
		}
	case "unixgram":
		c, err = d.Dial("unixgram", s.o.Addr)
	case "unixstream":
		c, err = d.Dial("unix", s.o.Addr)
		s.stream = true
	case "udp", "tcp":
		c, err = d.Dial(s.o.Network, s.o.Addr)
	case "tls":
		c, err = tls.DialWithDialer(&d, "tcp", s.o.Addr, s.o.TLS)
	}
	if err != nil {
		return fmt.Errorf("audit: syslog: %w", err)
	}
	s.conn = c
	return nil
}

// Write implements Sink: one message per record. Over a stream the batch
// leaves in one write.
func (s *SyslogSink) Write(p []byte) error {
	if s.conn != nil && s.stream && s.peerClosed() {
		// A server that restarted while we were idle: a write would still
		// succeed into the dead connection and be lost (RFC 6587 has no
		// acknowledgements), so dial again first.
		s.conn.Close()
		s.conn = nil
	}
	if s.conn == nil {
		if err := s.dial(); err != nil {
			return err
		}
	}
	now := time.Now()
	s.buf = s.buf[:0]
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			i = len(p)
		}
		rec := p[:i]
		p = p[min(i+1, len(p)):]
		s.msg = s.appendMessage(s.msg[:0], rec, now)
		if !s.stream {
			if err := s.sendDatagram(rec, now); err != nil {
				return err
			}
			continue
		}
		// RFC 6587 §3.4.1 octet counting: MSG-LEN SP SYSLOG-MSG.
		s.buf = strconv.AppendInt(s.buf, int64(len(s.msg)), 10)
		s.buf = append(s.buf, ' ')
		s.buf = append(s.buf, s.msg...)
	}
	if len(s.buf) > 0 {
		return s.send(s.buf)
	}
	return nil
}

// maxUDP is the largest UDP payload over IPv4 (RFC 768, RFC 791: 65535
// minus the IP and UDP headers), which RFC 5426 §3.2 bounds a message by.
const maxUDP = 65507

// MaxRecordBytes is the largest record one message carries over a
// datagram transport (0 over a stream): the trail bounds its records by
// it (Options.MaxRecordBytes). The header takes at most 7 octets of PRI
// and version, 32 of timestamp, ours, 32 of MSGID and 3 more (RFC 5424
// §6). A unix datagram socket takes what its send buffer holds, more than
// this on Linux by default.
func (s *SyslogSink) MaxRecordBytes() int {
	if s.stream {
		return 0
	}
	return maxUDP - (7 + 32 + len(s.header) + 32 + 3)
}

// Oversized counts records the transport refused as too large (Write).
func (s *SyslogSink) Oversized() uint64 { return s.oversize.Load() }

// sendDatagram sends s.msg, the message of rec, as one datagram. When the
// transport refuses it as too large (EMSGSIZE: the trail's MaxRecordBytes
// is above what this socket takes), a notice with the record's seq, kind
// and size goes in its place and the write succeeds: one record must not
// stop the trail for every session. The receiver's copy then lacks that
// seq, which verify reports; the operational log says so at once.
func (s *SyslogSink) sendDatagram(rec []byte, now time.Time) error {
	err := s.send(s.msg)
	if !errors.Is(err, syscall.EMSGSIZE) {
		return err
	}
	n := s.oversize.Add(1)
	seq := seqOf(rec)
	s.o.Logger.Error("audit record too large for the syslog transport: a notice sent in its place; lower audit.max_record_bytes",
		zap.ByteString("kind", kindOf(rec)), zap.Uint64("seq", seq), zap.Int("bytes", len(rec)), zap.Uint64("oversized_total", n), zap.Error(err))
	s.msg = s.appendHeader(s.msg[:0], []byte(msgIDOversize), sevWarning, now)
	s.msg = fmt.Appendf(s.msg, "audit record seq %d (%s, %d bytes) not sent: over what the transport carries", seq, headerField(string(kindOf(rec)), 32), len(rec))
	return s.send(s.msg)
}

// msgIDOversize is the MSGID of the notice sent for a record the
// transport refused.
const msgIDOversize = "audit.oversize"

// seqOf finds the seq of an encoded record without decoding it: the
// writer puts it after the time, kind and version.
func seqOf(rec []byte) uint64 {
	const key = `"seq":`
	i := bytes.Index(rec[:min(len(rec), 128)], []byte(key))
	if i < 0 {
		return 0
	}
	var n uint64
	for _, c := range rec[i+len(key):] {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + uint64(c-'0')
	}
	return n
}

func (s *SyslogSink) send(b []byte) error {
	s.conn.SetWriteDeadline(time.Now().Add(s.o.Timeout))
	if _, err := s.conn.Write(b); err != nil {
		if errors.Is(err, syscall.EMSGSIZE) {
			// That message only: the socket is fine.
			return fmt.Errorf("audit: syslog: %w", err)
		}
		// A stream cut mid-message cannot be resumed: dial again next
		// time. A datagram socket whose reader went away (syslogd
		// restarted) must be dialled again too.
		s.conn.Close()
		s.conn = nil
		return fmt.Errorf("audit: syslog: %w", err)
	}
	return nil
}

// peerClosed reports whether the receiver of a stream has closed it. A
// receiver never sends anything but TLS's close_notify, so readable data
// or EOF both mean it is gone. It peeks at the socket without waiting (a
// Go read with a past deadline would not even look).
func (s *SyslogSink) peerClosed() bool {
	c := s.conn
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	var b [1]byte
	rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		closed = !errors.Is(err, syscall.EAGAIN)
		return true // never wait
	})
	return closed
}

// appendMessage appends one RFC 5424 message (§6):
// <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG
// The MSGID is the record's kind; the MSG the record, without a BOM
// (MSG-ANY), as JSON text is UTF-8 already.
func (s *SyslogSink) appendMessage(b, rec []byte, now time.Time) []byte {
	kind := kindOf(rec)
	b = s.appendHeader(b, kind, severity(kind, rec), now)
	return append(b, rec...)
}

// appendHeader appends a message's header up to the MSG, its space
// included.
func (s *SyslogSink) appendHeader(b, msgID []byte, sev int, now time.Time) []byte {
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(s.o.Facility*8+sev), 10)
	b = append(b, ">1 "...)
	// TIME-SECFRAC has at most 6 digits (RFC 5424 §6.2.3).
	b = now.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, s.header...)
	if len(msgID) == 0 {
		b = append(b, '-')
	} else {
		b = append(b, msgID...)
	}
	return append(b, " - "...)
}

// kindOf finds the kind of an encoded record without decoding it: the
// writer puts it right after the time.
func kindOf(rec []byte) []byte {
	const key = `"kind":"`
	i := bytes.Index(rec, []byte(key))
	if i < 0 || i > 64 {
		return nil
	}
	rest := rec[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || j > 32 { // MSGID is at most 32 octets
		return nil
	}
	return rest[:j]
}

// severity: security events warn, denials and failed logins are notices,
// the rest is information.
func severity(kind, rec []byte) int {
	switch string(kind) {
	case string(KindSecurity), string(KindAuditDropped):
		return sevWarning
	case string(KindPolicyDeny), string(KindPolicyWouldDeny), string(KindLimit), string(KindBackend):
		return sevNotice
	case string(KindAuth):
		// The quote before "result" cannot come from a user's value:
		// the encoder escapes quotes in strings.
		if bytes.Contains(rec, []byte(`,"result":"failure"`)) {
			return sevNotice
		}
	}
	return sevInfo
}

// Sync implements Sink; a syslog server decides on its own durability.
func (s *SyslogSink) Sync() error { return nil }

// Close implements Sink.
func (s *SyslogSink) Close() error {
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("audit: syslog: %w", err)
	}
	return nil
}
