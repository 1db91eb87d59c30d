package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/hvnet/hvnet/api"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/topology"
)

// TestCtlSetModeChangeRoundTrips: "ctl set" from trunk to access keeps
// no trunk VLANs behind, so the running configuration (ctl config) parses
// again as a topology file; contradictory settings are refused.
func TestCtlSetModeChangeRoundTrips(t *testing.T) {
	sw, sock := ctlDaemon(t)
	if _, err := sw.AddPort(vswitch.PortConfig{Name: "p", Mode: vswitch.ModeTrunk, AllowedVLANs: []uint16{10, 20}, NativeVLAN: 10}, ctlPort{}); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runCtl(t, sock, "set", "p", "vlan=5"); code != 0 {
		t.Fatalf("ctl set p vlan=5 = %d %q %q", code, out, errs)
	}
	if code, _, errs := runCtl(t, sock, "set", "a", "native=20"); code == 0 || !strings.Contains(errs, "native") || !strings.Contains(errs, "only a trunk") {
		t.Errorf("ctl set a native=20 on an access port = %d %q, want it refused naming native", code, errs)
	}
	ps, err := api.NewClient(sock).Ports(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i := range ps { // as the daemon shows ports it made
		ps[i].Kind = api.KindVhostUser
		ps[i].Options = map[string]api.OptionValue{"socket": {filepath.Join("/run", ps[i].Name+".sock")}}
	}
	f, _ := runningConfig("/run/hvnet.sock", api.SwitchInfo{}, ps, nil)
	var b bytes.Buffer
	if err := yaml.NewEncoder(&b).Encode(f); err != nil {
		t.Fatal(err)
	}
	tp, err := topology.Parse("running.yaml", b.Bytes())
	if err != nil {
		t.Fatalf("the running configuration does not parse:\n%s\n%v", b.String(), err)
	}
	for _, p := range tp.Ports {
		if p.Name == "p" && (p.Mode != "access" || p.PVID != 5 || len(p.AllowedVLANs) != 0 || p.NativeVLAN != 0) {
			t.Errorf("port p in the running configuration: %+v, want access VLAN 5", p.PortSettings)
		}
	}
}
