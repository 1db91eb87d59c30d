package vswitch

import (
	"slices"
	"sync"
	"sync/atomic"
)

// FDB change notification, for a control plane that advertises the
// switch's MACs (an EVPN speaker's local type-2 routes): which entries
// were added, moved to another port or removed, so that it need not dump
// the whole table to find out. Linux tells zebra the same through netlink
// (RTM_NEWNEIGH / RTM_DELNEIGH for AF_BRIDGE, net/bridge/br_fdb.c
// fdb_notify).
//
// Only the FDB's writers notify: a new entry, a move, a static entry set,
// a deletion (DeleteStatic, Flush, a port's removal, Expire). These all
// run under a shard's lock already; a frame that refreshes an entry (the
// forwarding path) does nothing more. With no watch, a writer pays one
// atomic load. An entry that ages out is reported when Expire removes it
// (Run calls it every second); until then it is already absent to FDB and
// LookupFDB.
//
// What a watch holds is bounded: past its limit of pending keys it forgets
// them and reports an overflow, and its reader reads the whole table
// instead (a tenant that floods source MACs cannot grow it).

// FDBKey names an FDB entry.
type FDBKey struct {
	VLAN uint16
	MAC  MAC
}

// FDBWatch collects the keys of FDB entries that changed since its last
// Changes. Its methods are safe for concurrent use.
type FDBWatch struct {
	s    *Switch
	c    chan struct{}
	max  int
	mu   sync.Mutex
	keys map[uint64]struct{}
	over bool // more than max keys changed: they were forgotten
}

// fdbWatchers is the list of watches, copied on change.
type fdbWatchers struct {
	mu   sync.Mutex // serialises changes of the list
	list atomic.Pointer[[]*FDBWatch]
}

// WatchFDB starts a watch that remembers up to n changed keys (at
// least 1) between two calls of its Changes. Close it when done.
func (s *Switch) WatchFDB(n int) *FDBWatch {
	w := &FDBWatch{s: s, c: make(chan struct{}, 1), max: max(n, 1), keys: map[uint64]struct{}{}}
	ws := &s.fdb.watchers
	ws.mu.Lock()
	defer ws.mu.Unlock()
	var l []*FDBWatch
	if p := ws.list.Load(); p != nil {
		l = slices.Clone(*p)
	}
	l = append(l, w)
	ws.list.Store(&l)
	return w
}

// C receives a value when keys changed since the last Changes (one value
// for any number of changes).
func (w *FDBWatch) C() <-chan struct{} { return w.c }

// Changes returns the keys that changed since the last call (in no
// order), and overflow true when more than the watch's limit did: then
// the keys are not all there and the reader must read the whole FDB.
func (w *FDBWatch) Changes() (keys []FDBKey, overflow bool) {
	// The set is swapped under the lock and read after it: a writer
	// (learning a new MAC) waits for a swap, never for the copy.
	w.mu.Lock()
	overflow, w.over = w.over, false
	var set map[uint64]struct{} // the watch's no more: read unlocked
	if !overflow && len(w.keys) > 0 {
		set, w.keys = w.keys, map[uint64]struct{}{}
	}
	w.mu.Unlock()
	if overflow {
		return nil, true
	}
	keys = make([]FDBKey, 0, len(set))
	for k := range set {
		keys = append(keys, FDBKey{VLAN: keyVID(k), MAC: keyMAC(k)})
	}
	return keys, false
}

// Close ends the watch.
func (w *FDBWatch) Close() {
	ws := &w.s.fdb.watchers
	ws.mu.Lock()
	defer ws.mu.Unlock()
	p := ws.list.Load()
	if p == nil {
		return
	}
	l := slices.DeleteFunc(slices.Clone(*p), func(o *FDBWatch) bool { return o == w })
	ws.list.Store(&l)
}

// add records a changed key; called with a shard's lock held (lock order:
// shard, then the watch).
func (w *FDBWatch) add(key uint64) {
	w.mu.Lock()
	if !w.over {
		if _, ok := w.keys[key]; !ok && len(w.keys) >= w.max {
			w.over = true
			clear(w.keys)
		} else {
			w.keys[key] = struct{}{}
		}
	}
	w.mu.Unlock()
	select {
	case w.c <- struct{}{}:
	default:
	}
}

// changed tells the watches that key's entry was added, moved or
// removed. A writer calls it with the key's shard locked.
func (t *fdb) changed(key uint64) {
	p := t.watchers.list.Load()
	if p == nil {
		return
	}
	for _, w := range *p {
		w.add(key & fdbKeyMask)
	}
}

// LookupFDB returns the port that mac in vid is on, and whether the FDB
// has a live entry for it (a dynamic entry past the aging time has none).
func (s *Switch) LookupFDB(vid uint16, mac MAC) (port string, ok bool) {
	v, found := s.fdb.peek(fdbKey(vid, mac[:]))
	if !found || !s.fdb.live(v.static, v.seen, s.clock.Now()) {
		return "", false
	}
	return v.port.name, true
}
