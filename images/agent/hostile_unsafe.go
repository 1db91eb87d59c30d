package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The hostile driver's raw memory: a mapped BAR accessed with loads and
// stores of exactly the register's width, and locked pages whose
// guest-physical addresses the device is given.

// bar is a memory BAR mapped from /sys/bus/pci/devices/ADDR/resourceN.
type bar struct{ b []byte }

func mapBAR(path string) (*bar, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_SYNC, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	return &bar{b: b}, nil
}

func (m *bar) unmap() { _ = unix.Munmap(m.b) }

func (m *bar) at(off, n int) unsafe.Pointer {
	_ = m.b[off+n-1] // bounds: panics (caught by the caller) rather than touching other memory
	return unsafe.Pointer(&m.b[off])
}

// The accessors are not inlined, so that every call is one access of its
// width and a polling loop reloads the register.
//
//go:noinline
func (m *bar) read8(off int) uint8 { return *(*uint8)(m.at(off, 1)) }

//go:noinline
func (m *bar) read16(off int) uint16 { return *(*uint16)(m.at(off, 2)) }

//go:noinline
func (m *bar) read32(off int) uint32 { return *(*uint32)(m.at(off, 4)) }

//go:noinline
func (m *bar) write8(off int, v uint8) { *(*uint8)(m.at(off, 1)) = v }

//go:noinline
func (m *bar) write16(off int, v uint16) { *(*uint16)(m.at(off, 2)) = v }

//go:noinline
func (m *bar) write32(off int, v uint32) { *(*uint32)(m.at(off, 4)) = v }

// dma is locked anonymous memory with the guest-physical address of each
// page (there is no IOMMU: the device sees guest-physical addresses).
type dma struct {
	b    []byte
	pfns []uint64
}

const pageSize = 4096

// allocDMA maps and locks pages and reads their frame numbers from
// /proc/self/pagemap (bits 0-54: PFN, bit 63: present; root sees PFNs).
func allocDMA(pages int) (*dma, error) {
	b, err := unix.Mmap(-1, 0, pages*pageSize, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE|unix.MAP_LOCKED)
	if err != nil {
		return nil, fmt.Errorf("mmap %d pages: %w", pages, err)
	}
	for i := 0; i < len(b); i += pageSize {
		b[i] = 1 // fault in a private page of its own
		b[i] = 0
	}
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d := &dma{b: b}
	base := uintptr(unsafe.Pointer(&b[0]))
	var e [8]byte
	for i := 0; i < pages; i++ {
		va := base + uintptr(i*pageSize)
		if _, err := f.ReadAt(e[:], int64(va/pageSize)*8); err != nil {
			return nil, fmt.Errorf("pagemap: %w", err)
		}
		v := binary.LittleEndian.Uint64(e[:])
		pfn := v & (1<<55 - 1)
		if v>>63 == 0 || pfn == 0 {
			return nil, fmt.Errorf("pagemap: page %d at %#x not present or PFN hidden (%#x)", i, va, v)
		}
		d.pfns = append(d.pfns, pfn)
	}
	return d, nil
}

// gpa is the guest-physical address of byte off.
func (d *dma) gpa(off int) uint64 {
	return d.pfns[off/pageSize]*pageSize + uint64(off%pageSize)
}
