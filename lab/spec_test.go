package lab

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"hvnet/images/agentcfg"
	vswitch "hvnet/switch"
)

func TestParseGuest(t *testing.T) {
	g, err := ParseGuest("name=a,ip=10.0.0.1/24,vlan=10,rate=100mbit,queues=2,mem=512M,cpus=2,mac=52:54:00:00:00:0a,cmd=ping -c 1 10.0.0.2, echo x")
	if err != nil {
		t.Fatal(err)
	}
	want := GuestConfig{Name: "a", Addr: netip.MustParsePrefix("10.0.0.1/24"), PVID: 10, Rate: 100e6, Queues: 2,
		MemMiB: 512, CPUs: 2, MAC: [6]byte{0x52, 0x54, 0, 0, 0, 0x0a}, Script: "ping -c 1 10.0.0.2, echo x"}
	if !reflect.DeepEqual(g, want) {
		t.Errorf("ParseGuest = %+v\nwant %+v", g, want)
	}
	g, err = ParseGuest("name=t,trunk=10+20,native=5,vif=eth0.10:10.0.1.1/24")
	if err != nil {
		t.Fatal(err)
	}
	if g.Mode != vswitch.ModeTrunk || !reflect.DeepEqual(g.Allowed, []uint16{10, 20}) || g.Native != 5 ||
		!reflect.DeepEqual(g.Ifaces, []agentcfg.Iface{{Name: "eth0.10", Addr: netip.MustParsePrefix("10.0.1.1/24")}}) {
		t.Errorf("trunk guest = %+v", g)
	}
	for _, c := range []struct{ spec, wantErr string }{
		{"ip=10.0.0.1/24", "no name"},
		{"name=a,colour=blue", `unknown key "colour"`},
		{"name=a,vlan=4095", "1..4094"},
		{"name=a,rate=fast", "rate"},
		{"name=a,mac=01:02", "mac"},
		{"name=a,vif=eth0:1.2.3.4/24", "PARENT.VID"},
		{"name=a,queues", "KEY=VALUE"},
	} {
		if _, err := ParseGuest(c.spec); err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("ParseGuest(%q) = %v, want an error with %q", c.spec, err, c.wantErr)
		}
	}
}

func TestParseConfig(t *testing.T) {
	file := "# two guests\nname=a,ip=10.0.0.1/24\n\nname=b,ip=10.0.0.2/24,cmd=ping -c 1 10.0.0.1\n"
	gs, err := ParseConfig(strings.NewReader(file), "lab.conf")
	if err != nil || len(gs) != 2 || gs[1].Script != "ping -c 1 10.0.0.1" {
		t.Fatalf("ParseConfig = %+v, %v", gs, err)
	}
	_, err = ParseConfig(strings.NewReader("name=a\nname=b,speed=1\n"), "lab.conf")
	if err == nil || !strings.Contains(err.Error(), `lab.conf:2: speed=1: unknown key "speed"`) {
		t.Errorf("error = %v, want the file, line and key", err)
	}
}
