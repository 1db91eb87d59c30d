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
//
// Bounds (Config.FDBMaxEntries, PortConfig.MACLimit): learned entries are
// counted switch-wide (dyn) and per port (PortHandle.learned). A new entry
// reserves its place in dyn with a compare-and-swap, so the table never
// holds more than max learned entries even while every shard learns at
// once. Nothing is evicted to make room: what a port learned stays until
// it ages out, is flushed or its port goes.
//
// Moves (learnDecision): a live dynamic entry moves to another port only
// once it has not been refreshed for the hold-down time, and never while it
// is pinned (a port's own MAC under port security, fdbPinned). Refused
// moves and refreshes are decided on the lock-free path.

const (
	fdbShardBits = 8
	fdbShards    = 1 << fdbShardBits
	fdbMinSlots  = 64      // 2 KiB: allocated 2 KiB-aligned, so slots pair up in cache lines
	fdbStatic    = 1 << 63 // flag in a slot's key word
	fdbPinned    = 1 << 62 // flag in a slot's key word: a dynamic entry that never moves while live
	fdbKeyMask   = 1<<60 - 1
)

// fdbSlot is one inline entry. All fields are accessed atomically.
type fdbSlot struct {
	kw   atomic.Uint64 // key | fdbStatic | fdbPinned; 0: empty (keys are never 0: VID >= 1)
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
	pinned bool
	port   *PortHandle
	seen   int64
}

type fdb struct {
	aging    atomic.Int64 // ns
	holdDown atomic.Int64 // ns a live entry stays on its port before it may move; 0: none
	max      atomic.Int64 // learned entries at most; 0: no bound
	seed     uint64       // random: see hashOf
	shards   [fdbShards]fdbShard
	entries  atomic.Int64 // static included
	dyn      atomic.Int64 // learned (dynamic) entries, reserved before insertion
	watchers fdbWatchers  // told of every entry added, moved or removed (fdbwatch.go)
	learned  atomic.Uint64
	moves    atomic.Uint64
	aged     atomic.Uint64
}

// newFDB returns an empty FDB without bounds or hold-down: New sets them.
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

// learnOp is what learning does with a source address.
type learnOp uint8

const (
	learnStatic  learnOp = iota // a static entry: nothing to learn
	learnRefresh                // already on this port: refresh its age
	learnMove                   // on another port, free to move: move it here
	learnNew                    // unknown: add it
	learnLimit                  // the port's MAC limit forbids a new entry: drop
	learnFull                   // the FDB holds its maximum of learned entries: drop
	learnHeld                   // on another port, refreshed within the hold-down: drop
	learnPinned                 // another port's own MAC (port security): drop
)

// drop is the drop reason of a refusing decision, or dropNone.
func (op learnOp) drop() DropReason {
	switch op {
	case learnLimit:
		return DropMACLimit
	case learnFull:
		return DropFDBFull
	case learnHeld, learnPinned:
		return DropMACMove
	}
	return dropNone
}

// learnState is what the learning rule looks at: the FDB's entry for the
// source, if any (found), and the ingress port's bounds.
type learnState struct {
	found, static, pinned bool
	onPort                bool  // the entry points at the ingress port
	live                  bool  // not aged out
	age                   int64 // ns since the entry was last refreshed
	holdDown              int64 // ns (fdb.holdDown)
	limit, learned        int64 // the port's MAC limit (<= 0: none) and its learned entries
	full                  bool  // the FDB holds its maximum of learned entries
}

// learnDecision is the learning rule (IEEE 802.1Q-2018 §8.7) with its
// bounds and MAC-move protection; learn, its lock-free path and Trace all
// use it. A live entry on another port stays there while it is pinned or
// was refreshed within the hold-down, so one frame with a stolen source
// MAC does not redirect its owner's traffic (a move once the owner went
// quiet is §8.7's station move). A move into a port counts against that
// port's MAC limit; a new entry against the limit and the FDB's maximum.
func learnDecision(e learnState) learnOp {
	switch {
	case e.found && e.static:
		return learnStatic
	case e.found && e.onPort:
		return learnRefresh
	case e.found && e.live && e.pinned:
		return learnPinned
	case e.found && e.live && e.holdDown > 0 && e.age < e.holdDown:
		return learnHeld
	case e.limit > 0 && e.learned >= e.limit:
		return learnLimit
	case e.found:
		return learnMove
	case e.full:
		return learnFull
	}
	return learnNew
}

// entryState fills learnState's entry fields from a slot's key word, port
// and last-seen time.
func (t *fdb) entryState(kw uint64, onPort bool, seen, now int64) learnState {
	static := kw&fdbStatic != 0
	return learnState{found: true, static: static, pinned: kw&fdbPinned != 0, onPort: onPort,
		live: t.live(static, seen, now), age: now - seen, holdDown: t.holdDown.Load()}
}

// full reports whether the FDB holds its maximum of learned entries.
func (t *fdb) full() bool {
	m := t.max.Load()
	return m > 0 && t.dyn.Load() >= m
}

// reserve takes a place for a new learned entry; false: the FDB is full.
func (t *fdb) reserve() bool {
	m := t.max.Load()
	for {
		n := t.dyn.Load()
		if m > 0 && n >= m {
			return false
		}
		if t.dyn.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func pinFlag(pin bool) uint64 {
	if pin {
		return fdbPinned
	}
	return 0
}

// fastLearn is learn's lock-free path, for a key already in the table
// whose decision changes nothing but its age: a refresh, a static entry, a
// refused move. ok is false when the locked path must decide (the key is
// absent or would move, its pin must change, or a writer ran meanwhile).
func (t *fdb) fastLearn(sh *fdbShard, key, hash uint64, h *PortHandle, pin bool, now int64) (op learnOp, ok bool) {
	w := sh.wseq.Load()
	if w&1 != 0 {
		return 0, false
	}
	s, _, kw := sh.tab.Load().find(key, hash)
	if s == nil {
		return 0, false
	}
	seen := s.seen.Load()
	switch op = learnDecision(t.entryState(kw, s.port.Load() == h, seen, now)); op {
	case learnRefresh:
		if pin != (kw&fdbPinned != 0) {
			return 0, false
		}
		if seen != now { // a batch of one flow stores once
			s.seen.Store(now)
		}
	case learnStatic, learnHeld, learnPinned:
	default:
		return 0, false
	}
	return op, sh.wseq.Load() == w
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

// learn records that key was seen on h (§8.7 learning process) and
// returns what it did: a refusal (learnLimit for h's MAC limit when limit
// > 0, learnFull, learnHeld, learnPinned) learns nothing and the frame is
// to be dropped. pin marks the entry as h's own MAC (port security): it
// will not move while it lives.
func (t *fdb) learn(key uint64, h *PortHandle, limit int64, pin bool, now int64) learnOp {
	sh, hash := t.hash(key)
	if op, ok := t.fastLearn(sh, key, hash, h, pin, now); ok {
		return op
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	tb := sh.tab.Load()
	s, _, kw := tb.find(key, hash)
	var e learnState
	if s != nil {
		e = t.entryState(kw, s.port.Load() == h, s.seen.Load(), now)
	}
	e.limit, e.learned, e.full = limit, h.learned.Load(), t.full()
	op := learnDecision(e)
	switch op {
	case learnRefresh:
		// Only h's Input refreshes entries on h: no lock-free store races this one.
		s.seen.Store(now)
		if nkw := kw&^fdbPinned | pinFlag(pin); nkw != kw {
			sh.beginUpdate()
			s.kw.Store(nkw)
			sh.endUpdate()
		}
	case learnMove: // §8.7: the entry follows the MAC
		old := s.port.Load()
		if e.live {
			t.moves.Add(1)
		}
		sh.beginUpdate()
		s.port.Store(h)
		s.seen.Store(now)
		s.kw.Store(key | pinFlag(pin))
		sh.endUpdate()
		old.learned.Add(-1)
		h.learned.Add(1)
		t.changed(key)
	case learnNew:
		if !t.reserve() { // another shard took the last place meanwhile
			return learnFull
		}
		t.insertLocked(sh, key, hash, h, now, pinFlag(pin))
		h.learned.Add(1)
		t.learned.Add(1)
	}
	return op
}

// beginUpdate / endUpdate bracket in-place changes to the published table.
func (sh *fdbShard) beginUpdate() { sh.wseq.Add(1); sh.seq.Add(1) }
func (sh *fdbShard) endUpdate()   { sh.seq.Add(1); sh.wseq.Add(1) }

// insertLocked adds a key known to be absent, with flags (fdbStatic,
// fdbPinned), growing the table first when it would be more than 3/4
// full. A dynamic entry's place in dyn is the caller's (reserve).
func (t *fdb) insertLocked(sh *fdbShard, key, hash uint64, h *PortHandle, now int64, flags uint64) {
	tb := sh.tab.Load()
	if (sh.count+1)*4 > len(tb.slots)*3 {
		tb = t.growLocked(sh, tb)
	}
	kw := key | flags
	s := tb.empty(hash)
	s.port.Store(h)
	s.seen.Store(now)
	s.kw.Store(kw) // publishes the entry
	sh.count++
	t.entries.Add(1)
	t.changed(key)
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
	key := tb.slots[i].kw.Load()
	if key&fdbStatic == 0 {
		t.dyn.Add(-1)
	}
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
	t.changed(key)
}

// setStatic installs a static entry, replacing any dynamic one.
func (t *fdb) setStatic(key uint64, h *PortHandle) {
	sh, hash := t.hash(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s, _, kw := sh.tab.Load().find(key, hash)
	if s == nil {
		t.insertLocked(sh, key, hash, h, 0, fdbStatic)
		return
	}
	if kw&fdbStatic == 0 {
		s.port.Load().learned.Add(-1)
		t.dyn.Add(-1)
	}
	sh.beginUpdate()
	s.port.Store(h)
	s.seen.Store(0)
	s.kw.Store(key | fdbStatic)
	sh.endUpdate()
	t.changed(key)
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

// flags returns the entry's key-word flags.
func (v *fdbView) flags() uint64 {
	var f uint64
	if v.static {
		f |= fdbStatic
	}
	if v.pinned {
		f |= fdbPinned
	}
	return f
}

func (s *fdbSlot) view() fdbView {
	kw := s.kw.Load()
	return fdbView{key: kw & fdbKeyMask, static: kw&fdbStatic != 0, pinned: kw&fdbPinned != 0, port: s.port.Load(), seen: s.seen.Load()}
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
