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

// benchKey is the i-th FDB key of the lookup benchmark, computed rather
// than read from a table so that the benchmark loop touches no memory but
// the FDB's.
func benchKey(i uint32) uint64 {
	m := MAC{2, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
	return fdbKey(uint16(1+i%4094), m[:])
}

// BenchmarkFDBLookup looks up random keys (a xorshift sequence over the
// populated ones) in an FDB of 1 Ki and 1 Mi entries.
func BenchmarkFDBLookup(b *testing.B) {
	for _, n := range []int{1 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%d", n), func(b *testing.B) {
			t := newFDB(int64(defaultAgingTime))
			h := &PortHandle{name: "p"}
			for i := range n {
				t.learn(benchKey(uint32(i)), h, 0, false, 1)
			}
			if t.size() != n {
				b.Fatalf("size %d, want %d", t.size(), n)
			}
			b.ReportAllocs()
			b.ResetTimer()
			var hit int
			x := uint32(0x9e3779b9)
			mask := uint32(n - 1)
			for i := 0; i < b.N; i++ {
				x ^= x << 13 // xorshift32 (Marsaglia): consecutive keys are unrelated
				x ^= x >> 17
				x ^= x << 5
				if t.lookup(benchKey(x&mask), 2) == h {
					hit++
				}
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

// BenchmarkForwardFlows forwards batches of 64 frames that are 64 distinct
// flows (distinct source and destination MACs, drawn at random from the
// entries learned) between two access ports, with 1 Ki and 1 Mi learned
// MACs per side: every frame pays one FDB refresh (source) and one FDB
// lookup (destination), which the per-batch caches cannot hide.
func BenchmarkForwardFlows(b *testing.B) {
	for _, n := range []int{1 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%d", n), func(b *testing.B) {
			sw := New(Config{Clock: NewManualClock(1), FDBMaxEntries: 4 * n})
			in, err := sw.AddPort(access("p0", 10), nullPort{})
			if err != nil {
				b.Fatal(err)
			}
			out, err := sw.AddPort(access("p1", 10), nullPort{})
			if err != nil {
				b.Fatal(err)
			}
			flowMAC := func(side byte, i uint32) MAC {
				return MAC{2, side, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
			}
			for i := range uint32(n) {
				src, dst := flowMAC(0, i), flowMAC(1, i)
				sw.fdb.learn(fdbKey(10, src[:]), in, 0, false, 1)
				sw.fdb.learn(fdbKey(10, dst[:]), out, 0, false, 1)
			}
			batch := make([]Frame, benchBatch)
			for i := range batch {
				batch[i].Data = eth(flowMAC(1, 0), flowMAC(0, 0), 0x0800, 50)
			}
			mask := uint32(n - 1)
			x := uint32(0x9e3779b9)
			b.ReportAllocs()
			b.ResetTimer()
			for k := 0; k < b.N; k += benchBatch {
				for i := range batch { // 64 new random flows: 12 byte stores each
					x ^= x << 13
					x ^= x >> 17
					x ^= x << 5
					d := batch[i].Data
					s, t := x&mask, (x>>10^x)&mask
					d[2], d[3], d[4], d[5] = byte(t>>24), byte(t>>16), byte(t>>8), byte(t)
					d[8], d[9], d[10], d[11] = byte(s>>24), byte(s>>16), byte(s>>8), byte(s)
				}
				in.Input(batch)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mpps")
			if c := in.Counters(); c.Drops != [NumDropReasons]uint64{} {
				b.Fatalf("drops %v", c.Drops)
			}
			if c := out.Counters(); c.TxPackets < uint64(b.N) {
				b.Fatalf("sent %d of %d", c.TxPackets, b.N)
			}
			if sz := sw.SwitchCounters().FDBEntries; sz != 2*n {
				b.Fatalf("FDB has %d entries; want %d (a frame was flooded or learned anew)", sz, 2*n)
			}
		})
	}
}

// BenchmarkRandomRead is the memory floor for BenchmarkFDBLookup: one
// dependent-free random 8-byte read per iteration from an array as big as
// the FDB's tables for 1 Mi entries (64 MiB), and from one of 32 KiB.
func BenchmarkRandomRead(b *testing.B) {
	for _, size := range []int{32 << 10, 64 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			mem := make([]uint64, size/8)
			mask := uint32(len(mem) - 1)
			x := uint32(0x9e3779b9)
			var sum uint64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				x ^= x << 13
				x ^= x >> 17
				x ^= x << 5
				sum += mem[x&mask]
			}
			if sum != 0 {
				b.Fatal("nonzero")
			}
		})
	}
}
