package vswitch

import (
	"testing"

	"github.com/hvnet/hvnet/frame"
)

// FuzzInput feeds one arbitrary frame with arbitrary offload metadata into
// each kind of port and checks that nothing panics and that every frame the
// switch emits is a sane Ethernet frame. Seeds are in testdata/fuzz/FuzzInput.
func FuzzInput(f *testing.F) {
	f.Add(eth(Broadcast, mac(1), 0x0800, 46), uint8(0), uint8(0), uint8(0), uint16(0), uint16(0), uint16(0), uint16(0))
	g := tcpFrame(false, nil, 3000, 1448, 0x19)
	f.Add(g.Data, uint8(0), g.Off.Flags, g.Off.GSOType, g.Off.HdrLen, g.Off.GSOSize, g.Off.CsumStart, g.Off.CsumOffset)
	g6 := tcpFrame(true, [][2]uint16{{tpidCTag, 1}}, 2000, 500, 0x18)
	f.Add(g6.Data, uint8(1), g6.Off.Flags, g6.Off.GSOType, g6.Off.HdrLen, g6.Off.GSOSize, g6.Off.CsumStart, g6.Off.CsumOffset)
	f.Add(tag(tag(eth(Broadcast, mac(1), 0x0800, 46), tpidCTag, 0, 5), tpidSTag, 3, 100), uint8(1), uint8(0), uint8(0), uint16(0), uint16(0), uint16(0), uint16(0))
	// One switch for the whole run (building one per input is most of the
	// cost); the FDB is flushed between inputs so each starts the same.
	sw := New(Config{Clock: NewManualClock(1)})
	// The flow cache on: every forwarded frame's flow key is parsed too
	// (flowcache.go), small enough to fill.
	if err := sw.EnableFlows(FlowConfig{MaxFlows: 8, Sampling: 1}); err != nil {
		f.Fatal(err)
	}
	full := CapCsum | CapGSOTCPv4 | CapGSOTCPv6 | CapGSOECN
	cfgs := []PortConfig{
		access("acc", 1),
		trunk("trk", 1, 1, 2, 100),
		{Name: "tun", Mode: ModeDot1QTunnel, PVID: 100},
		trunk("trk0", 0, 1, 2, 100),
		access("acc0", 1),
	}
	caps := []Caps{full | CapTail, full, full | CapTail, 0, CapTail}
	var hs []*PortHandle
	var ss []*sink
	for i, c := range cfgs {
		s := newSink(caps[i])
		h, err := sw.AddPort(c, s)
		if err != nil {
			f.Fatal(err)
		}
		hs, ss = append(hs, h), append(ss, s)
	}
	// Stateful security groups on two ports: every IP frame in or out of
	// them is parsed and tracked (acc's allows everything, trk's is the
	// clouds' default).
	open, def := SecurityGroup{}, DefaultSecurityGroup()
	for name, sg := range map[string]*SecurityGroup{"acc": &open, "trk": &def} {
		if err := sw.SetSecurityGroup(name, sg, false); err != nil {
			f.Fatal(err)
		}
	}
	var flows []FlowRecord
	flush := func(t *testing.T) {
		if _, err := sw.Flush("", 0); err != nil {
			t.Fatal(err)
		}
		flows = sw.DrainFlows(flows[:0])
		for _, r := range flows {
			if r.Packets == 0 || r.Bytes < r.L3Bytes || r.Bytes/r.Packets < 14 {
				t.Fatalf("flow record %+v", r)
			}
		}
		for _, h := range hs {
			if z := h.Conntrack(); z != nil {
				z.Flush()
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, port, flags, gsoType uint8, hdrLen, gsoSize, csumStart, csumOffset uint16) {
		flush(t)
		fr := Frame{Data: data, Off: frame.Offload{Flags: flags, GSOType: gsoType, HdrLen: hdrLen, GSOSize: gsoSize, CsumStart: csumStart, CsumOffset: csumOffset}}
		orig := append([]byte(nil), data...)
		in := hs[int(port)%len(hs)]
		in.Input([]Frame{fr, fr})
		if string(orig) != string(data) {
			t.Fatal("Input modified its input")
		}
		// The same frame in two parts, as a virtio-net device hands it
		// (headers copied, payload as a tail): every port gets the same.
		var whole [][]Frame
		for _, s := range ss {
			whole = append(whole, s.take())
		}
		flush(t)
		pf := split(fr)
		in.Input([]Frame{pf, pf})
		for k, s := range ss {
			got := s.take()
			if len(got) != len(whole[k]) {
				t.Fatalf("port %d: %d frames from the two-part input, %d from the whole", k, len(got), len(whole[k]))
			}
			for j := range got {
				if string(got[j].Data) != string(whole[k][j].Data) || got[j].Off != whole[k][j].Off {
					t.Fatalf("port %d frame %d differs between two-part and whole input", k, j)
				}
			}
			if s.badTails != 0 {
				t.Fatalf("port %d without CapTail got a tail", k)
			}
		}
		for _, fs := range whole {
			for _, o := range fs {
				if len(o.Data) < 14 || len(o.Data) > maxGSOFrame+8 {
					t.Fatalf("emitted a %d-byte frame", len(o.Data))
				}
				if o.Off.Flags&frame.NeedsCsum != 0 && int(o.Off.CsumStart)+int(o.Off.CsumOffset)+2 > len(o.Data) {
					t.Fatalf("emitted bad csum metadata %+v for %d bytes", o.Off, len(o.Data))
				}
			}
		}
	})
}

// FuzzFlowFields: the flow key parser on hostile bytes never panics and
// never points past the frame.
func FuzzFlowFields(f *testing.F) {
	f.Add(tcpFrame(false, nil, 100, 0, 0x12).Data)
	f.Add(tcpFrame(true, [][2]uint16{{tpidCTag, 7}}, 100, 0, 0x11).Data)
	f.Add(eth(Broadcast, mac(1), 0x0806, 46))
	f.Fuzz(func(t *testing.T, data []byte) {
		l3, et := l3Offset(data)
		if l3 < 0 || len(data) < 14 {
			return
		}
		var k flowKey
		sport, dport, ports, icmp, flags := flowFields(data, l3, et, &k)
		if k.l4 < 0 || int(k.l4) > len(data) || (k.l4 != 0 && int(k.l4) < l3+20) {
			t.Fatalf("l4 offset %d in %d bytes (l3 %d)", k.l4, len(data), l3)
		}
		if icmp && (ports || sport != 0) || flags&0xf000 != 0 || (!ports && !icmp && (sport|dport) != 0) {
			t.Fatalf("fields %d %d %v %v %#x", sport, dport, ports, icmp, flags)
		}
	})
}
