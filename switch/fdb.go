package vswitch

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
)

// The filtering database (IEEE 802.1Q-2018 §8.8) with independent VLAN
// learning (§8.8.7, IVL): entries are keyed by (VID, MAC), packed into one
// word as VID<<48 | MAC.
//
// It is split into shards (by the top bits of the key's hash), each an
// open-addressing table with linear probing whose entries are stored inline:
// 32 bytes, two per cache line, so a lookup of a random key costs about one
// cache miss however big the table is. Keys are hashed with a random seed
// chosen per FDB, so a guest cannot pick source MACs that pile up in one
// probe chain without knowing it.
//
// Concurrency: each shard has a mutex that serialises writers (new
// entries, moves, static changes, deletions, growth) and two sequence
// counters. Readers take no lock:
//
//   - seq is odd while a writer changes slots of the published table in
//     place (a move, a static entry, a deletion's backward shift). A lookup
//     reads seq, probes with atomic loads, and retries if seq changed.
//     Inserting into an empty slot needs no seq bump: the key is stored last
//     and a reader either sees the empty slot (a miss, ordered before the
//     insert) or the whole entry.
//   - Growth is RCU-like: the writer copies into a new table and publishes
//     it with one atomic store; readers keep probing the old one, which no
//     writer changes any more, so lookups never wait for a resize.
//   - wseq is odd during every writer section, copies included. Refreshing
//     the last-seen time of an entry that did not move is one atomic store
//     done without the lock; the refresher checks wseq around it and falls
//     back to the locked path if a writer ran meanwhile (the store might
//     have gone to a slot that was being copied or shifted).
//
// Aging (§8.8.3) is per entry: lookups treat an entry older than the aging
// time as absent; expire (called off the hot path) removes them.

const (
	fdbShardBits = 8
	fdbShards    = 1 << fdbShardBits
	fdbMinSlots  = 64      // 2 KiB: allocated 2 KiB-aligned, so slots pair up in cache lines
	fdbStatic    = 1 << 63 // flag in a slot's key word
	fdbKeyMask   = 1<<60 - 1
)

// fdbSlot is one inline entry. All fields are accessed atomically.
type fdbSlot struct {
	kw   atomic.Uint64 // key | fdbStatic; 0: empty (keys are never 0: VID >= 1)
	seen atomic.Int64  // Clock time of the last frame from this MAC (dynamic entries)
	port atomic.Pointer[PortHandle]
	_    uint64 // pad to 32 bytes
}

// fdbTable is one shard's slot array. Its size is a power of two.
type fdbTable struct {
	slots []fdbSlot
	mask  uint64
	shift uint8 // index = hash << fdbShardBits >> shift
}

func newFDBTable(n int) *fdbTable {
	bits := 0
	for 1<<bits < n {
		bits++
	}
	return &fdbTable{slots: make([]fdbSlot, 1<<bits), mask: 1<<bits - 1, shift: uint8(64 - bits)}
}

func (tb *fdbTable) index(hash uint64) uint64 { return hash << fdbShardBits >> tb.shift }

// find returns the slot holding key, its index and its key word, or nil.
// Lock-free callers validate the result with the shard's sequence counters.
func (tb *fdbTable) find(key, hash uint64) (*fdbSlot, uint64, uint64) {
	for i := tb.index(hash); ; i = (i + 1) & tb.mask {
		s := &tb.slots[i]
		kw := s.kw.Load()
		if kw&fdbKeyMask == key {
			return s, i, kw
		}
		if kw == 0 {
			return nil, 0, 0
		}
	}
}

type fdbShard struct {
	mu    sync.Mutex // serialises writers
	seq   atomic.Uint32
	wseq  atomic.Uint32
	tab   atomic.Pointer[fdbTable]
	count int // entries, under mu
	_     [24]byte
}

// fdbView is a copy of one entry, handed to sweep and each.
type fdbView struct {
	key    uint64
	static bool
	port   *PortHandle
	seen   int64
}

type fdb struct {
	aging   atomic.Int64 // ns
	seed    uint64       // random: see hashOf
	shards  [fdbShards]fdbShard
	entries atomic.Int64
	learned atomic.Uint64
	moves   atomic.Uint64
	aged    atomic.Uint64
}

func newFDB(aging int64) *fdb {
	t := &fdb{seed: rand.Uint64()}
	t.aging.Store(aging)
	for i := range t.shards {
		t.shards[i].tab.Store(newFDBTable(fdbMinSlots))
	}
	return t
}

// fdbKey packs (VID, MAC) into one word.
func fdbKey(vid uint16, mac []byte) uint64 { return uint64(vid)<<48 | macKey(mac) }

func keyVID(k uint64) uint16 { return uint16(k >> 48) }

func keyMAC(k uint64) MAC {
	return MAC{byte(k >> 40), byte(k >> 32), byte(k >> 24), byte(k >> 16), byte(k >> 8), byte(k)}
}

// hashOf mixes key with the FDB's random seed through MurmurHash3's 64-bit
// finaliser. Linear probing needs a well-mixed hash: with plain
// multiply-shift, runs of consecutive MACs (as hypervisors hand them out)
// formed long clusters for some multipliers.
func (t *fdb) hashOf(key uint64) uint64 {
	h := key ^ t.seed
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

func (t *fdb) hash(key uint64) (*fdbShard, uint64) {
	h := t.hashOf(key)
	return &t.shards[h>>(64-fdbShardBits)], h
}

func (t *fdb) live(static bool, seen, now int64) bool {
	return static || now-seen <= t.aging.Load()
}

// spin backs off while a writer is in a short critical section.
func spin(n *int) {
	if *n++; *n&63 == 0 {
		runtime.Gosched()
	}
}

// lookup returns the port a (VID, MAC) was last seen on, or nil. An entry
// older than the aging time counts as absent (§8.8.3); expire removes it.
// It takes no lock.
func (t *fdb) lookup(key uint64, now int64) *PortHandle {
	sh, hash := t.hash(key)
	for n := 0; ; spin(&n) {
		s1 := sh.seq.Load()
		if s1&1 != 0 {
			continue
		}
		s, _, kw := sh.tab.Load().find(key, hash)
		var p *PortHandle
		var seen int64
		if s != nil {
			p, seen = s.port.Load(), s.seen.Load()
		}
		if sh.seq.Load() != s1 {
			continue
		}
		if s == nil || !t.live(kw&fdbStatic != 0, seen, now) {
			return nil
		}
		return p
	}
}

// refresh is learn's lock-free fast path: the key is already on port h (or
// static). It reports false when the locked path must decide.
func (sh *fdbShard) refresh(key, hash uint64, h *PortHandle, now int64) bool {
	w := sh.wseq.Load()
	if w&1 != 0 {
		return false
	}
	s, _, kw := sh.tab.Load().find(key, hash)
	if s == nil {
		return false
	}
	if kw&fdbStatic != 0 {
		return sh.wseq.Load() == w
	}
	if s.port.Load() != h {
		return false
	}
	if s.seen.Load() != now { // a batch of one flow stores once
		s.seen.Store(now)
	}
	return sh.wseq.Load() == w
}

// learnOp is what learning does with a source address.
type learnOp uint8

const (
	learnStatic  learnOp = iota // a static entry: nothing to learn
	learnRefresh                // already on this port: refresh its age
	learnLimit                  // the port's MAC limit forbids a new entry: drop
	learnMove                   // on another port: move it here
	learnNew                    // unknown: add it
)

// learnDecision is the learning rule (IEEE 802.1Q-2018 §8.7) given what the
// FDB holds for the source; learn and Trace both use it.
func learnDecision(found, static, onPort bool, limit, learned int64) learnOp {
	switch {
	case found && static:
		return learnStatic
	case found && onPort:
		return learnRefresh
	case limit > 0 && learned >= limit:
		return learnLimit
	case found:
		return learnMove
	}
	return learnNew
}

// peek returns the entry for key without changing anything (for Trace).
func (t *fdb) peek(key uint64) (v fdbView, found bool) {
	sh, hash := t.hash(key)
	for n := 0; ; spin(&n) {
		s1 := sh.seq.Load()
		if s1&1 != 0 {
			continue
		}
		s, _, _ := sh.tab.Load().find(key, hash)
		if s != nil {
			v = s.view()
		}
		if sh.seq.Load() == s1 {
			return v, s != nil
		}
	}
}

// learn records that key was seen on h (§8.7 learning process). It returns
// false when h's MAC limit (limit > 0) forbids a new entry on h.
func (t *fdb) learn(key uint64, h *PortHandle, limit int64, now int64) bool {
	sh, hash := t.hash(key)
	if sh.refresh(key, hash, h, now) {
		return true
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	tb := sh.tab.Load()
	s, _, kw := tb.find(key, hash)
	var onH bool
	if s != nil {
		onH = s.port.Load() == h
	}
	switch learnDecision(s != nil, kw&fdbStatic != 0, onH, limit, h.learned.Load()) {
	case learnStatic:
		return true
	case learnRefresh:
		// Only h's Input refreshes entries on h: no lock-free store races this one.
		s.seen.Store(now)
		return true
	case learnLimit:
		return false
	case learnMove: // §8.7: the entry follows the MAC
		old := s.port.Load()
		if t.live(false, s.seen.Load(), now) {
			t.moves.Add(1)
		}
		sh.beginUpdate()
		s.port.Store(h)
		s.seen.Store(now)
		sh.endUpdate()
		old.learned.Add(-1)
		h.learned.Add(1)
		return true
	}
	t.insertLocked(sh, key, hash, h, now, false)
	h.learned.Add(1)
	t.learned.Add(1)
	return true
}

// beginUpdate / endUpdate bracket in-place changes to the published table.
func (sh *fdbShard) beginUpdate() { sh.wseq.Add(1); sh.seq.Add(1) }
func (sh *fdbShard) endUpdate()   { sh.seq.Add(1); sh.wseq.Add(1) }

// insertLocked adds a key known to be absent, growing the table first when
// it would be more than 3/4 full.
func (t *fdb) insertLocked(sh *fdbShard, key, hash uint64, h *PortHandle, now int64, static bool) {
	tb := sh.tab.Load()
	if (sh.count+1)*4 > len(tb.slots)*3 {
		tb = t.growLocked(sh, tb)
	}
	kw := key
	if static {
		kw |= fdbStatic
	}
	s := tb.empty(hash)
	s.port.Store(h)
	s.seen.Store(now)
	s.kw.Store(kw) // publishes the entry
	sh.count++
	t.entries.Add(1)
}

// empty returns the first empty slot of hash's probe sequence.
func (tb *fdbTable) empty(hash uint64) *fdbSlot {
	i := tb.index(hash)
	for tb.slots[i].kw.Load() != 0 {
		i = (i + 1) & tb.mask
	}
	return &tb.slots[i]
}

// growLocked copies the shard into a table twice the size and publishes it
// (RCU-style: readers of the old table are not disturbed).
func (t *fdb) growLocked(sh *fdbShard, old *fdbTable) *fdbTable {
	sh.wseq.Add(1)
	defer sh.wseq.Add(1)
	tb := newFDBTable(2 * len(old.slots))
	for i := range old.slots {
		o := &old.slots[i]
		kw := o.kw.Load()
		if kw == 0 {
			continue
		}
		s := tb.empty(t.hashOf(kw & fdbKeyMask))
		s.port.Store(o.port.Load())
		s.seen.Store(o.seen.Load())
		s.kw.Store(kw)
	}
	sh.tab.Store(tb)
	return tb
}

// deleteLocked removes slot i of the published table with backward-shift
// deletion (no tombstones): later entries of the cluster that may live
// earlier move up. Lookups racing with it retry (seq is odd meanwhile).
func (t *fdb) deleteLocked(sh *fdbShard, tb *fdbTable, i uint64) {
	sh.beginUpdate()
	for j := i; ; {
		j = (j + 1) & tb.mask
		s := &tb.slots[j]
		kw := s.kw.Load()
		if kw == 0 {
			break
		}
		home := tb.index(t.hashOf(kw & fdbKeyMask))
		// s may move to the hole at i unless its home lies cyclically in (i, j].
		if (j-home)&tb.mask < (j-i)&tb.mask {
			continue
		}
		d := &tb.slots[i]
		d.port.Store(s.port.Load())
		d.seen.Store(s.seen.Load())
		d.kw.Store(kw)
		i = j
	}
	h := &tb.slots[i]
	h.kw.Store(0)
	h.port.Store(nil)
	h.seen.Store(0)
	sh.endUpdate()
	sh.count--
	t.entries.Add(-1)
}

// setStatic installs a static entry, replacing any dynamic one.
func (t *fdb) setStatic(key uint64, h *PortHandle) {
	sh, hash := t.hash(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s, _, kw := sh.tab.Load().find(key, hash)
	if s == nil {
		t.insertLocked(sh, key, hash, h, 0, true)
		return
	}
	if kw&fdbStatic == 0 {
		s.port.Load().learned.Add(-1)
	}
	sh.beginUpdate()
	s.port.Store(h)
	s.seen.Store(0)
	s.kw.Store(key | fdbStatic)
	sh.endUpdate()
}

// remove deletes the entry for key if its static-ness matches; it reports
// whether it did.
func (t *fdb) remove(key uint64, static bool) bool {
	sh, hash := t.hash(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	tb := sh.tab.Load()
	s, i, kw := tb.find(key, hash)
	if s == nil || (kw&fdbStatic != 0) != static {
		return false
	}
	if !static {
		s.port.Load().learned.Add(-1)
	}
	t.deleteLocked(sh, tb, i)
	return true
}

func (s *fdbSlot) view() fdbView {
	kw := s.kw.Load()
	return fdbView{key: kw & fdbKeyMask, static: kw&fdbStatic != 0, port: s.port.Load(), seen: s.seen.Load()}
}

// sweep deletes the entries for which del returns true and returns how
// many. It locks one shard at a time; lookups go on meanwhile.
func (t *fdb) sweep(del func(e *fdbView) bool) int {
	n := 0
	for k := range t.shards {
		sh := &t.shards[k]
		sh.mu.Lock()
		if sh.count > 0 {
			n += t.sweepLocked(sh, del)
		}
		sh.mu.Unlock()
	}
	return n
}

func (t *fdb) sweepLocked(sh *fdbShard, del func(e *fdbView) bool) int {
	tb := sh.tab.Load()
	// Start after an empty slot so that no cluster wraps around the start
	// of the walk: a backward shift then only moves entries into slots not
	// yet visited or into the one being visited, which is looked at again.
	start := uint64(0)
	for tb.slots[start].kw.Load() != 0 {
		start++
	}
	n := 0
	for c := uint64(1); c <= tb.mask; {
		i := (start + c) & tb.mask
		s := &tb.slots[i]
		if s.kw.Load() == 0 {
			c++
			continue
		}
		v := s.view()
		if !del(&v) {
			c++
			continue
		}
		if !v.static {
			v.port.learned.Add(-1)
		}
		t.deleteLocked(sh, tb, i)
		n++
	}
	return n
}

// expire removes dynamic entries older than the aging time.
func (t *fdb) expire(now int64) int {
	n := t.sweep(func(e *fdbView) bool { return !t.live(e.static, e.seen, now) })
	t.aged.Add(uint64(n))
	return n
}

func (t *fdb) size() int { return int(t.entries.Load()) }

// each calls fn with every entry, one shard locked at a time.
func (t *fdb) each(fn func(e *fdbView)) {
	for k := range t.shards {
		sh := &t.shards[k]
		sh.mu.Lock()
		tb := sh.tab.Load()
		for i := range tb.slots {
			if tb.slots[i].kw.Load() != 0 {
				v := tb.slots[i].view()
				fn(&v)
			}
		}
		sh.mu.Unlock()
	}
}
