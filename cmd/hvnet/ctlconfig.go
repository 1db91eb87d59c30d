package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"go.yaml.in/yaml/v3"

	"github.com/hvnet/hvnet/api"
	vswitch "github.com/hvnet/hvnet/switch"
)

// "hvnet ctl config": the running configuration as a topology file that
// "hvnet up" accepts: the switch-wide settings, and every port the daemon
// made (vhost-user, uplinks, lab guests and any other kind) with its
// switch settings, rates, ACLs and security groups as they are now, and
// the connection tracking's limits and timeouts.

// The topology file's shapes (package topology), with empty fields left
// out.
type (
	cfgFile struct {
		Switch     cfgSwitch      `yaml:"switch"`
		Conntrack  *cfgConntrack  `yaml:"conntrack,omitempty"`
		FlowExport *cfgFlowExport `yaml:"flow_export,omitempty"`
		Ports      []cfgPort      `yaml:"ports,omitempty"`
		Uplink     *cfgUplink     `yaml:"uplink,omitempty"`
	}
	cfgFlowExport struct { // api.FlowExport: the API's keys are the file's
		Collectors             []string `yaml:"collectors,omitempty,flow"`
		ActiveTimeout          string   `yaml:"active_timeout"`
		IdleTimeout            string   `yaml:"idle_timeout"`
		Sampling               int      `yaml:"sampling"`
		MaxFlows               int      `yaml:"max_flows"`
		MaxFlowsPerPort        int      `yaml:"max_flows_per_port,omitempty"`
		TemplateRefresh        string   `yaml:"template_refresh"`
		TemplateRefreshPackets int      `yaml:"template_refresh_packets,omitempty"`
		ObservationDomain      uint32   `yaml:"observation_domain"`
	}
	cfgConntrack struct {
		MaxEntries        int         `yaml:"max_entries,omitempty"`
		MaxEntriesPerPort int         `yaml:"max_entries_per_port,omitempty"`
		Timeouts          cfgTimeouts `yaml:"timeouts"`
	}
	cfgTimeouts struct { // api.ConntrackTimeouts: the API's keys are the file's
		TCPSynSent     string `yaml:"tcp_syn_sent,omitempty"`
		TCPSynRecv     string `yaml:"tcp_syn_recv,omitempty"`
		TCPEstablished string `yaml:"tcp_established,omitempty"`
		TCPFinWait     string `yaml:"tcp_fin_wait,omitempty"`
		TCPCloseWait   string `yaml:"tcp_close_wait,omitempty"`
		TCPLastAck     string `yaml:"tcp_last_ack,omitempty"`
		TCPTimeWait    string `yaml:"tcp_time_wait,omitempty"`
		TCPClose       string `yaml:"tcp_close,omitempty"`
		UDP            string `yaml:"udp,omitempty"`
		UDPStream      string `yaml:"udp_stream,omitempty"`
		ICMP           string `yaml:"icmp,omitempty"`
		Other          string `yaml:"other,omitempty"`
	}
	cfgSwitch struct {
		API             string `yaml:"api"`
		MetricsAddr     string `yaml:"metrics_addr,omitempty"`
		DashboardAddr   string `yaml:"dashboard_addr,omitempty"`
		Aging           string `yaml:"aging,omitempty"`
		FDBMaxEntries   int    `yaml:"fdb_max_entries,omitempty"`
		MACLimit        int    `yaml:"mac_limit,omitempty"`
		MACMoveHoldDown string `yaml:"mac_move_hold_down,omitempty"`
	}
	cfgPort struct {
		Name        string         `yaml:"name"`
		Kind        string         `yaml:"kind,omitempty"`
		Options     map[string]any `yaml:"options,omitempty"`
		Socket      string         `yaml:"socket,omitempty"`
		SocketMode  string         `yaml:"mode,omitempty"`
		Queues      int            `yaml:"queues,omitempty"`
		MAC         string         `yaml:"mac,omitempty"`
		cfgSettings `yaml:",inline"`
	}
	cfgUplink struct {
		Name        string `yaml:"name"`
		Interface   string `yaml:"if"`
		TXMode      string `yaml:"tx,omitempty"`
		cfgSettings `yaml:",inline"`
	}
	cfgSettings struct {
		Mode         string    `yaml:"vlan_mode,omitempty"` // dot1q-tunnel (access and trunk follow from vlan and trunk)
		PVID         int       `yaml:"vlan,omitempty"`
		AllowedVLANs []int     `yaml:"trunk,omitempty,flow"`
		NativeVLAN   int       `yaml:"native,omitempty"`
		PCP          int       `yaml:"pcp,omitempty"`
		MTU          int       `yaml:"mtu,omitempty"`
		Ingress      *cfgLimit `yaml:"ingress,omitempty"`
		Egress       *cfgLimit `yaml:"egress,omitempty"`
		Storm        *cfgStorm `yaml:"storm,omitempty"`
		MACLimit     int       `yaml:"mac_limit,omitempty"`
		AllowedMACs  []string  `yaml:"allowed_macs,omitempty,flow"`
		PortSecurity *bool     `yaml:"port_security,omitempty"`
		Reservation  int64     `yaml:"reservation,omitempty"` // bits per second
		Shares       int       `yaml:"shares,omitempty"`
		Limit        int64     `yaml:"limit,omitempty"` // bits per second
		PCPClass     string    `yaml:"pcp_class,omitempty"`
		DSCPClass    []string  `yaml:"dscp_class,omitempty,flow"`
		ACL          *cfgACL   `yaml:"acl,omitempty"`
		SG           *cfgSG    `yaml:"security_group,omitempty"`
	}
	cfgSG struct {
		Inbound         []cfgSGRule `yaml:"inbound,omitempty"`
		Outbound        []cfgSGRule `yaml:"outbound,omitempty"`
		InboundDefault  string      `yaml:"inbound_default"`
		OutboundDefault string      `yaml:"outbound_default"`
	}
	cfgSGRule struct {
		Protocol string `yaml:"protocol,omitempty"`
		Ports    string `yaml:"ports,omitempty"`
		Remote   string `yaml:"remote,omitempty"`
		Family   int    `yaml:"family,omitempty"`
	}
	cfgLimit struct {
		RateBPS             int64 `yaml:"rate_bps,omitempty"`
		BurstBytes          int64 `yaml:"burst_bytes,omitempty"`
		OneTimeBurstBytes   int64 `yaml:"one_time_burst_bytes,omitempty"`
		RatePPS             int64 `yaml:"rate_pps,omitempty"`
		BurstPackets        int64 `yaml:"burst_packets,omitempty"`
		OneTimeBurstPackets int64 `yaml:"one_time_burst_packets,omitempty"`
	}
	cfgStorm struct {
		Broadcast      *cfgLimit `yaml:"broadcast,omitempty"`
		Multicast      *cfgLimit `yaml:"multicast,omitempty"`
		UnknownUnicast *cfgLimit `yaml:"unknown_unicast,omitempty"`
	}
	cfgACL struct {
		Default       string       `yaml:"default,omitempty"`
		EgressDefault string       `yaml:"egress_default,omitempty"`
		Rules         []cfgACLRule `yaml:"rules,omitempty"`
	}
	cfgACLRule struct {
		Action    string `yaml:"action"`
		Direction string `yaml:"direction,omitempty"`
		EtherType string `yaml:"ethertype,omitempty"`
		SrcMAC    string `yaml:"src_mac,omitempty"`
		DstMAC    string `yaml:"dst_mac,omitempty"`
		SrcIP     string `yaml:"src_ip,omitempty"`
		DstIP     string `yaml:"dst_ip,omitempty"`
		Protocol  string `yaml:"protocol,omitempty"`
		SrcPorts  string `yaml:"src_ports,omitempty"`
		DstPorts  string `yaml:"dst_ports,omitempty"`
	}
)

// config is "hvnet ctl config".
func (c *ctl) config(args []string) error {
	if len(args) != 0 {
		return usageErr("config takes no arguments")
	}
	var ps []api.Port
	if ok, err := c.get(http.MethodGet, "/v1/ports", nil, &ps); !ok {
		return err
	}
	var sw api.SwitchInfo
	if ok, err := c.get(http.MethodGet, "/v1/switch", nil, &sw); !ok {
		return err
	}
	groups := map[string]api.SecurityGroup{} // port answers sum groups up: the rules are asked for
	for _, p := range ps {
		if p.SecurityGroup == nil {
			continue
		}
		g, err := c.c.SecurityGroup(c.ctx, p.Name)
		var ae *api.Error
		if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
			continue // removed meanwhile
		}
		if err != nil {
			return err
		}
		groups[p.Name] = g
	}
	f, left := runningConfig(c.c.Socket, sw, ps, groups)
	fx, err := c.c.FlowExport(c.ctx)
	var ae *api.Error
	switch {
	case errors.As(err, &ae) && ae.Status == http.StatusNotImplemented: // a daemon without one
	case err != nil:
		return err
	case fx.Enabled != nil && *fx.Enabled:
		f.FlowExport = &cfgFlowExport{Collectors: fx.Collectors, ActiveTimeout: fx.ActiveTimeout, IdleTimeout: fx.IdleTimeout,
			Sampling: fx.Sampling, MaxFlows: fx.MaxFlows, MaxFlowsPerPort: fx.MaxFlowsPerPort, TemplateRefresh: fx.TemplateRefresh,
			TemplateRefreshPackets: fx.TemplateRefreshPackets, ObservationDomain: fx.ObservationDomain}
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	fmt.Fprintf(c.e.stdout, "# The running configuration of the hvnet daemon at %s (hvnet ctl config),\n# as a topology file for hvnet up; rates in bits per second.\n", c.c.Socket)
	for _, l := range left {
		fmt.Fprintf(c.e.stdout, "# Left out: %s\n", l)
	}
	_, err = c.e.stdout.Write(b.Bytes())
	return err
}

// runningConfig turns the daemon's ports (and their security groups, by
// port) into a topology file, and says what it had to leave out.
func runningConfig(socket string, sw api.SwitchInfo, ps []api.Port, groups map[string]api.SecurityGroup) (cfgFile, []string) {
	f := cfgFile{Switch: cfgSwitch{API: socket, MetricsAddr: sw.MetricsAddr, DashboardAddr: sw.DashboardAddr, Aging: sw.Aging, FDBMaxEntries: sw.FDBMaxEntries,
		MACLimit: sw.MACLimit, MACMoveHoldDown: sw.MACMoveHoldDown}}
	if ct := sw.Conntrack; ct != nil {
		f.Conntrack = &cfgConntrack{MaxEntries: ct.MaxEntries, MaxEntriesPerPort: ct.MaxEntriesPerPort, Timeouts: cfgTimeouts(ct.Timeouts)}
	}
	settingsOf := func(p api.Port) cfgSettings {
		s := settingsOf(p)
		if g, ok := groups[p.Name]; ok {
			s.SG = sgOf(g)
		}
		return s
	}
	var left []string
	opt := func(p api.Port, k string) string {
		if v := p.Options[k]; len(v) > 0 {
			return v[len(v)-1]
		}
		return ""
	}
	for _, p := range ps {
		switch {
		case p.Kind == api.KindVhostUser:
			q, _ := strconv.Atoi(opt(p, "queues"))
			cp := cfgPort{Name: p.Name, Socket: opt(p, "socket"), SocketMode: opt(p, "mode"), Queues: q,
				MAC: opt(p, "mac"), cfgSettings: settingsOf(p)}
			for _, k := range []string{"socket-mode", "socket-owner", "socket-group"} { // no shorthand for these
				if v := opt(p, k); v != "" {
					if cp.Options == nil {
						cp.Options = map[string]any{}
					}
					cp.Options[k] = v
				}
			}
			f.Ports = append(f.Ports, cp)
		case p.Kind == api.KindUplink && f.Uplink == nil:
			f.Uplink = &cfgUplink{Name: p.Name, Interface: opt(p, "if"), TXMode: opt(p, "tx"), cfgSettings: settingsOf(p)}
		case p.Kind == "":
			left = append(left, fmt.Sprintf("port %s (not made by the daemon)", p.Name))
		default: // any other kind: its options as given
			cp := cfgPort{Name: p.Name, Kind: p.Kind, Options: map[string]any{}, cfgSettings: settingsOf(p)}
			for k, v := range p.Options {
				if len(v) == 1 {
					cp.Options[k] = v[0]
				} else {
					cp.Options[k] = []string(v)
				}
			}
			f.Ports = append(f.Ports, cp)
		}
	}
	return f, left
}

// settingsOf is a port's switch settings in the topology file's form.
func settingsOf(p api.Port) cfgSettings {
	c := p.Config
	s := cfgSettings{AllowedVLANs: c.AllowedVLANs, NativeVLAN: c.NativeVLAN, PCP: c.DefaultPCP,
		MTU: c.MTU, Ingress: limitOf(c.Ingress), Egress: limitOf(c.Egress), MACLimit: c.MACLimit, AllowedMACs: c.AllowedMACs}
	if c.Mode != "trunk" {
		s.PVID = c.PVID
	}
	if c.Mode == "dot1q-tunnel" || c.Mode == "trunk" && len(c.AllowedVLANs) == 0 {
		s.Mode = c.Mode
	}
	if st := (cfgStorm{Broadcast: limitOf(c.Storm.Broadcast), Multicast: limitOf(c.Storm.Multicast),
		UnknownUnicast: limitOf(c.Storm.UnknownUnicast)}); st != (cfgStorm{}) {
		s.Storm = &st
	}
	if c.PortSecurity != nil && !*c.PortSecurity {
		off := false
		s.PortSecurity = &off
	}
	s.Reservation, s.Limit, s.DSCPClass = int64(c.ReservationBPS), int64(c.LimitBPS), c.DSCPClass
	if c.Shares != vswitch.DefaultShares {
		s.Shares = c.Shares
	}
	if len(c.PCPClass) > 0 {
		cs := make([]uint8, len(c.PCPClass))
		for i, v := range c.PCPClass {
			cs[i] = uint8(v)
		}
		s.PCPClass = api.FormatPCPClasses(cs)
	}
	if a := p.ACL; a != nil && (len(a.Rules) > 0 || a.Default == "deny" || a.EgressDefault == "deny") {
		acl := &cfgACL{Default: a.Default, EgressDefault: a.EgressDefault}
		for _, r := range a.Rules {
			acl.Rules = append(acl.Rules, cfgACLRule{Action: r.Action, Direction: r.Direction, EtherType: r.EtherType,
				SrcMAC: r.SrcMAC, DstMAC: r.DstMAC, SrcIP: r.SrcIP, DstIP: r.DstIP, Protocol: r.Protocol,
				SrcPorts: r.SrcPorts, DstPorts: r.DstPorts})
		}
		s.ACL = acl
	}
	return s
}

// sgOf is a security group in the topology file's form.
func sgOf(g api.SecurityGroup) *cfgSG {
	rules := func(rs []api.SGRule) []cfgSGRule {
		var out []cfgSGRule
		for _, r := range rs {
			out = append(out, cfgSGRule(r))
		}
		return out
	}
	return &cfgSG{Inbound: rules(g.Inbound), Outbound: rules(g.Outbound), InboundDefault: g.InboundDefault, OutboundDefault: g.OutboundDefault}
}

func limitOf(r api.RateLimit) *cfgLimit {
	l := cfgLimit{RateBPS: int64(r.RateBPS), BurstBytes: r.BurstBytes, OneTimeBurstBytes: r.OneTimeBurstBytes,
		RatePPS: r.RatePPS, BurstPackets: r.BurstPackets, OneTimeBurstPackets: r.OneTimeBurstPackets}
	if l == (cfgLimit{}) {
		return nil
	}
	return &l
}
