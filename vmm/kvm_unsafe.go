package vmm

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctlRetArg issues an ioctl whose argument is an integer and returns the
// ioctl's non-negative result.
func ioctlRetArg(fd int, req uint, arg uintptr) (int, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), arg)
		if errno == unix.EINTR && req != kvmRun {
			continue // see retryEINTR
		}
		if errno != 0 {
			return int(r), errno
		}
		return int(r), nil
	}
}

// retryEINTR runs an ioctl again while it fails with EINTR. Go's runtime
// signals its threads (goroutine preemption, SIGURG), and KVM's setup
// ioctls give up with EINTR when a signal is pending: seen as
// KVM_CREATE_VM failing in the nested test host. They have done nothing
// then, so trying again is right. KVM_RUN is the exception: its EINTR is
// how a vCPU is kicked out of the guest (VCPU.Run returns it).
func retryEINTR(f func() (int, error)) (int, error) {
	for {
		r, err := f()
		if err != unix.EINTR {
			return r, err
		}
	}
}

// ioctlBytes issues an ioctl whose argument points at buf, which holds the
// kernel structure in its little-endian wire layout. buf is Go memory kept
// alive for the duration of the call.
func ioctlBytes(fd int, req uint, buf []byte) error {
	_, err := ioctlBytesRet(fd, req, buf)
	return err
}

// hostAddr returns the host virtual address of a mapping.
func hostAddr(b []byte) uintptr { return uintptr(unsafe.Pointer(&b[0])) }

func putU16(b []byte, v uint16) { binary.LittleEndian.PutUint16(b, v) }
func putU32(b []byte, v uint32) { binary.LittleEndian.PutUint32(b, v) }
func putU64(b []byte, v uint64) { binary.LittleEndian.PutUint64(b, v) }
func getU16(b []byte) uint16    { return binary.LittleEndian.Uint16(b) }
func getU32(b []byte) uint32    { return binary.LittleEndian.Uint32(b) }
func getU64(b []byte) uint64    { return binary.LittleEndian.Uint64(b) }

// ioctlBytesRet is ioctlBytes returning the ioctl's result.
func ioctlBytesRet(fd int, req uint, buf []byte) (int, error) {
	return retryEINTR(func() (int, error) {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(unsafe.Pointer(&buf[0])))
		if errno != 0 {
			return int(r), errno
		}
		return int(r), nil
	})
}

// mapAligned maps the memory file at a 2 MiB aligned host address: a
// reservation one huge page larger, the file mapped over its aligned part,
// the rest given back.
func mapAligned(fd int, size uint64) ([]byte, error) {
	res, err := unix.MmapPtr(-1, 0, nil, uintptr(size+hugeAlign), unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("memory: reserve %d bytes: %w", size, err)
	}
	base := uintptr(res)
	aligned := unsafe.Add(res, ((base+hugeAlign-1)&^(hugeAlign-1))-base)
	p, err := unix.MmapPtr(fd, 0, aligned, uintptr(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_FIXED|unix.MAP_NORESERVE)
	if err != nil {
		_ = unix.MunmapPtr(res, uintptr(size+hugeAlign)) // undoing the reservation
		return nil, fmt.Errorf("memory: mmap %d bytes: %w", size, err)
	}
	// Give back the unused head and tail of the reservation (best effort:
	// failing leaks address space only).
	if head := uintptr(p) - base; head > 0 {
		_ = unix.MunmapPtr(res, head)
	}
	if tail := hugeAlign - (uintptr(p) - base); tail > 0 {
		_ = unix.MunmapPtr(unsafe.Add(p, size), tail)
	}
	return unsafe.Slice((*byte)(p), size), nil
}

// unmap releases a mapping made by mapAligned.
func unmap(b []byte) error {
	return unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(b)), uintptr(len(b)))
}
