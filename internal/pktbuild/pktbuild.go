// Package pktbuild builds Ethernet frames for tests: an optional 802.1Q
// tag, IPv4 or IPv6, TCP, UDP or ICMP, with correct lengths and
// checksums, of an exact size.
package pktbuild

import (
	"encoding/binary"
	"net/netip"
)

// IP protocol numbers.
const (
	ICMP   = 1
	TCP    = 6
	UDP    = 17
	ICMPv6 = 58
)

// Frame describes a frame.
type Frame struct {
	Dst, Src  [6]byte
	VLAN      uint16 // 802.1Q tag with this VID; 0: untagged
	EtherType uint16 // for a frame that is not IP (Src/DstIP invalid): its EtherType
	// SrcIP and DstIP (both IPv4 or both IPv6) make an IP frame.
	SrcIP, DstIP   netip.Addr
	Proto          uint8 // TCP, UDP, ICMP/ICMPv6 or any other (then Payload bytes follow the IP header)
	SPort, DPort   uint16
	TCPFlags       uint8
	ICMPType, Code uint8
	// Size is the frame's length (no FCS): the payload is what is left
	// once the headers are in. At least the headers; short IP frames are
	// padded to 60 bytes as Ethernet pads them (the IP length excludes it).
	Size int
}

// L2Len is the frame's Ethernet header length (14, 18 with the tag).
func (f Frame) L2Len() int {
	if f.VLAN != 0 {
		return 18
	}
	return 14
}

// Bytes builds the frame.
func (f Frame) Bytes() []byte {
	b := make([]byte, 0, max(f.Size, 64))
	b = append(b, f.Dst[:]...)
	b = append(b, f.Src[:]...)
	if f.VLAN != 0 {
		b = binary.BigEndian.AppendUint16(b, 0x8100)
		b = binary.BigEndian.AppendUint16(b, f.VLAN)
	}
	if !f.SrcIP.IsValid() {
		b = binary.BigEndian.AppendUint16(b, f.EtherType)
		for len(b) < f.Size {
			b = append(b, byte(len(b)))
		}
		return b
	}
	v6 := f.SrcIP.Is6()
	iphl := 20
	et := uint16(0x0800)
	if v6 {
		iphl, et = 40, 0x86dd
	}
	b = binary.BigEndian.AppendUint16(b, et)
	l3 := len(b)
	l4hl := 0
	switch f.Proto {
	case TCP:
		l4hl = 20
	case UDP:
		l4hl = 8
	case ICMP, ICMPv6:
		l4hl = 8
	}
	payload := max(f.Size-l3-iphl-l4hl, 0)
	iplen := iphl + l4hl + payload
	ip := make([]byte, iphl)
	if v6 {
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(l4hl+payload))
		ip[6], ip[7] = f.Proto, 64
		s, d := f.SrcIP.As16(), f.DstIP.As16()
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
	} else {
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(iplen))
		ip[8], ip[9] = 64, f.Proto
		s, d := f.SrcIP.As4(), f.DstIP.As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		binary.BigEndian.PutUint16(ip[10:], ^fold(sum(ip)))
	}
	b = append(b, ip...)
	l4 := make([]byte, l4hl+payload)
	for i := l4hl; i < len(l4); i++ {
		l4[i] = byte(i)
	}
	csumAt := -1
	switch f.Proto {
	case TCP:
		binary.BigEndian.PutUint16(l4, f.SPort)
		binary.BigEndian.PutUint16(l4[2:], f.DPort)
		l4[12] = 5 << 4
		l4[13] = f.TCPFlags
		binary.BigEndian.PutUint16(l4[14:], 65535)
		csumAt = 16
	case UDP:
		binary.BigEndian.PutUint16(l4, f.SPort)
		binary.BigEndian.PutUint16(l4[2:], f.DPort)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		csumAt = 6
	case ICMP, ICMPv6:
		l4[0], l4[1] = f.ICMPType, f.Code
		csumAt = 2
	}
	if csumAt >= 0 {
		var s uint32
		if f.Proto != ICMP { // RFC 768, 9293, 4443: a pseudo-header; ICMP (RFC 792) has none
			if v6 {
				s = sum(ip[8:40])
			} else {
				s = sum(ip[12:20])
			}
			s += uint32(f.Proto) + uint32(len(l4))
		}
		c := ^fold(s + sum(l4))
		if c == 0 && f.Proto == UDP {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(l4[csumAt:], c)
	}
	b = append(b, l4...)
	for len(b) < 60 {
		b = append(b, 0)
	}
	return b
}

func sum(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
