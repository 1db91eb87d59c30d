package frontend

import "unsafe"

// base is the address of the mapping in this process.
func (m *Memory) base() uint64 { return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(m.Data)))) }
