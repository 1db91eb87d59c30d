package uplink

import (
	"encoding/binary"

	vswitch "hvnet/switch"
)

// vnetHdrLen is the size of struct virtio_net_hdr without num_buffers
// (virtio 1.2 §5.1.6), which is what PACKET_VNET_HDR prepends. AF_PACKET
// uses the host's byte order (vio_le(): little endian on x86).
const vnetHdrLen = 10

// decodeVnetHdr reads a struct virtio_net_hdr (virtio 1.2 §5.1.6):
// flags u8, gso_type u8, hdr_len, gso_size, csum_start, csum_offset u16.
func decodeVnetHdr(b []byte) vswitch.Offload {
	_ = b[vnetHdrLen-1]
	return vswitch.Offload{
		Flags:      b[0],
		GSOType:    b[1],
		HdrLen:     binary.LittleEndian.Uint16(b[2:]),
		GSOSize:    binary.LittleEndian.Uint16(b[4:]),
		CsumStart:  binary.LittleEndian.Uint16(b[6:]),
		CsumOffset: binary.LittleEndian.Uint16(b[8:]),
	}
}

// encodeVnetHdr writes o as a struct virtio_net_hdr into b.
func encodeVnetHdr(b []byte, o *vswitch.Offload) {
	_ = b[vnetHdrLen-1]
	b[0] = o.Flags
	b[1] = o.GSOType
	binary.LittleEndian.PutUint16(b[2:], o.HdrLen)
	binary.LittleEndian.PutUint16(b[4:], o.GSOSize)
	binary.LittleEndian.PutUint16(b[6:], o.CsumStart)
	binary.LittleEndian.PutUint16(b[8:], o.CsumOffset)
}
