package vswitch

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// checkFDB compares every shard of t with the model and the invariants of
// linear probing: every entry is reachable from its home slot.
func checkFDB(tb testing.TB, t *fdb, model map[uint64]*PortHandle) {
	tb.Helper()
	n := 0
	for k := range t.shards {
		sh := &t.shards[k]
		tab := sh.tab.Load()
		c := 0
		for i := range tab.slots {
			kw := tab.slots[i].kw.Load()
			if kw == 0 {
				continue
			}
			c++
			key := kw & fdbKeyMask
			if s, _, _ := tab.find(key, t.hashOf(key)); s != &tab.slots[i] {
				tb.Fatalf("key %#x in slot %d not reachable from its home", key, i)
			}
		}
		if c != sh.count {
			tb.Fatalf("shard %d: count %d, %d slots used", k, sh.count, c)
		}
		n += c
	}
	if n != len(model) || t.size() != n {
		tb.Fatalf("fdb holds %d entries (size %d), model %d", n, t.size(), len(model))
	}
	for k, h := range model {
		if got := t.lookup(k, 1); got != h {
			tb.Fatalf("lookup %#x = %v, want %v", k, got, h)
		}
	}
}

// The open-addressing table against a map, through learning, moves,
// static entries, removals and sweeps (which shift entries backward).
func TestFDBModel(t *testing.T) {
	f := newFDB(int64(time.Hour))
	ports := []*PortHandle{{name: "a"}, {name: "b"}, {name: "c"}}
	model := map[uint64]*PortHandle{}
	static := map[uint64]bool{}
	r := rand.New(rand.NewPCG(1, 2))
	key := func() uint64 {
		return fdbKey(uint16(1+r.IntN(3)), []byte{2, 0, 0, 0, byte(r.IntN(8)), byte(r.IntN(256))})
	}
	for step := range 40000 {
		k, p := key(), ports[r.IntN(len(ports))]
		switch op := r.IntN(10); {
		case op < 6:
			if op := f.learn(k, p, 0, false, 1); op.drop() != dropNone {
				t.Fatal("learn refused without a limit")
			}
			if !static[k] {
				model[k] = p
			}
		case op < 7:
			f.setStatic(k, p)
			model[k], static[k] = p, true
		case op < 9:
			if f.remove(k, static[k]) != (model[k] != nil) {
				t.Fatalf("remove %#x: wrong result", k)
			}
			delete(model, k)
			delete(static, k)
		default:
			vid := uint16(1 + r.IntN(3))
			f.sweep(func(e *fdbView) bool { return keyVID(e.key) == vid && e.port == p })
			for k2, p2 := range model {
				if keyVID(k2) == vid && p2 == p {
					delete(model, k2)
					delete(static, k2)
				}
			}
		}
		if step%1000 == 0 {
			checkFDB(t, f, model)
		}
	}
	checkFDB(t, f, model)
	var learned int64
	for k, p := range model {
		if !static[k] && p == ports[0] {
			learned++
		}
	}
	if got := ports[0].learned.Load(); got != learned {
		t.Errorf("port a learned count %d, want %d", got, learned)
	}
}

// Lookups never miss a present key while other goroutines insert, move,
// delete and grow the table (run with -race).
func TestFDBConcurrentLookups(t *testing.T) {
	f := newFDB(int64(time.Hour))
	a, b := &PortHandle{name: "a"}, &PortHandle{name: "b"}
	const stable = 2000
	for i := range stable {
		f.learn(benchKey(uint32(i)), a, 0, false, 1)
	}
	var stop atomic.Bool
	var wg, readers sync.WaitGroup
	wg.Add(1)
	go func() { // churn: new keys (growth), moves, deletions (backward shifts)
		defer wg.Done()
		for i := uint32(0); !stop.Load(); i++ {
			k := benchKey(1<<20 + i%50000)
			f.learn(k, b, 0, false, 1)
			if i%3 == 0 {
				f.remove(k, false)
			}
			f.learn(benchKey(i%stable), a, 0, false, 2) // refresh, lock-free
		}
	}()
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for n := 0; n < 200000; n++ {
				if p := f.lookup(benchKey(uint32(n%stable)), 2); p != a {
					t.Errorf("lookup of a stable key gave %v", p)
					return
				}
			}
		}()
	}
	for n := 0; n < 3; n++ {
		f.sweep(func(e *fdbView) bool { return e.port == b })
	}
	readers.Wait()
	stop.Store(true)
	wg.Wait()
}
