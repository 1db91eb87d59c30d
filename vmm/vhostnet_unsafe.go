package vmm

import "unsafe"

// sliceAddr is the address of b's first byte in this process.
func sliceAddr(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) }
