package vswitch

import (
	"testing"
	"time"

	"github.com/hvnet/hvnet/frame"
)

func TestMACLimit(t *testing.T) {
	a := access("a", 1)
	a.MACLimit = 2
	ts := newTestSwitch(t, a, access("b", 1))
	ts.sw.SetAgingTime(10 * time.Second)
	for _, src := range []byte{1, 2, 3, 1, 2} {
		ts.in("a", eth(Broadcast, mac(src), 0x0800, 46))
	}
	if got := len(ts.s["b"].take()); got != 4 {
		t.Errorf("forwarded %d; want 4 (mac 3 refused)", got)
	}
	if d := ts.drops("a", DropMACLimit); d != 1 {
		t.Errorf("mac limit drops = %d; want 1", d)
	}
	// Once the old entries age out, a new MAC fits even before Expire.
	ts.advance(11 * time.Second)
	ts.in("a", eth(Broadcast, mac(3), 0x0800, 46))
	if got := len(ts.s["b"].take()); got != 1 {
		t.Errorf("after aging forwarded %d; want 1", got)
	}
	if n := ts.h["a"].Counters().LearnedMACs; n != 1 {
		t.Errorf("learned = %d; want 1", n)
	}
	// Raising the limit live.
	a.MACLimit = 3
	if err := ts.sw.UpdatePort(a); err != nil {
		t.Fatal(err)
	}
	ts.in("a", eth(Broadcast, mac(4), 0x0800, 46), eth(Broadcast, mac(5), 0x0800, 46), eth(Broadcast, mac(6), 0x0800, 46))
	if d := ts.drops("a", DropMACLimit); d != 2 {
		t.Errorf("mac limit drops = %d; want 2", d)
	}
	// A move into a full port counts against its limit too.
	ts.in("b", eth(Broadcast, mac(7), 0x0800, 46))
	ts.advance(DefaultMACMoveHoldDown) // past the hold-down: the move is allowed but for the limit
	ts.in("a", eth(Broadcast, mac(7), 0x0800, 46))
	if d := ts.drops("a", DropMACLimit); d != 3 {
		t.Errorf("mac limit drops = %d; want 3", d)
	}
}

func TestAntiSpoofing(t *testing.T) {
	a := access("a", 1)
	a.AllowedMACs = []MAC{mac(1)}
	ts := newTestSwitch(t, a, access("b", 1))
	ts.in("a", eth(Broadcast, mac(1), 0x0800, 46), eth(Broadcast, mac(2), 0x0800, 46))
	if got := len(ts.s["b"].take()); got != 1 {
		t.Errorf("forwarded %d; want 1", got)
	}
	if d := ts.drops("a", DropSpoofed); d != 1 {
		t.Errorf("spoofed drops = %d; want 1", d)
	}
	// A group source is never valid.
	ts.in("b", eth(Broadcast, MAC{0x01, 0, 0, 0, 0, 1}, 0x0800, 46))
	if d := ts.drops("b", DropMalformed); d != 1 {
		t.Errorf("group source drops = %d; want 1", d)
	}
	a.AllowedMACs = append(a.AllowedMACs, mac(2))
	if err := ts.sw.UpdatePort(a); err != nil {
		t.Fatal(err)
	}
	ts.in("a", eth(Broadcast, mac(2), 0x0800, 46))
	if got := len(ts.s["b"].take()); got != 1 {
		t.Errorf("after allowing mac 2 forwarded %d; want 1", got)
	}
	a.AllowedMACs = []MAC{{0x01}}
	if err := ts.sw.UpdatePort(a); err == nil {
		t.Error("UpdatePort accepted a group address as allowed MAC")
	}
}

func TestBadInput(t *testing.T) {
	good := tcpFrame(false, nil, 3000, 1448, 0x18)
	mod := func(f func(*Frame)) Frame {
		c := Frame{Data: append([]byte(nil), good.Data...), Off: good.Off}
		f(&c)
		return c
	}
	udp := tcpFrame(false, nil, 100, 0, 0)
	udp.Data[14+9] = 17
	udp.Off.GSOType, udp.Off.GSOSize = frame.GSOTCPv4, 1000
	for _, tt := range []struct {
		name string
		f    Frame
		want DropReason
	}{
		{"empty", Frame{}, DropMalformed},
		{"13 bytes", Frame{Data: make([]byte, 13)}, DropMalformed},
		{"tag cut", Frame{Data: tag(eth(Broadcast, mac(1), 0x800, 0), tpidCTag, 0, 0)[:16]}, DropMalformed},
		{"oversize", Frame{Data: eth(Broadcast, mac(1), 0x800, 1501)}, DropMalformed},
		{"gso oversize", mod(func(f *Frame) { f.Data = append(f.Data, make([]byte, 70000)...) }), DropMalformed},
		{"csum start beyond", mod(func(f *Frame) { f.Off.CsumStart = uint16(len(f.Data)) }), DropMalformed},
		{"csum offset beyond", mod(func(f *Frame) { f.Off.CsumOffset = uint16(len(f.Data)) }), DropMalformed},
		{"csum start in L2", mod(func(f *Frame) { f.Off.CsumStart = 4 }), DropMalformed},
		{"gso size 0", mod(func(f *Frame) { f.Off.GSOSize = 0 }), DropMalformed},
		{"gso size above mtu", mod(func(f *Frame) { f.Off.GSOSize = 9000 }), DropMalformed},
		{"gso udp", mod(func(f *Frame) { f.Off.GSOType = frame.GSOUDP }), DropMalformed},
		{"gso v6 on v4", mod(func(f *Frame) { f.Off.GSOType = frame.GSOTCPv6 }), DropMalformed},
		{"gso on udp", udp, DropMalformed},
		{"hdr len beyond", mod(func(f *Frame) { f.Off.HdrLen = uint16(len(f.Data) + 1) }), DropMalformed},
		{"bad ihl", mod(func(f *Frame) { f.Data[14] = 0x41 }), DropMalformed},
		{"bad tcp offset", mod(func(f *Frame) { f.Data[14+20+12] = 0x40 }), DropMalformed},
		{"fragment", mod(func(f *Frame) { f.Data[14+6] = 0x20 }), DropMalformed},
		{"truncated tcp", mod(func(f *Frame) { f.Data = f.Data[:14+20+10] }), DropMalformed},
		{"unknown gso type", mod(func(f *Frame) { f.Off.GSOType = 9 }), DropMalformed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestSwitch(t, access("a", 1), access("b", 1))
			ts.h["a"].Input([]Frame{tt.f})
			if got := ts.drops("a", tt.want); got != 1 {
				t.Errorf("drops[%v] = %d; want 1 (counters %+v)", tt.want, got, ts.h["a"].Counters())
			}
			if got := len(ts.s["b"].take()); got != 0 {
				t.Errorf("b got %d frames", got)
			}
		})
	}
}
