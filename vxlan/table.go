package vxlan

import (
	"fmt"
	"net/netip"
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

// AddFloodVTEP adds vtep to vni's flood list (a control plane's: an
// EVPN inclusive-multicast route). It fails for a VTEP of the other
// address family than the port's.
func (p *Port) AddFloodVTEP(vni uint32, vtep netip.Addr) error {
	if err := p.family(vtep); err != nil {
		return err
	}
	if _, ok := p.vniVLAN[vni]; !ok {
		return fmt.Errorf("vxlan: VNI %d is not mapped to a VLAN", vni)
	}
	p.tabMu.Lock()
	defer p.tabMu.Unlock()
	v := p.newVTEP(vtep)
	for _, o := range p.added[vni] {
		if o.addr == v.addr {
			return nil
		}
	}
	p.added[vni] = append(p.added[vni], v)
	p.known[v.addr]++
	p.rebuildFlood()
	return nil
}

// DelFloodVTEP removes vtep from vni's flood list.
func (p *Port) DelFloodVTEP(vni uint32, vtep netip.Addr) {
	vtep = vtep.Unmap()
	if !vtep.IsValid() || vtep.Is6() != p.v6 {
		return
	}
	a := vtepAddr(vtep.As16())
	p.tabMu.Lock()
	defer p.tabMu.Unlock()
	l := p.added[vni]
	for i, o := range l {
		if o.addr == a {
			p.added[vni] = append(l[:i:i], l[i+1:]...)
			p.unref(a)
			p.rebuildFlood()
			return
		}
	}
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

// rebuildFlood recomputes every VNI's flood list: the static remotes
// and those added for it, each once; tabMu held (or not yet shared).
func (p *Port) rebuildFlood() {
	fl := make(map[uint32][]vtep, len(p.vniVLAN))
	for vni := range p.vniVLAN {
		l := append([]vtep(nil), p.static...)
	next:
		for _, v := range p.added[vni] {
			for _, o := range l {
				if o.addr == v.addr {
					continue next
				}
			}
			l = append(l, v)
		}
		if len(l) > 0 {
			fl[vni] = l
		}
	}
	p.flood = fl
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
