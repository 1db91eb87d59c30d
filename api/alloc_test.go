package api

import (
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	vswitch "github.com/hvnet/hvnet/switch"
)

// The allocation and class map go through PATCH live, in bits per second
// and the command line's class syntax, and come back the same way.
func TestPatchAllocation(t *testing.T) {
	e := newEnv(t)
	p, err := e.c.PatchPort(ctx(t), "a", PortPatch{})
	if err != nil {
		t.Fatal(err)
	}
	if c := p.Config; c.Shares != vswitch.DefaultShares || c.ReservationBPS != 0 || c.LimitBPS != 0 || c.PCPClass != nil || c.DSCPClass != nil {
		t.Fatalf("defaults: %+v", c)
	}
	res, lim, shares := BitRate(2e6), BitRate(8e6), 200
	pcp := []int{0, 0, 1, 1, 1, 1, 2, 2}
	dscp := []string{"46:2", "8-15:0"}
	p, err = e.c.PatchPort(ctx(t), "a", PortPatch{ReservationBPS: &res, LimitBPS: &lim, Shares: &shares, PCPClass: &pcp, DSCPClass: &dscp})
	if err != nil {
		t.Fatal(err)
	}
	c := p.Config
	if c.ReservationBPS != 2e6 || c.LimitBPS != 8e6 || c.Shares != 200 || !slices.Equal(c.PCPClass, pcp) || !slices.Equal(c.DSCPClass, dscp) {
		t.Errorf("answer: %+v", c)
	}
	cfg := e.h["a"].Config()
	want := vswitch.Allocation{Reservation: 250_000, Shares: 200, Limit: 1_000_000}
	wantCls := vswitch.ClassMap{PCP: []uint8{0, 0, 1, 1, 1, 1, 2, 2}, DSCP: []vswitch.DSCPClass{{From: 46, To: 46, Class: 2}, {From: 8, To: 15, Class: 0}}}
	if cfg.Allocation != want || !reflect.DeepEqual(cfg.Classes, wantCls) {
		t.Errorf("switch: %+v %+v", cfg.Allocation, cfg.Classes)
	}
	// A string rate as the command line writes it; empty lists reset.
	if status, ae := e.raw(http.MethodPatch, "/v1/ports/a", `{"limit_bps": "100M", "pcp_class": [], "dscp_class": []}`); status != 200 {
		t.Fatalf("PATCH = %d %+v", status, ae)
	}
	if cfg := e.h["a"].Config(); cfg.Allocation.Limit != 12_500_000 || cfg.Classes.PCP != nil || cfg.Classes.DSCP != nil || cfg.Allocation.Shares != 200 {
		t.Errorf("after reset: %+v %+v", cfg.Allocation, cfg.Classes)
	}
	// POST takes them in config too.
	if _, err := e.c.AddPort(ctx(t), PortSpec{Kind: KindVhostUser, Config: PortConfig{Name: "v", ReservationBPS: 1e6, Shares: 50,
		DSCPClass: []string{"46:2"}}, Options: map[string]OptionValue{"socket": {"v.sock"}}}); err != nil {
		t.Fatal(err)
	}
	if cfg := e.factory.handles["v"].Config(); cfg.Allocation != (vswitch.Allocation{Reservation: 125_000, Shares: 50}) || len(cfg.Classes.DSCP) != 1 {
		t.Errorf("POST: %+v %+v", cfg.Allocation, cfg.Classes)
	}
}

func TestPatchAllocationBad(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		body   string
		status int
		field  string
	}{
		{`{"reservation_bps": -1}`, 400, "reservation_bps"},
		{`{"reservation_bps": "10MB"}`, 400, "reservation_bps"},
		{`{"limit_bps": 1e16}`, 400, "limit_bps"},
		{`{"shares": 10001}`, 400, "shares"},
		{`{"shares": -1}`, 400, "shares"},
		{`{"reservation_bps": "10M", "limit_bps": "5M"}`, 400, "reservation_bps"},
		{`{"pcp_class": [0, 0, 3, 0, 0, 0, 0, 0]}`, 400, "pcp_class[2]"},
		{`{"pcp_class": [0, 1, 2]}`, 400, "pcp_class"},
		{`{"dscp_class": ["46:2", "64:1"]}`, 400, "dscp_class[1]"},
		{`{"dscp_class": ["15-8:1"]}`, 400, "dscp_class[0]"},
		{`{"dscp_class": ["46:3"]}`, 400, "dscp_class[0]"},
		{`{"dscp_class": ["46"]}`, 400, "dscp_class[0]"},
	} {
		before := e.h["a"].Config()
		status, ae := e.raw(http.MethodPatch, "/v1/ports/a", tc.body)
		if status != tc.status || ae.Field != tc.field || ae.Message == "" {
			t.Errorf("PATCH %s = %d field %q (%q), want %d field %q", tc.body, status, ae.Field, ae.Message, tc.status, tc.field)
		}
		if !reflect.DeepEqual(e.h["a"].Config(), before) {
			t.Errorf("PATCH %s changed the port", tc.body)
		}
	}
	// A limit below the reservation in force names the limit.
	if status, _ := e.raw(http.MethodPatch, "/v1/ports/a", `{"reservation_bps": "10M"}`); status != 200 {
		t.Fatal(status)
	}
	if status, ae := e.raw(http.MethodPatch, "/v1/ports/a", `{"limit_bps": "5M"}`); status != 400 || ae.Field != "limit_bps" {
		t.Errorf("limit below reservation = %d %+v", status, ae)
	}
}

// Reservations are admitted against every shaped egress's rate: past it,
// 409 naming the field and the ports.
func TestReservationAdmission(t *testing.T) {
	e := newEnv(t)
	if status, ae := e.raw(http.MethodPatch, "/v1/ports/t", `{"egress": {"rate_bps": "10M"}}`); status != 200 {
		t.Fatalf("%d %+v", status, ae)
	}
	if status, ae := e.raw(http.MethodPatch, "/v1/ports/a", `{"reservation_bps": "6M"}`); status != 200 {
		t.Fatalf("%d %+v", status, ae)
	}
	status, ae := e.raw(http.MethodPatch, "/v1/ports/b", `{"reservation_bps": "6M"}`)
	if status != http.StatusConflict || ae.Field != "reservation_bps" || !strings.Contains(ae.Message, `"t"`) || !strings.Contains(ae.Message, "10 Mbit/s") {
		t.Fatalf("over-reserved = %d %+v, want 409 reservation_bps naming t and its rate", status, ae)
	}
	if e.h["b"].Config().Allocation.Reservation != 0 {
		t.Error("refused reservation applied")
	}
	// Lowering the capacity under the reservations is refused as well.
	if status, ae := e.raw(http.MethodPatch, "/v1/ports/t", `{"egress": {"rate_bps": "5M"}}`); status != http.StatusConflict || ae.Field != "egress.rate_bps" {
		t.Errorf("capacity below reservations = %d %+v", status, ae)
	}
	// So is a new port whose reservation does not fit.
	_, err := e.c.AddPort(ctx(t), PortSpec{Kind: KindVhostUser, Config: PortConfig{Name: "v", ReservationBPS: 5e6},
		Options: map[string]OptionValue{"socket": {"v.sock"}}})
	wantError(t, err, http.StatusConflict, "config.reservation_bps")
}

// GET /v1/ports/{name}/queues lists a shaped egress's queues, the senders'
// with their allocations; the metrics show the same, only for ports with
// queues.
func TestQueuesAndMetrics(t *testing.T) {
	e := newEnv(t)
	res, shares := BitRate(100e3), 300
	if _, err := e.c.PatchPort(ctx(t), "a", PortPatch{ReservationBPS: &res, Shares: &shares}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.PatchPort(ctx(t), "b", PortPatch{Egress: &RateLimit{RateBPS: 1e6}}); err != nil {
		t.Fatal(err)
	}
	e.send("a", mac(1), mac(2), 40) // flooded to b (shaped: most wait) and t
	qs, err := e.c.Queues(ctx(t), "b")
	if err != nil {
		t.Fatal(err)
	}
	var got *Queue
	for i, q := range qs {
		if q.Port == "a" {
			got = &qs[i]
		}
	}
	if len(qs) != 3 || qs[0].Class != 2 || qs[1].Class != 1 || got == nil || got.Class != 0 {
		t.Fatalf("queues of b = %+v, want class 2, class 1 and a's", qs)
	}
	if got.SentPackets+uint64(got.QueuedFrames)+got.Drops != 40 || got.QueuedFrames == 0 || got.ReservationBPS != 100e3 || got.Shares != 300 || got.LimitBPS != 0 {
		t.Errorf("a's queue at b = %+v", *got)
	}
	if qs, err := e.c.Queues(ctx(t), "t"); err != nil || len(qs) != 0 {
		t.Errorf("queues of unshaped t = %+v %v, want none", qs, err)
	}
	_, err = e.c.Queues(ctx(t), "zz")
	wantError(t, err, http.StatusNotFound, "port")

	fams := scrape(t, e)
	if v := metricValue(t, fams, "hvnet_egress_queue_frames", map[string]string{"port": "b", "sender": "a", "class": "0"}); v != float64(got.QueuedFrames) {
		t.Errorf("hvnet_egress_queue_frames = %v, want %d", v, got.QueuedFrames)
	}
	if v := metricValue(t, fams, "hvnet_egress_queue_sent_packets_total", map[string]string{"port": "b", "sender": "a", "class": "0"}); v != float64(got.SentPackets) {
		t.Errorf("hvnet_egress_queue_sent_packets_total = %v, want %d", v, got.SentPackets)
	}
	for _, n := range []string{"hvnet_egress_queue_bytes", "hvnet_egress_queue_sent_bytes_total", "hvnet_egress_queue_drops_total", "hvnet_egress_queue_rate_bps"} {
		metricValue(t, fams, n, map[string]string{"port": "b", "sender": "", "class": "2"})
	}
	for _, m := range fams["hvnet_egress_queue_frames"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "port" && l.GetValue() != "b" {
				t.Errorf("queue metrics for unshaped port %s", l.GetValue())
			}
		}
	}
}
