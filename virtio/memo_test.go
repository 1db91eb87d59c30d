package virtio_test

import (
	"errors"
	"sync"
	"testing"
	"unsafe"

	"github.com/hvnet/hvnet/virtio"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

// sameBytes reports whether a and b are the same host bytes.
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && cap(a) == cap(b) &&
		(len(a) == 0 || unsafe.SliceData(a) == unsafe.SliceData(b))
}

// Queue.Slice (through the queue's region memo) gives exactly what
// Memory.Slice gives, whichever region the memo holds: the same host
// bytes, or an error for a range outside one region, across two, or
// wrapping the address space.
func TestQueueSliceMatchesMemory(t *testing.T) {
	m, _, _ := twoRegions(t) // [0x2000,0x3000) and [0x3000,0x5000)
	q, err := virtio.NewQueue(8)
	if err != nil {
		t.Fatal(err)
	}
	_ = q.SetMemory(m)
	ranges := []struct{ gpa, n uint64 }{
		{0x2000, 0}, {0x2000, 1}, {0x2000, 0x1000}, {0x2000, 0x1001},
		{0x2fff, 1}, {0x2fff, 2}, {0x3000, 0x2000}, {0x3000, 0x2001},
		{0x4fff, 1}, {0x5000, 0}, {0x5000, 1}, {0x1fff, 1}, {0x1fff, 2},
		{0, 0}, {0, 1}, {0x3000, ^uint64(0)}, {0x3001, ^uint64(0) - 0x3000},
		{^uint64(0), 1}, {^uint64(0), 0}, {0x4000, 1 << 63},
	}
	for _, prime := range []uint64{0x2000, 0x3000, 0x4fff, 0x9000} {
		for _, r := range ranges {
			_, _ = q.Slice(prime, 1) // the memo now holds prime's region, if any
			want, werr := m.Slice(r.gpa, r.n)
			got, gerr := q.Slice(r.gpa, r.n)
			if (werr == nil) != (gerr == nil) || !sameBytes(got, want) {
				t.Errorf("memo at %#x: Slice(%#x, %#x) = (len %d, %v), Memory.Slice = (len %d, %v)",
					prime, r.gpa, r.n, len(got), gerr, len(want), werr)
			}
			var ae *virtio.AddrError
			if gerr != nil && !errors.As(gerr, &ae) {
				t.Errorf("Slice(%#x, %#x) error %T, want *AddrError", r.gpa, r.n, gerr)
			}
		}
	}
}

// A new memory table (vhost-user SET_MEM_TABLE) ends every use of the old
// one's regions: after SetMemory, the queue's lookups, the walk's checks
// and the slices the device writes through all see the new table only,
// whatever the memo held.
func TestQueueMemoNewMemory(t *testing.T) {
	drv := virtiotest.New(8, 1<<16)
	q, _ := virtio.NewQueue(8)
	if err := drv.Configure(q, allRing); err != nil {
		t.Fatal(err)
	}
	head := drv.AddChain(virtiotest.Buf{Len: 64, Write: true})
	buf := drv.BufAddr(head, 0)
	drv.Push(head)
	if c, err := q.Pop(); err != nil || c == nil {
		t.Fatalf("Pop() = %v, %v", c, err)
	}
	old, err := q.Slice(buf.Addr, 64) // the memo holds the old region
	if err != nil {
		t.Fatal(err)
	}
	raw := drv.Bytes(virtiotest.DefaultBase, 1<<16)

	// The same guest-physical layout in other host memory.
	moved := append([]byte(nil), raw...)
	m2, _ := virtio.NewMemory(virtio.Region{GPA: virtiotest.DefaultBase, Data: moved})
	if err := q.SetMemory(m2); err != nil {
		t.Fatal(err)
	}
	b, err := q.Slice(buf.Addr, 64)
	if err != nil || sameBytes(b, old) || unsafe.SliceData(b) != &moved[buf.Addr-virtiotest.DefaultBase] {
		t.Fatalf("after SetMemory, Slice gives the old region's bytes (%v)", err)
	}

	// A table without the buffer's memory: the walk's check fails where
	// the old region would have passed.
	cut := buf.Addr - virtiotest.DefaultBase // rings only, the buffers gone
	m3, _ := virtio.NewMemory(virtio.Region{GPA: virtiotest.DefaultBase, Data: moved[:cut]})
	if err := q.SetMemory(m3); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Slice(buf.Addr, 64); err == nil {
		t.Fatal("Slice of memory the new table lacks succeeded")
	}
	// Make the chain available again in the table the queue now reads.
	copy(moved, drv.Bytes(virtiotest.DefaultBase, cut))
	q.Rewind(1)
	c, err := q.Pop()
	var ae *virtio.AddrError
	if c == nil || !errors.As(err, &ae) {
		t.Fatalf("Pop() of a chain outside the new memory = %v, %v; want *AddrError", c, err)
	}
}

// Queues of different goroutines share one Memory; each keeps its own
// memo, so concurrent lookups are not a data race (run with -race).
func TestQueueMemoConcurrent(t *testing.T) {
	m, _, _ := twoRegions(t)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q, _ := virtio.NewQueue(8)
			_ = q.SetMemory(m)
			for i := range 1000 {
				gpa := uint64(0x2000 + (i*97+g*13)%0x3000)
				if _, err := q.Slice(gpa, 1); err != nil {
					t.Errorf("Slice(%#x) = %v", gpa, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
