package loadtest

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
	"github.com/imapwarden/imapwarden/tlsterm"
)

// buildOnce builds the imapwarden binary once per test binary run, with the
// flags of deploy/build-deb.sh and deploy/Dockerfile (static, stripped):
// what is measured is what ships.
var buildOnce struct {
	sync.Once
	dir, bin string
	err      error
}

func imapwardenBinary(tb testing.TB) string {
	tb.Helper()
	if bin := os.Getenv("LOADTEST_BINARY"); bin != "" {
		// A binary built elsewhere, to compare commits.
		return bin
	}
	buildOnce.Do(func() {
		buildOnce.dir, buildOnce.err = os.MkdirTemp("", "loadtest-bin")
		if buildOnce.err != nil {
			return
		}
		buildOnce.bin = filepath.Join(buildOnce.dir, "imapwarden")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", buildOnce.bin,
			"github.com/imapwarden/imapwarden/cmd/imapwarden")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildOnce.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildOnce.err != nil {
		tb.Fatal(buildOnce.err)
	}
	return buildOnce.bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildOnce.dir != "" {
		os.RemoveAll(buildOnce.dir)
	}
	os.Exit(code)
}

// server is one measured process: imapwarden or haproxy.
type server struct {
	name  string // "imapwarden" or "haproxy"
	addr  string // implicit-TLS IMAP listener
	admin string // imapwarden's admin listener; "" for haproxy
	// adminToken is the admin listener's write token: the package's
	// configuration has tokens, so every endpoint but the probes needs one.
	adminToken string
	dir        string // its configuration, logs and (imapwarden) audit trail
	cmd        *exec.Cmd
	done       chan struct{} // closed when the process has exited
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// stop kills the process: nothing of it is measured any more, and a
// graceful drain would only cost time.
func (s *server) stop() {
	s.cmd.Process.Kill()
	<-s.done
}

// startProcess runs cmd with its output in logFile and stops it when the
// test ends.
func startProcess(tb testing.TB, name string, cmd *exec.Cmd, logFile string) *server {
	tb.Helper()
	lf, err := os.Create(logFile)
	if err != nil {
		tb.Fatal(err)
	}
	defer lf.Close()
	cmd.Stdout, cmd.Stderr = lf, lf
	// If the test binary dies, so does the server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	s := &server{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(s.done) }()
	tb.Cleanup(s.stop)
	return s
}

// deployment is what both servers share: the certificate, the backend, and
// for imapwarden the configuration as the Debian package ships it.
type deployment struct {
	dir      string
	cert     tlsterm.CertFile
	pairPEM  string   // cert and key in one file, for haproxy
	backend  string   // Dovecot's plaintext address
	policies string   // the repository's policies/ tree
	env      []string // the systemd unit's Environment= (unitEnv)
	// wrap runs both servers under another program (valgrind), the
	// server's command line after it; none if empty.
	wrap []string
}

// command is name with args, under d.wrap.
func (d *deployment) command(name string, args ...string) *exec.Cmd {
	if len(d.wrap) == 0 {
		return exec.Command(name, args...)
	}
	return exec.Command(d.wrap[0], append(append(d.wrap[1:len(d.wrap):len(d.wrap)], name), args...)...)
}

func newDeployment(tb testing.TB, backend string) *deployment {
	tb.Helper()
	d := &deployment{dir: tb.TempDir(), backend: backend}
	var err error
	if d.cert, err = tlsterm.WriteSelfSigned(d.dir, []string{"localhost"}); err != nil {
		tb.Fatal(err)
	}
	certPEM, err1 := os.ReadFile(d.cert.Cert)
	keyPEM, err2 := os.ReadFile(d.cert.Key)
	if err := errors.Join(err1, err2); err != nil {
		tb.Fatal(err)
	}
	d.pairPEM = filepath.Join(d.dir, "pair.pem")
	if err := os.WriteFile(d.pairPEM, append(certPEM, keyPEM...), 0o600); err != nil {
		tb.Fatal(err)
	}
	if d.policies, err = filepath.Abs(filepath.Join("..", "..", "policies")); err != nil {
		tb.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d.policies, "imapwarden.rego")); err != nil {
		tb.Fatalf("the shipped policies: %v", err)
	}
	d.env = unitEnv(tb, filepath.Join("..", "..", "deploy", "systemd", "imapwarden.service"))
	return d
}

// unitEnv returns the variables the systemd unit sets (Environment=
// lines; the Dockerfile sets the same): imapwarden runs with them, as
// deployed.
func unitEnv(tb testing.TB, unit string) []string {
	tb.Helper()
	data, err := os.ReadFile(unit)
	if err != nil {
		tb.Fatalf("the systemd unit: %v", err)
	}
	var env []string
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Environment="); ok {
			env = append(env, strings.Fields(v)...)
		}
	}
	return env
}

// raisedRateLimits are the rate limits the load would hit with their
// defaults, raised far out of its reach; the others keep their defaults.
// The limiter still counts every connection, login, command and fetched
// byte, as deployed.
//
//   - connections_per_ip 1200/1m, connections_per_subnet 6000/1m: the
//     login workload opens hundreds a second from 127.0.0.1;
//   - concurrent_connections_per_ip 2000, sessions_per_user 30: the memory
//     workload holds 2000 sessions of alice from 127.0.0.1 at once;
//   - commands_per_session 50/1s burst 500, commands_per_user 200/1s burst
//     2000: NOOP runs thousands a second;
//   - fetch_bytes_per_user 10GiB/24h, fetch_messages_per_user 200000/24h:
//     bulk FETCH relays hundreds of MB a second.
const raisedRateLimits = `rate_limits:
  connections_per_ip: 100000000/1m
  connections_per_subnet: 100000000/1m
  concurrent_connections_per_ip: 1000000
  sessions_per_user: 1000000
  commands_per_session: 100000000/1s burst 100000000
  commands_per_user: 100000000/1s burst 100000000
  fetch_bytes_per_user: 1000TiB/1h
  fetch_messages_per_user: 100000000000/1h
`

// imapwardenConfig is deploy/deb/imapwarden.yaml with this machine's
// addresses and files: every shipped policy enforced, the HMAC-chained audit
// trail on with its default fsync interval, backend ID sent, info logs,
// plus the admin listener's pprof and the raised rate limits.
func (d *deployment) imapwardenConfig(tb testing.TB, dir, addr, admin string) string {
	tb.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	keyFile := filepath.Join(dir, "audit.key")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	// The package's two admin tokens (postinst makes them the same way).
	tokenFiles := [2]string{filepath.Join(dir, "admin.token"), filepath.Join(dir, "metrics.token")}
	for _, f := range tokenFiles {
		tok := make([]byte, 32)
		rand.Read(tok)
		if err := os.WriteFile(f, []byte(hex.EncodeToString(tok)+"\n"), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	return fmt.Sprintf(`log: {level: info, format: json}
lame_duck: 5s
drain_timeout: 30s
listeners:
  - {name: imaps, address: %q, mode: tls}
tls:
  certificates: [{cert: %q, key: %q}]
backends:
  main: {address: %q, security: plain, send_id: true}
admin:
  address: %q
  pprof: true
  token_file: %q
  tokens: [{name: metrics, scope: read, file: %q}]
policy:
  dirs: [{path: %q}]
audit:
  path: %q
  key_file: %q
  fsync: interval
  fsync_interval: 1s
%s`, addr, d.cert.Cert, d.cert.Key, d.backend, admin, tokenFiles[0], tokenFiles[1], d.policies,
		filepath.Join(dir, "audit.jsonl"), keyFile, raisedRateLimits)
}

// startImapwarden runs `imapwarden serve` with the deployed configuration
// in a fresh directory, env added to its environment, and waits until
// /readyz says it serves (policies compiled, audit trail open).
func (d *deployment) startImapwarden(tb testing.TB, env ...string) *server {
	tb.Helper()
	bin := imapwardenBinary(tb)
	dir, err := os.MkdirTemp(d.dir, "imapwarden")
	if err != nil {
		tb.Fatal(err)
	}
	addr, admin := freeAddr(tb), freeAddr(tb)
	cfg := filepath.Join(dir, "imapwarden.yaml")
	if err := os.WriteFile(cfg, []byte(d.imapwardenConfig(tb, dir, addr, admin)), 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := d.command(bin, "serve", "-c", cfg)
	cmd.Env = append(append(os.Environ(), d.env...), env...)
	s := startProcess(tb, "imapwarden", cmd, filepath.Join(dir, "imapwarden.log"))
	s.addr, s.admin, s.dir = addr, admin, dir
	tok, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		tb.Fatal(err)
	}
	s.adminToken = strings.TrimSpace(string(tok))
	waitUntil(tb, s, func() error {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %s %s", resp.Status, body)
		}
		return nil
	}, filepath.Join(dir, "imapwarden.log"))
	return s
}

// startHAProxy runs haproxy as the reference relay: TLS terminated with the
// same certificate, mode tcp, plaintext to the same Dovecot. It offers
// AES-128-GCM first, as Go's TLS does on a CPU with AES instructions, so
// that both servers run the same cipher (the benchmark logs what each
// negotiated).
func (d *deployment) startHAProxy(tb testing.TB, bin string) *server {
	tb.Helper()
	dir, err := os.MkdirTemp(d.dir, "haproxy")
	if err != nil {
		tb.Fatal(err)
	}
	addr := freeAddr(tb)
	cfg := fmt.Sprintf(`global
  maxconn 5000
  ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
defaults
  mode tcp
  timeout connect 10s
  timeout client 1h
  timeout server 1h
frontend imaps
  bind %s ssl crt %s
  default_backend dovecot
backend dovecot
  server dovecot %s
`, addr, d.pairPEM, d.backend)
	cf := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cf, []byte(cfg), 0o600); err != nil {
		tb.Fatal(err)
	}
	// -db: foreground, one process (its threads are in its /proc figures).
	s := startProcess(tb, "haproxy", d.command(bin, "-db", "-f", cf), filepath.Join(dir, "haproxy.log"))
	s.addr, s.dir = addr, dir
	waitUntil(tb, s, func() error {
		c, err := dial(addr)
		if err == nil {
			c.close()
		}
		return err
	}, filepath.Join(dir, "haproxy.log"))
	return s
}

// waitUntil polls ready until it succeeds, the process exits, or the I/O
// deadline passes.
func waitUntil(tb testing.TB, s *server, ready func() error, logFile string) {
	tb.Helper()
	deadline := testenv.Deadline(tb)
	for {
		err := ready()
		if err == nil {
			return
		}
		select {
		case <-s.done:
			log, _ := os.ReadFile(logFile)
			tb.Fatalf("%s exited during start: %v\n%s", s.name, s.cmd.ProcessState, log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile)
			tb.Fatalf("%s not ready: %v\n%s", s.name, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freeAddr(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// clientTLS is the clients' TLS: no verification (the certificate is
// self-signed) and X25519 only, because haproxy's OpenSSL 3.0 has no
// X25519MLKEM768, which Go would otherwise negotiate with imapwarden: both
// servers then do the same key exchange.
var clientTLS = &tls.Config{
	InsecureSkipVerify: true,
	ServerName:         "localhost",
	CurvePreferences:   []tls.CurveID{tls.X25519},
}

// conn is a lean IMAP client for load: one command at a time, responses
// read with ReadSlice and dropped, literals skipped unread, so that the
// client's CPU (shared with the servers) stays small.
type conn struct {
	c   net.Conn
	r   *bufio.Reader
	seq int
	tag []byte
	out []byte
}

// dial connects, completes the TLS handshake and reads the greeting.
func dial(addr string) (*conn, error) {
	d := &net.Dialer{Timeout: testenv.IOTimeout()}
	c, err := tls.DialWithDialer(d, "tcp", addr, clientTLS)
	if err != nil {
		return nil, err
	}
	return greet(c)
}

// dialPlain connects without TLS (to Dovecot itself, for the setup).
func dialPlain(addr string) (*conn, error) {
	c, err := net.DialTimeout("tcp", addr, testenv.IOTimeout())
	if err != nil {
		return nil, err
	}
	return greet(c)
}

func greet(c net.Conn) (*conn, error) {
	cn := &conn{c: c, r: bufio.NewReaderSize(c, 32<<10)}
	cn.deadline(testenv.IOTimeout())
	l, err := cn.r.ReadSlice('\n')
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if !bytes.HasPrefix(l, []byte("* OK")) {
		c.Close()
		return nil, fmt.Errorf("greeting: %q", l)
	}
	return cn, nil
}

// deadline bounds the connection's I/O from now: it only keeps a broken
// server from hanging the benchmark.
func (cn *conn) deadline(d time.Duration) { cn.c.SetDeadline(time.Now().Add(d)) }

func (cn *conn) close() { cn.c.Close() }

// send writes one tagged command and returns its tag.
func (cn *conn) send(cmd string) ([]byte, error) {
	cn.seq++
	cn.tag = strconv.AppendInt(append(cn.tag[:0], 'a'), int64(cn.seq), 10)
	cn.out = append(append(append(append(cn.out[:0], cn.tag...), ' '), cmd...), "\r\n"...)
	_, err := cn.c.Write(cn.out)
	return cn.tag, err
}

// do runs one command and reads its response up to the tagged OK. It
// returns the number of untagged lines and the octets of literals in them.
func (cn *conn) do(cmd string) (untagged int, octets int64, err error) {
	tag, err := cn.send(cmd)
	if err != nil {
		return 0, 0, err
	}
	return cn.wait(cmd, tag)
}

func (cn *conn) wait(cmd string, tag []byte) (untagged int, octets int64, err error) {
	for {
		l, err := cn.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A line longer than the buffer: only its start matters.
			for err == bufio.ErrBufferFull {
				_, err = cn.r.ReadSlice('\n')
			}
			if err != nil {
				return untagged, octets, fmt.Errorf("%s: %w", cmd, err)
			}
			untagged++
			continue
		}
		if err != nil {
			return untagged, octets, fmt.Errorf("%s: %w", cmd, err)
		}
		if len(l) > len(tag) && l[len(tag)] == ' ' && bytes.HasPrefix(l, tag) {
			if !bytes.HasPrefix(l[len(tag)+1:], []byte("OK")) {
				return untagged, octets, fmt.Errorf("%s: %q", cmd, l)
			}
			return untagged, octets, nil
		}
		if l[0] == '*' {
			untagged++
		}
		// A literal ends the line: {n}CRLF, then n octets, then the rest
		// of the response on the following line (RFC 9051 §4.3).
		for n, ok := literalSize(l); ok; n, ok = literalSize(l) {
			if _, err := cn.r.Discard(int(n)); err != nil {
				return untagged, octets, fmt.Errorf("%s: literal: %w", cmd, err)
			}
			octets += n
			if l, err = cn.r.ReadSlice('\n'); err != nil {
				return untagged, octets, fmt.Errorf("%s: %w", cmd, err)
			}
		}
	}
}

// literalSize returns n when line ends with {n}CRLF.
func literalSize(line []byte) (int64, bool) {
	if !bytes.HasSuffix(line, []byte("}\r\n")) {
		return 0, false
	}
	i := bytes.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(line[i+1:len(line)-3]), 10, 64)
	return n, err == nil
}

// idle enters IDLE and returns once the server's continuation arrived
// (RFC 9051 §6.3.13).
func (cn *conn) idle() error {
	if _, err := cn.send("IDLE"); err != nil {
		return err
	}
	for {
		l, err := cn.r.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("IDLE: %w", err)
		}
		if l[0] == '+' {
			return nil
		}
		if l[0] != '*' {
			return fmt.Errorf("IDLE: %q", l)
		}
	}
}

// done ends IDLE and reads its tagged OK.
func (cn *conn) done() error {
	if _, err := cn.c.Write([]byte("DONE\r\n")); err != nil {
		return err
	}
	_, _, err := cn.wait("DONE", cn.tag)
	return err
}

// session dials and logs in as alice, and selects mailbox unless "".
func session(addr, mailbox string) (*conn, error) {
	cn, err := dial(addr)
	if err != nil {
		return nil, err
	}
	if _, _, err := cn.do("LOGIN alice alice-pw"); err != nil {
		cn.close()
		return nil, err
	}
	if mailbox != "" {
		if _, _, err := cn.do("SELECT " + mailbox); err != nil {
			cn.close()
			return nil, err
		}
	}
	return cn, nil
}

// cpuTime is the user and system time the process has used, all its
// threads together, from /proc/PID/stat.
func cpuTime(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	d, err := parseStatCPU(data, clockTicks())
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// parseStatCPU reads utime and stime, fields 14 and 15 of proc(5)'s stat,
// in clock ticks. The command name (field 2) is in parentheses and may hold
// spaces and parentheses itself, so fields are counted from its last ')'.
func parseStatCPU(stat []byte, hz int64) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat: no command name in %q", stat)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the command name", len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("stat: %w", err)
	}
	return time.Duration(ut+st) * time.Second / time.Duration(hz), nil
}

var hz = sync.OnceValue(func() int64 {
	// sysconf(_SC_CLK_TCK) needs cgo; getconf asks it. Linux fixes
	// USER_HZ at 100 for user space on every architecture Go supports.
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if n, perr := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && perr == nil && n > 0 {
		return n
	}
	return 100
})

func clockTicks() int64 { return hz() }

// rssKiB is the process's resident set (VmRSS).
func rssKiB(tb testing.TB, pid int) int {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				tb.Fatalf("VmRSS: %v", err)
			}
			return n
		}
	}
	tb.Fatal("no VmRSS")
	return 0
}
