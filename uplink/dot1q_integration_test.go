package uplink

import (
	"testing"

	"github.com/vishvananda/netlink"

	vswitch "github.com/hvnet/hvnet/switch"
)

// TestPhysicalDot1Q is the first topology with real kernel VLANs:
// the uplink (a trunk: VLANs 10, 20 and S-VLAN 300 tagged, VLAN 1 native)
// is a veth into a namespace that plays the physical network, where one
// host has its untagged address on eth0, one on the 802.1Q subinterface
// eth0.10, and one behind an 802.1ad S-VLAN subinterface eth0.300 (with a
// customer VLAN eth0.300.77 on top of it). Where this kernel lacks 802.1Q
// (as on the build machines), the test runs inside the nested test host.
func TestPhysicalDot1Q(t *testing.T) {
	if needVLANKernel(t) {
		return
	}
	phys := newNS(t, "phys")
	vethInto(t, "qup0", phys, "eth0")
	phys.Addr(t, "eth0", "10.0.1.100/24")
	phys.vlan(t, "eth0", "eth0.10", 10, netlink.VLAN_PROTOCOL_8021Q)
	phys.Addr(t, "eth0.10", "10.0.10.100/24")
	phys.vlan(t, "eth0", "eth0.300", 300, netlink.VLAN_PROTOCOL_8021AD)
	phys.Addr(t, "eth0.300", "10.3.0.100/24")
	phys.vlan(t, "eth0.300", "eth0.300.77", 77, netlink.VLAN_PROTOCOL_8021Q)
	phys.Addr(t, "eth0.300.77", "10.3.77.100/24")

	sw := vswitch.New(vswitch.Config{})
	up := attach(t, sw, "qup0", vswitch.PortConfig{Mode: vswitch.ModeTrunk,
		AllowedVLANs: []uint16{10, 20, 300}, NativeVLAN: 1}, Config{})
	g10 := newNSGuest(t, sw, "qg10", vswitch.PortConfig{Mode: vswitch.ModeAccess, PVID: 10}, "", "10.0.10.1/24")
	// In VLAN 20 but addressed in VLAN 10's subnet: must not reach it.
	g20 := newNSGuest(t, sw, "qg20", vswitch.PortConfig{Mode: vswitch.ModeAccess, PVID: 20}, "", "10.0.10.2/24")
	gn := newNSGuest(t, sw, "qgn", vswitch.PortConfig{Mode: vswitch.ModeAccess, PVID: 1}, "", "10.0.1.1/24")
	// A customer port: everything it sends, untagged or C-tagged (its own
	// 802.1Q subinterface eth0.77), leaves the uplink inside S-VLAN 300.
	gq := newNSGuest(t, sw, "qgq", vswitch.PortConfig{Mode: vswitch.ModeDot1QTunnel, PVID: 300}, "", "10.3.0.1/24")
	gq.vlan(t, "eth0", "eth0.77", 77, netlink.VLAN_PROTOCOL_8021Q)
	gq.Addr(t, "eth0.77", "10.3.77.1/24")

	if !g10.reaches(t, "10.0.10.100") {
		t.Errorf("guest in VLAN 10 cannot reach the host on the physical 802.1Q subinterface eth0.10")
	}
	if !g20.unreachable(t, "10.0.10.100") {
		t.Errorf("guest in VLAN 20 reaches the host on eth0.10 (VLAN 10)")
	}
	if !gn.reaches(t, "10.0.1.100") {
		t.Errorf("guest in the native VLAN cannot reach the untagged host")
	}
	if !gq.reaches(t, "10.3.0.100") {
		t.Errorf("QinQ: untagged frames of the customer port do not reach the host on S-VLAN 300 (eth0.300, 802.1ad)")
	}
	if !gq.reaches(t, "10.3.77.100") {
		t.Errorf("QinQ: C-VLAN 77 inside S-VLAN 300 does not reach the host on eth0.300.77")
	}
	if st := up.Stats(); st.RxVLANRestored == 0 {
		t.Errorf("uplink restored no VLAN tags: %+v", st)
	}

	// GSO: bulk TCP both ways between the guest and the host on eth0.10
	// crosses the uplink in frames larger than the MTU, with gso_type set,
	// and the switch does not segment them on their way to the guest.
	before, gBefore := up.Stats(), g10.port.Stats()
	t.Log(iperf3(t, phys, "10.0.10.100", g10.nsT, 2, false)) // guest -> physical host
	t.Log(iperf3(t, phys, "10.0.10.100", g10.nsT, 2, true))  // physical host -> guest
	st, gs := up.Stats(), g10.port.Stats()
	t.Logf("uplink: rx %d frames (%d GSO), tx %d frames (%d GSO)", st.RxFrames-before.RxFrames, st.RxGSO-before.RxGSO,
		st.TxFrames-before.TxFrames, st.TxGSO-before.TxGSO)
	if st.TxGSO == before.TxGSO {
		t.Errorf("no GSO frames sent through the uplink: %+v", st)
	}
	if st.RxGSO == before.RxGSO {
		t.Errorf("no GSO frames received from the uplink: %+v", st)
	}
	if gs.TxGSO == gBefore.TxGSO {
		t.Errorf("GSO frames from the uplink were segmented before the guest: %+v", gs)
	}
	for _, c := range sw.Counters() {
		if c.Drops[vswitch.DropMalformed] != 0 {
			t.Errorf("port %s dropped %d malformed frames", c.Name, c.Drops[vswitch.DropMalformed])
		}
	}
}
