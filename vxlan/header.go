package vxlan

import (
	"encoding/binary"
	"hash/maphash"
)

// Header sizes (RFC 7348 §5).
const (
	HdrLen   = 8  // the VXLAN header
	udpLen   = 8  // the UDP header
	ipv4Len  = 20 // the outer IPv4 header, without options
	macsLen  = 12 // the inner destination and source MACs
	tagLen   = 4  // an 802.1Q tag
	ethLen   = 14 // an Ethernet header
	flagI    = 0x08
	sportLo  = 49152 // RFC 7348 §5: the source port from the dynamic range
	sportLen = 65536 - sportLo

	// Overhead is what encapsulation adds to a frame on the wire over an
	// IPv4 underlay: the outer IPv4 and UDP headers and the VXLAN header
	// (the outer Ethernet header aside). RFC 7348's "50 bytes" adds the
	// inner Ethernet header.
	Overhead = ipv4Len + udpLen + HdrLen
	// Overhead6 is the same over an IPv6 underlay: the outer IPv6 header
	// (40 bytes, no extension headers) instead of IPv4's, 56 bytes; 70
	// with the inner Ethernet header, as Linux's vxlan counts it
	// (VXLAN6_HEADROOM in include/net/vxlan.h).
	Overhead6 = ipv6Len + udpLen + HdrLen

	// DefaultPort is the IANA port of VXLAN (RFC 7348 §5).
	DefaultPort = 4789
	// MaxVNI is the largest VXLAN network identifier (24 bits).
	MaxVNI = 1<<24 - 1
)

// The TPIDs of the tags the switch classifies frames on (IEEE 802.1Q
// C-tag, 802.1ad S-tag): it hands the port a frame of a VLAN tagged with
// either, the one it arrived with (a dot1q-tunnel port's S-tag is 0x88a8).
const (
	tpidCTag = 0x8100
	tpidSTag = 0x88a8
)

// isTag reports whether EtherType et is a VLAN tag: the switch's own
// definition (package vswitch, isTag), 0x8100 and 0x88a8 and the
// pre-standard QinQ TPIDs 0x9100, 0x9200 and 0x9300, which equipment of
// several vendors reads as a tag. A VNI carries untagged frames only: a
// frame with such a tag inside a VXLAN packet would be placed by a VTEP
// that reads it in the tag's VLAN, not the VNI's.
func isTag(et uint16) bool {
	switch et {
	case tpidCTag, tpidSTag, 0x9100, 0x9200, 0x9300:
		return true
	}
	return false
}

// putHeader writes the VXLAN header of vni into b[:HdrLen]: the I flag
// and the VNI, the reserved fields zero.
func putHeader(b []byte, vni uint32) {
	binary.BigEndian.PutUint32(b[0:], flagI<<24)
	binary.BigEndian.PutUint32(b[4:], vni<<8)
}

// parseHeader checks a VXLAN header and returns its VNI; ok is false when
// the flags are not exactly the I flag or a reserved field is not zero
// (RFC 7348 §5: reserved fields are zero on transmit; a receiver that
// finds the I flag clear discards the packet).
func parseHeader(b []byte) (vni uint32, ok bool) {
	w0, w1 := binary.BigEndian.Uint32(b[0:]), binary.BigEndian.Uint32(b[4:])
	if w0 != flagI<<24 || w1&0xff != 0 {
		return 0, false
	}
	return w1 >> 8, true
}

// putUDP writes a UDP header: ports, the length of header and payload,
// a zero checksum: allowed over IPv4 (RFC 7348 §5); over IPv6 the
// kernel writes the checksum in its place (IPV6_CHECKSUM on the raw
// socket), or it stays zero where the port is told to (RFC 6935 §5, RFC
// 6936: zero checksums for tunnels, Linux's udp6zerocsumtx).
func putUDP(b []byte, sport, dport uint16, payload int) {
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(udpLen+payload))
	binary.BigEndian.PutUint16(b[6:], 0)
}

// seed keys the source-port hash; one per process, as the kernel's.
var seed = maphash.MakeSeed()

// sourcePort is the UDP source port of an inner frame (its untagged bytes
// after the MACs, rest, and the MACs): a hash of its MACs, EtherType and,
// for IPv4 and IPv6, its addresses, protocol and the first four bytes of
// its transport header (TCP's and UDP's ports), so that packets of one
// flow take one path through the underlay's ECMP and flows spread.
func sourcePort(macs, rest []byte) uint16 { return portOf(flowHash(macs, rest)) }

// portOf is the source port of an inner flow that hashes to h.
func portOf(h uint64) uint16 { return uint16(sportLo + h%sportLen) }

// flowLabel is the IPv6 flow label of an outer packet whose inner flow
// hashes to h: 20 bits of the hash the source port does not use, never
// 0 (an unlabelled packet). RFC 6438 §3: a tunnel end point sets the
// outer flow label from the inner flow, for ECMP that hashes on the flow
// label (RFC 6437 §3: the 3-tuple of label and addresses).
func flowLabel(h uint64) uint32 {
	l := uint32(h>>40) & 0xfffff
	if l == 0 {
		l = 1
	}
	return l
}

// flowHash is the hash sourcePort and flowLabel are made of.
func flowHash(macs, rest []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	h.Write(macs)
	if len(rest) >= 2 {
		h.Write(rest[:2])
		l3 := rest[2:]
		switch binary.BigEndian.Uint16(rest) {
		case 0x0800:
			if len(l3) >= 20 {
				ihl := int(l3[0]&0x0f) * 4
				h.Write(l3[12:20]) // addresses
				h.WriteByte(l3[9]) // protocol
				if ihl >= 20 && len(l3) >= ihl+4 && binary.BigEndian.Uint16(l3[6:])&0x3fff == 0 {
					h.Write(l3[ihl : ihl+4]) // ports, for an unfragmented packet
				}
			}
		case 0x86dd:
			if len(l3) >= 40 {
				h.Write(l3[8:40]) // addresses
				h.WriteByte(l3[6])
				if len(l3) >= 44 {
					h.Write(l3[40:44])
				}
			}
		}
	}
	return h.Sum64()
}
