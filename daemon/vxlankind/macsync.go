package vxlankind

import (
	"context"
	"net/netip"
	"time"

	"github.com/hashicorp/go-hclog"

	vswitch "hvnet/switch"
)

// advertiser is what macSync tells of local MACs: the EVPN speaker.
type advertiser interface {
	AdvertiseMAC(vni uint32, mac [6]byte, ip netip.Addr, seq uint32) error
	WithdrawMAC(vni uint32, mac [6]byte, ip netip.Addr) error
}

// macSync keeps the advertised MACs equal to the switch's local MACs in
// the VLANs the tunnel carries: every MAC the switch has learned (or has
// as a static entry) on a port other than the tunnel, in a mapped VLAN,
// is advertised under its VNI; one that ages out, is flushed or whose
// port goes is withdrawn. It polls the FDB (a dump is a few
// microseconds per thousand entries) rather than hooking the switch's
// learning, which runs on the data path.
type macSync struct {
	sw     *vswitch.Switch
	port   string            // the tunnel's switch port
	vlans  map[uint16]uint32 // VLAN → VNI
	adv    advertiser
	log    hclog.Logger
	every  time.Duration
	seq    func(vni uint32, mac [6]byte) uint32 // the sequence a MAC is advertised with (MAC mobility)
	have   map[macKey]struct{}
	errors uint64
}

type macKey struct {
	vni uint32
	mac [6]byte
}

// sync advertises the MACs that appeared and withdraws those that went;
// it returns how many changed.
func (m *macSync) sync() int {
	now := map[macKey]struct{}{}
	for _, e := range m.sw.FDB() {
		if e.Port == m.port {
			continue
		}
		if vni, ok := m.vlans[e.VLAN]; ok {
			now[macKey{vni, e.MAC}] = struct{}{}
		}
	}
	changed := 0
	for k := range now {
		if _, ok := m.have[k]; ok {
			continue
		}
		if err := m.adv.AdvertiseMAC(k.vni, k.mac, netip.Addr{}, m.seq(k.vni, k.mac)); err != nil {
			m.errors++
			m.log.Warn("advertising a local MAC failed", "vni", k.vni, "mac", vswitch.MAC(k.mac), "error", err)
			continue
		}
		m.have[k] = struct{}{}
		changed++
	}
	for k := range m.have {
		if _, ok := now[k]; ok {
			continue
		}
		if err := m.adv.WithdrawMAC(k.vni, k.mac, netip.Addr{}); err != nil {
			m.errors++
			m.log.Warn("withdrawing a local MAC failed", "vni", k.vni, "mac", vswitch.MAC(k.mac), "error", err)
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
				m.adv.WithdrawMAC(k.vni, k.mac, netip.Addr{})
			}
			return
		case <-t.C:
		}
	}
}
