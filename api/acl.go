package api

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	vswitch "hvnet/switch"
)

// ACLRule is one rule of a port's ingress ACL (vswitch.ACLRule). Absent
// fields match anything.
type ACLRule struct {
	Action    string `json:"action"`              // allow or deny
	EtherType string `json:"ethertype,omitempty"` // ipv4, ipv6, arp, or a number (0x0800)
	SrcMAC    string `json:"src_mac,omitempty"`
	DstMAC    string `json:"dst_mac,omitempty"`
	SrcIP     string `json:"src_ip,omitempty"`   // prefix (10.0.0.0/24, fd00::/64) or address
	DstIP     string `json:"dst_ip,omitempty"`   // prefix or address
	Protocol  string `json:"protocol,omitempty"` // tcp, udp, icmp, icmpv6, or 0..255
	SrcPorts  string `json:"src_ports,omitempty"`
	DstPorts  string `json:"dst_ports,omitempty"` // "443" or "1000-2000"; needs protocol tcp or udp
	// Hits counts the frames this rule decided since the ACL was set
	// (read-only: ignored by PUT).
	Hits uint64 `json:"hits"`
}

// ACL is a port's ingress ACL: rules checked in order, first match wins,
// and the action when none matches.
type ACL struct {
	Default string    `json:"default,omitempty"` // allow (when absent) or deny
	Rules   []ACLRule `json:"rules"`
	// DefaultHits counts the frames the default action decided (read-only).
	DefaultHits uint64 `json:"default_hits"`
}

func parseAction(field, s string) (vswitch.ACLAction, *Error) {
	switch s {
	case "allow":
		return vswitch.ACLAllow, nil
	case "deny":
		return vswitch.ACLDeny, nil
	}
	return 0, badField(field, "action %q: want allow or deny", s)
}

var etherTypeNames = map[string]uint16{"ipv4": 0x0800, "ipv6": 0x86dd, "arp": 0x0806}

// parseEtherType: a name or a number of at least 0x0600 (IEEE 802.3
// §3.2.6: smaller values are lengths).
func parseEtherType(field, s string) (uint16, *Error) {
	if v, ok := etherTypeNames[strings.ToLower(s)]; ok {
		return v, nil
	}
	v, err := strconv.ParseUint(s, 0, 16)
	if err != nil || v < 0x0600 {
		return 0, badField(field, "ethertype %q: want ipv4, ipv6, arp or a number 0x0600..0xffff", s)
	}
	return uint16(v), nil
}

var protoNames = map[string]uint8{"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58, "sctp": 132}

func parseProto(field, s string) (uint8, *Error) {
	if v, ok := protoNames[strings.ToLower(s)]; ok {
		return v, nil
	}
	v, err := strconv.ParseUint(s, 10, 8)
	if err != nil || v == 0 {
		return 0, badField(field, "protocol %q: want tcp, udp, icmp, icmpv6, sctp or 1..255", s)
	}
	return uint8(v), nil
}

func parsePorts(field, s string) (vswitch.PortRange, *Error) {
	a, b, isRange := strings.Cut(s, "-")
	from, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 16)
	to, err2 := from, error(nil)
	if isRange {
		to, err2 = strconv.ParseUint(strings.TrimSpace(b), 10, 16)
	}
	if err1 != nil || err2 != nil || from > to || to == 0 {
		return vswitch.PortRange{}, badField(field, "ports %q: want N or N-M within 0..65535, N <= M, not 0 alone", s)
	}
	return vswitch.PortRange{From: uint16(from), To: uint16(to)}, nil
}

// parsePrefix takes a prefix without host bits, or an address (a /32 or
// /128).
func parsePrefix(field, s string) (netip.Prefix, *Error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return p, badField(field, "prefix %q: %v", s, err)
		}
		if p != p.Masked() {
			return p, badField(field, "prefix %q has host bits set (did you mean %v?)", s, p.Masked())
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return p, badField(field, "address %q: want an IPv4/IPv6 address or prefix", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() || p.Addr().Zone() != "" {
		return p, badField(field, "%q: write IPv4 as IPv4, and no zone", s)
	}
	return p, nil
}

// fromACL checks a request's ACL and converts it; errors name the field.
func fromACL(a ACL) (vswitch.ACL, *Error) {
	var out vswitch.ACL
	if a.Default != "" {
		var e *Error
		if out.Default, e = parseAction("default", a.Default); e != nil {
			return out, e
		}
	}
	if len(a.Rules) > vswitch.MaxACLRules {
		return out, badField("rules", "%d rules, at most %d", len(a.Rules), vswitch.MaxACLRules)
	}
	out.Rules = make([]vswitch.ACLRule, len(a.Rules))
	for i, r := range a.Rules {
		f := func(name string) string { return fmt.Sprintf("rules[%d].%s", i, name) }
		o := &out.Rules[i]
		var e *Error
		if o.Action, e = parseAction(f("action"), r.Action); e != nil {
			return out, e
		}
		if r.EtherType != "" {
			if o.EtherType, e = parseEtherType(f("ethertype"), r.EtherType); e != nil {
				return out, e
			}
		}
		for _, m := range []struct {
			name string
			s    string
			to   *vswitch.MAC
		}{{"src_mac", r.SrcMAC, &o.SrcMAC}, {"dst_mac", r.DstMAC, &o.DstMAC}} {
			if m.s == "" {
				continue
			}
			if *m.to, e = parseMAC(f(m.name), m.s); e != nil {
				return out, e
			}
			if *m.to == (vswitch.MAC{}) {
				return out, badField(f(m.name), "the zero MAC matches nothing; leave the field out to match any")
			}
		}
		if r.SrcIP != "" {
			if o.SrcIP, e = parsePrefix(f("src_ip"), r.SrcIP); e != nil {
				return out, e
			}
		}
		if r.DstIP != "" {
			if o.DstIP, e = parsePrefix(f("dst_ip"), r.DstIP); e != nil {
				return out, e
			}
		}
		if o.SrcIP.IsValid() && o.DstIP.IsValid() && o.SrcIP.Addr().Is4() != o.DstIP.Addr().Is4() {
			return out, badField(f("dst_ip"), "%s and src_ip %s are of different families", r.DstIP, r.SrcIP)
		}
		for _, p := range []netip.Prefix{o.SrcIP, o.DstIP} {
			if p.IsValid() && o.EtherType != 0 {
				if want := map[bool]uint16{true: 0x0800, false: 0x86dd}[p.Addr().Is4()]; o.EtherType != want {
					return out, badField(f("ethertype"), "%s contradicts the prefix %v", r.EtherType, p)
				}
			}
		}
		if r.Protocol != "" {
			if o.Proto, e = parseProto(f("protocol"), r.Protocol); e != nil {
				return out, e
			}
		}
		for _, pr := range []struct {
			name string
			s    string
			to   *vswitch.PortRange
		}{{"src_ports", r.SrcPorts, &o.SrcPort}, {"dst_ports", r.DstPorts, &o.DstPort}} {
			if pr.s == "" {
				continue
			}
			if *pr.to, e = parsePorts(f(pr.name), pr.s); e != nil {
				return out, e
			}
			if o.Proto != 6 && o.Proto != 17 {
				return out, badField(f(pr.name), "ports need protocol tcp or udp")
			}
		}
	}
	return out, nil
}

func portsString(r vswitch.PortRange) string {
	switch {
	case r.From == 0 && r.To == 0:
		return ""
	case r.From == r.To:
		return strconv.Itoa(int(r.From))
	}
	return fmt.Sprintf("%d-%d", r.From, r.To)
}

func protoString(p uint8) string {
	for n, v := range protoNames {
		if v == p {
			return n
		}
	}
	return strconv.Itoa(int(p))
}

func prefixString(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}

func macString(m vswitch.MAC) string {
	if m == (vswitch.MAC{}) {
		return ""
	}
	return m.String()
}

func toAPIACL(a vswitch.ACL, hits vswitch.ACLHits) ACL {
	out := ACL{Default: a.Default.String(), Rules: make([]ACLRule, len(a.Rules)), DefaultHits: hits.Default}
	for i, r := range a.Rules {
		o := ACLRule{Action: r.Action.String(), SrcMAC: macString(r.SrcMAC), DstMAC: macString(r.DstMAC),
			SrcIP: prefixString(r.SrcIP), DstIP: prefixString(r.DstIP),
			SrcPorts: portsString(r.SrcPort), DstPorts: portsString(r.DstPort)}
		if r.EtherType != 0 {
			o.EtherType = fmt.Sprintf("0x%04x", r.EtherType)
		}
		if r.Proto != 0 {
			o.Protocol = protoString(r.Proto)
		}
		if i < len(hits.Rules) {
			o.Hits = hits.Rules[i]
		}
		out.Rules[i] = o
	}
	return out
}

// portACL returns h's ACL for port answers, nil when it has none.
func portACL(h *vswitch.PortHandle) *ACL {
	a, hits := h.ACL()
	if len(a.Rules) == 0 && a.Default == vswitch.ACLAllow {
		return nil
	}
	out := toAPIACL(a, hits)
	return &out
}

// getACL: GET /v1/ports/{name}/acl.
func (s *Server) getACL(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	a, hits, err := s.sw.ACL(name)
	if err != nil {
		writeError(w, switchError(err, "port"))
		return
	}
	writeJSON(w, http.StatusOK, toAPIACL(a, hits))
}

// putACL: PUT /v1/ports/{name}/acl replaces the port's ingress ACL live.
func (s *Server) putACL(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var in ACL
	if e := decode(r, &in); e != nil {
		writeError(w, e)
		return
	}
	if s.sw.Port(name) == nil {
		writeError(w, noPort(name))
		return
	}
	a, e := fromACL(in)
	if e != nil {
		writeError(w, e)
		return
	}
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	if err := s.sw.SetACL(name, a); err != nil {
		writeError(w, switchError(err, "port"))
		return
	}
	s.log.Info("acl set", "port", name, "rules", len(a.Rules), "default", a.Default.String())
	a2, hits, err := s.sw.ACL(name)
	if err != nil {
		writeError(w, switchError(err, "port"))
		return
	}
	writeJSON(w, http.StatusOK, toAPIACL(a2, hits))
}
