package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"text/template"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/tlsterm"
)

const demoUsage = `Usage: imapwarden demo [--imaps ADDR] [--starttls ADDR]

Run a self-contained demo until Ctrl-C: an in-memory IMAP server on a free
loopback port holds the mailbox of user "demo" (password "demo-password")
with three messages in INBOX, and the proxy listens in front of it with
implicit TLS and with STARTTLS, using a fresh self-signed certificate for
localhost and 127.0.0.1 (clients must be told not to verify it). It
enforces the policies that ship with imapwarden and keeps an HMAC-chained
audit trail, as the packages do: at start it sends a command they refuse
(DELETE INBOX) and prints the refusal and the "audit query" that shows it.
The demo prints curl and python3 commands that fetch a message through the
proxy.

Nothing is written to disk but the certificate, the policies, the audit
trail and its key, in a temporary directory removed on exit. An address without a host listens on 127.0.0.1 only; ":0"
picks a free port. An empty address turns that listener off.
`

// Credentials of the demo mailbox, fixed so that documentation can show
// commands that work as written.
const (
	demoUser     = "demo"
	demoPassword = "demo-password"
)

type demoFlags struct {
	imaps, starttls, admin string
	logLevel               string
}

func newDemoFlags(f *demoFlags) *flag.FlagSet {
	if f == nil {
		f = new(demoFlags)
	}
	fs := newFlagSet("demo")
	fs.StringVar(&f.imaps, "imaps", "127.0.0.1:9993", "listen for implicit TLS on `ADDR`")
	fs.StringVar(&f.starttls, "starttls", "127.0.0.1:9143", "listen for plaintext + STARTTLS on `ADDR`")
	fs.StringVar(&f.admin, "admin", "127.0.0.1:9180", "serve metrics, probes and sessions over HTTP on `ADDR` (loopback only; \"\" turns it off)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	return fs
}

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f demoFlags
	fs := newDemoFlags(&f)
	if code, ok := parseFlags(fs, args, demoUsage, stdout, stderr); !ok {
		return code
	}
	level, _, err := logSettings(logConfig{Level: f.logLevel})
	if err != nil {
		fmt.Fprintf(stderr, "imapwarden demo: %v\n", err)
		return exitUsage
	}
	log := newLogger(stderr, level, "console")
	defer log.Sync()

	ctx, stop := signalContext(ctx)
	defer stop()
	err = runDemo(ctx, demoOptions{IMAPS: f.imaps, StartTLS: f.starttls, Admin: f.admin, Logger: log}, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "imapwarden demo: %v\n", err)
		return exitError
	}
	return exitOK
}

// demoOptions configure runDemo.
type demoOptions struct {
	// IMAPS and StartTLS are the proxy's listen addresses; "" turns one off.
	// A missing host means 127.0.0.1.
	IMAPS, StartTLS string
	// Admin is the admin listener's address ("" off); loopback only, as
	// it has no token.
	Admin  string
	Logger *zap.Logger
	// Started, if not nil, is called once everything listens and the
	// instructions were printed.
	Started func(demoInfo)
}

// demoInfo is where the demo listens, as "host:port" for clients ("" for a
// listener that is off).
type demoInfo struct {
	IMAPS, StartTLS, Backend, Admin string
}

// runDemo runs the in-memory backend and the proxy in front of it, prints
// how to reach them to stdout and returns once ctx is done and everything
// it started has stopped.
func runDemo(ctx context.Context, o demoOptions, stdout io.Writer) (err error) {
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	imapsAddr, err := demoListenAddr(o.IMAPS)
	if err != nil {
		return fmt.Errorf("--imaps: %w", err)
	}
	starttlsAddr, err := demoListenAddr(o.StartTLS)
	if err != nil {
		return fmt.Errorf("--starttls: %w", err)
	}
	if imapsAddr == "" && starttlsAddr == "" {
		return errors.New("both listeners are off: give --imaps or --starttls an address")
	}
	adminAddr, err := demoListenAddr(o.Admin)
	if err != nil {
		return fmt.Errorf("--admin: %w", err)
	}
	if h, _, _ := net.SplitHostPort(adminAddr); adminAddr != "" && !isLoopback(h) {
		return fmt.Errorf("--admin: %s is not loopback: the demo's admin listener has no token", adminAddr)
	}

	// tlsterm loads certificates from files (so that it can reload them);
	// a private temporary directory holds this one for the demo's life.
	dir, err := os.MkdirTemp("", "imapwarden-demo-")
	if err != nil {
		return fmt.Errorf("certificate directory: %w", err)
	}
	defer os.RemoveAll(dir)
	cf, err := tlsterm.WriteSelfSigned(dir, []string{"localhost", "127.0.0.1", "::1"})
	if err != nil {
		return fmt.Errorf("self-signed certificate: %w", err)
	}
	tlsSrv, err := tlsterm.NewServer(tlsterm.ServerOptions{Certificates: []tlsterm.CertFile{cf}, Logger: log.Named("tls")})
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}

	backendAddr, stopBackend, err := startDemoBackend(log.Named("backend"))
	if err != nil {
		return err
	}
	defer stopBackend()

	// The shipped policies and an audit trail, as every package enables
	// them, through the same code as serve.
	hooks, err := demoHooks(dir, log)
	if err != nil {
		return err
	}
	defer hooks.close()
	opts := proxy.Options{
		Router: &proxy.StaticRouter{Default: &proxy.Backend{
			Name:     "demo",
			Addr:     backendAddr,
			Security: proxy.BackendPlain, // loopback only
		}},
		Logger:   log,
		Decider:  hooks.opts.Decider,
		Auditor:  hooks.opts.Auditor,
		Hostname: "imapwarden-demo",
	}
	reg := hooks.reg
	if opts.Metrics, err = proxy.NewMetrics(reg); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if imapsAddr != "" {
		opts.Listeners = append(opts.Listeners, proxy.ListenerOptions{Name: "imaps", Addr: imapsAddr, Mode: proxy.ImplicitTLS, TLS: tlsSrv.TLSConfig()})
	}
	if starttlsAddr != "" {
		opts.Listeners = append(opts.Listeners, proxy.ListenerOptions{Name: "imap", Addr: starttlsAddr, Mode: proxy.StartTLS, TLS: tlsSrv.TLSConfig()})
	}
	srv, err := proxy.NewServer(opts)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	if err := srv.Start(); err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("%w\nchoose other addresses with --imaps and --starttls (\":0\" picks a free port)", err)
		}
		return fmt.Errorf("start proxy: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		log.Info("demo stopped")
	}()

	info := demoInfo{Backend: backendAddr}
	if adminAddr != "" {
		adm := newAdmin(srv, reg, zap.NewAtomicLevel(), nil, defaultAdminLimits, log.Named("admin"))
		actx, stopAdmin := context.WithCancel(context.Background())
		a, wait, err := serveAdmin(actx, adminAddr, nil, adm.handler(), log.Named("admin"))
		if err != nil {
			stopAdmin()
			return fmt.Errorf("--admin: %w", err)
		}
		defer func() { stopAdmin(); wait() }()
		info.Admin = clientHostPort(a)
	}
	for i, a := range srv.Addrs() {
		hp := clientHostPort(a)
		if opts.Listeners[i].Mode == proxy.ImplicitTLS {
			info.IMAPS = hp
		} else {
			info.StartTLS = hp
		}
	}
	if err := printDemo(stdout, info); err != nil {
		return fmt.Errorf("print instructions: %w", err)
	}
	if err := demoRefusal(stdout, info, dir); err != nil {
		return fmt.Errorf("policy demonstration: %w", err)
	}
	if o.Started != nil {
		o.Started(info)
	}
	<-ctx.Done()
	log.Info("stopping the demo")
	return nil
}

// demoListenAddr defaults the host to 127.0.0.1: the demo account has a
// published password and must not be reachable from the network unless
// someone asks for it explicitly.
func demoListenAddr(addr string) (string, error) {
	if addr == "" {
		return "", nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("invalid address %q: want host:port or :port", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", fmt.Errorf("invalid address %q: port %q is not a number from 0 to 65535", addr, port)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// clientHostPort turns a bound address into one a local client can dial:
// an unspecified address (0.0.0.0, ::) becomes loopback.
func clientHostPort(a net.Addr) string {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return a.String()
	}
	ip := ap.Addr().Unmap()
	if ip.IsUnspecified() {
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		if ap.Addr().Is6() && !ap.Addr().Is4In6() {
			ip = netip.IPv6Loopback()
		}
	}
	return netip.AddrPortFrom(ip, ap.Port()).String()
}

// startDemoBackend serves an in-memory mailbox on a free loopback port, in
// plaintext. stop closes it and waits for its accept loop.
func startDemoBackend(log *zap.Logger) (addr string, stop func(), err error) {
	mem := imapmemserver.New()
	user := imapmemserver.NewUser(demoUser, demoPassword)
	if err := user.Create("INBOX", nil); err != nil {
		return "", nil, fmt.Errorf("demo mailbox: %w", err)
	}
	for _, m := range demoMessages {
		msg := []byte(strings.ReplaceAll(m.text, "\n", "\r\n"))
		if _, err := user.Append("INBOX", bytes.NewReader(msg), &imap.AppendOptions{Time: m.date}); err != nil {
			return "", nil, fmt.Errorf("demo message: %w", err)
		}
	}
	mem.AddUser(user)

	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps: imap.CapSet{imap.CapIMAP4rev1: {}},
		// The proxy logs in over plaintext loopback: imapserver refuses
		// LOGIN without TLS unless told otherwise.
		InsecureAuth: true,
		Logger:       printfLogger{log},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("demo backend: %w", err)
	}
	done := make(chan struct{})
	var stopping atomic.Bool
	go func() {
		defer close(done)
		// Serve fails with "server closed" when stop comes first.
		if err := srv.Serve(ln); err != nil && !stopping.Load() {
			log.Warn("demo backend stopped", zap.Error(err))
		}
	}()
	log.Info("demo backend listening", zap.Stringer("addr", ln.Addr()))
	stop = func() {
		stopping.Store(true)
		srv.Close()
		ln.Close() // in case Close came before Serve registered it
		<-done
	}
	return ln.Addr().String(), stop, nil
}

// printfLogger adapts imapserver's Printf logging to zap.
type printfLogger struct{ log *zap.Logger }

func (l printfLogger) Printf(format string, args ...any) {
	if ce := l.log.Check(zapcore.WarnLevel, "demo backend"); ce != nil {
		ce.Write(zap.String("detail", fmt.Sprintf(format, args...)))
	}
}

// demoMessages are the three messages of the demo INBOX. Lines end in LF
// here and CRLF in the mailbox (RFC 5322 §2.1).
var demoMessages = []struct {
	date time.Time
	text string
}{
	{time.Date(2025, 3, 3, 9, 12, 0, 0, time.UTC), `From: Alice Martin <alice@example.org>
To: Demo User <demo@example.org>
Subject: Welcome to the imapwarden demo
Date: Mon, 03 Mar 2025 09:12:00 +0000
Message-ID: <20250303091200.1@example.org>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Hello,

this message came to you through imapwarden: your client spoke TLS to
the proxy, the proxy logged in to the backend for you and relayed every
command after checking it.

Alice
`},
	{time.Date(2025, 3, 4, 14, 30, 0, 0, time.UTC), `From: Bob Chen <bob@example.org>
To: Demo User <demo@example.org>
Cc: Alice Martin <alice@example.org>
Subject: Quarterly report draft
Date: Tue, 04 Mar 2025 14:30:00 +0000
Message-ID: <20250304143000.2@example.org>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Hi,

the draft of the quarterly report is on the shared drive. Could you
look at the numbers in section 3 before Thursday?

Thanks,
Bob
`},
	{time.Date(2025, 3, 5, 11, 5, 0, 0, time.UTC), `From: Carol Diaz <carol@example.org>
To: Demo User <demo@example.org>
Subject: Lunch on Friday?
Date: Wed, 05 Mar 2025 11:05:00 +0000
Message-ID: <20250305110500.3@example.org>
In-Reply-To: <20250304120000.9@example.org>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Are we still on for lunch on Friday? The new place on Main Street
opens at noon.

Carol
`},
}

var demoTemplate = template.Must(template.New("demo").Parse(`
imapwarden demo is running. Press Ctrl-C to stop.
{{if .IMAPS}}
  implicit TLS  {{.IMAPS}}{{end}}{{if .StartTLS}}
  STARTTLS      {{.StartTLS}}{{end}}
  backend       {{.Backend}} (in-memory IMAP server, plaintext on loopback)
  user          {{.User}}
  password      {{.Password}}
  certificate   self-signed for localhost, 127.0.0.1 and ::1: tell clients not to verify it{{if .Admin}}
  metrics       http://{{.Admin}}/metrics   (also /healthz, /readyz, /sessions){{end}}

Fetch the first message of INBOX through the proxy:
{{if .StartTLS}}
  curl --insecure --ssl-reqd --user {{.User}}:{{.Password}} 'imap://{{.StartTLS}}/INBOX;UID=1'{{end}}{{if .IMAPS}}
  curl --insecure --user {{.User}}:{{.Password}} 'imaps://{{.IMAPS}}/INBOX;UID=1'{{end}}
{{if .IMAPS}}
  python3 -c 'import imaplib, ssl; ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE; c = imaplib.IMAP4_SSL("{{.IMAPSHost}}", {{.IMAPSPort}}, ssl_context=ctx); c.login("{{.User}}", "{{.Password}}"); c.select("INBOX"); print(c.fetch("1", "(RFC822)")[1][0][1].decode()); c.logout()'{{end}}{{if .StartTLS}}
  python3 -c 'import imaplib, ssl; ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE; c = imaplib.IMAP4("{{.StartTLSHost}}", {{.StartTLSPort}}); c.starttls(ssl_context=ctx); c.login("{{.User}}", "{{.Password}}"); c.select("INBOX"); print(c.fetch("1", "(RFC822)")[1][0][1].decode()); c.logout()'{{end}}

{{if .Admin}}
See the sessions and what the proxy counted:

  curl -s http://{{.Admin}}/sessions
  curl -s http://{{.Admin}}/metrics | grep '^imapwarden_'
{{end}}
Any IMAP client works too: server {{if .IMAPS}}{{.IMAPS}} with SSL/TLS{{else}}{{.StartTLS}} with STARTTLS{{end}}, the user and password above.

`))

func printDemo(w io.Writer, info demoInfo) error {
	split := func(hp string) (string, string) {
		h, p, _ := net.SplitHostPort(hp)
		return h, p
	}
	data := struct {
		demoInfo
		User, Password             string
		IMAPSHost, IMAPSPort       string
		StartTLSHost, StartTLSPort string
	}{demoInfo: info, User: demoUser, Password: demoPassword}
	data.IMAPSHost, data.IMAPSPort = split(info.IMAPS)
	data.StartTLSHost, data.StartTLSPort = split(info.StartTLS)
	return demoTemplate.Execute(w, data)
}
