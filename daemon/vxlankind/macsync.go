package vxlankind

import (
	"context"
	"net/netip"
	"time"

	"github.com/hashicorp/go-hclog"

	vswitch "hvnet/switch"
	"hvnet/vxlan"
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

// macSync keeps the advertised MACs equal to the switch's local MACs in
// the VLANs the tunnel carries: every MAC the switch has learned (or has
// as a static entry) on a port other than the tunnel, in a mapped VLAN,
// is advertised under its VNI; one that ages out, is flushed or whose
// port goes is withdrawn. Each IP the tunnel port learned for a local
// MAC is advertised too, as a MAC/IP route of its own (the MAC-only
// route stays, as FRR does); a binding whose MAC is no longer local is
// forgotten and its route withdrawn. It polls the FDB (a dump is a few
// microseconds per thousand entries) rather than hooking the switch's
// learning, which runs on the data path.
type macSync struct {
	sw     *vswitch.Switch
	port   string            // the tunnel's switch port
	vlans  map[uint16]uint32 // VLAN → VNI
	adv    advertiser
	ips    localIPs // nil: MAC-only routes
	log    hclog.Logger
	every  time.Duration
	seq    func(vni uint32, mac [6]byte) uint32 // the sequence a MAC is advertised with (MAC mobility)
	have   map[routeKey]struct{}
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

// sync advertises the MACs that appeared and withdraws those that went;
// it returns how many changed.
func (m *macSync) sync() int {
	// The bindings are read before the FDB: the switch learns a frame's
	// source MAC before the tunnel port sees the frame, so a binding's
	// MAC is in this FDB dump unless it went.
	var ips []vxlan.IPBinding
	if m.ips != nil {
		ips = m.ips.LocalIPs()
	}
	now := map[routeKey]struct{}{}
	for _, e := range m.sw.FDB() {
		if e.Port == m.port {
			continue
		}
		if vni, ok := m.vlans[e.VLAN]; ok {
			now[routeKey{vni: vni, mac: e.MAC}] = struct{}{}
		}
	}
	for _, b := range ips {
		if _, ok := now[routeKey{vni: b.VNI, mac: b.MAC}]; !ok {
			m.ips.DelLocalIP(b.VNI, b.MAC, b.IP)
			continue
		}
		now[routeKey{b.VNI, b.MAC, b.IP}] = struct{}{}
	}
	changed := 0
	for k := range now {
		if _, ok := m.have[k]; ok {
			continue
		}
		if err := m.adv.AdvertiseMAC(k.vni, k.mac, k.ip, m.seq(k.vni, k.mac)); err != nil {
			m.errors++
			m.log.Warn("advertising a local MAC failed", "vni", k.vni, "mac", vswitch.MAC(k.mac), "ip", k.ip, "error", err)
			continue
		}
		m.have[k] = struct{}{}
		changed++
	}
	for k := range m.have {
		if _, ok := now[k]; ok {
			continue
		}
		if err := m.adv.WithdrawMAC(k.vni, k.mac, k.ip); err != nil {
			m.errors++
			m.log.Warn("withdrawing a local MAC failed", "vni", k.vni, "mac", vswitch.MAC(k.mac), "ip", k.ip, "error", err)
			continue
		}
		delete(m.have, k)
		changed++
	}
	return changed
}

// run syncs every m.every until ctx ends, then withdraws everything.
func (m *macSync) run(ctx context.Context) {
	t := time.NewTicker(m.every)
	defer t.Stop()
	for {
		m.sync()
		select {
		case <-ctx.Done():
			for k := range m.have {
				m.adv.WithdrawMAC(k.vni, k.mac, k.ip)
			}
			return
		case <-t.C:
		}
	}
}
