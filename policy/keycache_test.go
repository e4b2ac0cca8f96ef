package policy

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// nearKeys are keys that differ from one another as little as keys can:
// empty, prefixes of one another, one byte or one bit apart, of every
// length up to maxKey, and over it.
func nearKeys() [][]byte {
	base := bytes.Repeat([]byte("session\x00alice\x01"), maxKey/14+2)
	keys := [][]byte{{}, {0}, {0, 0}, {1}, {0, 1}, {1, 0}}
	for _, n := range []int{1, 2, 15, 16, 17, 181, 182, 183, 255, 256, 257, maxKey - 1, maxKey, maxKey + 1} {
		k := base[:n:n]
		keys = append(keys, k)
		for _, i := range []int{0, n / 2, n - 1} {
			flip := bytes.Clone(k)
			flip[i] ^= 1
			keys = append(keys, flip)
		}
		keys = append(keys, append(bytes.Clone(k), 0))
	}
	// Distinct keys only: a key's value is its index.
	seen := map[string]bool{}
	return slices.DeleteFunc(keys, func(k []byte) bool {
		dup := seen[string(k)]
		seen[string(k)] = true
		return dup
	})
}

// TestKeyCacheCollisions: the cache answers a key with the value put for
// that very key or with nothing, never with another key's, whether the
// hashes differ or every key has the same one (mask 0), across resets
// that reuse the key bytes of evicted entries and with keys over maxKey,
// which are never held. A value put is found until the cache is full.
func TestKeyCacheCollisions(t *testing.T) {
	keys := nearKeys()
	for _, collide := range []bool{false, true} {
		for _, size := range []int{8, 64, 4096} {
			t.Run(fmt.Sprintf("collide=%v/size=%d", collide, size), func(t *testing.T) {
				c := newKeyCache[*int](size)
				if collide {
					c.mask = 0
				}
				ids := make([]int, len(keys)) // the value of keys[i] is &ids[i]
				for i := range ids {
					ids[i] = i
				}
				put := map[int]bool{} // put since the last reset
				rng := rand.New(rand.NewPCG(1, uint64(size)))
				for op := range 20000 {
					i := rng.IntN(len(keys))
					if rng.IntN(2) == 0 {
						c.put(keys[i], &ids[i])
						if c.len() == 1 { // emptied (full, or out of key bytes), then put
							clear(put)
						}
						put[i] = len(keys[i]) <= maxKey
					}
					got := c.get(keys[i])
					switch {
					case got != nil && got != &ids[i]:
						t.Fatalf("op %d: key %d (%d bytes) found key %d's value", op, i, len(keys[i]), *got)
					case got != nil && len(keys[i]) > maxKey:
						t.Fatalf("op %d: a key of %d bytes was held", op, len(keys[i]))
					case got == nil && put[i]:
						t.Fatalf("op %d: key %d (%d bytes), put and not evicted, not found", op, i, len(keys[i]))
					}
					if c.len() > size {
						t.Fatalf("op %d: %d entries, size %d", op, c.len(), size)
					}
				}
			})
		}
	}
}

// TestKeyCacheConcurrent: readers and writers at once (run with -race)
// see each key's own value or none.
func TestKeyCacheConcurrent(t *testing.T) {
	keys := nearKeys()
	ids := make([]int, len(keys))
	for i := range ids {
		ids[i] = i
	}
	c := newKeyCache[*int](16)
	c.mask = 0xff // few hashes: long probe sequences shared by many keys
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for range 5000 {
				i := rng.IntN(len(keys))
				if g%2 == 0 {
					c.put(keys[i], &ids[i])
				}
				if got := c.get(keys[i]); got != nil && got != &ids[i] {
					errs <- fmt.Errorf("key %d found key %d's value", i, *got)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestKeyCacheWarmPutAllocatesNothing: once the cache has been filled and
// emptied, it puts into what it has: no allocation.
func TestKeyCacheWarmPutAllocatesNothing(t *testing.T) {
	c := newKeyCache[*int](64)
	v := 1
	key := make([]byte, 200)
	n := uint64(0)
	put := func() {
		n++
		key[0], key[1], key[2] = byte(n), byte(n>>8), byte(n>>16)
		c.put(key, &v)
	}
	for range 200 {
		put()
	}
	if allocs := testing.AllocsPerRun(1000, put); allocs != 0 {
		t.Fatalf("a put allocates %v times", allocs)
	}
}
