package vswitch

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// Hostile peers at the switch level: VLAN hopping, MAC flood,
// broadcast storm. Each attack is followed by a check that the other
// ports still work, and that each dropped frame shows in a counter.

// vidOf returns the outer VLAN of an emitted frame, or 0 when untagged.
func vidOf(f []byte) uint16 {
	if tp := binary.BigEndian.Uint16(f[12:]); tp == tpidCTag || tp == tpidSTag {
		return binary.BigEndian.Uint16(f[14:]) & 0xfff
	}
	return 0
}

func TestVLANHopping(t *testing.T) {
	a := access("a10", 10)
	a.AllowedMACs = []MAC{mac(1)}
	ts := newTestSwitch(t, a, access("b10", 10), access("v20", 20),
		trunk("trk", 0, 10, 20), trunk("nat", 10, 10, 20))
	// The victim in VLAN 20 has been heard from (its MAC is learned there).
	ts.in("v20", eth(Broadcast, mac(20), 0x0800, 46))
	for _, p := range []string{"b10", "trk", "nat", "a10"} {
		ts.s[p].take()
	}
	bc := eth(Broadcast, mac(1), 0x0800, 46)
	toVictim := eth(mac(20), mac(1), 0x0800, 46)
	for _, tc := range []struct {
		name  string
		frame []byte
		drop  DropReason
	}{
		// The classic attack: outer tag = the trunk's native VLAN, inner
		// tag = the victim's VLAN, hoping the outer one is popped.
		{"double tagged, outer native", tag(tag(bc, tpidCTag, 0, 20), tpidCTag, 0, 10), DropVLAN},
		{"double tagged to victim MAC", tag(tag(toVictim, tpidCTag, 0, 20), tpidCTag, 0, 10), DropVLAN},
		{"tagged with the victim VLAN", tag(bc, tpidCTag, 0, 20), DropVLAN},
		{"S-tagged with the victim VLAN", tag(bc, tpidSTag, 0, 20), DropVLAN},
		{"QinQ S over C", tag(tag(bc, tpidCTag, 0, 20), tpidSTag, 0, 20), DropVLAN},
		{"VID 4095", tag(bc, tpidCTag, 0, 4095), DropVLAN},
		{"spoofed source (the victim's MAC)", eth(Broadcast, mac(20), 0x0800, 46), DropSpoofed},
		{"spoofed source (another MAC)", eth(mac(20), mac(99), 0x0800, 46), DropSpoofed},
		{"group source", eth(Broadcast, MAC{0x01, 0, 0, 0, 0, 20}, 0x0800, 46), DropMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := ts.h["a10"].Counters().Drops
			ts.in("a10", tc.frame)
			after := ts.h["a10"].Counters().Drops
			for r := range NumDropReasons {
				want := before[r]
				if r == tc.drop {
					want++
				}
				if after[r] != want {
					t.Errorf("drop counter %v = %d, want %d", r, after[r], want)
				}
			}
			for p, s := range ts.s {
				if got := s.take(); len(got) != 0 {
					t.Errorf("%s received %d frames: % x", p, len(got), got[0].Data)
				}
			}
		})
	}

	// A priority-tagged frame (VID 0) is the one tagged frame an access
	// port takes: it stays in VLAN 10, whatever it carries behind the tag.
	// Found by this test: the switch popped the priority tag, and a trunk
	// whose native VLAN is 10 sent the frame untagged, so the inner
	// 8100/VID 20 tag became the outer tag on the wire. Such frames (a VLAN
	// tag behind a priority tag) are now dropped at ingress as VLAN
	// violations: the inner tag never travels untagged.
	t.Run("priority tag over a victim tag", func(t *testing.T) {
		d := ts.drops("a10", DropVLAN)
		ts.in("a10", tag(tag(bc, tpidCTag, 0, 20), tpidCTag, 5, 0))
		for _, name := range []string{"v20", "b10", "trk", "nat"} {
			if got := ts.s[name].take(); len(got) != 0 {
				t.Errorf("%s received %d frames; want none (a tag behind a priority tag is a VLAN violation)", name, len(got))
			}
		}
		if got := ts.drops("a10", DropVLAN) - d; got != 1 {
			t.Errorf("VLAN drops on a10 = %d; want 1", got)
		}
	})

	// From the trunk: VLANs it does not carry are dropped at ingress.
	t.Run("trunk, VLAN not allowed", func(t *testing.T) {
		d := ts.drops("trk", DropVLAN)
		ts.in("trk", tag(eth(Broadcast, mac(30), 0x0800, 46), tpidCTag, 0, 30), eth(Broadcast, mac(31), 0x0800, 46))
		if got := ts.drops("trk", DropVLAN) - d; got != 2 {
			t.Errorf("VLAN drops on trk = %d; want 2 (VID 30, untagged without native VLAN)", got)
		}
		for p, s := range ts.s {
			if got := s.take(); len(got) != 0 {
				t.Errorf("%s received %d frames", p, len(got))
			}
		}
	})

	// After all that, VLAN 20's entry still points at the victim, and
	// VLAN 10 traffic still flows.
	ts.in("trk", tag(eth(mac(20), mac(40), 0x0800, 46), tpidCTag, 0, 20))
	if got := ts.s["v20"].take(); len(got) != 1 {
		t.Errorf("victim received %d frames after the attacks; want 1", len(got))
	}
	ts.in("a10", eth(Broadcast, mac(1), 0x0800, 46))
	if got := ts.s["b10"].take(); len(got) != 1 {
		t.Errorf("b10 received %d frames from a10; want 1", len(got))
	}
}

// countPort counts what it is sent without keeping it.
type countPort struct{ n atomic.Uint64 }

func (p *countPort) Send(frames []Frame) int { p.n.Add(uint64(len(frames))); return len(frames) }
func (p *countPort) Caps() Caps              { return 0 }

// floodMAC is the i-th flood source: distinct for every i < 2^40 (an odd
// multiplier is a bijection mod 2^40), looks random, locally administered
// unicast.
func floodMAC(i uint64) MAC {
	x := (i * 0x9e3779b97f) & (1<<40 - 1)
	return MAC{0x02, byte(x >> 32), byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)}
}

// floodBatch fills batch (frames of 64 bytes from f's MACs to dst) with
// sources floodMAC(first..first+len).
func floodBatch(batch []Frame, dst MAC, first uint64) {
	for j := range batch {
		if batch[j].Data == nil {
			batch[j].Data = eth(dst, MAC{}, 0x0800, 50)
		}
		m := floodMAC(first + uint64(j))
		copy(batch[j].Data[6:], m[:])
	}
}

// TestMACFlood: a port sends frames from 1 Mi distinct source MACs. Its
// MAC limit holds, each refused frame is a counted DropMACLimit, and the
// other ports' FDB entries survive (traffic between them stays unicast).
func TestMACFlood(t *testing.T) {
	const limit = 256
	n := uint64(1 << 20)
	if testing.Short() {
		n = 1 << 16
	}
	sw := New(Config{Clock: NewManualClock(1)})
	fc := access("flood", 1)
	fc.MACLimit = limit
	ports := map[string]*countPort{}
	hs := map[string]*PortHandle{}
	for _, c := range []PortConfig{fc, access("a", 1), access("b", 1), access("c", 1)} {
		p := &countPort{}
		h, err := sw.AddPort(c, p)
		if err != nil {
			t.Fatal(err)
		}
		ports[c.Name], hs[c.Name] = p, h
	}
	hs["a"].Input([]Frame{{Data: eth(Broadcast, mac(1), 0x0800, 50)}})
	hs["b"].Input([]Frame{{Data: eth(Broadcast, mac(2), 0x0800, 50)}})
	batch := make([]Frame, 64)
	for i := uint64(0); i < n; i += uint64(len(batch)) {
		floodBatch(batch, Broadcast, i)
		hs["flood"].Input(batch)
	}
	c := hs["flood"].Counters()
	if c.LearnedMACs != limit {
		t.Errorf("flood port learned %d MACs; limit %d", c.LearnedMACs, limit)
	}
	if c.Drops[DropMACLimit] != n-limit {
		t.Errorf("MAC limit drops = %d; want %d", c.Drops[DropMACLimit], n-limit)
	}
	if got := ports["c"].n.Load(); got != limit+2 {
		t.Errorf("c received %d flooded frames; want %d (the limit, plus a's and b's)", got, limit+2)
	}
	if e := sw.SwitchCounters().FDBEntries; e != limit+2 {
		t.Errorf("FDB has %d entries; want %d", e, limit+2)
	}
	// a and b are still known: a→b is unicast, c sees nothing.
	before := ports["c"].n.Load()
	hs["a"].Input([]Frame{{Data: eth(mac(2), mac(1), 0x0800, 50)}})
	hs["b"].Input([]Frame{{Data: eth(mac(1), mac(2), 0x0800, 50)}})
	if ports["c"].n.Load() != before || ports["a"].n.Load() == 0 || ports["b"].n.Load() == 0 {
		t.Errorf("a<->b traffic was flooded after the MAC flood: c got %d more", ports["c"].n.Load()-before)
	}
	if ta, tb := hs["a"].Counters().Drops, hs["b"].Counters().Drops; ta != ([NumDropReasons]uint64{}) || tb != ([NumDropReasons]uint64{}) {
		t.Errorf("drops on the other ports: a %v b %v", ta, tb)
	}
}

// BenchmarkForwardUnderMACFlood measures a→b forwarding (64-byte frames,
// batches of 64, learned unicast) while another goroutine floods the
// switch from a third port with fresh source MACs, against the same with
// the flooder idle. "limited" floods a port with a MAC limit of 256;
// "unlimited" one without (the FDB grows by millions of entries).
func BenchmarkForwardUnderMACFlood(b *testing.B) {
	for _, mode := range []string{"baseline", "limited", "unlimited"} {
		b.Run(mode, func(b *testing.B) {
			sw := New(Config{Clock: NewManualClock(1), FDBMaxEntries: 1 << 30})
			fc := access("flood", 1)
			fc.MACLimit = NoMACLimit
			if mode != "unlimited" {
				fc.MACLimit = 256
			}
			var hs []*PortHandle
			for _, c := range []PortConfig{fc, access("a", 1), access("b", 1)} {
				h, err := sw.AddPort(c, nullPort{})
				if err != nil {
					b.Fatal(err)
				}
				hs = append(hs, h)
			}
			hs[2].Input([]Frame{{Data: eth(Broadcast, mac(2), 0x0800, 50)}})
			batch := make([]Frame, benchBatch)
			for i := range batch {
				batch[i].Data = eth(mac(2), mac(1), 0x0800, 50)
			}
			stop := make(chan struct{})
			done := make(chan uint64)
			go func() {
				fb := make([]Frame, benchBatch)
				var i uint64
				for {
					select {
					case <-stop:
						done <- i
						return
					default:
					}
					if mode != "baseline" {
						floodBatch(fb, mac(9), i)
						hs[0].Input(fb)
						i += benchBatch
					} else {
						time.Sleep(time.Millisecond)
					}
				}
			}()
			b.ReportAllocs()
			b.ResetTimer()
			for n := 0; n < b.N; n += benchBatch {
				hs[1].Input(batch)
			}
			b.StopTimer()
			close(stop)
			flooded := <-done
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mpps")
			b.ReportMetric(float64(flooded)/b.Elapsed().Seconds()/1e6, "flood-Mpps")
			if d := hs[1].Counters().Drops; d != [NumDropReasons]uint64{} {
				b.Fatalf("drops on a: %v", d)
			}
		})
	}
}

// TestBroadcastStorm: one port floods broadcasts far above its storm
// limit for 2 s of (manual) time. Exactly the bucket's worth pass, the
// rest are counted as storm drops, and the other ports' unicast and their
// own broadcasts all get through.
func TestBroadcastStorm(t *testing.T) {
	s := access("storm", 1)
	s.Storm.Broadcast = RateLimit{Packets: Bucket{Rate: 1000, Burst: 10}}
	ts := newTestSwitch(t, s, access("a", 1), access("b", 1))
	ts.in("a", eth(Broadcast, mac(1), 0x0806, 46))
	ts.in("b", eth(Broadcast, mac(2), 0x0806, 46))
	ts.s["a"].take()
	ts.s["b"].take()
	storm := make([][]byte, 100)
	for i := range storm {
		storm[i] = eth(Broadcast, mac(3), 0x0806, 46)
	}
	const ticks = 2000 // 1 ms each
	for range ticks {
		ts.in("storm", storm...)
		ts.in("a", eth(mac(2), mac(1), 0x0800, 46), eth(Broadcast, mac(1), 0x0806, 46))
		ts.in("b", eth(mac(1), mac(2), 0x0800, 46))
		ts.advance(time.Millisecond)
	}
	var stormAtA, stormAtB, uniA, uniB, bcB int
	for _, f := range ts.s["a"].take() {
		switch MAC(f.Data[6:12]) {
		case mac(3):
			stormAtA++
		case mac(2):
			uniA++
		}
	}
	for _, f := range ts.s["b"].take() {
		switch {
		case MAC(f.Data[6:12]) == mac(3):
			stormAtB++
		case MAC(f.Data[:6]) == Broadcast:
			bcB++
		default:
			uniB++
		}
	}
	// 2 s at 1000/s: 2000 tokens, the first tick's 10-token burst included
	// (the bucket starts full and refills 1 per ms).
	passed := ts.h["storm"].Counters().RxPackets - ts.drops("storm", DropStorm)
	if passed < 1990 || passed > 2010 {
		t.Errorf("%d storm broadcasts passed in 2 s; want about 2000 (1000/s)", passed)
	}
	if uint64(stormAtA) != passed || uint64(stormAtB) != passed {
		t.Errorf("a got %d, b got %d storm frames; %d passed", stormAtA, stormAtB, passed)
	}
	if d := ts.drops("storm", DropStorm); d != ticks*100-passed {
		t.Errorf("storm drops %d; want %d", d, ticks*100-passed)
	}
	if uniA != ticks || uniB != ticks || bcB != ticks {
		t.Errorf("during the storm a got %d unicast, b got %d unicast and %d broadcasts; want %d each", uniA, uniB, bcB, ticks)
	}
	for _, p := range []string{"a", "b"} {
		if d := ts.h[p].Counters().Drops; d != ([NumDropReasons]uint64{}) {
			t.Errorf("drops on %s: %v", p, d)
		}
	}
}

// The double-tagging hop at egress, for every tag type: a frame whose
// front, once the tag that classified it is stripped, is another tag
// never leaves a trunk untagged (its native VLAN), where the next bridge
// would take that tag for the frame's VLAN; access and dot1q-tunnel
// ports in the frame's VLAN get it as it is (TestQinQ). Found by an audit: a trunk carrying only VLAN 20 sent
// 8100/20 + 8100/30 and a trunk whose native VLAN is 20 put 8100/30 on
// the wire; a dot1q-tunnel customer's C-tagged frame left a trunk whose
// native VLAN is the tunnel's S-VLAN with the customer's tag outermost.
// Flooded, unicast (the batch's plain path) and repeated (forwardAgain)
// frames alike; each refused copy is a DropVLAN on the ingress port;
// Trace says the same.
func TestDoubleTagHopAtEgress(t *testing.T) {
	ts := newTestSwitch(t,
		trunk("t20", 0, 20), trunk("n20", 20, 20, 30), access("a20", 20),
		PortConfig{Name: "q20", Mode: ModeDot1QTunnel, PVID: 20}, trunk("tt", 0, 20, 30),
		PortConfig{Name: "cust", Mode: ModeDot1QTunnel, PVID: 10}, trunk("n10", 10, 10),
		trunk("t10", 0, 10), PortConfig{Name: "c10", Mode: ModeDot1QTunnel, PVID: 10})
	bc := eth(Broadcast, mac(1), 0x0800, 46)
	front := func(f []byte) uint16 { return binary.BigEndian.Uint16(f[12:]) }
	expect := func(t *testing.T, want map[string]int) {
		t.Helper()
		for p, s := range ts.s {
			got := s.take()
			if len(got) != want[p] {
				t.Errorf("%s received %d frames, want %d", p, len(got), want[p])
			}
			for _, f := range got {
				if p == "n20" || p == "n10" {
					if isTag(front(f.Data)) && vidOf(f.Data) != 20 && vidOf(f.Data) != 10 {
						t.Errorf("%s: a frame left with tag % x in front", p, f.Data[12:16])
					}
				}
			}
		}
	}
	for _, inner := range []uint16{tpidCTag, tpidSTag, 0x9100, 0x9200, 0x9300} {
		for _, outer := range []uint16{tpidCTag, tpidSTag} {
			t.Run(fmt.Sprintf("trunk %#04x over %#04x", outer, inner), func(t *testing.T) {
				d := ts.drops("t20", DropVLAN)
				ts.in("t20", tag(tag(bc, inner, 0, 30), outer, 0, 20))
				expect(t, map[string]int{"q20": 1, "tt": 1, "a20": 1})
				if got := ts.drops("t20", DropVLAN) - d; got != 1 {
					t.Errorf("VLAN drops on t20 %d, want 1 (n20's native VLAN)", got)
				}
			})
		}
		t.Run(fmt.Sprintf("customer %#04x", inner), func(t *testing.T) {
			d := ts.drops("cust", DropVLAN)
			ts.in("cust", tag(bc, inner, 0, 30))
			expect(t, map[string]int{"t10": 1, "c10": 1})
			if got := ts.drops("cust", DropVLAN) - d; got != 1 {
				t.Errorf("VLAN drops on cust %d, want 1 (n10's native VLAN)", got)
			}
		})
	}
	// Unicast to a MAC learned behind n10's native VLAN: three in one
	// batch (the batch decides the first; forwardAgain the others).
	ts.in("n10", eth(Broadcast, mac(77), 0x0800, 46))
	ts.take()
	t.Run("customer unicast batch", func(t *testing.T) {
		d := ts.drops("cust", DropVLAN)
		f := tag(eth(mac(77), mac(2), 0x0800, 46), tpidCTag, 0, 30)
		ts.in("cust", f, f, f)
		expect(t, map[string]int{})
		if got := ts.drops("cust", DropVLAN) - d; got != 3 {
			t.Errorf("VLAN drops on cust %d, want 3", got)
		}
		// An untagged customer frame still goes (the plain path).
		ts.in("cust", eth(mac(77), mac(2), 0x0800, 46))
		expect(t, map[string]int{"n10": 1})
	})
	t.Run("trace", func(t *testing.T) {
		r, err := ts.sw.Trace("t20", TraceFrame{SrcMAC: mac(5), DstMAC: Broadcast, VLAN: 20, EtherType: tpidCTag})
		if err != nil {
			t.Fatal(err)
		}
		denied := map[string]string{}
		for _, d := range r.Denied {
			denied[d.Port] = d.Reason
		}
		if denied["n20"] != DropVLAN.String() || len(denied) != 1 {
			t.Errorf("trace denied %v, want n20 for %q", denied, DropVLAN)
		}
		var outs []string
		for _, o := range r.Outputs {
			outs = append(outs, o.Port)
		}
		if len(outs) != 3 || !slices.Contains(outs, "q20") || !slices.Contains(outs, "tt") || !slices.Contains(outs, "a20") {
			t.Errorf("trace outputs %v, want q20, tt and a20", outs)
		}
	})
}
