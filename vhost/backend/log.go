package backend

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/vhostuser/proto"
	"github.com/hvnet/hvnet/virtio"
)

// dirtyLog is the frontend's shared dirty-page bitmap (vhost-user.rst
// "Migration" and SET_LOG_BASE with LOG_SHMFD): one bit per 4 KiB page of
// guest-physical memory the backend wrote, set atomically.
type dirtyLog struct {
	mapping []byte
	log     *virtio.DirtyLog
	budget  *MapBudget // charged len(mapping) bytes until unmap
}

// checkLog checks d and fd: the log must be page-aligned in a file on
// tmpfs or hugetlbfs (checkMemFD) that holds it.
func checkLog(d proto.LogDesc, fd int) error {
	if d.Size == 0 || d.Size > maxRegionMapping || d.Offset > 1<<62 || d.Offset%uint64(unix.Getpagesize()) != 0 {
		return fmt.Errorf("dirty log of %#x bytes at offset %#x is invalid", d.Size, d.Offset)
	}
	return checkMemFD("dirty log", fd, d.Offset+d.Size)
}

// mapLog maps the log checked by checkLog, charging it to b.
func mapLog(d proto.LogDesc, fd int, b *MapBudget) (*dirtyLog, error) {
	if inUse, ok := b.reserve(d.Size); !ok {
		return nil, &MapLimitError{What: "dirty log", Asked: d.Size, InUse: inUse, Limit: b.Max(), Scope: ScopeProcess}
	}
	m, err := unix.Mmap(fd, int64(d.Offset), int(d.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		b.release(d.Size)
		return nil, fmt.Errorf("mmap dirty log (%#x bytes at offset %#x): %w", d.Size, d.Offset, err)
	}
	l, err := virtio.NewDirtyLogShared(m)
	if err != nil {
		unix.Munmap(m)
		b.release(d.Size)
		return nil, err
	}
	return &dirtyLog{mapping: m, log: l, budget: b}, nil
}

func (d *dirtyLog) unmap() {
	if d.mapping != nil {
		n := uint64(len(d.mapping))
		unix.Munmap(d.mapping)
		d.budget.release(n)
		d.mapping = nil
	}
}

// activeLog is the log writes go to: only while VHOST_F_LOG_ALL is set.
func (s *Session) activeLog() *virtio.DirtyLog {
	if s.dlog == nil || s.features&(1<<proto.FLogAll) == 0 {
		return nil
	}
	return s.dlog.log
}
