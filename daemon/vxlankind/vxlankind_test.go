package vxlankind

import (
	"net/netip"
	"strings"
	"testing"

	"hvnet/daemon"
)

func TestParse(t *testing.T) {
	p, err := daemon.ParsePort(Kind, strings.Split("name=vx,trunk=10:20,native=30,local=10.9.0.1,vni=100:10,vni=200:20,vni=300:30,"+
		"remote=10.9.0.2,remote=10.9.0.3,learning=off,vtep-policy=any,underlay-mtu=9000,udp-port=8472,max-remote-macs=1000", ","))
	if err != nil {
		t.Fatal(err)
	}
	c := p.Spec().(*spec).cfg
	if c.Local != netip.MustParseAddr("10.9.0.1") || len(c.VNIs) != 3 || c.VNIs[200] != 20 || c.NativeVLAN != 30 || len(c.Remotes) != 2 ||
		c.Learning || !c.AnyVTEP || c.UnderlayMTU != 9000 || c.Port != 8472 || c.MaxRemoteMACs != 1000 {
		t.Errorf("config = %+v", c)
	}
	if cl := p.Spec().Claims(); len(cl) != 1 || cl[0] != "vxlan 10.9.0.1:8472" {
		t.Errorf("claims = %q", cl)
	}
	// An access port carries its one VLAN untagged.
	p, err = daemon.ParsePort(Kind, []string{"name=vx", "vlan=10", "local=10.9.0.1", "vni=100:10"})
	if err != nil || p.Spec().(*spec).cfg.NativeVLAN != 10 || !p.Spec().(*spec).cfg.Learning {
		t.Errorf("access port: %+v, %v", p, err)
	}
	for _, tc := range []struct{ spec, want string }{
		{"name=vx,trunk=10", `field "local": missing`},
		{"name=vx,trunk=10,local=10.9.0.1", `field "vni": missing`},
		{"name=vx,trunk=10,local=fe80::1,vni=1:10", `field "local": "fe80::1" is not an IPv4 address`},
		{"name=vx,trunk=10,local=10.9.0.1,vni=100", `field "vni": "100" is not VNI:VLAN`},
		{"name=vx,trunk=10,local=10.9.0.1,vni=16777216:10", `is not VNI:VLAN (VNI 1..16777215`},
		{"name=vx,trunk=10,local=10.9.0.1,vni=0:10", `is not VNI:VLAN`},
		{"name=vx,trunk=10,local=10.9.0.1,vni=100:10,vni=100:20", `maps a VNI given before`},
		{"name=vx,trunk=10:20,local=10.9.0.1,vni=100:10,vni=200:10", `which VNI 100 carries already`},
		{"name=vx,trunk=10,local=10.9.0.1,vni=200:20", `maps VLAN 20, which the port does not carry (give it trunk=10:20)`},
		{"name=vx,local=10.9.0.1,vni=200:20", `(give it trunk=20)`},
		{"name=vx,trunk=10,local=10.9.0.1,vni=100:10,remote=x", `field "remote": "x" is not an IPv4 address`},
		{"name=vx,trunk=10,local=10.9.0.1,vni=100:10,learning=maybe", `field "learning"`},
		{"name=vx,trunk=10,local=10.9.0.1,vni=100:10,vtep-policy=some", `field "vtep-policy"`},
		{"name=vx,trunk=10,local=10.9.0.1,vni=100:10,underlay-mtu=100", `field "underlay-mtu": "100" is not a number in 576..65535`},
		{"name=vx,trunk=10,local=10.9.0.1,vni=100:10,udp-port=0", `field "udp-port"`},
	} {
		if _, err := daemon.ParsePort(Kind, strings.Split(tc.spec, ",")); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.spec, err, tc.want)
		}
	}
}
