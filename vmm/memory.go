package vmm

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// MemRegion is one contiguous range of guest RAM: guest-physical [GPA,
// GPA+Size) lives at Offset in the memory file.
type MemRegion struct {
	GPA, Size, Offset uint64
}

// Memory is guest RAM backed by a memfd, so that it can be shared with
// vhost-user backends (they mmap the same file at the same offsets).
type Memory struct {
	fd      int
	size    uint64
	mapping []byte
	regions []MemRegion
}

// NewMemory creates memBytes of guest RAM laid out around the MMIO hole.
func NewMemory(memBytes uint64) (*Memory, error) {
	if memBytes == 0 || memBytes%(2<<20) != 0 {
		return nil, fmt.Errorf("memory: size %d bytes is not a positive multiple of 2 MiB", memBytes)
	}
	fd, err := unix.MemfdCreate("hvnet-guest-ram", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memory: memfd_create: %w", err)
	}
	if err := unix.Ftruncate(fd, int64(memBytes)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("memory: ftruncate memfd to %d bytes: %w", memBytes, err)
	}
	b, err := mapAligned(fd, memBytes)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	// Transparent huge pages let KVM map guest RAM with 2 MiB pages: far
	// fewer nested page faults while the kernel decompresses itself and
	// unpacks the initramfs. For a memfd (shmem) this takes effect where
	// /sys/kernel/mm/transparent_hugepage/shmem_enabled is advise or
	// always; elsewhere it is a no-op.
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE) // advisory only
	m := &Memory{fd: fd, size: memBytes, mapping: b}
	low, high := ramRegions(memBytes)
	m.regions = append(m.regions, MemRegion{GPA: 0, Size: low, Offset: 0})
	if high > 0 {
		m.regions = append(m.regions, MemRegion{GPA: mmioHoleEnd, Size: high, Offset: low})
	}
	return m, nil
}

// FD returns the memfd backing guest RAM.
func (m *Memory) FD() int { return m.fd }

// Size returns the amount of guest RAM in bytes.
func (m *Memory) Size() uint64 { return m.size }

// Regions returns the guest RAM regions.
func (m *Memory) Regions() []MemRegion { return append([]MemRegion(nil), m.regions...) }

// Host returns the host mapping of a region (for KVM and the devices).
func (m *Memory) Host(r MemRegion) []byte { return m.mapping[r.Offset : r.Offset+r.Size] }

// Slice returns guest memory [gpa, gpa+n) when it lies inside one region;
// an address outside RAM or an overflowing range is an error, never a panic.
func (m *Memory) Slice(gpa, n uint64) ([]byte, error) {
	end := gpa + n
	if end < gpa {
		return nil, fmt.Errorf("memory: range %#x+%#x overflows", gpa, n)
	}
	for _, r := range m.regions {
		if gpa >= r.GPA && end <= r.GPA+r.Size {
			off := r.Offset + (gpa - r.GPA)
			return m.mapping[off : off+n : off+n], nil
		}
	}
	return nil, fmt.Errorf("memory: range %#x+%#x is not inside guest RAM", gpa, n)
}

// Write copies b into guest memory at gpa.
func (m *Memory) Write(gpa uint64, b []byte) error {
	dst, err := m.Slice(gpa, uint64(len(b)))
	if err != nil {
		return err
	}
	copy(dst, b)
	return nil
}

// Close unmaps guest RAM and closes the memfd.
func (m *Memory) Close() error {
	var err error
	if m.mapping != nil {
		err = unmap(m.mapping)
		m.mapping = nil
	}
	if cerr := closeFD(&m.fd); err == nil {
		err = cerr
	}
	return err
}

// hugeAlign is the alignment that lets guest RAM use 2 MiB host pages.
const hugeAlign = 2 << 20
