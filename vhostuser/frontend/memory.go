package frontend

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/vhostuser/proto"
	"github.com/hvnet/hvnet/virtio"
)

// Region is a memory region to share, with the descriptor to map.
type Region struct {
	proto.MemRegion
	FD int
}

// Memory is memfd-backed guest memory mapped in this process, shareable
// with a backend. GPA is where it sits in guest-physical space.
type Memory struct {
	FD   int
	GPA  uint64
	Data []byte
}

// NewMemory creates size bytes of shared memory at gpa.
func NewMemory(size int, gpa uint64) (*Memory, error) {
	fd, err := unix.MemfdCreate("hvnet-vhost-frontend", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("ftruncate memfd to %d: %w", size, err)
	}
	b, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("mmap memfd: %w", err)
	}
	return &Memory{FD: fd, GPA: gpa, Data: b}, nil
}

// Close unmaps the memory and closes its descriptor.
func (m *Memory) Close() error {
	if m.Data != nil {
		unix.Munmap(m.Data)
		m.Data = nil
	}
	if m.FD >= 0 {
		unix.Close(m.FD)
		m.FD = -1
	}
	return nil
}

// UVA returns the user virtual address of guest address gpa in this
// process: ring addresses are sent this way (vhost-user.rst
// "SET_VRING_ADDR").
func (m *Memory) UVA(gpa uint64) uint64 { return m.base() + (gpa - m.GPA) }

// Region describes the whole memory for SET_MEM_TABLE or ADD_MEM_REG.
func (m *Memory) Region() Region {
	return Region{MemRegion: proto.MemRegion{GPA: m.GPA, Size: uint64(len(m.Data)), UVA: m.base()}, FD: m.FD}
}

// Virtio returns the memory as virtio guest memory (for a driver-side mock).
func (m *Memory) Virtio() (*virtio.Memory, error) {
	return virtio.NewMemory(virtio.Region{GPA: m.GPA, Data: m.Data})
}
