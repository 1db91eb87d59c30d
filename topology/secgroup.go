package topology

import (
	"errors"
	"fmt"
	"time"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/conntrack"
	vswitch "github.com/hvnet/hvnet/switch"
)

// SecurityGroup is a port's stateful security group, as the control API
// writes it (api.SecurityGroup): the rules allowing new connections
// toward the port's guest (inbound) and from it (outbound), and each
// direction's default (inbound deny, outbound allow when absent).
type SecurityGroup struct {
	Pos
	Inbound         []SGRule `yaml:"inbound"`
	Outbound        []SGRule `yaml:"outbound"`
	InboundDefault  string   `yaml:"inbound_default"`  // allow or deny (default)
	OutboundDefault string   `yaml:"outbound_default"` // allow (default) or deny
}

// SGRule is one rule (api.SGRule); absent fields match anything.
type SGRule struct {
	Pos
	Protocol string `yaml:"protocol"` // tcp, udp, icmp, icmpv6, sctp or a number
	Ports    string `yaml:"ports"`    // N or N-M (tcp, udp): the connection's destination port
	Remote   string `yaml:"remote"`   // the other end's prefix, or an address
	Family   int    `yaml:"family"`   // 4 or 6
}

func (g *SecurityGroup) apiSG() api.SecurityGroup {
	out := api.SecurityGroup{InboundDefault: g.InboundDefault, OutboundDefault: g.OutboundDefault}
	conv := func(rs []SGRule) []api.SGRule {
		o := make([]api.SGRule, len(rs))
		for i, r := range rs {
			o[i] = api.SGRule{Protocol: r.Protocol, Ports: r.Ports, Remote: r.Remote, Family: r.Family}
		}
		return o
	}
	out.Inbound, out.Outbound = conv(g.Inbound), conv(g.Outbound)
	return out
}

// Group returns the checked group as the switch takes it, nil for none.
func (g *SecurityGroup) Group() *vswitch.SecurityGroup {
	if g == nil {
		return nil
	}
	sg, _ := api.FromSecurityGroup(g.apiSG()) // checked by Load
	return &sg
}

// securityGroup checks a port's group with the API's rules; errors point
// at the rule's line and field.
func (c *checker) securityGroup(f string, g *SecurityGroup) {
	if g == nil {
		return
	}
	_, e := api.FromSecurityGroup(g.apiSG())
	if e == nil {
		return
	}
	line := g.Line
	var ae *api.Error
	if errors.As(e, &ae) && ae.Field != "" {
		line = g.LineOf(ae.Field) // inbound_default, or a whole list
		for _, d := range []struct {
			name  string
			rules []SGRule
		}{{api.SGInbound, g.Inbound}, {api.SGOutbound, g.Outbound}} {
			var i int
			var key string
			if n, _ := fmt.Sscanf(ae.Field, d.name+"[%d].%s", &i, &key); n == 2 && i >= 0 && i < len(d.rules) {
				line = d.rules[i].LineOf(key)
			}
		}
	}
	c.fail(line, f+".security_group."+e.Field, "%s", e.Message)
}

// Conntrack is the security groups' connection tracking: the switch's
// and each port's entry limits, and the timeouts per state (absent or 0:
// package conntrack's defaults, Linux's).
type Conntrack struct {
	Pos
	MaxEntries        int                `yaml:"max_entries"`          // over all ports (default 1048576)
	MaxEntriesPerPort int                `yaml:"max_entries_per_port"` // each port's (default 65536)
	Timeouts          *ConntrackTimeouts `yaml:"timeouts"`
}

// ConntrackTimeouts are how long an idle connection lives, per state.
type ConntrackTimeouts struct {
	Pos
	TCPSynSent     time.Duration `yaml:"tcp_syn_sent"`
	TCPSynRecv     time.Duration `yaml:"tcp_syn_recv"`
	TCPEstablished time.Duration `yaml:"tcp_established"`
	TCPFinWait     time.Duration `yaml:"tcp_fin_wait"`
	TCPCloseWait   time.Duration `yaml:"tcp_close_wait"`
	TCPLastAck     time.Duration `yaml:"tcp_last_ack"`
	TCPTimeWait    time.Duration `yaml:"tcp_time_wait"`
	TCPClose       time.Duration `yaml:"tcp_close"`
	UDP            time.Duration `yaml:"udp"`
	UDPStream      time.Duration `yaml:"udp_stream"`
	ICMP           time.Duration `yaml:"icmp"`
	Other          time.Duration `yaml:"other"`
}

// Config returns the switch's connection-tracking configuration
// (vswitch.Config.Conntrack; a nil section: the defaults).
func (c *Conntrack) Config() conntrack.Config {
	if c == nil {
		return conntrack.Config{}
	}
	out := conntrack.Config{TableLimit: c.MaxEntries, ZoneLimit: c.MaxEntriesPerPort}
	if t := c.Timeouts; t != nil {
		out.Timeouts = conntrack.Timeouts{TCPSynSent: t.TCPSynSent, TCPSynRecv: t.TCPSynRecv, TCPEstablished: t.TCPEstablished,
			TCPFinWait: t.TCPFinWait, TCPCloseWait: t.TCPCloseWait, TCPLastAck: t.TCPLastAck, TCPTimeWait: t.TCPTimeWait,
			TCPClose: t.TCPClose, UDP: t.UDP, UDPStream: t.UDPStream, ICMP: t.ICMP, Other: t.Other}
	}
	return out
}

// conntrack checks the conntrack section.
func (c *checker) conntrack(ct *Conntrack) {
	if ct == nil {
		return
	}
	keys := [2]string{"max_entries", "max_entries_per_port"}
	if i, err := api.ConntrackLimitsError(ct.MaxEntries, ct.MaxEntriesPerPort, keys); err != nil {
		c.fail(ct.LineOf(keys[i]), "conntrack."+keys[i], "%v", err)
	}
	t := ct.Timeouts
	if t == nil {
		return
	}
	for _, x := range []struct {
		key string
		d   time.Duration
	}{{"tcp_syn_sent", t.TCPSynSent}, {"tcp_syn_recv", t.TCPSynRecv}, {"tcp_established", t.TCPEstablished},
		{"tcp_fin_wait", t.TCPFinWait}, {"tcp_close_wait", t.TCPCloseWait}, {"tcp_last_ack", t.TCPLastAck},
		{"tcp_time_wait", t.TCPTimeWait}, {"tcp_close", t.TCPClose}, {"udp", t.UDP}, {"udp_stream", t.UDPStream},
		{"icmp", t.ICMP}, {"other", t.Other}} {
		switch {
		case x.d < 0:
			c.fail(t.LineOf(x.key), "conntrack.timeouts."+x.key, "negative timeout %v (0 or absent: the default)", x.d)
		case x.d > api.MaxConntrackTimeout:
			c.fail(t.LineOf(x.key), "conntrack.timeouts."+x.key, "%v above %v", x.d, api.MaxConntrackTimeout)
		}
	}
}
