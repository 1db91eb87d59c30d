package virtio

import (
	"encoding/binary"
	"fmt"
	"sort"
)

// Region maps the guest-physical range [GPA, GPA+len(Data)) to host memory.
// In the VMM and the vhost-user backend Data is an mmap'd memfd; tests use
// plain slices.
type Region struct {
	GPA  uint64
	Data []byte
}

// Memory is guest memory as the device sees it: a set of non-overlapping
// regions. A Memory is immutable once built: on a remap, build a new one and
// hand it to the queues (users swap a pointer). It is safe for concurrent use;
// concurrent accesses to the same guest bytes are the caller's business, as
// with any shared memory.
//
// Every access is bounds- and overflow-checked and fails with *AddrError;
// nothing here panics on a guest address. Values are little-endian
// (virtio 1.2 §2.4: modern devices are little-endian) and are decoded from
// bytes, never by casting guest memory to Go types.
//
// When a DirtyLog is attached (WithLog), every write through Memory (Write,
// WriteParts) marks the written pages; a caller writing through a slice
// from Slice must call MarkDirty itself, after the write.
type Memory struct {
	regions []Region // sorted by GPA
	log     *DirtyLog
}

// NewMemory builds guest memory from regions, which must be non-empty, must
// not wrap around the 64-bit address space and must not overlap. The slice
// headers are copied; the host memory is shared.
func NewMemory(regions ...Region) (*Memory, error) {
	rs := make([]Region, len(regions))
	copy(rs, regions)
	sort.Slice(rs, func(i, j int) bool { return rs[i].GPA < rs[j].GPA })
	for i, r := range rs {
		n := uint64(len(r.Data))
		if n == 0 {
			return nil, fmt.Errorf("virtio: memory region at %#x is empty", r.GPA)
		}
		if r.GPA+n-1 < r.GPA {
			return nil, &AddrError{GPA: r.GPA, Len: n}
		}
		if i > 0 {
			p := rs[i-1]
			if p.GPA+uint64(len(p.Data))-1 >= r.GPA { // last bytes: a region may end at 2^64
				return nil, fmt.Errorf("virtio: memory regions at %#x (+%#x) and %#x overlap",
					p.GPA, len(p.Data), r.GPA)
			}
		}
	}
	return &Memory{regions: rs}, nil
}

// WithLog returns a Memory over the same regions whose writes mark pages in
// log (nil detaches the log).
func (m *Memory) WithLog(log *DirtyLog) *Memory {
	return &Memory{regions: m.regions, log: log}
}

// Log returns the attached dirty log, or nil.
func (m *Memory) Log() *DirtyLog { return m.log }

// Regions returns a copy of the region list, sorted by GPA.
func (m *Memory) Regions() []Region {
	rs := make([]Region, len(m.regions))
	copy(rs, m.regions)
	return rs
}

// find returns the index of the region holding gpa, or -1.
func (m *Memory) find(gpa uint64) int {
	lo, hi := 0, len(m.regions)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if m.regions[mid].GPA <= gpa {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	i := lo - 1
	if i < 0 {
		return -1
	}
	r := &m.regions[i]
	if gpa-r.GPA >= uint64(len(r.Data)) {
		return -1
	}
	return i
}

// Check reports whether [gpa, gpa+n) is wholly guest memory (it may span
// adjacent regions).
func (m *Memory) Check(gpa, n uint64) error {
	if !m.covers(gpa, n) {
		return &AddrError{GPA: gpa, Len: n}
	}
	return nil
}

// covers is Check without an error value (nothing allocated: the
// virtqueue's walk of a guest's bad chains).
func (m *Memory) covers(gpa, n uint64) bool {
	if n == 0 {
		return true
	}
	if gpa+n < gpa {
		return false
	}
	for cur, left := gpa, n; left > 0; {
		i := m.find(cur)
		if i < 0 {
			return false
		}
		r := &m.regions[i]
		avail := uint64(len(r.Data)) - (cur - r.GPA)
		if avail >= left {
			return true
		}
		cur += avail
		left -= avail
	}
	return true
}

// Slice returns the host bytes backing [gpa, gpa+n) when the range lies in
// one region: the zero-copy fast path. The slice aliases guest memory (the
// guest may change it at any time) and its capacity is n. Writes through it
// are not dirty-logged: write with Write or WriteParts, or call MarkDirty.
func (m *Memory) Slice(gpa, n uint64) ([]byte, error) {
	if b, ok := m.slice(gpa, n); ok {
		return b, nil
	}
	return nil, &AddrError{GPA: gpa, Len: n}
}

// slice is Slice without an error value.
func (m *Memory) slice(gpa, n uint64) ([]byte, bool) {
	if gpa+n < gpa {
		return nil, false
	}
	i := m.find(gpa)
	if i < 0 {
		return nil, false
	}
	r := &m.regions[i]
	off := gpa - r.GPA
	if n > uint64(len(r.Data))-off {
		return nil, false
	}
	return r.Data[off : off+n : off+n], true
}

// Read copies guest memory at gpa into dst. On error nothing is copied.
func (m *Memory) Read(gpa uint64, dst []byte) error {
	if b, err := m.Slice(gpa, uint64(len(dst))); err == nil {
		copy(dst, b)
		return nil
	}
	if err := m.Check(gpa, uint64(len(dst))); err != nil {
		return err
	}
	for len(dst) > 0 {
		r := &m.regions[m.find(gpa)]
		n := copy(dst, r.Data[gpa-r.GPA:])
		dst = dst[n:]
		gpa += uint64(n)
	}
	return nil
}

// Write copies src into guest memory at gpa and marks the pages dirty when a
// log is attached. On error nothing is written.
func (m *Memory) Write(gpa uint64, src []byte) error {
	if b, err := m.Slice(gpa, uint64(len(src))); err == nil {
		copy(b, src)
	} else {
		if err := m.Check(gpa, uint64(len(src))); err != nil {
			return err
		}
		for cur, s := gpa, src; len(s) > 0; {
			r := &m.regions[m.find(cur)]
			n := copy(r.Data[cur-r.GPA:], s)
			s = s[n:]
			cur += uint64(n)
		}
	}
	m.MarkDirty(gpa, uint64(len(src)))
	return nil
}

// WriteParts writes head and then tail into guest memory from gpa, as one
// Write of both would (a header and the frame behind it, without staging
// them together), marks the pages dirty when a log is attached, and fails
// with nothing written if the range is not all guest memory.
func (m *Memory) WriteParts(gpa uint64, head, tail []byte) error {
	n := uint64(len(head) + len(tail))
	if b, err := m.Slice(gpa, n); err == nil {
		copy(b[copy(b, head):], tail)
		m.MarkDirty(gpa, n)
		return nil
	}
	if err := m.Check(gpa, n); err != nil {
		return err
	}
	_ = m.Write(gpa, head) // cannot fail: checked
	return m.Write(gpa+uint64(len(head)), tail)
}

// MarkDirty marks [gpa, gpa+n) in the attached dirty log, if any. Prefer
// Write and WriteParts, which mark what they write; a caller writing
// through a slice from Slice marks after the write (marking first, a log
// reader could copy the page in between and clear the mark).
func (m *Memory) MarkDirty(gpa, n uint64) {
	if m.log != nil {
		m.log.Mark(gpa, n)
	}
}

// ReadU8 reads one byte at gpa.
func (m *Memory) ReadU8(gpa uint64) (uint8, error) {
	var b [1]byte
	err := m.Read(gpa, b[:])
	return b[0], err
}

// ReadU16 reads a little-endian uint16 at gpa.
func (m *Memory) ReadU16(gpa uint64) (uint16, error) {
	var b [2]byte
	err := m.Read(gpa, b[:])
	return binary.LittleEndian.Uint16(b[:]), err
}

// ReadU32 reads a little-endian uint32 at gpa.
func (m *Memory) ReadU32(gpa uint64) (uint32, error) {
	var b [4]byte
	err := m.Read(gpa, b[:])
	return binary.LittleEndian.Uint32(b[:]), err
}

// ReadU64 reads a little-endian uint64 at gpa.
func (m *Memory) ReadU64(gpa uint64) (uint64, error) {
	var b [8]byte
	err := m.Read(gpa, b[:])
	return binary.LittleEndian.Uint64(b[:]), err
}

// WriteU8 writes one byte at gpa.
func (m *Memory) WriteU8(gpa uint64, v uint8) error {
	b := [1]byte{v}
	return m.Write(gpa, b[:])
}

// WriteU16 writes v little-endian at gpa.
func (m *Memory) WriteU16(gpa uint64, v uint16) error {
	var b [2]byte
	binary.LittleEndian.PutUint16(b[:], v)
	return m.Write(gpa, b[:])
}

// WriteU32 writes v little-endian at gpa.
func (m *Memory) WriteU32(gpa uint64, v uint32) error {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	return m.Write(gpa, b[:])
}

// WriteU64 writes v little-endian at gpa.
func (m *Memory) WriteU64(gpa uint64, v uint64) error {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	return m.Write(gpa, b[:])
}
