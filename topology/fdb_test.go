package topology

import (
	"strings"
	"testing"
	"time"

	vswitch "github.com/hvnet/hvnet/switch"
)

// The switch's FDB bounds and the ports' port security, from the example
// file and as the switch gets them.
func TestFDBSettings(t *testing.T) {
	top, err := Load("testdata/lab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := top.Switch
	if s.FDBMaxEntries != 65536 || s.MACLimit != 1024 || s.MACMoveHoldDown != time.Second {
		t.Errorf("switch = %+v", s)
	}
	if g := top.Guests[0].Config(); g.PortSecurity != vswitch.PortSecurityOn {
		t.Errorf("g1 port security = %v; want on (the default)", g.PortSecurity)
	}
	if g := top.Guests[2].Config(); g.PortSecurity != vswitch.PortSecurityOff {
		t.Errorf("g3 port security = %v; want off", g.PortSecurity)
	}
	if q := top.Ports[0].Config("qemu0"); q.PortSecurity != vswitch.PortSecurityOn {
		t.Errorf("qemu0 port security = %v; want on", q.PortSecurity)
	}

	tp, err := Parse("ok.yaml", []byte(`switch:
  mac_limit: -1
  mac_move_hold_down: -1s
ports:
  - name: a
    socket: /s
    mac: 02:00:00:00:00:01
    port_security: false
    mac_limit: -1
`))
	if err != nil {
		t.Fatal(err)
	}
	a := tp.Ports[0].Config("a")
	if a.PortSecurity != vswitch.PortSecurityOff || a.MACLimit != vswitch.NoMACLimit || tp.Switch.MACLimit != vswitch.NoMACLimit ||
		tp.Switch.MACMoveHoldDown != -time.Second {
		t.Errorf("port a = %+v, switch = %+v", a, tp.Switch)
	}
	if err := a.Validate(); err != nil {
		t.Errorf("the switch rejects port a: %v", err)
	}
}

func TestBadFDBSettings(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"fdb max", "switch:\n  fdb_max_entries: -3\n", `bad.yaml:2: switch.fdb_max_entries: -3 outside 1..16777216`},
		{"fdb max absurd", "switch:\n  fdb_max_entries: 99999999999\n", `bad.yaml:2: switch.fdb_max_entries: 99999999999 outside`},
		{"switch mac limit", "switch:\n  mac_limit: -2\n", `bad.yaml:2: switch.mac_limit: -2 outside -1 (none), 1..1048576`},
		{"hold-down", "switch:\n  mac_move_hold_down: 2h\n", `bad.yaml:2: switch.mac_move_hold_down: 2h0m0s above 1m0s`},
		{"hold-down type", "switch:\n  mac_move_hold_down: 3\n", `bad.yaml:2: switch.mac_move_hold_down: "3" is not a duration`},
		{"port mac limit", "ports:\n  - name: a\n    socket: /s\n    mac_limit: -5\n", `bad.yaml:4: ports[0].mac_limit: -5 outside -1 (none), 0 (the switch's), 1..1048576`},
		{"port security type", "guests:\n  - name: g\n    port_security: no-thanks\n", `bad.yaml:3: guests[0].port_security: want true or false`},
		{"uplink port security", "uplink:\n  if: x\n  port_security: false\n", `bad.yaml:3: uplink.port_security: an uplink has no MAC of its own`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("bad.yaml", []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse(%q) = %v\nwant it to contain %q", tc.yaml, err, tc.want)
			}
		})
	}
}
