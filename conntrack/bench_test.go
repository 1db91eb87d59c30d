package conntrack

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
)

// benchFlow is an established IPv4 TCP connection (window scaling on)
// with a data frame from the guest and an ACK frame from the remote
// whose sequence numbers are advanced in place.
type benchFlow struct {
	z              *Zone
	data, ack      []byte
	dataL3, ackL3  int
	seq, rseq, win uint32
	now            int64
}

func newBenchFlow(b *testing.B, z *Zone, gp uint16) *benchFlow {
	c := newTCPTest(nil, z, false, 1000, 5000)
	c.gp = gp
	c.guest.ws, c.remote.ws = 7, 7
	for _, s := range []struct {
		e     *tcpEp
		flags uint8
	}{{c.guest, FlagSYN}, {c.remote, FlagSYN | FlagACK}, {c.guest, FlagACK}} {
		if v := c.send(s.e, s.flags, 0, true); v == Invalid {
			b.Fatal("handshake")
		}
	}
	f := &benchFlow{z: z, seq: c.guest.nxt, rseq: c.remote.nxt, now: c.now}
	f.data, f.dataL3 = eth(EtherTypeIPv4, ip4(c.g, c.r, protoTCP, tcpseg{sport: c.gp, dport: c.rp, seq: f.seq,
		ack: c.guest.rcv, flags: FlagACK | FlagPSH, win: 2048, wscale: -1, ts: true, paylen: 1448}.bytes(), ip4opts{df: true}), false)
	f.ack, f.ackL3 = eth(EtherTypeIPv4, ip4(c.r, c.g, protoTCP, tcpseg{sport: c.rp, dport: c.gp, seq: f.rseq,
		ack: f.seq, flags: FlagACK, win: 2048, wscale: -1, ts: true}.bytes(), ip4opts{df: true}), false)
	return f
}

// frame processes the i-th frame of the flow: data segments, an ACK
// every 8th.
func (f *benchFlow) frame(i int, p *Packet) Verdict {
	if i%8 == 7 {
		bin.PutUint32(f.ack[f.ackL3+20+8:], f.seq)
		Parse(f.ack, f.ackL3, EtherTypeIPv4, Inbound, p)
	} else {
		bin.PutUint32(f.data[f.dataL3+20+4:], f.seq)
		f.seq += 1448
		Parse(f.data, f.dataL3, EtherTypeIPv4, Outbound, p)
	}
	return f.z.Track(p, f.now)
}

// BenchmarkTrackEstablished: Parse+Track of the frames of an
// established TCP bulk transfer (data segments, an ACK every 8th).
func BenchmarkTrackEstablished(b *testing.B) {
	z := newZone(b, Config{})
	f := newBenchFlow(b, z, 40000)
	var p Packet
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if v := f.frame(i, &p); v != Established && v != Reply {
			b.Fatalf("frame %d: %v", i, v)
		}
		i++
	}
}

// BenchmarkTrackEstablishedFast: the same frames through TrackFast
// (the switch's path for them), with a HintCache.
func BenchmarkTrackEstablishedFast(b *testing.B) {
	z := newZone(b, Config{})
	f := newBenchFlow(b, z, 40000)
	var hc HintCache
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		var v Verdict
		var ok bool
		if i%8 == 7 {
			bin.PutUint32(f.ack[f.ackL3+20+8:], f.seq)
			v, ok = z.TrackFast(f.ack, len(f.ack), f.ackL3, EtherTypeIPv4, Inbound, f.now, &hc)
		} else {
			bin.PutUint32(f.data[f.dataL3+20+4:], f.seq)
			f.seq += 1448
			v, ok = z.TrackFast(f.data, len(f.data), f.dataL3, EtherTypeIPv4, Outbound, f.now, &hc)
		}
		if !ok || v != Established && v != Reply {
			b.Fatalf("frame %d: %v %v", i, v, ok)
		}
		i++
	}
}

// BenchmarkTrackFlows: segments of 1 or 64 established connections
// (loose pickups, as the switch's BenchmarkSecurityGroup opens them),
// the 64 interleaved in each train of 64 frames; fast: TrackFast with a
// HintCache (the switch's path), general: ParseHead and TrackHint with
// a Hint.
func BenchmarkTrackFlows(b *testing.B) {
	for _, flows := range []int{1, 64} {
		for _, fast := range []bool{true, false} {
			name := fmt.Sprintf("%dflows/general", flows)
			if fast {
				name = fmt.Sprintf("%dflows/fast", flows)
			}
			b.Run(name, func(b *testing.B) {
				z := newZone(b, Config{})
				frames := make([][]byte, 64)
				var p Packet
				for i := range frames {
					g := fmt.Sprintf("10.0.1.%d", 1)
					r := fmt.Sprintf("10.0.0.%d", 1+i%flows)
					frames[i], _ = eth(EtherTypeIPv4, ip4(g, r, protoTCP, tcpseg{sport: uint16(40000 + i%flows), dport: 80, seq: 1000, ack: 5000, flags: FlagACK | FlagPSH, win: 2048, wscale: -1, paylen: 10}.bytes(), ip4opts{}), false)
					rep, _ := eth(EtherTypeIPv4, ip4(r, g, protoTCP, tcpseg{sport: 80, dport: uint16(40000 + i%flows), seq: 5000, ack: 1010, flags: FlagACK | FlagPSH, win: 2048, wscale: -1, paylen: 10}.bytes(), ip4opts{}), false)
					Parse(frames[i], 14, EtherTypeIPv4, Outbound, &p)
					if v := z.Track(&p, sec); v == New {
						z.Commit(&p, sec)
					}
					Parse(rep, 14, EtherTypeIPv4, Inbound, &p)
					z.Track(&p, sec)
				}
				var hc HintCache
				var h Hint
				b.ReportAllocs()
				b.ResetTimer()
				for k := 0; k < b.N; k += 64 {
					for _, f := range frames {
						if fast {
							if v, ok := z.TrackFast(f, len(f), 14, EtherTypeIPv4, Outbound, sec, &hc); !ok || v != Established {
								b.Fatal(v, ok)
							}
						} else {
							ParseHead(f, len(f), 14, EtherTypeIPv4, Outbound, &p)
							if v := z.TrackHint(&p, sec, &h); v != Established {
								b.Fatal(v)
							}
						}
					}
				}
			})
		}
	}
}

// BenchmarkTrackEstablishedParallel: the same, one flow per goroutine,
// all in one zone.
func BenchmarkTrackEstablishedParallel(b *testing.B) {
	z := newZone(b, Config{})
	var port atomic.Uint32
	port.Store(20000)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		f := newBenchFlow(b, z, uint16(port.Add(1)))
		var p Packet
		i := 0
		for pb.Next() {
			if v := f.frame(i, &p); v != Established && v != Reply {
				b.Errorf("frame %d: %v", i, v)
				return
			}
			i++
		}
	})
}

// BenchmarkParse: Parse of a TCP data segment with timestamps.
func BenchmarkParse(b *testing.B) {
	for _, v6 := range []bool{false, true} {
		name := "ipv4"
		var l3 []byte
		seg := tcpseg{sport: 40000, dport: 443, seq: 1, ack: 2, flags: FlagACK, win: 2048, wscale: -1, ts: true, paylen: 1448}.bytes()
		et := uint16(EtherTypeIPv4)
		if v6 {
			name, et = "ipv6", EtherTypeIPv6
			l3 = ip6(guest6, remote6, nil, protoTCP, seg)
		} else {
			l3 = ip4(guest4, remote4, protoTCP, seg, ip4opts{df: true})
		}
		f, off := eth(et, l3, false)
		b.Run(name, func(b *testing.B) {
			var p Packet
			b.ReportAllocs()
			for b.Loop() {
				Parse(f, off, et, Outbound, &p)
			}
			if p.Kind != KindTCP {
				b.Fatal(p.Kind)
			}
		})
	}
}

// BenchmarkNewConnections: Parse+Track+Commit of SYNs with unique keys
// (each a new connection), in one zone, flushed every million.
func BenchmarkNewConnections(b *testing.B) {
	const flushEvery = 1 << 20
	tb := NewTable(Config{ZoneLimit: flushEvery, TableLimit: flushEvery})
	z := tb.NewZone()
	f, off := eth(EtherTypeIPv4, ip4(remote4, guest4, protoTCP, tcpseg{dport: 80, seq: 1, flags: FlagSYN, win: 64240, wscale: 7}.bytes(), ip4opts{df: true}), false)
	var p Packet
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i%flushEvery == 0 {
			z.Flush()
		}
		bin.PutUint16(f[off+20:], uint16(i))         // source port
		bin.PutUint16(f[off+12+2:], uint16(i>>16)+1) // source address, low half
		Parse(f, off, EtherTypeIPv4, Inbound, &p)
		if v := z.Track(&p, sec); v != New {
			b.Fatalf("%d: %v", i, v)
		}
		if !z.Commit(&p, sec) {
			b.Fatalf("%d: commit", i)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
}

// BenchmarkLookup1M: a million UDP entries over 16 zones; reports the
// heap per entry and the cost of Track on a random one of them (cache
// misses included; Parse excluded).
func BenchmarkLookup1M(b *testing.B) {
	const zones, perZone = 16, 1 << 16
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	tb := NewTable(Config{ZoneLimit: perZone, TableLimit: zones * perZone})
	zs := make([]*Zone, zones)
	for i := range zs {
		zs[i] = tb.NewZone()
	}
	var p Packet
	f, off := eth(EtherTypeIPv4, ip4(guest4, remote4, protoUDP, udp(0, 53, 32), ip4opts{}), false)
	for i := range zones * perZone {
		bin.PutUint16(f[off+20:], uint16(i))
		bin.PutUint16(f[off+16+2:], uint16(i>>16)) // destination, low half
		Parse(f, off, EtherTypeIPv4, Outbound, &p)
		if !zs[i>>16].Commit(&p, sec) {
			b.Fatal("commit")
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	if tb.Len() != zones*perZone {
		b.Fatalf("%d entries", tb.Len())
	}
	perEntry := float64(ms1.HeapAlloc-ms0.HeapAlloc) / float64(zones*perZone)
	// Packets of random entries, parsed in advance.
	const nkeys = 1 << 16
	ps := make([]Packet, nkeys)
	for j := range ps {
		i := rand.IntN(zones * perZone)
		bin.PutUint16(f[off+20:], uint16(i))
		bin.PutUint16(f[off+16+2:], uint16(i>>16))
		Parse(f, off, EtherTypeIPv4, Outbound, &ps[j])
	}
	b.ReportAllocs()
	b.ResetTimer()
	j := 0
	for b.Loop() {
		pk := &ps[j&(nkeys-1)]
		z := zs[bin.Uint16(pk.Key.Remote[14:])]
		if z.Track(pk, 2*sec) != Established {
			b.Fatal("lookup")
		}
		j++
	}
	b.ReportMetric(perEntry, "bytes/entry")
	runtime.KeepAlive(zs)
}
