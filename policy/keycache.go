package policy

import (
	"bytes"
	"hash/maphash"
	"sync"
)

// keyCache remembers values by a key of input slots: outcomes by the
// slots the policies read (the decision cache), session documents by the
// session slots. An outcome depends on nothing else within one state (the
// store is never written, nondeterministic policies have no decision
// cache), and a document on nothing but its slots, so a hit is what an
// evaluation or a build would make.
//
// A hit needs the whole key, byte for byte: the hash only finds where to
// look (TestKeyCacheCollisions). The keys are copied into chunks of bytes
// the cache keeps for its life and the table grows only up to its bound,
// so that once warm a put allocates nothing: an uncached decision makes no
// garbage, and the collector, which these decisions would otherwise set
// off, never runs under them (ARCHITECTURE.md §10,
// TestUncachedDecisionAllocatesNothing). Nothing in the table or the
// chunks is a pointer but the values, so they cost a collection little.
type keyCache[V comparable] struct {
	mu   sync.RWMutex
	seed maphash.Seed
	// mask is and-ed with every hash: all ones, cleared by tests to make
	// every key collide.
	mask   uint64
	slots  []keySlot // open addressing, linear probing; a power of two long
	vals   []V       // by slot
	chunks [][]byte  // the keys, back to back
	chunk  int       // chunks[chunk][off:] is where the next key goes
	off    int
	n      int // entries
	max    int // entries at most
	// budget bounds the bytes of chunks: max keys of keyBytes on average.
	budget, chunkSize int
}

// keySlot locates a key in the chunks; hash 0 is an empty slot.
type keySlot struct {
	hash  uint64
	off   uint32
	chunk uint16
	n     uint16
}

// keyBytes is the average key a cache of CacheSize entries has room for
// (the decision keys of the shipped policies are about 180 bytes); when
// keys are longer the cache empties before it holds CacheSize of them.
// keyChunk is the most one allocation of key bytes takes.
const (
	keyBytes = 256
	keyChunk = 64 << 10
)

func newKeyCache[V comparable](size int) *keyCache[V] {
	c := &keyCache[V]{seed: maphash.MakeSeed(), mask: ^uint64(0), max: size}
	c.chunkSize = max(min(keyChunk, size*keyBytes), maxKey)
	// keySlot.chunk numbers at most 1<<16 chunks.
	c.budget = min(max(size*keyBytes, c.chunkSize), 1<<16*c.chunkSize)
	return c
}

// hash is never 0, which marks an empty slot.
func (c *keyCache[V]) hash(key []byte) uint64 {
	return maphash.Bytes(c.seed, key)&c.mask | 1<<63
}

// find returns the slot holding key, or the empty one where it would go.
// The caller holds mu and len(c.slots) > 0.
func (c *keyCache[V]) find(key []byte, h uint64) (int, bool) {
	m := uint64(len(c.slots) - 1)
	for i := h & m; ; i = (i + 1) & m {
		s := &c.slots[i]
		if s.hash == 0 {
			return int(i), false
		}
		if s.hash == h && int(s.n) == len(key) &&
			bytes.Equal(c.chunks[s.chunk][s.off:int(s.off)+len(key)], key) {
			return int(i), true
		}
	}
}

func (c *keyCache[V]) get(key []byte) V {
	v, _ := c.lookup(key)
	return v
}

// lookup is get, also returning key's hash for putHashed: a miss the
// caller fills hashes the key once.
func (c *keyCache[V]) lookup(key []byte) (V, uint64) {
	var v V
	h := c.hash(key)
	c.mu.RLock()
	if c.n > 0 {
		if i, ok := c.find(key, h); ok {
			v = c.vals[i]
		}
	}
	c.mu.RUnlock()
	return v, h
}

// put remembers v by key, replacing what key held. A key longer than
// maxKey is not remembered. A full cache (max entries, or its budget of
// key bytes) is emptied first: simpler than LRU, and the working set
// (users × distinct commands) refills at once.
func (c *keyCache[V]) put(key []byte, v V) {
	c.putHashed(key, c.hash(key), v)
}

// putHashed is put of a key whose hash lookup returned.
func (c *keyCache[V]) putHashed(key []byte, h uint64, v V) {
	if len(key) > maxKey {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n > 0 {
		if i, ok := c.find(key, h); ok {
			c.vals[i] = v
			return
		}
	}
	if c.n >= c.max {
		c.reset()
	}
	if len(c.chunks) == 0 || c.off+len(key) > len(c.chunks[c.chunk]) {
		switch {
		case len(c.chunks) > c.chunk+1:
			c.chunk, c.off = c.chunk+1, 0
		case (len(c.chunks)+1)*c.chunkSize <= c.budget:
			c.chunks = append(c.chunks, make([]byte, c.chunkSize))
			c.chunk, c.off = len(c.chunks)-1, 0
		default:
			c.reset()
		}
	}
	// At most max entries in at least 2·max slots: probes stay short.
	if 2*(c.n+1) > len(c.slots) {
		c.grow()
	}
	i, _ := c.find(key, h)
	copy(c.chunks[c.chunk][c.off:], key)
	c.slots[i] = keySlot{hash: h, off: uint32(c.off), chunk: uint16(c.chunk), n: uint16(len(key))}
	c.vals[i] = v
	c.off += len(key)
	c.n++
}

// reset empties the cache, keeping its table and chunks.
func (c *keyCache[V]) reset() {
	clear(c.slots)
	clear(c.vals)
	c.n, c.chunk, c.off = 0, 0, 0
}

// grow doubles the table (16 slots at first).
func (c *keyCache[V]) grow() {
	old, oldVals := c.slots, c.vals
	c.slots = make([]keySlot, max(16, 2*len(old)))
	c.vals = make([]V, len(c.slots))
	m := uint64(len(c.slots) - 1)
	for j, s := range old {
		if s.hash == 0 {
			continue
		}
		i := s.hash & m
		for c.slots[i].hash != 0 {
			i = (i + 1) & m
		}
		c.slots[i], c.vals[i] = s, oldVals[j]
	}
}

// len is the number of entries.
func (c *keyCache[V]) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.n
}

// values calls f with each value, under the read lock.
func (c *keyCache[V]) values(f func(V)) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for i, s := range c.slots {
		if s.hash != 0 {
			f(c.vals[i])
		}
	}
}
