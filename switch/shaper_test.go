package vswitch

import (
	"math"
	"testing"
	"time"
)

// within reports whether got is within pct percent of want.
func within(got, want, pct float64) bool { return math.Abs(got-want) <= want*pct/100 }

func TestShapingAccuracy(t *testing.T) {
	for _, tt := range []struct {
		name     string
		limit    RateLimit
		frameLen int
		perMs    int     // frames offered per simulated ms
		wantRate float64 // bytes/s delivered
	}{
		// Poll runs every simulated ms: bursts hold at least 1 ms of tokens.
		{"bytes 1MB/s", RateLimit{Bytes: Bucket{Rate: 1_000_000, Burst: 10_000}}, 1000, 2, 1_000_000},
		{"bytes 12.5MB/s small frames", RateLimit{Bytes: Bucket{Rate: 12_500_000, Burst: 15_000}}, 64, 400, 12_500_000},
		{"packets 1000/s", RateLimit{Packets: Bucket{Rate: 1000, Burst: 5}}, 500, 3, 500_000},
		{"both, bytes binding", RateLimit{Bytes: Bucket{Rate: 300_000, Burst: 3000}, Packets: Bucket{Rate: 1000, Burst: 5}}, 1000, 3, 300_000},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := access("b", 1)
			b.Egress = tt.limit
			ts := newTestSwitch(t, access("a", 1), b)
			ts.sw.AddStatic("b", 1, mac(2))
			fr := make([][]byte, tt.perMs)
			for i := range fr {
				fr[i] = eth(mac(2), mac(1), 0x0800, tt.frameLen-14)
			}
			var atStart uint64
			for ms := 1; ms <= 10_000; ms++ {
				ts.advance(time.Millisecond)
				ts.in("a", fr...)
				ts.sw.Poll(ts.clock.Now())
				if ms == 1000 {
					atStart = ts.h["b"].Counters().TxBytes
				}
			}
			c := ts.h["b"].Counters()
			rate := float64(c.TxBytes-atStart) / 9
			if !within(rate, tt.wantRate, 1) {
				t.Errorf("delivered %.0f B/s; want %.0f within 1%%", rate, tt.wantRate)
			}
			if c.Drops[DropShaperQueue] == 0 {
				t.Errorf("no tail drops while offering twice the rate")
			}
			if c.ShaperQueued == 0 {
				t.Errorf("queue empty while congested")
			}
		})
	}
}

func TestShaperPriorityAndDrain(t *testing.T) {
	b := access("b", 1)
	b.Egress = RateLimit{Bytes: Bucket{Rate: 1_000_000, Burst: 2000}}
	b.EgressQueue = QueueConfig{Frames: 16, Bytes: maxGSOFrame}
	ts := newTestSwitch(t, trunk("a", 0, 1), b)
	ts.sw.AddStatic("b", 1, mac(2))
	low := tag(eth(mac(2), mac(1), 0x0800, 986), tpidCTag, 0, 1)
	high := tag(eth(mac(2), mac(3), 0x0800, 186), tpidCTag, 7, 1)
	var sentHigh int
	for ms := 0; ms < 2000; ms++ {
		ts.advance(time.Millisecond)
		ts.in("a", low, low, low) // 3 MB/s offered, shaper gives 1 MB/s
		if ms%10 == 0 {
			ts.in("a", high)
			sentHigh++
		}
		ts.sw.Poll(ts.clock.Now())
	}
	var gotHigh int
	for _, f := range ts.s["b"].take() {
		if f.Data[11] == 3 {
			gotHigh++
		}
	}
	// Everything high-priority but what may still be queued gets through.
	if gotHigh < sentHigh-1 {
		t.Errorf("high priority delivered %d of %d while congested", gotHigh, sentHigh)
	}
	if ts.drops("b", DropShaperQueue) == 0 {
		t.Errorf("no low-priority tail drops")
	}
	// Draining: after the input stops, Poll empties the queue, reporting
	// when to come back.
	for i := 0; i < 100; i++ {
		next := ts.sw.Poll(ts.clock.Now())
		if next == 0 {
			break
		}
		if next <= ts.clock.Now() {
			t.Fatalf("Poll returned next %d <= now %d", next, ts.clock.Now())
		}
		ts.clock.Set(next)
	}
	if q := ts.h["b"].Counters().ShaperQueued; q != 0 {
		t.Errorf("queue holds %d frames after draining", q)
	}
	// Live update to unlimited: the shaper turns itself off.
	b.Egress = RateLimit{}
	if err := ts.sw.UpdatePort(b); err != nil {
		t.Fatal(err)
	}
	ts.s["b"].take()
	ts.in("a", low)
	if got := len(ts.s["b"].take()); got != 1 {
		t.Errorf("unshaped port got %d frames; want 1", got)
	}
	if ts.h["b"].shaper.active.Load() {
		t.Errorf("shaper still active with no limit and no queue")
	}
}

func TestShaperLiveUpdateKeepsQueue(t *testing.T) {
	b := access("b", 1)
	b.Egress = RateLimit{Packets: Bucket{Rate: 100, Burst: 1}}
	ts := newTestSwitch(t, access("a", 1), b)
	ts.sw.AddStatic("b", 1, mac(2))
	f := eth(mac(2), mac(1), 0x0800, 46)
	ts.in("a", f, f, f, f, f, f, f, f, f, f) // 1 sent, 9 queued
	if got := len(ts.s["b"].take()); got != 1 {
		t.Fatalf("sent %d; want 1", got)
	}
	b.Egress = RateLimit{Packets: Bucket{Rate: 1000, Burst: 1}}
	if err := ts.sw.UpdatePort(b); err != nil {
		t.Fatal(err)
	}
	if q := ts.h["b"].Counters().ShaperQueued; q != 9 {
		t.Fatalf("queued %d after update; want 9", q)
	}
	for range 5 { // 1000 pps: 5 more
		ts.advance(time.Millisecond)
		ts.sw.Poll(ts.clock.Now())
	}
	if got := len(ts.s["b"].take()); got != 5 {
		t.Errorf("sent %d in 5 ms at 1000 pps; want 5", got)
	}
}

func TestPolicer(t *testing.T) {
	for _, tt := range []struct {
		name    string
		limit   RateLimit
		perMs   int
		ms      int
		want    uint64 // frames through
		wantPct float64
	}{
		{"1000 pps burst 10", RateLimit{Packets: Bucket{Rate: 1000, Burst: 10}}, 5, 1000, 1009, 0},
		{"100 kB/s burst 1000", RateLimit{Bytes: Bucket{Rate: 100_000, Burst: 1000}}, 10, 1000, 1000, 1},
		{"one-time burst", RateLimit{Bytes: Bucket{Rate: 1000, Burst: 100, OneTimeBurst: 500}}, 10, 1, 6, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := access("a", 1)
			a.Ingress = tt.limit
			ts := newTestSwitch(t, a, access("b", 1))
			ts.sw.AddStatic("b", 1, mac(2))
			fs := make([][]byte, tt.perMs)
			for i := range fs {
				fs[i] = eth(mac(2), mac(1), 0x0800, 86) // 100 bytes
			}
			for ms := 0; ms < tt.ms; ms++ {
				ts.in("a", fs...)
				ts.advance(time.Millisecond)
			}
			got := ts.h["b"].Counters().TxPackets
			if !within(float64(got), float64(tt.want), tt.wantPct) {
				t.Errorf("passed %d; want %d (±%v%%)", got, tt.want, tt.wantPct)
			}
			if d := ts.drops("a", DropPolicer); d+got != uint64(tt.perMs*tt.ms) {
				t.Errorf("policer drops %d + passed %d != offered %d", d, got, tt.perMs*tt.ms)
			}
		})
	}
}

func TestStormControl(t *testing.T) {
	a := access("a", 1)
	a.Storm = StormControl{
		Broadcast:      RateLimit{Packets: Bucket{Rate: 100, Burst: 1}},
		Multicast:      RateLimit{Packets: Bucket{Rate: 50, Burst: 1}},
		UnknownUnicast: RateLimit{Packets: Bucket{Rate: 10, Burst: 1}},
	}
	ts := newTestSwitch(t, a, access("b", 1))
	ts.sw.AddStatic("b", 1, mac(2))
	bc := eth(Broadcast, mac(1), 0x0806, 46)
	mc := eth(MAC{0x01, 0, 0x5e, 1, 2, 3}, mac(1), 0x0800, 46)
	uu := eth(mac(9), mac(1), 0x0800, 46)
	kn := eth(mac(2), mac(1), 0x0800, 46)
	for ms := 0; ms < 1000; ms++ {
		ts.in("a", bc, mc, uu, kn, kn)
		ts.advance(time.Millisecond)
	}
	var nb, nm, nu, nk int
	for _, f := range ts.s["b"].take() {
		switch MAC(f.Data[:6]) {
		case Broadcast:
			nb++
		case mac(2):
			nk++
		case mac(9):
			nu++
		default:
			nm++
		}
	}
	if nb != 100 || nm != 50 || nu != 10 || nk != 2000 {
		t.Errorf("broadcast %d multicast %d unknown %d known %d; want 100 50 10 2000", nb, nm, nu, nk)
	}
	if d := ts.drops("a", DropStorm); d != 3000-160 {
		t.Errorf("storm drops %d; want %d", d, 3000-160)
	}
	// Lift the broadcast limit live.
	a.Storm.Broadcast = RateLimit{}
	if err := ts.sw.UpdatePort(a); err != nil {
		t.Fatal(err)
	}
	ts.in("a", bc, bc, bc)
	if got := len(ts.s["b"].take()); got != 3 {
		t.Errorf("after lifting the limit %d broadcasts passed; want 3", got)
	}
}

func TestTokenBucketWait(t *testing.T) {
	var b tokenBucket
	b.configure(Bucket{Rate: 1000, Burst: 10}, 0)
	for range 10 {
		if !b.can(1) {
			t.Fatal("full bucket refused")
		}
		b.take(1)
	}
	if b.can(1) {
		t.Fatal("empty bucket accepted")
	}
	if w := b.wait(1); w != 1_000_000 {
		t.Errorf("wait(1) = %d ns; want 1e6", w)
	}
	b.refill(1_000_000)
	if !b.can(1) {
		t.Error("refilled bucket refused")
	}
	// Oversize: a 25-token cost passes only when full, leaving debt.
	b.refill(1 << 40)
	if !b.can(25) {
		t.Fatal("oversize cost refused on a full bucket")
	}
	b.take(25)
	if w := b.wait(1); w != 16_000_000 {
		t.Errorf("wait after debt = %d; want 16e6", w)
	}
}
