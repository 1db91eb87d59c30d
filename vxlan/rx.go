package vxlan

import (
	"encoding/binary"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	vswitch "github.com/hvnet/hvnet/switch"
)

// rxBatchSize is how many datagrams one recvmmsg takes at most.
const rxBatchSize = 32

// rcvBuf is the receive socket's buffer.
const rcvBuf = 16 << 20

// groBufLen is a receive buffer with UDP GRO: the longest datagram the
// kernel coalesces (its IP packet at most 65535 bytes), and one byte.
const groBufLen = ipMax + 1

// udpGRO is UDP_GRO (include/uapi/linux/udp.h): the socket option, and
// the control message that gives a coalesced datagram's segment size.
const udpGRO = 104

// rxBatch is the receive loop's preallocated recvmmsg(2) argument and
// buffers: one per message, of the underlay MTU or, with UDP GRO, of the
// longest coalesced datagram. The senders' addresses are sockaddr_in6
// or, on an IPv4 port, sockaddr_in in their first bytes.
type rxBatch struct {
	msgs   []unix.Mmsghdr
	iovs   []unix.Iovec
	names  []unix.RawSockaddrInet6
	ctl    []byte // per message a control buffer (UDP GRO's segment size)
	bufs   [][]byte
	frames []vswitch.Frame
}

var ctlLen = unix.CmsgSpace(4)

func newRxBatch(n, size int) *rxBatch {
	b := &rxBatch{msgs: make([]unix.Mmsghdr, n), iovs: make([]unix.Iovec, n), names: make([]unix.RawSockaddrInet6, n),
		ctl: make([]byte, n*ctlLen), bufs: make([][]byte, n), frames: make([]vswitch.Frame, 0, 4*rxBatchSize)}
	slab := make([]byte, n*size)
	for i := range b.msgs {
		b.bufs[i] = slab[i*size : (i+1)*size : (i+1)*size]
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(size)
		b.msgs[i].Hdr.Iov = &b.iovs[i]
		b.msgs[i].Hdr.SetIovlen(1)
		b.msgs[i].Hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		b.msgs[i].Hdr.Control = &b.ctl[i*ctlLen]
	}
	return b
}

// rxLoop receives VXLAN packets and hands their inner frames to the
// switch until Close.
func (p *Port) rxLoop() {
	defer p.wg.Done()
	// A datagram is at most the underlay MTU less the IP and UDP headers;
	// one byte more tells a longer one (MSG_TRUNC) from one that fits.
	// With UDP GRO the kernel hands over runs of datagrams of one size
	// from one sender as one (the super-packets of gso.go arrive so over
	// a veth, and over a NIC the kernel's GRO coalesces what it can):
	// they are cut into their datagrams here.
	most := p.cfg.UnderlayMTU - p.ipLen - udpLen
	size := most + 1
	if p.gro {
		size = groBufLen
	}
	b := newRxBatch(rxBatchSize, size)
	for !p.stop.Load() {
		for i := range b.msgs {
			b.msgs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
			b.msgs[i].Hdr.Flags = 0
			b.msgs[i].Hdr.SetControllen(ctlLen)
		}
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(p.rxfd), uintptr(unsafe.Pointer(&b.msgs[0])), uintptr(len(b.msgs)),
			unix.MSG_WAITFORONE, 0, 0)
		if e != 0 {
			if e != unix.EAGAIN && e != unix.EINTR {
				p.st.rxErrors.Add(1)
				time.Sleep(10 * time.Millisecond) // a persistent error does not spin
			}
			continue
		}
		h := p.handle.Load()
		b.frames = b.frames[:0]
		now := time.Now().UnixNano()
		for i := range int(r) {
			p.receive(b, i, h, now)
		}
		if len(b.frames) > 0 && h != nil {
			h.Input(b.frames)
		}
		clear(b.frames[:cap(b.frames)])
	}
}

// receive checks message i of the batch, a datagram or (UDP GRO) a run
// of datagrams, and appends the inner frames of its VXLAN packets to
// b.frames, handing them to h first when b.frames is full.
func (p *Port) receive(b *rxBatch, i int, h *vswitch.PortHandle, now int64) {
	m := &b.msgs[i]
	n := int(m.Len)
	buf := b.bufs[i]
	switch {
	case m.Hdr.Flags&unix.MSG_TRUNC != 0 || n >= len(buf):
		p.st.rxOversize.Add(1)
		return
	case n == 0: // an empty datagram: no segment for the loop below
		p.st.rxShort.Add(1)
		return
	}
	seg := n
	if g := groSize(b, i); g > 0 && g < n {
		seg = g
		p.st.groPackets.Add(1)
	}
	if seg > p.cfg.UnderlayMTU-p.ipLen-udpLen {
		p.st.rxOversize.Add(uint64((n + seg - 1) / seg))
		return
	}
	src := p.source(&b.names[i])
	if !p.cfg.AnyVTEP {
		p.tabMu.RLock()
		_, known := p.known[src]
		p.tabMu.RUnlock()
		if !known {
			p.st.rxVTEP.Add(uint64((n + seg - 1) / seg))
			return
		}
	}
	for off := 0; off < n; off += seg {
		end := min(off+seg, n)
		f, ok := p.decap(buf[off:end:end], src, now)
		if !ok {
			continue
		}
		if len(b.frames) == cap(b.frames) {
			if h != nil {
				h.Input(b.frames)
			}
			clear(b.frames)
			b.frames = b.frames[:0]
		}
		b.frames = append(b.frames, vswitch.Frame{Data: f})
	}
}

// groSize is message i's UDP GRO segment size, 0 if it has none.
func groSize(b *rxBatch, i int) int {
	m := &b.msgs[i]
	if m.Hdr.Controllen < unix.SizeofCmsghdr+4 {
		return 0
	}
	c := (*unix.Cmsghdr)(unsafe.Pointer(&b.ctl[i*ctlLen]))
	if c.Level != unix.SOL_UDP || c.Type != udpGRO || c.Len < unix.SizeofCmsghdr+4 {
		return 0
	}
	return int(binary.NativeEndian.Uint32(b.ctl[i*ctlLen+unix.SizeofCmsghdr:]))
}

// decap checks one VXLAN packet, buf (a datagram, or a segment of a
// coalesced one, from src), and returns its inner frame, tagged with its
// VNI's VLAN (untagged for the native VLAN), in place in buf.
func (p *Port) decap(buf []byte, src vtepAddr, now int64) ([]byte, bool) {
	n := len(buf)
	if n < HdrLen+ethLen {
		p.st.rxShort.Add(1)
		return nil, false
	}
	vni, ok := parseHeader(buf)
	if !ok {
		p.st.rxFlags.Add(1)
		return nil, false
	}
	vlan, ok := p.vniVLAN[vni]
	if !ok {
		p.st.rxVNI.Add(1)
		return nil, false
	}
	inner := buf[HdrLen:n]
	if isTag(binary.BigEndian.Uint16(inner[12:])) {
		p.st.rxInnerTag.Add(1)
		return nil, false
	}
	if p.cfg.Learning && inner[6]&1 == 0 {
		p.learn(vni, [6]byte(inner[6:12]), src, now)
	}
	p.st.rxPackets.Add(1)
	p.st.rxBytes.Add(uint64(len(inner)))
	if vlan == p.cfg.NativeVLAN {
		return inner, true
	}
	// The tag goes between the MACs and the EtherType: the MACs move
	// into the VXLAN header's room in front of the frame.
	f := buf[HdrLen-tagLen : n]
	copy(f[:macsLen], inner[:macsLen])
	binary.BigEndian.PutUint16(f[12:], tpidCTag)
	binary.BigEndian.PutUint16(f[14:], vlan)
	return f, true
}

// source is a received packet's sender as the tables key it.
func (p *Port) source(sa *unix.RawSockaddrInet6) vtepAddr {
	if p.v6 {
		return sa.Addr
	}
	a := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa)).Addr
	return vtepAddr{10: 0xff, 11: 0xff, 12: a[0], 13: a[1], 14: a[2], 15: a[3]}
}
