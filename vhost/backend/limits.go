package backend

import (
	"fmt"
	"sync/atomic"
)

// A frontend's memory regions and dirty log are mapped into the daemon's
// address space, and a frontend chooses their sizes: a sparse memfd
// ftruncated to 64 TiB backs any number of regions at no cost to it. Left
// unbounded, one frontend could take the whole 128 TiB user address space
// of x86-64 and the Go runtime would die of "out of memory" at its next
// heap growth, taking every port with it. So what is mapped is bounded
// twice: per session (Config.MaxMapped) and for all the sessions sharing a
// MapBudget (by default every session of the process). Both count mapping
// lengths in bytes (regions and the log); a request that would exceed
// either is refused, counted in Counters.RefusedMappings, with a
// *MapLimitError saying what was asked and the limit.

// DefaultMaxMapped is Config.MaxMapped's default: 1 TiB, the largest guest
// a session may map. It is above the guest RAM of every general-purpose
// instance type (the largest virtual machines clouds sell run on
// dedicated hosts, not behind a shared software switch) and leaves 127
// such sessions room in the address space; a port serving a bigger guest
// sets PortConfig.MaxMapped.
const DefaultMaxMapped uint64 = 1 << 40

// DefaultMaxMappedTotal is DefaultMapBudget's limit: 64 TiB, half of the
// 128 TiB user address space of x86-64 (47 bits) and more than the RAM
// of the largest hosts, so that guests together can map whatever memory
// the host has (overcommitted, too) while the other half stays for the Go
// runtime's heap, thread stacks and everything else in the daemon.
const DefaultMaxMappedTotal uint64 = 64 << 40

// DefaultMapBudget bounds every session that is not given another
// (Config.MapBudget nil): the process's.
var DefaultMapBudget = NewMapBudget(DefaultMaxMappedTotal)

// MapBudget bounds the bytes of frontend memory that the sessions sharing
// it have mapped at once (regions and dirty logs), accounted atomically:
// charged before each mmap, released at each munmap. Safe for concurrent
// use.
type MapBudget struct {
	max  uint64
	used atomic.Uint64
	peak atomic.Uint64
}

// NewMapBudget returns a budget of max bytes (0: DefaultMaxMappedTotal).
func NewMapBudget(max uint64) *MapBudget {
	if max == 0 {
		max = DefaultMaxMappedTotal
	}
	return &MapBudget{max: max}
}

// Max is the budget's limit in bytes.
func (b *MapBudget) Max() uint64 { return b.max }

// InUse is how many bytes are mapped now under the budget.
func (b *MapBudget) InUse() uint64 { return b.used.Load() }

// Peak is the most bytes ever mapped at once under the budget.
func (b *MapBudget) Peak() uint64 { return b.peak.Load() }

// reserve charges n bytes if they fit, and returns the bytes in use after
// (before, when refused).
func (b *MapBudget) reserve(n uint64) (inUse uint64, ok bool) {
	for {
		cur := b.used.Load()
		if n > b.max || cur > b.max-n {
			return cur, false
		}
		if b.used.CompareAndSwap(cur, cur+n) {
			for p := b.peak.Load(); cur+n > p && !b.peak.CompareAndSwap(p, cur+n); p = b.peak.Load() {
			}
			return cur + n, true
		}
	}
}

// release gives back n bytes charged by reserve.
func (b *MapBudget) release(n uint64) { b.used.Add(-n) }

// The scopes of a MapLimitError.
const (
	ScopeSession = "session" // Config.MaxMapped
	ScopeProcess = "process" // the MapBudget (Config.MapBudget)
	ScopeLog     = "log"     // the dirty log a session's guest memory needs
)

// MapLimitError is a memory region or dirty log refused because mapping it
// would exceed a limit on the address space frontends take.
type MapLimitError struct {
	What  string // "SET_MEM_TABLE of 2 regions", "region at GPA 0x0", "dirty log"
	Asked uint64 // bytes it would map
	InUse uint64 // bytes already mapped that stay mapped (in Scope)
	Limit uint64 // the limit, bytes
	Scope string // ScopeSession, ScopeProcess or ScopeLog
	// MemEnd is, for ScopeLog, the end of the guest memory mapped (the
	// highest region's GPA + size), which Limit covers.
	MemEnd uint64
}

func (e *MapLimitError) Error() string {
	switch e.Scope {
	case ScopeSession:
		return fmt.Sprintf("%s: mapping %s more (%s mapped already) would exceed the session's limit of %s (MaxMapped)",
			e.What, sizeString(e.Asked), sizeString(e.InUse), sizeString(e.Limit))
	case ScopeLog:
		return fmt.Sprintf("%s: %d bytes, more than the %d bytes a log may have for the guest memory mapped (up to GPA %#x)",
			e.What, e.Asked, e.Limit, e.MemEnd)
	}
	return fmt.Sprintf("%s: mapping %s more (%s mapped already by all sessions) would exceed the %s budget of %s (MapBudget)",
		e.What, sizeString(e.Asked), sizeString(e.InUse), e.Scope, sizeString(e.Limit))
}

// sizeString writes n bytes exactly, with the largest binary unit that
// divides it, or in bytes: "1 TiB", "6 GiB", "4097 bytes".
func sizeString(n uint64) string {
	for _, u := range []struct {
		shift uint
		name  string
	}{{50, "PiB"}, {40, "TiB"}, {30, "GiB"}, {20, "MiB"}, {10, "KiB"}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d %s", n>>u.shift, u.name)
		}
	}
	if n >= 1<<20 {
		return fmt.Sprintf("%d bytes (%.1f MiB)", n, float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", n)
}

// Dirty log layout (vhost-user.rst "Migration"): one bit per 4 KiB page
// of guest-physical memory from address 0, page p is bit p%8 of byte p/8.
const (
	logPage  = 4096
	logChunk = logPage * 64 // what one 64-bit word of the log covers
	// logSlack is what a log may have beyond what the memory needs:
	// QEMU sizes its log in 64-bit words and adds 4 KiB
	// (hw/virtio/vhost.c, VHOST_LOG_BUFFER) to resize it less often.
	logSlack = 4096
)

// maxLogSize is the largest dirty log accepted for guest memory ending at
// end (exclusive): the 64-bit words covering it, as QEMU sizes its log,
// and logSlack (0 without memory).
func maxLogSize(end uint64) uint64 {
	if end == 0 {
		return 0
	}
	return 8*((end-1)/logChunk+1) + logSlack
}
