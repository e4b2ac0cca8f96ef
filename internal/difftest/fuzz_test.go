package difftest

import (
	"bytes"
	"sync"
	"testing"
)

// FuzzDifferential drives the harness from bytes: each input is a script
// (script.go) sent through imapwarden to Dovecot, Cyrus and Courier, and
// the backends' own state is compared with what imapwarden decided and
// audited, as TestDifferential does. The seed corpus holds issue 11's
// attacks A–G and its "also seen" list (attacks.go); testdata/fuzz holds
// what a fuzzing run found worth keeping.
//
//	go test ./internal/difftest -run '^$' -fuzz FuzzDifferential -fuzztime 10m
//
// Each fuzzing worker process starts its own three backends and proxies.
func FuzzDifferential(f *testing.F) {
	for _, s := range Seeds {
		f.Add([]byte(s))
	}
	Binary(f)
	envs := map[string]*Env{}
	var mu sync.Mutex
	for _, name := range Backends {
		envs[name] = StartEnv(f, name).Worker(f, 0)
	}
	f.Fuzz(func(t *testing.T, script []byte) {
		// COMPRESS would leave the harness reading deflated bytes.
		if bytes.Contains(bytes.ToUpper(script), []byte("COMPRESS")) {
			t.Skip("COMPRESS")
		}
		mu.Lock() // the envs' state is one run's at a time
		defer mu.Unlock()
		for _, name := range Backends {
			w := envs[name]
			w.SetT(t)
			st, err := ParseScript(w.B, script)
			if err != nil {
				t.Skip(err)
			}
			_, probs := w.Run(st)
			for _, p := range probs {
				t.Errorf("%s: %s: %s", name, st.Label, p)
			}
		}
	})
}
