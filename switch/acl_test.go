package vswitch

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"testing"
)

// pkt4 builds, independently of the switch's code, an Ethernet frame with
// optional 802.1Q tags, an IPv4 or IPv6 header (by the addresses' family),
// and a TCP or UDP header with ports.
type testPkt struct {
	dst, src   MAC
	vids       []uint16 // 802.1Q tags, outer first
	sip, dip   string
	proto      uint8
	sport, dpt uint16
	fragOff    uint16 // IPv4 fragment offset (8-byte units)
	v6ext      []byte // IPv6 extension header types to insert before L4
}

func (tp testPkt) bytes() []byte {
	b := append(append([]byte{}, tp.dst[:]...), tp.src[:]...)
	for _, v := range tp.vids {
		b = binary.BigEndian.AppendUint16(b, 0x8100)
		b = binary.BigEndian.AppendUint16(b, v)
	}
	s, d := netip.MustParseAddr(tp.sip), netip.MustParseAddr(tp.dip)
	l4 := make([]byte, 20)
	binary.BigEndian.PutUint16(l4, tp.sport)
	binary.BigEndian.PutUint16(l4[2:], tp.dpt)
	if s.Is4() {
		b = binary.BigEndian.AppendUint16(b, 0x0800)
		ip := make([]byte, 20)
		ip[0], ip[9] = 0x45, tp.proto
		binary.BigEndian.PutUint16(ip[6:], tp.fragOff)
		sa, da := s.As4(), d.As4()
		copy(ip[12:], sa[:])
		copy(ip[16:], da[:])
		return append(append(b, ip...), l4...)
	}
	b = binary.BigEndian.AppendUint16(b, 0x86dd)
	ip := make([]byte, 40)
	ip[0] = 0x60
	sa, da := s.As16(), d.As16()
	copy(ip[8:], sa[:])
	copy(ip[24:], da[:])
	next := tp.proto
	var ext []byte
	for i := len(tp.v6ext) - 1; i >= 0; i-- {
		h := make([]byte, 8)
		h[0] = next
		next = tp.v6ext[i]
		ext = append(h, ext...)
	}
	ip[6] = next
	return append(append(append(b, ip...), ext...), l4...)
}

func TestACLMatch(t *testing.T) {
	base := testPkt{dst: mac(2), src: mac(1), sip: "10.0.0.1", dip: "10.0.1.5", proto: 6, sport: 40000, dpt: 443}
	v6 := testPkt{dst: mac(2), src: mac(1), sip: "fd00::1", dip: "fd00:1::5", proto: 17, sport: 5353, dpt: 53}
	with := func(p testPkt, f func(*testPkt)) testPkt { f(&p); return p }
	pfx := netip.MustParsePrefix
	tests := []struct {
		name string
		rule ACLRule
		pkt  testPkt
		want bool
	}{
		{"empty rule matches all", ACLRule{}, base, true},
		{"ethertype ipv4", ACLRule{EtherType: 0x0800}, base, true},
		{"ethertype ipv6 vs v4", ACLRule{EtherType: 0x86dd}, base, false},
		{"ethertype under two tags", ACLRule{EtherType: 0x0800}, with(base, func(p *testPkt) { p.vids = []uint16{10, 20} }), true},
		{"src mac", ACLRule{SrcMAC: mac(1)}, base, true},
		{"src mac miss", ACLRule{SrcMAC: mac(9)}, base, false},
		{"dst mac", ACLRule{DstMAC: mac(2)}, base, true},
		{"dst mac miss", ACLRule{DstMAC: mac(1)}, base, false},
		{"src v4 /24", ACLRule{SrcIP: pfx("10.0.0.0/24")}, base, true},
		{"src v4 /32 miss", ACLRule{SrcIP: pfx("10.0.0.2/32")}, base, false},
		{"dst v4 /23", ACLRule{DstIP: pfx("10.0.0.0/23")}, base, true},
		{"dst v4 /24 miss", ACLRule{DstIP: pfx("10.0.0.0/24")}, base, false},
		{"v4 /0", ACLRule{DstIP: pfx("0.0.0.0/0")}, base, true},
		{"v4 /0 does not match v6", ACLRule{DstIP: pfx("0.0.0.0/0")}, v6, false},
		{"v6 /0 does not match v4", ACLRule{DstIP: pfx("::/0")}, base, false},
		{"src v6 /64", ACLRule{SrcIP: pfx("fd00::/64")}, v6, true},
		{"dst v6 /32", ACLRule{DstIP: pfx("fd00:1::/32")}, v6, true},
		{"dst v6 /48 miss", ACLRule{DstIP: pfx("fd00:2::/48")}, v6, false},
		{"dst v6 /128", ACLRule{DstIP: pfx("fd00:1::5/128")}, v6, true},
		{"dst v6 /127 miss", ACLRule{DstIP: pfx("fd00:1::6/127")}, v6, false},
		{"proto tcp", ACLRule{Proto: 6}, base, true},
		{"proto udp miss", ACLRule{Proto: 17}, base, false},
		{"dst port exact", ACLRule{Proto: 6, DstPort: PortRange{443, 443}}, base, true},
		{"dst port range", ACLRule{Proto: 6, DstPort: PortRange{400, 500}}, base, true},
		{"dst port range low edge", ACLRule{Proto: 6, DstPort: PortRange{443, 500}}, base, true},
		{"dst port range miss", ACLRule{Proto: 6, DstPort: PortRange{444, 500}}, base, false},
		{"src port range", ACLRule{Proto: 6, SrcPort: PortRange{32768, 65535}}, base, true},
		{"src port range miss", ACLRule{Proto: 6, SrcPort: PortRange{1, 1023}}, base, false},
		{"udp over v6 port", ACLRule{Proto: 17, DstPort: PortRange{53, 53}}, v6, true},
		{"v6 after ext headers", ACLRule{Proto: 17, DstPort: PortRange{53, 53}},
			with(v6, func(p *testPkt) { p.v6ext = []byte{ip6HopByHop, ip6DestOpts} }), true},
		{"tagged v6 prefix+port", ACLRule{DstIP: pfx("fd00:1::/64"), Proto: 17, DstPort: PortRange{53, 53}},
			with(v6, func(p *testPkt) { p.vids = []uint16{7} }), true},
		{"non-first fragment has no ports", ACLRule{Proto: 6, DstPort: PortRange{443, 443}},
			with(base, func(p *testPkt) { p.fragOff = 10 }), false},
		{"non-first fragment still has proto", ACLRule{Proto: 6}, with(base, func(p *testPkt) { p.fragOff = 10 }), true},
		{"all fields", ACLRule{EtherType: 0x0800, SrcMAC: mac(1), DstMAC: mac(2), SrcIP: pfx("10.0.0.0/8"),
			DstIP: pfx("10.0.1.0/24"), Proto: 6, SrcPort: PortRange{40000, 40000}, DstPort: PortRange{1, 1024}}, base, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			set, err := compileACL(ACL{Rules: []ACLRule{tc.rule}, Default: ACLDeny})
			if err != nil {
				t.Fatal(err)
			}
			data := tc.pkt.bytes()
			l3, et := l3Offset(data)
			var k flowKey
			parseFlow(data, l3, et, &k, set.anyL3)
			i, _ := set.match(&k)
			if got := i == 0; got != tc.want {
				t.Errorf("match = %v; want %v (key %+v)", got, tc.want, k)
			}
		})
	}
}

func TestACLRejectsBadRules(t *testing.T) {
	pfx := netip.MustParsePrefix
	for _, r := range []ACLRule{
		{Action: 7},
		{SrcIP: pfx("10.0.0.0/8"), DstIP: pfx("fd00::/8")},
		{EtherType: 0x86dd, SrcIP: pfx("10.0.0.0/8")},
		{DstPort: PortRange{80, 80}},                  // no protocol
		{Proto: 1, DstPort: PortRange{80, 80}},        // ICMP has no ports
		{Proto: 6, DstPort: PortRange{100, 10}},       // empty
		{SrcIP: pfx("::ffff:10.0.0.0/104"), Proto: 6}, // mapped
	} {
		if _, err := compileACL(ACL{Rules: []ACLRule{r}}); err == nil {
			t.Errorf("compileACL(%+v) = nil error", r)
		}
	}
}

// Order, default action, drops, hit counters, through the switch.
func TestACLInSwitch(t *testing.T) {
	ts := newTestSwitch(t, access("a", 10), access("b", 10), trunk("t", 0, 10))
	web := testPkt{dst: mac(2), src: mac(1), sip: "10.0.0.1", dip: "10.0.0.2", proto: 6, sport: 40000, dpt: 80}
	ssh := web
	ssh.dpt = 22
	dns := testPkt{dst: mac(2), src: mac(1), sip: "10.0.0.1", dip: "10.0.0.2", proto: 17, sport: 5000, dpt: 53}
	// b learns first so a's frames are unicast to it.
	ts.in("b", eth(Broadcast, mac(2), 0x0800, 50))
	ts.s["a"].take()
	ts.s["t"].take()
	err := ts.sw.SetACL("a", ACL{Default: ACLDeny, Rules: []ACLRule{
		{Action: ACLDeny, Proto: 6, DstPort: PortRange{22, 22}},
		{Action: ACLAllow, Proto: 6, DstPort: PortRange{1, 1023}}, // shadowed for 22 by rule 0
		{Action: ACLAllow, EtherType: 0x0806},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ts.in("a", web.bytes(), web.bytes(), ssh.bytes(), dns.bytes(), eth(mac(2), mac(1), 0x0806, 46))
	if got := len(ts.s["b"].take()); got != 3 {
		t.Errorf("b got %d frames; want 3 (2 web, 1 arp)", got)
	}
	if got := ts.drops("a", DropACL); got != 2 {
		t.Errorf("acl drops = %d; want 2", got)
	}
	acl, hits, err := ts.sw.ACL("a")
	if err != nil || len(acl.Rules) != 3 || acl.Default != ACLDeny {
		t.Fatalf("ACL = %+v, %v", acl, err)
	}
	if want := (ACLHits{Rules: []uint64{1, 2, 1}, Default: 1}); fmt.Sprint(hits) != fmt.Sprint(want) {
		t.Errorf("hits = %v; want %v", hits, want)
	}
	// Denied frames teach the FDB nothing: a's MAC is learned from
	// allowed frames only; a fresh source that is denied stays unknown.
	ts.in("a", testPkt{dst: mac(2), src: mac(77), sip: "10.0.0.1", dip: "10.0.0.2", proto: 6, dpt: 22}.bytes())
	for _, e := range ts.sw.FDB() {
		if e.MAC == mac(77) {
			t.Errorf("denied source was learned: %+v", e)
		}
	}
	// Removing the ACL restores forwarding and its counters go.
	if err := ts.sw.SetACL("a", ACL{}); err != nil {
		t.Fatal(err)
	}
	ts.in("a", ssh.bytes())
	if got := len(ts.s["b"].take()); got != 1 {
		t.Errorf("after removing the ACL b got %d; want 1", got)
	}
	if _, hits, _ := ts.sw.ACL("a"); len(hits.Rules) != 0 || hits.Default != 0 {
		t.Errorf("hits after removal = %v", hits)
	}
	if err := ts.sw.SetACL("nope", ACL{}); err == nil {
		t.Errorf("SetACL on a missing port succeeded")
	}
}

// A trunk's tagged frames are matched on their inner headers.
func TestACLTaggedFrames(t *testing.T) {
	ts := newTestSwitch(t, trunk("t", 0, 10, 20), access("a", 10), access("b", 20))
	if err := ts.sw.SetACL("t", ACL{Default: ACLAllow, Rules: []ACLRule{
		{Action: ACLDeny, DstIP: netip.MustParsePrefix("10.20.0.0/16")},
	}}); err != nil {
		t.Fatal(err)
	}
	to10 := testPkt{dst: Broadcast, src: mac(1), vids: []uint16{10}, sip: "10.10.0.1", dip: "10.10.0.2", proto: 17}
	to20 := testPkt{dst: Broadcast, src: mac(1), vids: []uint16{20}, sip: "10.20.0.1", dip: "10.20.0.2", proto: 17}
	ts.in("t", to10.bytes(), to20.bytes())
	if got := len(ts.s["a"].take()); got != 1 {
		t.Errorf("a got %d; want 1", got)
	}
	if got := len(ts.s["b"].take()); got != 0 {
		t.Errorf("b got %d; want 0 (denied)", got)
	}
	if got := ts.drops("t", DropACL); got != 1 {
		t.Errorf("acl drops = %d; want 1", got)
	}
}

// The ACL is replaced over and over while ports forward; run with -race.
// Frames are always either forwarded or counted as ACL drops, never lost
// otherwise, and hit counters add up.
func TestACLLiveChange(t *testing.T) {
	ts := newTestSwitch(t, access("a", 1), access("b", 1))
	ts.in("b", eth(Broadcast, mac(2), 0x0800, 50))
	allow := ACL{Rules: []ACLRule{{Action: ACLAllow, Proto: 17}}, Default: ACLDeny}
	deny := ACL{Rules: []ACLRule{{Action: ACLDeny, Proto: 17}}, Default: ACLAllow}
	p := testPkt{dst: mac(2), src: mac(1), sip: "10.0.0.1", dip: "10.0.0.2", proto: 17, sport: 1, dpt: 2}.bytes()
	const batches, batch = 2000, 32
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		fs := make([]Frame, batch)
		for i := range fs {
			fs[i].Data = p
		}
		for range batches {
			ts.h["a"].Input(fs)
		}
	}()
	for i := 0; i < 500; i++ {
		a := allow
		if i%2 == 1 {
			a = deny
		}
		if err := ts.sw.SetACL("a", a); err != nil {
			t.Fatal(err)
		}
		ts.sw.ACL("a")
	}
	wg.Wait()
	c := ts.h["a"].Counters()
	sent := ts.h["b"].Counters().TxPackets
	if c.RxPackets != batches*batch || sent+c.Drops[DropACL] != c.RxPackets {
		t.Errorf("rx %d, forwarded %d + acl drops %d: frames lost", c.RxPackets, sent, c.Drops[DropACL])
	}
	for r, n := range c.Drops {
		if DropReason(r) != DropACL && n != 0 {
			t.Errorf("drops %v = %d", DropReason(r), n)
		}
	}
}

func TestACLInputAllocatesNothing(t *testing.T) {
	ts := newTestSwitch(t, access("a", 1))
	hb, err := ts.sw.AddPort(access("b", 1), nullPort{})
	if err != nil {
		t.Fatal(err)
	}
	hb.Input([]Frame{{Data: eth(Broadcast, mac(2), 0x0800, 50)}})
	rules := make([]ACLRule, 50)
	for i := range rules {
		rules[i] = ACLRule{Action: ACLDeny, Proto: 17, DstPort: PortRange{uint16(1000 + i), uint16(1000 + i)}}
	}
	if err := ts.sw.SetACL("a", ACL{Rules: rules}); err != nil {
		t.Fatal(err)
	}
	fs := []Frame{{Data: testPkt{dst: mac(2), src: mac(1), sip: "fd00::1", dip: "fd00::2", proto: 17, dpt: 53}.bytes()}}
	if n := testing.AllocsPerRun(100, func() { ts.h["a"].Input(fs) }); n != 0 {
		t.Errorf("Input allocates %v per call", n)
	}
}
