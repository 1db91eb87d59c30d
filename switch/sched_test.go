package vswitch

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// schedRun offers each sender perMs 1000-byte frames a simulated ms for
// secs seconds toward port u (capacity 10 MB/s), after a one-second
// warm-up, and returns the bytes/s each sender got through u over the
// measured time. change, if not nil, runs at the start of the measured
// time.
type schedCase struct {
	senders map[string]Allocation
	perMs   map[string]int // frames a ms; default 8 (8 MB/s, the capacity is 10)
	secs    int
}

const schedCap = 10_000_000 // u's egress rate, bytes/s

func newSchedSwitch(t *testing.T, senders map[string]Allocation) *testSwitch {
	t.Helper()
	u := access("u", 1)
	u.Egress = RateLimit{Bytes: Bucket{Rate: schedCap, Burst: 20_000}}
	ts := newTestSwitch(t, u)
	for name, a := range senders {
		c := access(name, 1)
		c.Allocation = a
		ts.add(c, 0)
	}
	ts.sw.AddStatic("u", 1, mac(200))
	return ts
}

func (ts *testSwitch) schedRun(t *testing.T, perMs map[string]int, secs int, atStart func()) map[string]float64 {
	t.Helper()
	frames := map[string][][]byte{}
	for name, n := range perMs {
		var src byte
		fmt.Sscanf(name[1:], "%d", &src)
		f := eth(mac(200), mac(100+src), 0x0800, 986)
		for range n {
			frames[name] = append(frames[name], f)
		}
	}
	sent := func() map[string]uint64 {
		m := map[string]uint64{}
		for _, q := range ts.h["u"].Queues() {
			if q.Port != "" {
				m[q.Port] = q.SentBytes
			}
		}
		return m
	}
	var start map[string]uint64
	for ms := 1; ms <= (secs+1)*1000; ms++ {
		ts.advance(time.Millisecond)
		for name, fs := range frames {
			ts.in(name, fs...)
		}
		ts.sw.Poll(ts.clock.Now())
		if ms == 1000 {
			start = sent()
			if atStart != nil {
				atStart()
			}
		}
		if ms%100 == 0 {
			ts.s["u"].take()
		}
	}
	end := sent()
	got := map[string]float64{}
	for name := range perMs {
		got[name] = float64(end[name]-start[name]) / float64(secs)
	}
	return got
}

func TestSchedAllocation(t *testing.T) {
	const M = 1_000_000
	for _, tt := range []struct {
		name    string
		senders map[string]Allocation
		perMs   map[string]int
		want    map[string]float64 // bytes/s
	}{
		{"equal shares", map[string]Allocation{"s1": {}, "s2": {}, "s3": {}},
			map[string]int{"s1": 8, "s2": 8, "s3": 8}, map[string]float64{"s1": 3.333 * M, "s2": 3.333 * M, "s3": 3.333 * M}},
		{"shares 1:2:1", map[string]Allocation{"s1": {Shares: 100}, "s2": {Shares: 200}, "s3": {Shares: 100}},
			map[string]int{"s1": 8, "s2": 8, "s3": 8}, map[string]float64{"s1": 2.5 * M, "s2": 5 * M, "s3": 2.5 * M}},
		{"reservation, then shares", map[string]Allocation{"s1": {Reservation: 4 * M}, "s2": {}, "s3": {}},
			map[string]int{"s1": 8, "s2": 8, "s3": 8}, map[string]float64{"s1": 6 * M, "s2": 2 * M, "s3": 2 * M}},
		{"reservation and shares", map[string]Allocation{"s1": {Reservation: 2 * M, Shares: 100}, "s2": {Reservation: 1 * M, Shares: 300}, "s3": {}},
			map[string]int{"s1": 8, "s2": 8, "s3": 8}, map[string]float64{"s1": 3.4 * M, "s2": 5.2 * M, "s3": 1.4 * M}},
		{"limit", map[string]Allocation{"s1": {}, "s2": {Limit: 1 * M}, "s3": {}},
			map[string]int{"s1": 8, "s2": 8, "s3": 8}, map[string]float64{"s1": 4.5 * M, "s2": 1 * M, "s3": 4.5 * M}},
		{"reservation under a limit", map[string]Allocation{"s1": {Reservation: 2 * M, Limit: 3 * M}, "s2": {}},
			map[string]int{"s1": 8, "s2": 8}, map[string]float64{"s1": 3 * M, "s2": 7 * M}},
		{"a reservation not used is lent", map[string]Allocation{"s1": {Reservation: 5 * M}, "s2": {}, "s3": {}},
			map[string]int{"s1": 1, "s2": 8, "s3": 8}, map[string]float64{"s1": 1 * M, "s2": 4.5 * M, "s3": 4.5 * M}},
		{"alone: work-conserving", map[string]Allocation{"s1": {Shares: 1}, "s2": {Shares: 10000}},
			map[string]int{"s1": 12}, map[string]float64{"s1": 10 * M}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ts := newSchedSwitch(t, tt.senders)
			got := ts.schedRun(t, tt.perMs, 10, nil)
			t.Logf("got %v", got)
			for name, want := range tt.want {
				if !within(got[name], want, 1) {
					t.Errorf("%s got %.3f MB/s; want %.3f within 1%% (all: %v)", name, got[name]/M, want/M, got)
				}
			}
			var sum float64
			for _, g := range got {
				sum += g
			}
			if !within(sum, schedCap, 1) && len(tt.perMs) > 1 {
				t.Errorf("u sent %.3f MB/s in all; want its rate, %.3f", sum/M, float64(schedCap)/M)
			}
		})
	}
}

// Shares, reservations and limits change live: the rates follow, nothing
// queued is dropped, no counter restarts.
func TestSchedLiveChange(t *testing.T) {
	const M = 1_000_000
	ts := newSchedSwitch(t, map[string]Allocation{"s1": {}, "s2": {}})
	perMs := map[string]int{"s1": 8, "s2": 8}
	before := ts.schedRun(t, perMs, 3, nil)
	if !within(before["s1"], 5*M, 1) || !within(before["s2"], 5*M, 1) {
		t.Fatalf("before: %v; want 5 MB/s each", before)
	}
	drops := ts.drops("u", DropShaperQueue)
	queued := ts.h["u"].Counters().ShaperQueued
	sentBefore := ts.h["u"].Counters().TxBytes
	c := ts.h["s2"].Config()
	c.Allocation = Allocation{Shares: 300, Limit: 6 * M}
	if err := ts.sw.UpdatePort(c); err != nil {
		t.Fatal(err)
	}
	if q := ts.h["u"].Counters().ShaperQueued; q != queued {
		t.Errorf("queued frames %d after the change; %d before", q, queued)
	}
	if d := ts.drops("u", DropShaperQueue); d != drops {
		t.Errorf("the change dropped %d queued frames", d-drops)
	}
	after := ts.schedRun(t, perMs, 3, nil)
	if !within(after["s1"], 4*M, 1) || !within(after["s2"], 6*M, 1) {
		t.Errorf("after shares 1:3 and a 6 MB/s limit on s2: %v; want 4 and 6 MB/s", after)
	}
	if tx := ts.h["u"].Counters().TxBytes; tx < sentBefore {
		t.Errorf("u's tx bytes went back from %d to %d", sentBefore, tx)
	}
}

func TestSchedAdmission(t *testing.T) {
	const M = 1_000_000
	ts := newSchedSwitch(t, map[string]Allocation{"s1": {Reservation: 6 * M}})
	c := access("s2", 1)
	c.Allocation = Allocation{Reservation: 5 * M}
	_, err := ts.sw.AddPort(c, newSink(0))
	if err == nil || !errors.Is(err, ErrOverReserved) || !strings.Contains(err.Error(), `port "u"'s egress rate 80 Mbit/s`) ||
		!strings.Contains(err.Error(), "s1 48 Mbit/s") || !strings.Contains(err.Error(), "s2 40 Mbit/s") {
		t.Errorf("AddPort with reservations past u's rate = %v", err)
	}
	c.Allocation.Reservation = 4 * M
	if _, err := ts.sw.AddPort(c, newSink(0)); err != nil {
		t.Fatalf("AddPort with reservations that fit: %v", err)
	}
	u := ts.h["u"].Config()
	u.Egress.Bytes.Rate = 9 * M
	if err := ts.sw.UpdatePort(u); err == nil || !strings.Contains(err.Error(), "reservations add up to 80 Mbit/s") {
		t.Errorf("lowering u's rate under the reservations = %v", err)
	}
	for _, a := range []Allocation{{Reservation: -1}, {Shares: MaxShares + 1}, {Reservation: 2 * M, Limit: M}} {
		c := access("bad", 1)
		c.Allocation = a
		if _, err := ts.sw.AddPort(c, newSink(0)); err == nil {
			t.Errorf("AddPort with allocation %+v = nil error", a)
		}
	}
}

// Strict classes go first whatever the allocations; a DSCP map puts IP
// frames in a class whatever their PCP.
func TestSchedClasses(t *testing.T) {
	const M = 1_000_000
	ts := newSchedSwitch(t, map[string]Allocation{"s1": {Reservation: 5 * M}})
	u := ts.h["u"].Config()
	u.Classes = ClassMap{DSCP: []DSCPClass{{From: 46, To: 46, Class: 2}}}
	if err := ts.sw.UpdatePort(u); err != nil {
		t.Fatal(err)
	}
	ef := eth(mac(200), mac(102), 0x0800, 986)
	ef[14], ef[15] = 0x45, 46<<2 // IPv4, DSCP EF
	be := eth(mac(200), mac(101), 0x0800, 986)
	ts.add(access("s2", 1), 0)
	for ms := 1; ms <= 3000; ms++ {
		ts.advance(time.Millisecond)
		ts.in("s1", be, be, be, be, be, be, be, be)
		ts.in("s2", ef, ef, ef, ef, ef, ef) // 6 MB/s of EF
		ts.sw.Poll(ts.clock.Now())
		if ms%100 == 0 {
			ts.s["u"].take()
		}
	}
	var ef2, s1 uint64
	for _, q := range ts.h["u"].Queues() {
		switch {
		case q.Port == "" && q.Class == 2:
			ef2 = q.SentBytes
		case q.Port == "s1":
			s1 = q.SentBytes
		}
	}
	if !within(float64(ef2)/3, 6*M, 2) || !within(float64(s1)/3, 4*M, 2) {
		t.Errorf("class 2 (EF) sent %.2f MB/s, s1 %.2f MB/s; want 6 and the 4 left", float64(ef2)/3/M, float64(s1)/3/M)
	}
	if err := (ClassMap{DSCP: []DSCPClass{{From: 50, To: 64, Class: 1}}}).validate(); err == nil {
		t.Error("DSCP 64 accepted")
	}
	if err := (ClassMap{PCP: []uint8{0, 0, 0}}).validate(); err == nil {
		t.Error("a PCP map of 3 accepted")
	}
}

// A removed sender's queued frames go with it.
func TestSchedRemoveSender(t *testing.T) {
	ts := newSchedSwitch(t, map[string]Allocation{"s1": {}, "s2": {}})
	ts.schedRun(t, map[string]int{"s1": 8, "s2": 8}, 1, nil)
	if err := ts.sw.RemovePort("s2"); err != nil {
		t.Fatal(err)
	}
	for _, q := range ts.h["u"].Queues() {
		if q.Port == "s2" {
			t.Errorf("s2's queue outlived it: %+v", q)
		}
	}
	got := ts.schedRun(t, map[string]int{"s1": 12}, 2, nil)
	if !within(got["s1"], schedCap, 1) {
		t.Errorf("s1 alone after s2 went: %.0f B/s; want all of u's rate", got["s1"])
	}
}

// BenchmarkEgressScheduler: the cost per frame of a shaped egress that
// nports senders keep congested (every sender's queue backlogged), with
// a mix of allocations (a third with reservations, a third with limits,
// shares 50..250), against the same traffic to an unshaped egress. The
// Clock advances by the time the egress's rate takes for each batch, so
// the backlog stays as it is.
func BenchmarkEgressScheduler(b *testing.B) {
	for _, nports := range []int{1, 100, 1000} {
		for _, shaped := range []bool{false, true} {
			name := fmt.Sprintf("ports=%d/unshaped", nports)
			if shaped {
				name = fmt.Sprintf("ports=%d/scheduled", nports)
			}
			b.Run(name, func(b *testing.B) { benchScheduler(b, nports, shaped) })
		}
	}
}

func benchScheduler(b *testing.B, nports int, shaped bool) {
	const batch, flen = 32, 64
	const rate = 1 << 30 // bytes/s
	clock := NewManualClock(1_000_000_000_000)
	sw := New(Config{Clock: clock, FDBMaxEntries: 1 << 20})
	u := access("u", 1)
	u.EgressQueue = QueueConfig{Frames: 256, Bytes: maxGSOFrame}
	if shaped {
		u.Egress = RateLimit{Bytes: Bucket{Rate: rate, Burst: batch * flen}}
	}
	if _, err := sw.AddPort(u, nullPort{}); err != nil {
		b.Fatal(err)
	}
	sw.AddStatic("u", 1, mac(200))
	hs := make([]*PortHandle, nports)
	frames := make([][]Frame, nports)
	for i := range hs {
		c := access(fmt.Sprintf("s%04d", i), 1)
		c.Allocation.Shares = 50 + 100*(i%3)
		switch i % 3 {
		case 1:
			c.Allocation.Reservation = rate / 2 / int64(nports)
		case 2:
			c.Allocation.Limit = 2 * rate / int64(nports)
		}
		h, err := sw.AddPort(c, nullPort{})
		if err != nil {
			b.Fatal(err)
		}
		hs[i] = h
		src := MAC{0x02, 1, 0, 0, byte(i >> 8), byte(i)}
		frames[i] = make([]Frame, batch)
		for k := range frames[i] {
			frames[i][k].Data = eth(mac(200), src, 0x0800, flen-14)
		}
	}
	step := int64(batch*flen) * nano / rate // the egress's time for one batch
	// Warm up: fill every sender's queue.
	for r := 0; r < 4*nports; r++ {
		hs[r%nports].Input(frames[r%nports])
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clock.Advance(time.Duration(step))
		k := i % nports
		hs[k].Input(frames[k])
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/frame")
	if shaped {
		var queued int
		for _, q := range sw.Port("u").Queues() {
			queued += q.QueuedFrames
		}
		b.ReportMetric(float64(queued)/float64(nports), "queued/sender")
	}
}

// check verifies the schedule's invariants: every flow with frames queued
// is in the round or waits in the limit heap for its tag, flows with a
// reservation and frames are in the reservation heap, the heaps are heaps
// and their indexes true, and the shaper's count is the sum of its queues.
func (s *shaper) check() error {
	sc := &s.sched
	inRing := map[*flowQueue]int{}
	for i := range sc.drr.size {
		f := sc.drr.buf[(sc.drr.head+i)%len(sc.drr.buf)]
		inRing[f]++
		if !f.inDRR {
			return fmt.Errorf("flow of %s in the round with inDRR false", f.src.name)
		}
	}
	for _, h := range []*flowHeap{&sc.res, &sc.lim} {
		for i, f := range h.fs {
			if *h.idx(f) != i {
				return fmt.Errorf("flow of %s at %d of a heap says %d", f.src.name, i, *h.idx(f))
			}
			if i > 0 && h.less(i, (i-1)/2) {
				return fmt.Errorf("heap order broken at %d", i)
			}
		}
	}
	queued := 0
	for c := 1; c < numClasses; c++ {
		queued += s.q[c].dn
	}
	for src, f := range sc.flows {
		queued += f.q.dn
		if inRing[f] > 1 {
			return fmt.Errorf("flow of %s in the round %d times", src.name, inRing[f])
		}
		if f.inDRR != (inRing[f] == 1) {
			return fmt.Errorf("flow of %s: inDRR %v, in the round %d times", src.name, f.inDRR, inRing[f])
		}
		if f.q.dn == 0 {
			continue
		}
		if !f.inDRR && f.limIdx < 0 {
			return fmt.Errorf("flow of %s has %d frames and is neither in the round nor waiting for its limit", src.name, f.q.dn)
		}
		if f.alloc.Reservation > 0 && f.resIdx < 0 {
			return fmt.Errorf("flow of %s has a reservation and %d frames but is not in the reservation heap", src.name, f.q.dn)
		}
	}
	if queued != s.queued {
		return fmt.Errorf("queued %d, the queues hold %d", s.queued, queued)
	}
	return nil
}

// Random arrivals, polls and live allocation changes never lose a flow
// (frames queued that nothing will send) nor break the heaps, and the
// egress never idles with frames it may send.
func TestSchedInvariants(t *testing.T) {
	const M = 1_000_000
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"s1", "s2", "s3", "s4", "s5"}
	senders := map[string]Allocation{}
	for _, n := range names {
		senders[n] = Allocation{}
	}
	ts := newSchedSwitch(t, senders)
	u := ts.h["u"].Config()
	u.EgressQueue = QueueConfig{Frames: 16, Bytes: maxGSOFrame}
	if err := ts.sw.UpdatePort(u); err != nil {
		t.Fatal(err)
	}
	frames := map[string][]byte{}
	for i, n := range names {
		frames[n] = eth(mac(200), mac(byte(101+i)), 0x0800, 100+rng.IntN(1400))
	}
	sh := &ts.h["u"].shaper
	for step := range 20000 {
		switch r := rng.IntN(100); {
		case r < 60:
			n := names[rng.IntN(len(names))]
			batch := make([][]byte, 1+rng.IntN(8))
			for i := range batch {
				batch[i] = frames[n]
			}
			ts.in(n, batch...)
		case r < 90:
			ts.advance(time.Duration(rng.IntN(2000)) * time.Microsecond)
			next := ts.sw.Poll(ts.clock.Now())
			if sh.len() > 0 && next == 0 {
				t.Fatalf("step %d: %d frames queued and Poll asks for no other call", step, sh.len())
			}
		case r < 97:
			n := names[rng.IntN(len(names))]
			c := ts.h[n].Config()
			c.Allocation = Allocation{Shares: rng.IntN(3) * 100}
			if rng.IntN(2) == 0 {
				c.Allocation.Reservation = int64(rng.IntN(3)) * M
			}
			if rng.IntN(2) == 0 {
				c.Allocation.Limit = c.Allocation.Reservation + int64(rng.IntN(3))*M/2
			}
			ts.sw.UpdatePort(c) // refused when the reservations do not fit: fine
		default:
			ts.s["u"].take()
		}
		sh.mu.Lock()
		err := sh.check()
		sh.mu.Unlock()
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
	}
}
