package virtio_test

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/virtio"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

// needEventRef is vring_need_event written out with explicit wrap-around
// handling, as the reference for the table test.
func needEventRef(event, newIdx, old uint16) bool {
	// Is event in the half-open window [old, newIdx) modulo 2^16?
	dist := func(from, to uint16) uint32 { return uint32(to-from) & 0xffff }
	return dist(old, event) < dist(old, newIdx)
}

func TestNeedEvent(t *testing.T) {
	for _, tc := range []struct {
		event, newIdx, old uint16
		want               bool
	}{
		{0, 1, 0, true},         // first entry past event 0
		{1, 1, 0, false},        // driver wants a signal once idx passes 1
		{1, 2, 0, true},         // batch crossed it
		{5, 10, 6, false},       // event already behind old: signalled before
		{9, 10, 6, true},        // inside the window
		{10, 10, 6, false},      // at newIdx: not yet passed
		{65535, 1, 65534, true}, // wraps
		{0, 1, 65535, true},     // wraps, event at 0
		{2, 1, 65535, false},    // beyond the window after wrap
		{7, 7, 7, false},        // nothing new
	} {
		if got := virtio.NeedEvent(tc.event, tc.newIdx, tc.old); got != tc.want {
			t.Errorf("NeedEvent(%d, %d, %d) = %v; want %v", tc.event, tc.newIdx, tc.old, got, tc.want)
		}
		if ref := needEventRef(tc.event, tc.newIdx, tc.old); ref != tc.want {
			t.Errorf("reference(%d, %d, %d) = %v; table says %v", tc.event, tc.newIdx, tc.old, ref, tc.want)
		}
	}
	// Exhaustive over a window of values against the reference.
	for old := uint16(65530); old != 6; old++ {
		for n := uint16(0); n < 8; n++ {
			for ev := old - 3; ev != old+12; ev++ {
				if got, want := virtio.NeedEvent(ev, old+n, old), needEventRef(ev, old+n, old); got != want {
					t.Fatalf("NeedEvent(%d, %d, %d) = %v, reference %v", ev, old+n, old, got, want)
				}
			}
		}
	}
}

type countSignal struct{ n int }

func (c *countSignal) Signal() error { c.n++; return nil }

// useOne makes one chain available, pops it, returns it and flushes.
func useOne(t *testing.T, q *virtio.Queue, drv *virtiotest.Driver, head uint16) {
	t.Helper()
	drv.Push(head)
	c := mustPop(t, q)
	if err := q.AddUsed(c.Head, 0); err != nil {
		t.Fatal(err)
	}
	if err := q.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestNotifyEventIdx(t *testing.T) {
	q, drv := newQueue(t, 8, allRing)
	sig := &countSignal{}
	q.SetSignaler(sig)
	head := drv.AddChain(virtiotest.Buf{Len: 1, Write: true})

	useOne(t, q, drv, head) // used idx 1; first decision always signals
	if sig.n != 1 {
		t.Fatalf("signals after first use = %d, want 1", sig.n)
	}
	drv.SetUsedEvent(2)     // driver: interrupt me when used idx passes 2
	useOne(t, q, drv, head) // idx 2: event 2 not passed
	if sig.n != 1 {
		t.Fatalf("signals at idx 2 with used_event 2 = %d, want 1", sig.n)
	}
	useOne(t, q, drv, head) // idx 3: passed
	if sig.n != 2 {
		t.Fatalf("signals at idx 3 with used_event 2 = %d, want 2", sig.n)
	}
	// EVENT_IDX: the NO_INTERRUPT flag is ignored (§2.7.7.2).
	drv.SetAvailFlags(virtio.AvailFNoInterrupt)
	drv.SetUsedEvent(3)
	useOne(t, q, drv, head)
	if sig.n != 3 {
		t.Fatalf("signals with flags set under EVENT_IDX = %d, want 3", sig.n)
	}
	// Flush with nothing new does not signal.
	if err := q.Flush(); err != nil || sig.n != 3 {
		t.Fatalf("empty Flush signalled (%d) or failed (%v)", sig.n, err)
	}
}

func TestNotifyNoInterruptFlag(t *testing.T) {
	q, drv := newQueue(t, 8, 1<<virtio.FVersion1)
	sig := &countSignal{}
	q.SetSignaler(sig)
	head := drv.AddChain(virtiotest.Buf{Len: 1, Write: true})
	useOne(t, q, drv, head)
	if sig.n != 1 {
		t.Fatalf("signals = %d, want 1", sig.n)
	}
	drv.SetAvailFlags(virtio.AvailFNoInterrupt)
	useOne(t, q, drv, head)
	if sig.n != 1 {
		t.Fatalf("signals with NO_INTERRUPT = %d, want 1", sig.n)
	}
	drv.SetAvailFlags(0)
	useOne(t, q, drv, head)
	if sig.n != 2 {
		t.Fatalf("signals after clearing NO_INTERRUPT = %d, want 2", sig.n)
	}
}

func TestSignalError(t *testing.T) {
	q, drv := newQueue(t, 8, allRing)
	boom := errors.New("boom")
	q.SetSignaler(virtio.SignalFunc(func() error { return boom }))
	drv.Push(drv.AddChain(virtiotest.Buf{Len: 1, Write: true}))
	c := mustPop(t, q)
	_ = q.AddUsed(c.Head, 0)
	if err := q.Flush(); !errors.Is(err, boom) {
		t.Fatalf("Flush() = %v, want the signaler's error", err)
	}
}

func TestKickSuppression(t *testing.T) {
	t.Run("event idx", func(t *testing.T) {
		q, drv := newQueue(t, 8, allRing)
		head := drv.AddChain(virtiotest.Buf{Len: 1})
		drv.Push(head, head)
		mustPop(t, q)
		if more := q.EnableNotification(); !more {
			t.Fatal("EnableNotification() = false with a chain pending")
		}
		if drv.AvailEvent() != 1 {
			t.Fatalf("avail_event = %d, want 1", drv.AvailEvent())
		}
		mustPop(t, q)
		if more := q.EnableNotification(); more {
			t.Fatal("EnableNotification() = true on an empty ring")
		}
		if drv.AvailEvent() != 2 {
			t.Fatalf("avail_event = %d, want 2", drv.AvailEvent())
		}
	})
	t.Run("flags", func(t *testing.T) {
		q, drv := newQueue(t, 8, 1<<virtio.FVersion1)
		q.DisableNotification()
		if drv.UsedFlags() != virtio.UsedFNoNotify {
			t.Fatalf("used flags = %d after DisableNotification", drv.UsedFlags())
		}
		if q.EnableNotification() {
			t.Fatal("EnableNotification() = true on an empty ring")
		}
		if drv.UsedFlags() != 0 {
			t.Fatalf("used flags = %d after EnableNotification", drv.UsedFlags())
		}
	})
}

func TestEventFD(t *testing.T) {
	e, err := virtio.NewEventFD(true)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := e.Read(); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("Read() on empty non-blocking eventfd = %v, want EAGAIN", err)
	}
	if err := e.Signal(); err != nil {
		t.Fatal(err)
	}
	if err := e.Write(2); err != nil {
		t.Fatal(err)
	}
	if v, err := e.Read(); v != 3 || err != nil {
		t.Fatalf("Read() = %d, %v; want 3", v, err)
	}
	if e.FD() < 0 {
		t.Fatal("bad fd")
	}
}
