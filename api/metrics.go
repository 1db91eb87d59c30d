package api

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hvnet/hvnet/conntrack"
	vswitch "github.com/hvnet/hvnet/switch"
)

// collector exposes the switch's counters to Prometheus. It reads
// Switch.Counters (and the backends' device counters) at scrape time, so
// forwarding pays nothing for metrics.
type collector struct {
	sw  *vswitch.Switch
	fan *fanout
	dev DeviceReporter // nil: the port factory keeps no device counters

	packets, bytes, drops, learned, queued    *prometheus.Desc
	fdbEntries, fdbLearned, fdbMoves, fdbAged *prometheus.Desc
	fdbDynamic, fdbMax                        *prometheus.Desc
	capDropped                                *prometheus.Desc
	aclHits                                   *prometheus.Desc
	apiLimit                                  *prometheus.Desc
	devDrops, devFaults                       *prometheus.Desc
	devSessions, devConnected, devStuck       *prometheus.Desc
	vxSuppressed                              *prometheus.Desc
	ctEntries, ctNew, ctInvalid, ctFull       *prometheus.Desc
	ctExpired, ctTableEntries, ctMax          *prometheus.Desc
	ctMaxPerPort                              *prometheus.Desc
	qFrames, qBytes, qSentBytes, qSentPkts    *prometheus.Desc
	qDrops, qRate                             *prometheus.Desc
	stats                                     *limitStats
	ctLimits                                  func() (table, perPort int)
}

func newCollector(sw *vswitch.Switch, fan *fanout, stats *limitStats, dev DeviceReporter, ctLimits func() (int, int)) *collector {
	pd := []string{"port", "direction"}
	port := []string{"port"}
	queue := []string{"port", "sender", "class"}
	return &collector{
		sw: sw, fan: fan, stats: stats, dev: dev, ctLimits: ctLimits,
		apiLimit: prometheus.NewDesc("hvnet_api_limit_reached_total", "Times an API limit was reached: connections (every connection slot taken; new connections waited in the listen backlog) or captures (a live capture refused with 429).",
			[]string{"limit"}, nil),
		packets: prometheus.NewDesc("hvnet_port_packets_total", "Frames through a switch port: ingress = received from the port (before drops), egress = accepted by the port.", pd, nil),
		bytes:   prometheus.NewDesc("hvnet_port_bytes_total", "Bytes through a switch port, as hvnet_port_packets_total.", pd, nil),
		drops: prometheus.NewDesc("hvnet_port_drops_total", "Frames dropped by the switch, by port, direction and reason.",
			[]string{"port", "direction", "reason"}, nil),
		learned:    prometheus.NewDesc("hvnet_port_learned_macs", "Dynamic FDB entries pointing at the port.", []string{"port"}, nil),
		queued:     prometheus.NewDesc("hvnet_port_shaper_queued_frames", "Frames waiting in the port's egress shaper.", []string{"port"}, nil),
		fdbEntries: prometheus.NewDesc("hvnet_fdb_entries", "Entries in the filtering database, static included.", nil, nil),
		fdbDynamic: prometheus.NewDesc("hvnet_fdb_dynamic_entries", "Learned (dynamic) entries in the filtering database: what hvnet_fdb_max_entries bounds.", nil, nil),
		fdbMax:     prometheus.NewDesc("hvnet_fdb_max_entries", "The bound on learned FDB entries (fdb max entries); new MACs past it are dropped (reason fdb_full).", nil, nil),
		fdbLearned: prometheus.NewDesc("hvnet_fdb_learned_total", "Dynamic FDB entries created.", nil, nil),
		fdbMoves:   prometheus.NewDesc("hvnet_fdb_moves_total", "Dynamic FDB entries that moved to another port.", nil, nil),
		fdbAged:    prometheus.NewDesc("hvnet_fdb_aged_total", "Dynamic FDB entries removed by aging.", nil, nil),
		aclHits: prometheus.NewDesc("hvnet_acl_hits_total", "Frames decided by a rule of a port's ACL (direction: ingress or egress; rule: its index in that direction's list, or \"default\"); reset when the ACL is replaced.",
			[]string{"port", "direction", "rule"}, nil),
		capDropped: prometheus.NewDesc("hvnet_capture_dropped_frames_total", "Mirrored frames lost because a capture or file mirror fell behind (current listeners).", []string{"port"}, nil),
		devDrops: prometheus.NewDesc("hvnet_port_device_drops_total", "Frames a port's backend dropped itself (totals over the port's life; those on the way out of the switch, rx_* and tx_error, are the switch's no_buffer drops of the port broken down by reason, not more drops): a vhost-user or lab guest's virtio-net device (tx_bad_chain, tx_bad_header, tx_runt, tx_oversize, rx_no_buffer, rx_bad_chain, rx_oversize, rx_offload, rx_source_fault) or an uplink (rx_bad, rx_kernel, tx_error).",
			[]string{"port", "reason"}, nil),
		devFaults: prometheus.NewDesc("hvnet_port_device_faults_total", "Faults a port's backend found (totals over the port's life): a virtio-net device's queues (queue, memory, signal_error, ctrl_error), a vhost-user frontend's requests, memory and notification descriptors (refused_fd, refused_mem_fd, refused_mapping, rejected_request, notify_stall, notify_error, notifier_abandoned, worker_abandoned, kick_hangup, session_refused), an uplink's sockets (rx_socket_error).",
			[]string{"port", "kind"}, nil),
		devSessions:  prometheus.NewDesc("hvnet_port_vhost_sessions_total", "vhost-user frontends a port has served, the current one included.", []string{"port"}, nil),
		devConnected: prometheus.NewDesc("hvnet_port_vhost_connected", "1 while a vhost-user frontend is attached to the port.", []string{"port"}, nil),
		vxSuppressed: prometheus.NewDesc("hvnet_port_vxlan_suppressed_total", "ARP requests (protocol arp) and neighbor solicitations (protocol nd) a VXLAN tunnel port answered itself from its remote MAC/IP table instead of flooding them to the remote VTEPs.", []string{"port", "protocol"}, nil),
		ctEntries:    prometheus.NewDesc("hvnet_conntrack_entries", "Connections tracked for the port's security group now.", port, nil),
		ctNew:        prometheus.NewDesc("hvnet_conntrack_new_total", "Connections the port's security group let open (tracked from their first frame).", port, nil),
		ctInvalid:    prometheus.NewDesc("hvnet_conntrack_invalid_total", "Frames connection tracking judged invalid on the port (impossible TCP flags, out of window, bad fragments, malformed headers): its ct_invalid drops.", port, nil),
		ctFull: prometheus.NewDesc("hvnet_conntrack_full_total", "New connections of the port refused because a connection table was full (scope port: the port's, conntrack max_entries_per_port; table: the switch's, max_entries): its ct_full drops.",
			[]string{"port", "scope"}, nil),
		ctExpired:      prometheus.NewDesc("hvnet_conntrack_expired_total", "Tracked connections of the port removed by their idle timeout.", port, nil),
		ctTableEntries: prometheus.NewDesc("hvnet_conntrack_table_entries", "Connections tracked over every port: what hvnet_conntrack_max_entries bounds.", nil, nil),
		ctMax:          prometheus.NewDesc("hvnet_conntrack_max_entries", "The bound on tracked connections over every port (conntrack max_entries); new connections past it are dropped (reason ct_full).", nil, nil),
		ctMaxPerPort:   prometheus.NewDesc("hvnet_conntrack_max_entries_per_port", "The bound on each port's tracked connections (conntrack max_entries_per_port); new connections past it are dropped (reason ct_full).", nil, nil),
		qFrames: prometheus.NewDesc("hvnet_egress_queue_frames", "Frames waiting in a queue of a shaped egress (port: the egress; sender: the sending port of a class-0 queue, \"\" for the strict class queues 1 and 2).",
			queue, nil),
		qBytes:     prometheus.NewDesc("hvnet_egress_queue_bytes", "Bytes waiting in a queue of a shaped egress, as hvnet_egress_queue_frames.", queue, nil),
		qSentBytes: prometheus.NewDesc("hvnet_egress_queue_sent_bytes_total", "Bytes a queue of a shaped egress sent.", queue, nil),
		qSentPkts:  prometheus.NewDesc("hvnet_egress_queue_sent_packets_total", "Frames a queue of a shaped egress sent.", queue, nil),
		qDrops:     prometheus.NewDesc("hvnet_egress_queue_drops_total", "Frames a queue of a shaped egress dropped because it was full (tail drops; counted in hvnet_port_drops_total reason shaper_queue too).", queue, nil),
		qRate:      prometheus.NewDesc("hvnet_egress_queue_rate_bps", "The rate a queue of a shaped egress achieved over the last whole second it was busy, bits per second (0 once idle).", queue, nil),
		devStuck:   prometheus.NewDesc("hvnet_port_vhost_stuck", "Abandoned notifiers and ring workers of the port's earlier frontends still blocked in a system call the frontend holds up; at 4 the port refuses new frontends.", []string{"port"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.packets, c.bytes, c.drops, c.learned, c.queued,
		c.fdbEntries, c.fdbDynamic, c.fdbMax, c.fdbLearned, c.fdbMoves, c.fdbAged, c.capDropped, c.aclHits, c.apiLimit,
		c.devDrops, c.devFaults, c.devSessions, c.devConnected, c.devStuck, c.vxSuppressed,
		c.ctEntries, c.ctNew, c.ctInvalid, c.ctFull, c.ctExpired, c.ctTableEntries, c.ctMax, c.ctMaxPerPort,
		c.qFrames, c.qBytes, c.qSentBytes, c.qSentPkts, c.qDrops, c.qRate} {
		ch <- d
	}
}

// dropDirection: egress drops are counted on the egress port, the rest on
// the ingress port (vswitch.DropReason).
func dropDirection(r vswitch.DropReason) string {
	if r == vswitch.DropShaperQueue || r == vswitch.DropNoBuffer {
		return "egress"
	}
	return "ingress"
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	for _, pc := range c.sw.Counters() {
		counter(c.packets, float64(pc.RxPackets), pc.Name, "ingress")
		counter(c.packets, float64(pc.TxPackets), pc.Name, "egress")
		counter(c.bytes, float64(pc.RxBytes), pc.Name, "ingress")
		counter(c.bytes, float64(pc.TxBytes), pc.Name, "egress")
		for r, n := range pc.Drops {
			dr := vswitch.DropReason(r)
			counter(c.drops, float64(n), pc.Name, dropDirection(dr), dr.String())
		}
		gauge(c.learned, float64(pc.LearnedMACs), pc.Name)
		gauge(c.queued, float64(pc.ShaperQueued), pc.Name)
		if h := c.sw.Port(pc.Name); h != nil {
			in, eg := portACLs(h)
			for _, d := range []struct {
				s   aclSet
				dir string
			}{{in, ACLIngress}, {eg, ACLEgress}} {
				if d.s.empty() {
					continue
				}
				for i, n := range d.s.hits.Rules {
					counter(c.aclHits, float64(n), pc.Name, d.dir, strconv.Itoa(i))
				}
				counter(c.aclHits, float64(d.s.hits.Default), pc.Name, d.dir, "default")
			}
			if z := h.Conntrack(); z != nil {
				c.collectConntrack(ch, pc.Name, z.Counters())
			}
			for _, q := range toAPIQueues(h.Config(), h.Queues()) {
				l := []string{pc.Name, q.Port, strconv.Itoa(q.Class)}
				gauge(c.qFrames, float64(q.QueuedFrames), l...)
				gauge(c.qBytes, float64(q.QueuedBytes), l...)
				counter(c.qSentBytes, float64(q.SentBytes), l...)
				counter(c.qSentPkts, float64(q.SentPackets), l...)
				counter(c.qDrops, float64(q.Drops), l...)
				gauge(c.qRate, float64(q.RateBPS), l...)
			}
		}
		if c.dev != nil {
			c.collectDevice(ch, pc.Name, c.dev.DeviceCounters(pc.Name))
		}
	}
	table, perPort := c.ctLimits()
	gauge(c.ctTableEntries, float64(c.sw.ConntrackTable().Len()))
	gauge(c.ctMax, float64(table))
	gauge(c.ctMaxPerPort, float64(perPort))
	sc := c.sw.SwitchCounters()
	gauge(c.fdbEntries, float64(sc.FDBEntries))
	gauge(c.fdbDynamic, float64(sc.DynamicEntries))
	gauge(c.fdbMax, float64(sc.MaxEntries))
	counter(c.fdbLearned, float64(sc.Learned))
	counter(c.fdbMoves, float64(sc.Moves))
	counter(c.fdbAged, float64(sc.Aged))
	counter(c.apiLimit, float64(c.stats.connWaits.Load()), "connections")
	counter(c.apiLimit, float64(c.stats.capturesRefused.Load()), "captures")
	for port, taps := range *c.fan.taps.Load() {
		var n uint64
		for _, t := range taps {
			n += t.dropped.Load()
		}
		counter(c.capDropped, float64(n), port)
	}
}

// collectConntrack exports one port's connection-tracking counters.
func (c *collector) collectConntrack(ch chan<- prometheus.Metric, port string, cc conntrack.Counters) {
	m := func(d *prometheus.Desc, t prometheus.ValueType, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, t, float64(v), append([]string{port}, l...)...)
	}
	m(c.ctEntries, prometheus.GaugeValue, cc.Entries)
	m(c.ctNew, prometheus.CounterValue, cc.New)
	m(c.ctInvalid, prometheus.CounterValue, cc.Invalid)
	m(c.ctFull, prometheus.CounterValue, cc.ZoneFull, "port")
	m(c.ctFull, prometheus.CounterValue, cc.TableFull, "table")
	m(c.ctExpired, prometheus.CounterValue, cc.Expired)
}

// collectDevice exports one port's device counters (none when dc is nil).
func (c *collector) collectDevice(ch chan<- prometheus.Metric, port string, dc *DeviceCounters) {
	if dc == nil {
		return
	}
	for _, n := range dc.Counts() {
		d, label := c.devDrops, n.Drop
		if n.Fault != "" {
			d, label = c.devFaults, n.Fault
		}
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(n.Value), port, label)
	}
	if v := dc.VXLANCounters; v != nil {
		ch <- prometheus.MustNewConstMetric(c.vxSuppressed, prometheus.CounterValue, float64(v.ARPSuppressed), port, "arp")
		ch <- prometheus.MustNewConstMetric(c.vxSuppressed, prometheus.CounterValue, float64(v.NDSuppressed), port, "nd")
	}
	if v := dc.VhostCounters; v != nil {
		ch <- prometheus.MustNewConstMetric(c.devSessions, prometheus.CounterValue, float64(v.Sessions), port)
		connected := 0.0
		if v.Connected {
			connected = 1
		}
		ch <- prometheus.MustNewConstMetric(c.devConnected, prometheus.GaugeValue, connected, port)
		ch <- prometheus.MustNewConstMetric(c.devStuck, prometheus.GaugeValue, float64(v.Stuck), port)
	}
}

// metricsHandler serves GET /metrics: the switch's collector, the Go
// runtime's and the process's, and hvnet_build_info.
func (s *Server) metricsHandler() http.Handler {
	reg := prometheus.NewPedanticRegistry()
	dev, _ := s.ports.(DeviceReporter)
	ev, _ := s.ports.(EVPNReporter)
	br, _ := s.ports.(BondReporter)
	reg.MustRegister(newCollector(s.sw, s.fan, &s.stats, dev, s.ctLimits), newTunnelCollector(s.sw, ev, dev), newBondCollector(s.sw, br), collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if s.flows != nil {
		reg.MustRegister(newFlowCollector(s.flows))
	}
	if s.build != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hvnet_build_info",
			Help:        "Always 1: the labels say which hvnet this is.",
			ConstLabels: s.build}, func() float64 { return 1 }))
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: nil})
}

// MetricsHandler serves only the metrics, for a listener of their own
// (a TCP address Prometheus scrapes): no control, whoever connects.
func (s *Server) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metricsHandler())
	return mux
}
