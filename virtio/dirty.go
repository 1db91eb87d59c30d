package virtio

import "sync/atomic"

// PageSize is the granularity of the dirty log: one bit per 4 KiB page of
// guest-physical memory (vhost-user.rst, "Migration": VHOST_LOG_PAGE).
const PageSize = 4096

// DirtyLog is a bitmap with one bit per guest page written by the device, for
// live migration (vhost-user VHOST_USER_SET_LOG_BASE / LOG_SHMFD). Bit p is
// bit p%8 of byte p/8 (on a little-endian host, as in vhost-user); bits are
// set atomically so the frontend may scan and clear them concurrently. Writes
// beyond the end of the log are ignored.
type DirtyLog struct {
	words []uint64
}

// NewDirtyLog returns a zeroed log covering pages pages, on the Go heap.
func NewDirtyLog(pages uint64) *DirtyLog {
	return &DirtyLog{words: make([]uint64, (pages+63)/64)}
}

// Pages returns the number of pages the log covers.
func (l *DirtyLog) Pages() uint64 { return uint64(len(l.words)) * 64 }

// Mark sets the bits of every page touched by [gpa, gpa+n). It is kept
// out of line so that Memory.MarkDirty, asked for every used entry and
// every received frame, inlines into its nil check.
//
//go:noinline
func (l *DirtyLog) Mark(gpa, n uint64) {
	if n == 0 {
		return
	}
	last := gpa + n - 1
	if last < gpa {
		last = ^uint64(0)
	}
	for p := gpa / PageSize; p <= last/PageSize; p++ {
		w := p / 64
		if w >= uint64(len(l.words)) {
			return
		}
		if atomic.LoadUint64(&l.words[w])&(1<<(p%64)) == 0 {
			atomic.OrUint64(&l.words[w], 1<<(p%64))
		}
	}
}

// Dirty reports whether page p is marked.
func (l *DirtyLog) Dirty(p uint64) bool {
	w := p / 64
	if w >= uint64(len(l.words)) {
		return false
	}
	return atomic.LoadUint64(&l.words[w])&(1<<(p%64)) != 0
}
