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
}

func mapLog(d proto.LogDesc, fd int) (*dirtyLog, error) {
	if d.Size == 0 || d.Size > 1<<40 || d.Offset > 1<<62 || d.Offset%uint64(unix.Getpagesize()) != 0 {
		return nil, fmt.Errorf("dirty log of %#x bytes at offset %#x is invalid", d.Size, d.Offset)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("dirty log: fstat fd %d: %w", fd, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || uint64(st.Size) < d.Offset+d.Size {
		return nil, fmt.Errorf("dirty log of %#x bytes at offset %#x does not fit in fd %d (%d bytes)", d.Size, d.Offset, fd, st.Size)
	}
	m, err := unix.Mmap(fd, int64(d.Offset), int(d.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap dirty log (%#x bytes at offset %#x): %w", d.Size, d.Offset, err)
	}
	l, err := virtio.NewDirtyLogShared(m)
	if err != nil {
		unix.Munmap(m)
		return nil, err
	}
	return &dirtyLog{mapping: m, log: l}, nil
}

func (d *dirtyLog) unmap() {
	if d.mapping != nil {
		unix.Munmap(d.mapping)
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
