package vxlan

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"time"

	vswitch "github.com/hvnet/hvnet/switch"
)

// ARP and IPv6 neighbour discovery on the port: the local MACs' IP
// addresses learned from what the switch sends the port (for a control
// plane to advertise as MAC/IP routes), the table of remote MAC/IP
// bindings a control plane fills, and the answers to ARP requests and
// neighbour solicitations given from that table instead of flooding them
// to every VTEP (ARP/ND suppression).

// Bounds of the ARP/ND tables (Config's zero values).
const (
	DefaultMaxIPsPerMAC = 4     // local IPs one MAC may have
	DefaultMaxLocalIPs  = 65536 // local MAC/IP bindings in all
	DefaultMaxRemoteIPs = 65536 // remote MAC/IP bindings in all
)

const (
	etherTypeARP  = 0x0806
	etherTypeIPv6 = 0x86dd
	arpLen        = 28 // an Ethernet/IPv4 ARP packet
	ipv6Len       = 40 // the IPv6 header
	protoICMPv6   = 58
	icmp6NS       = 135 // neighbour solicitation
	icmp6NA       = 136 // neighbour advertisement
	ndLen         = 24  // an NS or NA without options
	ndMaxLen      = 256 // the longest NS or NA looked at (options included)
	optSourceLL   = 1   // source link-layer address option
	optTargetLL   = 2   // target link-layer address option
	minFrame      = 60  // an Ethernet frame without FCS, at least
	replyRoom     = ethLen + tagLen + ipv6Len + ndLen + 8
	replyRingSize = 64 // replies waiting to enter the switch
	logEvery      = time.Second
)

// IPBinding is a MAC's IP address in a VNI.
type IPBinding struct {
	VNI uint32
	MAC [6]byte
	IP  netip.Addr
}

type ipKey struct {
	vni uint32
	ip  netip.Addr
}

// neighTables are the local and remote MAC/IP bindings, guarded by mu.
// Lock order: the port's tabMu before mu.
type neighTables struct {
	mu     sync.RWMutex
	local  map[ipKey][6]byte // local bindings: an IP and its MAC
	perMAC map[macKey]int    // local IPs per MAC
	remote map[ipKey][6]byte // remote bindings (a control plane's)
	// changed receives a value when a local binding was added or
	// changed (LocalIPsChanged).
	changed chan struct{}
}

// replyRing holds answers built in Send until the reply goroutine hands
// them to the switch: Send runs inside the switch's forwarding (another
// port's Input), where entering the switch again could deadlock.
type replyRing struct {
	mu    sync.Mutex
	slots [replyRingSize][replyRoom]byte
	lens  [replyRingSize]int
	head  int
	n     int
	wake  chan struct{}
}

// push copies f into the ring; false when it is full.
func (r *replyRing) push(f []byte) bool {
	r.mu.Lock()
	if r.n == replyRingSize {
		r.mu.Unlock()
		return false
	}
	i := (r.head + r.n) % replyRingSize
	r.lens[i] = copy(r.slots[i][:], f)
	r.n++
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return true
}

// replyLoop hands the queued replies to the switch, as frames received
// from the tunnel, until Close.
func (p *Port) replyLoop() {
	defer p.wg.Done()
	r := &p.ring
	var bufs [replyRingSize][replyRoom]byte
	frames := make([]vswitch.Frame, 0, replyRingSize)
	for !p.stop.Load() {
		<-r.wake
		frames = frames[:0]
		r.mu.Lock()
		for ; r.n > 0; r.n-- {
			k := len(frames)
			n := copy(bufs[k][:], r.slots[r.head][:r.lens[r.head]])
			frames = append(frames, vswitch.Frame{Data: bufs[k][:n]})
			r.head = (r.head + 1) % replyRingSize
		}
		r.mu.Unlock()
		if h := p.handle.Load(); h != nil && len(frames) > 0 {
			h.Input(frames)
			p.st.replies.Add(uint64(len(frames)))
		}
		clear(frames[:cap(frames)])
	}
}

// ignored counts an ARP or ND packet the port learns nothing from
// (malformed, or claiming what it may not) and logs it, once a second
// at most.
func (p *Port) ignored(why string, vni uint32, src []byte) {
	p.st.snoopIgnored.Add(1)
	now := time.Now().UnixNano()
	last := p.lastLog.Load()
	if now-last < int64(logEvery) || !p.lastLog.CompareAndSwap(last, now) {
		return
	}
	p.log.Warn("ARP/ND packet ignored", "reason", why, "vni", vni, "source", vswitch.MAC(src[:6]).String(),
		"ignored_total", p.st.snoopIgnored.Load())
}

// neighFrame looks at frame d that the switch sends the port in vni (its
// L3 header at l3): an ARP packet or an IPv6 neighbour solicitation or
// advertisement teaches the port a local binding, and a request the
// remote table answers is answered. It returns true when the frame is
// consumed (answered: not to be sent). Send calls it with txMu and a
// read lock of tabMu held; it reads the frame once, into its own copy.
func (p *Port) neighFrame(vni uint32, d []byte, l3 int) bool {
	switch binary.BigEndian.Uint16(d[l3-2:]) {
	case etherTypeARP:
		return p.arpFrame(vni, d, l3)
	case etherTypeIPv6:
		if len(d) >= l3+ipv6Len && d[l3+6] == protoICMPv6 {
			return p.ndFrame(vni, d, l3)
		}
	}
	return false
}

// sourceOK checks the frame's source MAC: a unicast MAC that is not a
// remote one (tabMu held).
func (p *Port) sourceOK(vni uint32, src [6]byte) string {
	if src[0]&1 != 0 || src == ([6]byte{}) {
		return "multicast or zero source MAC"
	}
	if _, ok := p.remote[macKey{vni, src}]; ok {
		return "source MAC is a remote VTEP's"
	}
	return ""
}

func (p *Port) arpFrame(vni uint32, d []byte, l3 int) bool {
	if len(d) < l3+arpLen {
		p.ignored("short ARP packet", vni, d[6:12])
		return false
	}
	f := p.nbuf[:l3+arpLen]
	copy(f, d)
	a := f[l3:]
	if binary.BigEndian.Uint16(a[0:]) != 1 || binary.BigEndian.Uint16(a[2:]) != 0x0800 || a[4] != 6 || a[5] != 4 {
		p.ignored("ARP for other than Ethernet and IPv4", vni, f[6:12])
		return false
	}
	op := binary.BigEndian.Uint16(a[6:])
	if op != 1 && op != 2 {
		p.ignored("ARP opcode neither request nor reply", vni, f[6:12])
		return false
	}
	src := [6]byte(f[6:12])
	if [6]byte(a[8:14]) != src {
		p.ignored("ARP sender MAC is not the frame's source", vni, f[6:12])
		return false
	}
	if why := p.sourceOK(vni, src); why != "" {
		p.ignored(why, vni, f[6:12])
		return false
	}
	spa, tpa := netip.AddrFrom4([4]byte(a[14:18])), netip.AddrFrom4([4]byte(a[24:28]))
	if spa.IsUnspecified() {
		return false // a probe (RFC 5227): nothing to learn, not answered
	}
	if !spa.IsGlobalUnicast() {
		p.ignored("ARP sender IP is not a unicast address", vni, f[6:12])
		return false
	}
	p.learnLocal(vni, src, spa)
	if op != 1 || !p.cfg.Suppress || [6]byte(f[:6]) != broadcast || spa == tpa {
		return false // gratuitous ARP and unicast requests go as they are
	}
	mac, ok := p.remoteIP(vni, tpa)
	if !ok || mac == src {
		return false
	}
	// The reply: from the owner of tpa to the requester, in the request's
	// VLAN.
	r := p.rbuf[:max(l3+arpLen, minFrame+l3-ethLen)]
	clear(r)
	copy(r[0:6], src[:])
	copy(r[6:12], mac[:])
	copy(r[12:l3], f[12:l3]) // the tag, if any, and the EtherType
	ra := r[l3:]
	copy(ra[0:6], a[0:6])
	binary.BigEndian.PutUint16(ra[6:], 2)
	copy(ra[8:14], mac[:])
	copy(ra[14:18], a[24:28])
	copy(ra[18:24], src[:])
	copy(ra[24:28], a[14:18])
	if !p.handleSet() || !p.ring.push(r) {
		p.st.ringFull.Add(1)
		return false // flooded as without suppression
	}
	p.st.arpSuppressed.Add(1)
	return true
}

var broadcast = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func (p *Port) handleSet() bool { return p.handle.Load() != nil }

func (p *Port) ndFrame(vni uint32, d []byte, l3 int) bool {
	pl := int(binary.BigEndian.Uint16(d[l3+4:]))
	if len(d) < l3+ipv6Len+1 {
		return false
	}
	if t := d[l3+ipv6Len]; t != icmp6NS && t != icmp6NA {
		return false // other ICMPv6: not for the port
	}
	if pl < ndLen || pl > ndMaxLen || len(d) < l3+ipv6Len+pl {
		p.ignored("NS/NA of a bad length", vni, d[6:12])
		return false
	}
	f := p.nbuf[:l3+ipv6Len+pl]
	copy(f, d)
	ip := f[l3:]
	icmp := ip[ipv6Len:]
	typ := icmp[0]
	if typ != icmp6NS && typ != icmp6NA {
		return false // changed under us: not looked at
	}
	if ip[0]>>4 != 6 || ip[7] != 255 || icmp[1] != 0 {
		p.ignored("NS/NA with a bad version, hop limit or code", vni, f[6:12])
		return false
	}
	if icmp6Checksum(ip[8:24], ip[24:40], icmp) != 0 {
		p.ignored("NS/NA with a bad checksum", vni, f[6:12])
		return false
	}
	target := netip.AddrFrom16([16]byte(icmp[8:24]))
	if target.IsMulticast() {
		p.ignored("NS/NA for a multicast target", vni, f[6:12])
		return false
	}
	want := byte(optSourceLL)
	if typ == icmp6NA {
		want = optTargetLL
	}
	var lla [6]byte
	hasLLA := false
	for o := icmp[ndLen:]; len(o) > 0; {
		if len(o) < 8 || o[1] == 0 || int(o[1])*8 > len(o) {
			p.ignored("NS/NA with a malformed option", vni, f[6:12])
			return false
		}
		if o[0] == want && o[1] == 1 {
			lla, hasLLA = [6]byte(o[2:8]), true
		}
		o = o[int(o[1])*8:]
	}
	src := [6]byte(f[6:12])
	srcIP := netip.AddrFrom16([16]byte(ip[8:24]))
	if typ == icmp6NS && srcIP.IsUnspecified() {
		return false // duplicate address detection: nothing to learn, not answered
	}
	if why := p.sourceOK(vni, src); why != "" {
		p.ignored(why, vni, f[6:12])
		return false
	}
	if hasLLA && lla != src {
		p.ignored("NS/NA link-layer address is not the frame's source", vni, f[6:12])
		return false
	}
	if typ == icmp6NA {
		if hasLLA && target.IsGlobalUnicast() {
			p.learnLocal(vni, src, target)
		}
		return false
	}
	if hasLLA && srcIP.IsGlobalUnicast() {
		p.learnLocal(vni, src, srcIP)
	}
	// A multicast solicitation to the target's solicited-node address
	// (RFC 4861 §7.2.2) the remote table answers.
	if !p.cfg.Suppress || !target.IsGlobalUnicast() || !solicitedNode(ip[24:40], f[:6], icmp[8:24]) {
		return false
	}
	mac, ok := p.remoteIP(vni, target)
	if !ok || mac == src {
		return false
	}
	// The advertisement (RFC 4861 §4.4): solicited, not override (as a
	// proxy's, §7.2.8), with the target link-layer address, from the
	// target to the soliciting node.
	r := p.rbuf[:l3+ipv6Len+ndLen+8]
	clear(r)
	copy(r[0:6], src[:])
	copy(r[6:12], mac[:])
	copy(r[12:l3], f[12:l3])
	rip := r[l3:]
	rip[0] = 0x60
	binary.BigEndian.PutUint16(rip[4:], ndLen+8)
	rip[6] = protoICMPv6
	rip[7] = 255
	copy(rip[8:24], icmp[8:24])
	copy(rip[24:40], ip[8:24])
	na := rip[ipv6Len:]
	na[0] = icmp6NA
	na[4] = 0x40 // S
	copy(na[8:24], icmp[8:24])
	na[24], na[25] = optTargetLL, 1
	copy(na[26:32], mac[:])
	binary.BigEndian.PutUint16(na[2:], icmp6Checksum(rip[8:24], rip[24:40], na))
	if !p.handleSet() || !p.ring.push(r) {
		p.st.ringFull.Add(1)
		return false
	}
	p.st.ndSuppressed.Add(1)
	return true
}

// solicitedNode reports whether dstIP and dstMAC are the solicited-node
// multicast address of target (ff02::1:ffXX:XXXX, RFC 4291 §2.7.1) and
// its MAC (33:33 and the address's last 32 bits, RFC 2464 §7).
func solicitedNode(dstIP, dstMAC, target []byte) bool {
	want := [16]byte{0xff, 0x02, 10: 0, 11: 1, 12: 0xff, 13: target[13], 14: target[14], 15: target[15]}
	return [16]byte(dstIP) == want && [6]byte(dstMAC) == [6]byte{0x33, 0x33, 0xff, target[13], target[14], target[15]}
}

// icmp6Checksum is the ICMPv6 checksum (RFC 4443 §2.3) of msg from src to
// dst: over a message with a correct checksum in place it is 0; over one
// with zero there, it is the value to put there.
func icmp6Checksum(src, dst, msg []byte) uint16 {
	var s uint64
	add := func(b []byte) {
		for len(b) >= 2 {
			s += uint64(b[0])<<8 | uint64(b[1])
			b = b[2:]
		}
		if len(b) == 1 {
			s += uint64(b[0]) << 8
		}
	}
	add(src)
	add(dst)
	s += uint64(len(msg)) + protoICMPv6
	add(msg)
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// learnLocal records that ip in vni is mac's (a new binding replaces
// another MAC's for the same IP). A MAC with its share of IPs, or a full
// table, learns nothing more and counts it.
func (p *Port) learnLocal(vni uint32, mac [6]byte, ip netip.Addr) {
	if !p.cfg.LearnIPs {
		return
	}
	n := &p.nb
	k := ipKey{vni, ip}
	n.mu.RLock()
	cur, ok := n.local[k]
	n.mu.RUnlock()
	if ok && cur == mac {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	cur, ok = n.local[k]
	if ok && cur == mac {
		return
	}
	mk := macKey{vni, mac}
	if n.perMAC[mk] >= p.cfg.MaxIPsPerMAC || (!ok && len(n.local) >= p.cfg.MaxLocalIPs) {
		p.st.localFull.Add(1)
		return
	}
	if ok {
		n.unrefMAC(macKey{vni, cur})
	}
	n.local[k] = mac
	n.perMAC[mk]++
	select {
	case n.changed <- struct{}{}:
	default:
	}
}

func (n *neighTables) unrefMAC(k macKey) {
	if n.perMAC[k]--; n.perMAC[k] <= 0 {
		delete(n.perMAC, k)
	}
}

// remoteIP returns the remote MAC of ip in vni.
func (p *Port) remoteIP(vni uint32, ip netip.Addr) ([6]byte, bool) {
	p.nb.mu.RLock()
	mac, ok := p.nb.remote[ipKey{vni, ip}]
	p.nb.mu.RUnlock()
	return mac, ok
}

// LocalIPs returns the local MAC/IP bindings the port has learned.
func (p *Port) LocalIPs() []IPBinding {
	p.nb.mu.RLock()
	defer p.nb.mu.RUnlock()
	out := make([]IPBinding, 0, len(p.nb.local))
	for k, mac := range p.nb.local {
		out = append(out, IPBinding{VNI: k.vni, MAC: mac, IP: k.ip})
	}
	return out
}

// LocalIPsChanged receives a value when a local binding was learned or
// changed its MAC since the last value (one value for any number of
// changes): a control plane reads LocalIPs then, rather than polling it.
func (p *Port) LocalIPsChanged() <-chan struct{} { return p.nb.changed }

// DelLocalIP forgets the local binding of ip to mac in vni (its MAC is no
// longer local); a binding of ip to another MAC stays.
func (p *Port) DelLocalIP(vni uint32, mac [6]byte, ip netip.Addr) {
	n := &p.nb
	n.mu.Lock()
	defer n.mu.Unlock()
	k := ipKey{vni, ip}
	if cur, ok := n.local[k]; ok && cur == mac {
		delete(n.local, k)
		n.unrefMAC(macKey{vni, mac})
	}
}

// SetRemoteIP records that ip in vni is the remote mac's (a control
// plane's MAC/IP route): requests for ip are answered with mac when
// suppression is on. It replaces another MAC's binding of ip, and fails
// when the table is full.
func (p *Port) SetRemoteIP(vni uint32, mac [6]byte, ip netip.Addr) error {
	ip = ip.Unmap()
	if !ip.IsGlobalUnicast() || ip.Zone() != "" {
		return fmt.Errorf("vxlan: remote IP %v: want a unicast address", ip)
	}
	if mac[0]&1 != 0 || mac == ([6]byte{}) {
		return fmt.Errorf("vxlan: remote IP %v: MAC %v is not a unicast MAC", ip, vswitch.MAC(mac))
	}
	if _, ok := p.vniVLAN[vni]; !ok {
		return fmt.Errorf("vxlan: VNI %d is not mapped to a VLAN", vni)
	}
	n := &p.nb
	n.mu.Lock()
	defer n.mu.Unlock()
	k := ipKey{vni, ip}
	if _, ok := n.remote[k]; !ok && len(n.remote) >= p.cfg.MaxRemoteIPs {
		p.st.remoteIPFull.Add(1)
		return fmt.Errorf("vxlan: remote MAC/IP table full (%d entries)", p.cfg.MaxRemoteIPs)
	}
	n.remote[k] = mac
	return nil
}

// DelRemoteIP removes the remote binding of ip to mac in vni (a binding
// of ip to another MAC stays).
func (p *Port) DelRemoteIP(vni uint32, mac [6]byte, ip netip.Addr) {
	n := &p.nb
	n.mu.Lock()
	defer n.mu.Unlock()
	k := ipKey{vni, ip.Unmap()}
	if cur, ok := n.remote[k]; ok && cur == mac {
		delete(n.remote, k)
	}
}

// RemoteIPs returns the remote MAC/IP bindings.
func (p *Port) RemoteIPs() []IPBinding {
	p.nb.mu.RLock()
	defer p.nb.mu.RUnlock()
	out := make([]IPBinding, 0, len(p.nb.remote))
	for k, mac := range p.nb.remote {
		out = append(out, IPBinding{VNI: k.vni, MAC: mac, IP: k.ip})
	}
	return out
}
