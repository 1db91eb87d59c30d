package uplink

import (
	"errors"
	"os/exec"
	"testing"

	"github.com/hvnet/hvnet/internal/netnstest"
	vswitch "github.com/hvnet/hvnet/switch"
)

func TestOpenMissingInterface(t *testing.T) {
	netnstest.Need(t)
	_, err := Open("hvnet-none0", Config{})
	if !errors.Is(err, ErrNoInterface) {
		t.Fatalf("Open(missing) = %v; want ErrNoInterface", err)
	}
}

// TestUplinkVLANs: the uplink is a trunk (VLANs 10, 20, 300 tagged, VLAN 1
// native) over a veth to the "physical network". This machine's kernel has
// no 802.1Q support (CONFIG_VLAN_8021Q and bridge VLAN filtering are off),
// so the top-of-rack switch there is a second vswitch whose access ports
// lead to the physical hosts' namespaces: frames on the up0-tor0 wire are
// real 802.1Q / 802.1ad tagged frames, and the kernel strips the outer tag
// before the uplink's ring sees them. TestPhysicalDot1Q builds the same
// topology with the kernel's own VLAN subinterfaces (in the nested test
// host where this kernel lacks them).
func TestUplinkVLANs(t *testing.T) {
	netnstest.Need(t)
	netnstest.Run(t, "ip", "link", "add", "up0", "type", "veth", "peer", "name", "tor0")
	t.Cleanup(func() { exec.Command("ip", "link", "del", "up0").Run() })
	netnstest.Run(t, "ip", "link", "set", "up0", "up")
	netnstest.Run(t, "ip", "link", "set", "tor0", "up")
	trunk := vswitch.PortConfig{Mode: vswitch.ModeTrunk, AllowedVLANs: []uint16{10, 20, 300}, NativeVLAN: 1}
	tor := vswitch.New(vswitch.Config{})
	attach(t, tor, "tor0", trunk, Config{})
	h10 := newGuest(t, tor, "h10", vswitch.PortConfig{Mode: vswitch.ModeAccess, PVID: 10}, "", "10.0.10.100/24")
	newGuest(t, tor, "h1", vswitch.PortConfig{Mode: vswitch.ModeAccess, PVID: 1}, "", "10.0.1.100/24")
	newGuest(t, tor, "hq", vswitch.PortConfig{Mode: vswitch.ModeDot1QTunnel, PVID: 300}, "", "10.3.0.100/24")
	phys := h10.ns

	sw := vswitch.New(vswitch.Config{})
	up := attach(t, sw, "up0", trunk, Config{})
	g10 := newGuest(t, sw, "g10", vswitch.PortConfig{Mode: vswitch.ModeAccess, PVID: 10}, "", "10.0.10.1/24")
	// In VLAN 20 but addressed in VLAN 10's subnet: must not reach it.
	g20 := newGuest(t, sw, "g20", vswitch.PortConfig{Mode: vswitch.ModeAccess, PVID: 20}, "", "10.0.10.2/24")
	gn := newGuest(t, sw, "gn", vswitch.PortConfig{Mode: vswitch.ModeAccess, PVID: 1}, "", "10.0.1.1/24")
	gq := newGuest(t, sw, "gq", vswitch.PortConfig{Mode: vswitch.ModeDot1QTunnel, PVID: 300}, "", "10.3.0.1/24")

	if !ping(g10.ns, "10.0.10.100") {
		t.Errorf("guest in VLAN 10 cannot reach the physical host in VLAN 10")
	}
	if !pingFails(g20.ns, "10.0.10.100") {
		t.Errorf("guest in VLAN 20 reaches the host on VLAN 10")
	}
	if !ping(gn.ns, "10.0.1.100") {
		t.Errorf("guest in the native VLAN cannot reach the untagged host")
	}
	if !ping(gq.ns, "10.3.0.100") {
		t.Errorf("QinQ: guest behind S-VLAN 300 cannot reach the host in S-VLAN 300")
	}
	if st := up.Stats(); st.RxVLANRestored == 0 {
		t.Errorf("uplink restored no VLAN tags: %+v", st)
	}

	// GSO: bulk TCP both ways crosses the uplink in frames larger than the
	// MTU, with gso_type set, and the switch does not segment them.
	before := up.Stats()
	gBefore := g10.port.Stats()
	iperf(t, phys, "10.0.10.100", g10.ns, "30M", false) // guest -> physical host
	iperf(t, phys, "10.0.10.100", g10.ns, "30M", true)  // physical host -> guest
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
