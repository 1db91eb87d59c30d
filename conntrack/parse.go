package conntrack

import "encoding/binary"

// The parser reads a tenant's bytes: every read is preceded by a length
// check on the slice it reads, slices are cut to the lengths the headers
// claim only after checking those lengths against the buffer, and every
// loop is bounded (MaxExtHeaders, the 40 bytes of TCP options).

// EtherTypes Parse tracks.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeIPv6 = 0x86DD
)

// MaxExtHeaders is how many IPv6 extension headers Parse skips before it
// calls a packet malformed. RFC 8200 §4.1 recommends an order in which
// each header appears at most once (destination options twice): 8 covers
// every legitimate chain, and bounds the work an attacker can cause.
const MaxExtHeaders = 8

// IP protocol numbers (IANA).
const (
	protoHopByHop = 0
	protoICMP     = 1
	protoTCP      = 6
	protoUDP      = 17
	protoRouting  = 43
	protoFragment = 44
	protoESP      = 50
	protoAH       = 51
	protoICMPv6   = 58
	protoNoNext   = 59
	protoDstOpts  = 60
)

var be = binary.BigEndian

// Parse fills p from a frame. l3 is the offset of the IP header in data
// (after every VLAN tag) and etherType its EtherType; dir is the frame's
// direction relative to the zone's port. It never reads data out of
// bounds and never panics; a truncated or impossible header is
// KindMalformed.
//
// Lengths follow the IP header: bytes after the IPv4 total length or the
// IPv6 payload length (Ethernet padding) are ignored, and a header that
// claims more than the frame holds is KindMalformed. IPv6 jumbograms
// (payload length 0, RFC 2675) are KindMalformed: they cannot cross an
// Ethernet port. Checksums are not verified: a guest with checksum
// offload sends partial ones (virtio 1.2 §5.1.6.2), and its stack
// verifies what it receives.
func Parse(data []byte, l3 int, etherType uint16, dir Dir, p *Packet) {
	ParseHead(data, len(data), l3, etherType, dir, p)
}

// ParseHead is Parse for a frame of frameLen bytes of which data holds
// only the first (a switch that copies a frame's head out of the sender's
// memory and leaves the payload there): the lengths in the headers are
// checked against frameLen, the headers themselves must be in data (a
// header cut by the end of data is KindMalformed), and the TCP payload
// length comes from the IP header's lengths. frameLen below len(data) is
// taken as len(data).
func ParseHead(data []byte, frameLen int, l3 int, etherType uint16, dir Dir, p *Packet) {
	*p = Packet{Dir: dir, Kind: KindUntracked, WScale: -1}
	if etherType != EtherTypeIPv4 && etherType != EtherTypeIPv6 {
		return
	}
	if l3 < 0 || l3 > len(data) {
		p.Kind = KindMalformed
		return
	}
	frameLen = max(frameLen, len(data))
	if etherType == EtherTypeIPv4 {
		if !parseIPv4TCP(data[l3:], frameLen-l3, p) {
			parseIPv4(data[l3:], frameLen-l3, p)
		}
	} else {
		parseIPv6(data[l3:], frameLen-l3, p)
	}
}

// setV4 stores a 4-byte address IPv4-mapped (RFC 4291 §2.5.5.2).
func setV4(dst *[16]byte, a []byte) {
	// Two word stores: the compiler's literal-then-copy was four.
	le := binary.LittleEndian
	le.PutUint64(dst[0:8], 0)
	le.PutUint64(dst[8:16], 0xffff<<16|uint64(le.Uint32(a[:4]))<<32)
}

// setAddrs fills k's addresses from the packet's source and destination,
// from the port's side: a frame the guest sent (Outbound) has the guest's
// address as its source, a frame to the guest (Inbound) as destination.
func setAddrs4(k *Key, src, dst []byte, dir Dir) {
	if dir == Outbound {
		setV4(&k.Local, src)
		setV4(&k.Remote, dst)
	} else {
		setV4(&k.Local, dst)
		setV4(&k.Remote, src)
	}
}

func setAddrs6(k *Key, src, dst []byte, dir Dir) {
	if dir == Outbound {
		copy(k.Local[:], src[:16])
		copy(k.Remote[:], dst[:16])
	} else {
		copy(k.Local[:], dst[:16])
		copy(k.Remote[:], src[:16])
	}
}

func setPorts(k *Key, sport, dport uint16, dir Dir) {
	if dir == Outbound {
		k.LPort, k.RPort = sport, dport
	} else {
		k.LPort, k.RPort = dport, sport
	}
}

// parseIPv4 parses an IPv4 header (RFC 791 §3.1) and what follows.
func parseIPv4(b []byte, n int, p *Packet) {
	if len(b) < 20 || b[0]>>4 != 4 {
		p.Kind = KindMalformed
		return
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(be.Uint16(b[2:4]))
	if ihl < 20 || total < ihl || total > n || ihl > len(b) {
		p.Kind = KindMalformed
		return
	}
	b = b[:min(total, len(b))]
	k := &p.Key
	k.Family = 4
	k.Proto = b[9]
	setAddrs4(k, b[12:16], b[16:20], p.Dir)
	fo := be.Uint16(b[6:8])
	p.FragID = uint32(be.Uint16(b[4:6]))
	p.FragOff = fo & 0x1fff
	if p.FragOff != 0 {
		p.Kind = KindFragment
		return
	}
	if fo&0x2000 != 0 { // MF
		p.FragFirst = true
	}
	// The largest transport payload this datagram can have once
	// reassembled (an upper bound for first fragments).
	parseL4(b[ihl:], total-ihl, 65535-ihl, p)
}

// parseIPv4TCP is parseIPv4 for the common case, a TCP segment in an
// unfragmented IPv4 packet without options, in one function rather than
// four (parseIPv4, parseL4, parseTCP). It returns false, having written
// nothing, for any other packet (which parseIPv4 then parses), and fills
// p exactly as parseIPv4 would otherwise (FuzzParse compares the two).
func parseIPv4TCP(b []byte, n int, p *Packet) bool {
	if len(b) < 40 || b[0] != 0x45 || b[9] != protoTCP || be.Uint16(b[6:8])&0x3fff != 0 { // MF or an offset: a fragment
		return false
	}
	total := int(be.Uint16(b[2:4]))
	doff := int(b[32]>>4) * 4
	// parseIPv4's and parseTCP's checks: the IP total length within the
	// frame, the TCP header within it and within b.
	if total > n || doff < 20 || 20+doff > min(total, len(b)) {
		return false
	}
	k := &p.Key
	k.Family = 4
	k.Proto = protoTCP
	setAddrs4(k, b[12:16], b[16:20], p.Dir)
	p.FragID = uint32(be.Uint16(b[4:6]))
	t := b[20:40]
	setPorts(k, be.Uint16(t[0:2]), be.Uint16(t[2:4]), p.Dir)
	p.Seq = be.Uint32(t[4:8])
	p.Ack = be.Uint32(t[8:12])
	p.SAck = p.Ack
	p.Flags = t[13] & 0x3f
	p.Win = be.Uint16(t[14:16])
	p.PayLen = uint32(total - 20 - doff)
	p.Kind = KindTCP
	if doff > 20 {
		parseTCPOptions(b[40:20+doff], p)
	}
	return true
}

// parseIPv6 parses an IPv6 header (RFC 8200 §3), its extension headers
// (§4) and what follows.
func parseIPv6(b []byte, n int, p *Packet) {
	if len(b) < 40 || b[0]>>4 != 6 {
		p.Kind = KindMalformed
		return
	}
	plen := int(be.Uint16(b[4:6]))
	if plen == 0 || 40+plen > n {
		p.Kind = KindMalformed
		return
	}
	b = b[:min(40+plen, len(b))]
	k := &p.Key
	k.Family = 6
	setAddrs6(k, b[8:24], b[24:40], p.Dir)
	switch nh := b[6]; nh {
	case protoHopByHop, protoRouting, protoFragment, protoAH, protoDstOpts:
	default: // no extension header: the common case, without the walk
		k.Proto = nh
		parseL4(b[40:], plen, 65535, p)
		return
	}
	w := walkExt6(b, 40, b[6])
	k.Proto = w.proto
	if w.frag {
		p.FragID = w.fragID
		p.FragOff = w.fragOff
		if w.fragOff != 0 {
			p.Kind = KindFragment
			return
		}
		// Offset 0 with M clear is an atomic fragment (RFC 6946):
		// a whole packet, tracked as unfragmented.
		p.FragFirst = w.fragMore
	}
	if !w.ok {
		// Includes a first fragment whose header chain stops before
		// the transport header (RFC 7112 §5: to be dropped).
		p.Kind = KindMalformed
		return
	}
	parseL4(b[w.off:], 40+plen-w.off, 65535-(w.off-40), p)
}

// ext6 is the result of walking IPv6 extension headers.
type ext6 struct {
	off      int   // offset of the upper-layer header
	proto    uint8 // upper-layer protocol (or the Next Header of a non-first fragment)
	ok       bool  // the chain was complete and well-formed up to off
	frag     bool  // a Fragment header was seen
	fragMore bool
	fragOff  uint16
	fragID   uint32
}

// walkExt6 skips the extension headers that start at off with next
// header nh (RFC 8200 §4): Hop-by-Hop (only first, §4.1), Routing,
// Destination Options, Fragment and AH (RFC 4302 §2.2, whose length is
// in 4-octet units). It stops at a non-first fragment: what follows is
// not a header.
func walkExt6(b []byte, off int, nh uint8) ext6 {
	var w ext6
	for n := 0; ; n++ {
		var hl int
		switch nh {
		case protoHopByHop, protoRouting, protoDstOpts:
			if nh == protoHopByHop && n != 0 {
				w.proto = nh
				return w
			}
			if off+8 > len(b) {
				w.proto = nh
				return w
			}
			hl = (int(b[off+1]) + 1) * 8
		case protoAH:
			if off+8 > len(b) {
				w.proto = nh
				return w
			}
			hl = (int(b[off+1]) + 2) * 4
		case protoFragment:
			if w.frag || off+8 > len(b) {
				w.proto = nh
				return w
			}
			hl = 8
			fo := be.Uint16(b[off+2 : off+4])
			w.frag = true
			w.fragOff = fo >> 3
			w.fragMore = fo&1 != 0
			w.fragID = be.Uint32(b[off+4 : off+8])
			if w.fragOff != 0 {
				w.proto = b[off]
				w.off = off + hl
				return w
			}
		default:
			w.off, w.proto, w.ok = off, nh, true
			return w
		}
		if n >= MaxExtHeaders || off+hl > len(b) {
			w.proto = nh
			return w
		}
		nh = b[off]
		off += hl
	}
}

// parseL4 parses the transport header at the start of b for p.Key.Proto.
// maxPay bounds the transport payload of the whole datagram: a first
// fragment's TCP PayLen is that bound, as the real length is not known
// without reassembly (window tracking takes it as an upper bound).
// parseL4 parses the transport header in b, which holds the first bytes
// of the n the IP header says the transport part has.
func parseL4(b []byte, n, maxPay int, p *Packet) {
	k := &p.Key
	switch k.Proto {
	case protoTCP:
		parseTCP(b, n, maxPay, p)
	case protoUDP:
		// RFC 768. The length field covers the whole datagram, so a
		// first fragment's is larger than what it carries.
		if len(b) < 8 {
			p.Kind = KindMalformed
			return
		}
		if !p.FragFirst {
			ul := int(be.Uint16(b[4:6]))
			if ul < 8 || ul > n {
				p.Kind = KindMalformed
				return
			}
		}
		setPorts(k, be.Uint16(b[0:2]), be.Uint16(b[2:4]), p.Dir)
		p.Kind = KindUDP
	case protoICMP:
		if k.Family != 4 {
			p.Kind = KindOther
			return
		}
		parseICMPv4(b, p)
	case protoICMPv6:
		if k.Family != 6 {
			p.Kind = KindOther
			return
		}
		parseICMPv6(b, p)
	default:
		p.Kind = KindOther
	}
}

// parseTCP parses a TCP header (RFC 9293 §3.1) and, bounded by the data
// offset (at most 40 bytes), its window scale (RFC 7323 §2, SYN only)
// and SACK (RFC 2018 §3) options.
func parseTCP(b []byte, n, maxPay int, p *Packet) {
	if len(b) < 20 {
		p.Kind = KindMalformed
		return
	}
	doff := int(b[12]>>4) * 4
	if doff < 20 || doff > len(b) {
		p.Kind = KindMalformed
		return
	}
	setPorts(&p.Key, be.Uint16(b[0:2]), be.Uint16(b[2:4]), p.Dir)
	p.Seq = be.Uint32(b[4:8])
	p.Ack = be.Uint32(b[8:12])
	p.SAck = p.Ack
	p.Flags = b[13] & 0x3f
	p.Win = be.Uint16(b[14:16])
	if p.FragFirst {
		p.PayLen = uint32(max(maxPay-doff, n-doff))
	} else {
		p.PayLen = uint32(n - doff)
	}
	p.Kind = KindTCP
	if doff > 20 {
		parseTCPOptions(b[20:doff], p)
	}
}

func parseTCPOptions(o []byte, p *Packet) {
	// Fast path: the timestamps option alone, as every Linux segment
	// after the handshake carries it (RFC 7323 Appendix A layout).
	if len(o) == 12 && o[0] == 1 && o[1] == 1 && o[2] == 8 && o[3] == 10 {
		return
	}
	syn := p.Flags&FlagSYN != 0
	ack := p.Flags&FlagACK != 0
	for i := 0; i < len(o); {
		kind := o[i]
		if kind == 0 { // end of option list
			return
		}
		if kind == 1 { // no-operation
			i++
			continue
		}
		if i+1 >= len(o) {
			return
		}
		l := int(o[i+1])
		if l < 2 || i+l > len(o) {
			return // do not parse partial or silly options (as Linux's tcp_options)
		}
		switch {
		case kind == 3 && l == 3 && syn:
			s := o[i+2]
			if s > 14 { // RFC 7323 §2.3: use 14
				s = 14
			}
			p.WScale = int8(s)
		case kind == 5 && ack && l >= 10 && (l-2)%8 == 0:
			for j := i + 2; j+8 <= i+l; j += 8 {
				if right := be.Uint32(o[j+4 : j+8]); seqAfter(right, p.SAck) {
					p.SAck = right
				}
			}
		}
		i += l
	}
}

// ICMP types.
const (
	icmpEchoReply    = 0
	icmpUnreachable  = 3
	icmpSourceQuench = 4
	icmpRedirect     = 5
	icmpEcho         = 8
	icmpTimeExceeded = 11
	icmpParamProblem = 12

	icmp6Unreachable  = 1
	icmp6PacketTooBig = 2
	icmp6TimeExceeded = 3
	icmp6ParamProblem = 4
	icmp6EchoRequest  = 128
	icmp6EchoReply    = 129
)

func icmp4IsError(t uint8) bool {
	switch t {
	case icmpUnreachable, icmpSourceQuench, icmpRedirect, icmpTimeExceeded, icmpParamProblem:
		return true
	}
	return false
}

// parseICMPv4 parses an ICMP message (RFC 792): every message has 8
// header bytes; an error quotes the IP header and at least 8 bytes of
// the packet that caused it.
func parseICMPv4(b []byte, p *Packet) {
	if len(b) < 8 {
		p.Kind = KindMalformed
		return
	}
	t := b[0]
	switch {
	case t == icmpEcho || t == icmpEchoReply:
		p.Kind = KindICMPEcho
		p.EchoReply = t == icmpEchoReply
		p.Key.LPort = be.Uint16(b[4:6])
	case icmp4IsError(t):
		if p.FragFirst || !parseQuoted4(b[8:], p.Dir, &p.Inner) {
			// An error is small (RFC 1812 §4.3.2.3: at most
			// 576 bytes): a fragmented one is not genuine.
			p.Kind = KindMalformed
			return
		}
		p.Kind = KindICMPError
	default:
		// Timestamp, information, address mask, router discovery...:
		// tracked by address pair.
		p.Kind = KindOther
	}
}

// quotedDir is the direction of the packet quoted in an ICMP error that
// travelled in direction errDir. The quoted packet went the other way: an
// error coming in to the guest (Inbound) quotes a packet the guest sent,
// whose source is the guest's (Local), and an error the guest sends
// quotes a packet it received, whose destination is the guest's.
func quotedDir(errDir Dir) Dir {
	if errDir == Inbound {
		return Outbound
	}
	return Inbound
}

// parseQuoted4 parses the IPv4 packet quoted in an ICMP error. The
// quote is truncated, so the quoted total length is not checked.
func parseQuoted4(b []byte, errDir Dir, k *Key) bool {
	if len(b) < 20 || b[0]>>4 != 4 {
		return false
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 || ihl > len(b) {
		return false
	}
	if be.Uint16(b[6:8])&0x1fff != 0 {
		return false // a non-first fragment: no transport header to match
	}
	k.Family = 4
	k.Proto = b[9]
	setAddrs4(k, b[12:16], b[16:20], quotedDir(errDir))
	return quotedL4(b[ihl:], errDir, k)
}

// parseQuoted6 parses the IPv6 packet quoted in an ICMPv6 error (RFC
// 4443 §3: as much of it as fits).
func parseQuoted6(b []byte, errDir Dir, k *Key) bool {
	if len(b) < 40 || b[0]>>4 != 6 {
		return false
	}
	k.Family = 6
	setAddrs6(k, b[8:24], b[24:40], quotedDir(errDir))
	w := walkExt6(b, 40, b[6])
	if !w.ok || (w.frag && w.fragOff != 0) {
		return false
	}
	k.Proto = w.proto
	return quotedL4(b[w.off:], errDir, k)
}

// quotedL4 fills k's ports from the quoted transport header: TCP and UDP
// ports are its first 4 bytes (all RFC 792 guarantees is 8), an echo's
// identifier is at 4.
func quotedL4(b []byte, errDir Dir, k *Key) bool {
	switch k.Proto {
	case protoTCP, protoUDP:
		if len(b) < 4 {
			return false
		}
		setPorts(k, be.Uint16(b[0:2]), be.Uint16(b[2:4]), quotedDir(errDir))
	case protoICMP, protoICMPv6:
		if len(b) < 1 {
			return false
		}
		t := b[0]
		echo := false
		if k.Proto == protoICMP && k.Family == 4 {
			if icmp4IsError(t) {
				return false // never an error about an error (RFC 1122 §3.2.2)
			}
			echo = t == icmpEcho || t == icmpEchoReply
		} else if k.Proto == protoICMPv6 && k.Family == 6 {
			if t < 128 {
				return false // RFC 4443 §2.4 (e.1)
			}
			echo = t == icmp6EchoRequest || t == icmp6EchoReply
		}
		if echo {
			if len(b) < 6 {
				return false
			}
			k.LPort = be.Uint16(b[4:6])
		}
	}
	return true
}

// parseICMPv6 parses an ICMPv6 message (RFC 4443 §2.1).
func parseICMPv6(b []byte, p *Packet) {
	if len(b) < 4 {
		p.Kind = KindMalformed
		return
	}
	t := b[0]
	switch t {
	case 130, 131, 132, 143, // MLD (RFC 2710, RFC 3810)
		133, 134, 135, 136, 137: // neighbour discovery (RFC 4861)
		p.Kind = KindUntracked
	case icmp6EchoRequest, icmp6EchoReply:
		if len(b) < 8 {
			p.Kind = KindMalformed
			return
		}
		p.Kind = KindICMPEcho
		p.EchoReply = t == icmp6EchoReply
		p.Key.LPort = be.Uint16(b[4:6])
	case icmp6Unreachable, icmp6PacketTooBig, icmp6TimeExceeded, icmp6ParamProblem:
		if len(b) < 8 || p.FragFirst || !parseQuoted6(b[8:], p.Dir, &p.Inner) {
			p.Kind = KindMalformed
			return
		}
		p.Kind = KindICMPError
	default:
		p.Kind = KindOther
	}
}
