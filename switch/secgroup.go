package vswitch

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/hvnet/hvnet/conntrack"
)

// Stateful security groups (package conntrack does the tracking): a port
// with a group has its own connection-tracking zone, so tenants with
// overlapping addresses never see each other's entries. Its rules say
// which NEW connections may open, in the two directions seen from its
// guest, as the clouds name them:
//
//   - outbound: connections the port's guest opens (frames it sends into
//     the switch), checked when the frame enters the switch, after the
//     port's stateless ingress ACL;
//   - inbound: connections opened toward the guest (frames leaving the
//     switch through the port), checked once per destination port after
//     its stateless egress ACL, so a flooded frame refused by one port's
//     group still reaches the others.
//
// Frames of a tracked connection pass whatever the rules say, both ways
// (replies, and ICMP errors about it); a new connection passes when a
// rule of its direction allows it, or else when that direction's default
// is allow. The defaults are the clouds' (DefaultSecurityGroup): inbound
// denied, outbound allowed. Changing the rules leaves established
// connections alone (as AWS documents for its security groups) unless the
// caller asks for a flush.
//
// What always passes, as in the clouds: frames that are not IPv4 or IPv6
// (ARP, LLDP, ...), IPv6 neighbour discovery and MLD (without which IPv6
// does not work), and DHCP replies to the guest's client port (UDP 67 to
// 68, DHCPv6 547 to 546: the guest asked by broadcast, which no
// connection can match). Stateless ACLs can still drop them.
//
// Drops are counted on the port whose group decided: DropSecurityGroup (no
// rule allows the new connection), DropCTInvalid (impossible TCP flags,
// a segment out of window, a bad fragment, a malformed header),
// DropCTFull (the port's or the switch's table is full: established
// connections go on, and no other port's entries are evicted).

// SGRule allows new connections that match every field it sets.
type SGRule struct {
	Proto uint8 // IP protocol (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, ...); 0: any
	// Ports is the destination port range of the connection's first
	// packet (the guest's port for inbound, the remote's for outbound);
	// it needs Proto TCP or UDP. Zero: any.
	Ports PortRange
	// Remote is the other end's prefix; invalid (zero): any address.
	Remote netip.Prefix
	// Family restricts the rule to IPv4 (4) or IPv6 (6); 0: both (or
	// Remote's family).
	Family uint8
}

// SecurityGroup is a port's set of stateful rules.
type SecurityGroup struct {
	Inbound         []SGRule  // new connections toward the port's guest
	Outbound        []SGRule  // new connections from it
	InboundDefault  ACLAction // a new inbound connection no rule matches (DefaultSecurityGroup: deny)
	OutboundDefault ACLAction // a new outbound connection no rule matches (DefaultSecurityGroup: allow)
}

// DefaultSecurityGroup is the clouds' default group: every outbound
// connection allowed, no inbound one.
func DefaultSecurityGroup() SecurityGroup {
	return SecurityGroup{InboundDefault: ACLDeny, OutboundDefault: ACLAllow}
}

// MaxSGRules bounds the rules of one direction of a group.
const MaxSGRules = 1024

// sgRule is a compiled SGRule.
type sgRule struct {
	proto    uint8
	family   uint8
	from, to uint16
	ports    bool
	remote   [16]byte // masked
	bits     int      // prefix length in the 128-bit (IPv4-mapped) space; -1: any
}

func (r *sgRule) match(p *conntrack.Packet, dir conntrack.Dir) bool {
	k := &p.Key
	if r.family != 0 && r.family != k.Family || r.proto != 0 && r.proto != k.Proto {
		return false
	}
	if r.ports {
		port := k.RPort // outbound: the remote's port
		if dir == conntrack.Inbound {
			port = k.LPort
		}
		if port < r.from || port > r.to {
			return false
		}
	}
	return r.bits < 0 || prefixHas(&r.remote, r.bits, &k.Remote)
}

// prefixHas reports whether a's first bits bits equal p's (p masked).
func prefixHas(p *[16]byte, bits int, a *[16]byte) bool {
	i := 0
	for ; bits >= 8; bits, i = bits-8, i+1 {
		if a[i] != p[i] {
			return false
		}
	}
	return bits == 0 || (a[i]^p[i])&^(0xff>>bits) == 0
}

// sgSet is a compiled group with its port's zone. The zone outlives rule
// changes (Switch.SetSecurityGroup swaps sets, not zones).
type sgSet struct {
	sg                    SecurityGroup
	in, out               []sgRule
	inDefault, outDefault bool // allow
	zone                  *conntrack.Zone
}

func compileSG(sg SecurityGroup) (*sgSet, error) {
	set := &sgSet{sg: sg, inDefault: sg.InboundDefault == ACLAllow, outDefault: sg.OutboundDefault == ACLAllow}
	for _, d := range []struct {
		name  string
		rules []SGRule
		dst   *[]sgRule
	}{{"inbound", sg.Inbound, &set.in}, {"outbound", sg.Outbound, &set.out}} {
		if len(d.rules) > MaxSGRules {
			return nil, fmt.Errorf("%d %s rules, at most %d", len(d.rules), d.name, MaxSGRules)
		}
		*d.dst = make([]sgRule, 0, len(d.rules))
		for i, r := range d.rules {
			c, err := compileSGRule(r)
			if err != nil {
				return nil, fmt.Errorf("%s rule %d: %w", d.name, i, err)
			}
			*d.dst = append(*d.dst, c)
		}
	}
	return set, nil
}

func compileSGRule(r SGRule) (sgRule, error) {
	c := sgRule{proto: r.Proto, family: r.Family, bits: -1}
	if r.Family != 0 && r.Family != 4 && r.Family != 6 {
		return c, fmt.Errorf("family %d: want 4 or 6", r.Family)
	}
	if !r.Ports.any() {
		if r.Proto != protoTCP && r.Proto != protoUDP {
			return c, fmt.Errorf("ports need protocol tcp or udp")
		}
		if r.Ports.From > r.Ports.To {
			return c, fmt.Errorf("port range %d-%d is empty", r.Ports.From, r.Ports.To)
		}
		c.ports, c.from, c.to = true, r.Ports.From, r.Ports.To
	}
	if r.Remote.IsValid() {
		p := r.Remote.Masked()
		a := p.Addr()
		fam := uint8(6)
		bits := p.Bits()
		if a.Is4() {
			fam, bits = 4, bits+96
			a = netip.AddrFrom16(a.As16())
		}
		if r.Family != 0 && r.Family != fam {
			return c, fmt.Errorf("remote %s is not IPv%d", r.Remote, r.Family)
		}
		c.family, c.remote, c.bits = fam, a.As16(), bits
	}
	return c, nil
}

// allows reports whether the group lets new connection p open in dir.
func (s *sgSet) allows(p *conntrack.Packet, dir conntrack.Dir) bool {
	_, ok := s.decide(p, dir)
	return ok
}

// decide returns the first rule of dir matching p (-1: none, the default
// decided) and whether the connection may open.
func (s *sgSet) decide(p *conntrack.Packet, dir conntrack.Dir) (int, bool) {
	rules, def := s.out, s.outDefault
	if dir == conntrack.Inbound {
		rules, def = s.in, s.inDefault
	}
	for i := range rules {
		if rules[i].match(p, dir) {
			return i, true
		}
	}
	return -1, def
}

// explain is verdict for a trace: what the group would decide about the
// frame, changing nothing. It returns the drop reason (dropNone: passes)
// and a sentence.
func (set *sgSet) explain(data []byte, l3 int, et uint16, dir conntrack.Dir, now int64) (DropReason, string) {
	var p conntrack.Packet
	if l3 < 0 {
		return dropNone, "not IP: not tracked"
	}
	conntrack.Parse(data, l3, et, dir, &p)
	switch {
	case p.Kind == conntrack.KindUntracked:
		return dropNone, "not tracked (not IP, or IPv6 neighbour discovery/MLD)"
	case dhcpReply(&p):
		return dropNone, "a DHCP reply to the guest's client port: passes untracked"
	}
	v := set.zone.Peek(&p, now)
	switch v {
	case conntrack.Untracked:
		return dropNone, "not tracked"
	case conntrack.Established, conntrack.Reply, conntrack.Related:
		return dropNone, fmt.Sprintf("conntrack %s: part of a tracked connection", v)
	case conntrack.New:
		if p.Kind == conntrack.KindICMPError || p.Kind == conntrack.KindFragment {
			return DropSecurityGroup, fmt.Sprintf("conntrack new: an ICMP error or fragment about no tracked connection (drop reason %q)", DropSecurityGroup)
		}
		i, ok := set.decide(&p, dir)
		why := fmt.Sprintf("%s rule %d matched", dir, i)
		if i < 0 {
			why = fmt.Sprintf("no %s rule matched: default", dir)
		}
		if !ok {
			return DropSecurityGroup, fmt.Sprintf("conntrack new: %s: deny (drop reason %q)", why, DropSecurityGroup)
		}
		return dropNone, fmt.Sprintf("conntrack new: %s: allow, the connection would be tracked", why)
	}
	return DropCTInvalid, fmt.Sprintf("conntrack invalid (drop reason %q)", DropCTInvalid)
}

const (
	protoTCP = 6
	protoUDP = 17
)

// dhcpReply: a DHCP server's answer to the guest's client port, which
// passes untracked (the request went out by broadcast).
func dhcpReply(p *conntrack.Packet) bool {
	k := &p.Key
	return p.Kind == conntrack.KindUDP && p.Dir == conntrack.Inbound &&
		(k.Family == 4 && k.RPort == 67 && k.LPort == 68 || k.Family == 6 && k.RPort == 547 && k.LPort == 546)
}

// verdict tracks the frame whose head is data (total bytes in all; l3,
// et: l3Offset's answer) through set's zone in direction dir at time
// now, committing a new connection the rules allow, and returns why it
// is to be dropped, or dropNone. p is the caller's scratch, hint its
// hint for this direction (nil: none); v the conntrack verdict (for
// trace). Only the head is read, the host-side copy every header is in
// (Frame): a tail still in the sender's memory never is, only its
// length counts (TestSecurityGroupReadsHeadOnly).
//
// The callers first offer the frame to the zone's TrackFast, which
// takes the segments of established TCP connections over IPv4 (nearly
// every frame) from the head's bytes, without a Packet, finding their
// connections through the port's HintCache; verdict is for the frames
// it declines (whose tracking it left as if it had not been tried).
func (set *sgSet) verdict(data []byte, total, l3 int, et uint16, dir conntrack.Dir, now int64, p *conntrack.Packet, hint *conntrack.Hint) (DropReason, conntrack.Verdict) {
	if l3 < 0 {
		return dropNone, conntrack.Untracked
	}
	conntrack.ParseHead(data, total, l3, et, dir, p)
	if p.Kind == conntrack.KindUntracked || dhcpReply(p) {
		return dropNone, conntrack.Untracked
	}
	v := set.zone.TrackHint(p, now, hint)
	switch v {
	case conntrack.Untracked, conntrack.Established, conntrack.Reply, conntrack.Related:
		return dropNone, v
	case conntrack.New:
		// An ICMP error about no tracked connection, or a fragment
		// without its first, never opens one.
		if p.Kind == conntrack.KindICMPError || p.Kind == conntrack.KindFragment || !set.allows(p, dir) {
			return DropSecurityGroup, v
		}
		if !set.zone.Commit(p, now) {
			return DropCTFull, v
		}
		return dropNone, v
	}
	return DropCTInvalid, v
}

// SetSecurityGroup gives the named port a stateful security group, or
// replaces its rules (nil: removes the group and its connection table).
// Connections already tracked stay (they pass whatever the new rules say)
// unless flush is set. The new rules apply from the next batch.
func (s *Switch) SetSecurityGroup(port string, sg *SecurityGroup, flush bool) error {
	var set *sgSet
	if sg != nil {
		var err error
		if set, err = compileSG(*sg); err != nil {
			return fmt.Errorf("set security group of port %q: %w", port, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.ports[port]
	if !ok {
		return fmt.Errorf("set security group of port %q: %w", port, ErrNoSuchPort)
	}
	old := h.sg.Load()
	if set == nil {
		h.sg.Store(nil)
		if old != nil {
			old.zone.Close()
		}
		s.log.Debug("security group removed", "port", port)
		return nil
	}
	if old != nil {
		set.zone = old.zone
		if flush {
			set.zone.Flush()
		}
	} else {
		set.zone = s.ct.NewZone()
	}
	h.sg.Store(set)
	s.log.Debug("security group set", "port", port, "inbound", len(sg.Inbound), "outbound", len(sg.Outbound), "flush", flush)
	return nil
}

// SecurityGroup returns the port's group and whether it has one.
func (h *PortHandle) SecurityGroup() (SecurityGroup, bool) {
	set := h.sg.Load()
	if set == nil {
		return SecurityGroup{}, false
	}
	return set.sg, true
}

// Conntrack returns the port's connection-tracking zone, nil without a
// security group.
func (h *PortHandle) Conntrack() *conntrack.Zone {
	if set := h.sg.Load(); set != nil {
		return set.zone
	}
	return nil
}

// ConntrackTable returns the switch's connection-tracking table (the
// global limit and counters over every port's zone).
func (s *Switch) ConntrackTable() *conntrack.Table { return s.ct }

// SweepConntrack removes timed-out connections of every port and returns
// how many.
func (s *Switch) SweepConntrack() int { return s.ct.Sweep(s.clock.Now()) }

// conntrackSweepEvery is how often Run sweeps timed-out connections.
const conntrackSweepEvery = 10 * time.Second

// Validate reports whether sg compiles (what SetSecurityGroup would
// answer about its rules), changing nothing.
func (sg SecurityGroup) Validate() error {
	_, err := compileSG(sg)
	return err
}
