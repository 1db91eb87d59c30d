package vswitch

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func outPorts(r TraceResult) []string {
	out := []string{}
	for _, o := range r.Outputs {
		out = append(out, o.Port)
	}
	return out
}

func hasStep(r TraceResult, stage, verdict, detail string) bool {
	for _, s := range r.Steps {
		if s.Stage == stage && s.Verdict == verdict && strings.Contains(s.Detail, detail) {
			return true
		}
	}
	return false
}

// traceSwitch: a, b, c access VLAN 10; d access VLAN 20; t trunk 10, 20
// (no native); b's MAC learned.
func traceSwitch(t *testing.T) *testSwitch {
	ts := newTestSwitch(t, access("a", 10), access("b", 10), access("c", 10), access("d", 20), trunk("t", 0, 10, 20))
	ts.in("b", eth(Broadcast, mac(2), 0x0800, 50))
	ts.advance(3 * time.Second)
	return ts
}

func TestTrace(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(ts *testSwitch)
		in      string
		f       TraceFrame
		drop    string
		outs    []string
		flooded bool
		step    [3]string // a step that must be there: stage, verdict, detail substring
	}{
		{name: "fdb hit", in: "a", f: TraceFrame{SrcMAC: mac(1), DstMAC: mac(2)},
			outs: []string{"b"}, step: [3]string{"lookup", "hit", "on port b (learned 3s ago)"}},
		{name: "unknown unicast flood", in: "a", f: TraceFrame{SrcMAC: mac(1), DstMAC: mac(9)},
			outs: []string{"b", "c", "t"}, flooded: true, step: [3]string{"lookup", "flood", "FDB miss"}},
		{name: "broadcast", in: "d", f: TraceFrame{SrcMAC: mac(4), DstMAC: Broadcast},
			outs: []string{"t"}, flooded: true, step: [3]string{"lookup", "flood", "broadcast"}},
		{name: "to the ingress port", in: "b", f: TraceFrame{SrcMAC: mac(5), DstMAC: mac(2)},
			outs: []string{}, step: [3]string{"lookup", "filtered", "ingress port"}},
		{name: "tagged frame on access port", in: "a", f: TraceFrame{SrcMAC: mac(1), DstMAC: mac(2), VLAN: 10},
			drop: "vlan", step: [3]string{"ingress", "drop", "tagged TPID 0x8100 VID 10 on access port"}},
		{name: "priority tag on access port", in: "a", f: TraceFrame{SrcMAC: mac(1), DstMAC: mac(2), PriorityTag: true, PCP: 5},
			outs: []string{"b"}, step: [3]string{"ingress", "pass", "PCP 5"}},
		{name: "trunk allowed-list miss", in: "t", f: TraceFrame{SrcMAC: mac(1), DstMAC: mac(2), VLAN: 30},
			drop: "vlan", step: [3]string{"ingress", "drop", "allowed VLANs [10 20]"}},
		{name: "untagged on trunk without native", in: "t", f: TraceFrame{SrcMAC: mac(1), DstMAC: mac(2)},
			drop: "vlan"},
		{name: "trunk tagged to access", in: "t", f: TraceFrame{SrcMAC: mac(7), DstMAC: mac(2), VLAN: 10},
			outs: []string{"b"}, step: [3]string{"egress", "forward", "port b (access): untagged"}},
		{name: "access to trunk tagged", in: "d", f: TraceFrame{SrcMAC: mac(4), DstMAC: mac(9)},
			outs: []string{"t"}, flooded: true, step: [3]string{"egress", "forward", "tagged TPID 0x8100 VID 20"}},
		{name: "acl deny", in: "a", f: TraceFrame{SrcMAC: mac(1), DstMAC: mac(2), SrcIP: netip.MustParseAddr("10.0.0.1"),
			DstIP: netip.MustParseAddr("10.0.0.2"), Proto: 6, DstPort: 22},
			setup: func(ts *testSwitch) {
				ts.sw.SetACL("a", ACL{Rules: []ACLRule{{Action: ACLAllow, Proto: 17}, {Action: ACLDeny, Proto: 6, DstPort: PortRange{22, 22}}}})
			},
			drop: "acl", step: [3]string{"acl", "drop", "rule 1 matched: deny"}},
		{name: "acl allow", in: "a", f: TraceFrame{SrcMAC: mac(1), DstMAC: mac(2), SrcIP: netip.MustParseAddr("fd00::1"),
			DstIP: netip.MustParseAddr("fd00::2"), Proto: 17, DstPort: 53},
			setup: func(ts *testSwitch) {
				ts.sw.SetACL("a", ACL{Default: ACLDeny, Rules: []ACLRule{{Action: ACLAllow, DstIP: netip.MustParsePrefix("fd00::/64"), Proto: 17, DstPort: PortRange{53, 53}}}})
			},
			outs: []string{"b"}, step: [3]string{"acl", "pass", "rule 0 matched: allow"}},
		{name: "acl default deny", in: "a", f: TraceFrame{SrcMAC: mac(1), DstMAC: mac(2), EtherType: 0x0806},
			setup: func(ts *testSwitch) { ts.sw.SetACL("a", ACL{Default: ACLDeny}) },
			drop:  "acl", step: [3]string{"acl", "drop", "default deny"}},
		{name: "mac limit", in: "a", f: TraceFrame{SrcMAC: mac(11), DstMAC: mac(2)},
			setup: func(ts *testSwitch) {
				c := access("a", 10)
				c.MACLimit = 1
				ts.sw.UpdatePort(c)
				ts.in("a", eth(Broadcast, mac(10), 0x0800, 50))
			},
			drop: "mac_limit", step: [3]string{"learning", "drop", "limit is 1"}},
		{name: "mac limit: known source passes", in: "a", f: TraceFrame{SrcMAC: mac(10), DstMAC: mac(2)},
			setup: func(ts *testSwitch) {
				c := access("a", 10)
				c.MACLimit = 1
				ts.sw.UpdatePort(c)
				ts.in("a", eth(Broadcast, mac(10), 0x0800, 50))
			},
			outs: []string{"b"}, step: [3]string{"learning", "pass", "refreshed"}},
		{name: "spoofed", in: "a", f: TraceFrame{SrcMAC: mac(1), DstMAC: mac(2)},
			setup: func(ts *testSwitch) {
				c := access("a", 10)
				c.AllowedMACs = []MAC{mac(3)}
				ts.sw.UpdatePort(c)
			},
			drop: "spoofed"},
		{name: "policer empty", in: "a", f: TraceFrame{SrcMAC: mac(1), DstMAC: mac(2)},
			setup: func(ts *testSwitch) {
				c := access("a", 10)
				c.Ingress = RateLimit{Packets: Bucket{Rate: 1, Burst: 1}}
				ts.sw.UpdatePort(c)
				ts.in("a", eth(mac(2), mac(1), 0x0800, 50)) // takes the only token
			},
			drop: "policer", step: [3]string{"policer", "drop", "out of tokens"}},
		{name: "policer has tokens", in: "a", f: TraceFrame{SrcMAC: mac(1), DstMAC: mac(2)},
			setup: func(ts *testSwitch) {
				c := access("a", 10)
				c.Ingress = RateLimit{Packets: Bucket{Rate: 1, Burst: 1}}
				ts.sw.UpdatePort(c)
			},
			outs: []string{"b"}, step: [3]string{"policer", "pass", "has tokens"}},
		{name: "broadcast storm", in: "a", f: TraceFrame{SrcMAC: mac(1), DstMAC: Broadcast},
			setup: func(ts *testSwitch) {
				c := access("a", 10)
				c.Storm.Broadcast = RateLimit{Packets: Bucket{Rate: 1, Burst: 1}}
				ts.sw.UpdatePort(c)
				ts.in("a", eth(Broadcast, mac(1), 0x0800, 50))
			},
			drop: "storm"},
		{name: "static entry on a port outside the VLAN", in: "a", f: TraceFrame{SrcMAC: mac(1), DstMAC: mac(40)},
			setup: func(ts *testSwitch) { ts.sw.AddStatic("d", 10, mac(40)) },
			outs:  []string{}, step: [3]string{"egress", "filtered", "port d (access): VLAN 10 not in its member set"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := traceSwitch(t)
			if tc.setup != nil {
				tc.setup(ts)
			}
			for _, s := range ts.s {
				s.take()
			}
			before := ts.sw.Counters()
			fdbBefore := ts.sw.FDB()
			hitsBefore := map[string]ACLHits{}
			for n := range ts.h {
				_, hitsBefore[n], _ = ts.sw.ACL(n)
			}
			r, err := ts.sw.Trace(tc.in, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if r.Drop != tc.drop {
				t.Errorf("drop = %q; want %q\n%v", r.Drop, tc.drop, r.Steps)
			}
			if tc.drop == "" {
				if got := outPorts(r); !reflect.DeepEqual(got, tc.outs) {
					t.Errorf("outputs = %v; want %v\n%v", got, tc.outs, r.Steps)
				}
				if r.Flooded != tc.flooded {
					t.Errorf("flooded = %v; want %v", r.Flooded, tc.flooded)
				}
			}
			if tc.step[0] != "" && !hasStep(r, tc.step[0], tc.step[1], tc.step[2]) {
				t.Errorf("no step %v in\n%v", tc.step, r.Steps)
			}
			// A trace changes nothing.
			if after := ts.sw.Counters(); !reflect.DeepEqual(after, before) {
				t.Errorf("counters changed:\n%v\n%v", before, after)
			}
			if after := ts.sw.FDB(); !reflect.DeepEqual(after, fdbBefore) {
				t.Errorf("FDB changed:\n%v\n%v", fdbBefore, after)
			}
			for n := range ts.h {
				if _, h, _ := ts.sw.ACL(n); !reflect.DeepEqual(h, hitsBefore[n]) {
					t.Errorf("acl hits of %s changed", n)
				}
			}
			// And forwarding agrees with it.
			fb, err := tc.f.frameBytes()
			if err != nil {
				t.Fatal(err)
			}
			ts.in(tc.in, fb)
			got := []string{}
			for _, n := range []string{"a", "b", "c", "d", "t"} {
				if len(ts.s[n].take()) > 0 {
					got = append(got, n)
				}
			}
			if tc.drop == "" && !reflect.DeepEqual(got, tc.outs) {
				t.Errorf("forwarding sent to %v; trace said %v", got, tc.outs)
			}
			if tc.drop != "" && len(got) != 0 {
				t.Errorf("forwarding sent to %v; trace said drop %s", got, tc.drop)
			}
		})
	}
}

func TestTraceBadInput(t *testing.T) {
	ts := traceSwitch(t)
	v4, v6 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")
	for _, f := range []TraceFrame{
		{VLAN: 4096},
		{PCP: 8},
		{SrcIP: v4},
		{SrcIP: v4, DstIP: v6},
		{DstPort: 80},
		{SrcIP: v4, DstIP: v4, EtherType: 0x86dd},
		{Size: -1},
	} {
		if _, err := ts.sw.Trace("a", f); err == nil {
			t.Errorf("Trace(%+v) = nil error", f)
		}
	}
	if _, err := ts.sw.Trace("zz", TraceFrame{SrcMAC: mac(1), DstMAC: mac(2)}); err == nil {
		t.Errorf("Trace on a missing port = nil error")
	}
}
