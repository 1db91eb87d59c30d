package vswitch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/songgao/packets/ethernet"

	"github.com/hvnet/hvnet/conntrack"
)

// Trace answers, like Open vSwitch's ofproto/trace, what the switch would
// do now with one frame arriving on a port: which ports it would leave by
// and why, step by step. It runs the forwarding path's decision functions
// (classify, badSource, reservedDst, spoofed, the ACL's match, the policer
// and storm limiters on copies, learnDecision, the FDB, egressTagged) but
// learns nothing, takes no tokens and counts nothing.

// TraceFrame describes the frame to trace.
type TraceFrame struct {
	SrcMAC, DstMAC MAC
	// VLAN, when not 0, tags the frame (TPID 0x8100 unless TPID says
	// otherwise) with VLAN and PCP; PriorityTag tags it with VID 0.
	VLAN        uint16
	PCP         uint8
	TPID        uint16
	PriorityTag bool
	// EtherType of the payload; 0 means IPv4 or IPv6 when addresses are
	// given, else IPv4.
	EtherType uint16
	// Optional L3/L4: both addresses of one family, the protocol, and
	// TCP/UDP ports.
	SrcIP, DstIP     netip.Addr
	Proto            uint8
	SrcPort, DstPort uint16
	// TCPFlags of a TCP frame (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08,
	// ACK 0x10, URG 0x20); 0 means SYN, a connection's first segment.
	TCPFlags uint8
	// Size is the frame length without FCS; 0 picks the smallest that
	// holds the headers (at least 60).
	Size int
}

// TraceStep is one decision.
type TraceStep struct {
	Stage   string // ingress, size, source, acl, security-group, policer, learning, lookup, storm, egress, egress-acl, egress-security-group
	Verdict string // pass, drop, hit, miss, flood, forward, filtered, ...
	Detail  string
}

// TraceOutput is one port the frame would leave by, in the form it would
// have there.
type TraceOutput struct {
	Port   string
	VLAN   uint16
	Tagged bool
	TPID   uint16 // when tagged
	PCP    uint8
	Shaped bool // it would wait in the port's egress shaper
}

// TraceResult is Trace's answer. Drop is the drop reason's name (as
// DropReason.String) when the switch would drop the frame, else "".
type TraceResult struct {
	InPort  string
	VLAN    uint16 // the VLAN the frame was classified into (0: dropped before)
	Steps   []TraceStep
	Outputs []TraceOutput
	Drop    string
	Flooded bool
	// Denied lists the destinations whose egress ACL would drop the frame
	// (counted there as "acl" drops); the frame still leaves by Outputs.
	Denied []TraceDenied
}

// TraceDenied is a destination port whose egress ACL denies the frame,
// and the rule that decided (-1: the default action).
type TraceDenied struct {
	Port   string
	Rule   int
	Reason string // the drop reason: "acl", or a security group's ("security_group", "ct_invalid", "ct_full")
}

var errTrace = errors.New("invalid trace frame")

// frameBytes builds the frame f describes.
func (f *TraceFrame) frameBytes() ([]byte, error) {
	if f.VLAN > vidReserved {
		return nil, fmt.Errorf("%w: vlan %d above 4095", errTrace, f.VLAN)
	}
	if f.PCP > 7 {
		return nil, fmt.Errorf("%w: pcp %d above 7", errTrace, f.PCP)
	}
	if f.Size < 0 || f.Size > maxMTU+18 {
		return nil, fmt.Errorf("%w: size %d outside 0..%d", errTrace, f.Size, maxMTU+18)
	}
	if f.SrcIP.IsValid() != f.DstIP.IsValid() || f.SrcIP.IsValid() && f.SrcIP.Unmap().Is4() != f.DstIP.Unmap().Is4() {
		return nil, fmt.Errorf("%w: give both addresses, of one family", errTrace)
	}
	if (f.SrcPort != 0 || f.DstPort != 0) && f.Proto != ipProtoTCP && f.Proto != ipProtoUDP {
		return nil, fmt.Errorf("%w: ports need protocol tcp (6) or udp (17)", errTrace)
	}
	et := f.EtherType
	v6 := f.SrcIP.IsValid() && !f.SrcIP.Unmap().Is4()
	if et == 0 {
		et = etherTypeIPv4
		if v6 {
			et = etherTypeIPv6
		}
	}
	fr := make(ethernet.Frame, 0, 128)
	tagging := ethernet.NotTagged
	if f.VLAN != 0 || f.PriorityTag {
		tagging = ethernet.Tagged
	}
	fr.Prepare(f.DstMAC[:], f.SrcMAC[:], tagging, ethernet.Ethertype{byte(et >> 8), byte(et)}, 0)
	if tagging == ethernet.Tagged { // any TPID: Prepare writes 0x8100 and no TCI
		tp := f.TPID
		if tp == 0 {
			tp = tpidCTag
		}
		binary.BigEndian.PutUint16(fr[12:], tp)
		binary.BigEndian.PutUint16(fr[14:], uint16(f.PCP)<<13|f.VLAN)
	}
	b := []byte(fr)
	var l4 []byte
	switch f.Proto {
	case ipProtoTCP:
		l4 = make([]byte, 20)
		l4[12] = 5 << 4
		l4[13] = f.TCPFlags
		if l4[13] == 0 {
			l4[13] = 0x02 // SYN
		}
	case ipProtoUDP:
		l4 = make([]byte, 8)
		binary.BigEndian.PutUint16(l4[4:], 8)
	}
	if len(l4) >= 4 {
		binary.BigEndian.PutUint16(l4, f.SrcPort)
		binary.BigEndian.PutUint16(l4[2:], f.DstPort)
	}
	switch {
	case et == etherTypeIPv4 && (f.SrcIP.IsValid() || f.Proto != 0):
		if v6 {
			return nil, fmt.Errorf("%w: IPv6 addresses in an IPv4 frame", errTrace)
		}
		ip := make([]byte, 20)
		ip[0], ip[8], ip[9] = 0x45, 64, f.Proto
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
		if f.SrcIP.IsValid() {
			s, d := f.SrcIP.Unmap().As4(), f.DstIP.Unmap().As4()
			copy(ip[12:], s[:])
			copy(ip[16:], d[:])
		}
		b = append(append(b, ip...), l4...)
	case et == etherTypeIPv6 && (f.SrcIP.IsValid() || f.Proto != 0):
		if f.SrcIP.IsValid() && !v6 {
			return nil, fmt.Errorf("%w: IPv4 addresses in an IPv6 frame", errTrace)
		}
		ip := make([]byte, 40)
		ip[0], ip[6], ip[7] = 0x60, f.Proto, 64
		binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
		if f.SrcIP.IsValid() {
			s, d := f.SrcIP.As16(), f.DstIP.As16()
			copy(ip[8:], s[:])
			copy(ip[24:], d[:])
		}
		b = append(append(b, ip...), l4...)
	case f.SrcIP.IsValid() || f.Proto != 0:
		return nil, fmt.Errorf("%w: addresses or protocol with ethertype %#04x", errTrace, et)
	}
	if n := max(f.Size, 60); len(b) < n {
		b = append(b, make([]byte, n-len(b))...)
	}
	return b, nil
}

// tr accumulates a trace.
type tr struct{ r *TraceResult }

func (t tr) step(stage, verdict, format string, args ...any) {
	t.r.Steps = append(t.r.Steps, TraceStep{Stage: stage, Verdict: verdict, Detail: fmt.Sprintf(format, args...)})
}

func (t tr) drop(stage string, r DropReason, format string, args ...any) (TraceResult, error) {
	t.step(stage, "drop", format+" (drop reason %q)", append(args, r.String())...)
	t.r.Drop = r.String()
	return *t.r, nil
}

// Trace traces frame f arriving on port in. It changes nothing.
func (s *Switch) Trace(in string, f TraceFrame) (TraceResult, error) {
	data, err := f.frameBytes()
	if err != nil {
		return TraceResult{}, fmt.Errorf("trace: %w", err)
	}
	h := s.Port(in)
	if h == nil {
		return TraceResult{}, fmt.Errorf("trace: port %q: %w", in, ErrNoSuchPort)
	}
	res := TraceResult{InPort: in}
	t := tr{&res}
	st := h.state.Load()
	tp := s.topo.Load()
	now := s.clock.Now()

	// Ingress classification and filtering (classify: IEEE 802.1Q §6.9, §8.6.2).
	var p pkt
	if r := classify(st, data, &p); r != dropNone {
		return t.drop("ingress", r, "%s", ingressWhy(st, data))
	}
	res.VLAN = p.vid
	t.step("ingress", "pass", "%s: classified into VLAN %d, PCP %d", ingressWhy(st, data), p.vid, p.pcp)

	l3, et := l3Offset(data)
	if l3 < 0 {
		return t.drop("size", DropMalformed, "truncated tag or more than %d tags", maxTags)
	}
	if l3len := len(data) - l3; l3len > st.maxL3 {
		return t.drop("size", DropMalformed, "%d bytes of L3 above the port's MTU %d", l3len, st.maxL3)
	}
	src, dst := data[6:12], data[0:6]
	switch {
	case badSource(src):
		return t.drop("source", DropMalformed, "source %v is a group or the zero address", f.SrcMAC)
	case st.reservedDst(dst):
		return t.drop("source", DropReserved, "destination %v is a reserved link-local address this port does not relay", f.DstMAC)
	case st.spoofed(src):
		return t.drop("source", DropSpoofed, "source %v is not %s", f.SrcMAC, allowedWhy(st, h))
	case st.allowed != nil:
		t.step("source", "pass", "source %v is %s", f.SrcMAC, allowedWhy(st, h))
	default:
		t.step("source", "pass", "source %v (%s)", f.SrcMAC, noAllowedWhy(st, h))
	}

	if as := h.acl.Load(); as == nil {
		t.step("acl", "pass", "no ACL")
	} else {
		var k flowKey
		parseFlow(data, l3, et, &k, as.anyL3)
		i, act := as.match(&k)
		if i == len(as.rules) {
			if act == ACLDeny {
				return t.drop("acl", DropACL, "no rule of %d matched: default deny", len(as.rules))
			}
			t.step("acl", "pass", "no rule of %d matched: default allow", len(as.rules))
		} else {
			if act == ACLDeny {
				return t.drop("acl", DropACL, "rule %d matched: deny", i)
			}
			t.step("acl", "pass", "rule %d matched: allow", i)
		}
	}

	if set := h.sg.Load(); set != nil {
		r, why := set.explain(data, l3, et, conntrack.Outbound, now)
		if r != dropNone {
			return t.drop("security-group", r, "%s", why)
		}
		t.step("security-group", "pass", "%s", why)
	}

	// Copies of the limiters: a trace takes no tokens.
	h.inMu.Lock()
	police, storm := h.police, h.storm
	h.inMu.Unlock()
	if !st.police {
		t.step("policer", "pass", "no ingress policer")
	} else if !police.allow(len(data), now) {
		return t.drop("policer", DropPolicer, "ingress policer out of tokens now for %d bytes", len(data))
	} else {
		t.step("policer", "pass", "ingress policer has tokens for %d bytes", len(data))
	}

	skey := fdbKey(p.vid, src)
	var ls learnState
	var e fdbView
	// As learn: an entry that aged out but is not yet swept is reused.
	if v, found := s.fdb.peek(skey); found {
		e = v
		ls = s.fdb.entryState(e.key|e.flags(), e.port == h, e.seen, now)
	}
	ls.limit, ls.learned, ls.full = st.macLimit, h.learned.Load(), s.fdb.full()
	pin := ""
	if st.pins(skey) {
		pin = " (pinned: the port's own MAC)"
	}
	switch learnDecision(ls) {
	case learnStatic:
		t.step("learning", "pass", "source %v has a static entry in VLAN %d (port %s)", f.SrcMAC, p.vid, e.port.name)
	case learnRefresh:
		t.step("learning", "pass", "source %v already learned here in VLAN %d: refreshed%s", f.SrcMAC, p.vid, pin)
	case learnLimit:
		return t.drop("learning", DropMACLimit, "port has %d learned MACs, its limit is %d", h.learned.Load(), st.macLimit)
	case learnFull:
		return t.drop("learning", DropFDBFull, "source %v is new and the FDB holds %d learned entries, its maximum (fdb max entries %d)",
			f.SrcMAC, s.fdb.dyn.Load(), s.fdb.max.Load())
	case learnPinned:
		return t.drop("learning", DropMACMove, "source %v in VLAN %d is port %s's own MAC (port security): it does not move",
			f.SrcMAC, p.vid, e.port.name)
	case learnHeld:
		return t.drop("learning", DropMACMove, "source %v in VLAN %d is on port %s, seen %v ago: it moves only after %v without frames there (MAC-move hold-down)",
			f.SrcMAC, p.vid, e.port.name, time.Duration(ls.age), time.Duration(ls.holdDown))
	case learnMove:
		t.step("learning", "pass", "source %v would move from port %s to this port (not seen there for %v)%s",
			f.SrcMAC, e.port.name, time.Duration(ls.age), pin)
	case learnNew:
		t.step("learning", "pass", "source %v would be learned in VLAN %d%s", f.SrcMAC, p.vid, pin)
	}

	var cands []int32 // indexes in tp of the destinations
	if dst[0]&1 != 0 {
		c := stormClass(dst)
		what := "multicast"
		if c == stormBcast {
			what = "broadcast"
		}
		if st.storm && !storm[c].allow(len(data), now) {
			return t.drop("storm", DropStorm, "%s storm control out of tokens now", what)
		}
		t.step("lookup", "flood", "%s destination: flood to VLAN %d", what, p.vid)
		res.Flooded = true
	} else {
		var d *PortHandle
		var dv fdbView
		if v, ok := s.fdb.peek(fdbKey(p.vid, dst)); ok && s.fdb.live(v.static, v.seen, now) {
			d, dv = v.port, v
		}
		if d != nil && d.idx(tp) >= 0 {
			kind := fmt.Sprintf("learned %v ago", time.Duration(now-dv.seen))
			if dv.static {
				kind = "static"
			}
			if d == h {
				t.step("lookup", "filtered", "FDB hit: %v in VLAN %d is on the ingress port (%s): not sent back", f.DstMAC, p.vid, kind)
				return res, nil
			}
			t.step("lookup", "hit", "FDB hit: %v in VLAN %d on port %s (%s)", f.DstMAC, p.vid, d.name, kind)
			cands = append(cands, d.idx(tp))
		} else {
			if st.storm && !storm[stormUnknown].allow(len(data), now) {
				return t.drop("storm", DropStorm, "unknown-unicast storm control out of tokens now")
			}
			t.step("lookup", "flood", "FDB miss: %v unknown in VLAN %d: flood", f.DstMAC, p.vid)
			res.Flooded = true
		}
	}
	if res.Flooded {
		var names []string
		for _, i := range tp.members[p.vid] {
			if tp.ports[i] != h {
				cands = append(cands, i)
				names = append(names, tp.ports[i].name)
			}
		}
		t.step("flood", "flood", "VLAN %d members other than the ingress port: %v", p.vid, names)
	}
	for _, i := range cands {
		d := tp.ports[i]
		dst := d.state.Load()
		ok, tagged := egressTagged(dst, p.vid)
		if !ok {
			t.step("egress", "filtered", "port %s (%s): VLAN %d not in its member set", d.name, dst.mode, p.vid)
			continue
		}
		if egressHop(dst, &p, tagged) {
			t.step("egress", "drop", "port %s (%s): the frame would leave untagged with a VLAN tag at its front, which would become its VLAN on the wire (drop reason %q, counted on %s)",
				d.name, dst.mode, DropVLAN.String(), h.name)
			res.Denied = append(res.Denied, TraceDenied{Port: d.name, Rule: -1, Reason: DropVLAN.String()})
			continue
		}
		if as := d.eacl.Load(); as != nil {
			var k flowKey
			parseFlow(data, l3, et, &k, true)
			i, act := as.match(&k)
			why := fmt.Sprintf("rule %d matched", i)
			rule := i
			if i == len(as.rules) {
				why, rule = fmt.Sprintf("no rule of %d matched: default", len(as.rules)), -1
			}
			if act == ACLDeny {
				t.step("egress-acl", "drop", "port %s: %s: deny (drop reason %q, counted on %s)", d.name, why, DropACL.String(), d.name)
				res.Denied = append(res.Denied, TraceDenied{Port: d.name, Rule: rule, Reason: DropACL.String()})
				continue
			}
			t.step("egress-acl", "pass", "port %s: %s: allow", d.name, why)
		}
		if set := d.sg.Load(); set != nil {
			r, why := set.explain(data, l3, et, conntrack.Inbound, now)
			if r != dropNone {
				t.step("egress-security-group", "drop", "port %s: %s, counted on %s", d.name, why, d.name)
				res.Denied = append(res.Denied, TraceDenied{Port: d.name, Rule: -1, Reason: r.String()})
				continue
			}
			t.step("egress-security-group", "pass", "port %s: %s", d.name, why)
		}
		o := TraceOutput{Port: d.name, VLAN: p.vid, Tagged: tagged, PCP: p.pcp, Shaped: d.shaper.active.Load()}
		how := "untagged"
		if tagged {
			o.TPID = p.tpid
			how = fmt.Sprintf("tagged TPID %#04x VID %d PCP %d", p.tpid, p.vid, p.pcp)
		}
		if o.Shaped {
			how += ", through its egress shaper"
		}
		t.step("egress", "forward", "port %s (%s): %s", d.name, dst.mode, how)
		res.Outputs = append(res.Outputs, o)
	}
	if len(res.Outputs) == 0 {
		t.step("result", "none", "no output port")
	}
	return res, nil
}

// allowedWhy describes the port's allowed source MACs.
func allowedWhy(st *portState, h *PortHandle) string {
	switch {
	case st.own != 0 && len(st.cfg.AllowedMACs) > 0:
		return fmt.Sprintf("the port's own MAC %v (port security) or in its allowed MACs", h.mac)
	case st.own != 0:
		return fmt.Sprintf("the port's own MAC %v (port security)", h.mac)
	}
	return "in the port's allowed MACs"
}

// noAllowedWhy says why the port accepts any source MAC.
func noAllowedWhy(st *portState, h *PortHandle) string {
	if h.mac != (MAC{}) && st.cfg.PortSecurity == PortSecurityOff {
		return fmt.Sprintf("port security off: any source, though the port's MAC is %v", h.mac)
	}
	return "no allowed-MAC list"
}

// ingressWhy describes the frame's tag as the port's mode sees it.
func ingressWhy(st *portState, data []byte) string {
	tag := "untagged frame"
	if len(data) >= 18 {
		if et := binary.BigEndian.Uint16(data[12:]); et == tpidCTag || et == tpidSTag {
			tci := binary.BigEndian.Uint16(data[14:])
			tag = fmt.Sprintf("frame tagged TPID %#04x VID %d", et, tci&0xfff)
			if tci&0xfff == 0 {
				tag = fmt.Sprintf("priority-tagged frame (TPID %#04x)", et)
			}
		}
	}
	switch st.mode {
	case ModeAccess:
		return fmt.Sprintf("%s on access port (PVID %d)", tag, st.pvid)
	case ModeTrunk:
		var vl []uint16
		st.vlans.each(func(v uint16) { vl = append(vl, v) })
		return fmt.Sprintf("%s on trunk port (allowed VLANs %v, native %d)", tag, vl, st.native)
	}
	return fmt.Sprintf("%s on dot1q-tunnel port (S-VLAN %d)", tag, st.pvid)
}
