package virtio_test

import (
	"encoding/binary"
	"testing"

	"github.com/hvnet/hvnet/virtio"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

// FuzzChainWalk fills a queue of 8 with driver-controlled descriptors, ring
// entries, available index and buffer bytes (possible indirect tables), then
// pops everything. The device must never panic, never return a chain that
// breaks its invariants, and must stay broken after a fault.
func FuzzChainWalk(f *testing.F) {
	seed := func(descs []virtiotest.Desc, ring []uint16, idx uint16, extra []byte) []byte {
		b := make([]byte, 8*16+8*2+2)
		for i, d := range descs {
			binary.LittleEndian.PutUint64(b[16*i:], d.Addr)
			binary.LittleEndian.PutUint32(b[16*i+8:], d.Len)
			binary.LittleEndian.PutUint16(b[16*i+12:], d.Flags)
			binary.LittleEndian.PutUint16(b[16*i+14:], d.Next)
		}
		for i, h := range ring {
			binary.LittleEndian.PutUint16(b[128+2*i:], h)
		}
		binary.LittleEndian.PutUint16(b[144:], idx)
		return append(b, extra...)
	}
	f.Add(seed([]virtiotest.Desc{{Addr: 0, Len: 10, Flags: 1, Next: 1}, {Addr: 100, Len: 20, Flags: 2}}, []uint16{0}, 1, nil))
	f.Add(seed([]virtiotest.Desc{{Addr: 0, Len: 1, Flags: 1, Next: 0}}, []uint16{0}, 1, nil))
	f.Add(seed([]virtiotest.Desc{{Addr: 0, Len: 32, Flags: 4}}, []uint16{0}, 1,
		seed([]virtiotest.Desc{{Addr: 64, Len: 8, Flags: 1, Next: 1}, {Addr: 80, Len: 8, Flags: 2}}, nil, 0, nil)[:32]))
	f.Add(seed(nil, []uint16{9}, 1, nil))
	f.Add(seed(nil, nil, 200, nil))

	f.Fuzz(func(t *testing.T, data []byte) {
		const size = 8
		drv := virtiotest.New(size, 1<<16)
		q, err := virtio.NewQueue(size)
		if err != nil {
			t.Fatal(err)
		}
		if err := drv.Configure(q, allRing); err != nil {
			t.Fatal(err)
		}
		area := drv.Alloc(1 << 12)
		take := func(n int) []byte {
			if len(data) < n {
				p := make([]byte, n)
				copy(p, data)
				data = nil
				return p
			}
			p := data[:n]
			data = data[n:]
			return p
		}
		for i := uint16(0); i < size; i++ {
			e := take(16)
			addr := binary.LittleEndian.Uint64(e)
			if addr>>63 == 0 { // mostly inside the buffer area
				addr = area + addr%(1<<12)
			}
			drv.SetDesc(i, virtiotest.Desc{
				Addr:  addr,
				Len:   binary.LittleEndian.Uint32(e[8:]) % (1 << 13),
				Flags: binary.LittleEndian.Uint16(e[12:]),
				Next:  binary.LittleEndian.Uint16(e[14:]) % 16,
			})
		}
		ring := take(16)
		for i := uint64(0); i < size; i++ {
			copy(drv.Bytes(drv.Avail+4+2*i, 2), ring[2*i:])
		}
		drv.SetAvailIdx(binary.LittleEndian.Uint16(take(2)))
		copy(drv.Bytes(area, 1<<12), data)

		for i := 0; i < 2*size; i++ {
			c, err := q.Pop()
			if c == nil && err == nil {
				return
			}
			if c == nil {
				if !virtio.IsFault(err) {
					t.Fatalf("nil chain with non-fault error %v", err)
				}
				if _, err2 := q.Pop(); err2 != err {
					t.Fatalf("queue not broken after fault: %v then %v", err, err2)
				}
				return
			}
			if c.Head >= size || c.Len() > size {
				t.Fatalf("chain head %d len %d", c.Head, c.Len())
			}
			if err == nil {
				var r, w uint64
				for _, d := range c.Readable() {
					if d.Writable() {
						t.Fatal("writable descriptor in readable part")
					}
					r += uint64(d.Len)
				}
				for _, d := range c.Writable() {
					if !d.Writable() {
						t.Fatal("readable descriptor in writable part")
					}
					w += uint64(d.Len)
					if err := q.Memory().Check(d.Addr, uint64(d.Len)); err != nil {
						t.Fatalf("chain buffer not in memory: %v", err)
					}
				}
				if r != c.ReadableLen() || w != c.WritableLen() {
					t.Fatal("length bookkeeping wrong")
				}
				// First is the first buffer's memory when it lies in one
				// region: what Memory.Slice gives for it.
				if c.Len() > 0 {
					d := append(c.Readable(), c.Writable()...)[0]
					want, err := q.Memory().Slice(d.Addr, uint64(d.Len))
					got := c.First()
					if err != nil && got != nil || err == nil && (len(got) != len(want) || len(got) > 0 && &got[0] != &want[0]) {
						t.Fatalf("First() = %d bytes, Memory.Slice %d bytes, %v", len(got), len(want), err)
					}
				}
			}
			if err := q.AddUsed(c.Head, 0); err != nil {
				t.Fatal(err)
			}
		}
		_ = q.Flush()
	})
}
