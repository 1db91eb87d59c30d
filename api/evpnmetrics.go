package api

import (
	"github.com/prometheus/client_golang/prometheus"

	vswitch "github.com/hvnet/hvnet/switch"
)

// bgpStates are the BGP FSM states (RFC 4271 §8.2.2) as EVPNNeighbor
// names them; hvnet_evpn_bgp_sessions has a series for each.
var bgpStates = []string{"idle", "connect", "active", "opensent", "openconfirm", "established"}

// tunnelCollector exposes the tunnel ports' packets and their BGP EVPN
// control planes: sessions, routes, resets. Like collector it reads at
// scrape time.
type tunnelCollector struct {
	sw   *vswitch.Switch
	evpn EVPNReporter   // nil: no port runs a control plane
	dev  DeviceReporter // nil: no tunnel counters

	packets, gso, floodCopies, remoteMACs     *prometheus.Desc
	sessions, established                     *prometheus.Desc
	received, accepted, flaps, resets, badMsg *prometheus.Desc
	localRoutes, remoteRoutes                 *prometheus.Desc
}

func newTunnelCollector(sw *vswitch.Switch, ev EVPNReporter, dev DeviceReporter) *tunnelCollector {
	pn := []string{"port", "neighbor"}
	return &tunnelCollector{sw: sw, evpn: ev, dev: dev,
		packets: prometheus.NewDesc("hvnet_vxlan_packets_total", "VXLAN packets of a tunnel port: rx = received from remote VTEPs and handed to the switch, tx = sent (each flooded copy one). Its drops are hvnet_port_device_drops_total's vxlan_* reasons.",
			[]string{"port", "direction"}, nil),
		gso: prometheus.NewDesc("hvnet_vxlan_gso_packets_total", "UDP segmentation offload on a tunnel port's underlay: rx = datagrams the kernel coalesced (UDP GRO), tx = super-packets sent (UDP GSO: runs of one inner flow to one VTEP). Their packets are in hvnet_vxlan_packets_total.",
			[]string{"port", "direction"}, nil),
		floodCopies: prometheus.NewDesc("hvnet_vxlan_flood_copies_total", "VXLAN packets a tunnel port sent as copies of flooded frames (ingress replication).", []string{"port"}, nil),
		remoteMACs:  prometheus.NewDesc("hvnet_vxlan_remote_macs", "MACs a tunnel port knows behind remote VTEPs (learned or from BGP EVPN).", []string{"port"}, nil),
		sessions: prometheus.NewDesc("hvnet_evpn_bgp_sessions", "BGP sessions of a tunnel port's EVPN speaker, by state (idle, connect, active, opensent, openconfirm, established).",
			[]string{"port", "state"}, nil),
		established: prometheus.NewDesc("hvnet_evpn_neighbor_established", "1 while the BGP session with the neighbor is established.", pn, nil),
		received:    prometheus.NewDesc("hvnet_evpn_neighbor_routes_received", "EVPN routes in the neighbor's Adj-RIB-In.", pn, nil),
		accepted:    prometheus.NewDesc("hvnet_evpn_neighbor_routes_accepted", "EVPN routes of the neighbor accepted by import policy.", pn, nil),
		flaps:       prometheus.NewDesc("hvnet_evpn_neighbor_flaps_total", "Times the BGP session with the neighbor left established.", pn, nil),
		resets:      prometheus.NewDesc("hvnet_evpn_neighbor_route_limit_resets_total", "Times the neighbor's session was reset because it sent more routes than max-routes.", pn, nil),
		badMsg:      prometheus.NewDesc("hvnet_evpn_neighbor_bad_messages_total", "Malformed BGP messages the neighbor sent (each ended its session).", pn, nil),
		localRoutes: prometheus.NewDesc("hvnet_evpn_local_routes", "EVPN routes the tunnel port's speaker advertises, by type (2: MAC/IP, 3: inclusive multicast).",
			[]string{"port", "type"}, nil),
		remoteRoutes: prometheus.NewDesc("hvnet_evpn_remote_routes", "Received EVPN routes the tunnel port's speaker uses (best paths), by type.",
			[]string{"port", "type"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *tunnelCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.packets, c.gso, c.floodCopies, c.remoteMACs, c.sessions, c.established,
		c.received, c.accepted, c.flaps, c.resets, c.badMsg, c.localRoutes, c.remoteRoutes} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *tunnelCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	for _, pc := range c.sw.Counters() {
		port := pc.Name
		if c.dev != nil {
			if dc := c.dev.DeviceCounters(port); dc != nil && dc.VXLANCounters != nil {
				x := dc.VXLANCounters
				counter(c.packets, float64(x.RxPackets), port, "rx")
				counter(c.packets, float64(x.TxPackets), port, "tx")
				counter(c.gso, float64(x.RxGROPackets), port, "rx")
				counter(c.gso, float64(x.TxGSOPackets), port, "tx")
				counter(c.floodCopies, float64(x.FloodCopies), port)
				gauge(c.remoteMACs, float64(x.RemoteMACs), port)
			}
		}
		if c.evpn == nil {
			continue
		}
		ep := c.evpn.EVPN(port)
		if ep == nil {
			continue
		}
		states := map[string]int{}
		for _, n := range ep.EVPNNeighbors() {
			states[n.State]++
			up := 0.0
			if n.State == "established" {
				up = 1
			}
			gauge(c.established, up, port, n.Address)
			gauge(c.received, float64(n.RoutesReceived), port, n.Address)
			gauge(c.accepted, float64(n.RoutesAccepted), port, n.Address)
			counter(c.flaps, float64(n.Flaps), port, n.Address)
			counter(c.resets, float64(n.RouteLimitResets), port, n.Address)
			counter(c.badMsg, float64(n.BadMessages), port, n.Address)
		}
		for _, st := range bgpStates {
			gauge(c.sessions, float64(states[st]), port, st)
		}
		n := ep.EVPNCounts()
		gauge(c.localRoutes, float64(n.LocalMACs), port, "2")
		gauge(c.localRoutes, float64(n.LocalVNIs), port, "3")
		gauge(c.remoteRoutes, float64(n.RemoteMACs), port, "2")
		gauge(c.remoteRoutes, float64(n.RemoteVTEPs), port, "3")
	}
}
