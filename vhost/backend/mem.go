package backend

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/vhostuser/proto"
	"github.com/hvnet/hvnet/virtio"
)

// MaxMemSlots is the answer to GET_MAX_MEM_SLOTS: how many regions
// ADD_MEM_REG may hold (the same limit as DPDK's and rust-vmm's backends).
const MaxMemSlots = 32

// region is one mapped frontend memory region.
type region struct {
	proto.MemRegion
	mapping []byte // what mmap returned (to munmap)
	data    []byte // the region's bytes: mapping[delta:delta+Size]
}

// mapRegion checks r and maps fd at r.MmapOffset. The fd is not closed.
func mapRegion(r proto.MemRegion, fd int) (*region, error) {
	if err := checkRegion(r); err != nil {
		return nil, err
	}
	// A mapping beyond the end of the file would fault (SIGBUS) on first
	// access and take the whole process down: check against its size.
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("region at GPA %#x: fstat fd %d: %w", r.GPA, fd, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || uint64(st.Size) < r.MmapOffset+r.Size {
		return nil, fmt.Errorf("region at GPA %#x: %#x bytes at offset %#x do not fit in fd %d (a file of %d bytes)",
			r.GPA, r.Size, r.MmapOffset, fd, st.Size)
	}
	page := uint64(unix.Getpagesize())
	base := r.MmapOffset &^ (page - 1)
	delta := r.MmapOffset - base
	length := delta + r.Size
	if length < r.Size || length > 1<<46 || base > 1<<62 {
		return nil, fmt.Errorf("region at GPA %#x: size %#x at offset %#x is too large", r.GPA, r.Size, r.MmapOffset)
	}
	m, err := unix.Mmap(fd, int64(base), int(length), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap region at GPA %#x (%#x bytes at offset %#x of fd %d): %w", r.GPA, r.Size, r.MmapOffset, fd, err)
	}
	return &region{MemRegion: r, mapping: m, data: m[delta : delta+r.Size : delta+r.Size]}, nil
}

func (r *region) unmap() {
	if r.mapping != nil {
		unix.Munmap(r.mapping)
		r.mapping, r.data = nil, nil
	}
}

// checkRegion rejects empty regions and ranges that wrap around.
func checkRegion(r proto.MemRegion) error {
	switch {
	case r.Size == 0:
		return fmt.Errorf("region at GPA %#x is empty", r.GPA)
	case r.GPA+r.Size < r.GPA || r.UVA+r.Size < r.UVA || r.MmapOffset+r.Size < r.MmapOffset:
		return fmt.Errorf("region GPA %#x UVA %#x offset %#x size %#x overflows", r.GPA, r.UVA, r.MmapOffset, r.Size)
	}
	return nil
}

// checkOverlap rejects regions whose guest-physical or user-virtual
// ranges overlap.
func checkOverlap(rs []*region) error {
	for i, a := range rs {
		for _, b := range rs[i+1:] {
			if a.GPA < b.GPA+b.Size && b.GPA < a.GPA+a.Size {
				return fmt.Errorf("regions at GPA %#x (+%#x) and %#x (+%#x) overlap", a.GPA, a.Size, b.GPA, b.Size)
			}
			if a.UVA < b.UVA+b.Size && b.UVA < a.UVA+a.Size {
				return fmt.Errorf("regions at UVA %#x (+%#x) and %#x (+%#x) overlap", a.UVA, a.Size, b.UVA, b.Size)
			}
		}
	}
	return nil
}

// buildMemory returns guest memory over rs (nil when rs is empty).
func buildMemory(rs []*region, log *virtio.DirtyLog) (*virtio.Memory, error) {
	if len(rs) == 0 {
		return nil, nil
	}
	vr := make([]virtio.Region, len(rs))
	for i, r := range rs {
		vr[i] = virtio.Region{GPA: r.GPA, Data: r.data}
	}
	m, err := virtio.NewMemory(vr...)
	if err != nil {
		return nil, err
	}
	if log != nil {
		m = m.WithLog(log)
	}
	return m, nil
}

// uvaToGPA translates a frontend user virtual address range to a
// guest-physical address through the regions' userspace_addr
// (vhost-user.rst "SET_VRING_ADDR": ring addresses are in the frontend's
// address space).
func uvaToGPA(rs []*region, uva, n uint64) (uint64, bool) {
	for _, r := range rs {
		if uva >= r.UVA && uva-r.UVA < r.Size && n <= r.Size-(uva-r.UVA) {
			return r.GPA + (uva - r.UVA), true
		}
	}
	return 0, false
}
