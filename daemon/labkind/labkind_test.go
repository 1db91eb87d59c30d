package labkind

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/hvnet/hvnet/daemon"
)

func TestParse(t *testing.T) {
	p, err := daemon.ParsePort("lab", strings.Split("name=g,ip=10.0.0.1/24,mtu=9000,queues=2,cpus=2,mem=1G,vif=eth0.10:10.0.10.1/24,vif=eth0.20,cmd=true,mac=52:54:00:00:00:09", ","))
	if err != nil {
		t.Fatal(err)
	}
	gc := p.Spec().(*spec).gc
	if gc.Addr != netip.MustParsePrefix("10.0.0.1/24") || gc.MTU != 9000 || gc.Queues != 2 || gc.CPUs != 2 || gc.MemMiB != 1024 ||
		len(gc.Ifaces) != 2 || gc.Ifaces[0].Name != "eth0.10" || !gc.Ifaces[0].Addr.IsValid() || gc.Ifaces[1].Addr.IsValid() ||
		gc.Script != "true" || gc.MAC != [6]byte{0x52, 0x54, 0, 0, 0, 9} {
		t.Errorf("guest = %+v", gc)
	}
	if p, err := daemon.ParsePort("lab", []string{"name=g", "ip=10.0.0.1/24", "mtu=9000", "guest-mtu=1400"}); err != nil ||
		p.Spec().(*spec).gc.MTU != 1400 || p.Port.MTU != 9000 {
		t.Errorf("guest-mtu: %+v, %v", p, err)
	}
	// No ip: eth0 comes up without an address (a trunk guest's VLAN
	// subinterfaces have theirs).
	if p, err := daemon.ParsePort("lab", []string{"name=g", "trunk=10", "vif=eth0.10:10.0.1.1/24"}); err != nil ||
		p.Spec().(*spec).gc.Addr.IsValid() {
		t.Errorf("no ip: %+v, %v", p, err)
	}
	for _, tc := range []struct{ spec, want string }{
		{"name=g,ip=", `field "ip": is not an address and prefix`},
		{"name=g,ip=10.0.0.1", `field "ip": "10.0.0.1" is not an address and prefix`},
		{"name=g,ip=10.0.0.1/24,cpus=0", `field "cpus": "0" is not a number in 1..16`},
		{"name=g,ip=10.0.0.1/24,mem=lots", `field "mem": "lots"`},
		{"name=g,ip=10.0.0.1/24,mem=65M", `"65M": want an even number of MiB`}, // not at boot, naming another flag
		{"name=g,ip=10.0.0.1/24,vif=eth0", `field "vif": "eth0" is not PARENT.VID`},
		{"name=g,ip=10.0.0.1/24,vif=eth0.10:x", `field "vif": "eth0.10:x" has no address and prefix`},
		{"name=g,ip=10.0.0.1/24,guest-mtu=20", `field "guest-mtu": "20" is not a number in 68..65535`},
	} {
		if _, err := daemon.ParsePort("lab", strings.Split(tc.spec, ",")); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.spec, err, tc.want)
		}
	}
}
