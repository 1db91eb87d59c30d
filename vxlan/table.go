package vxlan

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// The remote MACs and the flood lists: what a control plane (BGP EVPN)
// programs, and what learning fills.

// SetRemoteMAC points mac in vni at the VTEP vtep (a control plane's
// entry: it replaces a learned one and does not age). It fails when the
// table is full, or vtep is not of the port's address family.
func (p *Port) SetRemoteMAC(vni uint32, mac [6]byte, vtep netip.Addr) error {
	if err := p.family(vtep); err != nil {
		return err
	}
	if _, ok := p.vniVLAN[vni]; !ok {
		return fmt.Errorf("vxlan: VNI %d is not mapped to a VLAN", vni)
	}
	p.tabMu.Lock()
	defer p.tabMu.Unlock()
	k := macKey{vni, mac}
	if old, ok := p.remote[k]; ok {
		p.unref(old.vtep.addr)
	} else if len(p.remote) >= p.cfg.MaxRemoteMACs {
		p.st.full.Add(1)
		return fmt.Errorf("vxlan: remote MAC table full (%d entries)", p.cfg.MaxRemoteMACs)
	}
	e := &remoteMAC{vtep: p.newVTEP(vtep)}
	p.remote[k] = e
	p.known[e.vtep.addr]++
	return nil
}

// DelRemoteMAC removes mac in vni (learned or set).
func (p *Port) DelRemoteMAC(vni uint32, mac [6]byte) {
	p.tabMu.Lock()
	defer p.tabMu.Unlock()
	k := macKey{vni, mac}
	if e, ok := p.remote[k]; ok {
		delete(p.remote, k)
		p.unref(e.vtep.addr)
	}
}

// DefaultMaxFloodVTEPs bounds the VTEPs a control plane adds to one
// VNI's flood list (Config.MaxFloodVTEPs' zero value). Every VTEP of a
// VNI's list gets its own copy of each broadcast, multicast and unknown
// unicast frame (ingress replication), so the bound is also the most one
// frame a tenant sends becomes on the underlay (1024 packets of up to the
// underlay MTU: 1.5 MB for one broadcast at 1500 bytes), and without it
// every type-3 route a BGP peer sends for a new originator would lengthen
// the list (a peer may send 100,000 routes, max-routes). 1024 is well
// above the VTEPs one VNI spans in the fabrics ingress replication suits;
// a larger one wants the underlay's multicast instead.
const DefaultMaxFloodVTEPs = 1024

// ErrFloodListFull is AddFloodVTEP's error (wrapped) for a VNI whose
// flood list has Config.MaxFloodVTEPs VTEPs added already.
var ErrFloodListFull = errors.New("vxlan: flood list full")

// AddFloodVTEP adds vtep to vni's flood list (a control plane's: an
// EVPN inclusive-multicast route). It fails for a VTEP of the other
// address family than the port's, for a VNI not mapped to a VLAN, and
// when the VNI has Config.MaxFloodVTEPs VTEPs added already
// (ErrFloodListFull; counted as FloodVTEPsFull, logged at the first
// refusal and each power of two). Adding a VTEP the VNI has added already
// does nothing. Only the VNI's list changes, in time linear in its
// length at most (an append, mostly), made aside and stored under tabMu
// at once: Send never waits on it.
func (p *Port) AddFloodVTEP(vni uint32, vtep netip.Addr) error {
	if err := p.family(vtep); err != nil {
		return err
	}
	if _, ok := p.vniVLAN[vni]; !ok {
		return fmt.Errorf("vxlan: VNI %d is not mapped to a VLAN", vni)
	}
	v := p.newVTEP(vtep)
	p.floodMu.Lock()
	defer p.floodMu.Unlock()
	set := p.added[vni]
	if _, dup := set[v.addr]; dup {
		return nil
	}
	if len(set) >= p.cfg.MaxFloodVTEPs {
		n := p.st.floodFull.Add(1)
		if n&(n-1) == 0 {
			p.log.Warn("vxlan: flood list full: VTEP not added", "vni", vni, "vtep", vtep.Unmap(), "max_flood_vteps", p.cfg.MaxFloodVTEPs,
				"refused_total", n)
		}
		return fmt.Errorf("vxlan: VNI %d: VTEP %v not added: %w (%d VTEPs, the most allowed)", vni, vtep.Unmap(), ErrFloodListFull,
			p.cfg.MaxFloodVTEPs)
	}
	if set == nil {
		set = map[vtepAddr]struct{}{}
		p.added[vni] = set
	}
	set[v.addr] = struct{}{}
	l := p.flood[vni]
	if !p.isStatic[v.addr] {
		// Past the end of every list stored with this array (lists are
		// only appended to in place, and a removal makes a new array),
		// or into a new array: no reader sees the write.
		l = append(l, v)
	}
	p.tabMu.Lock()
	p.flood[vni] = l
	p.known[v.addr]++
	p.tabMu.Unlock()
	return nil
}

// DelFloodVTEP removes the VTEP at addr from vni's flood list (one
// AddFloodVTEP added; the static VTEPs stay).
func (p *Port) DelFloodVTEP(vni uint32, addr netip.Addr) {
	addr = addr.Unmap()
	if !addr.IsValid() || addr.Is6() != p.v6 {
		return
	}
	a := vtepAddr(addr.As16())
	p.floodMu.Lock()
	defer p.floodMu.Unlock()
	set := p.added[vni]
	if _, ok := set[a]; !ok {
		return
	}
	delete(set, a)
	if len(set) == 0 {
		delete(p.added, vni)
	}
	l := p.flood[vni]
	if !p.isStatic[a] {
		i := 0
		for i < len(l) && l[i].addr != a {
			i++
		}
		if i < len(l) {
			l = slices.Concat(l[:i], l[i+1:]) // a new array: readers may be going through the old one
		}
	}
	p.tabMu.Lock()
	if len(l) == 0 {
		delete(p.flood, vni)
	} else {
		p.flood[vni] = l
	}
	p.unref(a)
	p.tabMu.Unlock()
}

// RemoteVTEPs returns each VNI's flood list.
func (p *Port) RemoteVTEPs() map[uint32][]netip.Addr {
	p.tabMu.RLock()
	defer p.tabMu.RUnlock()
	out := map[uint32][]netip.Addr{}
	for vni, l := range p.flood {
		for _, v := range l {
			out[vni] = append(out[vni], v.addr.addr())
		}
	}
	return out
}

// RemoteMACEntry is an entry of the table of remote MACs.
type RemoteMACEntry struct {
	VNI     uint32
	MAC     [6]byte
	VTEP    netip.Addr
	Learned bool // from a received packet (else set by a control plane)
}

// RemoteMACs returns the table of remote MACs.
func (p *Port) RemoteMACs() []RemoteMACEntry {
	p.tabMu.RLock()
	defer p.tabMu.RUnlock()
	out := make([]RemoteMACEntry, 0, len(p.remote))
	for k, e := range p.remote {
		out = append(out, RemoteMACEntry{VNI: k.vni, MAC: k.mac, VTEP: e.vtep.addr.addr(), Learned: e.learned})
	}
	return out
}

// unref drops a reference to a known VTEP; tabMu held.
func (p *Port) unref(a vtepAddr) {
	if p.known[a]--; p.known[a] <= 0 {
		delete(p.known, a)
	}
}

// learn records that mac in vni is behind the VTEP at src (a received
// packet's source), unless a control plane's entry says where it is.
func (p *Port) learn(vni uint32, mac [6]byte, src vtepAddr, now int64) {
	k := macKey{vni, mac}
	p.tabMu.RLock()
	e, ok := p.remote[k]
	if ok && (!e.learned || e.vtep.addr == src) {
		if e.learned {
			e.seen.Store(now)
		}
		p.tabMu.RUnlock()
		return
	}
	p.tabMu.RUnlock()
	p.tabMu.Lock()
	defer p.tabMu.Unlock()
	if e, ok := p.remote[k]; ok {
		if !e.learned {
			return
		}
		p.unref(e.vtep.addr)
	} else if len(p.remote) >= p.cfg.MaxRemoteMACs {
		p.st.full.Add(1)
		return
	}
	n := &remoteMAC{vtep: p.newVTEP(src.addr()), learned: true}
	n.seen.Store(now)
	p.remote[k] = n
	p.known[src]++
}

// ageLoop removes learned entries not refreshed for the aging time.
func (p *Port) ageLoop() {
	defer p.wg.Done()
	t := time.NewTicker(100 * time.Millisecond) // notices Close
	defer t.Stop()
	every := min(p.cfg.Aging/4, 10*time.Second)
	last := time.Now()
	for !p.stop.Load() {
		<-t.C
		if time.Since(last) < every {
			continue
		}
		last = time.Now()
		cutoff := time.Now().Add(-p.cfg.Aging).UnixNano()
		p.tabMu.Lock()
		for k, e := range p.remote {
			if e.learned && e.seen.Load() < cutoff {
				delete(p.remote, k)
				p.unref(e.vtep.addr)
			}
		}
		p.tabMu.Unlock()
	}
}
