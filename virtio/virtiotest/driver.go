// Package virtiotest is a driver-side mock of a split virtqueue, in the manner
// of rust-vmm's MockSplitQueue: it lays out a descriptor table, an available
// ring and a used ring in a test guest Memory, lets tests build descriptor
// chains (readable, writable, indirect, or deliberately broken), publishes
// the available index, and reads back used entries.
//
// Use it from tests and benchmarks only: its methods panic on misuse (a full
// buffer area), which is a bug in the test, not in the device.
package virtiotest

import (
	"encoding/binary"
	"fmt"

	"github.com/hvnet/hvnet/virtio"
)

// DefaultBase is the guest-physical address of the mock's memory: not zero,
// so that code confusing guest and host offsets shows up.
const DefaultBase = 0x10_0000

// Desc is a raw descriptor as the driver writes it.
type Desc struct {
	Addr  uint64
	Len   uint32
	Flags uint16
	Next  uint16
}

// Buf describes one buffer of a chain to build.
type Buf struct {
	// Data is the contents of a readable buffer.
	Data []byte
	// Len is the length of a writable buffer (or of a readable one when
	// Data is nil); ignored when Data is set.
	Len uint32
	// Write makes the buffer device-writable.
	Write bool
	// Addr, if non-zero, is used as the buffer address instead of
	// allocating one (for out-of-memory addresses); nothing is copied.
	Addr uint64
}

// Driver is the driver side of one virtqueue in its own guest memory.
type Driver struct {
	Mem   *virtio.Memory
	Base  uint64
	Size  uint16
	Desc  uint64 // GPA of the descriptor table
	Avail uint64 // GPA of the available ring
	Used  uint64 // GPA of the used ring

	raw       []byte
	dataStart uint64
	next      uint64 // next free data byte (GPA)
	nextDesc  uint16
	availIdx  uint16
	lastUsed  uint16
}

// New returns a driver for a queue of size entries with memBytes of guest
// memory at DefaultBase, rings first, buffers after.
func New(size uint16, memBytes int) *Driver {
	raw := make([]byte, memBytes)
	mem, err := virtio.NewMemory(virtio.Region{GPA: DefaultBase, Data: raw})
	if err != nil {
		panic(err)
	}
	return NewIn(mem, raw, DefaultBase, size)
}

// NewIn returns a driver whose rings and buffers live in raw, which backs
// guest memory mem at gpa (several drivers may share one Memory by using
// disjoint parts of it).
func NewIn(mem *virtio.Memory, raw []byte, gpa uint64, size uint16) *Driver {
	d := &Driver{Mem: mem, Base: gpa, Size: size, raw: raw}
	n := uint64(size)
	d.Desc = gpa
	d.Avail = d.Desc + 16*n
	d.Used = alignUp(d.Avail+6+2*n, 4096)
	d.dataStart = alignUp(d.Used+6+8*n, 4096)
	d.next = d.dataStart
	if d.dataStart > gpa+uint64(len(raw)) {
		panic(fmt.Sprintf("virtiotest: %d bytes cannot hold a queue of %d", len(raw), size))
	}
	return d
}

func alignUp(v, a uint64) uint64 { return (v + a - 1) &^ (a - 1) }

// Configure sets up q with this driver's memory and rings, applies features
// (EVENT_IDX, INDIRECT_DESC) and enables it.
func (d *Driver) Configure(q *virtio.Queue, features uint64) error {
	if err := q.SetMemory(d.Mem); err != nil {
		return err
	}
	if err := q.SetSize(d.Size); err != nil {
		return err
	}
	if err := q.SetAddrs(d.Desc, d.Avail, d.Used); err != nil {
		return err
	}
	if err := q.SetFeatures(features); err != nil {
		return err
	}
	return q.Enable()
}

// Alloc reserves n bytes of buffer space (16-byte aligned) and returns its
// GPA.
func (d *Driver) Alloc(n uint64) uint64 {
	gpa := alignUp(d.next, 16)
	if gpa+n > d.Base+uint64(len(d.raw)) {
		panic(fmt.Sprintf("virtiotest: out of buffer space allocating %d bytes", n))
	}
	d.next = gpa + n
	return gpa
}

// FreeAll forgets every buffer allocation.
func (d *Driver) FreeAll() { d.next = d.dataStart }

// Bytes returns the guest bytes [gpa, gpa+n) (aliasing guest memory).
func (d *Driver) Bytes(gpa, n uint64) []byte {
	b, err := d.Mem.Slice(gpa, n)
	if err != nil {
		panic(err)
	}
	return b
}

func (d *Driver) put16(gpa uint64, v uint16) {
	virtio.Store16(d.Bytes(gpa, 2), v)
}

func (d *Driver) get16(gpa uint64) uint16 { return virtio.Load16(d.Bytes(gpa, 2)) }

// WriteDescAt writes a raw descriptor into the table at gpa (the main table
// or an indirect one) at index i.
func (d *Driver) WriteDescAt(table uint64, i uint16, desc Desc) {
	b := d.Bytes(table+16*uint64(i), 16)
	binary.LittleEndian.PutUint64(b[0:], desc.Addr)
	binary.LittleEndian.PutUint32(b[8:], desc.Len)
	binary.LittleEndian.PutUint16(b[12:], desc.Flags)
	binary.LittleEndian.PutUint16(b[14:], desc.Next)
}

// SetDesc writes descriptor i of the main table.
func (d *Driver) SetDesc(i uint16, desc Desc) { d.WriteDescAt(d.Desc, i, desc) }

// bufDescs turns bufs into linked descriptors at indices idx[i].
func (d *Driver) bufDescs(table uint64, bufs []Buf, idx func(i int) uint16) {
	for i, b := range bufs {
		var desc Desc
		switch {
		case b.Addr != 0:
			desc.Addr, desc.Len = b.Addr, b.Len
		case b.Data != nil:
			desc.Addr, desc.Len = d.Alloc(uint64(len(b.Data))), uint32(len(b.Data))
			copy(d.Bytes(desc.Addr, uint64(len(b.Data))), b.Data)
		default:
			desc.Addr, desc.Len = d.Alloc(uint64(b.Len)), b.Len
		}
		if b.Write {
			desc.Flags |= virtio.DescFWrite
		}
		if i+1 < len(bufs) {
			desc.Flags |= virtio.DescFNext
			desc.Next = idx(i + 1)
		}
		d.WriteDescAt(table, idx(i), desc)
	}
}

// AddChain writes bufs as a chain in the main table (taking descriptors
// round-robin) and returns its head. It does not make it available: Push.
func (d *Driver) AddChain(bufs ...Buf) uint16 {
	first := d.nextDesc
	d.nextDesc += uint16(len(bufs))
	mask := d.Size - 1
	d.bufDescs(d.Desc, bufs, func(i int) uint16 { return (first + uint16(i)) & mask })
	return first & mask
}

// AddIndirect writes bufs into a new indirect table and one main-table
// descriptor pointing at it, and returns that descriptor's index.
func (d *Driver) AddIndirect(bufs ...Buf) uint16 {
	table := d.Alloc(16 * uint64(len(bufs)))
	d.bufDescs(table, bufs, func(i int) uint16 { return uint16(i) })
	head := d.nextDesc & (d.Size - 1)
	d.nextDesc++
	d.SetDesc(head, Desc{Addr: table, Len: uint32(16 * len(bufs)), Flags: virtio.DescFIndirect})
	return head
}

// Push makes the chains available: ring entries, then the index.
func (d *Driver) Push(heads ...uint16) {
	for _, h := range heads {
		slot := uint64(d.availIdx & (d.Size - 1))
		d.put16(d.Avail+4+2*slot, h)
		d.availIdx++
	}
	d.put16(d.Avail+2, d.availIdx)
}

// SetAvailIdx writes the available index as is (for hostile tests).
func (d *Driver) SetAvailIdx(v uint16) {
	d.availIdx = v
	d.put16(d.Avail+2, v)
}

// AvailIdx returns the driver's available index.
func (d *Driver) AvailIdx() uint16 { return d.availIdx }

// SetAvailFlags writes the available ring flags (VIRTQ_AVAIL_F_NO_INTERRUPT).
func (d *Driver) SetAvailFlags(v uint16) { d.put16(d.Avail, v) }

// SetUsedEvent writes used_event (EVENT_IDX).
func (d *Driver) SetUsedEvent(v uint16) { d.put16(d.Avail+4+2*uint64(d.Size), v) }

// AvailEvent reads avail_event, written by the device (EVENT_IDX).
func (d *Driver) AvailEvent() uint16 { return d.get16(d.Used + 4 + 8*uint64(d.Size)) }

// UsedFlags reads the used ring flags (VIRTQ_USED_F_NO_NOTIFY).
func (d *Driver) UsedFlags() uint16 { return d.get16(d.Used) }

// UsedIdx reads the device's used index.
func (d *Driver) UsedIdx() uint16 { return d.get16(d.Used + 2) }

// Used is one used ring element.
type Used struct {
	ID  uint32
	Len uint32
}

// PopUsed returns the next used element the device published, if any.
func (d *Driver) PopUsed() (Used, bool) {
	if d.lastUsed == d.UsedIdx() {
		return Used{}, false
	}
	b := d.Bytes(d.Used+4+8*uint64(d.lastUsed&(d.Size-1)), 8)
	d.lastUsed++
	return Used{ID: binary.LittleEndian.Uint32(b), Len: binary.LittleEndian.Uint32(b[4:])}, true
}

// DrainUsed returns every used element published since the last call.
func (d *Driver) DrainUsed() []Used {
	var us []Used
	for {
		u, ok := d.PopUsed()
		if !ok {
			return us
		}
		us = append(us, u)
	}
}

// DiscardUsed consumes the published used elements without returning them
// (allocation-free, for benchmarks) and returns how many there were.
func (d *Driver) DiscardUsed() int {
	n := int(d.UsedIdx() - d.lastUsed)
	d.lastUsed += uint16(n)
	return n
}

// BufAddr returns the address of buffer i of the chain at head (following
// NEXT in the main table), to read back what the device wrote.
func (d *Driver) BufAddr(head uint16, i int) Desc {
	idx := head
	for {
		b := d.Bytes(d.Desc+16*uint64(idx), 16)
		desc := Desc{
			Addr:  binary.LittleEndian.Uint64(b[0:]),
			Len:   binary.LittleEndian.Uint32(b[8:]),
			Flags: binary.LittleEndian.Uint16(b[12:]),
			Next:  binary.LittleEndian.Uint16(b[14:]),
		}
		if i == 0 {
			return desc
		}
		i--
		idx = desc.Next
	}
}
