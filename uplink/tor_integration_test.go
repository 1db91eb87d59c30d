package uplink

import (
	"testing"

	"github.com/vishvananda/netlink"

	vswitch "github.com/hvnet/hvnet/switch"
)

// TestTwoHostsTopOfRack is the second topology with a real
// top-of-rack switch: two switches (hosts A and B), each with guests, their
// trunk uplinks joined by a Linux bridge with vlan_filtering=1 in its own
// namespace, whose two ports are trunks for VLANs 10 and 20 only (VLAN 1
// removed; `bridge vlan add dev tA vid 10` and so on, through netlink).
// Guests talk across hosts within a VLAN and not across VLANs; VLAN 30,
// allowed by both hosts but not by the bridge, is dropped by the bridge
// until it is added there; a MAC that moves from A to B is followed by
// both switches. Where this kernel lacks bridge VLAN filtering (as on the
// build machines), the test runs inside the nested test host.
func TestTwoHostsTopOfRack(t *testing.T) {
	if needVLANKernel(t) {
		return
	}
	tor := newNS(t, "tor")
	on := true
	if err := tor.H.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}, VlanFiltering: &on}); err != nil {
		t.Fatalf("bridge with vlan_filtering=1: %v", err)
	}
	tor.Up(t, "br0")
	if b, ok := tor.Link(t, "br0").(*netlink.Bridge); !ok || b.VlanFiltering == nil || !*b.VlanFiltering {
		t.Fatalf("br0 has no VLAN filtering: %+v", tor.Link(t, "br0"))
	}
	trunk := vswitch.PortConfig{Mode: vswitch.ModeTrunk, AllowedVLANs: []uint16{10, 20, 30}}
	var sws [2]*vswitch.Switch
	for i, host := range []string{"A", "B"} {
		up, tp := "qup"+host, "t"+host
		vethInto(t, up, tor, tp)
		port := tor.Link(t, tp)
		if err := tor.H.LinkSetMaster(port, tor.Link(t, "br0")); err != nil {
			t.Fatalf("%s master br0: %v", tp, err)
		}
		// A trunk for 10 and 20: tagged members, and out of the default
		// VLAN 1 (PVID, untagged) so untagged frames go nowhere.
		for _, vid := range []uint16{10, 20} {
			if err := tor.H.BridgeVlanAdd(port, vid, false, false, false, true); err != nil {
				t.Fatalf("bridge vlan add dev %s vid %d: %v", tp, vid, err)
			}
		}
		if err := tor.H.BridgeVlanDel(port, 1, false, false, false, true); err != nil {
			t.Fatalf("bridge vlan del dev %s vid 1: %v", tp, err)
		}
		sws[i] = vswitch.New(vswitch.Config{})
		attach(t, sws[i], up, trunk, Config{})
	}
	if vl, err := tor.H.BridgeVlanList(); err == nil {
		for idx, vs := range vl {
			t.Logf("top-of-rack VLAN membership of ifindex %d: %v", idx, vs)
		}
	}
	swA, swB := sws[0], sws[1]
	access := func(vid uint16) vswitch.PortConfig { return vswitch.PortConfig{Mode: vswitch.ModeAccess, PVID: vid} }
	a10 := newNSGuest(t, swA, "qa10", access(10), "", "10.0.10.1/24")
	newNSGuest(t, swB, "qb10", access(10), "", "10.0.10.2/24")
	// Same subnet, other VLAN.
	newNSGuest(t, swB, "qb20", access(20), "", "10.0.10.3/24")
	a20 := newNSGuest(t, swA, "qa20", access(20), "", "10.0.10.4/24")
	a30 := newNSGuest(t, swA, "qa30", access(30), "", "10.0.30.1/24")
	newNSGuest(t, swB, "qb30", access(30), "", "10.0.30.2/24")

	if !a10.reaches(t, "10.0.10.2") {
		t.Errorf("A VLAN 10 -> B VLAN 10 failed")
	}
	if !a20.reaches(t, "10.0.10.3") {
		t.Errorf("A VLAN 20 -> B VLAN 20 failed")
	}
	if !a10.unreachable(t, "10.0.10.3") {
		t.Errorf("A VLAN 10 reached B VLAN 20")
	}
	if !a20.unreachable(t, "10.0.10.2") {
		t.Errorf("A VLAN 20 reached B VLAN 10")
	}
	// VLAN 30: both hosts carry it, the top-of-rack switch does not.
	if !a30.unreachable(t, "10.0.30.2") {
		t.Errorf("VLAN 30 crosses the top-of-rack bridge, which is not a member of it")
	}
	for _, tp := range []string{"tA", "tB"} {
		if err := tor.H.BridgeVlanAdd(tor.Link(t, tp), 30, false, false, false, true); err != nil {
			t.Fatalf("bridge vlan add dev %s vid 30: %v", tp, err)
		}
	}
	if !a30.reaches(t, "10.0.30.2") {
		t.Errorf("VLAN 30 does not cross the top-of-rack bridge after adding it to both ports")
	}

	// MAC move: a guest (fixed MAC) first on host A, then on host B.
	const mac = "02:00:00:00:00:99"
	m, _ := vswitch.ParseMAC(mac)
	where := func(sw *vswitch.Switch) string {
		for _, e := range sw.FDB() {
			if e.MAC == m && e.VLAN == 10 {
				return e.Port
			}
		}
		return ""
	}
	mvA := newNSGuest(t, swA, "qmva", access(10), mac, "10.0.10.9/24")
	if !mvA.reaches(t, "10.0.10.2") {
		t.Fatalf("guest on A cannot reach B")
	}
	if a, b := where(swA), where(swB); a != "qmva" || b != "qupB" {
		t.Errorf("before the move: MAC on A at %q, on B at %q; want qmva, qupB", a, b)
	}
	mvA.port.Close()
	swA.RemovePort("qmva")
	if l, err := netlink.LinkByName("qmva"); err == nil {
		netlink.LinkDel(l)
	}
	movesBefore := swB.SwitchCounters().Moves
	mvB := newNSGuest(t, swB, "qmvb", access(10), mac, "10.0.10.9/24")
	if !mvB.reaches(t, "10.0.10.1") {
		t.Fatalf("moved guest on B cannot reach A")
	}
	if a, b := where(swA), where(swB); a != "qupA" || b != "qmvb" {
		t.Errorf("after the move: MAC on A at %q, on B at %q; want qupA, qmvb", a, b)
	}
	if swB.SwitchCounters().Moves == movesBefore {
		t.Errorf("switch B counted no MAC move")
	}
}
