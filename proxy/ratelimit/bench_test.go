package ratelimit

import (
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/proxy/imapwire"
)

// Local checks: go test -run '^$' -bench . -benchmem ./proxy/ratelimit/

func benchLimiter(b *testing.B) *Limiter {
	// Rates high enough that the benchmark loop measures checks, not
	// refusals.
	l, _ := newTest(b, func(o *Options) {
		o.Now = time.Now
		o.CommandsPerSession = Rate{N: 1e9, Per: time.Second}
		o.CommandsPerUser = Rate{N: 1e9, Per: time.Second}
	})
	return l
}

func BenchmarkCommand(b *testing.B) {
	l := benchLimiter(b)
	s, _ := login(b, l, "192.0.2.1", "alice")
	b.ReportAllocs()
	for b.Loop() {
		l.Command(s, noop)
	}
}

func BenchmarkCommandFetchBody(b *testing.B) {
	l := benchLimiter(b)
	s, _ := login(b, l, "192.0.2.1", "alice")
	cmd := fetchBody()
	b.ReportAllocs()
	for b.Loop() {
		l.Command(s, cmd)
	}
}

func BenchmarkCommandParallel(b *testing.B) {
	l := benchLimiter(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		s, _ := login(b, l, "192.0.2.1", "alice")
		for pb.Next() {
			l.Command(s, noop)
		}
	})
}

func BenchmarkLogin(b *testing.B) {
	l := benchLimiter(b)
	s, _ := connect(b, l, "192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		l.Login(s, "alice@example.com")
	}
}

func BenchmarkLoginLocked(b *testing.B) {
	l, _ := newTest(b, func(o *Options) {
		o.Now = time.Now
		o.LoginFailuresPerUserIP = 1
		o.LockoutBase = time.Hour
		o.LockoutMax = time.Hour
	})
	fail(b, l, "192.0.2.1", "alice@example.com")
	s, _ := connect(b, l, "192.0.2.1")
	if !l.Login(s, "alice@example.com").Exceeded {
		b.Fatal("not locked")
	}
	b.ReportAllocs()
	for b.Loop() {
		l.Login(s, "alice@example.com")
	}
}

func BenchmarkConnectRelease(b *testing.B) {
	l := benchLimiter(b)
	l.Update(Options{ConnectionsPerIP: Off, ConnectionsPerSubnet: Off})
	s := info("192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		_, release := l.connectInfo(s)
		release()
	}
}

func BenchmarkLoginFailure(b *testing.B) {
	l := benchLimiter(b)
	l.Update(Options{LoginFailuresPerIP: -1, LoginFailuresPerUser: -1, LoginFailuresPerUserIP: -1})
	s, _ := connect(b, l, "192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		l.LoginResult(s, "alice@example.com", false)
	}
}

// Redis checks on loopback (a private redis-server):
// go test -run '^$' -bench Redis -benchmem ./proxy/ratelimit/

func benchRedis(b *testing.B) *Limiter {
	srv := startRedis(b)
	l, _ := newTest(b, func(o *Options) {
		o.Now = time.Now
		o.Redis = srv.client(b)
		o.ConnectionsPerIP, o.ConnectionsPerSubnet = Rate{N: 1e9, Per: time.Second}, Rate{N: 1e9, Per: time.Second}
		o.AppendBytesPerUser = Rate{N: 1e15, Per: time.Second}
		o.CommandsPerSession, o.CommandsPerUser = Off, Off
		o.LoginFailuresPerIP, o.LoginFailuresPerUser, o.LoginFailuresPerUserIP = -1, -1, -1
		o.OnStoreError = func(err error) { b.Fatal(err) }
	})
	return l
}

func BenchmarkRedisLogin(b *testing.B) {
	l := benchRedis(b)
	s, _ := connect(b, l, "192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		l.Login(s, "alice@example.com")
	}
}

func BenchmarkRedisLoginFailure(b *testing.B) {
	l := benchRedis(b)
	s, _ := connect(b, l, "192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		l.LoginResult(s, "alice@example.com", false)
	}
}

func BenchmarkRedisConnect(b *testing.B) {
	l := benchRedis(b)
	s := info("192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		_, release := l.connectInfo(s)
		release()
	}
}

func BenchmarkRedisFetched(b *testing.B) {
	l := benchRedis(b)
	s, _ := login(b, l, "192.0.2.1", "alice")
	b.ReportAllocs()
	for b.Loop() {
		l.Delivered(s, 1, 1)
	}
}

func BenchmarkRedisAppend(b *testing.B) {
	l := benchRedis(b)
	s, _ := login(b, l, "192.0.2.1", "alice")
	cmd := &imapwire.Command{Name: "APPEND", Literals: 1, LiteralBytes: 1000}
	b.ReportAllocs()
	for b.Loop() {
		l.Command(s, cmd)
	}
}

func BenchmarkRedisLoginParallel(b *testing.B) {
	l := benchRedis(b)
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		s, _ := connect(b, l, "192.0.2.1")
		for pb.Next() {
			l.Login(s, "alice@example.com")
		}
	})
}
