package topology

import (
	"reflect"
	"strings"
	"testing"

	vswitch "github.com/hvnet/hvnet/switch"
)

// The bandwidth allocation and class map in a file: rates in bits per
// second, the class map as the command line writes it (or the PCP
// classes as a list), as the switch gets them.
func TestAllocation(t *testing.T) {
	top, err := Parse("t.yaml", []byte(`
uplink:
  if: eth1
  rate: 1Gbit
  pcp_class: "0:0:0:0:1:1:2:2"
  dscp_class: ["46:2", "8-15:0"]
ports:
  - name: a
    socket: /a
    reservation: 100Mbit
    shares: 200
    limit: 500M
  - name: b
    socket: /b
    pcp_class: [0, 0, 0, 0, 0, 0, 1, 2]
guests:
  - name: g
    reservation: 300M
`))
	if err != nil {
		t.Fatal(err)
	}
	u := top.Uplink.Config("uplink")
	want := vswitch.ClassMap{PCP: []uint8{0, 0, 0, 0, 1, 1, 2, 2}, DSCP: []vswitch.DSCPClass{{From: 46, To: 46, Class: 2}, {From: 8, To: 15, Class: 0}}}
	if !reflect.DeepEqual(u.Classes, want) || u.Allocation != (vswitch.Allocation{}) {
		t.Errorf("uplink = %+v %+v", u.Classes, u.Allocation)
	}
	if a := top.Ports[0].Config("a"); a.Allocation != (vswitch.Allocation{Reservation: 12_500_000, Shares: 200, Limit: 62_500_000}) || a.Classes.PCP != nil {
		t.Errorf("a = %+v %+v", a.Allocation, a.Classes)
	}
	if b := top.Ports[1].Config("b"); !reflect.DeepEqual(b.Classes.PCP, []uint8{0, 0, 0, 0, 0, 0, 1, 2}) {
		t.Errorf("b = %+v", b.Classes)
	}
	sw := vswitch.New(vswitch.Config{})
	for _, c := range []vswitch.PortConfig{u, top.Ports[0].Config("a"), top.Ports[1].Config("b"), top.Guests[0].Config()} {
		if _, err := sw.AddPort(c, nopPort{}); err != nil {
			t.Errorf("switch rejects %s: %v", c.Name, err)
		}
	}
}

func TestBadAllocation(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"rate in bytes", "ports:\n  - name: a\n    socket: /a\n    reservation: 10MB\n", []string{`bad.yaml:4: ports[0].reservation: rate "10MB"`}},
		{"shares", "ports:\n  - name: a\n    socket: /a\n    shares: 0\n  - name: b\n    socket: /b\n    shares: 10001\n",
			[]string{`bad.yaml:4: ports[0].shares: 0 outside 1..10000 (absent: 100)`, `bad.yaml:7: ports[1].shares: 10001 outside 1..10000`}},
		{"reservation above limit", "guests:\n  - name: g\n    limit: 5M\n    reservation: 10M\n", []string{`bad.yaml:4: guests[0].reservation: 10 Mbit/s is above limit 5 Mbit/s`}},
		{"pcp string", "uplink:\n  if: x\n  pcp_class: \"0:0:0:0:1:1:2\"\n", []string{`bad.yaml:3: uplink.pcp_class: "0:0:0:0:1:1:2": want the class (0..2) of each PCP 0..7`}},
		{"pcp list", "uplink:\n  if: x\n  pcp_class: [0, 0, 0, 0, 1, 1, 2, 3]\n", []string{`bad.yaml:3: uplink.pcp_class: PCP 7's class 3 is not 0..2`}},
		{"pcp list length", "uplink:\n  if: x\n  pcp_class: [0, 1]\n", []string{`bad.yaml:3: uplink.pcp_class: 2 classes: want 8`}},
		{"pcp list type", "uplink:\n  if: x\n  pcp_class: [0, x, 0, 0, 0, 0, 0, 0]\n", []string{`bad.yaml:3: uplink.pcp_class: [1]: "x" is not a class`}},
		{"dscp", "uplink:\n  if: x\n  dscp_class:\n    - 46:2\n    - 64:1\n", []string{`bad.yaml:5: uplink.dscp_class[1]: "64:1": DSCP is 0..63`}},
		{"dscp not a list", "uplink:\n  if: x\n  dscp_class: \"46:2\"\n", []string{`bad.yaml:3: uplink.dscp_class: want a list`}},
		{"over-reserved", "uplink:\n  if: x\n  rate: 10M\nports:\n  - name: a\n    socket: /a\n    reservation: 6M\nguests:\n  - name: g\n    reservation: 6M\n",
			[]string{`bad.yaml:3: uplink.rate: the other ports' reservations add up to 12 Mbit/s (a 6 Mbit/s, g 6 Mbit/s), more than this egress's rate 10 Mbit/s`}},
		{"over-reserved egress", "uplink:\n  if: x\n  egress: {rate_bps: 10M}\nguests:\n  - name: g\n    reservation: 11M\n",
			[]string{`bad.yaml:3: uplink.egress: the other ports' reservations add up to 11 Mbit/s (g 11 Mbit/s)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("bad.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatalf("Parse(%q) succeeded, want errors %q", tc.yaml, tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse(%q) = %v\nwant it to contain %q", tc.yaml, err, w)
				}
			}
		})
	}
}
