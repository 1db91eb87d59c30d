package main

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hvnet/hvnet/images/agentcfg"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/units"
)

func TestLabUsageErrors(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "lab.conf")
	if err := os.WriteFile(conf, []byte("# lab\nname=a,ip=10.0.0.1/24\nname=b,colour=blue\nname=c,pvid=3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"lab"}, "no guests"},
		{[]string{"lab", "--guest", "ip=10.0.0.1/24"}, `--guest #1: field "name": missing`},
		{[]string{"lab", "--guest", "name=a,rate=fast"}, `field "rate"`},
		{[]string{"lab", "--guest", "name=a", "--guest", "name=b,ip=10.0.0.1"}, `--guest #2: field "ip": "10.0.0.1" is not an address and prefix (10.0.0.1/24)`},
		// Every bad line at once, in line order, renamed keys named.
		{[]string{"lab", "--config", conf}, `lab.conf:3: field "colour": unknown for kind lab`},
		{[]string{"lab", "--config", conf}, `lab.conf:4: field "pvid": is now called vlan`},
		{[]string{"lab", "--config", filepath.Join(t.TempDir(), "missing")}, "no such file"},
		{[]string{"lab", "extra"}, "unexpected argument"},
	} {
		var stdout, stderr bytes.Buffer
		if got := run(c.args, strings.NewReader(""), &stdout, &stderr); got != 2 {
			t.Errorf("hvnet %v = %d, want 2 (stderr %q)", c.args, got, stderr.String())
		}
		if !strings.Contains(stderr.String(), c.wantErr) {
			t.Errorf("hvnet %v: stderr %q, want %q", c.args, stderr.String(), c.wantErr)
		}
	}
}

// hvnet lab --guest takes the keys of hvnet switch --port kind=lab, with
// the same meaning: rate shapes toward the guest, police polices what
// it sends; cmd comes last and may hold commas.
func TestParseGuest(t *testing.T) {
	g, err := parseGuest("name=a,ip=10.0.0.1/24,vlan=10,rate=100mbit,police=10M,queues=2,mem=512M,cpus=2,mac=52:54:00:00:00:0a,cmd=ping -c 1 10.0.0.2, echo x")
	if err != nil {
		t.Fatal(err)
	}
	if g.Name != "a" || g.Addr != netip.MustParsePrefix("10.0.0.1/24") || g.Queues != 2 || g.MemMiB != 512 || g.CPUs != 2 ||
		g.MAC != [6]byte{0x52, 0x54, 0, 0, 0, 0x0a} || g.Script != "ping -c 1 10.0.0.2, echo x" {
		t.Errorf("guest = %+v", g)
	}
	pc := g.PortConfig()
	if pc.Name != "a" || pc.Mode != vswitch.ModeAccess || pc.PVID != 10 || pc.Egress.Bytes.Rate != units.BytesPerSecond(100e6) ||
		pc.Ingress.Bytes.Rate != units.BytesPerSecond(10e6) || pc.PortSecurity != vswitch.PortSecurityOn {
		t.Errorf("port = %+v", pc)
	}
	g, err = parseGuest("name=t,trunk=10:20,native=5,vif=eth0.10:10.0.1.1/24,mtu=9000,port-security=off")
	if err != nil {
		t.Fatal(err)
	}
	pc = g.PortConfig()
	if pc.Mode != vswitch.ModeTrunk || !reflect.DeepEqual(pc.AllowedVLANs, []uint16{10, 20}) || pc.NativeVLAN != 5 ||
		pc.MTU != 9000 || g.MTU != 9000 || pc.PortSecurity != vswitch.PortSecurityOff ||
		!reflect.DeepEqual(g.Ifaces, []agentcfg.Iface{{Name: "eth0.10", Addr: netip.MustParsePrefix("10.0.1.1/24")}}) {
		t.Errorf("trunk guest = %+v, port %+v", g, pc)
	}
	for _, c := range []struct{ spec, wantErr string }{
		{"name=a,colour=blue", `field "colour": unknown for kind lab`},
		{"name=a,vlan=4095", "1..4094"},
		{"name=a,mac=01:02", `field "mac"`},
		{"name=a,vif=eth0:1.2.3.4/24", "PARENT.VID"},
		{"name=a,queues", "KEY=VALUE"},
		{"name=a,port-security=maybe", "is not on or off"},
		{"name=a,command=x", "is now called cmd"},
	} {
		if _, err := parseGuest(c.spec); err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("parseGuest(%q) = %v, want an error with %q", c.spec, err, c.wantErr)
		}
	}
}
