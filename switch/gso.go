package vswitch

import (
	"encoding/binary"

	"github.com/hvnet/hvnet/frame"
)

// MaxGSOSegments bounds the segments one GSO frame may be cut into: a
// frame whose payload would need more (payload > MaxGSOSegments *
// gso_size) is dropped as malformed (DropMalformed) at ingress, whether or
// not any egress port would segment it. Without it, gso_size 1 on a 64 KiB
// frame makes ~65,000 frames of one: a guest could multiply its packet
// rate by four orders of magnitude at the switch's expense. 128 covers a
// full 64 KiB frame at TCP's default MSS of 536 bytes (RFC 9293 §3.7.1:
// 123 segments); Linux never builds such frames with a smaller MSS.
const MaxGSOSegments = 128

// TCP flags (RFC 9293 §3.1, RFC 3168 §6.1 for CWR).
const (
	tcpFIN = 0x01
	tcpPSH = 0x08
	tcpCWR = 0x80
)

// segment cuts a TCP GSO frame into frames of at most GSOSize payload bytes
// for destination i, the way a NIC does TSO (and Linux's tcp_gso_segment):
// each segment gets the full headers, the egress L2 header (with its tag
// when tagged), an IPv4 total length, ID incremented per segment and a new
// header checksum (RFC 791 §3.1) or an IPv6 payload length (RFC 8200 §3), a
// TCP sequence number advanced by the payload before it, FIN and PSH only on
// the last segment, CWR only on the first (RFC 3168 §6.1.2), and a complete
// TCP checksum over the pseudo-header (RFC 9293 §3.1). checkOffload has
// validated the headers.
func (h *PortHandle) segment(sc *scratch, i int32, p *pkt, f *Frame, tagged bool) {
	data := f.Data
	if f.Tail != nil {
		// Made whole first, outside the arena (the flushes below reuse
		// it): the segments' payload is read from here.
		n := f.Len()
		if cap(sc.whole) < n {
			sc.whole = make([]byte, maxGSOFrame+16+4*maxTags) // once per port
		}
		data = sc.whole[:n]
		copy(data, f.Data)
		if !frame.ReadTail(data[len(f.Data):], f.Tail) {
			sc.drops[DropSourceFault]++
			return
		}
	}
	l2 := sc.l2[:0]
	l2 = append(l2, data[:12]...)
	if tagged {
		l2 = binary.BigEndian.AppendUint16(l2, p.tpid)
		l2 = binary.BigEndian.AppendUint16(l2, p.tci())
	}
	l2 = append(l2, data[12+int(p.strip):p.l3]...)
	ip := data[p.l3 : p.l3+p.ipEnd]
	hl := p.iphl + p.tcphl
	hdr, payload := ip[:hl], ip[hl:]
	mss := int(f.Off.GSOSize)
	seq := binary.BigEndian.Uint32(hdr[p.iphl+4:])
	id := binary.BigEndian.Uint16(hdr[4:])
	flags := hdr[p.iphl+13]
	for k, off := 0, 0; ; k++ {
		n := min(mss, len(payload)-off)
		last := off+n >= len(payload)
		segLen := len(l2) + hl + n
		if !sc.room(1, segLen) {
			h.flush(sc)
		}
		buf := sc.alloc(segLen)
		copy(buf, l2)
		iph := buf[len(l2):]
		copy(iph, hdr)
		copy(iph[hl:], payload[off:off+n])
		tcp := iph[p.iphl:]
		var sum uint64
		if p.v6 {
			binary.BigEndian.PutUint16(iph[4:], uint16(p.tcphl+n))
			sum = pseudoSum(iph[8:24], iph[24:40], ipProtoTCP, p.tcphl+n)
		} else {
			binary.BigEndian.PutUint16(iph[2:], uint16(hl+n))
			binary.BigEndian.PutUint16(iph[4:], id+uint16(k))
			iph[10], iph[11] = 0, 0
			binary.BigEndian.PutUint16(iph[10:], ^csumFold(csumAdd(0, iph[:p.iphl])))
			sum = pseudoSum(iph[12:16], iph[16:20], ipProtoTCP, p.tcphl+n)
		}
		binary.BigEndian.PutUint32(tcp[4:], seq+uint32(off))
		fl := flags
		if !last {
			fl &^= tcpFIN | tcpPSH
		}
		if k > 0 {
			fl &^= tcpCWR
		}
		tcp[13] = fl
		tcp[16], tcp[17] = 0, 0
		binary.BigEndian.PutUint16(tcp[16:], ^csumFold(csumAdd(sum, tcp)))
		sc.out(i, p.pcp, &Frame{Data: buf, Off: frame.Offload{Flags: frame.DataValid}})
		off += n
		if last {
			return
		}
	}
}
