package vswitch

import (
	"slices"
	"testing"
	"time"
)

// pending reports whether the watch has signalled, without waiting.
func pending(w *FDBWatch) bool {
	select {
	case <-w.C():
		return true
	default:
		return false
	}
}

func changedKeys(t *testing.T, w *FDBWatch) []FDBKey {
	t.Helper()
	keys, over := w.Changes()
	if over {
		t.Fatal("unexpected overflow")
	}
	slices.SortFunc(keys, func(a, b FDBKey) int { return int(a.MAC[5]) - int(b.MAC[5]) })
	return keys
}

// Every change of an entry's existence or port is reported once per
// Changes; refreshes are not.
func TestFDBWatch(t *testing.T) {
	clk := NewManualClock(1)
	s := New(Config{Clock: clk, AgingTime: time.Minute, MACMoveHoldDown: -1})
	a, _ := s.AddPort(PortConfig{Name: "a", PVID: 10}, newSink(0))
	b, _ := s.AddPort(PortConfig{Name: "b", PVID: 10}, newSink(0))
	w := s.WatchFDB(100)
	defer w.Close()
	if pending(w) {
		t.Fatal("signalled before any change")
	}

	a.Input([]Frame{{Data: eth(Broadcast, mac(1), 0x88b5, 46)}})
	a.Input([]Frame{{Data: eth(Broadcast, mac(2), 0x88b5, 46)}})
	if !pending(w) {
		t.Fatal("no signal after two new entries")
	}
	if got := changedKeys(t, w); !slices.Equal(got, []FDBKey{{10, mac(1)}, {10, mac(2)}}) {
		t.Errorf("changes after learning = %v", got)
	}
	if p, ok := s.LookupFDB(10, mac(1)); !ok || p != "a" {
		t.Errorf("LookupFDB = %q, %v; want a", p, ok)
	}

	// A refresh is no change.
	clk.Advance(time.Second)
	a.Input([]Frame{{Data: eth(Broadcast, mac(1), 0x88b5, 46)}})
	if pending(w) {
		t.Error("a refresh signalled")
	}
	if keys, _ := w.Changes(); len(keys) != 0 {
		t.Errorf("a refresh reported %v", keys)
	}

	// A move, a static entry, a deletion, a flush.
	b.Input([]Frame{{Data: eth(Broadcast, mac(1), 0x88b5, 46)}})
	if got := changedKeys(t, w); !slices.Equal(got, []FDBKey{{10, mac(1)}}) {
		t.Errorf("changes after a move = %v", got)
	}
	if p, _ := s.LookupFDB(10, mac(1)); p != "b" {
		t.Errorf("after the move LookupFDB = %q; want b", p)
	}
	if err := s.AddStatic("a", 10, mac(3)); err != nil {
		t.Fatal(err)
	}
	if err := s.AddStatic("b", 10, mac(2)); err != nil { // replaces the learned one
		t.Fatal(err)
	}
	if got := changedKeys(t, w); !slices.Equal(got, []FDBKey{{10, mac(2)}, {10, mac(3)}}) {
		t.Errorf("changes after static entries = %v", got)
	}
	if err := s.DeleteStatic(10, mac(3)); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Flush("b", 0); n != 1 {
		t.Fatalf("flushed %d", n)
	}
	if got := changedKeys(t, w); !slices.Equal(got, []FDBKey{{10, mac(1)}, {10, mac(3)}}) {
		t.Errorf("changes after delete and flush = %v", got)
	}

	// Aging: the entry is gone to LookupFDB at once, and reported when
	// Expire removes it.
	a.Input([]Frame{{Data: eth(Broadcast, mac(4), 0x88b5, 46)}})
	w.Changes()
	clk.Advance(2 * time.Minute)
	if _, ok := s.LookupFDB(10, mac(4)); ok {
		t.Error("an aged entry is still live")
	}
	s.Expire()
	if got := changedKeys(t, w); !slices.Equal(got, []FDBKey{{10, mac(4)}}) {
		t.Errorf("changes after Expire = %v", got)
	}

	// A port's removal removes its entries.
	if err := s.RemovePort("b"); err != nil {
		t.Fatal(err)
	}
	if got := changedKeys(t, w); !slices.Equal(got, []FDBKey{{10, mac(2)}}) {
		t.Errorf("changes after the port went = %v", got)
	}
}

// Past its limit a watch forgets the keys and reports an overflow once;
// a closed watch hears nothing.
func TestFDBWatchBounds(t *testing.T) {
	s := New(Config{})
	a, _ := s.AddPort(PortConfig{Name: "a", PVID: 10, MACLimit: 100}, newSink(0))
	w := s.WatchFDB(3)
	w2 := s.WatchFDB(100)
	for i := range 5 {
		a.Input([]Frame{{Data: eth(Broadcast, mac(byte(i+1)), 0x88b5, 46)}})
	}
	if keys, over := w.Changes(); !over || len(keys) != 0 {
		t.Errorf("5 changes on a watch of 3: %v, overflow %v", keys, over)
	}
	if keys, over := w.Changes(); over || len(keys) != 0 {
		t.Errorf("after the overflow was read: %v, overflow %v", keys, over)
	}
	if keys, _ := w2.Changes(); len(keys) != 5 {
		t.Errorf("the other watch has %d keys; want 5", len(keys))
	}
	pending(w) // the signal of the five
	w.Close()
	a.Input([]Frame{{Data: eth(Broadcast, mac(9), 0x88b5, 46)}})
	if pending(w) {
		t.Error("a closed watch was signalled")
	}
	if keys, _ := w2.Changes(); len(keys) != 1 {
		t.Errorf("the open watch has %d keys; want 1", len(keys))
	}
	w2.Close()
}

// Changes read while writers add keys: every key is reported (once the
// writers are done), and nothing races (go test -race).
func TestFDBWatchConcurrent(t *testing.T) {
	s := New(Config{})
	if _, err := s.AddPort(PortConfig{Name: "a", PVID: 10}, newSink(0)); err != nil {
		t.Fatal(err)
	}
	w := s.WatchFDB(1 << 16)
	defer w.Close()
	const writers, each = 4, 500
	done := make(chan struct{})
	for g := range writers {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range each {
				s.AddStatic("a", 10, MAC{2, 0, 0, byte(g), byte(i >> 8), byte(i)})
			}
		}()
	}
	seen := map[FDBKey]bool{}
	read := func() {
		keys, over := w.Changes()
		if over {
			t.Fatal("overflow")
		}
		for _, k := range keys {
			seen[k] = true
		}
	}
	for n := 0; n < writers; {
		select {
		case <-done:
			n++
		case <-w.C():
			read()
		}
	}
	read()
	if len(seen) != writers*each {
		t.Errorf("%d keys reported; want %d", len(seen), writers*each)
	}
}
