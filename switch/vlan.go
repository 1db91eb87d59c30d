package vswitch

import (
	"encoding/binary"
	"math/bits"

	"github.com/hvnet/hvnet/frame"
)

// vlanSet is a bitmap of VIDs 0..4095.
type vlanSet [64]uint64

func (s *vlanSet) add(v uint16)      { s[v>>6] |= 1 << (v & 63) }
func (s *vlanSet) has(v uint16) bool { return s[v>>6]&(1<<(v&63)) != 0 }
func (s *vlanSet) each(fn func(v uint16)) {
	for w, w64 := range s {
		for w64 != 0 {
			b := uint16(bits.TrailingZeros64(w64))
			fn(uint16(w)<<6 | b)
			w64 &= w64 - 1
		}
	}
}

// pkt is what the switch knows about one ingress frame after
// classification. The frame is represented without the outer tag that
// classified it: core = data[:12] ++ data[12+strip:].
type pkt struct {
	strip uint8  // 0 or 4: bytes of outer tag removed at offset 12
	pcp   uint8  // 802.1p priority
	dei   uint8  // drop eligible indicator of the outer tag (0 or 1)
	vid   uint16 // VLAN the frame belongs to
	tpid  uint16 // TPID to use when the frame leaves tagged
	// innerTag: the frame starts with a VLAN tag (isTag) once the tag
	// that classified it is stripped: a customer's C-tag on a
	// dot1q-tunnel port, or a tag behind a trunk's. It never leaves a
	// trunk untagged (egressHop).
	innerTag bool
	// Set by checkOffload for frames needing GSO or checksum help: offset of
	// the L3 header in data, IP and TCP header lengths, IPv6 or not.
	l3    int
	iphl  int
	tcphl int
	ipEnd int // end of the IP packet relative to l3 (excludes Ethernet padding)
	v6    bool
}

// classify implements ingress classification and filtering: IEEE 802.1Q-2018
// §6.9.1 (tag decoding), §6.9 (VID 0 priority-tagged frames get the PVID /
// native VLAN), §8.6.2 (ingress filtering against the member set), Table 9-2
// (VID 0xFFF reserved), and 802.1Q §15 / 802.1ad (provider bridge: a customer
// port carries C-tagged and untagged frames unchanged in its S-VLAN).
func classify(st *portState, data []byte, p *pkt) DropReason {
	r := classifyTag(st, data, p)
	p.innerTag = r == dropNone && len(data) >= 14+int(p.strip) && isTag(binary.BigEndian.Uint16(data[12+p.strip:]))
	return r
}

// classifyTag is classify without the inner tag.
func classifyTag(st *portState, data []byte, p *pkt) DropReason {
	if len(data) < 14 {
		return DropMalformed
	}
	et := binary.BigEndian.Uint16(data[12:])
	tagged := isTag(et)
	var tci uint16
	if tagged {
		if len(data) < 18 {
			return DropMalformed
		}
		tci = binary.BigEndian.Uint16(data[14:])
	}
	switch st.mode {
	case ModeAccess:
		p.vid, p.pcp, p.tpid = st.pvid, st.defaultPCP, tpidCTag
		if tagged {
			if et != tpidCTag || tci&0xfff != 0 || tagBehind(data) {
				return DropVLAN
			}
			p.pcp, p.dei, p.strip = uint8(tci>>13), uint8(tci>>12&1), 4
		}
	case ModeTrunk:
		if tagged && et != tpidCTag && et != tpidSTag {
			return DropVLAN // a pre-standard QinQ TPID: see isTag
		}
		if !tagged || tci&0xfff == 0 {
			if st.native == 0 || tagged && tagBehind(data) {
				return DropVLAN
			}
			p.vid, p.pcp, p.tpid = st.native, st.defaultPCP, tpidCTag
			if tagged {
				p.pcp, p.dei, p.strip = uint8(tci>>13), uint8(tci>>12&1), 4
			}
			return dropNone
		}
		vid := tci & 0xfff
		if vid == vidReserved || !st.vlans.has(vid) {
			return DropVLAN
		}
		p.vid, p.pcp, p.dei, p.tpid, p.strip = vid, uint8(tci>>13), uint8(tci>>12&1), et, 4
	case ModeDot1QTunnel:
		// The customer frame stays as it is; the S-tag's PCP copies the
		// customer's C-tag PCP when there is one.
		p.vid, p.pcp, p.tpid = st.pvid, st.defaultPCP, tpidSTag
		if tagged {
			p.pcp = uint8(tci >> 13)
		}
	}
	return dropNone
}

// tagBehind reports a VLAN tag right behind a frame's first tag. A
// priority tag (VID 0) classifies a frame into the port's VLAN (IEEE
// 802.1Q-2018 §6.9.1); a second tag behind it would become the outer tag once
// the priority tag is popped and the frame left untagged: a VLAN hop.
func tagBehind(data []byte) bool {
	if len(data) < 20 {
		return false
	}
	return isTag(binary.BigEndian.Uint16(data[16:]))
}

// isTag is the one definition of which EtherTypes are VLAN tags, used by
// classification, the tag-behind check, L3 parsing and trace alike.
// Besides 0x8100 (IEEE 802.1Q C-tag) and 0x88a8 (802.1ad S-tag) it holds
// the pre-standard QinQ TPIDs 0x9100, 0x9200 and 0x9300, which switches
// of several vendors still honour as a tag. The switch classifies only on
// 0x8100 and 0x88a8; a frame whose outer EtherType is one of the others
// is a tagged frame it cannot place in a VLAN, so it is dropped on access
// and trunk ports (DropVLAN), never carried as untagged: otherwise an
// "untagged" frame with 0x9100/VID 20 from an access port would leave a
// native-VLAN trunk looking like VLAN 20 to equipment that reads 0x9100.
// On a dot1q-tunnel port the customer's frame is carried whole inside an
// S-tag, whatever its tags.
func isTag(et uint16) bool {
	switch et {
	case tpidCTag, tpidSTag, 0x9100, 0x9200, 0x9300:
		return true
	}
	return false
}

// egressHop reports a frame that would leave a trunk untagged (its
// native VLAN, tagged false) with a VLAN tag at its front: the next
// bridge would take that inner tag for the frame's VLAN, the
// double-tagging VLAN hop (a frame of VLAN 20 from a trunk carrying
// 8100/30 behind its tag, leaving a trunk whose native VLAN is 20,
// arrives in VLAN 30; so would a dot1q-tunnel customer's C-tagged frame
// leaving a trunk whose native VLAN is the tunnel's S-VLAN). Such a copy
// is dropped (DropVLAN, counted on the ingress port): carry the VLAN
// tagged on that trunk instead. Access and dot1q-tunnel ports hand the
// frame over as it is, tags behind included: a host at the end of the
// link, not a bridge, in the frame's own VLAN (IEEE 802.1ad: a
// port-based service interface delivers the customer's tags).
func egressHop(st *portState, p *pkt, tagged bool) bool {
	return p.innerTag && !tagged && st.mode == ModeTrunk
}

// tci is the tag control information a frame leaves a trunk with: its
// priority, drop eligibility (preserved, IEEE 802.1Q-2018 §6.9.3) and VID.
func (p *pkt) tci() uint16 { return uint16(p.pcp)<<13 | uint16(p.dei)<<12 | p.vid }

// reservedMask returns the bits (one per last byte 0x00..0x0F) of the
// reserved group addresses 01-80-C2-00-00-0X that a port in mode m must not
// relay (IEEE 802.1Q-2018 §8.6.3): all 16 on C-VLAN ports (Table 8-1); on
// a dot1q-tunnel customer port only those of the S-VLAN component (Table
// 8-2: -01..-0A and -0E), so customer BPDUs (-00) and the like are tunnelled.
func reservedMask(m VLANMode) uint16 {
	if m == ModeDot1QTunnel {
		return 0x07fe | 1<<0xe
	}
	return 0xffff
}

// egressTagged says whether a frame of VLAN vid may leave through a port in
// state st, and whether with a tag (IEEE 802.1Q-2018 §8.8.2 untagged set).
func egressTagged(st *portState, vid uint16) (ok, tagged bool) {
	switch st.mode {
	case ModeTrunk:
		if !st.vlans.has(vid) {
			return false, false
		}
		return true, vid != st.native
	default:
		return vid == st.pvid, false
	}
}

// l3Offset skips VLAN tags and returns the offset of the L3 header and its
// EtherType, or -1 when the frame is too short or has too many tags.
func l3Offset(data []byte) (int, uint16) {
	off := 12
	for i := 0; ; i++ {
		if len(data) < off+2 {
			return -1, 0
		}
		et := binary.BigEndian.Uint16(data[off:])
		if !isTag(et) {
			return off + 2, et
		}
		if i == maxTags {
			return -1, 0
		}
		off += 4
	}
}

// checkOffload validates a frame's offload metadata against its contents
// (virtio 1.2 §5.1.6.2.1: csum_start/csum_offset inside the frame; GSO needs
// a gso_size and a TCP packet of the matching IP version). It fills the L3/L4
// fields of p for GSO frames. data is the frame's head (the whole frame,
// or at least HeaderNeed bytes of it), total the frame's length.
func checkOffload(data []byte, total int, off *frame.Offload, p *pkt) bool {
	if int(off.HdrLen) > total {
		return false
	}
	if off.Flags&frame.NeedsCsum != 0 {
		l3, _ := l3Offset(data)
		if l3 < 0 || int(off.CsumStart) < l3 || int(off.CsumStart)+int(off.CsumOffset)+2 > total {
			return false
		}
	}
	if off.GSOType == frame.GSONone {
		return true
	}
	if off.GSOSize == 0 {
		return false
	}
	l3, et := l3Offset(data)
	if l3 < 0 {
		return false
	}
	ip := data[l3:]
	ipLen := total - l3 // len(ip) only bounds reads
	switch off.GSOType &^ frame.GSOECN {
	case frame.GSOTCPv4:
		// RFC 791 §3.1.
		if et != etherTypeIPv4 || len(ip) < 20 || ip[0]>>4 != 4 {
			return false
		}
		ihl := int(ip[0]&0xf) * 4
		tot := int(binary.BigEndian.Uint16(ip[2:]))
		frag := binary.BigEndian.Uint16(ip[6:]) & 0x3fff
		if ihl < 20 || len(ip) < ihl || ip[9] != ipProtoTCP || frag != 0 || (tot != 0 && tot < ihl) {
			return false
		}
		p.iphl, p.v6, p.ipEnd = ihl, false, ipLen
		if tot != 0 && tot < ipLen {
			p.ipEnd = tot
		}
	case frame.GSOTCPv6:
		// RFC 8200 §3; extension headers are not supported.
		if et != etherTypeIPv6 || len(ip) < 40 || ip[0]>>4 != 6 || ip[6] != ipProtoTCP {
			return false
		}
		p.iphl, p.v6, p.ipEnd = 40, true, ipLen
		if plen := int(binary.BigEndian.Uint16(ip[4:])); plen != 0 && 40+plen < ipLen {
			p.ipEnd = 40 + plen
		}
	default:
		return false
	}
	tcp := ip[p.iphl:]
	if len(tcp) < 20 {
		return false
	}
	thl := int(tcp[12]>>4) * 4 // RFC 9293 §3.1 data offset
	if thl < 20 || p.ipEnd < p.iphl+thl || p.ipEnd > 65535 {
		return false
	}
	if payload := p.ipEnd - p.iphl - thl; payload > MaxGSOSegments*int(off.GSOSize) {
		return false // amplification: see MaxGSOSegments
	}
	p.l3, p.tcphl = l3, thl
	return true
}
