package virtio_test

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unsafe"

	"github.com/hvnet/hvnet/virtio"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

// PopInto takes a chain of one buffer in the region of the last without
// the walk; whatever the driver wrote, it must give what the walk gives.
// Two queues over two drivers with the same random tables and rings
// (mostly one-descriptor chains: readable, writable, zero-length, at the
// end of memory, outside it, too long for the queue's chain bound; some
// with NEXT or INDIRECT) pop
// side by side, one with the one-buffer path off: the same chains (head,
// buffers, lengths, the first buffer's host bytes), the same errors, in
// the same order, a fault at the same pop. The first queue also warms
// (Queue.Warm) the chains ahead now and then, which must change nothing.
func TestPopOneAgreesWithWalk(t *testing.T) {
	const size, memSize = 8, 1 << 16
	rng := rand.New(rand.NewPCG(1, 2))
	fast, slow := 0, 0
	for iter := range 20000 {
		type side struct {
			drv *virtiotest.Driver
			q   *virtio.Queue
		}
		var sides [2]side
		maxBytes := uint64(1<<32 - 1)
		if rng.IntN(2) == 0 {
			maxBytes = uint64(rng.IntN(2048))
		}
		for i := range sides {
			drv := virtiotest.New(size, memSize)
			q, err := virtio.NewQueue(size)
			if err != nil {
				t.Fatal(err)
			}
			if err := drv.Configure(q, allRing); err != nil {
				t.Fatal(err)
			}
			q.SetMaxChainBytes(maxBytes)
			if i == 1 {
				virtio.WalkAll(q)
			}
			sides[i] = side{drv, q}
		}
		area := sides[0].drv.Alloc(1 << 12)
		if a := sides[1].drv.Alloc(1 << 12); a != area {
			t.Fatalf("drivers allocate differently: %#x, %#x", area, a)
		}
		for d := uint16(0); d < size; d++ {
			desc := virtiotest.Desc{Addr: area + uint64(rng.IntN(1<<12)), Len: uint32(rng.IntN(2048))}
			switch rng.IntN(12) {
			case 0:
				desc.Flags = virtio.DescFNext
				desc.Next = uint16(rng.IntN(size + 2))
			case 1:
				desc.Flags = virtio.DescFIndirect
				desc.Len = 16 * uint32(rng.IntN(3))
			case 2:
				desc.Len = 0
			case 3:
				desc.Addr = area + 1<<12 - uint64(rng.IntN(16)) // at the end of the buffers
			case 4:
				desc.Addr = virtiotest.DefaultBase + memSize - uint64(rng.IntN(64)) // across the end of memory
			case 5:
				desc.Addr = rng.Uint64() // anywhere
			case 6:
				desc.Len = rng.Uint32() // too long
			}
			if rng.IntN(2) == 0 {
				desc.Flags |= virtio.DescFWrite
			}
			if rng.IntN(20) == 0 {
				desc.Flags = uint16(rng.Uint32())
			}
			for _, s := range sides {
				s.drv.SetDesc(d, desc)
			}
		}
		n := uint16(1 + rng.IntN(2*size))
		for i := range uint64(size) {
			h := uint16(rng.IntN(size))
			if rng.IntN(30) == 0 {
				h = uint16(rng.Uint32())
			}
			for _, s := range sides {
				binary.LittleEndian.PutUint16(s.drv.Bytes(s.drv.Avail+4+2*i, 2), h)
			}
		}
		for _, s := range sides {
			s.drv.SetAvailIdx(n)
		}
		for pop := 0; pop < int(n)+1; pop++ {
			var got [2]string
			if rng.IntN(3) == 0 {
				// A hint: it must change nothing Pop then gives.
				sides[0].q.Warm(rng.IntN(size), rng.IntN(2*size))
			}
			for i, s := range sides {
				c, err := s.q.Pop()
				got[i] = describeChain(c, err, s.drv.Bytes(virtiotest.DefaultBase, memSize))
				if i == 0 && c != nil && err == nil && c.Len() == 1 {
					fast++
				}
				if c != nil {
					_ = s.q.AddUsed(c.Head, 0)
				}
				s.q.PublishUsed()
				got[i] += fmt.Sprintf(" used idx %d", s.drv.UsedIdx())
			}
			if got[0] != got[1] {
				t.Fatalf("iteration %d, pop %d:\none-buffer path: %s\nwalk:            %s", iter, pop, got[0], got[1])
			}
			if strings.HasPrefix(got[0], "none") || strings.HasPrefix(got[0], "fault") {
				break
			}
			slow++
		}
	}
	if fast < 10000 || slow < 20000 {
		t.Errorf("%d pops, %d of one good buffer: the test does not exercise the path", slow, fast)
	}
}

// describeChain prints c, its First as an offset into mem.
func describeChain(c *virtio.Chain, err error, mem []byte) string {
	if c == nil {
		if err != nil {
			return fmt.Sprintf("fault %v", err)
		}
		return "none"
	}
	if err != nil { // a malformed chain: only its head is for use
		return fmt.Sprintf("head %d err %v", c.Head, err)
	}
	s := fmt.Sprintf("head %d err %v readable %v (%d) writable %v (%d)", c.Head, err, c.Readable(), c.ReadableLen(), c.Writable(), c.WritableLen())
	if f := c.First(); f != nil {
		off := uintptr(unsafe.Pointer(unsafe.SliceData(f))) - uintptr(unsafe.Pointer(unsafe.SliceData(mem)))
		s += fmt.Sprintf(" first %d bytes (cap %d) at %#x", len(f), cap(f), off)
	} else {
		s += " first nil"
	}
	return s
}
