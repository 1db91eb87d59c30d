package vswitch

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
)

// BenchmarkForwardACL forwards 64-byte UDP/IPv4 frames between two access
// ports (as BenchmarkForward/2ports-access) with an ingress ACL of 0, 10
// and 100 rules. The realistic worst case for a first-match list: every
// rule checks protocol, destination prefix and destination port, and none
// matches until the last, which allows; the default denies.
//
// Flow mixes (a flow is a destination address in 10.0.0.0/24 and a
// destination port, both fields the rules check, so every flow is a
// different key to the ACL's flow cache):
//   - 1flow: every frame of every batch is the same flow.
//   - 64flows: each batch of 64 holds 64 different flows, the same 64 in
//     every batch (a port serving a few dozen busy connections).
//   - distinct: every frame of the run is a new flow (destination port and
//     address rewritten in place before each batch, about 1 ns a frame,
//     included): the flow cache never hits, the worst case.
//
// The egress cases put the same rules on the output port's egress ACL
// instead (checked per destination after the forwarding decision; 0 rules
// is the same switch either way, so only 10 and 100 are run).
func BenchmarkForwardACL(b *testing.B) {
	for _, n := range []int{0, 10, 100} {
		for _, mix := range []string{"1flow", "64flows", "distinct"} {
			b.Run(fmt.Sprintf("%drules/%s", n, mix), func(b *testing.B) { benchForwardACL(b, n, mix, false) })
		}
	}
	for _, n := range []int{10, 100} {
		for _, mix := range []string{"1flow", "64flows", "distinct"} {
			b.Run(fmt.Sprintf("egress-%drules/%s", n, mix), func(b *testing.B) { benchForwardACL(b, n, mix, true) })
		}
	}
}

func benchForwardACL(b *testing.B, n int, mix string, egress bool) {
	sw := New(Config{Clock: NewManualClock(1)})
	in, err := sw.AddPort(access("p0", 10), nullPort{})
	if err != nil {
		b.Fatal(err)
	}
	out, err := sw.AddPort(access("p1", 10), nullPort{})
	if err != nil {
		b.Fatal(err)
	}
	out.Input([]Frame{{Data: eth(Broadcast, mac(1), 0x0800, 50)}})
	if n > 0 {
		rules := make([]ACLRule, n)
		for i := range rules[:n-1] {
			rules[i] = ACLRule{Action: ACLDeny, Proto: ipProtoUDP, DstIP: netip.MustParsePrefix("10.0.0.0/24"),
				DstPort: PortRange{uint16(1000 + i), uint16(1000 + i)}}
		}
		rules[n-1] = ACLRule{Action: ACLAllow, Proto: ipProtoUDP, DstIP: netip.MustParsePrefix("10.0.0.0/24")}
		set, port := sw.SetACL, "p0"
		if egress {
			set, port = sw.SetEgressACL, "p1"
		}
		if err := set(port, ACL{Rules: rules, Default: ACLDeny}); err != nil {
			b.Fatal(err)
		}
	}
	// Offsets in an untagged UDP/IPv4 frame with a 20-byte IP header.
	const dipLow, dport = 14 + 19, 14 + 20 + 2
	batch := make([]Frame, benchBatch)
	for i := range batch {
		f := testPkt{dst: mac(1), src: mac(200), sip: "10.0.0.9", dip: "10.0.0.1", proto: ipProtoUDP, sport: 4000, dpt: 80}.bytes()
		f = append(f, make([]byte, 64-len(f))...)
		if mix != "1flow" {
			f[dipLow] = byte(1 + i)
			binary.BigEndian.PutUint16(f[dport:], uint16(2000+i))
		}
		batch[i].Data = f
	}
	var flow uint32
	b.ReportAllocs()
	b.ResetTimer()
	for k := 0; k < b.N; k += benchBatch {
		if mix == "distinct" {
			// 250 addresses x 60000 ports, none in the deny rules' 1000-1098.
			for i := range batch {
				flow++
				batch[i].Data[dipLow] = byte(1 + flow%250)
				binary.BigEndian.PutUint16(batch[i].Data[dport:], uint16(2000+flow/250%60000))
			}
		}
		in.Input(batch)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mpps")
	misses := in.ingress(0).sc.aclMisses
	if egress {
		misses = in.ingress(0).sc.eaclMisses
	}
	b.ReportMetric(float64(misses)/float64(b.N), "misses/frame")
	if d, o := in.Counters().Drops, out.Counters().Drops; d != [NumDropReasons]uint64{} || o != [NumDropReasons]uint64{} {
		b.Fatalf("drops %v, %v", d, o)
	}
	if n > 0 {
		_, h, _ := sw.ACL("p0")
		if egress {
			_, h = out.EgressACL()
		}
		if h.Rules[n-1] == 0 || h.Default != 0 {
			b.Fatalf("hits %v", h)
		}
	}
}
