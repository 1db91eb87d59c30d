package vxlan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// UDP segmentation offload on the underlay (Config.NoUDPGSO turns it
// off). Consecutive packets of one inner flow to one VTEP (the segments
// the switch cut from a guest's TCP frame, a burst of one flow from an
// uplink) leave as one UDP GSO packet: one outer Ethernet, IP and UDP
// header in front of their VXLAN packets, each gso_size long but the
// last, written to the underlay device through an AF_PACKET socket with
// a virtio-net header (VIRTIO_NET_HDR_GSO_UDP_L4). The kernel cuts it
// into one UDP datagram per VXLAN packet, with their own IP and UDP
// headers and checksums, as late as it can: in the NIC that offers UDP
// segmentation, else when it leaves the host, and over a veth only in
// the receiving socket (not at all in a socket with UDP GRO, as the
// port's own). One system call, one trip through the underlay's devices
// and bridges and one through the receiver's IP and UDP input carry up
// to gsoMaxSegs packets. Linux's vxlan device does the same for the
// kernel's TCP (SKB_GSO_UDP_TUNNEL); from user space, a UDP socket's
// UDP_SEGMENT would too, but with one source port per socket, where
// each inner flow needs its own (RFC 7348 §5).
//
// The outer Ethernet header needs the next hop's MAC: the port asks the
// kernel (a route lookup and its neighbour table, over netlink, from a
// goroutine of its own, never from Send) and keeps what it learned for
// hopRefresh. A VTEP whose next hop is not known yet, not resolved, or
// not behind an Ethernet device gets its packets one by one through the
// raw socket (which also makes the kernel resolve it); so does a
// super-packet the AF_PACKET socket refuses. A run of one packet to a
// resolved VTEP is written to the device alone (pktBatch), which spares
// it the kernel's IP output too.

const (
	// gsoMaxSegs bounds the packets of one super-packet (the kernel's
	// UDP_MAX_SEGMENTS is 128, UDP GRO's UDP_GRO_CNT_MAX 64).
	gsoMaxSegs = 64
	// ipMax is the longest IP packet (and IPv6 payload): a super-packet's
	// outer headers carry its whole length.
	ipMax      = 65535
	vnetHdrLen = 10 // struct virtio_net_hdr
	// virtio_net_hdr's flags and gso_type (include/uapi/linux/virtio_net.h).
	vnetNeedsCsum = 1
	vnetGSOUDPL4  = 5
	// hopRefresh is how often known next hops are looked up again.
	hopRefresh = time.Second
	// hopMax bounds the next hops a port keeps (VTEPs it sends to).
	hopMax = 4096
	ttl    = 64 // the outer packets' TTL or hop limit (Linux's default)
)

// hop is how packets to one VTEP leave: the underlay device and the MACs
// of their outer Ethernet header.
type hop struct {
	ifindex  int32
	mtu      int32 // the device's, or the route's if less: the longest outer IP packet
	dst, src [6]byte
}

// gsoTx is a port's UDP GSO state: the AF_PACKET socket, the next hops
// Send reads (a map replaced, never changed, by the resolver) and the
// batch of one super-packet (Send's, under txMu).
type gsoTx struct {
	fd   int
	nl   *netlink.Handle // in the port's network namespace
	hops atomic.Pointer[map[vtepAddr]hop]
	want chan vtepAddr // VTEPs Send found no next hop for
	wake chan struct{} // Close
	id   uint16        // the next outer IPv4 identification (txMu)

	hdr [vnetHdrLen + ethLen + ipv6Len + udpLen]byte // (txMu)
	iov [1 + 2*gsoMaxSegs]unix.Iovec                 // (txMu)
	sll unix.RawSockaddrLinklayer                    // (txMu)
	msg unix.Msghdr                                  // (txMu)

	one pktBatch // single packets (txMu)

	mu     sync.Mutex // guards failed
	failed map[vtepAddr]failure
}

// openGSO opens the AF_PACKET socket and the netlink handle, in the
// calling thread's network namespace. An error leaves the port without
// UDP GSO (the caller logs it), not without a port.
func (p *Port) openGSO() (*gsoTx, error) {
	// Protocol 0: the socket receives nothing.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("AF_PACKET socket: %w", err)
	}
	g := &gsoTx{fd: fd, want: make(chan vtepAddr, 64), wake: make(chan struct{}), failed: map[vtepAddr]failure{},
		one: newPktBatch(txBatchSize)}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("PACKET_VNET_HDR: %w", err)
	}
	// No PACKET_QDISC_BYPASS: as the raw socket's, these packets go
	// through the device's qdisc, and tcpdump on the underlay sees them.
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	g.nl, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink: %w", err)
	}
	g.nl.SetSocketTimeout(time.Second)
	empty := map[vtepAddr]hop{}
	g.hops.Store(&empty)
	g.msg.Name = (*byte)(unsafe.Pointer(&g.sll))
	g.msg.Namelen = unix.SizeofSockaddrLinklayer
	g.msg.Iov = &g.iov[0]
	g.sll.Family = unix.AF_PACKET
	g.sll.Halen = 6
	return g, nil
}

func (g *gsoTx) close() {
	unix.Close(g.fd)
	g.nl.Close()
}

// ask tells the resolver that Send has packets for a, without waiting.
func (g *gsoTx) ask(a vtepAddr) {
	select {
	case g.want <- a:
	default: // the resolver is busy: a later Send asks again
	}
}

// hopLoop resolves the VTEPs Send asks about and looks up those it knows
// again every hopRefresh, until Close. A VTEP that could not be resolved
// is not tried again before hopRefresh has passed, however often Send
// asks.
func (p *Port) hopLoop() {
	defer p.wg.Done()
	g := p.gso
	t := time.NewTicker(hopRefresh)
	defer t.Stop()
	for {
		select {
		case <-g.wake:
			return
		case a := <-g.want:
			m := *g.hops.Load()
			if _, ok := m[a]; ok || len(m) >= hopMax || !p.isKnown(a) || g.failedLately(a) {
				continue
			}
			if h, ok := p.resolve(a, nil); ok {
				n := make(map[vtepAddr]hop, len(m)+1)
				for k, v := range m {
					n[k] = v
				}
				n[a] = h
				g.hops.Store(&n)
			}
		case <-t.C:
			m := *g.hops.Load()
			n := make(map[vtepAddr]hop, len(m))
			c := &hopCache{links: map[int]netlink.Link{}, neighs: map[int][]netlink.Neigh{}}
			for a := range m {
				if !p.isKnown(a) {
					continue // no longer a VTEP of the port
				}
				if h, ok := p.resolve(a, c); ok {
					n[a] = h
				}
			}
			g.hops.Store(&n)
		}
	}
}

func (p *Port) isKnown(a vtepAddr) bool {
	p.tabMu.RLock()
	defer p.tabMu.RUnlock()
	return p.known[a] > 0
}

// failure is why and when a VTEP could not be resolved.
type failure struct {
	why string
	at  time.Time
}

func (g *gsoTx) failedLately(a vtepAddr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	f, ok := g.failed[a]
	return ok && time.Since(f.at) < hopRefresh
}

// hopCache holds one refresh's devices and neighbour tables, each read
// once however many VTEPs share it.
type hopCache struct {
	links  map[int]netlink.Link
	neighs map[int][]netlink.Neigh
}

// resolve asks the kernel how packets to a leave: the route's device and
// next hop, and the next hop's MAC from the neighbour table (through c,
// if not nil). A neighbour the kernel has not confirmed lately is poked
// (NTF_USE: the kernel probes it, as when its own packets use it); one
// it does not know yet is created and resolved the same way, and a is
// tried again when Send asks after hopRefresh. A VTEP that cannot be
// resolved is logged when the reason changes.
func (p *Port) resolve(a vtepAddr, c *hopCache) (hop, bool) {
	g := p.gso
	h, err := p.lookupHop(a, c)
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil {
		if f, ok := g.failed[a]; ok || len(g.failed) < hopMax {
			if f.why != err.Error() {
				p.log.Debug("vxlan: no UDP GSO to this VTEP: packets go one by one", "vtep", a.addr(), "why", err)
			}
			g.failed[a] = failure{why: err.Error(), at: time.Now()}
		}
		return hop{}, false
	}
	delete(g.failed, a)
	return h, true
}

func (p *Port) lookupHop(a vtepAddr, c *hopCache) (hop, error) {
	g := p.gso
	ip := net.IP(a.addr().AsSlice())
	local := net.IP(p.cfg.Local.AsSlice())
	// A multipath route spreads flows over its next hops by their source
	// ports (with fib_multipath_hash_policy 1): the raw socket keeps
	// that, one next hop for every super-packet would not.
	fm, err := g.nl.RouteGetWithOptions(ip, &netlink.RouteGetOptions{SrcAddr: local, FIBMatch: true})
	if err != nil {
		return hop{}, fmt.Errorf("route: %w", err)
	}
	if len(fm) > 0 && len(fm[0].MultiPath) > 1 {
		return hop{}, fmt.Errorf("multipath route (%d next hops): the kernel spreads the flows", len(fm[0].MultiPath))
	}
	rs, err := g.nl.RouteGetWithOptions(ip, &netlink.RouteGetOptions{SrcAddr: local})
	if err != nil {
		return hop{}, fmt.Errorf("route: %w", err)
	}
	if len(rs) == 0 {
		return hop{}, errors.New("no route")
	}
	r := rs[0]
	if r.Type != unix.RTN_UNICAST {
		return hop{}, fmt.Errorf("route of type %d, not unicast", r.Type)
	}
	nh := ip
	if r.Gw != nil {
		nh = r.Gw
	}
	var l netlink.Link
	if c != nil {
		l = c.links[r.LinkIndex]
	}
	if l == nil {
		if l, err = g.nl.LinkByIndex(r.LinkIndex); err != nil {
			return hop{}, fmt.Errorf("device %d: %w", r.LinkIndex, err)
		}
		if c != nil {
			c.links[r.LinkIndex] = l
		}
	}
	la := l.Attrs()
	if la.EncapType != "ether" || len(la.HardwareAddr) != 6 {
		return hop{}, fmt.Errorf("device %s is not Ethernet", la.Name)
	}
	family := unix.AF_INET
	if p.v6 {
		family = unix.AF_INET6
	}
	var ns []netlink.Neigh
	var cached bool
	if c != nil {
		ns, cached = c.neighs[r.LinkIndex]
	}
	if !cached {
		if ns, err = g.nl.NeighList(r.LinkIndex, family); err != nil {
			return hop{}, fmt.Errorf("neighbours of %s: %w", la.Name, err)
		}
		if c != nil {
			c.neighs[r.LinkIndex] = ns
		}
	}
	mtu := la.MTU
	if r.MTU > 0 && r.MTU < mtu {
		mtu = r.MTU
	}
	for _, n := range ns {
		if !n.IP.Equal(nh) {
			continue
		}
		const usable = unix.NUD_REACHABLE | unix.NUD_STALE | unix.NUD_DELAY | unix.NUD_PROBE | unix.NUD_PERMANENT | unix.NUD_NOARP
		if n.State&usable == 0 || len(n.HardwareAddr) != 6 {
			break
		}
		if n.State&(unix.NUD_REACHABLE|unix.NUD_PERMANENT|unix.NUD_NOARP) == 0 {
			g.poke(r.LinkIndex, family, nh)
		}
		return hop{ifindex: int32(r.LinkIndex), mtu: int32(mtu), dst: [6]byte(n.HardwareAddr), src: [6]byte(la.HardwareAddr)}, nil
	}
	g.poke(r.LinkIndex, family, nh)
	return hop{}, fmt.Errorf("next hop %v on %s not resolved yet", nh, la.Name)
}

// poke makes the kernel resolve (or confirm) the neighbour ip on link:
// NTF_USE has it treat the entry as used (neigh_event_send), which probes
// one that is new, stale or failed. Without NLM_F_EXCL (NeighSet, not
// NeighAdd) an existing entry is poked too rather than refused with
// EEXIST; NTF_USE changes no entry's address or state itself. Its error is
// not looked at: the next lookup finds what came of it.
func (g *gsoTx) poke(link, family int, ip net.IP) {
	g.nl.NeighSet(&netlink.Neigh{LinkIndex: link, Family: family, IP: ip, Flags: netlink.NTF_USE})
}

// gsoRun returns the end of the run of messages from k (at most m) that
// can leave as one super-packet: to one VTEP, of one inner flow, all of
// the first one's length but the last, which may be shorter.
func (p *Port) gsoRun(b *txBatch, k, m int) int {
	l := b.ilen[k]
	seg := HdrLen + int(l)
	room := ipMax - udpLen
	if !p.v6 {
		room -= ipv4Len
	}
	most := min(gsoMaxSegs, room/seg)
	e := k + 1
	for e < m && e-k < most && b.dst[e] == b.dst[k] && b.fh[e] == b.fh[k] {
		switch {
		case b.ilen[e] == l:
			e++
			continue
		case b.ilen[e] < l:
			e++
		}
		break
	}
	return e
}

// sendGSO sends messages [k, e) of the batch as one super-packet through
// h; false if the kernel refused it (the caller sends them one by one).
func (p *Port) sendGSO(b *txBatch, k, e int, h hop) bool {
	g := p.gso
	hb := g.hdr[:vnetHdrLen+ethLen+p.ipLen+udpLen]
	p.outer(hb, b, k, e, h)
	g.iov[0].Base = &hb[0]
	g.iov[0].SetLen(len(hb))
	n := 1
	for j := k; j < e; j++ {
		s := int(b.slot[j])
		g.iov[n].Base = &b.hdrs[hdrRoom*s+udpLen]
		g.iov[n].SetLen(hdrRoom - udpLen)
		g.iov[n+1] = b.iovs[2*s+1]
		n += 2
	}
	g.msg.SetIovlen(n)
	g.sll.Ifindex = h.ifindex
	g.sll.Protocol = binary.NativeEndian.Uint16(hb[vnetHdrLen+12:]) // in network order
	g.sll.Addr = [8]byte{}
	copy(g.sll.Addr[:6], h.dst[:])
	var errno unix.Errno
	for {
		_, _, errno = unix.Syscall(unix.SYS_SENDMSG, uintptr(g.fd), uintptr(unsafe.Pointer(&g.msg)), 0)
		if errno != unix.EINTR {
			break
		}
	}
	for j := 1; j < n; j++ {
		g.iov[j].Base = nil // no reference to the caller's frames
	}
	if errno != 0 {
		p.st.gsoFallback.Add(1)
		p.log.Debug("vxlan: UDP GSO packet refused, sent one by one", "vtep", b.dst[k].addr(), "error", errno)
		return false
	}
	var bytes uint64
	for j := k; j < e; j++ {
		b.sent[b.frame[j]] = true
		bytes += uint64(b.ilen[j])
	}
	p.st.txBytes.Add(bytes)
	p.st.txPackets.Add(uint64(e - k))
	p.st.direct.Add(uint64(e - k))
	p.st.gsoPackets.Add(1)
	return true
}

// outer writes into hb the virtio-net header and the outer Ethernet, IP
// and UDP headers of messages [k, e) of the batch, sent through h: one
// super-packet (GSO_UDP_L4) if there are two or more, else one packet
// (with the UDP checksum over IPv4 zero, over IPv6 the kernel's to
// complete unless Config.UDP6ZeroCsumTx: as the raw socket's).
func (p *Port) outer(hb []byte, b *txBatch, k, e int, h hop) {
	g := p.gso
	seg := HdrLen + int(b.ilen[k])
	payload := 0
	for j := k; j < e; j++ {
		payload += HdrLen + int(b.ilen[j])
	}
	outer := ethLen + p.ipLen + udpLen
	gso := e-k > 1
	csum := gso || p.v6 && !p.cfg.UDP6ZeroCsumTx
	// struct virtio_net_hdr, little-endian (virtio 1.x).
	clear(hb[:vnetHdrLen])
	if csum {
		hb[0] = vnetNeedsCsum
		binary.LittleEndian.PutUint16(hb[6:], uint16(ethLen+p.ipLen))
		binary.LittleEndian.PutUint16(hb[8:], 6) // the UDP checksum's offset
	}
	if gso {
		hb[1] = vnetGSOUDPL4
		binary.LittleEndian.PutUint16(hb[2:], uint16(outer))
		binary.LittleEndian.PutUint16(hb[4:], uint16(seg))
	}
	eth := hb[vnetHdrLen:]
	copy(eth[0:6], h.dst[:])
	copy(eth[6:12], h.src[:])
	ip := eth[ethLen:]
	udp := ip[p.ipLen:]
	ulen := udpLen + payload
	var sum uint32 // the pseudo-header's
	if p.v6 {
		binary.BigEndian.PutUint16(eth[12:], 0x86dd)
		var label uint32
		if p.labels.Load() {
			label = flowLabel(b.fh[k])
		}
		binary.BigEndian.PutUint32(ip[0:], 6<<28|label)
		binary.BigEndian.PutUint16(ip[4:], uint16(ulen))
		ip[6], ip[7] = unix.IPPROTO_UDP, ttl
		copy(ip[8:24], p.cfg.Local.AsSlice())
		copy(ip[24:40], b.dst[k][:])
		sum = sumWords(ip[8:40], 0)
	} else {
		binary.BigEndian.PutUint16(eth[12:], 0x0800)
		ip[0], ip[1] = 0x45, 0
		binary.BigEndian.PutUint16(ip[2:], uint16(ipv4Len+ulen))
		binary.BigEndian.PutUint16(ip[4:], g.id)
		g.id += uint16(e - k)                      // the kernel numbers the segments from it
		binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
		ip[8], ip[9] = ttl, unix.IPPROTO_UDP
		ip[10], ip[11] = 0, 0
		copy(ip[12:16], p.cfg.Local.AsSlice())
		copy(ip[16:20], b.dst[k][12:])
		binary.BigEndian.PutUint16(ip[10:], ^fold(sumWords(ip[:ipv4Len], 0)))
		sum = sumWords(ip[12:20], 0)
	}
	copy(udp[0:4], b.hdrs[hdrRoom*int(b.slot[k]):]) // the ports the message has
	binary.BigEndian.PutUint16(udp[4:], uint16(ulen))
	binary.BigEndian.PutUint16(udp[6:], 0)
	if csum {
		// CHECKSUM_PARTIAL: the field holds the pseudo-header's sum (with
		// the whole length, which the kernel adjusts for each segment).
		binary.BigEndian.PutUint16(udp[6:], fold(sum+unix.IPPROTO_UDP+uint32(ulen)))
	}
}

// sumWords adds b's big-endian 16-bit words to s (one's complement, not
// folded); b has an even length.
func sumWords(b []byte, s uint32) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	return s
}

// fold folds a one's complement sum to 16 bits.
func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// outerRoom is one packet's virtio-net header and outer headers.
const outerRoom = vnetHdrLen + ethLen + ipv6Len + udpLen

// pktBatch is the sendmmsg(2) argument of single packets to resolved
// VTEPs through the AF_PACKET socket (Send's, under txMu): per message
// its outer headers, the VXLAN header and inner MACs, the rest of the
// frame.
type pktBatch struct {
	msgs []unix.Mmsghdr
	iovs []unix.Iovec
	hdrs []byte
	sll  []unix.RawSockaddrLinklayer
	pos  []int32 // the message of the txBatch each one sends
	n    int
}

func newPktBatch(n int) pktBatch {
	b := pktBatch{msgs: make([]unix.Mmsghdr, n), iovs: make([]unix.Iovec, 3*n), hdrs: make([]byte, outerRoom*n),
		sll: make([]unix.RawSockaddrLinklayer, n), pos: make([]int32, n)}
	for i := range b.msgs {
		b.msgs[i].Hdr.Iov = &b.iovs[3*i]
		b.msgs[i].Hdr.SetIovlen(3)
		b.msgs[i].Hdr.Name = (*byte)(unsafe.Pointer(&b.sll[i]))
		b.msgs[i].Hdr.Namelen = unix.SizeofSockaddrLinklayer
		b.sll[i].Family = unix.AF_PACKET
		b.sll[i].Halen = 6
	}
	return b
}

// addOne queues message k of the batch, a single packet to h's VTEP.
func (p *Port) addOne(b *txBatch, k int, h hop) {
	o := &p.gso.one
	i := o.n
	hb := o.hdrs[outerRoom*i : outerRoom*i+vnetHdrLen+ethLen+p.ipLen+udpLen]
	p.outer(hb, b, k, k+1, h)
	s := int(b.slot[k])
	o.iovs[3*i].Base = &hb[0]
	o.iovs[3*i].SetLen(len(hb))
	o.iovs[3*i+1].Base = &b.hdrs[hdrRoom*s+udpLen]
	o.iovs[3*i+1].SetLen(hdrRoom - udpLen)
	o.iovs[3*i+2] = b.iovs[2*s+1]
	o.sll[i].Ifindex = h.ifindex
	o.sll[i].Protocol = binary.NativeEndian.Uint16(hb[vnetHdrLen+12:])
	copy(o.sll[i].Addr[:6], h.dst[:])
	o.pos[i] = int32(k)
	o.n++
}

// flushOne sends the queued single packets; one the device refuses goes
// through the raw socket instead.
func (p *Port) flushOne(b *txBatch) {
	o := &p.gso.one
	for from := 0; from < o.n; {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(p.gso.fd), uintptr(unsafe.Pointer(&o.msgs[from])), uintptr(o.n-from), 0, 0, 0)
		switch {
		case e == unix.EINTR:
			continue
		case e != 0 || r == 0:
			k := int(o.pos[from])
			p.st.gsoFallback.Add(1)
			p.sendRaw(b, k, k+1)
			from++
			continue
		}
		var bytes uint64
		for i := from; i < from+int(r); i++ {
			k := o.pos[i]
			b.sent[b.frame[k]] = true
			bytes += uint64(b.ilen[k])
		}
		p.st.txBytes.Add(bytes)
		p.st.txPackets.Add(uint64(r))
		p.st.direct.Add(uint64(r))
		from += int(r)
	}
	for i := range o.n {
		o.iovs[3*i+2].Base = nil // no reference to the caller's frames
	}
	o.n = 0
}
