package conntrack

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
)

// The fast path: a segment of an established TCP connection over IPv4,
// tracked straight from the frame's bytes.
//
// Nearly every frame a switch forwards through a security group is such
// a segment (a bulk transfer's data and its ACKs), and for it the general
// path does more than it needs: Parse clears and fills a Packet (about a
// hundred bytes) that Track reads back (its key as words, to compare and
// hash), tcpPacket looks the transition up in the state table to find
// that ESTABLISHED stays ESTABLISHED, and tcpInWindow and tcpPacket
// test for SYNs, RSTs, FINs and first segments that cannot be there.
// TrackFast reads the header fields the verdict depends on into locals,
// finds the entry through a HintCache (a Hint per connection, so that a
// batch interleaving tens of connections skips the hash and the index
// probe as a train of one does), and, when the entry is ESTABLISHED and
// the segment an ACK without SYN, FIN or RST, runs tcpFastAck: the
// window checks and updates of tcpInWindow and the timeout tcpPacket
// sets, written out for exactly that case, from registers. Anything else (another
// EtherType, IP options, a fragment, TCP options other than the lone
// timestamps option, other flags, no live entry, another state) it
// leaves alone, changing nothing, and the caller takes the general path
// (ParseHead, TrackHint): the verdicts, the entries' state and the
// counters are those of the general path whatever the frame. FuzzTrack,
// FuzzTrackEstablished and the tests' tcpConnTest run the two paths side
// by side and compare them field by field after every frame.
//
// The tenant controls every byte, and a frame's head may be memory the
// tenant can still write (a caller's choice; the switch's is a host-side
// copy): every header byte is read once, into a local, before anything
// is decided on it, so a byte changing meanwhile yields a frame that
// could have been sent, never a check of one value and the use of
// another (TestTrackFastBytesChanging).
//
// What the fast path does not change: the shard's lock is taken for
// every frame, as Linux takes the connection's spinlock in
// nf_conntrack_tcp_packet and Open vSwitch's userspace conntrack its
// per-connection lock, since every in-window segment moves the window
// edges, the retransmission bookkeeping or the timeout; and nothing is
// skipped of the window tracking (unlike Linux's flowtable offload,
// whose nft_flow_offload.c marks an offloaded TCP connection liberal and
// whose nf_flow_table_ip.c then looks at nothing but FIN and RST).

var le = binary.LittleEndian

// tsOptionWord is the timestamps option alone, as every Linux segment
// after the handshake carries it (NOP, NOP, kind 8, length 10: RFC 7323
// Appendix A's layout): parseTCPOptions skips it without reading it, so
// it leaves SAck equal to Ack.
const tsOptionWord = 0x0101080a

// HintCache is TrackFast's memory of where connections live, a Hint per
// connection for the tens a caller tracks over and over (a switch port's
// batches interleave the segments of many connections, so one Hint, the
// last connection's, would miss nearly every time): hintSets sets of two
// slots, by a hash of the key, each set one cache line. A slot names a
// zone (by a number never reused), a shard, a slab slot and the shard's
// count of freed slots when it was filled, and is trusted only when the
// frame's key is the slot's and, under the shard's lock, that count has
// not moved, exactly as a Hint is. It holds no pointer into a zone, so
// it keeps none alive. The zero value is empty (its 16 KiB are allocated
// on first use); not safe for concurrent use (one per goroutine).
//
// A tenant chooses the keys of its own connections, and, as the other
// end, those of another port's connections to it: the set a key lands
// in depends on a seed random per cache, so that it cannot aim keys at
// the sets another port's connections use. (Were it to, those would
// take the full lookup, the cost without a cache, nothing worse.)
type HintCache struct {
	sets *[hintSets]hintSet
	seed uint64
}

const (
	hintSetBits = 8
	hintSets    = 1 << hintSetBits
	// maxHintIndex bounds the slab indexes a slot can name (the rest
	// of fastHint.loc is the shard).
	maxHintIndex = 1<<26 - 1
)

// hintSet is two slots, the one filled last first: 64 bytes, and, as the
// sets are allocated together (16 KiB: pages, so 64-byte aligned),
// one cache line.
type hintSet [2]fastHint

// fastHint is a HintCache slot: a Hint for an IPv4 TCP key, the key as
// its two varying words.
type fastHint struct {
	zone  uint64 // Zone.id; 0: empty
	freed uint64 // the shard's freed when the slot was filled
	addrs uint64 // local | remote<<32, as read from the frame
	ports uint32 // local port | remote port<<16
	loc   uint32 // shard<<26 | slab index
}

// Reset empties c.
func (c *HintCache) Reset() {
	if c.sets != nil {
		*c.sets = [hintSets]hintSet{}
	}
}

// set returns the set of a key: a multiplicative hash (Knuth, TAOCP
// vol. 3, §6.4) of the key's words folded into one and xor-ed with the
// cache's seed, whose carries make the set of a key depend on the seed.
func (c *HintCache) set(addrs uint64, ports uint32) *hintSet {
	if c.sets == nil {
		c.sets = new([hintSets]hintSet)
		c.seed = rand.Uint64() // ChaCha8, as the table's secrets
	}
	x := addrs ^ uint64(ports)<<13
	x ^= x>>32 ^ c.seed // the remote address's low byte, the one that varies most, reaches the low half
	return &c.sets[x*0x9e3779b97f4a7c15>>(64-hintSetBits)]
}

// TrackFast tracks a frame whose head is data (frameLen bytes in all, l3
// and etherType as for ParseHead) when it is a segment of an established
// TCP connection over IPv4 and ParseHead would make it a TCP Packet with
// SAck equal to Ack, using and updating c (nil: none). It returns the
// verdict (Established, Reply, or Invalid when the segment is out of
// window) and true; or false, having changed nothing (the entry and the
// counters; c perhaps), for any other frame, which the caller then
// parses (ParseHead) and tracks (TrackHint). Either way the verdict, the
// entry's state and the counters are what ParseHead and TrackHint give.
func (z *Zone) TrackFast(data []byte, frameLen, l3 int, etherType uint16, dir Dir, now int64, c *HintCache) (Verdict, bool) {
	if etherType != EtherTypeIPv4 || l3 < 0 || l3 > len(data) || dir > Inbound {
		return 0, false
	}
	b := data[l3:]
	if len(b) < 40 {
		return 0, false
	}
	// parseIPv4TCP's conditions (RFC 791 §3.1, RFC 9293 §3.1), on values
	// read once: version 4 and a 20-byte header, TCP, neither MF nor an
	// offset, the total length within the frame, the TCP header within
	// the total length and within data; and here also the flags of an
	// ACK (PSH and URG allowed: tcpValidFlags' ACK rows) and a header
	// of 20 bytes or 32 with the timestamps option alone.
	vihl, proto := b[0], b[9]
	total := int(be.Uint16(b[2:4]))
	frag := be.Uint16(b[6:8])
	doff := int(b[32]>>4) * 4
	flags := b[33] & 0x3f
	if vihl != 0x45 || proto != protoTCP || frag&0x3fff != 0 || flags&^(FlagPSH|FlagURG) != FlagACK {
		return 0, false
	}
	if total > max(frameLen, len(data))-l3 || 20+doff > min(total, len(b)) {
		return 0, false
	}
	switch doff {
	case 20:
	case 32: // within b: 20+doff <= len(b)
		if be.Uint32(b[40:44]) != tsOptionWord {
			return 0, false
		}
	default:
		return 0, false
	}
	// The key from the port's side (Parse's setAddrs4, setPorts) as two
	// words: addrs, the local address | the remote's<<32 (each as its
	// bytes read little-endian, as keyWords reads them from the Key),
	// and ports, the local port | the remote's<<16. Read as the source
	// and destination, swapped for a frame to the port.
	addrs := le.Uint64(b[12:20])                        // source | destination<<32
	ports := bits.RotateLeft32(be.Uint32(b[20:24]), 16) // source port | destination port<<16
	if dir == Inbound {
		addrs = bits.RotateLeft64(addrs, 32)
		ports = bits.RotateLeft32(ports, 16)
	}
	seq, ack := be.Uint32(b[24:28]), be.Uint32(b[28:32])
	win := be.Uint16(b[34:36])
	payLen := uint32(total - 20 - doff)

	var (
		set *hintSet
		h   *fastHint // the slot that names the key, nil if none
		sh  uint32
		tag uint32
		i   uint32
		e   *entry
	)
	if c != nil {
		set = c.set(addrs, ports)
		if w := &set[0]; w.zone == z.id && w.addrs == addrs && w.ports == ports {
			h = w
		} else if w := &set[1]; w.zone == z.id && w.addrs == addrs && w.ports == ports {
			h = w
		}
	}
	hit := h != nil
	if hit {
		sh = h.loc >> 26 // the key's shard, whatever became of the slot
	} else {
		hv := hash4(addrs, ports, &z.t.sec)
		sh, tag = uint32(hv>>shardShift), slotTag(hv)
	}
	s := &z.shards[sh&(numShards-1)]
	s.mu.Lock()
	if hit && s.freed == h.freed {
		i = h.loc & maxHintIndex
		e = s.at(i)
	} else {
		if hit {
			tag = slotTag(hash4(addrs, ports, &z.t.sec))
		}
		_, i, e = s.lookup4(addrs, ports, tag)
		if e == nil {
			s.mu.Unlock()
			return 0, false
		}
		if set != nil && i <= maxHintIndex {
			nh := fastHint{zone: z.id, freed: s.freed, addrs: addrs, ports: ports, loc: sh<<26 | i}
			if hit {
				*h = nh // the same key, its slot moved
			} else {
				set[1], set[0] = set[0], nh
			}
		}
	}
	if now >= e.expires || e.kind != KindTCP || e.state != tcpEstablished {
		// Expired (the general path removes it), another protocol's
		// entry under a TCP key (not reached), or a state whose
		// transitions the general path decides.
		s.mu.Unlock()
		return 0, false
	}
	d := dirIndex(e, dir)
	v := passVerdict(d)
	act := z.tcpFastAck(e, d, seq, ack, payLen, win, now)
	if act == tcpGeneral {
		seg := tcpSeg{seq: seq, ack: ack, sack: ack, payLen: payLen, win: win, flags: flags, wscale: -1}
		act = z.tcpPacket(e, &seg, d, now)
	}
	if act == tcpInvalid {
		v = Invalid
	} else {
		e.pkts[dir&1]++
		if d == 1 {
			e.flags |= efSeenReply
		}
	}
	s.mu.Unlock()
	if v == Invalid {
		z.ctr.invalid.Add(1)
	}
	return v, true
}

// hash4 is hashKey of an IPv4 TCP key as Parse fills it (the
// IPv4-mapped prefixes fold to zero there), from TrackFast's words.
func hash4(addrs uint64, ports uint32, sec *[4]uint64) uint64 {
	return hash16(addrs, uint64(ports)|protoTCP<<32, sec)
}

// tcpGeneral is tcpFastAck's answer for a segment it leaves to
// tcpPacket, having changed nothing.
const tcpGeneral tcpAction = 255

// tcpFastAck is tcpPacket for the segments TrackFast takes, written out
// for them: an ACK without SYN, FIN or RST whose SAck is its Ack, on an
// ESTABLISHED entry, from a sender already seen (its maxwin is set:
// otherwise it answers tcpGeneral, changing nothing). For such a
// segment tcpTrans keeps ESTABLISHED in both directions and none of
// tcpPacket's special cases applies (TestFastTransitions), which leaves
// tcpInWindow and the end of tcpPacket (the state's timeout): they are
// here with every branch that cannot apply left out, in one function,
// from values in registers, in their order. Any change to those belongs
// here too; FuzzTrack, FuzzTrackEstablished and the tcpConnTest twins
// compare the two paths field by field. The caller holds e's shard
// lock.
func (z *Zone) tcpFastAck(e *entry, d int, seq, ack, payLen uint32, win16 uint16, now int64) tcpAction {
	t := &e.tcp
	d &= 1
	snd, rcv := &t.seen[d], &t.seen[d^1]
	if snd.maxwin == 0 {
		return tcpGeneral
	}
	end := seq + payLen
	liberal := snd.flags&tdLiberal != 0
	maxAckWin := max(snd.maxwin, maxAckWinConst)
	if !seqBefore(seq, snd.maxend+1) { // I
		overshot := end - snd.maxend + 1
		ackOK := seqAfter(ack, rcv.end-maxAckWin-1)
		inRecv := rcv.maxwin != 0 && seqAfter(end, snd.end-rcv.maxwin-1)
		if inRecv && ackOK && overshot <= rcv.maxwin && seqBefore(ack, rcv.end+1) {
			snd.end = end
			snd.flags |= tdUnacked
			if !liberal {
				return tcpIgnore
			}
		} else if !liberal {
			return tcpInvalid
		}
	}
	if !liberal {
		if !seqBefore(ack, rcv.end+1) { // III
			return tcpInvalid
		}
		if rcv.maxwin != 0 && !seqAfter(end, snd.end-rcv.maxwin-1) { // II
			return tcpIgnore
		}
		if !seqAfter(ack, rcv.end-maxAckWin-1) { // IV
			return tcpIgnore
		}
	}
	win := uint32(win16) << snd.scale
	if snd.maxwin < win { // (sack - ack is 0)
		snd.maxwin = win
	}
	if seqAfter(end, snd.end) {
		snd.end = end
		snd.flags |= tdUnacked
	}
	if snd.flags&tdMaxAckSet == 0 {
		snd.maxack = ack
		snd.flags |= tdMaxAckSet
	} else if seqAfter(ack, snd.maxack) {
		snd.maxack = ack
	}
	if rcv.maxwin != 0 && seqAfter(end, snd.maxend) {
		rcv.maxwin += end - snd.maxend
	}
	if seqAfter(ack+win, rcv.maxend-1) {
		rcv.maxend = ack + win
		if win == 0 {
			rcv.maxend++
		}
	}
	if ack == rcv.end {
		rcv.flags &^= tdUnacked
	}
	if int(t.lastDir) == d && t.lastSeq == seq && t.lastAck == ack && t.lastEnd == end && t.lastWin == win16 {
		if t.retrans < 255 {
			t.retrans++
		}
	} else {
		t.lastDir = uint8(d)
		t.lastSeq, t.lastAck, t.lastEnd, t.lastWin = seq, ack, end, win16
		t.retrans = 0
	}

	// The end of tcpPacket, for ESTABLISHED to ESTABLISHED by an ACK.
	t.lastIndex = tiAck
	t.lastDir = uint8(d)
	to := z.t.to.Load()
	tmo := to.tcp[tcpEstablished]
	switch {
	case t.retrans >= tcpMaxRetrans && tmo > to.retrans:
		tmo = to.retrans
	case (t.seen[0].flags|t.seen[1].flags)&tdUnacked != 0 && tmo > to.unack:
		tmo = to.unack
	case t.lastWin == 0 && tmo > to.retrans:
		tmo = to.retrans
	}
	if e.flags&efSeenReply == 0 {
		tmo = min(tmo, to.unack) // a pickup not yet answered
	} else {
		e.flags |= efAssured
	}
	e.expires = now + tmo
	return tcpAccept
}

// lookup4 is lookup for the IPv4 TCP key of addrs and ports (TrackFast's).
func (s *shard) lookup4(addrs uint64, ports uint32, tag uint32) (pos int, i uint32, e *entry) {
	if len(s.index) == 0 {
		return 0, 0, nil
	}
	// The key's words as keyWords reads them (IPv4-mapped addresses).
	w1 := 0xffff<<16 | addrs<<32
	w3 := 0xffff<<16 | addrs&^(1<<32-1)
	w4 := uint64(ports) | protoTCP<<32 | 4<<40
	mask := len(s.index) - 1
	for pos = int(tag) & mask; ; pos = (pos + 1) & mask {
		v := s.index[pos]
		if v == 0 {
			return pos, 0, nil
		}
		if uint32(v>>32) == tag {
			i = uint32(v)
			e = s.at(i)
			if w := keyWords(&e.key); w[0]|w[2]|(w[1]^w1)|(w[3]^w3)|(w[4]^w4) == 0 {
				return pos, i, e
			}
		}
	}
}
