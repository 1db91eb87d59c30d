package vswitch

import (
	"fmt"
	"net/netip"
	"testing"
)

// BenchmarkForwardACL forwards 64-byte UDP/IPv4 frames between two access
// ports (as BenchmarkForward/2ports-access) with an ingress ACL of 0, 10
// and 100 rules. The realistic worst case: every rule checks protocol,
// destination prefix and destination port, and none matches until the
// last, which allows; the default denies.
func BenchmarkForwardACL(b *testing.B) {
	for _, n := range []int{0, 10, 100} {
		b.Run(fmt.Sprintf("%drules", n), func(b *testing.B) {
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
				if err := sw.SetACL("p0", ACL{Rules: rules, Default: ACLDeny}); err != nil {
					b.Fatal(err)
				}
			}
			f := testPkt{dst: mac(1), src: mac(200), sip: "10.0.0.9", dip: "10.0.0.1", proto: ipProtoUDP, sport: 4000, dpt: 80}.bytes()
			f = append(f, make([]byte, 64-len(f))...)
			batch := make([]Frame, benchBatch)
			for i := range batch {
				batch[i].Data = f
			}
			b.ReportAllocs()
			b.ResetTimer()
			for k := 0; k < b.N; k += benchBatch {
				in.Input(batch)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mpps")
			if d := in.Counters().Drops; d != [NumDropReasons]uint64{} {
				b.Fatalf("drops %v", d)
			}
			if n > 0 {
				if _, h, _ := sw.ACL("p0"); h.Rules[n-1] == 0 || h.Default != 0 {
					b.Fatalf("hits %v", h)
				}
			}
		})
	}
}
