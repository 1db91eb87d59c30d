package api

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	vswitch "github.com/hvnet/hvnet/switch"
)

// TraceRequest describes a frame to trace (POST /v1/trace): what the
// switch would do with it arriving on InPort now. Nothing is learned or
// counted.
type TraceRequest struct {
	InPort      string `json:"in_port"`
	SrcMAC      string `json:"src_mac"`
	DstMAC      string `json:"dst_mac"`
	VLAN        int    `json:"vlan,omitempty"` // 0: untagged
	PCP         int    `json:"pcp,omitempty"`
	PriorityTag bool   `json:"priority_tag,omitempty"` // tag with VID 0
	TPID        string `json:"tpid,omitempty"`         // 0x8100 (default) or 0x88a8
	EtherType   string `json:"ethertype,omitempty"`    // default ipv4 (ipv6 with IPv6 addresses)
	SrcIP       string `json:"src_ip,omitempty"`
	DstIP       string `json:"dst_ip,omitempty"`
	Protocol    string `json:"protocol,omitempty"`
	SrcPort     int    `json:"src_port,omitempty"`
	DstPort     int    `json:"dst_port,omitempty"`
	// TCPFlags of a TCP frame: names joined by commas (fin, syn, rst,
	// psh, ack, urg), e.g. "syn,ack"; empty: syn, a connection's first
	// segment (what a security group decides on).
	TCPFlags string `json:"tcp_flags,omitempty"`
	Size     int    `json:"size,omitempty"` // frame bytes without FCS; 0: minimum
}

// TraceStep is one decision of a trace.
type TraceStep struct {
	Stage   string `json:"stage"`
	Verdict string `json:"verdict"`
	Detail  string `json:"detail"`
}

// TraceOutput is a port the frame would leave by.
type TraceOutput struct {
	Port   string `json:"port"`
	VLAN   int    `json:"vlan"`
	Tagged bool   `json:"tagged"`
	TPID   string `json:"tpid,omitempty"`
	PCP    int    `json:"pcp"`
	Shaped bool   `json:"shaped,omitempty"`
}

// TraceResult answers POST /v1/trace. Drop names the drop reason when the
// frame would be dropped.
type TraceResult struct {
	InPort  string        `json:"in_port"`
	VLAN    int           `json:"vlan"`
	Steps   []TraceStep   `json:"steps"`
	Outputs []TraceOutput `json:"outputs"`
	Drop    string        `json:"drop,omitempty"`
	Flooded bool          `json:"flooded"`
	// EgressDenied lists the destinations whose egress ACL or security
	// group would drop the frame, with the drop reason counted there.
	EgressDenied []TraceDenied `json:"egress_denied,omitempty"`
}

// TraceDenied is a destination that would drop the frame on its way out.
// Reason is the drop reason counted there: "acl" (its egress ACL; Rule is
// the index among its egress rules, or "default"), or its security
// group's "security_group", "ct_invalid" or "ct_full".
type TraceDenied struct {
	Port   string `json:"port"`
	Reason string `json:"reason"`
	Rule   string `json:"rule,omitempty"`
}

// tcpFlagBits are TraceRequest.TCPFlags' names.
var tcpFlagBits = map[string]uint8{"fin": 0x01, "syn": 0x02, "rst": 0x04, "psh": 0x08, "ack": 0x10, "urg": 0x20}

func parseTCPFlags(s string) (uint8, *Error) {
	var f uint8
	for _, n := range strings.Split(s, ",") {
		b, ok := tcpFlagBits[strings.ToLower(strings.TrimSpace(n))]
		if !ok {
			return 0, badField("tcp_flags", "%q: want names among fin, syn, rst, psh, ack, urg joined by commas", n)
		}
		f |= b
	}
	return f, nil
}

func fromTrace(q TraceRequest) (vswitch.TraceFrame, *Error) {
	var f vswitch.TraceFrame
	var e *Error
	if q.InPort == "" {
		return f, badField("in_port", "missing")
	}
	if f.SrcMAC, e = parseMAC("src_mac", q.SrcMAC); e != nil {
		return f, e
	}
	if f.DstMAC, e = parseMAC("dst_mac", q.DstMAC); e != nil {
		return f, e
	}
	if q.VLAN < 0 || q.VLAN > 4095 {
		return f, badField("vlan", "VLAN %d outside 0..4095", q.VLAN)
	}
	if q.PCP < 0 || q.PCP > 7 {
		return f, badField("pcp", "PCP %d outside 0..7", q.PCP)
	}
	f.VLAN, f.PCP, f.PriorityTag = uint16(q.VLAN), uint8(q.PCP), q.PriorityTag
	if q.TPID != "" {
		v, err := strconv.ParseUint(q.TPID, 0, 16)
		if err != nil || (v != 0x8100 && v != 0x88a8) {
			return f, badField("tpid", "TPID %q: want 0x8100 or 0x88a8", q.TPID)
		}
		f.TPID = uint16(v)
	}
	if q.EtherType != "" {
		if f.EtherType, e = parseEtherType("ethertype", q.EtherType); e != nil {
			return f, e
		}
	}
	for _, a := range []struct {
		name, s string
		to      *netip.Addr
	}{{"src_ip", q.SrcIP, &f.SrcIP}, {"dst_ip", q.DstIP, &f.DstIP}} {
		if a.s == "" {
			continue
		}
		v, err := netip.ParseAddr(a.s)
		if err != nil || v.Zone() != "" {
			return f, badField(a.name, "address %q: want IPv4 or IPv6, no zone", a.s)
		}
		*a.to = v.Unmap()
	}
	if f.SrcIP.IsValid() != f.DstIP.IsValid() {
		return f, badField("dst_ip", "give both src_ip and dst_ip, or neither")
	}
	if f.SrcIP.IsValid() && f.SrcIP.Is4() != f.DstIP.Is4() {
		return f, badField("dst_ip", "src_ip and dst_ip are of different families")
	}
	if q.Protocol != "" {
		if f.Proto, e = parseProto("protocol", q.Protocol); e != nil {
			return f, e
		}
	}
	for _, p := range []struct {
		name string
		v    int
		to   *uint16
	}{{"src_port", q.SrcPort, &f.SrcPort}, {"dst_port", q.DstPort, &f.DstPort}} {
		if p.v < 0 || p.v > 65535 {
			return f, badField(p.name, "port %d outside 0..65535", p.v)
		}
		if p.v != 0 && f.Proto != 6 && f.Proto != 17 {
			return f, badField(p.name, "ports need protocol tcp or udp")
		}
		*p.to = uint16(p.v)
	}
	if q.TCPFlags != "" {
		if f.Proto != 6 {
			return f, badField("tcp_flags", "TCP flags need protocol tcp")
		}
		if f.TCPFlags, e = parseTCPFlags(q.TCPFlags); e != nil {
			return f, e
		}
	}
	if q.Size < 0 || q.Size > MaxMTU+18 {
		return f, badField("size", "size %d outside 0..%d", q.Size, MaxMTU+18)
	}
	f.Size = q.Size
	return f, nil
}

func toAPITrace(r vswitch.TraceResult) TraceResult {
	out := TraceResult{InPort: r.InPort, VLAN: int(r.VLAN), Drop: r.Drop, Flooded: r.Flooded,
		Steps: make([]TraceStep, len(r.Steps)), Outputs: make([]TraceOutput, len(r.Outputs))}
	for i, s := range r.Steps {
		out.Steps[i] = TraceStep{Stage: s.Stage, Verdict: s.Verdict, Detail: s.Detail}
	}
	for i, o := range r.Outputs {
		t := TraceOutput{Port: o.Port, VLAN: int(o.VLAN), Tagged: o.Tagged, PCP: int(o.PCP), Shaped: o.Shaped}
		if o.Tagged {
			t.TPID = fmt.Sprintf("0x%04x", o.TPID)
		}
		out.Outputs[i] = t
	}
	for _, d := range r.Denied {
		t := TraceDenied{Port: d.Port, Reason: d.Reason}
		if d.Reason == vswitch.DropACL.String() {
			t.Rule = "default"
			if d.Rule >= 0 {
				t.Rule = strconv.Itoa(d.Rule)
			}
		}
		out.EgressDenied = append(out.EgressDenied, t)
	}
	return out
}

// trace: POST /v1/trace.
func (s *Server) trace(w http.ResponseWriter, r *http.Request) {
	var q TraceRequest
	if e := decode(r, &q); e != nil {
		writeError(w, e)
		return
	}
	f, e := fromTrace(q)
	if e != nil {
		writeError(w, e)
		return
	}
	if s.sw.Port(q.InPort) == nil {
		writeError(w, &Error{Status: http.StatusNotFound, Field: "in_port", Message: fmt.Sprintf("no port %q", q.InPort)})
		return
	}
	res, err := s.sw.Trace(q.InPort, f)
	if err != nil {
		writeError(w, switchError(err, "in_port"))
		return
	}
	writeJSON(w, http.StatusOK, toAPITrace(res))
}
