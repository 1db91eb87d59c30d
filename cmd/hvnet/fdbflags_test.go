package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/daemon"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/topology"
)

// port-security= and mac-limit= on --port and --uplink, the switch's FDB
// flags, and how they reach the switch's configuration.
func TestPortSecurityAndFDBFlags(t *testing.T) {
	c, err := parsePortFlag(api.KindVhostUser, "name=a,socket=/x,mac=52:54:00:00:00:01,port-security=off,mac-limit=-1")
	if err != nil {
		t.Fatal(err)
	}
	if c.Port.PortSecurity != vswitch.PortSecurityOff || c.Port.MACLimit != vswitch.NoMACLimit || c.Values.Get("mac") != "52:54:00:00:00:01" {
		t.Errorf("port = %+v", c)
	}
	if c, err = parsePortFlag(api.KindVhostUser, "name=a,socket=/x,mac=52:54:00:00:00:01,mac-limit=8"); err != nil ||
		c.Port.PortSecurity != vswitch.PortSecurityOn || c.Port.MACLimit != 8 {
		t.Errorf("default port security: %+v, %v", c.Port, err)
	}
	u, err := parsePortFlag(api.KindUplink, "name=u,if=eth1,mac-limit=100000")
	if err != nil || u.Port.MACLimit != 100000 || u.Kind != api.KindUplink {
		t.Errorf("uplink = %+v, %v", u, err)
	}
	if u, err := parsePortFlag(api.KindVhostUser, "kind=uplink,name=u,if=eth1"); err != nil || u.Kind != api.KindUplink {
		t.Errorf("--port kind=uplink: %+v, %v", u, err)
	}
	for _, tc := range []struct{ spec, want string }{
		{"name=a,socket=/x,port-security=maybe", `field "port-security": "maybe" is not on or off`},
		{"name=a,socket=/x,mac-limit=0", `field "mac-limit": "0" is not a MAC limit (-1: none, or 1..1048576)`},
		{"name=a,socket=/x,mac-limit=-2", `field "mac-limit"`},
		{"name=a,socket=/x,mac=01:00:5e:00:00:01", `field "mac": "01:00:5e:00:00:01" is not a unicast MAC address (it is a group address)`},
		{"kind=bridge,name=a", `kind "bridge": unknown (want bond, lab, uplink, vhost-user, vxlan)`},
	} {
		if _, err := parsePortFlag(api.KindVhostUser, tc.spec); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.spec, err, tc.want)
		}
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"switch", "--api", "", "--fdb-max-entries", "0"}, "--fdb-max-entries 0: want 1..16777216"},
		{[]string{"switch", "--api", "", "--aging", "-5s"}, "--aging -5s: negative aging time"},
		{[]string{"switch", "--api", "", "--mac-limit", "0"}, "--mac-limit 0: want -1 (none) or 1..1048576"},
		{[]string{"switch", "--api", "", "--mac-move-hold-down", "2h"}, "--mac-move-hold-down 2h0m0s: want at most 1m0s"},
		{[]string{"switch", "--api", "", "--conntrack-max-entries", "-1"}, "--conntrack-max-entries -1: outside 1..16777216"},
		{[]string{"switch", "--api", "", "--conntrack-max-entries", "100", "--conntrack-max-entries-per-port", "200"},
			"--conntrack-max-entries-per-port 200: above --conntrack-max-entries (100)"},
	} {
		var out bytes.Buffer
		if code := run(tc.args, nil, &out, &out); code != 2 || !strings.Contains(out.String(), tc.want) {
			t.Errorf("%q: status %d, output %q; want 2 and %q", tc.args, code, out.String(), tc.want)
		}
	}
	if err := (daemon.Config{FDBMaxEntries: vswitch.DefaultFDBMaxEntries, MACLimit: vswitch.NoMACLimit, MACMoveHoldDown: -time.Second}).CheckFDB(); err != nil {
		t.Errorf("CheckFDB(defaults, no limit, no hold-down) = %v", err)
	}
	sc := daemon.Config{Aging: time.Minute, FDBMaxEntries: 10, MACLimit: 3, MACMoveHoldDown: 2 * time.Second}.SwitchConfig()
	if sc.AgingTime != time.Minute || sc.FDBMaxEntries != 10 || sc.MACLimit != 3 || sc.MACMoveHoldDown != 2*time.Second {
		t.Errorf("switchConfig = %+v", sc)
	}
}

// The topology file's FDB settings and guests' port security reach the
// daemon's and the lab's configuration.
func TestTopologyFDBSettings(t *testing.T) {
	tp, err := topology.Load("../../topology/testdata/lab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	gs, err := labGuests(tp)
	if err != nil {
		t.Fatal(err)
	}
	if p0, p2 := gs[0].PortConfig().PortSecurity, gs[2].PortConfig().PortSecurity; p0 != vswitch.PortSecurityOn || p2 != vswitch.PortSecurityOff {
		t.Errorf("guests' port security: %v, %v", p0, p2)
	}
	tp.Guests = nil
	cfg, err := topologyConfig(tp)
	if err != nil {
		t.Fatal(err)
	}
	if sc := cfg.SwitchConfig(); sc.FDBMaxEntries != 65536 || sc.MACLimit != 1024 || sc.MACMoveHoldDown != time.Second {
		t.Errorf("switch config = %+v", sc)
	}
}
