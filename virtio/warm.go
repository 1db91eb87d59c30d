package virtio

import (
	"encoding/binary"
	"unsafe"
)

// maxWarm is the furthest Warm looks ahead, in chains.
const maxWarm = 64

// Warm asks the CPU for the cache lines the device is about to write for
// n available chains of a device-writable queue, those that follow the
// next from (from+n at most 64), with intent to write (PREFETCHW, one
// call): the first two lines of each chain's first buffer and the used
// ring entries the chains will take. The driver's core last wrote those
// lines; with them requested together, in exclusive state, the transfers
// overlap, where the device's stores would otherwise wait for them one
// frame after another, each store behind the last (DPDK's vhost enqueue
// reserves a burst's buffers before it copies, and prefetches them, for
// the same reason). A device that warms a window ahead of the chains it
// pops (n at a time, from chains ahead) keeps fewer prefetches in flight
// at once, so that fewer are dropped for want of miss buffers, and each
// arrives nearer its use. On a transmit queue, warming the lines to read
// did not pay (vhost/BENCH_NOTES.md).
//
// It is a hint: it reads the available ring and the descriptors' addresses
// but decides nothing from them (Pop reads each again, once, and checks
// it); an address outside the region of the queue's last lookup is
// skipped; a prefetch never faults. It takes nothing from the ring.
func (q *Queue) Warm(from, n int) {
	if !canPrefetchW || q.broken != nil || !q.ready {
		return
	}
	if q.shadowAvail == q.lastAvail && q.refreshAvail() != nil {
		return
	}
	n = min(from+n, int(q.shadowAvail-q.lastAvail), maxWarm) - from
	// The memo's region: a buffer's address in it is its host address;
	// others are skipped (no lookup: this is only a hint).
	m := &q.memo
	if m.mem != q.mem || len(m.data) == 0 {
		n = 0
	}
	var base uintptr
	if n > 0 {
		base = uintptr(unsafe.Pointer(unsafe.SliceData(m.data)))
	}
	size, avail, desc, warm := q.size, q.avail, q.desc, &q.warm
	k := 0
	for i := uint16(from); i < uint16(from+n); i++ {
		head := Load16(avail[ringHdr+2*uint64((q.lastAvail+i)&(size-1)):])
		if head >= size {
			break
		}
		if off := binary.LittleEndian.Uint64(desc[uint64(head)*DescSize:]) - m.gpa; off < uint64(len(m.data)) {
			p := base + uintptr(off)
			warm[k&(len(warm)-1)], warm[(k+1)&(len(warm)-1)] = p, p+64
			k += 2
		}
	}
	if n > 0 {
		// The used entries' lines, 8 entries a line.
		first := ringHdr + usedElem*uint64((q.nextUsed+uint16(from))&(q.size-1))
		last := ringHdr + usedElem*uint64((q.nextUsed+uint16(from+n)-1)&(q.size-1))
		if last < first { // wrapped: to the ring's end, then from its start
			last = ringHdr + usedElem*uint64(q.size-1)
		}
		used := uintptr(unsafe.Pointer(unsafe.SliceData(q.used)))
		for off := first; off < last && k < len(q.warm)-1; off += 64 {
			q.warm[k] = used + uintptr(off)
			k++
		}
		q.warm[k] = used + uintptr(last)
		k++
	}
	prefetchW(q.warm[:k])
}
