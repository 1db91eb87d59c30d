package vswitch

import (
	"fmt"
	"net/netip"
	"sync/atomic"
)

// Per-port access control lists, like a cloud's security groups: an ordered
// list of allow/deny rules checked on ingress, first match wins, and a
// default action when none matches. A rule's zero-valued fields match
// anything. SetACL compiles a list and swaps it in atomically: forwarding
// never stops and a batch sees either the old list or the new one.

// ACLAction is what a matching rule (or the default) does with a frame.
type ACLAction uint8

const (
	ACLAllow ACLAction = iota // forward as usual
	ACLDeny                   // drop, counted as DropACL
)

func (a ACLAction) String() string {
	if a == ACLDeny {
		return "deny"
	}
	return "allow"
}

// PortRange is an inclusive range of TCP/UDP ports; the zero value is any.
type PortRange struct{ From, To uint16 }

func (r PortRange) any() bool { return r.From == 0 && r.To == 0 }

// ACLRule is one rule. Every set field must match (AND). EtherType is the
// frame's innermost EtherType (after every VLAN tag). SrcIP and DstIP are
// IPv4 or IPv6 prefixes and match only frames of their family; Proto is the
// IPv4 protocol / IPv6 next header (after hop-by-hop, routing and
// destination options headers); the port ranges need Proto TCP (6) or UDP
// (17), and do not match non-first fragments (they carry no ports).
type ACLRule struct {
	Action    ACLAction
	EtherType uint16       // 0: any
	SrcMAC    MAC          // zero: any
	DstMAC    MAC          // zero: any
	SrcIP     netip.Prefix // invalid (zero): any
	DstIP     netip.Prefix // invalid (zero): any
	Proto     uint8        // 0: any
	SrcPort   PortRange
	DstPort   PortRange
}

// ACL is a port's rule list and default action. The zero ACL allows all.
type ACL struct {
	Rules   []ACLRule
	Default ACLAction
}

// ACLHits are the hit counters of a port's current ACL: one per rule, and
// the frames the default action decided. Replacing the ACL resets them.
type ACLHits struct {
	Rules   []uint64
	Default uint64
}

// MaxACLRules bounds a port's rule list.
const MaxACLRules = 4096

const (
	ipProtoUDP = 17
)

// Rule field bits: which fields a compiled rule checks.
const (
	fEther uint16 = 1 << iota
	fSrcMAC
	fDstMAC
	fIP4
	fIP6
	fSrcIP
	fDstIP
	fProto
	fL4 // port ranges: the frame must carry a TCP/UDP header
)

// aclRule is a compiled ACLRule: flat, no pointers, checked field by field
// in the order that rejects the most frames first.
type aclRule struct {
	need     uint16
	ether    uint16
	proto    uint8
	action   ACLAction
	src, dst uint64 // MAC keys
	sip, sm  [2]uint64
	dip, dm  [2]uint64
	sp, dp   [2]uint16
}

// aclSet is a compiled, immutable ACL plus its hit counters.
type aclSet struct {
	src     ACL
	rules   []aclRule
	def     ACLAction
	hits    []atomic.Uint64 // len(rules)+1: the last is the default's
	anyL3   bool            // some rule needs the frame's L3/L4 fields
	needAll uint16
	mask    aclKey // the flow-key bits some rule reads (aclcache.go)
	id      uint32 // unique per compiled set: egress cache tag (aclegress.go)
}

func (r *ACLRule) check(i int) error {
	if r.Action > ACLDeny {
		return fmt.Errorf("%w: acl rule %d: action %d", errConfig, i, r.Action)
	}
	ipFam := 0
	for _, p := range []netip.Prefix{r.SrcIP, r.DstIP} {
		if !p.IsValid() {
			continue
		}
		f := 4
		if p.Addr().Is6() && !p.Addr().Is4In6() {
			f = 6
		} else if p.Addr().Is4In6() {
			return fmt.Errorf("%w: acl rule %d: %v: IPv4-mapped prefix, write it as IPv4", errConfig, i, p)
		}
		if ipFam != 0 && ipFam != f {
			return fmt.Errorf("%w: acl rule %d: source and destination prefixes of different families", errConfig, i)
		}
		ipFam = f
	}
	if ipFam == 4 && r.EtherType != 0 && r.EtherType != etherTypeIPv4 || ipFam == 6 && r.EtherType != 0 && r.EtherType != etherTypeIPv6 {
		return fmt.Errorf("%w: acl rule %d: ethertype %#04x contradicts the IPv%d prefix", errConfig, i, r.EtherType, ipFam)
	}
	for _, pr := range []PortRange{r.SrcPort, r.DstPort} {
		if pr.any() {
			continue
		}
		if pr.From > pr.To {
			return fmt.Errorf("%w: acl rule %d: port range %d-%d is empty", errConfig, i, pr.From, pr.To)
		}
		if r.Proto != ipProtoTCP && r.Proto != ipProtoUDP {
			return fmt.Errorf("%w: acl rule %d: port ranges need protocol tcp (6) or udp (17)", errConfig, i)
		}
	}
	return nil
}

// addr128 returns a as two big-endian words (IPv4 in the low 32 bits).
func addr128(a netip.Addr) [2]uint64 {
	b := a.As16()
	if a.Is4() {
		return [2]uint64{0, uint64(b[12])<<24 | uint64(b[13])<<16 | uint64(b[14])<<8 | uint64(b[15])}
	}
	return [2]uint64{be64(b[:8]), be64(b[8:])}
}

func be64(b []byte) uint64 {
	return uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
}

// prefixMask returns the masked address and mask words of p.
func prefixMask(p netip.Prefix) (v, m [2]uint64) {
	p = p.Masked()
	v = addr128(p.Addr())
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	for w := range 2 {
		n := min(max(bits-64*w, 0), 64)
		if n > 0 {
			m[w] = ^uint64(0) << (64 - n)
		}
	}
	return v, m
}

// Validate reports what SetACL would refuse in a: too many rules, an
// unknown action, a bad rule.
func (a ACL) Validate() error {
	_, err := compileACL(a)
	return err
}

func compileACL(a ACL) (*aclSet, error) {
	if len(a.Rules) > MaxACLRules {
		return nil, fmt.Errorf("%w: %d acl rules, at most %d", errConfig, len(a.Rules), MaxACLRules)
	}
	if a.Default > ACLDeny {
		return nil, fmt.Errorf("%w: acl default action %d", errConfig, a.Default)
	}
	s := &aclSet{src: ACL{Rules: append([]ACLRule(nil), a.Rules...), Default: a.Default},
		rules: make([]aclRule, len(a.Rules)), def: a.Default, hits: make([]atomic.Uint64, len(a.Rules)+1), id: nextACLID()}
	for i := range a.Rules {
		r := &a.Rules[i]
		if err := r.check(i); err != nil {
			return nil, err
		}
		c := &s.rules[i]
		c.action = r.Action
		if r.EtherType != 0 {
			c.need |= fEther
			c.ether = r.EtherType
		}
		if r.SrcMAC != (MAC{}) {
			c.need |= fSrcMAC
			c.src = macKey(r.SrcMAC[:])
		}
		if r.DstMAC != (MAC{}) {
			c.need |= fDstMAC
			c.dst = macKey(r.DstMAC[:])
		}
		if r.SrcIP.IsValid() {
			c.need |= fSrcIP
			c.sip, c.sm = prefixMask(r.SrcIP)
		}
		if r.DstIP.IsValid() {
			c.need |= fDstIP
			c.dip, c.dm = prefixMask(r.DstIP)
		}
		for _, p := range []netip.Prefix{r.SrcIP, r.DstIP} {
			if p.IsValid() {
				if p.Addr().Is4() {
					c.need |= fIP4
				} else {
					c.need |= fIP6
				}
			}
		}
		if r.Proto != 0 {
			c.need |= fProto
			c.proto = r.Proto
		}
		if !r.SrcPort.any() || !r.DstPort.any() {
			c.need |= fL4
			c.sp, c.dp = [2]uint16{0, 0xffff}, [2]uint16{0, 0xffff}
			if !r.SrcPort.any() {
				c.sp = [2]uint16{r.SrcPort.From, r.SrcPort.To}
			}
			if !r.DstPort.any() {
				c.dp = [2]uint16{r.DstPort.From, r.DstPort.To}
			}
		}
		s.needAll |= c.need
	}
	s.anyL3 = s.needAll&(fIP4|fIP6|fSrcIP|fDstIP|fProto|fL4) != 0
	s.mask = aclMask(s.needAll)
	return s, nil
}

// match returns the index of the first rule matching k (len(rules) for the
// default) and the action. It is the one decision function used by
// forwarding and by Trace.
func (s *aclSet) match(k *flowKey) (int, ACLAction) {
	for i := range s.rules {
		r := &s.rules[i]
		n := r.need
		if n&fEther != 0 && r.ether != k.ether {
			continue
		}
		if n&fSrcMAC != 0 && r.src != k.src {
			continue
		}
		if n&fDstMAC != 0 && r.dst != k.dst {
			continue
		}
		if n&(fIP4|fIP6|fProto|fL4) != 0 {
			if n&fIP4 != 0 && k.l3 != 4 || n&fIP6 != 0 && k.l3 != 6 || k.l3 == 0 {
				continue
			}
			if n&fProto != 0 && r.proto != k.proto {
				continue
			}
			if n&fSrcIP != 0 && (k.sip[0]&r.sm[0] != r.sip[0] || k.sip[1]&r.sm[1] != r.sip[1]) {
				continue
			}
			if n&fDstIP != 0 && (k.dip[0]&r.dm[0] != r.dip[0] || k.dip[1]&r.dm[1] != r.dip[1]) {
				continue
			}
			if n&fL4 != 0 && (!k.hasL4 || k.sport < r.sp[0] || k.sport > r.sp[1] || k.dport < r.dp[0] || k.dport > r.dp[1]) {
				continue
			}
		}
		return i, r.action
	}
	return len(s.rules), s.def
}

// SetACL replaces the ingress ACL of the named port. A nil or empty rule
// list with the allow default removes it (no per-frame cost). The new rules
// apply from the next batch each ingress port forwards; hit counters start
// at zero.
func (s *Switch) SetACL(port string, a ACL) error {
	return s.setACL(port, a, "acl", func(h *PortHandle) *atomic.Pointer[aclSet] { return &h.acl })
}

// setACL compiles a and stores it in the port's slot (what names it in
// errors and logs: "acl" or "egress acl").
func (s *Switch) setACL(port string, a ACL, what string, slot func(*PortHandle) *atomic.Pointer[aclSet]) error {
	set, err := compileACL(a)
	if err != nil {
		return fmt.Errorf("set %s of port %q: %w", what, port, err)
	}
	if len(a.Rules) == 0 && a.Default == ACLAllow {
		set = nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.ports[port]
	if !ok {
		return fmt.Errorf("set %s of port %q: %w", what, port, ErrNoSuchPort)
	}
	slot(h).Store(set)
	s.log.Debug(what+" set", "port", port, "rules", len(a.Rules), "default", a.Default.String())
	return nil
}

// ACL returns the named port's ingress ACL and its hit counters.
func (s *Switch) ACL(port string) (ACL, ACLHits, error) {
	h := s.Port(port)
	if h == nil {
		return ACL{}, ACLHits{}, fmt.Errorf("acl of port %q: %w", port, ErrNoSuchPort)
	}
	a, hits := h.ACL()
	return a, hits, nil
}

// ACL returns the port's ingress ACL and its hit counters.
func (h *PortHandle) ACL() (ACL, ACLHits) { return h.acl.Load().snapshot() }

// snapshot returns the set's rules and hit counters (the zero ACL for nil).
func (set *aclSet) snapshot() (ACL, ACLHits) {
	if set == nil {
		return ACL{}, ACLHits{Rules: []uint64{}}
	}
	hits := ACLHits{Rules: make([]uint64, len(set.rules))}
	for i := range set.rules {
		hits.Rules[i] = set.hits[i].Load()
	}
	hits.Default = set.hits[len(set.rules)].Load()
	return ACL{Rules: append([]ACLRule(nil), set.src.Rules...), Default: set.def}, hits
}
