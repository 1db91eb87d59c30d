package topology

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/dashboard"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/units"
)

// checker collects consistency errors with their lines.
type checker struct {
	file string
	errs []*Error
}

func (c *checker) fail(line int, field, format string, args ...any) {
	c.errs = append(c.errs, &Error{File: c.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// check reports every inconsistency in t.
func check(t *Topology) []*Error {
	c := &checker{file: t.File}
	if t.Switch.API != "" && !filepath.IsAbs(t.Switch.API) {
		c.fail(t.Switch.LineOf("api"), "switch.api", "%q: want an absolute path", t.Switch.API)
	}
	if a := t.Switch.MetricsAddr; a != "" {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			c.fail(t.Switch.LineOf("metrics_addr"), "switch.metrics_addr", "%q: want HOST:PORT, as 127.0.0.1:9477", a)
		}
	}
	if a := t.Switch.DashboardAddr; a != "" {
		if _, err := dashboard.ResolveAddr(a); err != nil {
			c.fail(t.Switch.LineOf("dashboard_addr"), "switch.dashboard_addr", "%v", err)
		}
	}
	if t.Switch.Aging < 0 {
		c.fail(t.Switch.LineOf("aging"), "switch.aging", "negative aging time")
	}
	if n := t.Switch.FDBMaxEntries; n < 0 || n > vswitch.MaxFDBEntries {
		c.fail(t.Switch.LineOf("fdb_max_entries"), "switch.fdb_max_entries", "%d outside 1..%d (0 or absent: %d)", n, vswitch.MaxFDBEntries, vswitch.DefaultFDBMaxEntries)
	}
	if n := t.Switch.MACLimit; n < vswitch.NoMACLimit || n > vswitch.MaxMACLimit {
		c.fail(t.Switch.LineOf("mac_limit"), "switch.mac_limit", "%d outside -1 (none), 1..%d (0 or absent: %d)", n, vswitch.MaxMACLimit, vswitch.DefaultMACLimit)
	}
	if d := t.Switch.MACMoveHoldDown; d > vswitch.MaxMACMoveHoldDown {
		c.fail(t.Switch.LineOf("mac_move_hold_down"), "switch.mac_move_hold_down", "%v above %v (negative, as -1s: none)", d, vswitch.MaxMACMoveHoldDown)
	}
	c.conntrack(t.Conntrack)
	c.flowExport(t.FlowExport)
	names := map[string]string{}   // port name -> where first defined
	sockets := map[string]string{} // socket path -> port
	macs := map[string]string{}    // MAC -> owner
	ips := map[netip.Addr]string{}
	unique := func(seen map[string]string, v, what, field string, line int, owner string) {
		if prev, ok := seen[v]; ok {
			c.fail(line, field, "duplicate %s %q (also %s)", what, v, prev)
			return
		}
		seen[v] = owner
	}
	portName := func(name, field string, line int, owner string) {
		if err := api.CheckPortName(name); err != nil {
			c.fail(line, field, "%v", err)
			return
		}
		unique(names, name, "port name", field, line, owner)
	}
	for i := range t.Ports {
		p := &t.Ports[i] // settings() fills in defaults: not a copy
		f := fmt.Sprintf("ports[%d]", i)
		if p.Name == "" {
			c.fail(p.Line, f+".name", "missing")
		} else {
			portName(p.Name, f+".name", p.LineOf("name"), f)
		}
		vhostUser := p.Kind == "" || p.Kind == "vhost-user"
		switch {
		case !vhostUser:
			for _, k := range []string{"socket", "mode", "queues", "mac"} {
				if p.has(k) {
					c.fail(p.LineOf(k), f+"."+k, "only for kind vhost-user (a %s port's settings go in options)", p.Kind)
				}
			}
		case p.Socket == "" && len(p.Options.Values["socket"]) == 0:
			c.fail(p.Line, f+".socket", "missing: a vhost-user port needs a socket path")
		case p.Socket != "":
			unique(sockets, filepath.Clean(p.Socket), "socket", f+".socket", p.LineOf("socket"), f)
		}
		if p.SocketMode != "" && p.SocketMode != "server" && p.SocketMode != "client" {
			c.fail(p.LineOf("mode"), f+".mode", "%q: want server or client (the VLAN mode is vlan_mode)", p.SocketMode)
		}
		c.queues(p.Pos, f, p.Queues)
		if p.MAC != "" {
			c.mac(p.Pos, f+".mac", "mac", p.MAC)
			unique(macs, p.MAC, "MAC", f+".mac", p.LineOf("mac"), f)
		}
		c.settings(p.Pos, f, &p.PortSettings)
	}
	if u := t.Uplink; u != nil {
		if u.Name == "" {
			u.Name = "uplink"
		}
		portName(u.Name, "uplink.name", u.LineOf("name"), "uplink")
		if u.Interface == "" {
			c.fail(u.Line, "uplink.if", "missing: the host interface to attach")
		}
		if u.TXMode != "" && u.TXMode != "ring" && u.TXMode != "sendmmsg" {
			c.fail(u.LineOf("tx"), "uplink.tx", "%q: want ring or sendmmsg", u.TXMode)
		}
		c.settings(u.Pos, "uplink", &u.PortSettings)
		if u.PortSecurity != nil {
			c.fail(u.LineOf("port_security"), "uplink.port_security", "an uplink has no MAC of its own: port security does not apply")
		}
	}
	for i := range t.Guests {
		g := &t.Guests[i]
		f := fmt.Sprintf("guests[%d]", i)
		if g.Name == "" {
			c.fail(g.Line, f+".name", "missing")
		} else {
			portName(g.Name, f+".name", g.LineOf("name"), f)
		}
		if g.MAC != "" {
			c.mac(g.Pos, f+".mac", "mac", g.MAC)
			unique(macs, g.MAC, "MAC", f+".mac", g.LineOf("mac"), f)
		}
		if g.IP != "" {
			pfx, err := netip.ParsePrefix(g.IP)
			if err != nil {
				c.fail(g.LineOf("ip"), f+".ip", "%q: want address/prefix, as 10.0.10.1/24", g.IP)
			} else if prev, dup := ips[pfx.Addr()]; dup {
				c.fail(g.LineOf("ip"), f+".ip", "duplicate address %s (also %s)", pfx.Addr(), prev)
			} else {
				ips[pfx.Addr()] = f
			}
		}
		c.queues(g.Pos, f, g.Queues)
		c.settings(g.Pos, f, &g.PortSettings)
	}
	c.admission(t)
	return c.errs
}

func (c *checker) queues(p Pos, f string, q int) {
	if q < 0 || q > 16 {
		c.fail(p.LineOf("queues"), f+".queues", "%d outside 0..16", q)
	}
}

func (c *checker) mac(p Pos, field, key, s string) {
	m, err := vswitch.ParseMAC(s)
	switch {
	case err != nil || len(s) != 17:
		c.fail(p.LineOf(key), field, "%q: want aa:bb:cc:dd:ee:ff", s)
	case m[0]&1 != 0:
		c.fail(p.LineOf(key), field, "%s is a group address", s)
	}
}

// vlan: IEEE 802.1Q-2018 Table 9-2 (0 is no VLAN, 4095 reserved).
func (c *checker) vlan(line int, field string, v int) {
	if v < 1 || v > 4094 {
		c.fail(line, field, "VLAN %d outside 1..4094", v)
	}
}

func (c *checker) settings(p Pos, f string, s *PortSettings) {
	if s.Mode == "" {
		s.Mode = "access"
		if len(s.AllowedVLANs) > 0 {
			s.Mode = "trunk"
		}
	}
	switch s.Mode {
	case "access", "dot1q-tunnel":
		if !p.has("vlan") {
			s.PVID = 1
		}
		c.vlan(p.LineOf("vlan"), f+".vlan", s.PVID)
		if len(s.AllowedVLANs) > 0 {
			c.fail(p.LineOf("trunk"), f+".trunk", "only a trunk carries tagged VLANs (vlan_mode is %s)", s.Mode)
		}
		if s.NativeVLAN != 0 {
			c.fail(p.LineOf("native"), f+".native", "only a trunk has a native VLAN (vlan_mode is %s)", s.Mode)
		}
	case "trunk":
		if s.PVID != 0 {
			c.fail(p.LineOf("vlan"), f+".vlan", "a trunk has no access VLAN: use native for untagged frames")
		}
		if len(s.AllowedVLANs) == 0 {
			c.fail(p.LineOf("vlan_mode"), f+".trunk", "a trunk needs the VLANs it carries (trunk)")
		}
		seen := map[int]bool{}
		for i, v := range s.AllowedVLANs {
			c.vlan(p.LineOf("trunk"), fmt.Sprintf("%s.trunk[%d]", f, i), v)
			if seen[v] {
				c.fail(p.LineOf("trunk"), fmt.Sprintf("%s.trunk[%d]", f, i), "VLAN %d listed twice", v)
			}
			seen[v] = true
		}
		if s.NativeVLAN != 0 {
			c.vlan(p.LineOf("native"), f+".native", s.NativeVLAN)
		}
	default:
		c.fail(p.LineOf("vlan_mode"), f+".vlan_mode", "%q: want access, trunk or dot1q-tunnel", s.Mode)
	}
	for _, x := range []struct {
		short, block string
		set          bool
		l            *Limit
	}{{"rate", "egress", s.Rate != 0, s.Egress}, {"pps", "egress", s.PPS != 0, s.Egress}, {"police", "ingress", s.Police != 0, s.Ingress}} {
		if x.set && x.l != nil {
			c.fail(p.LineOf(x.short), f+"."+x.short, "give %s or %s, not both (%s is %s.%s)", x.short, x.block, x.short, x.block,
				map[string]string{"rate": "rate_bps", "pps": "rate_pps", "police": "rate_bps"}[x.short])
		}
	}
	if (s.Rate < 0 && s.Rate != RateLink) || s.Police < 0 || s.PPS < 0 || int64(s.Rate) > units.MaxBitRate || int64(s.Police) > units.MaxBitRate || int64(s.PPS) > units.MaxRate {
		c.fail(p.Line, f, "a rate outside 0..%d bit/s or 0..%d pps", units.MaxBitRate, units.MaxRate)
	}
	if s.PCP < 0 || s.PCP > 7 {
		c.fail(p.LineOf("pcp"), f+".pcp", "%d outside 0..7", s.PCP)
	}
	if s.MTU != 0 && (s.MTU < 68 || s.MTU > 65535) {
		c.fail(p.LineOf("mtu"), f+".mtu", "%d outside 68..65535", s.MTU)
	}
	c.limit(f+".ingress", s.Ingress)
	c.limit(f+".egress", s.Egress)
	if st := s.Storm; st != nil {
		c.limit(f+".storm.broadcast", st.Broadcast)
		c.limit(f+".storm.multicast", st.Multicast)
		c.limit(f+".storm.unknown_unicast", st.UnknownUnicast)
	}
	if s.MACLimit < vswitch.NoMACLimit || s.MACLimit > vswitch.MaxMACLimit {
		c.fail(p.LineOf("mac_limit"), f+".mac_limit", "%d outside -1 (none), 0 (the switch's), 1..%d", s.MACLimit, vswitch.MaxMACLimit)
	}
	for i, m := range s.AllowedMACs {
		c.mac(p, fmt.Sprintf("%s.allowed_macs[%d]", f, i), "allowed_macs", m)
	}
	c.allocation(p, f, s)
	c.acl(f, s.ACL)
	c.securityGroup(f, s.SecurityGroup)
}

// allocation checks a port's bandwidth allocation alone (admission
// checks them together).
func (c *checker) allocation(p Pos, f string, s *PortSettings) {
	for _, x := range []struct {
		key string
		v   Rate
	}{{"reservation", s.Reservation}, {"limit", s.Limit}} {
		if x.v < 0 || int64(x.v) > units.MaxBitRate {
			c.fail(p.LineOf(x.key), f+"."+x.key, "%d outside 0..%d bit/s", int64(x.v), int64(units.MaxBitRate))
		}
	}
	if s.Limit != 0 && s.Reservation > s.Limit {
		c.fail(p.LineOf("reservation"), f+".reservation", "%s is above limit %s", units.FormatBitRate(int64(s.Reservation)), units.FormatBitRate(int64(s.Limit)))
	}
	if p.has("shares") && (s.Shares < 1 || s.Shares > vswitch.MaxShares) {
		c.fail(p.LineOf("shares"), f+".shares", "%d outside 1..%d (absent: %d)", s.Shares, vswitch.MaxShares, vswitch.DefaultShares)
	}
}

// admission refuses reservations that add up past a shaped egress's
// rate, as the switch does when the ports are added (vswitch sched.go):
// every port may send through every shaped egress, so at each the other
// ports' reservations must fit its capacity.
func (c *checker) admission(t *Topology) {
	type port struct {
		name, field string
		pos         Pos
		s           *PortSettings
	}
	var ps []port
	for i := range t.Ports {
		ps = append(ps, port{t.Ports[i].Name, fmt.Sprintf("ports[%d]", i), t.Ports[i].Pos, &t.Ports[i].PortSettings})
	}
	if u := t.Uplink; u != nil {
		ps = append(ps, port{u.Name, "uplink", u.Pos, &u.PortSettings})
	}
	for i := range t.Guests {
		ps = append(ps, port{t.Guests[i].Name, fmt.Sprintf("guests[%d]", i), t.Guests[i].Pos, &t.Guests[i].PortSettings})
	}
	for _, e := range ps {
		capacity, key := int64(e.s.Rate), "rate"
		if capacity == 0 && e.s.Egress != nil {
			capacity, key = int64(e.s.Egress.RateBPS), "egress"
		}
		if capacity <= 0 { // none, or rate: link (the switch admits it when the port is made)
			continue
		}
		var sum int64
		var who []string
		for _, o := range ps {
			if o.s != e.s && o.s.Reservation > 0 {
				sum += int64(o.s.Reservation)
				who = append(who, fmt.Sprintf("%s %s", o.name, units.FormatBitRate(int64(o.s.Reservation))))
			}
		}
		if sum > capacity {
			c.fail(e.pos.LineOf(key), e.field+"."+key, "the other ports' reservations add up to %s (%s), more than this egress's rate %s",
				units.FormatBitRate(sum), strings.Join(who, ", "), units.FormatBitRate(capacity))
		}
	}
}

// maxBurst is the switch's bound on a bucket's size, in tokens.
const maxBurst = 1 << 32

func (c *checker) limit(f string, l *Limit) {
	if l == nil {
		return
	}
	for _, x := range []struct {
		key string
		v   int64
		max int64
	}{{"rate_bps", int64(l.RateBPS), units.MaxBitRate}, {"burst_bytes", int64(l.BurstBytes), maxBurst},
		{"one_time_burst_bytes", int64(l.OneTimeBurstBytes), maxBurst}, {"rate_pps", int64(l.RatePPS), units.MaxRate},
		{"burst_packets", l.BurstPackets, maxBurst}, {"one_time_burst_packets", l.OneTimeBurstPackets, maxBurst}} {
		switch {
		case x.v < 0:
			c.fail(l.LineOf(x.key), f+"."+x.key, "negative value %d", x.v)
		case x.v > x.max:
			c.fail(l.LineOf(x.key), f+"."+x.key, "%d is absurd (at most %d)", x.v, x.max)
		}
	}
	if l.RateBPS == 0 && l.RatePPS == 0 {
		c.fail(l.Line, f, "a limit needs rate_bps or rate_pps (leave the limit out for none)")
	}
}
