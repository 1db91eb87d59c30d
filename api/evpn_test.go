package api

import (
	"errors"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// fakeEVPN is a tunnel port's control plane with fixed routes; it
// filters them as a speaker does.
type fakeEVPN struct {
	routes    []EVPNRoute
	neighbors []EVPNNeighbor
	counts    EVPNCounts
	err       error
}

func (f *fakeEVPN) EVPNNeighbors() []EVPNNeighbor { return f.neighbors }
func (f *fakeEVPN) EVPNCounts() EVPNCounts        { return f.counts }
func (f *fakeEVPN) EVPNRoutes(flt EVPNRouteFilter) ([]EVPNRoute, error) {
	if f.err != nil {
		return nil, f.err
	}
	var out []EVPNRoute
	for _, r := range f.routes {
		if (flt.Type == 0 || r.Type == flt.Type) && (flt.VNI == 0 || r.VNI == flt.VNI) && (!flt.HasMAC || r.MAC == flt.MAC.String()) {
			out = append(out, r)
		}
	}
	return out, nil
}

func (f *fakeFactory) EVPN(name string) EVPNPort {
	if ep := f.evpn[name]; ep != nil {
		return ep
	}
	return nil
}

func (f *fakeFactory) Tunnel(name string) *TunnelInfo { return f.tunnels[name] }

// fakeFabric makes port t a tunnel (VNI 100 on VLAN 10, VNI 200 on VLAN
// 20) with a control plane: two neighbors and four routes, and MAC 5
// behind 10.8.0.2.
func fakeFabric(f *fakeFactory) {
	f.tunnels = map[string]*TunnelInfo{"t": {Local: "10.8.0.1",
		VNIs:       []TunnelVNI{{VNI: 100, VLAN: 10, VTEPs: []string{"10.8.0.2"}}, {VNI: 200, VLAN: 20, VTEPs: []string{}}},
		RemoteMACs: []TunnelRemoteMAC{{VNI: 100, MAC: mac(5).String(), VTEP: "10.8.0.2"}}}}
	f.evpn = map[string]*fakeEVPN{"t": {
		neighbors: []EVPNNeighbor{
			{BGPNeighbor: BGPNeighbor{Address: "10.8.0.2", ASN: 65000, State: "established", Uptime: "1m0s", RoutesReceived: 2, RoutesAccepted: 2}, Flaps: 1},
			{BGPNeighbor: BGPNeighbor{Address: "10.8.0.3", ASN: 65000, State: "active"}, RouteLimitResets: 2, BadMessages: 3},
		},
		counts: EVPNCounts{LocalMACs: 1, LocalVNIs: 2, RemoteMACs: 1, RemoteVTEPs: 1},
		routes: []EVPNRoute{
			{Type: 2, RD: "10.8.0.1:1", VNI: 100, MAC: mac(1).String(), VTEP: "10.8.0.1", RouteTargets: []string{"65000:100"}, Source: "local", Best: true},
			{Type: 2, RD: "10.8.0.2:1", VNI: 100, MAC: mac(5).String(), IP: "10.0.0.5", VTEP: "10.8.0.2", Seq: 3, RouteTargets: []string{"65000:100"}, Source: "10.8.0.2", Best: true, Accepted: true},
			{Type: 3, RD: "10.8.0.1:1", VNI: 100, VTEP: "10.8.0.1", Source: "local", Best: true},
			{Type: 3, RD: "10.8.0.2:1", VNI: 100, VTEP: "10.8.0.2", RouteTargets: []string{"65000:100"}, Source: "10.8.0.2", Best: true, Accepted: true},
		}}}
}

// GET /v1/evpn/routes and /v1/evpn/neighbors name the port of each
// route and session, filter, and refuse bad filters naming the field;
// GET /v1/fdb shows the VTEP behind an entry on a tunnel port.
func TestEVPNEndpoints(t *testing.T) {
	e := newEnv(t)
	fakeFabric(e.factory)
	c := ctx(t)
	rs, err := e.c.EVPNRoutes(c, "", 0, 0, "")
	if err != nil || len(rs) != 4 || rs[0].Port != "t" || rs[2].RouteTargets == nil {
		t.Fatalf("all routes: %+v, %v", rs, err)
	}
	for _, tc := range []struct {
		port string
		typ  int
		vni  uint32
		mac  string
		want int
	}{
		{"t", 2, 0, "", 2}, {"", 3, 100, "", 2}, {"", 0, 200, "", 0}, {"", 0, 0, "02:00:00:00:00:05", 1}, {"", 2, 100, mac(1).String(), 1},
	} {
		rs, err := e.c.EVPNRoutes(c, tc.port, tc.typ, tc.vni, tc.mac)
		if err != nil || len(rs) != tc.want {
			t.Errorf("routes port=%q type=%d vni=%d mac=%q: %+v, %v; want %d", tc.port, tc.typ, tc.vni, tc.mac, rs, err, tc.want)
		}
	}
	for _, tc := range []struct {
		path, field string
		status      int
	}{
		{"/v1/evpn/routes?type=4", "type", 400}, {"/v1/evpn/routes?vni=0", "vni", 400}, {"/v1/evpn/routes?vni=16777216", "vni", 400},
		{"/v1/evpn/routes?mac=nope", "mac", 400}, {"/v1/evpn/routes?colour=red", "colour", 400},
		{"/v1/evpn/routes?port=zz", "port", 404}, {"/v1/evpn/routes?port=a", "port", 404},
		{"/v1/evpn/neighbors?port=a", "port", 404}, {"/v1/evpn/neighbors?vni=1", "vni", 400},
	} {
		_, err := e.c.Raw(c, http.MethodGet, tc.path, nil)
		wantError(t, err, tc.status, tc.field)
	}
	ns, err := e.c.EVPNNeighbors(c, "t")
	if err != nil || len(ns) != 2 || ns[0].Port != "t" || ns[0].State != "established" || ns[1].RouteLimitResets != 2 {
		t.Fatalf("neighbors: %+v, %v", ns, err)
	}
	e.factory.evpn["t"].err = errors.New("speaker closed")
	_, err = e.c.EVPNRoutes(c, "", 0, 0, "")
	wantError(t, err, http.StatusServiceUnavailable, "port")

	// A MAC on the tunnel port in VLAN 10 (VNI 100) is behind 10.8.0.2;
	// in VLAN 20, and on other ports, there is none.
	for _, se := range []StaticEntry{{Port: "t", VLAN: 10, MAC: mac(5).String()}, {Port: "t", VLAN: 20, MAC: mac(6).String()}, {Port: "a", VLAN: 10, MAC: mac(7).String()}} {
		if err := e.c.AddStatic(c, se); err != nil {
			t.Fatal(err)
		}
	}
	fdb, err := e.c.FDB(c, "", 0, "")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, fe := range fdb {
		got[fe.MAC] = fe.VTEP
	}
	if got[mac(5).String()] != "10.8.0.2" || got[mac(6).String()] != "" || got[mac(7).String()] != "" {
		t.Errorf("FDB VTEPs = %v", got)
	}
}

// /metrics has each tunnel port's sessions by state, per-neighbor routes
// and resets, and its route counts.
func TestEVPNMetrics(t *testing.T) {
	e := newEnv(t)
	fakeFabric(e.factory)
	fams := scrape(t, e)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"hvnet_evpn_bgp_sessions", map[string]string{"port": "t", "state": "established"}, 1},
		{"hvnet_evpn_bgp_sessions", map[string]string{"port": "t", "state": "active"}, 1},
		{"hvnet_evpn_bgp_sessions", map[string]string{"port": "t", "state": "idle"}, 0},
		{"hvnet_evpn_neighbor_established", map[string]string{"port": "t", "neighbor": "10.8.0.2"}, 1},
		{"hvnet_evpn_neighbor_established", map[string]string{"port": "t", "neighbor": "10.8.0.3"}, 0},
		{"hvnet_evpn_neighbor_routes_received", map[string]string{"port": "t", "neighbor": "10.8.0.2"}, 2},
		{"hvnet_evpn_neighbor_routes_accepted", map[string]string{"port": "t", "neighbor": "10.8.0.2"}, 2},
		{"hvnet_evpn_neighbor_flaps_total", map[string]string{"port": "t", "neighbor": "10.8.0.2"}, 1},
		{"hvnet_evpn_neighbor_route_limit_resets_total", map[string]string{"port": "t", "neighbor": "10.8.0.3"}, 2},
		{"hvnet_evpn_neighbor_bad_messages_total", map[string]string{"port": "t", "neighbor": "10.8.0.3"}, 3},
		{"hvnet_evpn_local_routes", map[string]string{"port": "t", "type": "2"}, 1},
		{"hvnet_evpn_local_routes", map[string]string{"port": "t", "type": "3"}, 2},
		{"hvnet_evpn_remote_routes", map[string]string{"port": "t", "type": "2"}, 1},
	} {
		if got := metricValue(t, fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if n := len(fams["hvnet_evpn_bgp_sessions"].GetMetric()); n != len(bgpStates) {
		t.Errorf("hvnet_evpn_bgp_sessions has %d series, want one per state", n)
	}
	// The exposition, these metrics in it, passes promlint and promtool.
	text, err := e.c.Metrics(ctx(t))
	if err != nil || !strings.Contains(text, "hvnet_evpn_neighbor_routes_received") {
		t.Fatalf("metrics: %v", err)
	}
	if problems, err := promlint.New(strings.NewReader(text)).Lint(); err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %+v", err, problems)
	}
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Log("promtool is not installed (Debian's prometheus package; run.sh installs it)")
		return
	}
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
