package virtio

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
)

// MaxQueueSize is the largest split virtqueue (virtio 1.2 §2.7: "Queue Size
// ... maximum 32768").
const MaxQueueSize = 32768

// Ring flags, virtio 1.2 §2.7.6 and §2.7.8.
const (
	// AvailFNoInterrupt: the driver asks for no used-buffer notification
	// (ignored when EVENT_IDX is negotiated, §2.7.7.2).
	AvailFNoInterrupt = 1
	// UsedFNoNotify: the device asks for no available-buffer notification
	// (not used when EVENT_IDX is negotiated, §2.7.10).
	UsedFNoNotify = 1
)

// Ring layouts, virtio 1.2 §2.7 (alignment table) and §2.7.6, §2.7.8.
const (
	descAlign  = 16
	availAlign = 2
	usedAlign  = 4
	ringHdr    = 4 // le16 flags, le16 idx
	usedElem   = 8 // le32 id, le32 len
)

// Signaler raises the used-buffer notification to the driver: an irqfd write
// in the VMM, a write to the vring call fd in the vhost-user backend.
type Signaler interface {
	Signal() error
}

// SignalFunc adapts a function to Signaler.
type SignalFunc func() error

// Signal calls f.
func (f SignalFunc) Signal() error { return f() }

// Queue is the device side of a split virtqueue (virtio 1.2 §2.7).
//
// A Queue is not safe for concurrent use: one goroutine owns it at a time
// (callers serialise with their own lock). The driver shares the rings; the
// Queue reads them with bounds-checked little-endian loads and publishes its
// own indices behind a full memory barrier.
//
// Lifecycle: NewQueue; SetMemory, SetSize, SetAddrs, SetFeatures (and
// SetNextAvail/SetNextUsed when restoring vhost-user state) while disabled;
// Enable; then Pop / AddUsed / Flush on each kick; Reset to start over.
type Queue struct {
	maxSize   uint16
	size      uint16
	ready     bool
	descAddr  uint64
	availAddr uint64
	usedAddr  uint64
	eventIdx  bool
	indirect  bool
	maxBytes  uint64
	walkAll   bool         // tests: every chain through walk (PopInto's one-buffer path off)
	warm      [256]uintptr // Warm's addresses (2 a chain, the used ring's lines)
	mem       *Memory
	signaler  Signaler
	fenceWord uint32

	desc  []byte // the descriptor table, size*16 bytes of guest memory
	avail []byte // the available ring (with used_event when EVENT_IDX)
	used  []byte // the used ring (with avail_event when EVENT_IDX)

	lastAvail      uint16 // next available ring entry to consume
	shadowAvail    uint16 // last available index read from the ring
	nextUsed       uint16 // used index after the entries added so far
	publishedUsed  uint16 // used index last written to the ring
	signalledUsed  uint16 // used index at the last notification decision
	signalledValid bool
	broken         error

	chain Chain
	memo  regionMemo // the region of q.mem last looked up (memo.go)
}

// NewQueue returns a disabled queue that accepts sizes up to maxSize (a power
// of two, at most MaxQueueSize).
func NewQueue(maxSize uint16) (*Queue, error) {
	if !validSize(maxSize) {
		return nil, fmt.Errorf("virtio: invalid maximum queue size %d", maxSize)
	}
	q := &Queue{maxSize: maxSize}
	q.Reset()
	return q, nil
}

func validSize(n uint16) bool { return n != 0 && n&(n-1) == 0 && n <= MaxQueueSize }

// MaxSize returns the largest size the queue accepts.
func (q *Queue) MaxSize() uint16 { return q.maxSize }

// Size returns the configured size.
func (q *Queue) Size() uint16 { return q.size }

// Ready reports whether the queue is enabled.
func (q *Queue) Ready() bool { return q.ready }

// Broken returns the fault that stopped the queue, or nil.
func (q *Queue) Broken() error { return q.broken }

// Reset disables the queue and returns it to its initial state
// (virtio 1.2 §2.4 device reset). The memory and signaler are kept.
func (q *Queue) Reset() {
	q.size = q.maxSize
	q.ready = false
	q.descAddr, q.availAddr, q.usedAddr = 0, 0, 0
	q.eventIdx, q.indirect = false, false
	q.maxBytes = 1<<32 - 1
	q.desc, q.avail, q.used = nil, nil, nil
	q.lastAvail, q.shadowAvail = 0, 0
	q.nextUsed, q.publishedUsed, q.signalledUsed = 0, 0, 0
	q.signalledValid = false
	q.broken = nil
}

// SetSize sets the queue size: a power of two no larger than MaxSize.
func (q *Queue) SetSize(n uint16) error {
	if q.ready {
		return ErrQueueEnabled
	}
	if !validSize(n) || n > q.maxSize {
		return fmt.Errorf("virtio: invalid queue size %d (maximum %d)", n, q.maxSize)
	}
	q.size = n
	return nil
}

// SetAddrs sets the guest-physical addresses of the descriptor table, the
// available ring (driver area) and the used ring (device area).
func (q *Queue) SetAddrs(desc, avail, used uint64) error {
	if q.ready {
		return ErrQueueEnabled
	}
	q.descAddr, q.availAddr, q.usedAddr = desc, avail, used
	return nil
}

// SetFeatures applies the negotiated device features that concern the ring:
// VIRTIO_F_EVENT_IDX and VIRTIO_F_INDIRECT_DESC.
//
// On an enabled queue it fails with ErrQueueEnabled if those bits would
// change (vhost-user may resend features while rings run, e.g. to set
// VHOST_F_LOG_ALL).
func (q *Queue) SetFeatures(features uint64) error {
	ev, ind := HasFeature(features, FEventIdx), HasFeature(features, FIndirectDesc)
	if q.ready && (ev != q.eventIdx || ind != q.indirect) {
		return ErrQueueEnabled
	}
	q.eventIdx, q.indirect = ev, ind
	return nil
}

// EventIdx reports whether VIRTIO_F_EVENT_IDX is in effect.
func (q *Queue) EventIdx() bool { return q.eventIdx }

// SetMaxChainBytes caps the readable and the writable length of a chain
// (each); chains beyond it fail with *ChainLenError. The default and the
// ceiling is 4 GiB - 1.
func (q *Queue) SetMaxChainBytes(n uint64) {
	q.maxBytes = min(n, 1<<32-1)
}

// SetSignaler sets where Flush sends used-buffer notifications.
func (q *Queue) SetSignaler(s Signaler) { q.signaler = s }

// SetNextAvail sets the index of the next available ring entry to consume
// (vhost-user VHOST_USER_SET_VRING_BASE).
func (q *Queue) SetNextAvail(idx uint16) error {
	if q.ready {
		return ErrQueueEnabled
	}
	q.lastAvail, q.shadowAvail = idx, idx
	return nil
}

// NextAvail returns the index of the next available ring entry to consume
// (vhost-user VHOST_USER_GET_VRING_BASE).
func (q *Queue) NextAvail() uint16 { return q.lastAvail }

// SetNextUsed sets the device's used index (restoring state; after a device
// reset it is 0).
func (q *Queue) SetNextUsed(idx uint16) error {
	if q.ready {
		return ErrQueueEnabled
	}
	q.nextUsed, q.publishedUsed, q.signalledUsed = idx, idx, idx
	return nil
}

// NextUsed returns the used index after the entries added so far.
func (q *Queue) NextUsed() uint16 { return q.nextUsed }

// SetMemory sets the guest memory the queue reads and writes. On an enabled
// queue the rings are mapped again; if they no longer fit, the queue is
// broken and the error returned.
func (q *Queue) SetMemory(m *Memory) error {
	q.mem = m
	q.memo.reset() // not needed (the memo checks its Memory), but drops the old table
	if !q.ready {
		return nil
	}
	if err := q.mapRings(); err != nil {
		q.broken = err
		return err
	}
	return nil
}

// Memory returns the queue's guest memory.
func (q *Queue) Memory() *Memory { return q.mem }

// Enable validates the configuration and starts the queue. Each ring must be
// aligned as virtio 1.2 §2.7 requires and lie inside one memory region.
func (q *Queue) Enable() error {
	if q.ready {
		return nil
	}
	if q.mem == nil {
		return fmt.Errorf("virtio: queue enabled without guest memory")
	}
	if err := q.mapRings(); err != nil {
		return err
	}
	if cap(q.chain.descs) < int(q.size) {
		q.chain.descs = make([]Desc, 0, q.size)
	}
	q.ready = true
	q.broken = nil
	return nil
}

// Disable stops the queue, keeping its indices (vhost-user
// VHOST_USER_GET_VRING_BASE stops the ring).
func (q *Queue) Disable() { q.ready = false }

func (q *Queue) mapRings() error {
	n := uint64(q.size)
	tail := uint64(0)
	if q.eventIdx {
		tail = 2 // used_event / avail_event
	}
	type ring struct {
		name  string
		gpa   uint64
		len   uint64
		align uint64
		dst   *[]byte
	}
	rings := [...]ring{
		{"descriptor table", q.descAddr, DescSize * n, descAlign, &q.desc},
		{"available ring", q.availAddr, ringHdr + 2*n + tail, availAlign, &q.avail},
		{"used ring", q.usedAddr, ringHdr + usedElem*n + tail, usedAlign, &q.used},
	}
	for _, r := range rings {
		if r.gpa%r.align != 0 {
			return &RingAddrError{Ring: r.name, GPA: r.gpa, Len: r.len}
		}
		b, err := q.mem.Slice(r.gpa, r.len)
		if err != nil {
			return &RingAddrError{Ring: r.name, GPA: r.gpa, Len: r.len, Err: err}
		}
		*r.dst = b
	}
	return nil
}

// fence is a full memory barrier: an atomic read-modify-write is a
// sequentially consistent operation in the Go memory model, orders the
// compiler, and is a locked instruction (full fence) on amd64. It stands for
// the virtio_mb/virtio_rmb/virtio_wmb of virtio 1.2 §2.7.13 and §2.7.14.
func (q *Queue) fence() { atomic.AddUint32(&q.fenceWord, 0) }

func (q *Queue) availIdx() uint16 { return Load16(q.avail[2:]) }

// Pending reports how many chains the driver has made available and the
// device has not popped yet. A jump of more than the queue size breaks the
// queue.
func (q *Queue) Pending() (uint16, error) {
	if q.broken != nil {
		return 0, q.broken
	}
	if !q.ready {
		return 0, ErrQueueNotReady
	}
	if err := q.refreshAvail(); err != nil {
		return 0, err
	}
	return q.shadowAvail - q.lastAvail, nil
}

// Position returns the driver's available index as it is now (not
// checked) and how far the device has taken chains: equal when nothing
// waits. It changes nothing; a ready, unbroken queue only.
func (q *Queue) Position() (avail, taken uint16, ok bool) {
	if !q.ready || q.broken != nil {
		return 0, 0, false
	}
	return q.availIdx(), q.lastAvail, true
}

// refreshAvail reads the driver's available index.
// Virtio 1.2 §2.7.6: the driver never makes more than the queue size of
// entries available; an index further ahead is rejected (as rust-vmm's
// virtio-queue does) so a guest cannot make the device walk stale entries.
func (q *Queue) refreshAvail() error {
	idx := q.availIdx()
	q.fence() // read the ring entries only after the index (§2.7.13.3)
	if n := idx - q.lastAvail; n > q.size {
		q.broken = &InvalidAvailIdxError{QueueSize: q.size, Reported: n, AvailIdx: idx}
		return q.broken
	}
	q.shadowAvail = idx
	return nil
}

// Pop returns the next available descriptor chain, or (nil, nil) when there
// is none. The chain is valid until the next Pop.
//
// On error: if the chain is non-nil only that chain is bad (a buffer outside
// guest memory, a readable buffer after a writable one, too many bytes):
// return it with AddUsed(c.Head, 0) and go on. If the chain is nil the ring
// is malformed (IsFault(err)): the queue stays broken, returning the same
// error, until Reset.
func (q *Queue) Pop() (*Chain, error) { return q.PopInto(&q.chain) }

// PopInto is Pop into a caller-owned chain (from NewChain with room for the
// queue size), so that several chains can be held at once.
func (q *Queue) PopInto(c *Chain) (*Chain, error) {
	if q.broken != nil {
		return nil, q.broken
	}
	if !q.ready {
		return nil, ErrQueueNotReady
	}
	if q.shadowAvail == q.lastAvail {
		if err := q.refreshAvail(); err != nil {
			return nil, err
		}
		if q.shadowAvail == q.lastAvail {
			return nil, nil
		}
	}
	slot := uint64(q.lastAvail & (q.size - 1))
	head := Load16(q.avail[ringHdr+2*slot:])
	q.lastAvail++
	if head >= q.size {
		q.broken = &DescIndexError{Index: head, TableLen: uint32(q.size)}
		return nil, q.broken
	}
	if cap(c.descs) < int(q.size) {
		c.descs = make([]Desc, 0, q.size)
	}
	// The head descriptor, read once: the common chain, one buffer in the
	// region of the last, is taken here; anything else walks on from
	// this read.
	addr, length, flags, next := readDesc(q.desc, head)
	if flags&(DescFNext|DescFIndirect) == 0 && uint64(length) <= q.maxBytes && !q.walkAll {
		if b, ok := q.memo.lookup(q.mem, addr, uint64(length)); ok {
			c.one(head, Desc{Addr: addr, Len: length, Flags: flags}, b)
			return c, nil
		}
	}
	if err := q.walk(c, head, addr, length, flags, next); err != nil {
		if IsFault(err) {
			q.broken = err
			return nil, err
		}
		return c, err
	}
	return c, nil
}

// Break marks the queue malformed with err (for example a
// *MemoryFaultError found by the device): it stays broken, returning err,
// until Reset or Enable.
func (q *Queue) Break(err error) {
	if q.broken == nil {
		q.broken = err
	}
}

// Rewind gives back the last n popped chains, which were not used: the next
// Pop returns them again. n must not exceed the chains popped since the last
// Rewind.
func (q *Queue) Rewind(n uint16) { q.lastAvail -= n }

// walk reads the chain starting at head into c.
//
// Virtio 1.2 §2.7.5 and §2.7.5.3 (indirect descriptors), checked as
// rust-vmm's virtio-queue chain.rs does: the walk carries a ttl of the table
// length so a loop ends, rejects next >= table length, rejects INDIRECT with
// NEXT and nested tables, requires readable descriptors before writable ones
// (§2.7.4.2), caps the chain at the queue size (§2.7.5.3.1), and checks every
// buffer against guest memory with overflow-checked arithmetic.
//
// Each descriptor is read once, whole, into locals (the driver may be
// rewriting it): the head's by the caller (addr, length, flags, next), the
// others at the loop's end. The head's pass needs no loop check (the table
// holds at least one descriptor and the chain none yet): a chain of one
// descriptor goes through the loop body once.
func (q *Queue) walk(c *Chain, head uint16, addr uint64, length uint32, flags, next uint16) error {
	c.reset(head)
	table := q.desc
	tableLen := uint32(q.size)
	ttl := tableLen - 1
	inIndirect := false
	for {
		if flags&DescFIndirect != 0 {
			switch {
			case !q.indirect:
				return ErrIndirectNotNegotiated
			case inIndirect:
				return ErrNestedIndirect
			case flags&DescFNext != 0:
				return ErrIndirectNext
			case length == 0 || length%DescSize != 0 || length/DescSize > MaxQueueSize:
				return &IndirectLenError{Len: length}
			}
			t, ok := q.memo.slice(q.mem, addr, uint64(length))
			if !ok {
				return c.badAddr(addr, uint64(length))
			}
			table, tableLen, ttl, next, inIndirect = t, length/DescSize, length/DescSize, 0, true
		} else {
			b, ok := q.memo.check(q.mem, addr, uint64(length))
			if !ok {
				return c.badAddr(addr, uint64(length))
			}
			if len(c.descs) == 0 {
				c.first = b
			}
			if flags&DescFWrite != 0 {
				c.writeLen += uint64(length)
				if c.writeLen > q.maxBytes {
					return c.tooLong(c.writeLen, q.maxBytes)
				}
			} else {
				if c.nRead != len(c.descs) {
					return ErrReadAfterWrite
				}
				c.nRead++
				c.readLen += uint64(length)
				if c.readLen > q.maxBytes {
					return c.tooLong(c.readLen, q.maxBytes)
				}
			}
			c.descs = append(c.descs, Desc{Addr: addr, Len: length, Flags: flags})
			if flags&DescFNext == 0 {
				return nil
			}
			if uint32(next) >= tableLen {
				return &DescIndexError{Index: next, TableLen: tableLen, Indirect: inIndirect}
			}
		}
		if ttl == 0 || len(c.descs) == int(q.size) {
			return ErrDescLoop
		}
		ttl--
		addr, length, flags, next = readDesc(table, next)
	}
}

// readDesc reads descriptor i of table (which holds it) once.
func readDesc(table []byte, i uint16) (addr uint64, length uint32, flags, next uint16) {
	e := table[uint64(i)*DescSize:]
	e = e[:DescSize:DescSize]
	return binary.LittleEndian.Uint64(e[0:]), binary.LittleEndian.Uint32(e[8:]),
		binary.LittleEndian.Uint16(e[12:]), binary.LittleEndian.Uint16(e[14:])
}
