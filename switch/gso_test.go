package vswitch

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/hvnet/hvnet/frame"
)

func TestGSOSegmentation(t *testing.T) {
	full := CapCsum | CapGSOTCPv4 | CapGSOTCPv6 | CapGSOECN
	for _, tt := range []struct {
		name    string
		v6      bool
		inTags  [][2]uint16 // tags on the wire into port "in"
		inMode  PortConfig
		outPort string // port without offloads to check
		outTag  []byte // expected tag bytes on the segments, nil for none
		payload int
		mss     uint16
		flags   byte
	}{
		{"v4 64KiB access", false, nil, access("in", 5), "plain", nil, 65000, 1448, 0x18 | 0x01 | 0x80},
		{"v6 64KiB access", true, nil, access("in", 5), "plain", nil, 65000, 1428, 0x18},
		{"v4 tagged in, tagged out", false, [][2]uint16{{tpidCTag, 3<<13 | 5}}, trunk("in", 0, 5), "plaintrunk", []byte{0x81, 0, 0x60, 5}, 20000, 1000, 0x18},
		{"v6 tunnel customer C-tag kept, S-tag pushed", true, [][2]uint16{{tpidCTag, 42}}, PortConfig{Name: "in", Mode: ModeDot1QTunnel, PVID: 5}, "plaintrunk", []byte{0x88, 0xa8, 0, 5, 0x81, 0, 0, 42}, 9000, 1400, 0x10},
		{"exact multiple", false, nil, access("in", 5), "plain", nil, 4 * 1448, 1448, 0x19},
		{"single short segment", false, nil, access("in", 5), "plain", nil, 100, 1448, 0x18},
		{"empty payload", false, nil, access("in", 5), "plain", nil, 0, 1448, 0x11},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestSwitch(t)
			ts.add(tt.inMode, full)
			ts.add(access("plain", 5), 0)
			ts.add(access("gso", 5), full)
			ts.add(trunk("plaintrunk", 0, 5), 0)
			in := tcpFrame(tt.v6, tt.inTags, tt.payload, tt.mss, tt.flags)
			orig := append([]byte(nil), in.Data...)
			ts.h["in"].Input([]Frame{in})
			if !bytes.Equal(in.Data, orig) {
				t.Fatal("Input modified the caller's frame")
			}
			// A GSO-capable port gets the super-frame unsegmented.
			if tt.inTags == nil {
				g := ts.s["gso"].take()
				if len(g) != 1 || !bytes.Equal(g[0].Data, orig) || g[0].Off != in.Off {
					t.Fatalf("gso port got %d frames, want the original unsegmented", len(g))
				}
			}
			segs := ts.s[tt.outPort].take()
			want := max((tt.payload+int(tt.mss)-1)/int(tt.mss), 1)
			if len(segs) != want {
				t.Fatalf("%s got %d segments; want %d", tt.outPort, len(segs), want)
			}
			// Reference values from the original frame.
			l3, _ := l3Offset(orig)
			iphl := 20
			if tt.v6 {
				iphl = 40
			}
			seq0 := binary.BigEndian.Uint32(orig[l3+iphl+4:])
			var got []byte
			for i, s := range segs {
				if !bytes.Equal(s.Data[:12], orig[:12]) {
					t.Fatalf("seg %d MACs changed", i)
				}
				if !bytes.Equal(s.Data[12:12+len(tt.outTag)], tt.outTag) {
					t.Fatalf("seg %d tags %x; want %x", i, s.Data[12:12+len(tt.outTag)], tt.outTag)
				}
				if s.Off.Flags&frame.NeedsCsum != 0 || s.Off.GSOType != frame.GSONone {
					t.Fatalf("seg %d still has offloads %+v", i, s.Off)
				}
				ip := s.Data[12+len(tt.outTag)+2:]
				tcp, pl := checkTCP(t, ip)
				if len(pl) > int(tt.mss) {
					t.Fatalf("seg %d payload %d > mss", i, len(pl))
				}
				if !tt.v6 {
					if id := binary.BigEndian.Uint16(ip[4:]); id != 0x1234+uint16(i) {
						t.Errorf("seg %d ip id %#x; want %#x", i, id, 0x1234+i)
					}
				}
				if sq := binary.BigEndian.Uint32(tcp[4:]); sq != seq0+uint32(len(got)) {
					t.Errorf("seg %d seq %#x; want %#x", i, sq, seq0+uint32(len(got)))
				}
				last := i == len(segs)-1
				fl := tcp[13]
				if wantFP := tt.flags & 0x09; last && fl&0x09 != wantFP || !last && fl&0x09 != 0 {
					t.Errorf("seg %d FIN/PSH %#x (last %v)", i, fl&0x09, last)
				}
				if wantCWR := tt.flags & 0x80; i == 0 && fl&0x80 != wantCWR || i > 0 && fl&0x80 != 0 {
					t.Errorf("seg %d CWR %#x", i, fl&0x80)
				}
				if fl&0x10 != tt.flags&0x10 {
					t.Errorf("seg %d ACK changed", i)
				}
				got = append(got, pl...)
			}
			if !bytes.Equal(got, orig[l3+iphl+20:]) {
				t.Errorf("reassembled payload differs")
			}
		})
	}
}

func TestChecksumCompletion(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, n := range []int{0, 1, 2, 3, 7, 100, 1001, 1400} {
			ts := newTestSwitch(t)
			ts.add(access("in", 1), CapCsum)
			ts.add(access("plain", 1), 0)
			ts.add(access("csum", 1), CapCsum)
			in := tcpFrame(v6, nil, n, 0, 0x18)
			ts.h["in"].Input([]Frame{in})
			p := ts.s["plain"].take()
			if len(p) != 1 {
				t.Fatalf("v6=%v n=%d: got %d frames", v6, n, len(p))
			}
			checkTCP(t, p[0].Data[14:])
			if p[0].Off.Flags != frame.DataValid {
				t.Errorf("flags %#x; want DATA_VALID", p[0].Off.Flags)
			}
			c := ts.s["csum"].take()
			if len(c) != 1 || !bytes.Equal(c[0].Data, in.Data) || c[0].Off != in.Off {
				t.Errorf("checksum-offload port did not get the frame as is")
			}
		}
	}
}

// A tag pushed or popped moves csum_start and hdr_len with it.
func TestOffloadOffsetsFollowTags(t *testing.T) {
	full := CapCsum | CapGSOTCPv4 | CapGSOTCPv6
	ts := newTestSwitch(t)
	ts.add(access("in", 5), full)
	ts.add(trunk("t", 0, 5), full)
	in := tcpFrame(false, nil, 3000, 1448, 0x18)
	ts.h["in"].Input([]Frame{in})
	g := ts.s["t"].take()
	if len(g) != 1 {
		t.Fatalf("got %d", len(g))
	}
	if g[0].Off.CsumStart != in.Off.CsumStart+4 || g[0].Off.HdrLen != in.Off.HdrLen+4 {
		t.Errorf("offsets %+v; want csum_start and hdr_len +4 from %+v", g[0].Off, in.Off)
	}
	ts.advance(DefaultMACMoveHoldDown) // the source comes back from t: a move, allowed after the hold-down
	ts.h["t"].Input(g)
	b := ts.s["in"].take()
	if len(b) != 1 || b[0].Off != in.Off || !bytes.Equal(b[0].Data, in.Data) {
		t.Errorf("round trip changed the frame or offsets: %+v", b)
	}
}

func TestCsumAddMatchesReference(t *testing.T) {
	b := make([]byte, 200)
	for i := range b {
		b[i] = byte(i*31 + 7)
	}
	for n := 0; n <= len(b); n++ {
		if got, want := csumFold(csumAdd(0, b[:n])), refFold(refSum(b[:n])); got != want {
			t.Fatalf("len %d: %#x; want %#x", n, got, want)
		}
	}
}
