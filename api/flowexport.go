package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hvnet/hvnet/ipfix"
	vswitch "github.com/hvnet/hvnet/switch"
)

// Flow export (package ipfix): GET and PUT /v1/flow-export read and set
// it, GET /v1/flows lists the flow cache's biggest flows. The settings'
// names and units are the topology file's flow_export keys and hvnet
// switch's --flow-* flags: durations as Go writes them ("1m0s").

// FlowExport is flow export's configuration (ipfix.Config). In a PUT an
// absent enabled means true and absent fields take their defaults.
type FlowExport struct {
	Enabled                *bool    `json:"enabled,omitempty"`
	Collectors             []string `json:"collectors"`
	ActiveTimeout          string   `json:"active_timeout,omitempty"`
	IdleTimeout            string   `json:"idle_timeout,omitempty"`
	Sampling               int      `json:"sampling,omitempty"`
	MaxFlows               int      `json:"max_flows,omitempty"`
	MaxFlowsPerPort        int      `json:"max_flows_per_port,omitempty"`
	TemplateRefresh        string   `json:"template_refresh,omitempty"`
	TemplateRefreshPackets int      `json:"template_refresh_packets,omitempty"`
	ObservationDomain      uint32   `json:"observation_domain,omitempty"`
}

// FlowExportStatus is GET /v1/flow-export's answer: the configuration in
// force, defaults filled in, its counters and the ports' interface
// numbers in the records.
type FlowExportStatus struct {
	FlowExport
	Stats      FlowExportStats `json:"stats"`
	Interfaces []FlowInterface `json:"interfaces"`
}

// FlowExportStats are the exporter's counters (the metrics
// hvnet_flow_export_*).
type FlowExportStats struct {
	FlowsActive      int64                `json:"flows_active"`
	CacheFull        uint64               `json:"cache_full"`
	Records          uint64               `json:"records"`
	Messages         uint64               `json:"messages"`
	TemplateMessages uint64               `json:"template_messages"`
	SendErrors       uint64               `json:"send_errors"`
	Collectors       []FlowCollectorStats `json:"collectors,omitempty"`
}

// FlowCollectorStats is one collector's counters.
type FlowCollectorStats struct {
	Address    string `json:"address"`
	Messages   uint64 `json:"messages"`
	SendErrors uint64 `json:"send_errors"`
	LastError  string `json:"last_error,omitempty"`
}

// FlowInterface is a port's number in exported flows (ingressInterface,
// egressInterface).
type FlowInterface struct {
	Index uint32 `json:"index"`
	Port  string `json:"port"`
}

// Flow is one cached flow (GET /v1/flows).
type Flow struct {
	In        string `json:"in"`
	Out       string `json:"out,omitempty"` // absent: flooded
	InIndex   uint32 `json:"in_index"`
	OutIndex  uint32 `json:"out_index"`
	SrcMAC    string `json:"src_mac"`
	DstMAC    string `json:"dst_mac"`
	VLAN      uint16 `json:"vlan"`
	EtherType string `json:"ethertype"`
	Protocol  uint8  `json:"protocol,omitempty"`
	SrcIP     string `json:"src_ip,omitempty"`
	DstIP     string `json:"dst_ip,omitempty"`
	SrcPort   uint16 `json:"src_port,omitempty"`
	DstPort   uint16 `json:"dst_port,omitempty"`
	ICMPType  *uint8 `json:"icmp_type,omitempty"`
	ICMPCode  *uint8 `json:"icmp_code,omitempty"`
	TCPFlags  string `json:"tcp_flags,omitempty"`
	Packets   uint64 `json:"packets"`
	Bytes     uint64 `json:"bytes"` // whole frames, as the port counters
	Start     string `json:"start"`
	End       string `json:"end"`
}

// Flows is GET /v1/flows's answer.
type Flows struct {
	// Total is how many flows the cache holds; Flows the first Limit by
	// Sort. Counts are of sampled frames: one in Sampling.
	Total    int    `json:"total"`
	Sampling int    `json:"sampling"`
	Sort     string `json:"sort"`
	Flows    []Flow `json:"flows"`
}

// Flow listing bounds.
const (
	DefaultFlowList = 20
	MaxFlowList     = 1000
)

// FlowExportFrom is cfg as the API writes it.
func FlowExportFrom(cfg ipfix.Config) FlowExport {
	en := cfg.Enabled
	c := append([]string{}, cfg.Collectors...)
	return FlowExport{Enabled: &en, Collectors: c, ActiveTimeout: cfg.ActiveTimeout.String(), IdleTimeout: cfg.IdleTimeout.String(),
		Sampling: cfg.Sampling, MaxFlows: cfg.MaxFlows, MaxFlowsPerPort: cfg.MaxFlowsPerPort, TemplateRefresh: cfg.TemplateRefresh.String(),
		TemplateRefreshPackets: cfg.TemplateRefreshPackets, ObservationDomain: cfg.ObservationDomain}
}

// Config turns f into ipfix's configuration; a bad duration is an
// *Error naming its field.
func (f FlowExport) Config() (ipfix.Config, *Error) {
	c := ipfix.Config{Enabled: f.Enabled == nil || *f.Enabled, Collectors: f.Collectors, Sampling: f.Sampling, MaxFlows: f.MaxFlows, MaxFlowsPerPort: f.MaxFlowsPerPort,
		TemplateRefreshPackets: f.TemplateRefreshPackets, ObservationDomain: f.ObservationDomain}
	for _, d := range []struct {
		name, s string
		to      *time.Duration
	}{{"active_timeout", f.ActiveTimeout, &c.ActiveTimeout}, {"idle_timeout", f.IdleTimeout, &c.IdleTimeout}, {"template_refresh", f.TemplateRefresh, &c.TemplateRefresh}} {
		if d.s == "" {
			continue
		}
		v, err := time.ParseDuration(d.s)
		if err != nil || v <= 0 {
			return c, badField(d.name, "%q is not a duration (60s, 10m)", d.s)
		}
		*d.to = v
	}
	return c, nil
}

// flowExportError is an ipfix.FieldError as a 400 naming the field.
func flowExportError(err error) *Error {
	var fe *ipfix.FieldError
	if errors.As(err, &fe) {
		return badField(fe.Field, "%q: %s", fe.Value, fe.Want)
	}
	return &Error{Status: http.StatusBadRequest, Message: err.Error()}
}

func (s *Server) noFlowExport(w http.ResponseWriter) bool {
	if s.flows == nil {
		writeError(w, &Error{Status: http.StatusNotImplemented, Message: "this daemon has no flow exporter"})
		return true
	}
	return false
}

// FlowExportStatusOf is the status of e.
func FlowExportStatusOf(e *ipfix.Exporter, sw *vswitch.Switch) FlowExportStatus {
	st := e.Stats()
	out := FlowExportStatus{FlowExport: FlowExportFrom(e.Config()), Interfaces: []FlowInterface{},
		Stats: FlowExportStats{FlowsActive: st.Flows.Active, CacheFull: st.Flows.Full, Records: st.Records, Messages: st.Messages,
			TemplateMessages: st.Templates, SendErrors: st.SendErrors}}
	for _, c := range st.Collectors {
		out.Stats.Collectors = append(out.Stats.Collectors, FlowCollectorStats{Address: c.Address, Messages: c.Messages, SendErrors: c.SendErrors, LastError: c.LastError})
	}
	for _, p := range sw.PortIndexes() {
		out.Interfaces = append(out.Interfaces, FlowInterface{Index: p.Index, Port: p.Name})
	}
	return out
}

// getFlowExport: GET /v1/flow-export.
func (s *Server) getFlowExport(w http.ResponseWriter, r *http.Request) {
	if s.noFlowExport(w) {
		return
	}
	writeJSON(w, http.StatusOK, FlowExportStatusOf(s.flows, s.sw))
}

// putFlowExport: PUT /v1/flow-export, the whole configuration; flows
// counted under a sampling or cache size that changes are exported first.
func (s *Server) putFlowExport(w http.ResponseWriter, r *http.Request) {
	if s.noFlowExport(w) {
		return
	}
	var f FlowExport
	if e := decode(r, &f); e != nil {
		writeError(w, e)
		return
	}
	cfg, e := f.Config()
	if e != nil {
		writeError(w, e)
		return
	}
	if err := s.flows.Apply(cfg); err != nil {
		writeError(w, flowExportError(err))
		return
	}
	s.log.Info("flow export set through the API", "enabled", cfg.Enabled, "collectors", cfg.Collectors)
	writeJSON(w, http.StatusOK, FlowExportStatusOf(s.flows, s.sw))
}

// getFlows: GET /v1/flows?limit=N&sort=bytes|packets.
func (s *Server) getFlows(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := DefaultFlowList
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxFlowList {
			writeError(w, badField("limit", "%q: want 1..%d", v, MaxFlowList))
			return
		}
		limit = n
	}
	by, sortName := vswitch.FlowsByBytes, "bytes"
	switch v := q.Get("sort"); v {
	case "", "bytes":
	case "packets":
		by, sortName = vswitch.FlowsByPackets, v
	default:
		writeError(w, badField("sort", "%q: want bytes or packets", v))
		return
	}
	recs, total, err := s.sw.Flows(limit, by)
	if errors.Is(err, vswitch.ErrFlowsOff) {
		writeError(w, &Error{Status: http.StatusConflict, Message: "flow export is off (hvnet switch --flow-collector, the topology's flow_export, or PUT /v1/flow-export)"})
		return
	}
	out := Flows{Total: total, Sampling: s.sw.FlowStats().Sampling, Sort: sortName, Flows: make([]Flow, 0, len(recs))}
	for i := range recs {
		out.Flows = append(out.Flows, toAPIFlow(&recs[i]))
	}
	writeJSON(w, http.StatusOK, out)
}

func toAPIFlow(r *vswitch.FlowRecord) Flow {
	f := Flow{In: r.In, Out: r.Out, InIndex: r.InIndex, OutIndex: r.OutIndex, SrcMAC: r.SrcMAC.String(), DstMAC: r.DstMAC.String(),
		VLAN: r.VLAN, EtherType: fmt.Sprintf("0x%04x", r.EtherType), Packets: r.Packets, Bytes: r.Bytes,
		Start: time.Unix(0, r.Start).UTC().Format(time.RFC3339Nano), End: time.Unix(0, r.End).UTC().Format(time.RFC3339Nano)}
	if r.IPVersion != 0 {
		f.Protocol, f.SrcIP, f.DstIP, f.SrcPort, f.DstPort = r.Proto, r.SrcIP.String(), r.DstIP.String(), r.SrcPort, r.DstPort
		if r.Proto == 1 || r.Proto == 58 {
			t, c := uint8(r.ICMPTypeCode>>8), uint8(r.ICMPTypeCode)
			f.ICMPType, f.ICMPCode = &t, &c
		}
		if r.Proto == 6 {
			f.TCPFlags = TCPFlagString(r.TCPFlags)
		}
	}
	return f
}

// TCPFlagString writes TCP flags as tcpdump does: the letters of those
// set (C E U A P R S F), "." for none.
func TCPFlagString(fl uint16) string {
	var b strings.Builder
	for i, c := range "CEUAPRSF" {
		if fl&(0x80>>i) != 0 {
			b.WriteRune(c)
		}
	}
	if b.Len() == 0 {
		return "."
	}
	return b.String()
}

// flowCollector exposes flow export's counters (hvnet_flow_export_*).
type flowCollector struct {
	e                                    *ipfix.Exporter
	records, messages, errs, tmpl        *prometheus.Desc
	active, max, full, enabled, sampling *prometheus.Desc
}

func newFlowCollector(e *ipfix.Exporter) *flowCollector {
	col := []string{"collector"}
	return &flowCollector{e: e,
		records:  prometheus.NewDesc("hvnet_flow_export_records_total", "Flow records exported over IPFIX (each sent to every collector).", nil, nil),
		messages: prometheus.NewDesc("hvnet_flow_export_messages_total", "IPFIX messages sent to a collector.", col, nil),
		errs:     prometheus.NewDesc("hvnet_flow_export_send_errors_total", "IPFIX messages a collector's socket refused (unreachable, no route): lost, never waited for.", col, nil),
		tmpl:     prometheus.NewDesc("hvnet_flow_export_template_messages_total", "IPFIX messages carrying the templates (sent at start and every template_refresh).", nil, nil),
		active:   prometheus.NewDesc("hvnet_flow_export_flows_active", "Flows in the switch's flow cache: what hvnet_flow_export_max_flows bounds.", nil, nil),
		max:      prometheus.NewDesc("hvnet_flow_export_max_flows", "The bound on the flow cache (flow_export max_flows); 0 while export is off.", nil, nil),
		full:     prometheus.NewDesc("hvnet_flow_export_cache_full_total", "Frames of new flows not counted because the flow cache was full (forwarded all the same).", nil, nil),
		enabled:  prometheus.NewDesc("hvnet_flow_export_enabled", "1 while flow export (the flow cache) is on.", nil, nil),
		sampling: prometheus.NewDesc("hvnet_flow_export_sampling", "One frame in this many is counted in flows (flow_export sampling).", nil, nil),
	}
}

func (c *flowCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.records, c.messages, c.errs, c.tmpl, c.active, c.max, c.full, c.enabled, c.sampling} {
		ch <- d
	}
}

func (c *flowCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.e.Stats()
	m := func(d *prometheus.Desc, t prometheus.ValueType, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, t, v, l...)
	}
	en := 0.0
	if st.Flows.Enabled {
		en = 1
	}
	m(c.enabled, prometheus.GaugeValue, en)
	m(c.records, prometheus.CounterValue, float64(st.Records))
	m(c.tmpl, prometheus.CounterValue, float64(st.Templates))
	m(c.active, prometheus.GaugeValue, float64(st.Flows.Active))
	m(c.max, prometheus.GaugeValue, float64(st.Flows.MaxFlows))
	m(c.full, prometheus.CounterValue, float64(st.Flows.Full))
	m(c.sampling, prometheus.GaugeValue, float64(max(st.Flows.Sampling, 1)))
	for _, k := range st.Collectors {
		m(c.messages, prometheus.CounterValue, float64(k.Messages), k.Address)
		m(c.errs, prometheus.CounterValue, float64(k.SendErrors), k.Address)
	}
}
