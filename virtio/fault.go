package virtio

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// MemoryFaultError (fault) is returned when the host faulted (SIGBUS or
// SIGSEGV) touching guest memory: a vhost-user frontend shrank the memfd
// behind a region (ftruncate) or otherwise made mapped pages vanish. Only
// the queue (or session) that touched the memory is ended; the process
// lives on.
type MemoryFaultError struct {
	Addr uintptr // the faulting host address
}

func (e *MemoryFaultError) Error() string {
	return fmt.Sprintf("virtio: guest memory fault at host address %#x (memory shrunk or unmapped under the device)", e.Addr)
}

// Guest memory is mmap'd from a file the tenant controls. A vhost-user
// frontend can ftruncate that file while the device reads or writes it,
// and the next access raises SIGBUS, which would end the whole process.
// Every goroutine that touches guest memory therefore does so between
// TrapFaults and CatchFault, which turn such a fault into an error for the
// queue at hand (runtime/debug.SetPanicOnFault: "intended for programs
// that use memory-mapped files").
//
//	func (d *Device) work() (err error) {
//		defer virtio.CatchFault(virtio.TrapFaults(), &err)
//		... touch guest memory ...
//	}
//
// Both calls cost a few nanoseconds: use them once per batch, not per
// access.

// TrapFaults makes a memory fault on the calling goroutine a panic that
// CatchFault can recover, and returns the previous setting for CatchFault
// to restore.
func TrapFaults() bool { return debug.SetPanicOnFault(true) }

// CatchFault must be deferred directly (it calls recover): it restores the
// fault setting TrapFaults returned and, if the goroutine is panicking on a
// memory fault, stops the panic and stores a *MemoryFaultError in *err.
// Any other panic goes on.
func CatchFault(prev bool, err *error) {
	debug.SetPanicOnFault(prev)
	r := recover()
	if r == nil {
		return
	}
	fe := FaultOf(r)
	if fe == nil {
		panic(r)
	}
	*err = fe
}

// nilPageLimit: faults below it are nil-pointer dereferences (Linux's
// vm.mmap_min_addr is 64 KiB), never guest memory.
const nilPageLimit = 64 << 10

// FaultOf returns the memory fault a recovered panic value stands for, or
// nil when it is some other panic. For deferred functions of other
// packages that must call recover themselves (recover works only when
// called by the deferred function directly).
func FaultOf(r any) *MemoryFaultError {
	re, ok := r.(runtime.Error)
	if !ok {
		return nil
	}
	a, ok := re.(interface{ Addr() uintptr })
	if !ok || a.Addr() < nilPageLimit {
		return nil // a nil dereference is a bug, not guest memory
	}
	return &MemoryFaultError{Addr: a.Addr()}
}
