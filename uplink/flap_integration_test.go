package uplink

import (
	"os/exec"
	"testing"

	"github.com/hvnet/hvnet/internal/netnstest"
	vswitch "github.com/hvnet/hvnet/switch"
)

// TestLinkFlapAndRecreate: the uplink's interface goes down and up (traffic
// stops, then resumes by itself), then is deleted and created again under
// the same name (the port re-attaches to the new ifindex).
func TestLinkFlapAndRecreate(t *testing.T) {
	netnstest.Need(t)
	phys := netnstest.New(t, "hvu-phys")
	mkUplink := func() {
		netnstest.Veth(t, "up1", phys, "eth0")
		// The same MAC each time, as a real peer keeps its own: the test is
		// about the uplink, not about the guest's ARP cache going stale.
		netnstest.Run(t, "ip", "-n", phys, "link", "set", "eth0", "address", "02:00:00:00:01:00")
		netnstest.Run(t, "ip", "-n", phys, "addr", "add", "10.0.1.100/24", "dev", "eth0")
	}
	mkUplink()
	sw := vswitch.New(vswitch.Config{})
	up := attach(t, sw, "up1", vswitch.PortConfig{Mode: vswitch.ModeAccess, PVID: 1}, Config{})
	g := newGuest(t, sw, "gf", vswitch.PortConfig{Mode: vswitch.ModeAccess, PVID: 1}, "", "10.0.1.1/24")
	if !ping(g.ns, "10.0.1.100") {
		t.Fatal("no traffic before the flap")
	}

	netnstest.Run(t, "ip", "link", "set", "up1", "down")
	if !pingFails(g.ns, "10.0.1.100") {
		t.Errorf("traffic passes with the uplink down")
	}
	netnstest.Run(t, "ip", "link", "set", "up1", "up")
	eventually(t, "traffic after link up", func() bool { return ping(g.ns, "10.0.1.100") })
	if n := up.Stats().Attaches; n != 1 {
		t.Errorf("link flap re-attached the sockets (%d attaches); want 1", n)
	}

	old := up.Stats().Ifindex
	netnstest.Run(t, "ip", "link", "del", "up1")
	eventually(t, "detach after interface removal", func() bool { return up.Stats().Ifindex == 0 })
	if !pingFails(g.ns, "10.0.1.100") {
		t.Errorf("traffic passes with the uplink deleted")
	}
	mkUplink()
	eventually(t, "re-attach", func() bool { st := up.Stats(); return st.Ifindex != 0 && st.Ifindex != old })
	eventually(t, "traffic after re-creation", func() bool {
		ok := ping(g.ns, "10.0.1.100")
		if !ok {
			t.Logf("uplink %+v", up.Stats())
		}
		return ok
	})
	if n := up.Stats().Attaches; n != 2 {
		t.Errorf("attaches = %d; want 2", n)
	}
	exec.Command("ip", "link", "del", "up1").Run()
}
