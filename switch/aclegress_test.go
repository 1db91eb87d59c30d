package vswitch

import (
	"fmt"
	"net/netip"
	"testing"
)

// TestEgressACLFlood: c's egress ACL denies DNS. A flooded DNS frame from
// a still reaches b (the check is per destination), a unicast one to c is
// dropped; the drops count on c, the hits on c's rules; other traffic
// passes; the ingress ACL of a is not involved.
func TestEgressACLFlood(t *testing.T) {
	ts := newTestSwitch(t, access("a", 10), access("b", 10), trunk("c", 0, 10))
	err := ts.sw.SetEgressACL("c", ACL{Rules: []ACLRule{
		{Action: ACLDeny, Proto: 17, DstPort: PortRange{53, 53}},
		{Action: ACLAllow, Proto: 17},
	}, Default: ACLAllow})
	if err != nil {
		t.Fatal(err)
	}
	dnsBcast := testPkt{dst: Broadcast, src: mac(1), sip: "10.0.0.1", dip: "10.0.0.255", proto: 17, sport: 5000, dpt: 53}
	ntp := dnsBcast
	ntp.dpt = 123
	ts.in("a", dnsBcast.bytes(), dnsBcast.bytes(), ntp.bytes())
	if b, c := len(ts.s["b"].take()), len(ts.s["c"].take()); b != 3 || c != 1 {
		t.Errorf("flood: b got %d, c got %d; want 3 and 1 (ntp only)", b, c)
	}
	// c learns its MAC; a's DNS to it is unicast and denied, ARP passes
	// (no rule matches: default allow).
	ts.in("c", tag(eth(Broadcast, mac(3), 0x0806, 46), tpidCTag, 0, 10))
	ts.s["a"].take()
	ts.s["b"].take()
	dns := testPkt{dst: mac(3), src: mac(1), sip: "10.0.0.1", dip: "10.0.0.3", proto: 17, sport: 5000, dpt: 53}
	ts.in("a", dns.bytes(), eth(mac(3), mac(1), 0x0806, 46))
	if c := ts.s["c"].take(); len(c) != 1 {
		t.Errorf("unicast: c got %d frames; want 1 (the ARP)", len(c))
	}
	if got := ts.drops("c", DropACL); got != 3 {
		t.Errorf("c's acl drops = %d; want 3", got)
	}
	if got := ts.drops("a", DropACL) + ts.drops("b", DropACL); got != 0 {
		t.Errorf("acl drops on a and b = %d; want 0", got)
	}
	a, hits := ts.h["c"].EgressACL()
	if len(a.Rules) != 2 {
		t.Fatalf("EgressACL = %+v", a)
	}
	if want := (ACLHits{Rules: []uint64{3, 1}, Default: 1}); fmt.Sprint(hits) != fmt.Sprint(want) {
		t.Errorf("hits = %v; want %v", hits, want)
	}
	if in, _ := ts.h["c"].ACL(); len(in.Rules) != 0 {
		t.Errorf("the ingress ACL of c changed: %+v", in)
	}
	// c's own frames are not checked against its egress list.
	ts.in("c", tag(testPkt{dst: mac(1), src: mac(3), sip: "10.0.0.3", dip: "10.0.0.1", proto: 17, dpt: 53}.bytes(), tpidCTag, 0, 10))
	if got := len(ts.s["a"].take()); got != 1 {
		t.Errorf("a got %d of c's DNS frames; want 1", got)
	}
}

// TestEgressACLLiveChange: replacing an egress ACL takes effect on the
// next batch even for flows whose verdict is cached, and two ports'
// different verdicts for one flow do not mix in the ingress port's cache.
func TestEgressACLLiveChange(t *testing.T) {
	ts := newTestSwitch(t, access("a", 1), access("b", 1), access("c", 1))
	f := testPkt{dst: Broadcast, src: mac(1), sip: "10.0.0.1", dip: "10.0.0.9", proto: 6, dpt: 80}.bytes()
	deny := ACL{Rules: []ACLRule{{Action: ACLDeny, Proto: 6}}}
	allow := ACL{Rules: []ACLRule{{Action: ACLAllow, Proto: 6}}, Default: ACLDeny}
	if err := ts.sw.SetEgressACL("b", deny); err != nil {
		t.Fatal(err)
	}
	if err := ts.sw.SetEgressACL("c", allow); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		ts.in("a", f, f)
		if b, c := len(ts.s["b"].take()), len(ts.s["c"].take()); b != 0 || c != 2 {
			t.Fatalf("b got %d, c got %d; want 0 and 2", b, c)
		}
	}
	if err := ts.sw.SetEgressACL("b", allow); err != nil {
		t.Fatal(err)
	}
	if err := ts.sw.SetEgressACL("c", deny); err != nil {
		t.Fatal(err)
	}
	ts.in("a", f)
	if b, c := len(ts.s["b"].take()), len(ts.s["c"].take()); b != 1 || c != 0 {
		t.Errorf("after the swap b got %d, c got %d; want 1 and 0", b, c)
	}
	if _, h := ts.h["b"].EgressACL(); h.Rules[0] != 1 {
		t.Errorf("b's hits after the change = %v; want the new set's only", h)
	}
	if err := ts.sw.SetEgressACL("c", ACL{}); err != nil {
		t.Fatal(err)
	}
	ts.in("a", f)
	if c := len(ts.s["c"].take()); c != 1 {
		t.Errorf("after removing c's egress ACL c got %d; want 1", c)
	}
	if err := ts.sw.SetEgressACL("nope", deny); err == nil {
		t.Error("SetEgressACL on a missing port succeeded")
	}
	if err := ts.sw.SetEgressACL("b", ACL{Rules: []ACLRule{{Action: ACLAllow, DstPort: PortRange{5, 1}, Proto: 6}}}); err == nil {
		t.Error("SetEgressACL took an empty port range")
	}
}

// TestEgressACLTrace: Trace names the destination whose egress ACL
// denies, with the rule, and still lists the other outputs.
func TestEgressACLTrace(t *testing.T) {
	ts := newTestSwitch(t, access("a", 1), access("b", 1), access("c", 1))
	if err := ts.sw.SetEgressACL("c", ACL{Rules: []ACLRule{{Action: ACLAllow, Proto: 6}, {Action: ACLDeny, Proto: 17}}}); err != nil {
		t.Fatal(err)
	}
	res, err := ts.sw.Trace("a", TraceFrame{SrcMAC: mac(1), DstMAC: Broadcast, Proto: 17, DstPort: 53,
		SrcIP: netip.MustParseAddr("10.0.0.1"), DstIP: netip.MustParseAddr("10.0.0.2")})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Outputs) != 1 || res.Outputs[0].Port != "b" || len(res.Denied) != 1 || res.Denied[0] != (TraceDenied{Port: "c", Rule: 1, Reason: "acl"}) {
		t.Errorf("trace outputs %+v denied %+v; want b, and c by rule 1", res.Outputs, res.Denied)
	}
	found := false
	for _, s := range res.Steps {
		if s.Stage == "egress-acl" && s.Verdict == "drop" {
			found = true
		}
	}
	if !found {
		t.Errorf("no egress-acl drop step: %+v", res.Steps)
	}
	if ts.drops("c", DropACL) != 0 {
		t.Error("Trace counted a drop")
	}
}

func TestEgressACLInputAllocatesNothing(t *testing.T) {
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
	if err := ts.sw.SetEgressACL("b", ACL{Rules: rules}); err != nil {
		t.Fatal(err)
	}
	fs := []Frame{{Data: testPkt{dst: mac(2), src: mac(1), sip: "fd00::1", dip: "fd00::2", proto: 17, dpt: 53}.bytes()},
		{Data: testPkt{dst: Broadcast, src: mac(1), sip: "fd00::1", dip: "fd00::2", proto: 17, dpt: 1003}.bytes()}}
	ts.h["a"].Input(fs) // first use allocates the egress cache
	if n := testing.AllocsPerRun(100, func() { ts.h["a"].Input(fs) }); n != 0 {
		t.Errorf("Input allocates %v per call", n)
	}
}
