package api

import (
	"github.com/prometheus/client_golang/prometheus"

	vswitch "github.com/hvnet/hvnet/switch"
)

// bondCollector exposes the bond ports' members: whether each carries
// traffic, its frames and drops, and its LACP selection. Like collector
// it reads at scrape time.
type bondCollector struct {
	sw   *vswitch.Switch
	bond BondReporter

	carrying, frames, drops, selected, aggregate, flapHolds *prometheus.Desc
}

func newBondCollector(sw *vswitch.Switch, b BondReporter) *bondCollector {
	pm := []string{"port", "member"}
	return &bondCollector{sw: sw, bond: b,
		carrying: prometheus.NewDesc("hvnet_bond_member_carrying", "1 while the bond sends frames on the member.", pm, nil),
		frames: prometheus.NewDesc("hvnet_bond_member_frames_total", "Frames a bond member received and passed to the switch (rx) or sent (tx).",
			[]string{"port", "member", "direction"}, nil),
		drops:     prometheus.NewDesc("hvnet_bond_member_rx_drops_total", "Frames received on the member where the bond does not take them (a backup member, one outside the aggregation).", pm, nil),
		selected:  prometheus.NewDesc("hvnet_bond_member_lacp_selected", "1 while the member is in the bond's LACP aggregator (mode lacp).", pm, nil),
		flapHolds: prometheus.NewDesc("hvnet_bond_member_lacp_flap_holds_total", "Times the member was held out of the LACP aggregation because its partner changed identity 3 times in 10 s (mode lacp).", pm, nil),
		aggregate: prometheus.NewDesc("hvnet_bond_lacp_aggregated", "1 while an LACP partner aggregates with the bond (mode lacp; 0: no partner, the fallback's case).", []string{"port"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *bondCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.carrying, c.frames, c.drops, c.selected, c.flapHolds, c.aggregate} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Collect implements prometheus.Collector.
func (c *bondCollector) Collect(ch chan<- prometheus.Metric) {
	if c.bond == nil {
		return
	}
	for _, pc := range c.sw.Counters() {
		b := c.bond.Bond(pc.Name)
		if b == nil {
			continue
		}
		lacp := false
		for _, m := range b.Members {
			ch <- prometheus.MustNewConstMetric(c.carrying, prometheus.GaugeValue, b2f(m.Carrying), pc.Name, m.Name)
			ch <- prometheus.MustNewConstMetric(c.frames, prometheus.CounterValue, float64(m.RxFrames), pc.Name, m.Name, "rx")
			ch <- prometheus.MustNewConstMetric(c.frames, prometheus.CounterValue, float64(m.TxFrames), pc.Name, m.Name, "tx")
			ch <- prometheus.MustNewConstMetric(c.drops, prometheus.CounterValue, float64(m.RxDrops), pc.Name, m.Name)
			if m.LACP != nil {
				lacp = true
				ch <- prometheus.MustNewConstMetric(c.selected, prometheus.GaugeValue, b2f(m.LACP.Selected), pc.Name, m.Name)
				ch <- prometheus.MustNewConstMetric(c.flapHolds, prometheus.CounterValue, float64(m.LACP.FlapHolds), pc.Name, m.Name)
			}
		}
		if lacp {
			ch <- prometheus.MustNewConstMetric(c.aggregate, prometheus.GaugeValue, b2f(b.Aggregate), pc.Name)
		}
	}
}
