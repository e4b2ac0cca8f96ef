package policy

import (
	"runtime"
	"slices"
	"strings"
	"testing"
)

// sizedVal is a verdict-like value with each kind of value, its strings
// its own, its collections without terms.
func sizedVal() val {
	s := func(x string) val { return vStr(strings.Clone(x)) }
	obj := func(kv ...val) val {
		c := &coll{}
		for i := 0; i < len(kv); i += 2 {
			c.insert(kv[i], kv[i+1], false)
		}
		return val{k: kObj, c: c}
	}
	set := func(es ...val) val {
		c := &coll{}
		for _, e := range es {
			c.setAdd(e)
		}
		return val{k: kSet, c: c}
	}
	arr := func(es ...val) val { return val{k: kArr, c: &coll{vals: es}} }
	return obj(
		s("code"), s("denied-delete"),
		s("reason"), s("mailbox Sent is protected by the site policy"),
		s("mailbox"), arr(s("INBOX"), s("Sent"), s("Archive/2024"), vInt(7)),
		s("effects"), set(s("expunge"), s("mark-deleted"), s("rename")),
		s("n"), vInt(12345678901),
		s("x"), numVal("1.5"),
		s("nested"), obj(s("a"), arr(obj(s("b"), set(s("c"), vTrue)), arr(vNull, vFalse, vInt(3)))),
	)
}

// TestValSizeCoversRetained checks valSize against what a remembered
// value really holds on the heap, sealed (persist) or converted
// (fromAST): never less, so that maxEntry bounds a session's memory, and
// not much more, so that the memo holds what fits (ARCHITECTURE.md §10).
func TestValSizeCoversRetained(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func() val
	}{
		{"sealed", func() val { return seal(sizedVal()) }},
		{"converted", func() val {
			v, err := fromAST(toAST(sizedVal()))
			if err != nil {
				t.Fatal(err)
			}
			return v
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 4000
			// The heap is the process's: goroutines other tests left
			// (pollers, pools) allocate and free between the two reads.
			// The median of five measures is the values' own.
			var helds []int
			var est int
			for range 5 {
				kept := make([]val, n)
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				for i := range kept {
					kept[i] = tc.make()
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				helds = append(helds, (int(after.HeapAlloc)-int(before.HeapAlloc))/n)
				est = valSize(kept[0], maxEntry)
				runtime.KeepAlive(kept)
			}
			slices.Sort(helds)
			held := helds[len(helds)/2]
			t.Logf("valSize %d, held %d (of %v)", est, held, helds)
			if est < held {
				t.Errorf("valSize %d below the %d bytes held", est, held)
			}
			if 4*est > 5*held {
				t.Errorf("valSize %d more than a quarter over the %d bytes held", est, held)
			}
		})
	}
}
