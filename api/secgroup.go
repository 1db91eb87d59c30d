package api

import (
	"fmt"
	"net/http"
	"strconv"

	vswitch "github.com/hvnet/hvnet/switch"
)

// Security groups (vswitch.SetSecurityGroup): a port's stateful rules, as
// the clouds have them. Their directions are seen from the port's guest,
// and named as the clouds name them: inbound (connections opened toward
// the guest) and outbound (connections it opens), deliberately not the
// ACLs' ingress and egress, which are relative to the switch.

// SGRule is one rule of a security group (vswitch.SGRule): it allows the
// new connections that match every field it has; absent fields match
// anything.
type SGRule struct {
	Protocol string `json:"protocol,omitempty"` // tcp, udp, icmp, icmpv6, sctp or 1..255
	// Ports is the destination port of the connection's first packet
	// ("22" or "1000-2000"): the guest's for inbound rules, the remote
	// end's for outbound ones. It needs protocol tcp or udp.
	Ports string `json:"ports,omitempty"`
	// Remote is the other end's prefix (10.0.0.0/8, 2001:db8::/32); an
	// address alone is a /32 or /128.
	Remote string `json:"remote,omitempty"`
	Family int    `json:"family,omitempty"` // 4 or 6; absent: both (or remote's)
}

// SecurityGroup is a port's security group: the rules allowing new
// connections in each direction, and each direction's action when no
// rule matches. Connections already tracked pass both ways whatever the
// rules say. Answers give both defaults.
type SecurityGroup struct {
	Inbound  []SGRule `json:"inbound"`  // connections toward the port's guest
	Outbound []SGRule `json:"outbound"` // connections the guest opens
	// InboundDefault: allow or deny (when absent, as in the clouds).
	InboundDefault string `json:"inbound_default,omitempty"`
	// OutboundDefault: allow (when absent, as in the clouds) or deny.
	OutboundDefault string `json:"outbound_default,omitempty"`
}

// SecurityGroupSummary is a port's security group in port answers: its
// size, its defaults and its tracked connections (the group itself:
// GET /v1/ports/{name}/security-group).
type SecurityGroupSummary struct {
	InboundRules     int    `json:"inbound_rules"`
	OutboundRules    int    `json:"outbound_rules"`
	InboundDefault   string `json:"inbound_default"`
	OutboundDefault  string `json:"outbound_default"`
	ConntrackEntries uint64 `json:"conntrack_entries"`
}

// Security group directions (SecurityGroup's lists).
const (
	SGInbound  = "inbound"
	SGOutbound = "outbound"
)

// FromSecurityGroup checks a request's security group and converts it;
// errors name the field (inbound[2].ports). Absent defaults are the
// clouds': inbound deny, outbound allow.
func FromSecurityGroup(g SecurityGroup) (vswitch.SecurityGroup, *Error) {
	out := vswitch.DefaultSecurityGroup()
	var e *Error
	if g.InboundDefault != "" {
		if out.InboundDefault, e = parseAction("inbound_default", g.InboundDefault); e != nil {
			return out, e
		}
	}
	if g.OutboundDefault != "" {
		if out.OutboundDefault, e = parseAction("outbound_default", g.OutboundDefault); e != nil {
			return out, e
		}
	}
	for _, d := range []struct {
		name string
		in   []SGRule
		out  *[]vswitch.SGRule
	}{{SGInbound, g.Inbound, &out.Inbound}, {SGOutbound, g.Outbound, &out.Outbound}} {
		if len(d.in) > vswitch.MaxSGRules {
			return out, badField(d.name, "%d rules, at most %d", len(d.in), vswitch.MaxSGRules)
		}
		*d.out = make([]vswitch.SGRule, 0, len(d.in))
		for i, r := range d.in {
			o, e := fromSGRule(fmt.Sprintf("%s[%d]", d.name, i), r)
			if e != nil {
				return out, e
			}
			*d.out = append(*d.out, o)
		}
	}
	return out, nil
}

// fromSGRule checks and converts one rule; at is its place (inbound[2]).
func fromSGRule(at string, r SGRule) (vswitch.SGRule, *Error) {
	var o vswitch.SGRule
	f := func(name string) string { return at + "." + name }
	var e *Error
	switch r.Family {
	case 0, 4, 6:
		o.Family = uint8(r.Family)
	default:
		return o, badField(f("family"), "%d: want 4 or 6 (absent: both)", r.Family)
	}
	if r.Protocol != "" {
		if o.Proto, e = parseProto(f("protocol"), r.Protocol); e != nil {
			return o, e
		}
	}
	if r.Ports != "" {
		if o.Ports, e = parsePorts(f("ports"), r.Ports); e != nil {
			return o, e
		}
		if o.Proto != 6 && o.Proto != 17 {
			return o, badField(f("ports"), "ports need protocol tcp or udp")
		}
	}
	if r.Remote != "" {
		if o.Remote, e = parsePrefix(f("remote"), r.Remote); e != nil {
			return o, e
		}
		fam := 6
		if o.Remote.Addr().Is4() {
			fam = 4
		}
		if r.Family != 0 && r.Family != fam {
			return o, badField(f("remote"), "%s is not IPv%d (family %d)", r.Remote, r.Family, r.Family)
		}
	}
	// ICMP is IPv4's and ICMPv6 IPv6's (RFC 792, RFC 4443): a rule that
	// pairs one with the other family matches nothing.
	fam := r.Family
	if o.Remote.IsValid() {
		fam = map[bool]int{true: 4, false: 6}[o.Remote.Addr().Is4()]
	}
	if o.Proto == 1 && fam == 6 || o.Proto == 58 && fam == 4 {
		return o, badField(f("protocol"), "%s never travels over IPv%d (icmp is IPv4's, icmpv6 IPv6's)", r.Protocol, fam)
	}
	return o, nil
}

// toAPISG is a group as answers give it: defaults spelled out, rules in
// their normal form (protocol names, prefixes with their length).
func toAPISG(g vswitch.SecurityGroup) SecurityGroup {
	out := SecurityGroup{Inbound: toAPISGRules(g.Inbound), Outbound: toAPISGRules(g.Outbound),
		InboundDefault: g.InboundDefault.String(), OutboundDefault: g.OutboundDefault.String()}
	return out
}

func toAPISGRules(rs []vswitch.SGRule) []SGRule {
	out := make([]SGRule, 0, len(rs))
	for _, r := range rs {
		o := SGRule{Ports: portsString(r.Ports), Remote: prefixString(r.Remote), Family: int(r.Family)}
		if r.Proto != 0 {
			o.Protocol = protoString(r.Proto)
		}
		out = append(out, o)
	}
	return out
}

// portSG returns h's security group summary for port answers, nil when it
// has none.
func portSG(h *vswitch.PortHandle) *SecurityGroupSummary {
	g, ok := h.SecurityGroup()
	if !ok {
		return nil
	}
	out := &SecurityGroupSummary{InboundRules: len(g.Inbound), OutboundRules: len(g.Outbound),
		InboundDefault: g.InboundDefault.String(), OutboundDefault: g.OutboundDefault.String()}
	if z := h.Conntrack(); z != nil {
		out.ConntrackEntries = uint64(z.Len())
	}
	return out
}

func noGroup(name string) *Error {
	return &Error{Status: http.StatusNotFound, Message: fmt.Sprintf("port %q has no security group", name)}
}

// getSG: GET /v1/ports/{name}/security-group.
func (s *Server) getSG(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	h := s.sw.Port(name)
	if h == nil {
		writeError(w, noPort(name))
		return
	}
	g, ok := h.SecurityGroup()
	if !ok {
		writeError(w, noGroup(name))
		return
	}
	writeJSON(w, http.StatusOK, toAPISG(g))
}

// putSG: PUT /v1/ports/{name}/security-group[?flush=true] gives the port
// a security group or replaces its rules, live. Tracked connections stay
// (they pass whatever the new rules say) unless flush is set.
func (s *Server) putSG(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	flush := false
	if v := r.URL.Query().Get("flush"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, badField("flush", "%q: want true or false", v))
			return
		}
		flush = b
	}
	var in SecurityGroup
	if e := decode(r, &in); e != nil {
		writeError(w, e)
		return
	}
	if s.sw.Port(name) == nil {
		writeError(w, noPort(name))
		return
	}
	g, e := FromSecurityGroup(in)
	if e != nil {
		writeError(w, e)
		return
	}
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	if err := s.sw.SetSecurityGroup(name, &g, flush); err != nil {
		writeError(w, switchError(err, "port"))
		return
	}
	s.log.Info("security group set", "port", name, "inbound", len(g.Inbound), "outbound", len(g.Outbound),
		"inbound_default", g.InboundDefault.String(), "outbound_default", g.OutboundDefault.String(), "flush", flush)
	writeJSON(w, http.StatusOK, toAPISG(g))
}

// deleteSG: DELETE /v1/ports/{name}/security-group removes the port's
// group and its tracked connections: everything passes again (as far as
// the ACLs let it).
func (s *Server) deleteSG(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	h := s.sw.Port(name)
	if h == nil {
		writeError(w, noPort(name))
		return
	}
	if _, ok := h.SecurityGroup(); !ok {
		writeError(w, noGroup(name))
		return
	}
	if err := s.sw.SetSecurityGroup(name, nil, false); err != nil {
		writeError(w, switchError(err, "port"))
		return
	}
	s.log.Info("security group removed", "port", name)
	w.WriteHeader(http.StatusNoContent)
}
