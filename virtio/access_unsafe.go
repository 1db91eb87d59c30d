package virtio

import (
	"math/bits"
	"unsafe"
)

// The rings' indexes, flags and event fields are read and written while
// the other side (a guest's vCPU, a DPDK lcore) runs on another CPU, and
// each of them must be one memory access: a driver that reads a used
// index half written (the new low byte, the old high byte) sees it move
// back by 255 and, in DPDK's split-ring transmit path, frees stale
// descriptors again, corrupting its free list (it then made the invalid
// head 32768 available). binary.LittleEndian's byte-wise code is merged
// into one access only by the optimiser, and not under the race
// detector, where it is two byte stores with calls between them: hvnet
// built with -race broke DPDK peers within seconds under load (found by
// uplink's TestAllocationWithDPDK; the same tear explains a transmit
// ring fault seen once in CI). Load16 and Store16 are one 16-bit access
// whatever the build; virtio is little-endian (§2.4), so a big-endian
// host swaps the value, not the bytes in memory.

// nativeLE: the host is little-endian (amd64, arm64, ...).
var nativeLE = func() bool { v := uint16(1); return *(*byte)(unsafe.Pointer(&v)) == 1 }()

// Load16 reads the little-endian 16-bit field at b[0:2] in one access. b
// must be 2-byte aligned (every ring field is, §2.7).
func Load16(b []byte) uint16 {
	_ = b[1]
	v := *(*uint16)(unsafe.Pointer(unsafe.SliceData(b)))
	if !nativeLE {
		v = bits.ReverseBytes16(v)
	}
	return v
}

// Store16 writes v as the little-endian 16-bit field at b[0:2] in one
// access. b must be 2-byte aligned.
func Store16(b []byte, v uint16) {
	_ = b[1]
	if !nativeLE {
		v = bits.ReverseBytes16(v)
	}
	*(*uint16)(unsafe.Pointer(unsafe.SliceData(b))) = v
}
