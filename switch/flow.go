package vswitch

import "encoding/binary"

// flowKey is what ACLs match on, parsed once per frame (only when the
// ingress port has an ACL). It lives on the stack: no allocation.
type flowKey struct {
	ether    uint16 // innermost EtherType, after every VLAN tag
	src, dst uint64 // MAC keys
	l3       uint8  // 0: not IP (or truncated), 4, 6
	proto    uint8
	hasL4    bool // TCP/UDP ports present (not a non-first fragment)
	sport    uint16
	dport    uint16
	sip, dip [2]uint64
	l4       int32 // offset of the transport header in the frame; 0: none (truncated, a later fragment)
}

// IPv6 extension headers skipped looking for the upper-layer protocol
// (RFC 8200 §4.1).
const (
	ip6HopByHop = 0
	ip6Routing  = 43
	ip6Fragment = 44
	ip6DestOpts = 60
	maxExtHdrs  = 4
)

// parseFlow fills k from frame data. l3 and et are l3Offset's answer
// (l3 < 0: no L3). Truncated headers leave the L3/L4 fields unset, so
// rules that need them do not match.
func parseFlow(data []byte, l3 int, et uint16, k *flowKey, wantL3 bool) {
	k.src, k.dst = macKey(data[6:12]), macKey(data[0:6])
	k.ether = et
	if l3 < 0 || !wantL3 {
		return
	}
	ip := data[l3:]
	var l4 []byte
	switch et {
	case etherTypeIPv4:
		// RFC 791 §3.1.
		if len(ip) < 20 || ip[0]>>4 != 4 {
			return
		}
		ihl := int(ip[0]&0xf) * 4
		if ihl < 20 || len(ip) < ihl {
			return
		}
		k.l3, k.proto = 4, ip[9]
		k.sip = [2]uint64{0, uint64(binary.BigEndian.Uint32(ip[12:]))}
		k.dip = [2]uint64{0, uint64(binary.BigEndian.Uint32(ip[16:]))}
		if binary.BigEndian.Uint16(ip[6:])&0x1fff != 0 { // non-first fragment
			return
		}
		l4 = ip[ihl:]
		k.l4 = int32(l3 + ihl)
	case etherTypeIPv6:
		// RFC 8200 §3.
		if len(ip) < 40 || ip[0]>>4 != 6 {
			return
		}
		k.l3 = 6
		k.sip = [2]uint64{binary.BigEndian.Uint64(ip[8:]), binary.BigEndian.Uint64(ip[16:])}
		k.dip = [2]uint64{binary.BigEndian.Uint64(ip[24:]), binary.BigEndian.Uint64(ip[32:])}
		nh, off := ip[6], 40
		for range maxExtHdrs {
			switch nh {
			case ip6HopByHop, ip6Routing, ip6DestOpts:
				if len(ip) < off+8 {
					k.proto = nh
					return
				}
				nh, off = ip[off], off+(int(ip[off+1])+1)*8
				continue
			case ip6Fragment:
				if len(ip) < off+8 {
					k.proto = nh
					return
				}
				frag := binary.BigEndian.Uint16(ip[off+2:]) &^ 7
				nh, off = ip[off], off+8
				if frag != 0 { // RFC 8200 §4.5: no upper-layer header here
					k.proto = nh
					return
				}
				continue
			}
			break
		}
		k.proto = nh
		if off > len(ip) {
			return
		}
		l4 = ip[off:]
		k.l4 = int32(l3 + off)
	default:
		return
	}
	if (k.proto == ipProtoTCP || k.proto == ipProtoUDP) && len(l4) >= 4 {
		k.hasL4 = true
		k.sport = binary.BigEndian.Uint16(l4)
		k.dport = binary.BigEndian.Uint16(l4[2:])
	}
}
