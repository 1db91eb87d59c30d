package vswitch

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/hvnet/hvnet/internal/pktbuild"
)

// BenchmarkFlowExport forwards batches of 64 64-byte UDP frames between
// two access ports with the flow cache off and on: the frames belong to
// 1, 64 or 4096 flows (source ports cycling), IPv4 or IPv6; "sampled"
// counts one frame in 100. The difference between "off" and the others is
// the per-frame cost of flow accounting (BENCHMARKS.md, "Flow export").
func BenchmarkFlowExport(b *testing.B) {
	type cse struct {
		name     string
		on       bool
		flows    int
		v6       bool
		sampling int
	}
	cases := []cse{
		{"off", false, 64, false, 0},
		{"on-1flow", true, 1, false, 0},
		{"on-64flows", true, 64, false, 0},
		{"on-4096flows", true, 4096, false, 0},
		{"on-64flows-v6", true, 64, true, 0},
		{"on-4096flows-sampled100", true, 4096, false, 100},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			sw := New(Config{Clock: NewManualClock(1)})
			in, _ := sw.AddPort(access("p0", 10), nullPort{})
			out, _ := sw.AddPort(access("p1", 10), nullPort{})
			if c.on {
				if err := sw.EnableFlows(FlowConfig{Sampling: c.sampling}); err != nil {
					b.Fatal(err)
				}
			}
			src, dst := mac(1), mac(2)
			out.Input([]Frame{{Data: eth(src, dst, 0x0806, 46)}})
			sip, dip := "10.0.0.1", "10.0.0.2"
			if c.v6 {
				sip, dip = "fd00::1", "fd00::2"
			}
			// A ring of batches covering every flow once.
			nb := max(1, c.flows/benchBatch)
			batches := make([][]Frame, nb)
			for j := range batches {
				batches[j] = make([]Frame, benchBatch)
				for i := range batches[j] {
					f := pktbuild.Frame{Dst: dst, Src: src, SrcIP: netip.MustParseAddr(sip), DstIP: netip.MustParseAddr(dip),
						Proto: pktbuild.UDP, SPort: uint16(1000 + (j*benchBatch+i)%c.flows), DPort: 53, Size: 64}
					if c.v6 {
						f.Size = 84
					}
					batches[j][i].Data = f.Bytes()
				}
			}
			sw.DrainFlows(nil) // the learning frame's flow
			for _, bt := range batches {
				in.Input(bt)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for n, j := 0, 0; n < b.N; n, j = n+benchBatch, (j+1)%nb {
				in.Input(batches[j])
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mpps")
			if st := sw.FlowStats(); c.on && c.sampling == 0 && (st.Active != int64(c.flows) || st.Full != 0) {
				b.Fatalf("stats %+v, want %d flows", st, c.flows)
			}
		})
	}
}

// BenchmarkFlowExpireScan is the exporter's scan of a port's shard
// holding n flows, none due, and how long each of its holds of the port's
// input lock lasts (a chunk of flowScanChunk slots).
func BenchmarkFlowExpireScan(b *testing.B) {
	for _, n := range []int{1 << 10, 1 << 16} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			sw := New(Config{Clock: NewManualClock(1)})
			in, _ := sw.AddPort(access("p0", 10), nullPort{})
			out, _ := sw.AddPort(access("p1", 10), nullPort{})
			sw.EnableFlows(FlowConfig{MaxFlows: n})
			src, dst := mac(1), mac(2)
			out.Input([]Frame{{Data: eth(src, dst, 0x0806, 46)}})
			sw.DrainFlows(nil)
			batch := make([]Frame, benchBatch)
			for k := 0; k < n; k += benchBatch {
				for i := range batch {
					x := k + i
					batch[i].Data = pktbuild.Frame{Dst: dst, Src: src, SrcIP: netip.AddrFrom4([4]byte{10, 0, byte(x >> 8), byte(x)}),
						DstIP: netip.MustParseAddr("10.1.0.1"), Proto: pktbuild.UDP, SPort: 1, DPort: 53, Size: 64}.Bytes()
				}
				in.Input(batch)
			}
			if st := sw.FlowStats(); st.Active != int64(n) {
				b.Fatalf("%d flows", st.Active)
			}
			buf := make([]FlowRecord, 0, 16)
			b.ResetTimer()
			for range b.N {
				buf = sw.ExpireFlows(time.Hour, time.Hour, buf[:0])
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/flow")
			chunks := (len(in.flows.tab) + flowScanChunk - 1) / flowScanChunk
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(chunks), "µs/lock-hold")
		})
	}
}
