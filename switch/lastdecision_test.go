package vswitch

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hvnet/hvnet/frame"
)

// Reusing a batch's last decision (lastDecision) must change nothing a
// port or an operator can see. Two switches, one deciding every frame
// afresh, take the same random batches: trains of frames with the same
// header up to L3 (and some with another header between them) whose
// lengths, payloads and offloads vary frame to frame, valid and not, over
// every tag form a tenant can send (untagged, priority-tagged, C- and
// S-tagged, QinQ, a pre-standard TPID), group, reserved, zero and spoofed
// addresses, from access, trunk and dot1q-tunnel ports, one with port
// security; between batches the operator changes ports' VLANs, puts on
// and takes off egress ACLs, a shaper and a mirror, flushes the FDB and
// time passes. What every port receives (bytes and offloads, in order)
// and every counter must be the same in both.
func TestLastDecisionAgrees(t *testing.T) {
	own := MAC{0x52, 0x54, 0, 0, 0, 0xaa}
	type dut struct {
		sw    *Switch
		clock *ManualClock
		s     map[string]*sink
		m     *mirrorLog
	}
	caps := map[string]Caps{"a": CapCsum | CapGSOTCPv4, "b": CapCsum | CapGSOTCPv4 | CapGSOTCPv6 | CapTail, "c": 0, "d": CapCsum, "e": CapCsum | CapGSOTCPv4 | CapTail}
	cfgs := func() []PortConfig {
		a := access("a", 10)
		a.PortSecurity = PortSecurityOn
		d := PortConfig{Name: "d", Mode: ModeDot1QTunnel, PVID: 30}
		return []PortConfig{a, access("b", 10), trunk("c", 10, 10, 20, 30), d, access("e", 20)}
	}
	mk := func(each bool) *dut {
		x := &dut{clock: NewManualClock(1_000_000_000_000), s: map[string]*sink{}}
		x.sw = New(Config{Clock: x.clock})
		x.sw.decideEach = each
		x.m = &mirrorLog{}
		x.sw.SetMirror(x.m)
		for _, c := range cfgs() {
			x.s[c.Name] = newSink(caps[c.Name])
			var err error
			if c.Name == "a" {
				_, err = x.sw.AddPort(c, ownSink{x.s[c.Name], own})
			} else {
				_, err = x.sw.AddPort(c, x.s[c.Name])
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		return x
	}
	reuse, fresh := mk(false), mk(true)
	names := []string{"a", "b", "c", "d", "e"}

	rng := uint64(0x9e3779b97f4a7c15)
	next := func(n int) int {
		rng ^= rng << 13
		rng ^= rng >> 7
		rng ^= rng << 17
		return int(rng % uint64(n))
	}
	macs := []MAC{own, mac(1), mac(2), mac(3), mac(4), Broadcast, {0x01, 0, 0x5e, 0, 0, 1},
		{0x01, 0x80, 0xc2, 0, 0, 0}, {0x01, 0x80, 0xc2, 0, 0, 0x0e}, {}}
	// header draws the bytes up to L3 of a frame.
	header := func() []byte {
		dst, src := macs[next(len(macs))], macs[next(len(macs)-4)] // sources: no group, mostly valid
		if next(20) == 0 {
			src = macs[5+next(5)] // group or zero
		}
		h := append(append([]byte{}, dst[:]...), src[:]...)
		vids := []uint16{0, 10, 20, 30, 4095}
		switch next(7) {
		case 1:
			h = binary.BigEndian.AppendUint16(h, tpidCTag)
			h = binary.BigEndian.AppendUint16(h, uint16(next(8))<<13|vids[next(len(vids))])
		case 2:
			h = binary.BigEndian.AppendUint16(h, tpidSTag)
			h = binary.BigEndian.AppendUint16(h, vids[next(len(vids))])
			h = binary.BigEndian.AppendUint16(h, tpidCTag)
			h = binary.BigEndian.AppendUint16(h, vids[next(len(vids))])
		case 3:
			h = binary.BigEndian.AppendUint16(h, 0x9100)
			h = binary.BigEndian.AppendUint16(h, 20)
		case 4: // a priority tag with a tag behind it
			h = binary.BigEndian.AppendUint16(h, tpidCTag)
			h = binary.BigEndian.AppendUint16(h, 0)
			h = binary.BigEndian.AppendUint16(h, tpidCTag)
			h = binary.BigEndian.AppendUint16(h, 20)
		}
		ets := []uint16{etherTypeIPv4, etherTypeIPv4, etherTypeIPv6, 0x0806}
		return binary.BigEndian.AppendUint16(h, ets[next(len(ets))])
	}
	// body builds a frame behind hdr: an IP/TCP packet (or not) of a
	// random length, and random offloads, valid or not.
	body := func(hdr []byte) Frame {
		et := binary.BigEndian.Uint16(hdr[len(hdr)-2:])
		n := []int{0, 4, 46, 200, 1500, 1510, 3000}[next(7)]
		b := append(append([]byte{}, hdr...), make([]byte, n)...)
		ip := b[len(hdr):]
		var off frame.Offload
		switch {
		case et == etherTypeIPv4 && n >= 40:
			ip[0], ip[9] = 0x45, ipProtoTCP
			binary.BigEndian.PutUint16(ip[2:], uint16(n))
			ip[20+12] = 5 << 4
		case et == etherTypeIPv6 && n >= 60:
			ip[0], ip[6] = 0x60, ipProtoTCP
			binary.BigEndian.PutUint16(ip[4:], uint16(n-40))
			ip[40+12] = 5 << 4
		}
		for i := 40; i < len(ip); i++ {
			ip[i] = byte(next(256))
		}
		switch next(6) {
		case 1:
			off.Flags = frame.NeedsCsum
			off.CsumStart, off.CsumOffset = uint16(len(hdr)+next(2)*20), 16
		case 2:
			off.Flags, off.GSOType, off.GSOSize = frame.NeedsCsum, frame.GSOTCPv4, uint16(next(3)*700)
			off.CsumStart, off.CsumOffset, off.HdrLen = uint16(len(hdr)+20), 16, uint16(len(hdr)+40)
		case 3:
			off.Flags, off.GSOType, off.GSOSize = frame.NeedsCsum, frame.GSOTCPv6, 1000
			off.CsumStart, off.CsumOffset, off.HdrLen = uint16(len(hdr)+40), 16, uint16(len(hdr)+60)
		}
		return Frame{Data: b, Off: off}
	}
	batch := func() []Frame {
		fs := make([]Frame, 1+next(40))
		hdr := header()
		for i := range fs {
			if next(8) == 0 {
				hdr = header() // a new train
			}
			fs[i] = body(hdr)
			if next(10) == 0 {
				fs[i] = body(header()) // one frame of another header in a train
			}
			if len(fs[i].Data) > frame.HeadLen && next(2) == 0 {
				// in two parts, as a virtio-net port's frames come
				fs[i].Data, fs[i].Tail = fs[i].Data[:frame.HeadLen], fs[i].Data[frame.HeadLen:]
			}
		}
		return fs
	}
	ops := 0
	var adv time.Duration
	operate := func(x *dut, op int) error {
		switch op {
		case 0:
			c := access("b", []uint16{10, 20}[ops%2])
			c.MirrorEgress = ops/2%2 == 0
			return x.sw.UpdatePort(c)
		case 1:
			return x.sw.SetEgressACL("c", ACL{Rules: []ACLRule{{Action: ACLDeny, EtherType: etherTypeIPv6}}})
		case 2:
			return x.sw.SetEgressACL("c", ACL{})
		case 3:
			_, err := x.sw.Flush("", 0)
			return err
		case 4:
			c := access("e", 20)
			if ops%2 == 0 {
				c.Egress = RateLimit{Bytes: Bucket{Rate: 1 << 30, Burst: 1 << 20}}
			}
			return x.sw.UpdatePort(c)
		case 5:
			x.clock.Advance(adv)
		}
		return nil
	}
	hits := 0
	for step := range 3000 {
		if next(4) == 0 {
			op := next(6)
			adv = time.Duration(next(400)) * time.Second
			ops++
			for _, x := range []*dut{reuse, fresh} {
				if err := operate(x, op); err != nil {
					t.Fatalf("step %d: op %d: %v", step, op, err)
				}
			}
		}
		port := names[next(len(names))]
		fs := batch()
		for i := 1; i < len(fs); i++ {
			if bytes.Equal(fs[i].Data[:12], fs[i-1].Data[:12]) {
				hits++
			}
		}
		for _, x := range []*dut{reuse, fresh} {
			in := make([]Frame, len(fs))
			for i := range fs {
				in[i] = Frame{Data: append([]byte(nil), fs[i].Data...), Tail: fs[i].Tail, Off: fs[i].Off}
			}
			x.sw.ports[port].Input(in)
		}
		if fa, fb := fmt.Sprint(reuse.sw.FDB()), fmt.Sprint(fresh.sw.FDB()); fa != fb {
			t.Logf("step %d: FDBs differ:\n%s\n%s", step, fa, fb)
		}
		for _, n := range names {
			a, b := reuse.s[n].take(), fresh.s[n].take()
			if d := diffFrames(a, b); d != "" {
				for i, f := range fs {
					t.Logf("in %d: % x %+v", i, f.Data[:min(len(f.Data), 24)], f.Off)
				}
				for i, f := range a {
					t.Logf("reuse out %d: % x len %d", i, f.Data[:min(len(f.Data), 24)], len(f.Data))
				}
				for i, f := range b {
					t.Logf("fresh out %d: % x len %d", i, f.Data[:min(len(f.Data), 24)], len(f.Data))
				}
				t.Logf("counters %+v / %+v", reuse.sw.ports[port].Counters(), fresh.sw.ports[port].Counters())
				t.Fatalf("step %d (batch of %d from %s): port %s got %s", step, len(fs), port, n, d)
			}
			ca, cb := reuse.sw.ports[n].Counters(), fresh.sw.ports[n].Counters()
			if ca != cb {
				t.Fatalf("step %d: port %s counters differ:\nreusing %+v\nfresh   %+v", step, n, ca, cb)
			}
			if ta, tb := reuse.s[n].tails, fresh.s[n].tails; ta != tb || reuse.s[n].badTails != 0 {
				t.Fatalf("step %d: port %s got %d frames in two parts reusing decisions (%d it cannot take), %d deciding each", step, n, ta, reuse.s[n].badTails, tb)
			}
		}
		if ma, mb := reuse.m.take(), fresh.m.take(); ma != mb {
			t.Fatalf("step %d: mirrored\n%s\nreusing decisions, deciding each\n%s", step, ma, mb)
		}
	}
	if hits < 10000 {
		t.Errorf("only %d frames behind one of the same header: the test does not exercise reuse", hits)
	}
}

func diffFrames(a, b []Frame) string {
	if len(a) != len(b) {
		return fmt.Sprintf("%d frames reusing decisions, %d deciding each", len(a), len(b))
	}
	for i := range a {
		if !bytes.Equal(a[i].Data, b[i].Data) || a[i].Off != b[i].Off {
			return fmt.Sprintf("frame %d differs:\n% x %+v\n% x %+v", i, a[i].Data, a[i].Off, b[i].Data, b[i].Off)
		}
	}
	return ""
}

// A decision never outlives its batch: after a port leaves the VLAN, the
// next batch of the same frames does not reach it, nor the batch after
// an egress ACL went on.
func TestLastDecisionBatchBound(t *testing.T) {
	ts := newTestSwitch(t, access("a", 10), access("b", 10))
	f := eth(mac(9), mac(1), etherTypeIPv4, 60)
	ts.in("a", f, f, f)
	if n := len(ts.s["b"].take()); n != 3 {
		t.Fatalf("b got %d of 3 flooded frames", n)
	}
	if err := ts.sw.SetEgressACL("b", ACL{Default: ACLDeny}); err != nil {
		t.Fatal(err)
	}
	ts.in("a", f, f, f)
	if n := len(ts.s["b"].take()); n != 0 {
		t.Fatalf("b got %d frames through a deny-all egress ACL", n)
	}
	if err := ts.sw.SetEgressACL("b", ACL{}); err != nil {
		t.Fatal(err)
	}
	if err := ts.sw.UpdatePort(access("b", 20)); err != nil {
		t.Fatal(err)
	}
	ts.in("a", f, f, f)
	if n := len(ts.s["b"].take()); n != 0 {
		t.Fatalf("b, now in VLAN 20, got %d frames of VLAN 10", n)
	}
}

// mirrorLog records what is mirrored, as text.
type mirrorLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (m *mirrorLog) Mirror(port string, dir Direction, ts int64, frames []Frame) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range frames {
		fmt.Fprintf(&m.b, "%s %v %d % x tail %d\n", port, dir, ts, f.Data, len(f.Tail))
	}
}

func (m *mirrorLog) take() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.b.String()
	m.b.Reset()
	return s
}

// ownSink is a sink with a MAC of its own (port security applies).
type ownSink struct {
	*sink
	mac MAC
}

func (p ownSink) MAC() (MAC, bool) { return p.mac, true }

// With the operator changing a port's VLAN and egress ACL while two
// queues of another port send it trains of frames (reused decisions:
// unicast to it while its MAC is known, flooded while not), no
// batch that ran wholly while the port was out of the VLAN or behind a
// deny-all egress ACL delivers to it: a decision never crosses a batch.
func TestLastDecisionConcurrentConfig(t *testing.T) {
	ts := newTestSwitch(t, access("a", 10), access("c", 10))
	ts.add(access("b", 10), CapTail)
	ts.in("b", eth(Broadcast, mac(9), etherTypeIPv4, 46))
	const batches = 3000
	var epoch atomic.Int64 // odd: b is shut off from a's frames
	type span struct{ e1, e2 int64 }
	spans := make([][]span, 2)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for q := range 2 {
		spans[q] = make([]span, batches)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fs := make([]Frame, 16)
			for n := range batches {
				e1 := epoch.Load()
				for i := range fs {
					d := eth(mac(9), mac(byte(1+q)), etherTypeIPv4, 60)
					binary.BigEndian.PutUint32(d[20:], uint32(q<<24|n))
					fs[i] = Frame{Data: d}
				}
				ts.h["a"].InputQueue(q, fs)
				spans[q][n] = span{e1, epoch.Load()}
			}
		}()
	}
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			// Odd epochs: b shut off from the epoch's start, opened
			// only after it ended.
			var err error
			if i%2 == 0 {
				if i%4 == 0 {
					err = ts.sw.UpdatePort(access("b", 20))
				} else {
					err = ts.sw.SetEgressACL("b", ACL{Default: ACLDeny})
				}
				epoch.Add(1)
				// Hold it while a few batches run.
				for rx := ts.h["a"].Counters().RxPackets; ts.h["a"].Counters().RxPackets < min(rx+4*16, 2*batches*16); {
					runtime.Gosched()
				}
			} else {
				epoch.Add(1)
				if err = ts.sw.UpdatePort(access("b", 10)); err == nil {
					err = ts.sw.SetEgressACL("b", ACL{})
				}
				// b's guest speaks: a's frames to it are unicast
				// again (a VLAN change flushed its entry).
				ts.in("b", eth(Broadcast, mac(9), etherTypeIPv4, 46))
			}
			if err != nil {
				t.Error(err)
				return
			}
			if ts.h["a"].Counters().RxPackets >= 2*batches*16 {
				return
			}
		}
	}()
	wg.Wait()
	<-done
	got, shut := 0, 0
	for _, f := range ts.s["b"].take() {
		id := binary.BigEndian.Uint32(f.Data[20:])
		s := spans[id>>24][id&0xffffff]
		got++
		if s.e1 == s.e2 && s.e1%2 == 1 {
			t.Fatalf("batch %d of queue %d ran while b was shut off (epoch %d) and reached b", id&0xffffff, id>>24, s.e1)
		}
	}
	for q := range spans {
		for _, s := range spans[q] {
			if s.e1 == s.e2 && s.e1%2 == 1 {
				shut++
			}
		}
	}
	t.Logf("b got %d frames; %d batches ran wholly while it was shut off", got, shut)
	if got == 0 || shut == 0 {
		t.Errorf("b got %d frames, %d batches ran while it was shut off: the test raced nothing", got, shut)
	}
}
