package vswitch

import (
	"encoding/binary"
	"testing"

	"github.com/hvnet/hvnet/frame"
)

// FuzzGSO drives the software segmenter (gso.go) with a TCP GSO frame as a
// Linux guest sends it, built from the fuzzed shape (IPv4/IPv6, tagged or
// not, payload size, MSS, TCP flags, ECN), then optionally corrupted by
// XORing mut into it at at. An intact frame must come out of the port
// without offloads as segments that are each a valid frame with correct
// IP and TCP checksums (RFC 791 §3.1, RFC 8200 §3, RFC 9293 §3.1), no more
// than MSS payload each, covering the payload exactly once, in sequence
// order; and intact out of the port with the offloads. A corrupted frame
// must never panic and everything emitted must be a sane frame. Seeds are
// in testdata/fuzz/FuzzGSO.
func FuzzGSO(f *testing.F) {
	f.Add(false, false, uint16(3000), uint16(1448), uint8(0x18), false, []byte(nil), uint16(0))
	f.Add(true, true, uint16(9000), uint16(1400), uint8(0x99), true, []byte(nil), uint16(0))
	f.Add(false, true, uint16(0), uint16(1), uint8(0x11), false, []byte(nil), uint16(0))
	f.Add(false, false, uint16(65000), uint16(1), uint8(0x18), false, []byte(nil), uint16(0))
	f.Add(false, false, uint16(3000), uint16(1448), uint8(0x18), false, []byte{0x0f}, uint16(14))
	f.Add(true, false, uint16(3000), uint16(0), uint8(0x18), false, []byte(nil), uint16(0))
	f.Add(false, false, uint16(4000), uint16(1000), uint8(0x18), false, []byte{0xff, 0xff}, uint16(16))
	full := CapCsum | CapGSOTCPv4 | CapGSOTCPv6 | CapGSOECN
	sw := New(Config{Clock: NewManualClock(1)})
	add := func(c PortConfig, caps Caps) (*PortHandle, *sink) {
		s := newSink(caps)
		h, err := sw.AddPort(c, s)
		if err != nil {
			f.Fatal(err)
		}
		return h, s
	}
	inAcc, _ := add(access("in", 5), full)
	inTrk, _ := add(trunk("intrunk", 0, 5), full)
	_, plain := add(access("plain", 5), 0)
	_, offl := add(access("gso", 5), full)
	f.Fuzz(func(t *testing.T, v6, tagged bool, payload, mss uint16, tcpFlags uint8, ecn bool, mut []byte, at uint16) {
		if _, err := sw.Flush("", 0); err != nil {
			t.Fatal(err)
		}
		plain.take()
		offl.take()
		n := int(payload) % 65001
		var tags [][2]uint16
		in := inAcc
		if tagged {
			tags, in = [][2]uint16{{tpidCTag, 5}}, inTrk
		}
		fr := tcpFrame(v6, tags, n, mss, tcpFlags)
		if fr.Off.GSOType == frame.GSONone { // mss 0: tcpFrame leaves GSO off; ask for it anyway
			fr.Off.GSOType = frame.GSOTCPv4
			if v6 {
				fr.Off.GSOType = frame.GSOTCPv6
			}
		}
		if ecn {
			fr.Off.GSOType |= frame.GSOECN
		}
		intact := true
		for i, b := range mut {
			if j := int(at) + i; j < len(fr.Data) && b != 0 {
				fr.Data[j] ^= b
				intact = false
			}
		}
		// Only an unmodified frame is held to the full check: a corrupted
		// one may still be valid (payload bytes) or not (headers).
		in.Input([]Frame{fr})
		segs, whole := plain.take(), offl.take()
		for _, o := range append(segs, whole...) {
			if len(o.Data) < 14 || len(o.Data) > maxGSOFrame+8 {
				t.Fatalf("emitted a %d-byte frame", len(o.Data))
			}
		}
		if !intact {
			return
		}
		if mss == 0 || int(mss) > defaultMTU {
			// No segment size, or segments larger than the ingress MTU.
			if len(segs)+len(whole) != 0 {
				t.Fatalf("a GSO frame with MSS %d was forwarded", mss)
			}
			return
		}
		if n > MaxGSOSegments*int(mss) {
			// More segments than the bound: dropped whole, counted.
			if len(segs)+len(whole) != 0 {
				t.Fatalf("%d-byte payload at MSS %d (%d segments, bound %d) was forwarded",
					n, mss, (n+int(mss)-1)/int(mss), MaxGSOSegments)
			}
			return
		}
		if len(whole) != 1 || len(whole[0].Data) != len(fr.Data)-4*len(tags) {
			t.Fatalf("offload-capable port got %d frames, want the GSO frame whole", len(whole))
		}
		want := (n + int(mss) - 1) / int(mss)
		if n == 0 {
			want = 1
		}
		if len(segs) != want {
			t.Fatalf("%d-byte payload, MSS %d: %d segments, want %d", n, mss, len(segs), want)
		}
		seq0 := uint32(0xfffff000)
		got := 0
		for k, s := range segs {
			if s.Off.Flags&frame.NeedsCsum != 0 || s.Off.GSOType != frame.GSONone {
				t.Fatalf("segment %d still has offload metadata %+v", k, s.Off)
			}
			if et := binary.BigEndian.Uint16(s.Data[12:]); (v6 && et != etherTypeIPv6) || (!v6 && et != etherTypeIPv4) {
				t.Fatalf("segment %d: ethertype %#x", k, et)
			}
			tcp, pl := checkTCP(t, s.Data[14:])
			if len(pl) > int(mss) {
				t.Fatalf("segment %d carries %d bytes, MSS %d", k, len(pl), mss)
			}
			if seq := binary.BigEndian.Uint32(tcp[4:]); seq != seq0+uint32(got) {
				t.Fatalf("segment %d: seq %#x, want %#x", k, seq, seq0+uint32(got))
			}
			for i, b := range pl {
				if b != byte((got+i)*7) {
					t.Fatalf("segment %d: payload byte %d wrong", k, i)
				}
			}
			got += len(pl)
			last := k == len(segs)-1
			if fl := tcp[13]; !last && fl&(tcpFIN|tcpPSH) != 0 {
				t.Fatalf("segment %d of %d has FIN/PSH (flags %#x)", k, len(segs), fl)
			}
			if fl := tcp[13]; k > 0 && fl&tcpCWR != 0 {
				t.Fatalf("segment %d has CWR", k)
			}
		}
		if got != n {
			t.Fatalf("segments carry %d payload bytes, want %d", got, n)
		}
	})
}
