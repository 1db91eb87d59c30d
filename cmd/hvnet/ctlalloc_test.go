package main

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/hvnet/hvnet/api"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/topology"
)

// ctl set changes the allocation and class map live in the command
// line's keys; ctl port shows them; ctl queues lists a shaped egress's
// queues.
func TestCtlAllocation(t *testing.T) {
	sw, sock := ctlDaemon(t)
	if code, out, errs := runCtl(t, sock, "set", "b", "rate=1M"); code != 0 {
		t.Fatalf("ctl set b rate = %d %q %q", code, out, errs)
	}
	if code, out, errs := runCtl(t, sock, "set", "a", "reservation=100k", "shares=300", "limit=500kbit",
		"pcp-class=0:0:1:1:1:1:2:2", "dscp-class=46:2", "dscp-class=8-15:0"); code != 0 {
		t.Fatalf("ctl set a = %d %q %q", code, out, errs)
	}
	cfg := sw.Port("a").Config()
	want := vswitch.ClassMap{PCP: []uint8{0, 0, 1, 1, 1, 1, 2, 2}, DSCP: []vswitch.DSCPClass{{From: 46, To: 46, Class: 2}, {From: 8, To: 15, Class: 0}}}
	if cfg.Allocation != (vswitch.Allocation{Reservation: 12_500, Shares: 300, Limit: 62_500}) || !reflect.DeepEqual(cfg.Classes, want) {
		t.Fatalf("after ctl set: %+v %+v", cfg.Allocation, cfg.Classes)
	}
	code, out, _ := runCtl(t, sock, "port", "a")
	for _, w := range []string{"allocation:", "reservation 100 kbit/s, shares 300, limit 500 kbit/s",
		"classes:", "pcp-class=0:0:1:1:1:1:2:2 dscp-class=46:2 dscp-class=8-15:0"} {
		if code != 0 || !strings.Contains(out, w) {
			t.Errorf("ctl port a = %d, lacks %q:\n%s", code, w, out)
		}
	}
	if _, out, _ := runCtl(t, sock, "port", "b"); !strings.Contains(out, "reservation none, shares 100, limit none") || strings.Contains(out, "classes:") {
		t.Errorf("ctl port b: want the default allocation and no class map:\n%s", out)
	}
	for bad, want := range map[string]string{"shares=0": "shares", "shares=many": "shares", "reservation=1MB": "reservation",
		"limit=fast": "limit", "pcp-class=1:2": "pcp-class", "dscp-class=99:1": "dscp-class", "dscp-class=46:7": "dscp-class"} {
		if code, _, errs := runCtl(t, sock, "set", "a", bad); code != 2 || !strings.Contains(errs, want) {
			t.Errorf("ctl set a %s = %d %q, want status 2 naming %s", bad, code, errs, want)
		}
	}
	// The API's refusals: a limit under the reservation, reservations
	// past b's rate (1 Mbit/s).
	if code, _, errs := runCtl(t, sock, "set", "a", "limit=50k"); code != 1 || !strings.Contains(errs, "limit_bps") {
		t.Errorf("limit under the reservation = %d %q", code, errs)
	}
	if code, _, errs := runCtl(t, sock, "set", "a", "reservation=2M", "limit=0"); code != 1 || !strings.Contains(errs, "reservations add up to 2 Mbit/s") {
		t.Errorf("over-reserved = %d %q", code, errs)
	}

	// The queues of b's shaped egress: a's, and the strict classes'.
	sw.Port("a").Input(ctlFrames(50))
	code, out, errs := runCtl(t, sock, "queues", "b")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if code != 0 || len(lines) != 4 || !strings.HasPrefix(lines[0], "SENDER") || !strings.HasPrefix(lines[3], "a ") ||
		!strings.Contains(lines[3], "100 kbit/s") || !strings.Contains(lines[3], "300") || !strings.HasPrefix(lines[1], "(class)") {
		t.Errorf("ctl queues b = %d %q\n%s", code, errs, out)
	}
	if strings.Index(lines[3], "RESERVATION") != -1 || strings.Index(lines[0], "RESERVATION") != strings.Index(lines[3], "100 kbit/s") {
		t.Errorf("ctl queues table not aligned:\n%s", out)
	}
	var qs []api.Queue
	if code, out, _ := runCtl(t, sock, "--json", "queues", "b"); code != 0 || json.Unmarshal([]byte(out), &qs) != nil || len(qs) != 3 ||
		qs[2].Port != "a" || qs[2].SentPackets+uint64(qs[2].QueuedFrames)+qs[2].Drops != 50 {
		t.Errorf("ctl --json queues b = %d %q", code, out)
	}
	if code, out, _ := runCtl(t, sock, "queues", "a"); code != 0 || !strings.Contains(out, "not shaped") {
		t.Errorf("ctl queues a = %d %q", code, out)
	}
	if code, _, errs := runCtl(t, sock, "queues", "zz"); code != 1 || !strings.Contains(errs, `no port "zz"`) {
		t.Errorf("ctl queues zz = %d %q", code, errs)
	}
	if code, _, _ := runCtl(t, sock, "queues"); code != 2 {
		t.Errorf("ctl queues without a port = %d", code)
	}

	// Empty values reset the class map.
	if code, _, errs := runCtl(t, sock, "set", "a", "pcp-class=", "dscp-class="); code != 0 {
		t.Fatalf("reset = %d %q", code, errs)
	}
	if c := sw.Port("a").Config().Classes; c.PCP != nil || c.DSCP != nil {
		t.Errorf("after reset: %+v", c)
	}
}

// ctl config writes the allocation and class map in the topology file's
// keys, and the file gives the switch the same settings back.
func TestRunningConfigAllocation(t *testing.T) {
	yes := true
	ps := []api.Port{
		{Name: "u", Kind: api.KindUplink, Options: map[string]api.OptionValue{"if": {"eth1"}},
			Config: api.PortConfig{Name: "u", Mode: "access", PVID: 1, Egress: api.RateLimit{RateBPS: 1e9}, Shares: 100,
				PCPClass: []int{0, 0, 0, 0, 0, 1, 2, 2}, DSCPClass: []string{"46:2", "8-15:0"}}},
		{Name: "a", Kind: api.KindVhostUser, Options: map[string]api.OptionValue{"socket": {"/run/hvnet/a.sock"}},
			Config: api.PortConfig{Name: "a", Mode: "access", PVID: 10, PortSecurity: &yes, ReservationBPS: 100e6, Shares: 200, LimitBPS: 500e6}},
	}
	f, _ := runningConfig("/run/hvnet.sock", api.SwitchInfo{}, ps, nil)
	var b bytes.Buffer
	if err := yaml.NewEncoder(&b).Encode(f); err != nil {
		t.Fatal(err)
	}
	tp, err := topology.Parse("now.yaml", b.Bytes())
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	u := tp.Uplink.Config("u")
	want := vswitch.ClassMap{PCP: []uint8{0, 0, 0, 0, 0, 1, 2, 2}, DSCP: []vswitch.DSCPClass{{From: 46, To: 46, Class: 2}, {From: 8, To: 15, Class: 0}}}
	if !reflect.DeepEqual(u.Classes, want) || u.Allocation != (vswitch.Allocation{}) {
		t.Errorf("uplink = %+v %+v\n%s", u.Classes, u.Allocation, b.String())
	}
	if a := tp.Ports[0].Config("a"); a.Allocation != (vswitch.Allocation{Reservation: 12_500_000, Shares: 200, Limit: 62_500_000}) {
		t.Errorf("a = %+v\n%s", a.Allocation, b.String())
	}
	if strings.Contains(b.String(), "shares: 100") {
		t.Errorf("the default shares written out:\n%s", b.String())
	}
}
