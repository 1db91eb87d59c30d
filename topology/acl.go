package topology

import (
	"errors"
	"fmt"

	"github.com/hvnet/hvnet/api"
	vswitch "github.com/hvnet/hvnet/switch"
)

// ACL is a port's access control list, as the control API writes it
// (api.ACL): ordered allow/deny rules, each checking frames entering the
// switch from the port (direction ingress, the default) or leaving it
// through the port (egress), and each direction's default action.
type ACL struct {
	Pos
	Default       string    `yaml:"default"`        // ingress: allow (default) or deny
	EgressDefault string    `yaml:"egress_default"` // egress: allow (default) or deny
	Rules         []ACLRule `yaml:"rules"`
}

// ACLRule is one rule (api.ACLRule); absent fields match anything.
type ACLRule struct {
	Pos
	Action    string `yaml:"action"`    // allow or deny
	Direction string `yaml:"direction"` // ingress (default) or egress
	EtherType string `yaml:"ethertype"` // ipv4, ipv6, arp or a number
	SrcMAC    string `yaml:"src_mac"`
	DstMAC    string `yaml:"dst_mac"`
	SrcIP     string `yaml:"src_ip"` // prefix or address
	DstIP     string `yaml:"dst_ip"`
	Protocol  string `yaml:"protocol"`  // tcp, udp, icmp, icmpv6, sctp or a number
	SrcPorts  string `yaml:"src_ports"` // N or N-M (tcp, udp)
	DstPorts  string `yaml:"dst_ports"`
}

func (a *ACL) apiACL() api.ACL {
	out := api.ACL{Default: a.Default, EgressDefault: a.EgressDefault, Rules: make([]api.ACLRule, len(a.Rules))}
	for i, r := range a.Rules {
		out.Rules[i] = api.ACLRule{Action: r.Action, Direction: r.Direction, EtherType: r.EtherType, SrcMAC: r.SrcMAC,
			DstMAC: r.DstMAC, SrcIP: r.SrcIP, DstIP: r.DstIP, Protocol: r.Protocol, SrcPorts: r.SrcPorts, DstPorts: r.DstPorts}
	}
	return out
}

// Lists returns the checked ACL's ingress and egress rule lists (a nil
// ACL allows all).
func (a *ACL) Lists() (in, eg vswitch.ACL) {
	if a == nil {
		return in, eg
	}
	in, eg, _ = api.FromACL(a.apiACL()) // checked by Load
	return in, eg
}

// acl checks a port's ACL with the API's rules; errors point at the rule's
// line and field.
func (c *checker) acl(f string, a *ACL) {
	if a == nil {
		return
	}
	in, eg, e := api.FromACL(a.apiACL())
	if e == nil {
		for _, x := range []vswitch.ACL{in, eg} {
			if err := vswitch.CheckACL(x); err != nil {
				e = &api.Error{Field: "rules", Message: err.Error()}
				break
			}
		}
	}
	if e == nil {
		return
	}
	line := a.Line
	var ae *api.Error
	if errors.As(e, &ae) && ae.Field != "" {
		var i int
		var key string
		if n, _ := fmt.Sscanf(ae.Field, "rules[%d].%s", &i, &key); n == 2 && i >= 0 && i < len(a.Rules) {
			line = a.Rules[i].LineOf(key)
		} else {
			line = a.LineOf(ae.Field)
		}
	}
	c.fail(line, f+".acl."+e.Field, "%s", e.Message)
}
