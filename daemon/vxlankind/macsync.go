package vxlankind

import (
	"context"
	"net/netip"
	"time"

	"github.com/hashicorp/go-hclog"

	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/vxlan"
)

// advertiser is what macSync tells of local MACs: the EVPN speaker.
type advertiser interface {
	AdvertiseMAC(vni uint32, mac [6]byte, ip netip.Addr, seq uint32) error
	WithdrawMAC(vni uint32, mac [6]byte, ip netip.Addr) error
}

// localIPs are the local MACs' IP addresses the tunnel port learned
// (vxlan.Port).
type localIPs interface {
	LocalIPs() []vxlan.IPBinding
	DelLocalIP(vni uint32, mac [6]byte, ip netip.Addr)
}

// fdbSource is the switch as macSync reads it.
type fdbSource interface {
	FDB() []vswitch.FDBEntry
	LookupFDB(vid uint16, mac vswitch.MAC) (port string, ok bool)
}

// Bounds and periods of macSync.
const (
	// watchKeys bounds the FDB changes remembered between two reads;
	// past it, the whole FDB is read again.
	watchKeys = 65536
	// retryEvery is how often routes that failed are tried again.
	retryEvery = time.Second
	// resyncEvery is how often the whole FDB is compared with what is
	// advertised, in case a change was missed (none should be: this
	// bounds the damage of a bug, at 3 ms per 10,000 entries).
	resyncEvery = 30 * time.Second
)

// macSync keeps the advertised MACs equal to the switch's local MACs in
// the VLANs the tunnel carries: every MAC the switch has learned (or has
// as a static entry) on a port other than the tunnel, in a mapped VLAN,
// is advertised under its VNI; one that ages out, is flushed or whose
// port goes is withdrawn. Each IP the tunnel port learned for a local
// MAC is advertised too, as a MAC/IP route of its own (the MAC-only
// route stays, as FRR does); a binding whose MAC is no longer local is
// forgotten and its route withdrawn.
//
// It is driven by changes, as zebra is by the kernel's neighbour
// notifications: the switch's FDB watch names the entries that were
// added, moved or removed, and the tunnel port says when it learned a
// binding; only those MACs are looked at. The switch's writers note the
// changes (a new MAC, a move, a deletion), so forwarding pays nothing
// for it. The whole FDB is read once at the start, after a watch
// overflow, and every resyncEvery.
type macSync struct {
	sw    fdbSource
	port  string            // the tunnel's switch port
	vlans map[uint16]uint32 // VLAN → VNI
	adv   advertiser
	ips   localIPs // nil: MAC-only routes
	log   hclog.Logger
	seq   func(vni uint32, mac [6]byte) uint32 // the sequence a MAC is advertised with (MAC mobility)

	local  map[macKey]struct{}                // MACs on local ports of mapped VLANs
	bound  map[macKey]map[netip.Addr]struct{} // the local MACs' IPs
	have   map[macKey]map[netip.Addr]struct{} // advertised routes (the invalid address: the MAC-only route)
	failed map[macKey]struct{}                // MACs whose routes could not all be changed: retried
	errors uint64
}

type macKey struct {
	vni uint32
	mac [6]byte
}

// routeKey is an advertised type-2 route: a MAC, with an IP or without.
type routeKey struct {
	vni uint32
	mac [6]byte
	ip  netip.Addr
}

func newMACSync(sw fdbSource, port string, vlans map[uint16]uint32, adv advertiser, ips localIPs, log hclog.Logger,
	seq func(uint32, [6]byte) uint32) *macSync {
	return &macSync{sw: sw, port: port, vlans: vlans, adv: adv, ips: ips, log: log, seq: seq,
		local: map[macKey]struct{}{}, bound: map[macKey]map[netip.Addr]struct{}{},
		have: map[macKey]map[netip.Addr]struct{}{}, failed: map[macKey]struct{}{}}
}

// sync reads the whole FDB and the tunnel port's bindings, advertises the
// routes that appeared and withdraws those that went; it returns how
// many changed.
func (m *macSync) sync() int {
	// The bindings are read before the FDB: the switch learns a frame's
	// source MAC before the tunnel port sees the frame, so a binding's
	// MAC is in this FDB dump unless it went.
	var ips []vxlan.IPBinding
	if m.ips != nil {
		ips = m.ips.LocalIPs()
	}
	local := map[macKey]struct{}{}
	for _, e := range m.sw.FDB() {
		if e.Port == m.port {
			continue
		}
		if vni, ok := m.vlans[e.VLAN]; ok {
			local[macKey{vni, e.MAC}] = struct{}{}
		}
	}
	dirty := map[macKey]struct{}{}
	for k := range local {
		dirty[k] = struct{}{}
	}
	for k := range m.have {
		dirty[k] = struct{}{}
	}
	m.local = local
	m.setBindings(ips, dirty, false)
	return m.reconcileAll(dirty)
}

// syncKeys looks at the FDB entries that changed.
func (m *macSync) syncKeys(keys []vswitch.FDBKey) int {
	dirty := map[macKey]struct{}{}
	for _, fk := range keys {
		vni, ok := m.vlans[fk.VLAN]
		if !ok {
			continue
		}
		k := macKey{vni, fk.MAC}
		if port, ok := m.sw.LookupFDB(fk.VLAN, fk.MAC); ok && port != m.port {
			m.local[k] = struct{}{}
		} else {
			delete(m.local, k)
			for ip := range m.bound[k] {
				m.ips.DelLocalIP(k.vni, k.mac, ip)
			}
			delete(m.bound, k)
		}
		dirty[k] = struct{}{}
	}
	return m.reconcileAll(dirty)
}

// syncIPs reads the tunnel port's bindings again.
func (m *macSync) syncIPs() int {
	if m.ips == nil {
		return 0
	}
	dirty := map[macKey]struct{}{}
	m.setBindings(m.ips.LocalIPs(), dirty, true)
	return m.reconcileAll(dirty)
}

// setBindings replaces the local MACs' IPs with ips, marking the MACs
// whose IPs changed dirty. A binding of a MAC that is not local is
// forgotten (DelLocalIP); with lookup, a MAC not yet known to be local
// is looked up in the FDB first (its change may not have been read yet).
func (m *macSync) setBindings(ips []vxlan.IPBinding, dirty map[macKey]struct{}, lookup bool) {
	bound := map[macKey]map[netip.Addr]struct{}{}
	for _, b := range ips {
		k := macKey{b.VNI, b.MAC}
		if _, ok := m.local[k]; !ok && lookup {
			if vid, ok := m.vlanOf(b.VNI); ok {
				if port, ok := m.sw.LookupFDB(vid, b.MAC); ok && port != m.port {
					m.local[k] = struct{}{}
					dirty[k] = struct{}{}
				}
			}
		}
		if _, ok := m.local[k]; !ok {
			m.ips.DelLocalIP(b.VNI, b.MAC, b.IP)
			continue
		}
		if bound[k] == nil {
			bound[k] = map[netip.Addr]struct{}{}
		}
		bound[k][b.IP] = struct{}{}
	}
	for k, s := range bound {
		if !sameSet(s, m.bound[k]) {
			dirty[k] = struct{}{}
		}
	}
	for k := range m.bound {
		if _, ok := bound[k]; !ok {
			dirty[k] = struct{}{}
		}
	}
	m.bound = bound
}

func (m *macSync) vlanOf(vni uint32) (uint16, bool) {
	for vid, v := range m.vlans {
		if v == vni {
			return vid, true
		}
	}
	return 0, false
}

func sameSet(a, b map[netip.Addr]struct{}) bool {
	if len(a) != len(b) {
		return false
	}
	for x := range a {
		if _, ok := b[x]; !ok {
			return false
		}
	}
	return true
}

// reconcileAll brings the routes of the dirty MACs in line.
func (m *macSync) reconcileAll(dirty map[macKey]struct{}) int {
	n := 0
	for k := range dirty {
		n += m.reconcile(k)
	}
	return n
}

// reconcile advertises a MAC's routes that should be and are not, and
// withdraws those that are and should not; it returns how many changed.
// A MAC whose routes did not all change is retried later.
func (m *macSync) reconcile(k macKey) int {
	want := map[netip.Addr]struct{}{}
	if _, ok := m.local[k]; ok {
		want[netip.Addr{}] = struct{}{}
		for ip := range m.bound[k] {
			want[ip] = struct{}{}
		}
	}
	have := m.have[k]
	changed, failed := 0, false
	for ip := range want {
		if _, ok := have[ip]; ok {
			continue
		}
		if err := m.adv.AdvertiseMAC(k.vni, k.mac, ip, m.seq(k.vni, k.mac)); err != nil {
			m.errors++
			failed = true
			m.log.Warn("advertising a local MAC failed", "vni", k.vni, "mac", vswitch.MAC(k.mac), "ip", ip, "error", err)
			continue
		}
		if have == nil {
			have = map[netip.Addr]struct{}{}
			m.have[k] = have
		}
		have[ip] = struct{}{}
		changed++
	}
	for ip := range have {
		if _, ok := want[ip]; ok {
			continue
		}
		if err := m.adv.WithdrawMAC(k.vni, k.mac, ip); err != nil {
			m.errors++
			failed = true
			m.log.Warn("withdrawing a local MAC failed", "vni", k.vni, "mac", vswitch.MAC(k.mac), "ip", ip, "error", err)
			continue
		}
		delete(have, ip)
		changed++
	}
	if len(have) == 0 {
		delete(m.have, k)
	}
	if failed {
		m.failed[k] = struct{}{}
	} else {
		delete(m.failed, k)
	}
	return changed
}

// retry tries the routes that failed again.
func (m *macSync) retry() int {
	if len(m.failed) == 0 {
		return 0
	}
	dirty := m.failed
	m.failed = map[macKey]struct{}{}
	return m.reconcileAll(dirty)
}

// fdbWatch is the switch's change feed (vswitch.FDBWatch).
type fdbWatch interface {
	C() <-chan struct{}
	Changes() (keys []vswitch.FDBKey, overflow bool)
}

// run syncs on every change until ctx ends, then withdraws everything.
// ipsChanged (nil: none) says that the tunnel port learned bindings.
func (m *macSync) run(ctx context.Context, w fdbWatch, ipsChanged <-chan struct{}) {
	m.sync()
	retry := time.NewTicker(retryEvery)
	defer retry.Stop()
	resync := time.NewTicker(resyncEvery)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			for k, routes := range m.have {
				for ip := range routes {
					m.adv.WithdrawMAC(k.vni, k.mac, ip)
				}
			}
			return
		case <-w.C():
			if keys, overflow := w.Changes(); overflow {
				m.sync()
			} else {
				m.syncKeys(keys)
			}
		case <-ipsChanged:
			m.syncIPs()
		case <-retry.C:
			m.retry()
		case <-resync.C:
			if n := m.sync(); n > 0 {
				// Changes whose notice is still on its way, or a
				// missed one.
				m.log.Debug("full FDB resync changed routes", "changes", n)
			}
		}
	}
}
