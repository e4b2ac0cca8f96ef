package proxy

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// The reply to UID FETCH 1:* (FLAGS) goes by the backend pump's one-pass
// path (backendPump.plainRun, issue 12), intact: all its lines but the
// first after each wait for the backend and those cut by the end of the
// read buffer.
func TestPlainRunTaken(t *testing.T) {
	var plain atomic.Int64
	c := newFixedRelay(t, 1000, func(o *Options) {
		o.plainRun = func(lines int) { plain.Add(int64(lines)) }
	})
	c.rounder("s SELECT INBOX")()
	var want bytes.Buffer
	for i := 1; i <= 1000; i++ {
		fmt.Fprintf(&want, "* %d FETCH (UID %d FLAGS (\\Seen))\r\n", i, i)
	}
	want.WriteString("f OK FETCH completed\r\n")
	c.conn.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
	for round := range 3 {
		plain.Store(0)
		c.send([]byte("f UID FETCH 1:* (FLAGS)\r\n"))
		got := make([]byte, want.Len())
		if _, err := io.ReadFull(c.r, got); err != nil || !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("round %d: the reply differs (%v)", round, err)
		}
		// 34 KiB of lines: a few reads of the 32 KiB buffer, each
		// leaving a line or two to the full path.
		if n := plain.Load(); n < 950 {
			t.Errorf("round %d: %d of 1000 lines by the one-pass path", round, n)
		}
	}
}

// plainOutcome is everything observable of a session that received one
// response stream: the bytes the client got, the audit (the FETCH
// command's messages, content and UIDs, deliveries outside commands,
// security events, the close reason) and what the limiter was told.
type plainOutcome struct {
	client     string
	commands   []string
	deliveries []DeliveryEvent
	security   []string
	closes     []string
	messages   int
	fetched    int64
}

// relayStream answers "f UID FETCH 1:* (FLAGS)" with stream and the
// completion, through a relay with the one-pass path on or off, and
// returns what was observed. maxMessages > 0 caps the messages delivered.
func relayStream(t *testing.T, stream string, onePass bool, maxMessages int) (out plainOutcome, plain int64) {
	t.Helper()
	// A subtest of its own: the harness's check for leaked goroutines
	// sees this relay's alone.
	name := "full"
	if onePass {
		name = "one-pass"
	}
	if !t.Run(name, func(t *testing.T) { out, plain = relayStream1(t, stream, onePass, maxMessages) }) {
		t.FailNow()
	}
	return out, plain
}

func relayStream1(t *testing.T, stream string, onePass bool, maxMessages int) (out plainOutcome, plain int64) {
	rec := &recAuditor{}
	fl := &fakeLimiter{failures: map[string]int{}, maxMessages: maxMessages}
	var lines atomic.Int64
	c := newFixedRelayAnswers(t, map[string][2]string{
		"SELECT INBOX":          {"* 3 EXISTS\r\n", "OK [READ-WRITE] done\r\n"},
		"UID FETCH 1:* (FLAGS)": {stream, "OK FETCH completed\r\n"},
	}, func(o *Options) {
		o.Auditor = rec
		o.Limiter = fl
		o.noPlainRun = !onePass
		o.plainRun = func(n int) { lines.Add(int64(n)) }
	})
	c.rounder("s SELECT INBOX")()
	c.send([]byte("f UID FETCH 1:* (FLAGS)\r\n"))
	c.conn.SetReadDeadline(time.Now().Add(testenv.IOTimeout()))
	var got []byte
	for {
		l, err := c.r.ReadSlice('\n')
		got = append(got, l...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading: %v", err)
		}
		if bytes.HasPrefix(l, []byte("f OK ")) {
			break
		}
	}
	c.conn.Close()
	waitFor(t, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.closes) == 1
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	out.client = string(got)
	for _, e := range rec.commands {
		name := ""
		if e.Command != nil {
			name = e.Command.Name
		}
		out.commands = append(out.commands, fmt.Sprintf("%s %s [%s] out %d read %v msgs %d content %d uids %v",
			name, e.Result, e.Code, e.BytesOut, e.BodyRead, e.Messages, e.Content, e.UIDs))
	}
	out.deliveries = rec.deliveries
	out.security = slices.Clone(rec.security)
	for _, e := range rec.closes {
		out.closes = append(out.closes, fmt.Sprintf("%s out %d msgs %d", e.Reason, e.BytesOut, e.MessagesFetched))
	}
	fl.mu.Lock()
	out.messages, out.fetched = fl.messages, fl.fetched
	fl.mu.Unlock()
	return out, lines.Load()
}

// plainStreamLines are the lines genRelayStream builds a response stream
// from: plain FLAGS lines (most), content a cap counts, and what a broken
// or hostile backend sends.
var plainStreamLines = []string{
	"* %d FETCH (UID %d FLAGS (\\Seen))\r\n",
	"* %d FETCH (UID %d FLAGS (\\Seen \\Answered $Label) MODSEQ (77))\r\n",
	"* %d FETCH (UID %d RFC822.SIZE 2048 INTERNALDATE \"17-Jul-1996 02:44:25 -0700\")\r\n",
	"* %d FETCH (UID %d BODY[] {5}\r\nhello)\r\n",
	"* %d FETCH (UID %d RFC822 NIL)\r\n",
	"* %d FETCH (UID %d PREVIEW \"a\")\r\n",
	"* %d FETCH (UID %d BODY[HEADER] \"x\\\"y\")\r\n",
	"* %d FETCH (UID %d SNIPPET (FUZZY \"abc\"))\r\n",
	"* %d FETCH (UID %d FLAGS (\\Seen)) {3}\r\nabc\r\n",
	"* %d FETCH (UID %d FLAGS (\\Seen\x1b[2J))\r\n",
	"* %d FETCH (UID %d FLAGS (\\Seen\x00))\r\n",
	"* %d FETCH (UID %d FLAGS (\\Seen\r))\r\n",
	"* %d FETCH (UID %d FLAGS (\\Seen))\n",
	"* %d EXISTS\r\n* %d EXPUNGE\r\n",
	"* BAD %d %d\r\n",
	"* BYE %d %d\r\n",
	"x%d OK %d\r\n",
}

// genRelayStream builds a response stream from rng: runs of plain lines
// long enough to cross the 32 KiB read buffer, with others among them.
func genRelayStream(rng *rand.Rand) string {
	var b []byte
	for range rng.IntN(4) + 1 {
		for range rng.IntN(1200) {
			n := rng.IntN(100000) + 1
			b = fmt.Appendf(b, plainStreamLines[rng.IntN(3)], n, n)
		}
		n := rng.IntN(100000) + 1
		b = fmt.Appendf(b, plainStreamLines[rng.IntN(len(plainStreamLines))], n, n)
	}
	return string(b)
}

// A relay with the one-pass path and one without it, given the same
// stream, show the same: the bytes the client gets, the audit's messages,
// content and UIDs, the limiter's counts and cap, the security events and
// how the session ends (a hostile line ends it the same way: NUL, a bare
// CR or LF, an untagged BAD, a response after BYE). Where lines are cut
// by the read buffer varies with each read from the socket; the outcome
// must not.
func TestPlainRunDifferential(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 4))
	rounds := 60
	if testing.Short() {
		rounds = 10
	}
	var plain int64
	for i := range rounds {
		stream := genRelayStream(rng)
		capMsgs := 0
		if i%3 == 0 {
			capMsgs = rng.IntN(3) + 1
		}
		fast, n := relayStream(t, stream, true, capMsgs)
		full, m := relayStream(t, stream, false, capMsgs)
		plain += n
		if m != 0 {
			t.Fatalf("the one-pass path ran while off: %d lines", m)
		}
		if !reflect.DeepEqual(fast, full) {
			t.Fatalf("stream %q (cap %d):\none-pass %+v\nfull     %+v", stream, capMsgs, fast, full)
		}
	}
	if plain == 0 {
		t.Error("the one-pass path never ran")
	}
}

// Dovecot's own reply to UID FETCH 1:* (FLAGS), and with RFC822.SIZE and
// INTERNALDATE, goes by the one-pass path through the proxy, and reaches
// the client as Dovecot sent it: the same lines as a direct connection's.
func TestDovecotPlainRun(t *testing.T) {
	var plain atomic.Int64
	h := newDovecotHarness(t, nil, func(o *Options) {
		o.plainRun = func(lines int) { plain.Add(int64(lines)) }
	})
	direct := dialTLSInsecure(t, h.dc.TLSAddr)
	direct.expect("* OK")
	direct.transact("s1 LOGIN alice alice-pw", "s1 OK")
	const n = 200
	var sb strings.Builder
	for i := range n {
		m := testMessage(i)
		fmt.Fprintf(&sb, "p%d APPEND INBOX {%d+}\r\n%s\r\n", i, len(m), m)
	}
	direct.sendRaw(sb.String())
	for i := range n {
		tag := fmt.Sprintf("p%d", i)
		direct.expectTagged(tag, tag+" OK")
	}
	direct.transact("s2 SELECT INBOX", "s2 OK")
	direct.transact("s3 STORE 1:70 +FLAGS (\\Seen $Label)", "s3 OK")
	// This session took \Recent (RFC 3501 §2.3.2): neither sees it now.
	direct.transact("s4 CLOSE", "s4 OK")
	direct.transact("s5 EXAMINE INBOX", "s5 OK")
	c := h.login()
	c.transact("a1 SELECT INBOX", "a1 OK")
	for _, cmd := range []string{"f UID FETCH 1:* (FLAGS)", "g UID FETCH 1:* (FLAGS RFC822.SIZE INTERNALDATE)"} {
		want := direct.transact(cmd, strings.Fields(cmd)[0]+" OK")
		plain.Store(0)
		got := c.transact(cmd, strings.Fields(cmd)[0]+" OK")
		if !slices.Equal(got, want) || len(got) != n {
			t.Fatalf("%s: %d lines through the proxy, %d direct; first %q, %q", cmd, len(got), len(want), got[:min(1, len(got))], want[:min(1, len(want))])
		}
		// Each read of the backend leaves a line or two to the full path.
		k := plain.Load()
		t.Logf("%s: %d of %d lines by the one-pass path", cmd, k, n)
		if k < n*2/3 {
			t.Errorf("%s: %d of %d lines by the one-pass path", cmd, k, n)
		}
	}
}
