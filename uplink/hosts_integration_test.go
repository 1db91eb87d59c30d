package uplink

import (
	"os/exec"
	"testing"

	"github.com/hvnet/hvnet/internal/netnstest"
	vswitch "github.com/hvnet/hvnet/switch"
)

// TestTwoHosts: two switches ("hosts" A and B), each with guests in VLANs
// 10 and 20, their trunk uplinks joined by a Linux bridge in its own
// namespace playing the top-of-rack switch. The bridge runs with
// vlan_filtering=1 where the kernel has it; this machine's kernel lacks
// CONFIG_BRIDGE_VLAN_FILTERING, and then the bridge forwards tagged frames
// transparently, which is enough: the VLANs are kept apart by the hosts.
// TestTwoHostsTopOfRack has the filtering bridge for real (in the nested
// test host where this kernel lacks it).
func TestTwoHosts(t *testing.T) {
	netnstest.Need(t)
	torNS := netnstest.New(t, "hvu-tor")
	netnstest.Run(t, "ip", "-n", torNS, "link", "add", "br0", "type", "bridge")
	if netnstest.TryRun("ip", "-n", torNS, "link", "set", "br0", "type", "bridge", "vlan_filtering", "1") {
		defer t.Log("top-of-rack bridge with vlan_filtering=1")
	} else {
		t.Log("kernel without bridge VLAN filtering: the top-of-rack bridge is 802.1Q-transparent")
	}
	netnstest.Run(t, "ip", "-n", torNS, "link", "set", "br0", "up")
	trunk := vswitch.PortConfig{Mode: vswitch.ModeTrunk, AllowedVLANs: []uint16{10, 20}}
	var sws [2]*vswitch.Switch
	for i, host := range []string{"A", "B"} {
		up, tp := "up"+host, "t"+host
		netnstest.Veth(t, up, torNS, tp)
		netnstest.Run(t, "ip", "-n", torNS, "link", "set", tp, "master", "br0")
		for _, vid := range []string{"10", "20"} {
			netnstest.TryRun("bridge", "-n", torNS, "vlan", "add", "dev", tp, "vid", vid)
		}
		sws[i] = vswitch.New(vswitch.Config{})
		attach(t, sws[i], up, trunk, Config{})
	}
	swA, swB := sws[0], sws[1]
	a10 := newGuest(t, swA, "a10", vswitch.PortConfig{Mode: vswitch.ModeAccess, PVID: 10}, "", "10.0.10.1/24")
	newGuest(t, swB, "b10", vswitch.PortConfig{Mode: vswitch.ModeAccess, PVID: 10}, "", "10.0.10.2/24")
	// Same subnet, other VLAN.
	newGuest(t, swB, "b20", vswitch.PortConfig{Mode: vswitch.ModeAccess, PVID: 20}, "", "10.0.10.3/24")
	a20 := newGuest(t, swA, "a20", vswitch.PortConfig{Mode: vswitch.ModeAccess, PVID: 20}, "", "10.0.10.4/24")

	if !ping(a10.ns, "10.0.10.2") {
		t.Errorf("A VLAN 10 -> B VLAN 10 failed")
	}
	if !ping(a20.ns, "10.0.10.3") {
		t.Errorf("A VLAN 20 -> B VLAN 20 failed")
	}
	if !pingFails(a10.ns, "10.0.10.3") {
		t.Errorf("A VLAN 10 reached B VLAN 20")
	}
	if !pingFails(a20.ns, "10.0.10.2") {
		t.Errorf("A VLAN 20 reached B VLAN 10")
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
	mvA := newGuest(t, swA, "mva", vswitch.PortConfig{Mode: vswitch.ModeAccess, PVID: 10}, mac, "10.0.10.9/24")
	if !ping(mvA.ns, "10.0.10.2") {
		t.Fatalf("guest on A cannot reach B")
	}
	if a, b := where(swA), where(swB); a != "mva" || b != "upB" {
		t.Errorf("before the move: MAC on A at %q, on B at %q; want mva, upB", a, b)
	}
	mvA.port.Close()
	swA.RemovePort("mva")
	exec.Command("ip", "link", "del", "mva").Run()
	movesBefore := swB.SwitchCounters().Moves
	mvB := newGuest(t, swB, "mvb", vswitch.PortConfig{Mode: vswitch.ModeAccess, PVID: 10}, mac, "10.0.10.9/24")
	if !ping(mvB.ns, "10.0.10.1") {
		t.Fatalf("moved guest on B cannot reach A")
	}
	if a, b := where(swA), where(swB); a != "upA" || b != "mvb" {
		t.Errorf("after the move: MAC on A at %q, on B at %q; want upA, mvb", a, b)
	}
	if swB.SwitchCounters().Moves == movesBefore {
		t.Errorf("switch B counted no MAC move")
	}
}
