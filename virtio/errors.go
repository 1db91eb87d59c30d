package virtio

import (
	"errors"
	"fmt"
)

// Errors returned by the virtqueue. Those marked "fault" mean the ring itself
// is malformed: the queue stops and the device should ask for a reset.
var (
	// ErrDescLoop (fault): a chain loops, or is longer than the queue
	// size (virtio 1.2 §2.7.5.3.1: "A driver MUST NOT create a descriptor
	// chain longer than the Queue Size of the device").
	ErrDescLoop = errors.New("virtio: descriptor chain loops or is longer than the queue size")
	// ErrNestedIndirect (fault): an indirect table holds an INDIRECT
	// descriptor (§2.7.5.3.1).
	ErrNestedIndirect = errors.New("virtio: nested indirect descriptor table")
	// ErrIndirectNext (fault): a descriptor has both INDIRECT and NEXT
	// (§2.7.5.3.1).
	ErrIndirectNext = errors.New("virtio: descriptor has both INDIRECT and NEXT flags")
	// ErrIndirectNotNegotiated (fault): INDIRECT used without
	// VIRTIO_F_INDIRECT_DESC.
	ErrIndirectNotNegotiated = errors.New("virtio: indirect descriptor without VIRTIO_F_INDIRECT_DESC")
	// ErrReadAfterWrite: a driver-readable descriptor follows a
	// device-writable one (§2.7.4.2: readable elements come first).
	ErrReadAfterWrite = errors.New("virtio: driver-readable descriptor after a device-writable one")
	// ErrQueueNotReady: the queue is not enabled.
	ErrQueueNotReady = errors.New("virtio: queue not ready")
	// ErrQueueEnabled: the queue configuration cannot change while it is
	// enabled.
	ErrQueueEnabled = errors.New("virtio: queue is enabled")
)

// InvalidAvailIdxError (fault) is returned when the driver's available index
// is more than the queue size ahead of the device's last seen index, which no
// correct driver can produce (virtio 1.2 §2.7.6). Rejecting it prevents a
// guest from making the device walk stale ring entries forever.
type InvalidAvailIdxError struct {
	QueueSize uint16 // the queue size
	Reported  uint16 // entries the index claims are pending (idx - last)
	AvailIdx  uint16 // the available index read from the ring
}

func (e *InvalidAvailIdxError) Error() string {
	return fmt.Sprintf("virtio: available index %d claims %d pending entries, queue size is %d",
		e.AvailIdx, e.Reported, e.QueueSize)
}

// DescIndexError (fault) is returned for a head or next index outside its
// table.
type DescIndexError struct {
	Index    uint16 // the index the driver gave
	TableLen uint32 // entries in the table it indexes
	Indirect bool   // the table is an indirect table
}

func (e *DescIndexError) Error() string {
	where := "descriptor table"
	if e.Indirect {
		where = "indirect table"
	}
	return fmt.Sprintf("virtio: descriptor index %d out of range of %s of %d entries", e.Index, where, e.TableLen)
}

// IndirectLenError (fault) is returned for an indirect table whose byte length
// is zero, not a multiple of 16, or longer than MaxQueueSize entries
// (§2.7.5.3).
type IndirectLenError struct {
	Len uint32
}

func (e *IndirectLenError) Error() string {
	return fmt.Sprintf("virtio: invalid indirect table length %d", e.Len)
}

// ChainLenError is returned when a chain's readable or writable bytes add up
// to more than the queue's limit (at most 4 GiB - 1).
type ChainLenError struct {
	Len uint64 // bytes counted so far, including the offending descriptor
	Max uint64
}

func (e *ChainLenError) Error() string {
	return fmt.Sprintf("virtio: descriptor chain length %d exceeds %d", e.Len, e.Max)
}

// AddrError is returned when a guest range is not wholly backed by guest
// memory (or wraps around the address space).
type AddrError struct {
	GPA uint64
	Len uint64
}

func (e *AddrError) Error() string {
	return fmt.Sprintf("virtio: guest range [%#x, +%#x) is not in guest memory", e.GPA, e.Len)
}

// RingAddrError is returned by Queue.Enable when a ring is misaligned or not
// inside one guest memory region.
type RingAddrError struct {
	Ring string // "descriptor table", "available ring" or "used ring"
	GPA  uint64
	Len  uint64
	Err  error // nil for a misaligned address
}

func (e *RingAddrError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("virtio: %s at %#x is misaligned", e.Ring, e.GPA)
	}
	return fmt.Sprintf("virtio: %s at %#x (+%#x): %v", e.Ring, e.GPA, e.Len, e.Err)
}

func (e *RingAddrError) Unwrap() error { return e.Err }

// IsFault reports whether err means the virtqueue itself is malformed (as
// opposed to one bad chain). After a fault the queue returns the same error
// until it is reset; the device should set StatusDeviceNeedsReset
// (virtio 1.2 §2.1.2).
func IsFault(err error) bool {
	// A type switch down the wrap chain, not errors.As: As's targets
	// escape, four allocations a call, and a guest's bad chains reach
	// here one by one.
	for err != nil {
		switch err.(type) {
		case *InvalidAvailIdxError, *DescIndexError, *IndirectLenError, *MemoryFaultError:
			return true
		}
		switch err {
		case ErrDescLoop, ErrNestedIndirect, ErrIndirectNext, ErrIndirectNotNegotiated:
			return true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if IsFault(e) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}
