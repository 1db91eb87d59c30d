// Package frame is the one representation of an Ethernet frame moving
// between hvnet's ports (virtio-net devices of the VMM and of vhost-user
// sessions, the switch, AF_PACKET uplinks): its bytes and the offload
// metadata that travels with it, and the one codec of the virtio-net
// header that carries that metadata (virtio 1.2 §5.1.6, struct
// virtio_net_hdr; AF_PACKET's PACKET_VNET_HDR is the same struct). It is
// at the bottom of the import graph and imports nothing of hvnet's.
package frame

import (
	"encoding/binary"
	"runtime"
	"runtime/debug"
	"unsafe"
)

// Offload flags (virtio_net_hdr.flags).
const (
	NeedsCsum uint8 = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM: CsumStart/CsumOffset describe a partial checksum
	DataValid uint8 = 2 // VIRTIO_NET_HDR_F_DATA_VALID: the checksum is valid (towards a guest)
	RSCInfo   uint8 = 4 // VIRTIO_NET_HDR_F_RSC_INFO: RSC info in the checksum fields (needs RSC_EXT)
)

// GSO types (virtio_net_hdr.gso_type).
const (
	GSONone  uint8 = 0    // VIRTIO_NET_HDR_GSO_NONE
	GSOTCPv4 uint8 = 1    // VIRTIO_NET_HDR_GSO_TCPV4
	GSOUDP   uint8 = 3    // VIRTIO_NET_HDR_GSO_UDP (UFO)
	GSOTCPv6 uint8 = 4    // VIRTIO_NET_HDR_GSO_TCPV6
	GSOUDPL4 uint8 = 5    // VIRTIO_NET_HDR_GSO_UDP_L4 (USO)
	GSOECN   uint8 = 0x80 // VIRTIO_NET_HDR_GSO_ECN, or'ed into the type
)

// EthHdrLen is the shortest frame: an Ethernet header.
const EthHdrLen = 14

// VnetHdrLen is the size of struct virtio_net_hdr without num_buffers:
// the offload fields, which are what Offload holds. A modern virtio-net
// device's header adds num_buffers (12 bytes in all); AF_PACKET's
// PACKET_VNET_HDR is these 10.
const VnetHdrLen = 10

// Offload is the virtio-net header's offload metadata carried with a
// frame. Offsets count from the frame's first byte.
type Offload struct {
	Flags      uint8 // NeedsCsum, DataValid, RSCInfo
	GSOType    uint8 // GSONone, GSOTCPv4, GSOUDP, GSOTCPv6, GSOUDPL4, optionally | GSOECN
	HdrLen     uint16
	GSOSize    uint16
	CsumStart  uint16
	CsumOffset uint16
}

// None reports whether o asks for nothing (the zero Offload), in a few
// instructions: it is asked of every frame.
func (o *Offload) None() bool {
	return o.Flags|o.GSOType == 0 && o.HdrLen|o.GSOSize|o.CsumStart|o.CsumOffset == 0
}

// DecodeOffload reads the offload fields of a struct virtio_net_hdr from
// the first VnetHdrLen bytes of b (little endian: virtio 1.x, and
// AF_PACKET on little-endian hosts). b must be that long.
func DecodeOffload(b []byte) Offload {
	_ = b[VnetHdrLen-1]
	return Offload{
		Flags:      b[0],
		GSOType:    b[1],
		HdrLen:     binary.LittleEndian.Uint16(b[2:]),
		GSOSize:    binary.LittleEndian.Uint16(b[4:]),
		CsumStart:  binary.LittleEndian.Uint16(b[6:]),
		CsumOffset: binary.LittleEndian.Uint16(b[8:]),
	}
}

// Encode writes o into the first VnetHdrLen bytes of b, which must be
// that long.
func (o *Offload) Encode(b []byte) {
	_ = b[VnetHdrLen-1]
	b[0] = o.Flags
	b[1] = o.GSOType
	binary.LittleEndian.PutUint16(b[2:], o.HdrLen)
	binary.LittleEndian.PutUint16(b[4:], o.GSOSize)
	binary.LittleEndian.PutUint16(b[6:], o.CsumStart)
	binary.LittleEndian.PutUint16(b[8:], o.CsumOffset)
}

// Frame is one Ethernet frame, from its destination MAC, and its offload
// metadata. Data belongs to the caller of the call it is passed to: a
// callee copies what it keeps.
//
// A frame may come in two parts: Data, the head, in host memory, and Tail,
// the rest of the frame still in the sending tenant's memory (a virtio-net
// device's transmit buffer). Every decision about a frame is made from its
// head, which holds every header anyone parses (the device copies the
// whole frame when it does not); the tail is payload, read once per copy
// out of it, with ReadTail, and only by code that was told it may get
// tails (a Port with CapTail, a Sink that accepts them). The tenant can
// rewrite or unmap its tail at any moment: that changes the payload it
// sends, or drops the frame, and nothing else.
type Frame struct {
	Data []byte
	Tail []byte
	Off  Offload
}

// Len is the frame's length: head and tail.
func (f *Frame) Len() int { return len(f.Data) + len(f.Tail) }

// HeadLen is how much of a frame a virtio-net device copies into host
// memory before the switch sees it when the rest may stay behind as a
// tail: two cache lines, which hold every header the switch parses of a
// common frame (a VLAN tag, an IPv4 header with 20 bytes of options or an
// IPv6 header, and room for the longest TCP header: 18+40+60 = 118
// bytes). A frame whose headers run longer is copied whole.
const HeadLen = 128

// ReadTail copies tail, the tail of a frame (Frame.Tail), to dst, which
// must be as long, and reports whether it could: false when reading the
// tail faulted (the sending tenant shrank or unmapped that memory under
// it: a vhost-user frontend's ftruncate). Then dst holds part of it. The
// fault is the sender's: the caller drops the frame and carries on. A
// fault writing dst is not caught here; it panics on (the caller's own
// memory fault guard, if any, sees it).
func ReadTail(dst, tail []byte) (ok bool) {
	prev := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(prev)
		if r := recover(); r != nil {
			if !TailFault(r, tail) {
				panic(r)
			}
			ok = false
		}
	}()
	copy(dst, tail)
	return true
}

// TailFault reports whether r, a recovered panic, is a memory fault inside
// tail: for a caller that copies a tail under a fault guard of its own
// (runtime/debug.SetPanicOnFault) and recovers itself.
func TailFault(r any, tail []byte) bool {
	re, ok := r.(runtime.Error)
	if !ok || len(tail) == 0 {
		return false
	}
	a, ok := re.(interface{ Addr() uintptr })
	if !ok {
		return false
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(tail)))
	return a.Addr() >= start && a.Addr()-start < uintptr(len(tail))
}
