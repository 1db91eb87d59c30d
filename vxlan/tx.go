package vxlan

import (
	"encoding/binary"
	"errors"
	"unsafe"

	"golang.org/x/sys/unix"

	vswitch "github.com/hvnet/hvnet/switch"
)

// txBatchSize is how many packets one sendmmsg sends at most.
const txBatchSize = 256

// hdrRoom is a message's own bytes: the UDP and VXLAN headers and the
// inner MACs (the frame's bytes after its tag follow in a second iovec).
const hdrRoom = udpLen + HdrLen + macsLen

// txBatch is a preallocated sendmmsg(2) argument.
type txBatch struct {
	msgs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // sockaddr_in6, or sockaddr_in in their first bytes
	hdrs  []byte
	frame []int32 // the frame each message carries
	sent  []bool  // per frame of the current Send: a message of it went
	// Per message, for UDP GSO: its VTEP, its inner flow's hash and its
	// inner frame's length (untagged).
	dst  []vtepAddr
	fh   []uint64
	ilen []int32
	// slot is where message k's header, iovecs and name are: k, unless
	// group moved it (msgs[k] points at them; flush puts them back).
	slot []int32
	grp  groups
}

func newTxBatch(n int, v6 bool) *txBatch {
	namelen := uint32(unix.SizeofSockaddrInet4)
	if v6 {
		namelen = unix.SizeofSockaddrInet6
	}
	b := &txBatch{msgs: make([]unix.Mmsghdr, n), iovs: make([]unix.Iovec, 2*n), names: make([]unix.RawSockaddrInet6, n),
		hdrs: make([]byte, hdrRoom*n), frame: make([]int32, n), dst: make([]vtepAddr, n), fh: make([]uint64, n), ilen: make([]int32, n),
		slot: make([]int32, n), grp: newGroups(n)}
	for i := range b.msgs {
		b.slot[i] = int32(i)
		b.msgs[i].Hdr.Iov = &b.iovs[2*i]
		b.msgs[i].Hdr.SetIovlen(2)
		b.msgs[i].Hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		b.msgs[i].Hdr.Namelen = namelen
	}
	return b
}

// Send implements vswitch.Port: each frame leaves as a VXLAN packet to the
// VTEP of its destination MAC, or one to each VTEP of its VNI's flood
// list; an ARP request or neighbour solicitation the port answers itself
// (Config.Suppress) does not leave. It returns how many frames went (at
// least one copy each, or answered), those
// in frames[:n] in their order; the others (no VNI for their VLAN, too
// long for the underlay, nowhere to go, a VLAN tag that would go inside
// the VNI, refused by the kernel) are counted and moved behind.
func (p *Port) Send(frames []vswitch.Frame) int {
	if len(frames) == 0 {
		return 0
	}
	p.txMu.Lock()
	defer p.txMu.Unlock()
	if p.txfd < 0 {
		return 0
	}
	b := p.tx
	if cap(b.sent) < len(frames) {
		b.sent = make([]bool, len(frames)) // grows once to the switch's batch size
	}
	b.sent = b.sent[:len(frames)]
	clear(b.sent)
	m := 0 // messages in the batch
	maxInner := p.cfg.UnderlayMTU - p.overhead
	labels := p.labels.Load()
	neigh := p.cfg.LearnIPs || p.cfg.Suppress
	p.tabMu.RLock()
	for i := range frames {
		d := frames[i].Data
		if len(d) < ethLen {
			continue // the switch never sends these
		}
		// The VLAN's tag, 0x8100 or 0x88a8 (the switch tags a frame with
		// the TPID it arrived with), is stripped: its VID picks the VNI;
		// an untagged frame is the native VLAN's.
		var vlan uint16
		rest := d[macsLen:]
		l3 := ethLen
		if et := binary.BigEndian.Uint16(d[12:]); et == tpidCTag || et == tpidSTag {
			if len(d) < ethLen+tagLen {
				p.st.txInnerTag.Add(1) // a cut tag: never sent as untagged
				continue
			}
			vlan = binary.BigEndian.Uint16(d[14:]) & 0x0fff
			rest = d[macsLen+tagLen:]
			l3 += tagLen
		} else {
			vlan = p.cfg.NativeVLAN
		}
		// What goes into the VNI must be untagged: a tag behind the
		// VLAN's (a dot1q-tunnel customer's C-tag), or an untagged frame
		// whose EtherType is a tag the switch does not classify on
		// (0x9100, 0x9200, 0x9300), would be read as that tag's VLAN by
		// a VTEP that honours it: a VLAN hop. (rest holds 2 bytes at
		// least: the frame's EtherType.)
		if isTag(binary.BigEndian.Uint16(rest)) {
			p.st.txInnerTag.Add(1)
			continue
		}
		vni := p.vlanVNI[vlan&0x0fff]
		if vlan == 0 || vni == 0 {
			p.st.txNoVNI.Add(1)
			continue
		}
		if neigh && p.neighFrame(vni, d, l3) {
			b.sent[i] = true // answered by the port
			continue
		}
		inner := macsLen + len(rest)
		if inner > maxInner {
			p.st.txOversize.Add(1)
			continue
		}
		var dsts []vtep
		var one [1]vtep
		if d[0]&1 == 0 {
			if e, ok := p.remote[macKey{vni, [6]byte(d[:6])}]; ok {
				one[0] = e.vtep
				dsts = one[:]
			}
		}
		flooded := dsts == nil
		if flooded {
			dsts = p.flood[vni]
		}
		if len(dsts) == 0 {
			p.st.txNoRemote.Add(1)
			continue
		}
		fh := flowHash(d[:macsLen], rest)
		sport := portOf(fh)
		var flowinfo uint32 // sin6_flowinfo: the label in network order
		if labels {
			var be [4]byte
			binary.BigEndian.PutUint32(be[:], flowLabel(fh))
			flowinfo = binary.NativeEndian.Uint32(be[:])
		}
		for _, v := range dsts {
			if m == len(b.msgs) {
				p.tabMu.RUnlock()
				p.flush(b, m)
				p.tabMu.RLock()
				m = 0
			}
			h := b.hdrs[hdrRoom*m : hdrRoom*(m+1)]
			putUDP(h, sport, p.cfg.Port, HdrLen+inner)
			putHeader(h[udpLen:], vni)
			copy(h[udpLen+HdrLen:], d[:macsLen])
			b.iovs[2*m].Base = &h[0]
			b.iovs[2*m].SetLen(hdrRoom)
			b.iovs[2*m+1].Base = unsafe.SliceData(rest)
			b.iovs[2*m+1].SetLen(len(rest))
			b.names[m] = v.sa
			if labels {
				b.names[m].Flowinfo = flowinfo
			}
			b.frame[m] = int32(i)
			b.dst[m], b.fh[m], b.ilen[m] = v.addr, fh, int32(inner)
			m++
		}
		if flooded && len(dsts) > 1 {
			p.st.txFlood.Add(uint64(len(dsts)))
		}
	}
	p.tabMu.RUnlock()
	p.flush(b, m)
	// frames[:n] are those sent, in order; the rest behind.
	n := 0
	for i := range frames {
		if b.sent[i] {
			frames[n], frames[i] = frames[i], frames[n]
			b.sent[n], b.sent[i] = b.sent[i], b.sent[n]
			n++
		}
	}
	return n
}

// flush sends the batch's first m messages, runs of one flow to one VTEP
// as UDP GSO super-packets where it can (gso.go), skipping (and counting)
// any the kernel refuses, and marks their frames sent.
func (p *Port) flush(b *txBatch, m int) {
	if g := p.gso; g != nil {
		b.group(m)
		hops := *g.hops.Load()
		// Messages go in their order: those waiting for the raw socket
		// ([s, k)) or the AF_PACKET socket's batch of single packets are
		// sent before the next message that goes another way.
		s, raw := 0, false
		for k := 0; k < m; {
			e := p.gsoRun(b, k, m)
			h, ok := hops[b.dst[k]]
			if !ok {
				g.ask(b.dst[k])
			}
			switch {
			case !ok || int(h.mtu) < p.ipLen+udpLen+HdrLen+int(b.ilen[k]):
				if !raw {
					p.flushOne(b)
					s, raw = k, true
				}
			case e-k > 1:
				p.sendRaw(b, s, k)
				p.flushOne(b)
				if !p.sendGSO(b, k, e, h) {
					p.sendRaw(b, k, e)
				}
				s, raw = e, false
			default:
				if raw {
					p.sendRaw(b, s, k)
					raw = false
				}
				p.addOne(b, k, h)
				s = e
			}
			k = e
		}
		if raw {
			p.sendRaw(b, s, m)
		}
		p.flushOne(b)
	} else {
		p.sendRaw(b, 0, m)
	}
	for k := range m {
		b.iovs[2*k+1].Base = nil // no reference to the caller's frames
		b.msgs[k].Hdr.Iov = &b.iovs[2*k]
		b.msgs[k].Hdr.Name = (*byte)(unsafe.Pointer(&b.names[k]))
		b.slot[k] = int32(k)
	}
}

// sendRaw sends messages [from, m) through the raw socket.
func (p *Port) sendRaw(b *txBatch, from, m int) {
	for from < m {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(p.txfd), uintptr(unsafe.Pointer(&b.msgs[from])), uintptr(m-from), 0, 0, 0)
		switch {
		case e == unix.EINTR:
			continue
		case e == unix.EINVAL && p.v6 && b.names[b.slot[from]].Flowinfo != 0: // (over IPv4 those bytes are the address)
			// The kernel takes any flow label unless a process of the
			// namespace holds one exclusively (net/ipv6/ip6_flowlabel.c,
			// fl6_sock_lookup): then no labels from here on.
			if p.labels.Swap(false) {
				p.log.Warn("vxlan: the kernel refuses IPv6 flow labels: packets go unlabelled")
			}
			for k := from; k < m; k++ {
				b.names[b.slot[k]].Flowinfo = 0
			}
			continue
		case e != 0 || r == 0:
			if !errors.Is(e, unix.EAGAIN) {
				p.log.Debug("vxlan: send refused", "error", e)
			}
			p.st.txErrors.Add(1)
			from++ // that message failed: the next call goes on after it
			continue
		}
		var bytes uint64
		for k := from; k < from+int(r); k++ {
			b.sent[b.frame[k]] = true
			bytes += macsLen + b.iovs[2*b.slot[k]+1].Len
		}
		p.st.txBytes.Add(bytes)
		p.st.txPackets.Add(uint64(r))
		from += int(r)
	}
}
