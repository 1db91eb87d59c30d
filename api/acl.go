package api

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	vswitch "github.com/hvnet/hvnet/switch"
)

// ACLRule is one rule of a port's ACL (vswitch.ACLRule). Absent fields
// match anything.
type ACLRule struct {
	Action string `json:"action"` // allow or deny
	// Direction: ingress (absent) rules check frames the port sends into
	// the switch, egress rules frames the switch sends out of the port.
	Direction string `json:"direction,omitempty"`
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

// ACL is a port's ACL, like a cloud security group: rules of two
// directions, each direction's checked in order (first match wins), and
// each direction's action when none matches. Answers list the ingress
// rules, then the egress ones.
type ACL struct {
	Default string    `json:"default,omitempty"` // ingress: allow (when absent) or deny
	Rules   []ACLRule `json:"rules"`
	// DefaultHits counts the frames the default action decided (read-only).
	DefaultHits uint64 `json:"default_hits"`
	// EgressDefault is the egress rules' default: allow (when absent) or deny.
	EgressDefault     string `json:"egress_default,omitempty"`
	EgressDefaultHits uint64 `json:"egress_default_hits,omitempty"` // read-only
}

// ACL directions (ACLRule.Direction).
const (
	ACLIngress = "ingress"
	ACLEgress  = "egress"
)

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
			return p, badField(field, "prefix %q: want an address and prefix length (10.0.0.0/8, 2001:db8::/32)", s)
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

// FromACL checks a request's ACL and converts it into the ingress and
// the egress rule lists; errors name the field.
func FromACL(a ACL) (in, eg vswitch.ACL, _ *Error) {
	var e *Error
	if a.Default != "" {
		if in.Default, e = parseAction("default", a.Default); e != nil {
			return in, eg, e
		}
	}
	if a.EgressDefault != "" {
		if eg.Default, e = parseAction("egress_default", a.EgressDefault); e != nil {
			return in, eg, e
		}
	}
	if len(a.Rules) > vswitch.MaxACLRules {
		return in, eg, badField("rules", "%d rules, at most %d", len(a.Rules), vswitch.MaxACLRules)
	}
	in.Rules, eg.Rules = []vswitch.ACLRule{}, []vswitch.ACLRule{}
	for i, r := range a.Rules {
		o, e := fromRule(i, r)
		if e != nil {
			return in, eg, e
		}
		switch r.Direction {
		case "", ACLIngress:
			in.Rules = append(in.Rules, o)
		case ACLEgress:
			eg.Rules = append(eg.Rules, o)
		default:
			return in, eg, badField(fmt.Sprintf("rules[%d].direction", i), "%q: want ingress or egress", r.Direction)
		}
	}
	return in, eg, nil
}

// fromRule checks and converts rule i of a request.
func fromRule(i int, r ACLRule) (vswitch.ACLRule, *Error) {
	var out vswitch.ACLRule
	f := func(name string) string { return fmt.Sprintf("rules[%d].%s", i, name) }
	o := &out
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

// aclSet is one direction's rules and hit counters.
type aclSet struct {
	acl  vswitch.ACL
	hits vswitch.ACLHits
}

func (a aclSet) empty() bool { return len(a.acl.Rules) == 0 && a.acl.Default == vswitch.ACLAllow }

// portACLs returns a port's ingress and egress ACLs.
func portACLs(h *vswitch.PortHandle) (in, eg aclSet) {
	in.acl, in.hits = h.ACL()
	eg.acl, eg.hits = h.EgressACL()
	return in, eg
}

func toAPIACL(in, eg aclSet) ACL {
	out := ACL{Default: in.acl.Default.String(), Rules: make([]ACLRule, 0, len(in.acl.Rules)+len(eg.acl.Rules)),
		DefaultHits: in.hits.Default}
	out.Rules = appendRules(out.Rules, in, "")
	if !eg.empty() {
		out.EgressDefault, out.EgressDefaultHits = eg.acl.Default.String(), eg.hits.Default
		out.Rules = appendRules(out.Rules, eg, ACLEgress)
	}
	return out
}

func appendRules(out []ACLRule, s aclSet, dir string) []ACLRule {
	for i, r := range s.acl.Rules {
		o := ACLRule{Action: r.Action.String(), Direction: dir, SrcMAC: macString(r.SrcMAC), DstMAC: macString(r.DstMAC),
			SrcIP: prefixString(r.SrcIP), DstIP: prefixString(r.DstIP),
			SrcPorts: portsString(r.SrcPort), DstPorts: portsString(r.DstPort)}
		if r.EtherType != 0 {
			o.EtherType = fmt.Sprintf("0x%04x", r.EtherType)
		}
		if r.Proto != 0 {
			o.Protocol = protoString(r.Proto)
		}
		if i < len(s.hits.Rules) {
			o.Hits = s.hits.Rules[i]
		}
		out = append(out, o)
	}
	return out
}

// portACL returns h's ACL for port answers, nil when it has none.
func portACL(h *vswitch.PortHandle) *ACL {
	in, eg := portACLs(h)
	if in.empty() && eg.empty() {
		return nil
	}
	out := toAPIACL(in, eg)
	return &out
}

// getACL: GET /v1/ports/{name}/acl.
func (s *Server) getACL(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	h := s.sw.Port(name)
	if h == nil {
		writeError(w, noPort(name))
		return
	}
	writeJSON(w, http.StatusOK, toAPIACL(portACLs(h)))
}

// putACL: PUT /v1/ports/{name}/acl replaces the port's ACLs (both
// directions) live.
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
	a, eg, e := FromACL(in)
	if e != nil {
		writeError(w, e)
		return
	}
	for _, x := range []vswitch.ACL{a, eg} { // both compile, or nothing changes
		if err := vswitch.CheckACL(x); err != nil {
			writeError(w, switchError(err, "rules"))
			return
		}
	}
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	if err := s.sw.SetACL(name, a); err != nil {
		writeError(w, switchError(err, "port"))
		return
	}
	if err := s.sw.SetEgressACL(name, eg); err != nil {
		writeError(w, switchError(err, "port"))
		return
	}
	s.log.Info("acl set", "port", name, "rules", len(a.Rules), "default", a.Default.String(),
		"egress_rules", len(eg.Rules), "egress_default", eg.Default.String())
	h := s.sw.Port(name)
	if h == nil {
		writeError(w, noPort(name))
		return
	}
	writeJSON(w, http.StatusOK, toAPIACL(portACLs(h)))
}
