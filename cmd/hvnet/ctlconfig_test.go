package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/topology"
)

// ctl config writes the switch-wide settings and ports of every kind,
// lab guests added at run time included, in a file the topology package
// takes back with the same settings.
func TestRunningConfigKinds(t *testing.T) {
	sw := api.SwitchInfo{Aging: "1m0s", FDBMaxEntries: 1000, MACLimit: -1, MACMoveHoldDown: "2s", MetricsAddr: "127.0.0.1:9477", DashboardAddr: "9478"}
	yes, no := true, false
	ps := []api.Port{
		{Name: "web", Kind: api.KindLab, Options: map[string]api.OptionValue{"ip": {"10.0.0.5/24"}, "mem": {"256M"}, "vif": {"eth0.10", "eth0.20:10.0.20.1/24"}, "cmd": {"iperf3 -s, then exit"}},
			Config: api.PortConfig{Name: "web", Mode: "access", PVID: 10, Egress: api.RateLimit{RateBPS: 50e6}, PortSecurity: &yes}},
		{Name: "t", Kind: api.KindVhostUser, Options: map[string]api.OptionValue{"socket": {"/run/hvnet/t.sock"}, "mode": {"client"}},
			Config: api.PortConfig{Name: "t", Mode: "dot1q-tunnel", PVID: 100, DefaultPCP: 3, PortSecurity: &no}},
		{Name: "u", Kind: api.KindUplink, Options: map[string]api.OptionValue{"if": {"eth1"}},
			Config: api.PortConfig{Name: "u", Mode: "trunk", AllowedVLANs: []int{10, 20}, NativeVLAN: 1}},
		{Name: "x", Config: api.PortConfig{Name: "x", Mode: "access", PVID: 1}},
	}
	f, left := runningConfig("/run/hvnet.sock", sw, ps, nil)
	if len(left) != 1 || !strings.Contains(left[0], "port x") {
		t.Errorf("left out %q, want port x (not the daemon's)", left)
	}
	var b bytes.Buffer
	if err := yaml.NewEncoder(&b).Encode(f); err != nil {
		t.Fatal(err)
	}
	tp, err := topology.Parse("now.yaml", b.Bytes())
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if s := tp.Switch; s.Aging != time.Minute || s.FDBMaxEntries != 1000 || s.MACLimit != -1 || s.MACMoveHoldDown != 2*time.Second || s.MetricsAddr != "127.0.0.1:9477" || s.DashboardAddr != "9478" {
		t.Errorf("switch = %+v\n%s", s, b.String())
	}
	if len(tp.Ports) != 2 || tp.Uplink == nil {
		t.Fatalf("ports %+v uplink %+v\n%s", tp.Ports, tp.Uplink, b.String())
	}
	web, tun := tp.Ports[0], tp.Ports[1]
	if web.Kind != api.KindLab || web.Options.Values["cmd"][0] != "iperf3 -s, then exit" || len(web.Options.Values["vif"]) != 2 ||
		web.Config("web").PVID != 10 || web.Config("web").Egress.Bytes.Rate != 50e6/8 {
		t.Errorf("lab port = %+v\n%s", web, b.String())
	}
	if c := tun.Config("t"); tun.SocketMode != "client" || c.PVID != 100 || c.DefaultPCP != 3 || c.PortSecurity == 0 || c.Mode.String() != "dot1q-tunnel" {
		t.Errorf("tunnel port = %+v %+v\n%s", tun, c, b.String())
	}
	if u := tp.Uplink.Config("u"); tp.Uplink.Interface != "eth1" || u.NativeVLAN != 1 || len(u.AllowedVLANs) != 2 {
		t.Errorf("uplink = %+v\n%s", u, b.String())
	}
}
