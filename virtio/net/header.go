package vnet

import (
	"encoding/binary"
	"fmt"

	"github.com/hvnet/hvnet/frame"
)

// HdrLen is the size of struct virtio_net_hdr with VIRTIO_F_VERSION_1
// (virtio 1.2 §5.1.6: num_buffers is always present for modern devices).
const HdrLen = 12

// MaxFrameLen is the largest frame accepted: the largest IP datagram (65535
// bytes) behind an Ethernet header with one 802.1Q tag (18 bytes).
const MaxFrameLen = 65535 + 18

// Header is struct virtio_net_hdr_v1 (§5.1.6): the offload fields
// (frame.Offload, whose codec this uses) and num_buffers. The flag and GSO
// type values are package frame's.
type Header struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16
	GSOSize    uint16
	CsumStart  uint16
	CsumOffset uint16
	NumBuffers uint16
}

// DecodeHeader decodes a header from the first HdrLen bytes of b.
func DecodeHeader(b []byte) (Header, error) {
	if len(b) < HdrLen {
		return Header{}, fmt.Errorf("vnet: header of %d bytes, want %d", len(b), HdrLen)
	}
	o := frame.DecodeOffload(b)
	return Header{Flags: o.Flags, GSOType: o.GSOType, HdrLen: o.HdrLen, GSOSize: o.GSOSize,
		CsumStart: o.CsumStart, CsumOffset: o.CsumOffset,
		NumBuffers: binary.LittleEndian.Uint16(b[frame.VnetHdrLen:])}, nil
}

// Encode writes h into the first HdrLen bytes of b (which must be that long).
func (h Header) Encode(b []byte) {
	_ = b[HdrLen-1]
	o := h.Offload()
	o.Encode(b)
	binary.LittleEndian.PutUint16(b[frame.VnetHdrLen:], h.NumBuffers)
}

// Offload returns the header's offload fields.
func (h Header) Offload() frame.Offload {
	return frame.Offload{Flags: h.Flags, GSOType: h.GSOType, HdrLen: h.HdrLen,
		GSOSize: h.GSOSize, CsumStart: h.CsumStart, CsumOffset: h.CsumOffset}
}

// HeaderError is a header the device refuses, with the reason.
type HeaderError struct {
	Header   Header
	FrameLen int
	Reason   string
}

func (e *HeaderError) Error() string {
	return fmt.Sprintf("vnet: bad header %+v for a %d-byte frame: %s", e.Header, e.FrameLen, e.Reason)
}

// CheckTX validates a header the driver sent with a frame of frameLen bytes
// against the negotiated features (§5.1.6.2.1 driver requirements, as the
// device must distrust them): flags and GSO type must be ones the device
// offered (CSUM, HOST_TSO4/6, HOST_ECN, HOST_UFO, HOST_USO), a GSO frame
// needs a non-zero gso_size, and csum_start+csum_offset+2 and hdr_len must
// lie inside the frame.
func CheckTX(h Header, frameLen int, features uint64) error {
	if reason := checkTX(h, frameLen, features); reason != "" {
		return &HeaderError{Header: h, FrameLen: frameLen, Reason: reason}
	}
	return nil
}

// checkTX is CheckTX's test: the reason a header is refused, or "" (no
// error value: the transmit path keeps its own, and a guest's stream of
// bad headers allocates nothing).
func checkTX(h Header, frameLen int, features uint64) string {
	if h.Flags&^frame.NeedsCsum != 0 {
		return "flags other than NEEDS_CSUM"
	}
	if h.Flags&frame.NeedsCsum != 0 {
		if !has(features, FCsum) {
			return "NEEDS_CSUM without VIRTIO_NET_F_CSUM"
		}
		if int(h.CsumStart)+int(h.CsumOffset)+2 > frameLen {
			return "checksum field outside the frame"
		}
	}
	gso := h.GSOType &^ frame.GSOECN
	if h.GSOType&frame.GSOECN != 0 && (gso == frame.GSONone || !has(features, FHostECN)) {
		return "ECN without HOST_ECN or without GSO"
	}
	switch gso {
	case frame.GSONone:
		return ""
	case frame.GSOTCPv4:
		if !has(features, FHostTSO4) {
			return "TCPv4 GSO without HOST_TSO4"
		}
	case frame.GSOTCPv6:
		if !has(features, FHostTSO6) {
			return "TCPv6 GSO without HOST_TSO6"
		}
	case frame.GSOUDP:
		if !has(features, FHostUFO) {
			return "UDP GSO without HOST_UFO"
		}
	case frame.GSOUDPL4:
		if !has(features, FHostUSO) {
			return "UDP L4 GSO without HOST_USO"
		}
	default:
		return "unknown GSO type"
	}
	if h.GSOSize == 0 {
		return "GSO with gso_size 0"
	}
	if int(h.HdrLen) > frameLen {
		return "hdr_len beyond the frame"
	}
	return ""
}

// rxOffloadOK reports whether the driver can take a frame with offload o,
// given the guest offloads in effect (§5.1.6.4: the device only sets
// NEEDS_CSUM with GUEST_CSUM and GSO types the driver negotiated).
func rxOffloadOK(o frame.Offload, guest uint64) bool {
	if o.Flags&frame.NeedsCsum != 0 && !has(guest, FGuestCsum) {
		return false
	}
	gso := o.GSOType &^ frame.GSOECN
	if o.GSOType&frame.GSOECN != 0 && !has(guest, FGuestECN) {
		return false
	}
	switch gso {
	case frame.GSONone:
		return true
	case frame.GSOTCPv4:
		return has(guest, FGuestTSO4)
	case frame.GSOTCPv6:
		return has(guest, FGuestTSO6)
	case frame.GSOUDP:
		return has(guest, FGuestUFO)
	case frame.GSOUDPL4:
		return has(guest, FGuestUSO4) || has(guest, FGuestUSO6)
	}
	return false
}
