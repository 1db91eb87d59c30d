package virtio_test

import (
	"errors"
	"testing"

	"github.com/hvnet/hvnet/virtio"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

const allRing = 1<<virtio.FEventIdx | 1<<virtio.FIndirectDesc | 1<<virtio.FVersion1

func newQueue(t testing.TB, size uint16, features uint64) (*virtio.Queue, *virtiotest.Driver) {
	t.Helper()
	drv := virtiotest.New(size, 1<<20)
	q, err := virtio.NewQueue(size)
	if err != nil {
		t.Fatal(err)
	}
	if err := drv.Configure(q, features); err != nil {
		t.Fatal(err)
	}
	return q, drv
}

func mustPop(t *testing.T, q *virtio.Queue) *virtio.Chain {
	t.Helper()
	c, err := q.Pop()
	if err != nil || c == nil {
		t.Fatalf("Pop() = %v, %v; want a chain", c, err)
	}
	return c
}

func TestPopEmpty(t *testing.T) {
	q, _ := newQueue(t, 8, allRing)
	if c, err := q.Pop(); c != nil || err != nil {
		t.Fatalf("Pop() on empty ring = %v, %v; want nil, nil", c, err)
	}
}

func TestPopReadableWritable(t *testing.T) {
	q, drv := newQueue(t, 8, allRing)
	head := drv.AddChain(
		virtiotest.Buf{Data: []byte("hello, ")},
		virtiotest.Buf{Data: []byte("world")},
		virtiotest.Buf{Len: 100, Write: true},
	)
	drv.Push(head)
	c := mustPop(t, q)
	if c.Head != head || len(c.Readable()) != 2 || len(c.Writable()) != 1 {
		t.Fatalf("chain head %d readable %d writable %d", c.Head, len(c.Readable()), len(c.Writable()))
	}
	if c.ReadableLen() != 12 || c.WritableLen() != 100 {
		t.Fatalf("lengths %d/%d, want 12/100", c.ReadableLen(), c.WritableLen())
	}
	got := make([]byte, 12)
	if n, err := c.ReadAt(q.Memory(), got, 0); n != 12 || err != nil || string(got) != "hello, world" {
		t.Fatalf("ReadAt = %q %d %v", got, n, err)
	}
	if n, _ := c.ReadAt(q.Memory(), got, 5); n != 7 {
		t.Fatalf("ReadAt(off 5) = %d bytes, want 7", n)
	}
	if n, err := c.WriteAt(q.Memory(), []byte("ok"), 98); n != 2 || err != nil {
		t.Fatalf("WriteAt = %d, %v", n, err)
	}
	if err := q.AddUsed(c.Head, 2); err != nil {
		t.Fatal(err)
	}
	if err := q.Flush(); err != nil {
		t.Fatal(err)
	}
	u, ok := drv.PopUsed()
	if !ok || u.ID != uint32(head) || u.Len != 2 {
		t.Fatalf("used = %+v %v", u, ok)
	}
	w := drv.BufAddr(head, 2)
	if string(drv.Bytes(w.Addr+98, 2)) != "ok" {
		t.Fatal("WriteAt did not reach guest memory")
	}
}

func TestPopIndirect(t *testing.T) {
	q, drv := newQueue(t, 8, allRing)
	head := drv.AddIndirect(
		virtiotest.Buf{Data: []byte("abc")},
		virtiotest.Buf{Len: 10, Write: true},
		virtiotest.Buf{Len: 20, Write: true},
	)
	drv.Push(head)
	c := mustPop(t, q)
	if c.Head != head || c.Len() != 3 || c.ReadableLen() != 3 || c.WritableLen() != 30 {
		t.Fatalf("indirect chain: head %d len %d r %d w %d", c.Head, c.Len(), c.ReadableLen(), c.WritableLen())
	}
}

func TestPopIndirectAfterDirect(t *testing.T) {
	q, drv := newQueue(t, 8, allRing)
	table := drv.Alloc(32)
	buf := drv.Alloc(64)
	drv.WriteDescAt(table, 0, virtiotest.Desc{Addr: buf, Len: 8, Flags: virtio.DescFNext, Next: 1})
	drv.WriteDescAt(table, 1, virtiotest.Desc{Addr: buf + 8, Len: 8, Flags: virtio.DescFWrite})
	drv.SetDesc(0, virtiotest.Desc{Addr: buf + 32, Len: 4, Flags: virtio.DescFNext, Next: 1})
	drv.SetDesc(1, virtiotest.Desc{Addr: table, Len: 32, Flags: virtio.DescFIndirect})
	drv.Push(0)
	c := mustPop(t, q)
	if c.Len() != 3 || len(c.Readable()) != 2 {
		t.Fatalf("chain len %d readable %d, want 3, 2", c.Len(), len(c.Readable()))
	}
}

// faultCase sets up a hostile ring and expects Pop to fail with a fault.
func expectFault(t *testing.T, q *virtio.Queue, check func(error) bool) {
	t.Helper()
	c, err := q.Pop()
	if c != nil || !virtio.IsFault(err) || !check(err) {
		t.Fatalf("Pop() = %v, %v; want a fault of the right kind", c, err)
	}
	// The queue stays broken.
	if _, err2 := q.Pop(); err2 != err {
		t.Fatalf("second Pop() = %v, want the same fault %v", err2, err)
	}
	if q.Broken() != err {
		t.Fatalf("Broken() = %v", q.Broken())
	}
}

func expectChainError(t *testing.T, q *virtio.Queue, head uint16, check func(error) bool) {
	t.Helper()
	c, err := q.Pop()
	if c == nil || err == nil || virtio.IsFault(err) || !check(err) {
		t.Fatalf("Pop() = %v, %v; want the chain and a chain error", c, err)
	}
	if c.Head != head {
		t.Fatalf("bad chain head = %d, want %d", c.Head, head)
	}
	if err := q.AddUsed(c.Head, 0); err != nil {
		t.Fatal(err)
	}
	if q.Broken() != nil {
		t.Fatalf("queue broken by a chain error: %v", q.Broken())
	}
}

func is(target error) func(error) bool { return func(e error) bool { return errors.Is(e, target) } }

func as[T error]() func(error) bool {
	return func(e error) bool { var t T; return errors.As(e, &t) }
}

func TestDescriptorLoop(t *testing.T) {
	q, drv := newQueue(t, 8, allRing)
	buf := drv.Alloc(16)
	drv.SetDesc(0, virtiotest.Desc{Addr: buf, Len: 1, Flags: virtio.DescFNext, Next: 1})
	drv.SetDesc(1, virtiotest.Desc{Addr: buf, Len: 1, Flags: virtio.DescFNext, Next: 0})
	drv.Push(0)
	expectFault(t, q, is(virtio.ErrDescLoop))
}

func TestDescriptorSelfLoop(t *testing.T) {
	q, drv := newQueue(t, 4, allRing)
	drv.SetDesc(3, virtiotest.Desc{Addr: drv.Alloc(1), Len: 1, Flags: virtio.DescFNext, Next: 3})
	drv.Push(3)
	expectFault(t, q, is(virtio.ErrDescLoop))
}

func TestIndirectLoop(t *testing.T) {
	q, drv := newQueue(t, 8, allRing)
	table := drv.Alloc(32)
	drv.WriteDescAt(table, 0, virtiotest.Desc{Addr: table, Len: 1, Flags: virtio.DescFNext, Next: 1})
	drv.WriteDescAt(table, 1, virtiotest.Desc{Addr: table, Len: 1, Flags: virtio.DescFNext, Next: 0})
	drv.SetDesc(0, virtiotest.Desc{Addr: table, Len: 32, Flags: virtio.DescFIndirect})
	drv.Push(0)
	expectFault(t, q, is(virtio.ErrDescLoop))
}

func TestNextOutOfRange(t *testing.T) {
	q, drv := newQueue(t, 8, allRing)
	drv.SetDesc(0, virtiotest.Desc{Addr: drv.Alloc(1), Len: 1, Flags: virtio.DescFNext, Next: 8})
	drv.Push(0)
	expectFault(t, q, func(err error) bool {
		var de *virtio.DescIndexError
		return errors.As(err, &de) && de.Index == 8 && de.TableLen == 8
	})
}

func TestHeadOutOfRange(t *testing.T) {
	q, drv := newQueue(t, 8, allRing)
	drv.Push(9)
	expectFault(t, q, as[*virtio.DescIndexError]())
}

func TestAvailIdxJump(t *testing.T) {
	q, drv := newQueue(t, 8, allRing)
	drv.SetAvailIdx(9)
	expectFault(t, q, func(err error) bool {
		var ae *virtio.InvalidAvailIdxError
		return errors.As(err, &ae) && ae.QueueSize == 8 && ae.Reported == 9 && ae.AvailIdx == 9
	})
	if _, err := q.Pending(); !virtio.IsFault(err) {
		t.Fatalf("Pending() after fault = %v", err)
	}
	// Reset clears the fault.
	q.Reset()
	if err := drv.Configure(q, allRing); err != nil {
		t.Fatal(err)
	}
	drv.SetAvailIdx(0)
	if c, err := q.Pop(); c != nil || err != nil {
		t.Fatalf("Pop after reset = %v, %v", c, err)
	}
}

func TestNestedIndirect(t *testing.T) {
	q, drv := newQueue(t, 8, allRing)
	inner := drv.Alloc(16)
	drv.WriteDescAt(inner, 0, virtiotest.Desc{Addr: drv.Alloc(4), Len: 4})
	outer := drv.Alloc(16)
	drv.WriteDescAt(outer, 0, virtiotest.Desc{Addr: inner, Len: 16, Flags: virtio.DescFIndirect})
	drv.SetDesc(0, virtiotest.Desc{Addr: outer, Len: 16, Flags: virtio.DescFIndirect})
	drv.Push(0)
	expectFault(t, q, is(virtio.ErrNestedIndirect))
}

func TestIndirectWithNext(t *testing.T) {
	q, drv := newQueue(t, 8, allRing)
	table := drv.Alloc(16)
	drv.WriteDescAt(table, 0, virtiotest.Desc{Addr: drv.Alloc(4), Len: 4})
	drv.SetDesc(0, virtiotest.Desc{Addr: table, Len: 16, Flags: virtio.DescFIndirect | virtio.DescFNext, Next: 1})
	drv.Push(0)
	expectFault(t, q, is(virtio.ErrIndirectNext))
}

func TestIndirectBadLength(t *testing.T) {
	for _, l := range []uint32{0, 15, 17, 16 * (virtio.MaxQueueSize + 1)} {
		q, drv := newQueue(t, 8, allRing)
		drv.SetDesc(0, virtiotest.Desc{Addr: drv.Alloc(32), Len: l, Flags: virtio.DescFIndirect})
		drv.Push(0)
		expectFault(t, q, func(err error) bool {
			var ie *virtio.IndirectLenError
			return errors.As(err, &ie) && ie.Len == l
		})
	}
}

func TestIndirectNotNegotiated(t *testing.T) {
	q, drv := newQueue(t, 8, 1<<virtio.FVersion1)
	drv.Push(drv.AddIndirect(virtiotest.Buf{Data: []byte("x")}))
	expectFault(t, q, is(virtio.ErrIndirectNotNegotiated))
}

func TestIndirectNextOutOfRange(t *testing.T) {
	q, drv := newQueue(t, 8, allRing)
	table := drv.Alloc(32)
	drv.WriteDescAt(table, 0, virtiotest.Desc{Addr: table, Len: 1, Flags: virtio.DescFNext, Next: 2})
	drv.SetDesc(0, virtiotest.Desc{Addr: table, Len: 32, Flags: virtio.DescFIndirect})
	drv.Push(0)
	expectFault(t, q, func(err error) bool {
		var de *virtio.DescIndexError
		return errors.As(err, &de) && de.Indirect && de.Index == 2 && de.TableLen == 2
	})
}

func TestAddressOutsideMemory(t *testing.T) {
	q, drv := newQueue(t, 8, allRing)
	for _, b := range []virtiotest.Buf{
		{Addr: 0x10, Len: 4}, // below guest memory
		{Addr: virtiotest.DefaultBase + 1<<20 - 2, Len: 4}, // straddles the end
		{Addr: ^uint64(0) - 1, Len: 4},                     // wraps
	} {
		head := drv.AddChain(virtiotest.Buf{Data: []byte("ok")}, b)
		drv.Push(head)
		expectChainError(t, q, head, as[*virtio.AddrError]())
	}
	// An indirect table outside memory is a bad chain too.
	drv.SetDesc(7, virtiotest.Desc{Addr: 1 << 40, Len: 16, Flags: virtio.DescFIndirect})
	drv.Push(7)
	expectChainError(t, q, 7, as[*virtio.AddrError]())
}

func TestReadableAfterWritable(t *testing.T) {
	q, drv := newQueue(t, 8, allRing)
	head := drv.AddChain(virtiotest.Buf{Len: 4, Write: true}, virtiotest.Buf{Data: []byte("late")})
	drv.Push(head)
	expectChainError(t, q, head, is(virtio.ErrReadAfterWrite))
}

func TestChainByteCap(t *testing.T) {
	q, drv := newQueue(t, 8, allRing)
	q.SetMaxChainBytes(100)
	head := drv.AddChain(virtiotest.Buf{Len: 60}, virtiotest.Buf{Len: 60})
	drv.Push(head)
	expectChainError(t, q, head, func(err error) bool {
		var ce *virtio.ChainLenError
		return errors.As(err, &ce) && ce.Len == 120 && ce.Max == 100
	})
}

func TestChainTooLong(t *testing.T) {
	// A 16-entry indirect table on a queue of 8: longer than the queue size.
	q, drv := newQueue(t, 8, allRing)
	bufs := make([]virtiotest.Buf, 16)
	for i := range bufs {
		bufs[i] = virtiotest.Buf{Len: 1}
	}
	drv.Push(drv.AddIndirect(bufs...))
	expectFault(t, q, is(virtio.ErrDescLoop))
}

func TestRingValidation(t *testing.T) {
	drv := virtiotest.New(8, 1<<16)
	for _, tc := range []struct {
		name              string
		desc, avail, used uint64
	}{
		{"desc misaligned", drv.Desc + 8, drv.Avail, drv.Used},
		{"avail misaligned", drv.Desc, drv.Avail + 1, drv.Used},
		{"used misaligned", drv.Desc, drv.Avail, drv.Used + 2},
		{"desc outside", 0, drv.Avail, drv.Used},
		{"used past end", drv.Desc, drv.Avail, virtiotest.DefaultBase + 1<<16 - 16},
	} {
		q, _ := virtio.NewQueue(8)
		_ = q.SetMemory(drv.Mem)
		_ = q.SetSize(8)
		_ = q.SetAddrs(tc.desc, tc.avail, tc.used)
		var re *virtio.RingAddrError
		if err := q.Enable(); !errors.As(err, &re) {
			t.Errorf("%s: Enable() = %v, want *RingAddrError", tc.name, err)
		}
		if q.Ready() {
			t.Errorf("%s: queue ready after failed Enable", tc.name)
		}
	}
	q, _ := virtio.NewQueue(8)
	for _, n := range []uint16{0, 3, 16} {
		if err := q.SetSize(n); err == nil {
			t.Errorf("SetSize(%d) succeeded", n)
		}
	}
	if _, err := virtio.NewQueue(100); err == nil {
		t.Error("NewQueue(100) succeeded")
	}
}

func TestNotReady(t *testing.T) {
	q, _ := virtio.NewQueue(8)
	if _, err := q.Pop(); !errors.Is(err, virtio.ErrQueueNotReady) {
		t.Fatalf("Pop() on disabled queue = %v", err)
	}
	if err := q.AddUsed(0, 0); !errors.Is(err, virtio.ErrQueueNotReady) {
		t.Fatalf("AddUsed on disabled queue = %v", err)
	}
	q2, _ := newQueue(t, 8, allRing)
	if err := q2.SetSize(4); !errors.Is(err, virtio.ErrQueueEnabled) {
		t.Fatalf("SetSize on enabled queue = %v", err)
	}
}

func TestRewind(t *testing.T) {
	q, drv := newQueue(t, 8, allRing)
	a := drv.AddChain(virtiotest.Buf{Len: 1})
	b := drv.AddChain(virtiotest.Buf{Len: 2})
	drv.Push(a, b)
	mustPop(t, q)
	mustPop(t, q)
	q.Rewind(2)
	if c := mustPop(t, q); c.Head != a {
		t.Fatalf("after Rewind(2) Pop head = %d, want %d", c.Head, a)
	}
}

func TestUsedIndexWraps(t *testing.T) {
	q, drv := newQueue(t, 4, allRing)
	head := drv.AddChain(virtiotest.Buf{Len: 1, Write: true})
	for i := 0; i < 70000; i++ {
		drv.Push(head)
		c := mustPop(t, q)
		if err := q.AddUsed(c.Head, uint32(i)); err != nil {
			t.Fatal(err)
		}
		if err := q.Flush(); err != nil {
			t.Fatal(err)
		}
		u, ok := drv.PopUsed()
		if !ok || u.Len != uint32(i) {
			t.Fatalf("iteration %d: used %+v %v", i, u, ok)
		}
	}
}

func TestUsedRingDirtyLog(t *testing.T) {
	q, drv := newQueue(t, 8, allRing)
	log := virtio.NewDirtyLog(1 << 10)
	if err := q.SetMemory(drv.Mem.WithLog(log)); err != nil {
		t.Fatal(err)
	}
	drv.Push(drv.AddChain(virtiotest.Buf{Len: 1, Write: true}))
	c := mustPop(t, q)
	_ = q.AddUsed(c.Head, 1)
	_ = q.Flush()
	if !log.Dirty(drv.Used / virtio.PageSize) {
		t.Fatal("used ring page not marked dirty")
	}
	if log.Dirty(drv.Desc / virtio.PageSize) {
		t.Fatal("descriptor table page marked dirty; the device never writes it")
	}
}

// AddUsedRead is AddUsed(h, 0) for each head: the same used ring bytes and
// index, across the ring's wrap, and at a head out of range the same
// error with the entries before it staged.
func TestAddUsedRead(t *testing.T) {
	for _, heads := range [][]uint16{{}, {3}, {0, 1, 2, 3, 4, 5, 6, 7}, {7, 7, 2, 9, 1}, {5, 4, 3, 2, 1, 0, 7, 6, 5, 4, 3}} {
		qa, da := newQueue(t, 8, allRing)
		qb, db := newQueue(t, 8, allRing)
		for _, q := range []*virtio.Queue{qa, qb} { // start mid-ring, so that it wraps
			for range 5 {
				_ = q.AddUsed(0, 0)
			}
			q.PublishUsed()
		}
		var errA error
		for _, h := range heads {
			if errA = qa.AddUsed(h, 0); errA != nil {
				break
			}
		}
		errB := qb.AddUsedRead(heads)
		if (errA == nil) != (errB == nil) || errA != nil && errA.Error() != errB.Error() {
			t.Fatalf("heads %v: AddUsed loop %v, AddUsedRead %v", heads, errA, errB)
		}
		qa.PublishUsed()
		qb.PublishUsed()
		ra, rb := da.Bytes(da.Used, 4+8*8), db.Bytes(db.Used, 4+8*8)
		if string(ra) != string(rb) {
			t.Fatalf("heads %v: used rings differ:\n% x\n% x", heads, ra, rb)
		}
	}
}
