package vmm

import (
	"errors"
	"fmt"
	"sync"

	"github.com/hvnet/hvnet/virtio"
)

// MSI-X (PCI Local Bus Specification 3.0 §6.8.2): a table of vectors, 16
// bytes each (message address low, high, data, vector control with the
// mask bit), and a pending-bit array, both in a BAR.
//
// Every vector is an eventfd bound with KVM_IRQFD to its own GSI, whose
// route KVM_SET_GSI_ROUTING points at the vector's message while the
// vector is unmasked. Masking is honoured here, before the eventfd: a
// signal on a masked vector (entry mask, function mask, or MSI-X off) only
// sets its pending bit, and unmasking delivers it (§6.8.2.9).
const (
	msixEntrySize   = 16
	msixCtrlMask    = 1      // vector control: mask bit
	msixNoVector    = 0xffff // VIRTIO_MSI_NO_VECTOR (virtio 1.2 §4.1.5.1.2)
	msixMsgEnable   = 1 << 15
	msixMsgFuncMask = 1 << 14
)

type msix struct {
	plat    platform
	n       int // vectors (the table's size, fixed)
	mu      sync.Mutex
	table   []byte
	pba     []uint64
	enabled bool
	fnMask  bool
	// fds: each vector's eventfd, nil once closed (under mu: a switch
	// port's Receive may still signal a vector while the device stops)
	fds  []*virtio.EventFD
	gsis []uint32
}

// newMSIX creates n vectors, each with its eventfd, GSI and irqfd. All
// start masked.
func newMSIX(plat platform, n int) (_ *msix, err error) {
	if n < 1 || n > 2048 {
		return nil, fmt.Errorf("msix: %d vectors, want 1..2048", n)
	}
	x := &msix{plat: plat, n: n, table: make([]byte, n*msixEntrySize), pba: make([]uint64, (n+63)/64)}
	defer func() {
		if err != nil {
			x.close()
		}
	}()
	for v := 0; v < n; v++ {
		x.table[v*msixEntrySize+12] = msixCtrlMask
		fd, err := virtio.NewEventFD(false)
		if err != nil {
			return nil, err
		}
		x.fds = append(x.fds, fd)
		gsi, err := plat.AllocGSI()
		if err != nil {
			return nil, err
		}
		x.gsis = append(x.gsis, gsi)
		if err := plat.IRQFD(fd.FD(), gsi); err != nil {
			return nil, fmt.Errorf("msix: vector %d: %w", v, err)
		}
	}
	return x, nil
}

func (x *msix) size() int { return x.n }

// close closes the vectors' eventfds; a signal after it does nothing.
// It takes mu: a signal in flight (a frame a switch port hands the
// stopping device) finishes first and none writes to a closed, perhaps
// reused, descriptor.
func (x *msix) close() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	var errs []error
	for _, fd := range x.fds {
		errs = append(errs, fd.Close())
	}
	x.fds = nil
	return errors.Join(errs...)
}

// callFD returns vector v's eventfd descriptor, or -1 for NO_VECTOR, a
// vector beyond the table, or after close.
func (x *msix) callFD(v uint32) int {
	x.mu.Lock()
	defer x.mu.Unlock()
	if uint64(v) >= uint64(len(x.fds)) {
		return -1
	}
	return x.fds[v].FD()
}

// maskedLocked reports whether vector v may not be delivered now.
func (x *msix) maskedLocked(v int) bool {
	return !x.enabled || x.fnMask || x.table[v*msixEntrySize+12]&msixCtrlMask != 0
}

// signal raises vector v, or marks it pending while masked. NO_VECTOR and
// vectors beyond the table are ignored (the driver chose no interrupt).
func (x *msix) signal(v uint16) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if int(v) >= len(x.fds) { // also after close
		return nil
	}
	if x.maskedLocked(int(v)) {
		x.pba[v/64] |= 1 << (v % 64)
		return nil
	}
	return x.fds[v].Signal()
}

// pending reports vector v's pending bit.
func (x *msix) pending(v int) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.pba[v/64]&(1<<(v%64)) != 0
}

// setControl applies the message control register's enable and function
// mask bits.
func (x *msix) setControl(ctrl uint16) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.enabled, x.fnMask = ctrl&msixMsgEnable != 0, ctrl&msixMsgFuncMask != 0
	var errs []error
	for v := range x.fds {
		errs = append(errs, x.updateLocked(v))
	}
	return errors.Join(errs...)
}

// updateLocked routes an unmasked vector to its message and delivers what
// was pending.
func (x *msix) updateLocked(v int) error {
	if v >= len(x.fds) || x.maskedLocked(v) { // closed: nothing to route
		return nil
	}
	e := x.table[v*msixEntrySize:]
	addr := uint64(getU32(e[0:])) | uint64(getU32(e[4:]))<<32
	if err := x.plat.SetMSI(x.gsis[v], addr, getU32(e[8:])); err != nil {
		return fmt.Errorf("msix: vector %d: %w", v, err)
	}
	if x.pba[v/64]&(1<<(v%64)) != 0 {
		x.pba[v/64] &^= 1 << (v % 64)
		return x.fds[v].Signal()
	}
	return nil
}

// tableRead reads the table: aligned dword or qword accesses (§6.8.2);
// anything else reads as zero and reports false.
func (x *msix) tableRead(off uint64, data []byte) bool {
	if !msixAccessOK(off, len(data), len(x.table)) {
		clear(data)
		return false
	}
	x.mu.Lock()
	copy(data, x.table[off:])
	x.mu.Unlock()
	return true
}

// tableWrite writes the table and re-evaluates the vectors touched.
func (x *msix) tableWrite(off uint64, data []byte) (bool, error) {
	if !msixAccessOK(off, len(data), len(x.table)) {
		return false, nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	v := int(off / msixEntrySize)
	wasMasked := x.maskedLocked(v)
	for i, b := range data {
		o := int(off) + i
		if o%msixEntrySize == 12 {
			b &= msixCtrlMask // only the mask bit of vector control is writable
		} else if o%msixEntrySize > 12 {
			continue
		}
		x.table[o] = b
	}
	if wasMasked && x.maskedLocked(v) {
		return true, nil // a masked vector's message may change freely
	}
	return true, x.updateLocked(v)
}

// pbaRead reads the pending bits (read-only).
func (x *msix) pbaRead(off uint64, data []byte) bool {
	if !msixAccessOK(off, len(data), len(x.pba)*8) {
		clear(data)
		return false
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for i := range data {
		o := int(off) + i
		data[i] = byte(x.pba[o/8] >> (8 * (o % 8)))
	}
	return true
}

func msixAccessOK(off uint64, n, limit int) bool {
	return (n == 4 || n == 8) && off%uint64(n) == 0 && off < uint64(limit) && uint64(n) <= uint64(limit)-off
}
