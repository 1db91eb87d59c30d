package vswitch

import (
	"encoding/binary"
	"fmt"
	"testing"
)

// Tenant isolation: frames whose outer EtherType some equipment
// reads as a tag never leave a trunk looking like another VLAN, and one
// GSO frame cannot be multiplied without bound.

// Every TPID isTag knows, on every position a hop could hide it (outer,
// behind a priority tag), from an access port and from a trunk: the frame
// reaches no port of VLAN 20 and leaves no trunk with anything but VLAN
// 10's frames, and each drop is counted.
func TestTagTypesEverywhere(t *testing.T) {
	tpids := []uint16{tpidCTag, tpidSTag, 0x9100, 0x9200, 0x9300}
	for _, tp := range tpids {
		for _, how := range []string{"outer", "behind priority tag"} {
			for _, from := range []string{"access", "trunk"} {
				t.Run(fmt.Sprintf("%#04x %s from %s", tp, how, from), func(t *testing.T) {
					ts := newTestSwitch(t, access("acc10", 10), trunk("in", 10, 10), access("acc20", 20), trunk("up", 10, 10, 20))
					f := eth(Broadcast, mac(1), 0x0800, 46)
					f = tag(f, tp, 0, 20)
					if how == "behind priority tag" {
						f = tag(f, tpidCTag, 0, 0)
					}
					in := "acc10"
					if from == "trunk" {
						in = "in"
					}
					ts.in(in, f)
					if n := len(ts.s["acc20"].take()); n != 0 {
						t.Fatalf("%d frames reached VLAN 20's access port", n)
					}
					for _, o := range ts.s["up"].take() {
						et := binary.BigEndian.Uint16(o.Data[12:])
						if isTag(et) {
							vid := binary.BigEndian.Uint16(o.Data[14:]) & 0xfff
							if vid == 20 || et != tpidCTag {
								t.Fatalf("frame left the trunk tagged %#04x VID %d", et, vid)
							}
						}
					}
					legit := tp == tpidCTag && from == "trunk" && how == "outer" // a trunk's own VLAN 20 frame
					if legit {
						return
					}
					if from == "trunk" && tp == tpidSTag && how == "outer" {
						return // 0x88a8 VID 20 on a trunk allowing only 10: filtered as VLAN 20
					}
					if d := ts.drops(in, DropVLAN); d != 1 {
						t.Fatalf("vlan drops on %s = %d, want 1", in, d)
					}
				})
			}
		}
	}
}

// A frame one tag type hides behind another (the QinQ hop): the L3
// parser and classification agree on where L3 starts.
func TestTagDefinitionShared(t *testing.T) {
	for _, tp := range []uint16{tpidCTag, tpidSTag, 0x9100, 0x9200, 0x9300} {
		f := tag(eth(Broadcast, mac(1), 0x0800, 46), tp, 0, 5)
		if l3, et := l3Offset(f); l3 != 18 || et != 0x0800 {
			t.Errorf("l3Offset with TPID %#04x = %d, %#04x; want 18, 0x0800", tp, l3, et)
		}
		if !isTag(tp) {
			t.Errorf("isTag(%#04x) = false", tp)
		}
	}
	for _, et := range []uint16{0x0800, 0x86dd, 0x0806, 0x88b5, 0x8847} {
		if isTag(et) {
			t.Errorf("isTag(%#04x) = true", et)
		}
	}
}

// gso_size 1 on a 64 KiB frame would be ~65,000 segments: dropped whole
// and counted; the bound itself passes, one byte more does not.
func TestGSOSegmentBound(t *testing.T) {
	full := CapCsum | CapGSOTCPv4 | CapGSOTCPv6 | CapGSOECN
	for _, tc := range []struct {
		payload int
		mss     uint16
		pass    bool
	}{
		{64000, 1, false},
		{65000, 100, false},
		{MaxGSOSegments * 500, 500, true},
		{MaxGSOSegments*500 + 1, 500, false},
		{64000, 536, true},
	} {
		for _, v6 := range []bool{false, true} {
			t.Run(fmt.Sprintf("v6=%v payload=%d mss=%d", v6, tc.payload, tc.mss), func(t *testing.T) {
				ts := newTestSwitch(t)
				ts.add(access("in", 1), full)
				ts.add(access("plain", 1), 0)
				ts.add(access("gso", 1), full)
				ts.h["in"].Input([]Frame{tcpFrame(v6, nil, tc.payload, tc.mss, 0x18)})
				segs, whole := ts.s["plain"].take(), ts.s["gso"].take()
				if !tc.pass {
					if len(segs)+len(whole) != 0 {
						t.Fatalf("forwarded %d segments and %d whole frames, want none", len(segs), len(whole))
					}
					if d := ts.drops("in", DropMalformed); d != 1 {
						t.Fatalf("malformed drops = %d, want 1", d)
					}
					return
				}
				want := (tc.payload + int(tc.mss) - 1) / int(tc.mss)
				if len(segs) != want || len(whole) != 1 {
					t.Fatalf("got %d segments and %d whole frames, want %d and 1", len(segs), len(whole), want)
				}
			})
		}
	}
}
