package vnet

import (
	"encoding/binary"
	"fmt"
)

// HdrLen is the size of struct virtio_net_hdr with VIRTIO_F_VERSION_1
// (virtio 1.2 §5.1.6: num_buffers is always present for modern devices).
const HdrLen = 12

// Header flags, §5.1.6.
const (
	HdrFNeedsCsum = 1 // csum_start/csum_offset describe a partial checksum
	HdrFDataValid = 2 // the checksum is valid (RX only)
	HdrFRSCInfo   = 4 // RSC info in csum fields (RX only, needs RSC_EXT)
)

// GSO types, §5.1.6.
const (
	GSONone  = 0
	GSOTCPv4 = 1
	GSOUDP   = 3
	GSOTCPv6 = 4
	GSOUDPL4 = 5
	GSOECN   = 0x80
)

// EthHdrLen is the minimum frame: an Ethernet header.
const EthHdrLen = 14

// MaxFrameLen is the largest frame accepted: the largest IP datagram (65535
// bytes) behind an Ethernet header with one 802.1Q tag (18 bytes).
const MaxFrameLen = 65535 + 18

// Header is struct virtio_net_hdr_v1 (§5.1.6).
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
	return Header{
		Flags:      b[0],
		GSOType:    b[1],
		HdrLen:     binary.LittleEndian.Uint16(b[2:]),
		GSOSize:    binary.LittleEndian.Uint16(b[4:]),
		CsumStart:  binary.LittleEndian.Uint16(b[6:]),
		CsumOffset: binary.LittleEndian.Uint16(b[8:]),
		NumBuffers: binary.LittleEndian.Uint16(b[10:]),
	}, nil
}

// Encode writes h into the first HdrLen bytes of b (which must be that long).
func (h Header) Encode(b []byte) {
	_ = b[HdrLen-1]
	b[0] = h.Flags
	b[1] = h.GSOType
	binary.LittleEndian.PutUint16(b[2:], h.HdrLen)
	binary.LittleEndian.PutUint16(b[4:], h.GSOSize)
	binary.LittleEndian.PutUint16(b[6:], h.CsumStart)
	binary.LittleEndian.PutUint16(b[8:], h.CsumOffset)
	binary.LittleEndian.PutUint16(b[10:], h.NumBuffers)
}

// Offload returns the header's offload fields.
func (h Header) Offload() Offload {
	return Offload{Flags: h.Flags, GSOType: h.GSOType, HdrLen: h.HdrLen,
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
	bad := func(reason string) error { return &HeaderError{Header: h, FrameLen: frameLen, Reason: reason} }
	if h.Flags&^HdrFNeedsCsum != 0 {
		return bad("flags other than NEEDS_CSUM")
	}
	if h.Flags&HdrFNeedsCsum != 0 {
		if !has(features, FCsum) {
			return bad("NEEDS_CSUM without VIRTIO_NET_F_CSUM")
		}
		if int(h.CsumStart)+int(h.CsumOffset)+2 > frameLen {
			return bad("checksum field outside the frame")
		}
	}
	gso := h.GSOType &^ GSOECN
	if h.GSOType&GSOECN != 0 && (gso == GSONone || !has(features, FHostECN)) {
		return bad("ECN without HOST_ECN or without GSO")
	}
	switch gso {
	case GSONone:
		return nil
	case GSOTCPv4:
		if !has(features, FHostTSO4) {
			return bad("TCPv4 GSO without HOST_TSO4")
		}
	case GSOTCPv6:
		if !has(features, FHostTSO6) {
			return bad("TCPv6 GSO without HOST_TSO6")
		}
	case GSOUDP:
		if !has(features, FHostUFO) {
			return bad("UDP GSO without HOST_UFO")
		}
	case GSOUDPL4:
		if !has(features, FHostUSO) {
			return bad("UDP L4 GSO without HOST_USO")
		}
	default:
		return bad("unknown GSO type")
	}
	if h.GSOSize == 0 {
		return bad("GSO with gso_size 0")
	}
	if int(h.HdrLen) > frameLen {
		return bad("hdr_len beyond the frame")
	}
	return nil
}

// rxOffloadOK reports whether the driver can take a frame with offload o,
// given the guest offloads in effect (§5.1.6.4: the device only sets
// NEEDS_CSUM with GUEST_CSUM and GSO types the driver negotiated).
func rxOffloadOK(o Offload, guest uint64) bool {
	if o.Flags&HdrFNeedsCsum != 0 && !has(guest, FGuestCsum) {
		return false
	}
	gso := o.GSOType &^ GSOECN
	if o.GSOType&GSOECN != 0 && !has(guest, FGuestECN) {
		return false
	}
	switch gso {
	case GSONone:
		return true
	case GSOTCPv4:
		return has(guest, FGuestTSO4)
	case GSOTCPv6:
		return has(guest, FGuestTSO6)
	case GSOUDP:
		return has(guest, FGuestUFO)
	case GSOUDPL4:
		return has(guest, FGuestUSO4) || has(guest, FGuestUSO6)
	}
	return false
}
