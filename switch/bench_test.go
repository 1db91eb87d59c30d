package vswitch

import (
	"fmt"
	"testing"
)

// nullPort accepts and drops everything (it keeps nothing, so copies nothing).
type nullPort struct{ caps Caps }

func (nullPort) Send(frames []Frame) int { return len(frames) }
func (p nullPort) Caps() Caps            { return p.caps }

var _ Port = nullPort{}

const benchBatch = 64

// benchForward sends 64-byte frames from port 0 to the other ports (dst
// MACs round-robin over them, all learned), in batches of 64.
func benchForward(b *testing.B, nports int, in PortConfig, out func(i int) PortConfig, tagged bool) {
	sw := New(Config{Clock: NewManualClock(1)})
	hs := make([]*PortHandle, nports)
	for i := range hs {
		c := out(i)
		if i == 0 {
			c = in
		}
		h, err := sw.AddPort(c, nullPort{})
		if err != nil {
			b.Fatal(err)
		}
		hs[i] = h
	}
	mk := func(dst, src MAC) []byte {
		f := eth(dst, src, 0x0800, 50)
		if tagged {
			f = tag(f, tpidCTag, 0, 10)[:64]
		}
		return f
	}
	// Learn every port's MAC.
	for i := 1; i < nports; i++ {
		f := eth(Broadcast, mac(byte(i)), 0x0800, 50)
		if out(i).Mode == ModeTrunk {
			f = tag(f, tpidCTag, 0, 10)
		}
		hs[i].Input([]Frame{{Data: f}})
	}
	if n := sw.SwitchCounters().FDBEntries; n != nports-1 {
		b.Fatalf("FDB has %d entries; want %d", n, nports-1)
	}
	batch := make([]Frame, benchBatch)
	for i := range batch {
		batch[i].Data = mk(mac(byte(1+i%(nports-1))), mac(200))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n += benchBatch {
		hs[0].Input(batch)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mpps")
	if d := hs[0].Counters().Drops; d != [NumDropReasons]uint64{} {
		b.Fatalf("drops %v", d)
	}
}

func BenchmarkForward(b *testing.B) {
	acc := func(i int) PortConfig { return access(fmt.Sprint("p", i), 10) }
	for _, n := range []int{2, 8} {
		b.Run(fmt.Sprintf("%dports-access", n), func(b *testing.B) {
			benchForward(b, n, acc(0), acc, false)
		})
		b.Run(fmt.Sprintf("%dports-trunk-to-access", n), func(b *testing.B) {
			benchForward(b, n, trunk("p0", 0, 10, 20), acc, true)
		})
		b.Run(fmt.Sprintf("%dports-access-to-trunk", n), func(b *testing.B) {
			benchForward(b, n, acc(0), func(i int) PortConfig { return trunk(fmt.Sprint("p", i), 0, 10, 20) }, false)
		})
	}
}

func BenchmarkFDBLookup(b *testing.B) {
	for _, n := range []int{1 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%d", n), func(b *testing.B) {
			t := newFDB(int64(defaultAgingTime))
			h := &PortHandle{name: "p"}
			keys := make([]uint64, n)
			for i := range keys {
				m := MAC{2, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i), 1}
				keys[i] = fdbKey(uint16(1+i%4094), m[:])
				t.learn(keys[i], h, 0, 1)
			}
			b.ReportAllocs()
			b.ResetTimer()
			var hit int
			// A stride walk so consecutive lookups land on unrelated buckets.
			j := 0
			for i := 0; i < b.N; i++ {
				if t.lookup(keys[j], 2) == h {
					hit++
				}
				j = (j + 7919) % n
			}
			b.StopTimer()
			if hit != b.N {
				b.Fatalf("hits %d of %d", hit, b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mlookups/s")
		})
	}
}

// BenchmarkGSO segments a 64 KiB TCP/IPv4 GSO frame (MSS 1448) for a port
// without offloads, next to a plain copy of the same bytes.
func BenchmarkGSO(b *testing.B) {
	in := tcpFrame(false, nil, 65536-54, 1448, 0x18)
	b.Run("segment", func(b *testing.B) {
		sw := New(Config{Clock: NewManualClock(1)})
		h, _ := sw.AddPort(access("in", 1), nullPort{caps: CapCsum | CapGSOTCPv4})
		if _, err := sw.AddPort(access("out", 1), nullPort{}); err != nil {
			b.Fatal(err)
		}
		sw.AddStatic("out", 1, mac(2))
		batch := []Frame{in}
		b.SetBytes(int64(len(in.Data)))
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			h.Input(batch)
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)*float64(len(in.Data))*8/b.Elapsed().Seconds()/1e9, "Gbit/s")
		if c := sw.Port("out").Counters(); c.TxPackets != uint64(b.N)*46 {
			b.Fatalf("sent %d segments for %d frames", c.TxPackets, b.N)
		}
	})
	b.Run("memcpy", func(b *testing.B) {
		dst := make([]byte, len(in.Data))
		b.SetBytes(int64(len(in.Data)))
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			copy(dst, in.Data)
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)*float64(len(in.Data))*8/b.Elapsed().Seconds()/1e9, "Gbit/s")
	})
}
