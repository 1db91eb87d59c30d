package vswitch

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hvnet/hvnet/internal/pktbuild"
)

func pf(dst, src MAC, vlan uint16, sip, dip string, proto uint8, sport, dport uint16, size int) pktbuild.Frame {
	f := pktbuild.Frame{Dst: dst, Src: src, VLAN: vlan, Proto: proto, SPort: sport, DPort: dport, Size: size}
	if sip != "" {
		f.SrcIP, f.DstIP = netip.MustParseAddr(sip), netip.MustParseAddr(dip)
	}
	return f
}

func drain(t *testing.T, sw *Switch) []FlowRecord {
	t.Helper()
	rs := sw.DrainFlows(nil)
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].InIndex != rs[j].InIndex {
			return rs[i].InIndex < rs[j].InIndex
		}
		return rs[i].Bytes < rs[j].Bytes
	})
	return rs
}

// TestFlowRecords: every field of the records of known traffic, and
// packets and bytes equal to the ports' own counters.
func TestFlowRecords(t *testing.T) {
	ts := newTestSwitch(t, access("a", 10), access("b", 10), trunk("t", 0, 10))
	if err := ts.sw.EnableFlows(FlowConfig{}); err != nil {
		t.Fatal(err)
	}
	a, b := mac(1), mac(2)
	// Teach the FDB both MACs: one broadcast each (flooded flows).
	arp := pktbuild.Frame{Dst: Broadcast, Src: a, EtherType: 0x0806, Size: 60}
	ts.in("a", arp.Bytes())
	arp.Src = b
	ts.in("b", arp.Bytes())
	start := ts.clock.Now()
	tcp := pf(b, a, 0, "10.0.0.1", "10.0.0.2", pktbuild.TCP, 40000, 80, 1000)
	tcp.TCPFlags = 0x02 // SYN
	var frames [][]byte
	frames = append(frames, tcp.Bytes())
	tcp.TCPFlags = 0x18 // PSH ACK
	for range 9 {
		frames = append(frames, tcp.Bytes())
	}
	ts.in("a", frames...)
	ts.advance(time.Second)
	udp6 := pf(a, b, 0, "fd00::2", "fd00::1", pktbuild.UDP, 5353, 53, 300)
	ts.in("b", udp6.Bytes(), udp6.Bytes(), udp6.Bytes())
	icmp := pf(b, a, 0, "10.0.0.1", "10.0.0.2", pktbuild.ICMP, 0, 0, 98)
	icmp.ICMPType = 8
	ts.in("a", icmp.Bytes())

	rs := drain(t, ts.sw)
	if len(rs) != 5 {
		t.Fatalf("%d records, want 5: %+v", len(rs), rs)
	}
	ia, ib := ts.h["a"].IfIndex(), ts.h["b"].IfIndex()
	if ia != 1 || ib != 2 || ts.h["t"].IfIndex() != 3 {
		t.Fatalf("ifindexes %d %d %d, want 1 2 3 (order added)", ia, ib, ts.h["t"].IfIndex())
	}
	want := []FlowRecord{
		{In: "a", InIndex: ia, SrcMAC: a, DstMAC: Broadcast, VLAN: 10, EtherType: 0x0806, Packets: 1, Bytes: 60, L3Bytes: 46},
		{In: "a", InIndex: ia, Out: "b", OutIndex: ib, SrcMAC: a, DstMAC: b, VLAN: 10, EtherType: 0x0800, IPVersion: 4, Proto: pktbuild.ICMP,
			SrcIP: netip.MustParseAddr("10.0.0.1"), DstIP: netip.MustParseAddr("10.0.0.2"), ICMPTypeCode: 8 << 8, Packets: 1, Bytes: 98, L3Bytes: 84},
		{In: "a", InIndex: ia, Out: "b", OutIndex: ib, SrcMAC: a, DstMAC: b, VLAN: 10, EtherType: 0x0800, IPVersion: 4, Proto: pktbuild.TCP,
			SrcIP: netip.MustParseAddr("10.0.0.1"), DstIP: netip.MustParseAddr("10.0.0.2"), SrcPort: 40000, DstPort: 80, TCPFlags: 0x1a,
			Packets: 10, Bytes: 10000, L3Bytes: 9860},
		{In: "b", InIndex: ib, SrcMAC: b, DstMAC: Broadcast, VLAN: 10, EtherType: 0x0806, Packets: 1, Bytes: 60, L3Bytes: 46},
		{In: "b", InIndex: ib, Out: "a", OutIndex: ia, SrcMAC: b, DstMAC: a, VLAN: 10, EtherType: 0x86dd, IPVersion: 6, Proto: pktbuild.UDP,
			SrcIP: netip.MustParseAddr("fd00::2"), DstIP: netip.MustParseAddr("fd00::1"), SrcPort: 5353, DstPort: 53,
			Packets: 3, Bytes: 900, L3Bytes: 858},
	}
	for i := range want {
		g := rs[i]
		if g.EndReason != FlowEndForced {
			t.Errorf("record %d: end reason %v, want forced", i, g.EndReason)
		}
		if g.Start < start-int64(time.Second) || g.End < g.Start {
			t.Errorf("record %d: start %d end %d", i, g.Start, g.End)
		}
		g.Start, g.End, g.EndReason = 0, 0, 0
		if g != want[i] {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, g, want[i])
		}
	}
	// Packets and bytes per ingress port equal the port's counters.
	for _, p := range []string{"a", "b"} {
		var pk, by uint64
		for _, r := range rs {
			if r.In == p {
				pk, by = pk+r.Packets, by+r.Bytes
			}
		}
		c := ts.h[p].Counters()
		if pk != c.RxPackets || by != c.RxBytes {
			t.Errorf("port %s: flows %d packets %d bytes, counters %d %d", p, pk, by, c.RxPackets, c.RxBytes)
		}
	}
	if st := ts.sw.FlowStats(); !st.Enabled || st.Active != 0 || st.MaxFlows != DefaultMaxFlows || st.Full != 0 {
		t.Errorf("stats after drain %+v", st)
	}
}

func TestFlowTimeouts(t *testing.T) {
	ts := newTestSwitch(t, access("a", 1), access("b", 1))
	ts.sw.EnableFlows(FlowConfig{})
	a, b := mac(1), mac(2)
	ts.in("b", pf(a, b, 0, "", "", 0, 0, 0, 60).Bytes())
	ts.sw.DrainFlows(nil)
	f1 := pf(b, a, 0, "10.0.0.1", "10.0.0.2", pktbuild.UDP, 1, 2, 100).Bytes()
	f2 := pf(b, a, 0, "10.0.0.1", "10.0.0.2", pktbuild.UDP, 3, 4, 100).Bytes()
	const active, idle = 60 * time.Second, 15 * time.Second
	ts.in("a", f1, f2)
	ts.advance(10 * time.Second)
	ts.in("a", f1) // f1 stays busy, f2 goes idle
	if rs := ts.sw.ExpireFlows(active, idle, nil); len(rs) != 0 {
		t.Fatalf("nothing due yet, got %+v", rs)
	}
	ts.advance(5 * time.Second)
	rs := ts.sw.ExpireFlows(active, idle, nil)
	if len(rs) != 1 || rs[0].SrcPort != 3 || rs[0].EndReason != FlowEndIdle || rs[0].Packets != 1 {
		t.Fatalf("idle expiry: %+v", rs)
	}
	for range 6 { // f1 every 10 s for 60 s: reported at the active timeout
		ts.advance(10 * time.Second)
		ts.in("a", f1)
	}
	rs = ts.sw.ExpireFlows(active, idle, nil)
	if len(rs) != 1 || rs[0].EndReason != FlowEndActive || rs[0].Packets != 8 || rs[0].End-rs[0].Start != int64(75*time.Second) {
		t.Fatalf("active expiry: %+v", rs)
	}
	// It keeps counting from zero, from its next frame.
	ts.advance(time.Second)
	ts.in("a", f1)
	ts.advance(time.Second)
	first := ts.clock.Now()
	ts.in("a", f1)
	if st := ts.sw.FlowStats(); st.Active != 1 {
		t.Fatalf("active %d", st.Active)
	}
	ts.advance(idle)
	rs = ts.sw.ExpireFlows(active, idle, nil)
	if len(rs) != 1 || rs[0].EndReason != FlowEndIdle || rs[0].Packets != 2 || rs[0].Start != first-int64(time.Second) || rs[0].End != first {
		t.Fatalf("after the active report: %+v", rs)
	}
	if st := ts.sw.FlowStats(); st.Active != 0 {
		t.Fatalf("active %d after expiry", st.Active)
	}
	// A flow reported at its active timeout that sends nothing more goes
	// at its idle timeout without another record.
	ts.in("a", f1)
	ts.advance(active)
	if rs := ts.sw.ExpireFlows(active, 2*active, nil); len(rs) != 1 || rs[0].EndReason != FlowEndActive {
		t.Fatalf("%+v", rs)
	}
	ts.advance(2 * active)
	if rs := ts.sw.ExpireFlows(active, 2*active, nil); len(rs) != 0 || ts.sw.FlowStats().Active != 0 {
		t.Fatalf("empty flow reported again: %+v", rs)
	}
}

func TestFlowSampling(t *testing.T) {
	ts := newTestSwitch(t, access("a", 1), access("b", 1))
	if err := ts.sw.EnableFlows(FlowConfig{Sampling: 10}); err != nil {
		t.Fatal(err)
	}
	a, b := mac(1), mac(2)
	ts.in("b", pf(a, b, 0, "", "", 0, 0, 0, 60).Bytes())
	f := pf(b, a, 0, "10.0.0.1", "10.0.0.2", pktbuild.UDP, 1, 2, 200).Bytes()
	for range 25 {
		ts.in("a", f, f, f, f)
	}
	rs := ts.sw.DrainFlows(nil)
	var pk, by uint64
	for _, r := range rs {
		if r.In == "a" {
			pk, by = pk+r.Packets, by+r.Bytes
		}
	}
	if pk != 10 || by != 2000 {
		t.Fatalf("1 in 10 of 100 frames: %d packets %d bytes counted", pk, by)
	}
	if c := ts.h["b"].Counters(); c.TxPackets != 100 {
		t.Fatalf("sampling changed forwarding: b sent %d", c.TxPackets)
	}
	if st := ts.sw.FlowStats(); st.Sampling != 10 {
		t.Fatalf("stats %+v", st)
	}
}

// TestFlowCacheFull: past MaxFlows new flows are not cached but counted,
// and every frame is still forwarded.
func TestFlowCacheFull(t *testing.T) {
	ts := newTestSwitch(t, access("a", 1), access("b", 1), access("c", 1))
	ts.sw.EnableFlows(FlowConfig{MaxFlows: 4, MaxFlowsPerPort: 4})
	a, b := mac(1), mac(2)
	ts.in("b", pf(a, b, 0, "", "", 0, 0, 0, 60).Bytes()) // 1 flow
	var fs [][]byte
	for i := range 10 {
		fs = append(fs, pf(b, a, 0, "10.0.0.1", "10.0.0.2", pktbuild.UDP, uint16(i), 2, 100).Bytes())
	}
	ts.in("a", fs...)
	ts.in("a", fs...)
	st := ts.sw.FlowStats()
	if st.Active != 4 || st.Full != 14 {
		t.Fatalf("stats %+v, want 4 active, 14 frames not cached", st)
	}
	if c := ts.h["b"].Counters(); c.TxPackets != 20 {
		t.Fatalf("b sent %d of 20", c.TxPackets)
	}
	rs := ts.sw.DrainFlows(nil)
	if len(rs) != 4 {
		t.Fatalf("%d records", len(rs))
	}
	// Room again: new flows are cached.
	ts.in("a", fs[9])
	if st := ts.sw.FlowStats(); st.Active != 1 || st.Full != 14 {
		t.Fatalf("after the drain %+v", st)
	}
	// A removed port's count stays in the total.
	ts.sw.RemovePort("a")
	if st := ts.sw.FlowStats(); st.Full != 14 {
		t.Fatalf("after removing a %+v", st)
	}
}

// TestFlowCachePerPort: a port flooding new flows fills its own part of
// the cache (counted), the other ports' new flows are still cached; the
// default part is a quarter of the cache.
func TestFlowCachePerPort(t *testing.T) {
	ts := newTestSwitch(t, access("a", 1), access("b", 1))
	if err := ts.sw.EnableFlows(FlowConfig{MaxFlows: 100, MaxFlowsPerPort: 10}); err != nil {
		t.Fatal(err)
	}
	a, b := mac(1), mac(2)
	ts.in("b", pf(a, b, 0, "", "", 0, 0, 0, 60).Bytes())
	var flood [][]byte
	for i := range 50 {
		flood = append(flood, pf(b, a, 0, "10.0.0.1", "10.0.0.2", pktbuild.UDP, uint16(1000+i), 2, 100).Bytes())
	}
	ts.in("a", flood...)
	var mine [][]byte
	for i := range 5 {
		mine = append(mine, pf(a, b, 0, "10.0.0.2", "10.0.0.1", pktbuild.UDP, uint16(i), 2, 100).Bytes())
	}
	ts.in("b", mine...)
	st := ts.sw.FlowStats()
	if st.Active != 1+10+5 || st.Full != 40 || st.PerPort != 10 {
		t.Fatalf("stats %+v, want 16 flows (a's 10, b's 6), 40 of a's frames not cached", st)
	}
	if c := ts.h["b"].Counters(); c.TxPackets != 50 {
		t.Fatalf("b sent %d of a's 50 frames: the bound must not touch forwarding", c.TxPackets)
	}
	if err := ts.sw.EnableFlows(FlowConfig{MaxFlows: 1000}); err != nil {
		t.Fatal(err)
	}
	if st := ts.sw.FlowStats(); st.PerPort != 250 {
		t.Errorf("default per-port bound %d, want a quarter of 1000", st.PerPort)
	}
	if err := (FlowConfig{MaxFlowsPerPort: -1}).Validate(); err == nil {
		t.Error("a negative per-port bound was accepted")
	}
}

func TestFlowsOffAndRemovedPort(t *testing.T) {
	ts := newTestSwitch(t, access("a", 1), access("b", 1))
	a, b := mac(1), mac(2)
	f := pf(b, a, 0, "10.0.0.1", "10.0.0.2", pktbuild.UDP, 1, 2, 100).Bytes()
	ts.in("b", pf(a, b, 0, "", "", 0, 0, 0, 60).Bytes())
	ts.in("a", f)
	if st := ts.sw.FlowStats(); st.Enabled || st.Active != 0 {
		t.Fatalf("off: %+v", st)
	}
	if _, _, err := ts.sw.Flows(10, FlowsByBytes); err != ErrFlowsOff {
		t.Fatalf("Flows off: %v", err)
	}
	ts.sw.EnableFlows(FlowConfig{})
	ts.in("a", f, f)
	ts.in("b", pf(a, b, 0, "10.0.0.2", "10.0.0.1", pktbuild.UDP, 2, 1, 100).Bytes())
	top, n, err := ts.sw.Flows(1, FlowsByPackets)
	if err != nil || n != 2 || len(top) != 1 || top[0].In != "a" || top[0].Packets != 2 {
		t.Fatalf("Flows: %+v %d %v", top, n, err)
	}
	if err := ts.sw.RemovePort("a"); err != nil {
		t.Fatal(err)
	}
	rs := ts.sw.ExpireFlows(time.Hour, time.Hour, nil)
	if len(rs) != 1 || rs[0].In != "a" || rs[0].EndReason != FlowEndForced || rs[0].Packets != 2 || rs[0].Out != "b" {
		t.Fatalf("removed port's flows: %+v", rs)
	}
	rs = ts.sw.DisableFlows(nil)
	if len(rs) != 1 || rs[0].In != "b" || rs[0].Out != "" || rs[0].OutIndex != 1 {
		// b's flow went to a, removed since: its number stays, its name is gone.
		t.Fatalf("disable: %+v", rs)
	}
	if st := ts.sw.FlowStats(); st.Enabled || st.Active != 0 {
		t.Fatalf("after disable %+v", st)
	}
	if err := ts.sw.EnableFlows(FlowConfig{MaxFlows: MaxMaxFlows + 1}); err == nil {
		t.Fatal("max flows past the bound accepted")
	}
	if err := ts.sw.EnableFlows(FlowConfig{Sampling: -1}); err == nil {
		t.Fatal("negative sampling accepted")
	}
}

// TestFlowShardTable: inserts and backward-shift removals in a small
// table against a map, many rounds.
func TestFlowShardTable(t *testing.T) {
	fc := &flowCache{max: 1 << 20, perPort: 1 << 20, sampling: 1}
	var sh flowShard
	sh.reset(fc)
	rng := rand.New(rand.NewPCG(1, 2))
	live := map[[8]uint64]bool{}
	key := func(i int) [8]uint64 { return [8]uint64{uint64(i), 0, fkUsed | uint64(i%7)} }
	for round := range 20000 {
		i := rng.IntN(300)
		k := key(i)
		h := sh.hash(&k)
		j := sh.lookup(&k, h)
		if (j >= 0) != live[k] {
			t.Fatalf("round %d: key %d found %v, live %v", round, i, j >= 0, live[k])
		}
		if j < 0 {
			if sh.insert(&k, h) < 0 {
				t.Fatal("insert failed")
			}
			live[k] = true
		} else {
			sh.remove(j)
			delete(live, k)
		}
		if sh.n != len(live) || fc.n.Load() != int64(len(live)) {
			t.Fatalf("round %d: n %d, live %d", round, sh.n, len(live))
		}
	}
	for k := range live {
		if sh.lookup(&k, sh.hash(&k)) < 0 {
			t.Fatalf("live key %v lost", k)
		}
	}
}

// TestFlowExpireScanRemovesAll: a scan that removes most entries of a
// table with wrapped clusters reports each once.
func TestFlowExpireScanRemovesAll(t *testing.T) {
	ts := newTestSwitch(t, access("a", 1), access("b", 1))
	ts.sw.EnableFlows(FlowConfig{})
	a, b := mac(1), mac(2)
	ts.in("b", pf(a, b, 0, "", "", 0, 0, 0, 60).Bytes())
	ts.sw.DrainFlows(nil)
	for round := range 20 {
		var fs [][]byte
		for i := range 200 {
			fs = append(fs, pf(b, a, 0, "10.0.0.1", "10.0.0.2", pktbuild.UDP, uint16(i), uint16(round), 100).Bytes())
		}
		ts.in("a", fs[:100]...)
		ts.advance(10 * time.Second)
		ts.in("a", fs[100:]...)
		ts.advance(6 * time.Second)
		rs := ts.sw.ExpireFlows(time.Hour, 15*time.Second, nil)
		seen := map[uint16]bool{}
		for _, r := range rs {
			if r.SrcPort >= 100 || seen[r.SrcPort] {
				t.Fatalf("round %d: record for port %d (once: %v)", round, r.SrcPort, !seen[r.SrcPort])
			}
			seen[r.SrcPort] = true
		}
		if len(seen) != 100 {
			t.Fatalf("round %d: %d idle flows reported, want 100", round, len(seen))
		}
		if rs := ts.sw.DrainFlows(nil); len(rs) != 100 {
			t.Fatalf("round %d: %d left, want 100", round, len(rs))
		}
	}
}

func TestFlowAccountNoAlloc(t *testing.T) {
	sw := New(Config{Clock: NewManualClock(1)})
	ha, _ := sw.AddPort(access("a", 1), nullPort{})
	hb, _ := sw.AddPort(access("b", 1), nullPort{})
	sw.EnableFlows(FlowConfig{})
	a, b := mac(1), mac(2)
	hb.Input([]Frame{{Data: pf(a, b, 0, "", "", 0, 0, 0, 60).Bytes()}})
	var batch []Frame
	for i := range 32 {
		batch = append(batch, Frame{Data: pf(b, a, 0, "10.0.0.1", "10.0.0.2", pktbuild.TCP, uint16(i), 80, 200).Bytes()})
		batch = append(batch, Frame{Data: pf(b, a, 0, "fd00::1", "fd00::2", pktbuild.UDP, uint16(i), 80, 200).Bytes()})
	}
	ha.Input(batch)
	if n := testing.AllocsPerRun(100, func() { ha.Input(batch) }); n != 0 {
		t.Fatalf("%v allocations per batch with flows on", n)
	}
}

// TestFlowsConcurrent: ports forwarding on their own goroutines while the
// exporter's scans and the API's listings run (go test -race).
func TestFlowsConcurrent(t *testing.T) {
	sw := New(Config{})
	sw.EnableFlows(FlowConfig{MaxFlows: 3 * flowScanChunk})
	const n = 4
	hs := make([]*PortHandle, n)
	for i := range hs {
		h, err := sw.AddPort(access(fmt.Sprint("p", i), 1), nullPort{})
		if err != nil {
			t.Fatal(err)
		}
		hs[i] = h
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var total [n]uint64
	for i, h := range hs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := mac(byte(10 + i))
			for r := 0; ; r++ {
				select {
				case <-stop:
					return
				default:
				}
				var fs []Frame
				for j := range 16 {
					fs = append(fs, Frame{Data: pf(mac(byte(10+(i+1)%n)), src, 0, "10.0.0.1", "10.0.0.2", pktbuild.UDP, uint16(r%1000), uint16(j), 100).Bytes()})
				}
				h.Input(fs)
				total[i] += 16
			}
		}()
	}
	var got uint64
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		for _, r := range sw.ExpireFlows(time.Millisecond, 20*time.Millisecond, nil) {
			got += r.Packets
		}
		sw.Flows(5, FlowsByBytes)
		sw.FlowStats()
	}
	close(stop)
	wg.Wait()
	for _, r := range sw.DisableFlows(nil) {
		got += r.Packets
	}
	var sent uint64
	for i := range total {
		sent += total[i]
	}
	st := sw.FlowStats()
	if got+st.Full != sent {
		t.Fatalf("%d frames counted in flows + %d not cached, %d sent", got, st.Full, sent)
	}
}

// TestFlowExpireChunks: a shard bigger than a scan's chunk, scanned a
// chunk per lock hold: every idle flow reported once, the busy ones kept.
func TestFlowExpireChunks(t *testing.T) {
	ts := newTestSwitch(t, access("a", 1), access("b", 1))
	ts.sw.EnableFlows(FlowConfig{})
	a, b := mac(1), mac(2)
	ts.in("b", pf(a, b, 0, "", "", 0, 0, 0, 60).Bytes())
	ts.sw.DrainFlows(nil)
	const n = 3*flowScanChunk + 100
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = pf(b, a, 0, "10.0.0.1", "10.0.0.2", pktbuild.UDP, uint16(i), 7, 64).Bytes()
	}
	for i := 0; i < n; i += 64 {
		ts.in("a", frames[i:min(i+64, n)]...)
	}
	ts.advance(10 * time.Second)
	for i := 0; i < n; i += 2 * 64 { // every other batch of 64 stays busy
		ts.in("a", frames[i:min(i+64, n)]...)
	}
	ts.advance(6 * time.Second)
	rs := ts.sw.ExpireFlows(time.Hour, 15*time.Second, nil)
	seen := map[uint16]bool{}
	for _, r := range rs {
		if seen[r.SrcPort] || (int(r.SrcPort)/64)%2 == 0 {
			t.Fatalf("record for port %d: twice or busy", r.SrcPort)
		}
		seen[r.SrcPort] = true
	}
	busy := 0
	for i := 0; i < n; i++ {
		if (i/64)%2 == 0 {
			busy++
		}
	}
	if len(seen) != n-busy || ts.sw.FlowStats().Active != int64(busy) {
		t.Fatalf("%d idle flows reported of %d, %d left of %d busy", len(seen), n-busy, ts.sw.FlowStats().Active, busy)
	}
}
