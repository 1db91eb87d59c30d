package daemon

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	vswitch "github.com/hvnet/hvnet/switch"
)

// The bandwidth allocation and class map on the text surfaces: rates in
// bits per second, the class map in the syntax every surface shares.
func TestParseAllocation(t *testing.T) {
	p, err := ParsePort("test-sink", strings.Split("name=a,need=x,reservation=100Mbit,shares=200,limit=500M,pcp-class=0:0:1:1:1:1:2:2,dscp-class=46:2,dscp-class=8-15:0", ","))
	if err != nil {
		t.Fatal(err)
	}
	c := p.Port
	if c.Allocation != (vswitch.Allocation{Reservation: 12_500_000, Shares: 200, Limit: 62_500_000}) {
		t.Errorf("allocation = %+v", c.Allocation)
	}
	want := vswitch.ClassMap{PCP: []uint8{0, 0, 1, 1, 1, 1, 2, 2}, DSCP: []vswitch.DSCPClass{{From: 46, To: 46, Class: 2}, {From: 8, To: 15, Class: 0}}}
	if !reflect.DeepEqual(c.Classes, want) {
		t.Errorf("classes = %+v", c.Classes)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("the switch refuses it: %v", err)
	}
	for _, tc := range []struct{ spec, want string }{
		{"reservation=10MB", `field "reservation": rate "10MB"`},
		{"limit=fast", `field "limit": rate "fast"`},
		{"shares=0", `field "shares": "0" is not a number of shares (1..10000; default 100)`},
		{"shares=10001", `field "shares": "10001"`},
		{"shares=x", `field "shares": "x"`},
		{"reservation=10M,limit=5M", `field "reservation": 10 Mbit/s is above limit=5 Mbit/s`},
		{"pcp-class=0:0:0:0:1:1:2", `field "pcp-class": "0:0:0:0:1:1:2": want the class (0..2) of each PCP 0..7`},
		{"pcp-class=0:0:0:0:1:1:2:3", `field "pcp-class": "0:0:0:0:1:1:2:3": PCP 7's class "3" is not 0..2`},
		{"pcp-class=0:0:0:0:1:1:2:2,pcp-class=0:0:0:0:0:0:0:0", `field "pcp-class": given more than once`},
		{"dscp-class=64:1", `field "dscp-class": "64:1": DSCP is 0..63`},
		{"dscp-class=10-8:1", `field "dscp-class": "10-8:1": the range runs backwards`},
		{"dscp-class=46:3", `field "dscp-class": "46:3": class is 0..2`},
		{"dscp-class=46", `field "dscp-class": "46": no class`},
		{"shares=1,shares=2", `field "shares": given more than once`},
	} {
		if _, err := ParsePort("test-sink", strings.Split("name=a,need=x,"+tc.spec, ",")); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.spec, err, tc.want)
		}
	}
}

// Reservations that add up past a shaped egress's rate stop the daemon
// from starting, with the switch's message naming the ports and rates.
func TestStartRefusesOverReservation(t *testing.T) {
	var ports []PortSpec
	for _, spec := range []string{"name=up,need=x,rate=10M", "name=a,need=x,reservation=6M", "name=b,need=x,reservation=6M"} {
		p, err := ParsePort("test-sink", strings.Split(spec, ","))
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, p)
	}
	cfg := Config{Ports: ports, API: filepath.Join(t.TempDir(), "api.sock")}
	r, err := Start(context.Background(), hclog.NewNullLogger(), vswitch.New(cfg.SwitchConfig()), cfg, true)
	if err == nil {
		r.Shutdown()
		t.Fatal("started with 12 Mbit/s reserved through a 10 Mbit/s egress")
	}
	for _, w := range []string{"reservations add up to 12 Mbit/s", `"up"`, "10 Mbit/s"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
}

// A reload that moves a reservation from one port to another releases it
// first, whatever the order of the file: the switch would refuse the
// claim while the old one holds.
func TestReloadMovesReservation(t *testing.T) {
	port := func(spec string) PortSpec {
		t.Helper()
		p, err := ParsePort("test-sink", strings.Split(spec, ","))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	sw, _, _, r := startDaemon(t, Config{Ports: []PortSpec{port("name=up,need=x,rate=10M"), port("name=a,need=x,reservation=6M"),
		port("name=b,need=x,reservation=2M")}})
	defer r.Shutdown()
	res, err := r.Reload(context.Background(), []PortSpec{port("name=b,need=x,reservation=6M"), port("name=a,need=x,reservation=2M"),
		port("name=up,need=x,rate=10M")}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := sw.Port("a").Config().Allocation.Reservation, sw.Port("b").Config().Allocation.Reservation; a != 250_000 || b != 750_000 {
		t.Errorf("after reload a %d b %d bytes/s (%+v)", a, b, res)
	}
	// A capacity raised and claimed in one reload, the claim listed first.
	if _, err := r.Reload(context.Background(), []PortSpec{port("name=b,need=x,reservation=12M"), port("name=a,need=x,reservation=2M"),
		port("name=up,need=x,rate=20M")}, nil, nil); err != nil {
		t.Fatal(err)
	}
	// What does not fit is still refused.
	if _, err := r.Reload(context.Background(), []PortSpec{port("name=b,need=x,reservation=19M"), port("name=a,need=x,reservation=2M"),
		port("name=up,need=x,rate=20M")}, nil, nil); err == nil || !strings.Contains(err.Error(), "reservations add up to") {
		t.Errorf("over-reserved reload: %v", err)
	}
}
