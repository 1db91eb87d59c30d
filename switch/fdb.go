package vswitch

import (
	"sync"
	"sync/atomic"
)

// The filtering database (IEEE 802.1Q-2018 §8.8) with independent VLAN
// learning (§8.8.7, IVL): entries are keyed by (VID, MAC).
//
// It is split into shards, each a map behind an RWMutex. Lookups take the
// read lock only for the map access. An entry that is seen again on the same
// port is refreshed with one atomic store, under the read lock; only new
// entries, moves and deletions take the write lock.

const fdbShards = 256

type fdbEntry struct {
	key    uint64
	static bool // immutable: AddStatic replaces the entry
	port   atomic.Pointer[PortHandle]
	seen   atomic.Int64 // Clock time of the last frame from this MAC
}

type fdbShard struct {
	mu sync.RWMutex
	m  map[uint64]*fdbEntry
	_  [32]byte // keep shards on separate cache lines
}

type fdb struct {
	aging   atomic.Int64 // ns
	shards  [fdbShards]fdbShard
	learned atomic.Uint64
	moves   atomic.Uint64
	aged    atomic.Uint64
}

func newFDB(aging int64) *fdb {
	t := &fdb{}
	t.aging.Store(aging)
	for i := range t.shards {
		t.shards[i].m = make(map[uint64]*fdbEntry)
	}
	return t
}

// fdbKey packs (VID, MAC) into one word.
func fdbKey(vid uint16, mac []byte) uint64 { return uint64(vid)<<48 | macKey(mac) }

func keyVID(k uint64) uint16 { return uint16(k >> 48) }

func keyMAC(k uint64) MAC {
	return MAC{byte(k >> 40), byte(k >> 32), byte(k >> 24), byte(k >> 16), byte(k >> 8), byte(k)}
}

func (t *fdb) shard(key uint64) *fdbShard {
	return &t.shards[(key*0x9e3779b97f4a7c15)>>56]
}

func (t *fdb) get(key uint64) *fdbEntry {
	sh := t.shard(key)
	sh.mu.RLock()
	e := sh.m[key]
	sh.mu.RUnlock()
	return e
}

func (t *fdb) live(e *fdbEntry, now int64) bool {
	return e.static || now-e.seen.Load() <= t.aging.Load()
}

// lookup returns the port a (VID, MAC) was last seen on, or nil. An entry
// older than the aging time counts as absent (§8.8.3); Expire removes it.
func (t *fdb) lookup(key uint64, now int64) *PortHandle {
	e := t.get(key)
	if e == nil || !t.live(e, now) {
		return nil
	}
	return e.port.Load()
}

// learn records that key was seen on h (§8.7 learning process). It returns
// false when h's MAC limit forbids a new entry.
func (t *fdb) learn(key uint64, h *PortHandle, limit int64, now int64) bool {
	e := t.get(key)
	if e != nil && (e.static || e.port.Load() == h) {
		if !e.static {
			e.seen.Store(now)
		}
		return true
	}
	if limit > 0 && h.learned.Load() >= limit {
		return false
	}
	sh := t.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e = sh.m[key]
	switch {
	case e == nil:
		e = &fdbEntry{key: key}
		e.port.Store(h)
		e.seen.Store(now)
		sh.m[key] = e
		h.learned.Add(1)
		t.learned.Add(1)
	case e.static:
	case e.port.Load() == h:
		e.seen.Store(now)
	default:
		old := e.port.Load()
		if t.live(e, now) {
			t.moves.Add(1)
		}
		old.learned.Add(-1)
		e.port.Store(h)
		e.seen.Store(now)
		h.learned.Add(1)
	}
	return true
}

// setStatic installs a static entry, replacing any dynamic one.
func (t *fdb) setStatic(key uint64, h *PortHandle) {
	sh := t.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e := sh.m[key]; e != nil && !e.static {
		e.port.Load().learned.Add(-1)
	}
	e := &fdbEntry{key: key, static: true}
	e.port.Store(h)
	sh.m[key] = e
}

// remove deletes the entry for key if its static-ness matches; it reports
// whether it did.
func (t *fdb) remove(key uint64, static bool) bool {
	sh := t.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[key]
	if e == nil || e.static != static {
		return false
	}
	if !e.static {
		e.port.Load().learned.Add(-1)
	}
	delete(sh.m, key)
	return true
}

// sweep deletes the entries for which del returns true and returns how many.
func (t *fdb) sweep(del func(e *fdbEntry) bool) int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			if del(e) {
				if !e.static {
					e.port.Load().learned.Add(-1)
				}
				delete(sh.m, k)
				n++
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// expire removes dynamic entries older than the aging time.
func (t *fdb) expire(now int64) int {
	n := t.sweep(func(e *fdbEntry) bool { return !t.live(e, now) })
	t.aged.Add(uint64(n))
	return n
}

func (t *fdb) size() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

func (t *fdb) each(fn func(e *fdbEntry)) {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.RLock()
		for _, e := range sh.m {
			fn(e)
		}
		sh.mu.RUnlock()
	}
}
