package netport

import (
	"unsafe"

	vswitch "hvnet/switch"
	vnet "hvnet/virtio/net"
)

// The two Frame types must have one layout for the in-place conversion.
// These constant expressions fail to compile (negative array length)
// if the sizes or any field offset ever differ.
var (
	_ [unsafe.Sizeof(vnet.Frame{}) - unsafe.Sizeof(vswitch.Frame{})]byte
	_ [unsafe.Sizeof(vswitch.Frame{}) - unsafe.Sizeof(vnet.Frame{})]byte
	_ [unsafe.Offsetof(vnet.Frame{}.Off) - unsafe.Offsetof(vswitch.Frame{}.Off)]byte
	_ [unsafe.Offsetof(vswitch.Frame{}.Off) - unsafe.Offsetof(vnet.Frame{}.Off)]byte
	_ [unsafe.Sizeof(vnet.Offload{}) - unsafe.Sizeof(vswitch.Offload{})]byte
	_ [unsafe.Sizeof(vswitch.Offload{}) - unsafe.Sizeof(vnet.Offload{})]byte
	_ [unsafe.Offsetof(vnet.Offload{}.CsumOffset) - unsafe.Offsetof(vswitch.Offload{}.CsumOffset)]byte
	_ [unsafe.Offsetof(vswitch.Offload{}.CsumOffset) - unsafe.Offsetof(vnet.Offload{}.CsumOffset)]byte
	_ [unsafe.Offsetof(vnet.Offload{}.HdrLen) - unsafe.Offsetof(vswitch.Offload{}.HdrLen)]byte
	_ [unsafe.Offsetof(vswitch.Offload{}.HdrLen) - unsafe.Offsetof(vnet.Offload{}.HdrLen)]byte
)

func toSwitch(f []vnet.Frame) []vswitch.Frame {
	return unsafe.Slice((*vswitch.Frame)(unsafe.Pointer(unsafe.SliceData(f))), len(f))
}

func toVnet(f []vswitch.Frame) []vnet.Frame {
	return unsafe.Slice((*vnet.Frame)(unsafe.Pointer(unsafe.SliceData(f))), len(f))
}
