package backend

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/vhostuser/proto"
	"github.com/hvnet/hvnet/virtio"
)

// MaxMemSlots is the answer to GET_MAX_MEM_SLOTS: how many regions
// ADD_MEM_REG may hold (the same limit as DPDK's and rust-vmm's backends).
const MaxMemSlots = 32

// maxRegionMapping bounds one region's mapping whatever the limits: 64 TiB,
// half of x86-64's 128 TiB user address space.
const maxRegionMapping = 1 << 46

// region is one mapped frontend memory region.
type region struct {
	proto.MemRegion
	mapping []byte     // what mmap returned (to munmap)
	data    []byte     // the region's bytes: mapping[delta:delta+Size]
	budget  *MapBudget // charged len(mapping) bytes until unmap
}

// span is where a region's mapping lies in its file: the page-aligned
// offset mmap is given, the region's start within the mapping, and the
// mapping's length.
type span struct{ base, delta, length uint64 }

// regionSpan checks r (see checkRegion) and returns its mapping's span.
func regionSpan(r proto.MemRegion) (span, error) {
	if err := checkRegion(r); err != nil {
		return span{}, err
	}
	page := uint64(unix.Getpagesize())
	base := r.MmapOffset &^ (page - 1)
	delta := r.MmapOffset - base
	length := delta + r.Size
	if length < r.Size || length > maxRegionMapping || base > 1<<62 {
		return span{}, fmt.Errorf("region at GPA %#x: size %#x at offset %#x is too large (a region maps at most %s)",
			r.GPA, r.Size, r.MmapOffset, sizeString(maxRegionMapping))
	}
	return span{base: base, delta: delta, length: length}, nil
}

// checkRegionFD checks that fd can back r: memory the backend may map
// (checkMemFD) holding the region's bytes.
func checkRegionFD(r proto.MemRegion, fd int) error {
	return checkMemFD(fmt.Sprintf("region at GPA %#x", r.GPA), fd, r.MmapOffset+r.Size)
}

// mapRegion maps fd for r (checked by regionSpan and checkRegionFD),
// charging the mapping to b. The fd is not closed. The error is a
// *MapLimitError when b has no room.
func mapRegion(r proto.MemRegion, sp span, fd int, b *MapBudget) (*region, error) {
	if inUse, ok := b.reserve(sp.length); !ok {
		return nil, &MapLimitError{What: fmt.Sprintf("region at GPA %#x", r.GPA), Asked: sp.length,
			InUse: inUse, Limit: b.Max(), Scope: ScopeProcess}
	}
	m, err := unix.Mmap(fd, int64(sp.base), int(sp.length), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		b.release(sp.length)
		return nil, fmt.Errorf("mmap region at GPA %#x (%#x bytes at offset %#x of fd %d): %w", r.GPA, r.Size, r.MmapOffset, fd, err)
	}
	end := sp.delta + r.Size
	return &region{MemRegion: r, mapping: m, data: m[sp.delta:end:end], budget: b}, nil
}

func (r *region) unmap() {
	if r.mapping != nil {
		n := uint64(len(r.mapping))
		unix.Munmap(r.mapping)
		r.budget.release(n)
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

// The filesystems whose files the backend maps (statfs's f_type): shared
// memory that lives in RAM, where a page fault never waits on anyone but
// the kernel. QEMU (memory-backend-memfd, memory-backend-file on /dev/shm
// or /dev/hugepages), DPDK (hugetlbfs, or a memfd with --no-huge) and
// libvirt (memfd, hugepages) share guest memory from these.
const (
	tmpfsMagic     = unix.TMPFS_MAGIC     // memfd_create, /dev/shm, any tmpfs
	hugetlbfsMagic = unix.HUGETLBFS_MAGIC // hugetlbfs mounts, memfd_create(MFD_HUGETLB)
)

// MemFDError is a memory region's or the dirty log's descriptor refused for
// what it is: not a regular file, or a file on a filesystem other than
// tmpfs and hugetlbfs. A file on FUSE (served by the frontend itself), NFS
// or a disk can make a page fault on the mapping wait forever (no SIGBUS:
// the thread just sleeps in the kernel), and every garbage collection
// then waits for that thread: the whole daemon would freeze.
type MemFDError struct {
	What  string // "region at GPA 0x100000", "dirty log"
	FD    int
	Kind  string // what the descriptor is when it is not a regular file, e.g. "a socket"
	Magic uint32 // otherwise the file's filesystem (statfs f_type)
}

func (e *MemFDError) Error() string {
	if e.Kind != "" {
		return fmt.Sprintf("%s: fd %d is %s, not a file on tmpfs (a memfd, /dev/shm) or hugetlbfs", e.What, e.FD, e.Kind)
	}
	return fmt.Sprintf("%s: fd %d is a file on %s (filesystem magic %#x), not on tmpfs (a memfd, /dev/shm) or hugetlbfs, "+
		"the only filesystems whose memory is mapped (a page fault on another could block the backend forever)",
		e.What, e.FD, fsName(e.Magic), e.Magic)
}

// checkMemFD checks that fd, the memory for what, is a regular file on
// tmpfs or hugetlbfs (else a *MemFDError) of at least size bytes: a
// mapping beyond the end of the file would fault on first access.
func checkMemFD(what string, fd int, size uint64) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("%s: fstat fd %d: %w", what, fd, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		kind := "an eventfd"
		var ne *virtio.NotEventFDError
		if err := virtio.CheckEventFD(fd); errors.As(err, &ne) {
			kind = ne.Kind
		} else if err != nil {
			kind = fmt.Sprintf("not a regular file (mode %#o)", st.Mode)
		}
		return &MemFDError{What: what, FD: fd, Kind: kind}
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		return fmt.Errorf("%s: fstatfs fd %d: %w", what, fd, err)
	}
	if m := uint32(fs.Type); m != tmpfsMagic && m != hugetlbfsMagic {
		return &MemFDError{What: what, FD: fd, Magic: m}
	}
	if uint64(st.Size) < size {
		return fmt.Errorf("%s: %#x bytes do not fit in fd %d (a file of %d bytes)", what, size, fd, st.Size)
	}
	return nil
}

// fsName names a filesystem by its statfs magic (linux/magic.h).
func fsName(m uint32) string {
	switch m {
	case 0xef53:
		return "ext2/ext3/ext4"
	case 0x58465342:
		return "xfs"
	case 0x9123683e:
		return "btrfs"
	case 0xf2f52010:
		return "f2fs"
	case 0x2fc12fc1:
		return "zfs"
	case 0xca451a4e:
		return "bcachefs"
	case 0x65735546:
		return "fuse"
	case 0x6969:
		return "nfs"
	case 0xff534d42:
		return "cifs"
	case 0xfe534d42:
		return "smb2"
	case 0x01021997:
		return "9p"
	case 0x00c36400:
		return "ceph"
	case 0x794c7630:
		return "overlayfs"
	case 0x858458f6:
		return "ramfs"
	case 0x73717368:
		return "squashfs"
	case 0x9660:
		return "iso9660"
	case 0x4d44:
		return "vfat"
	case 0x2011bab0:
		return "exfat"
	case 0x5346544e:
		return "ntfs"
	case 0x9fa0:
		return "proc"
	case 0x62656572:
		return "sysfs"
	case 0x5345434d:
		return "secretmem"
	case 0x1cd1:
		return "devpts"
	}
	return "an unknown filesystem"
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
