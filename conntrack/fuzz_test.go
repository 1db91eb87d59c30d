package conntrack

import (
	"bytes"
	"encoding/binary"
	"maps"
	"math/rand/v2"
	"testing"
)

// fuzzSeeds are frames of every kind, for both fuzz targets.
func fuzzSeeds() [][]byte {
	seg := tcpseg{sport: 1, dport: 2, seq: 3, ack: 4, flags: FlagSYN | FlagACK, win: 5, wscale: 7,
		sack: []uint32{1, 2}, ts: true, paylen: 10}.bytes()
	l3s := [][]byte{
		ip4(guest4, remote4, protoTCP, seg, ip4opts{options: 4}),
		ip4(guest4, remote4, protoUDP, udp(1, 2, 3), ip4opts{}),
		ip4(guest4, remote4, protoICMP, icmpMsg(8, 0, 1, 1, nil), ip4opts{}),
		ip4(router4, guest4, protoICMP, icmpMsg(3, 4, 0, 0, ip4(guest4, remote4, protoUDP, udp(1, 2, 0), ip4opts{})), ip4opts{}),
		ip4(guest4, remote4, protoUDP, udp(1, 2, 3000)[:1480], ip4opts{id: 7, mf: true}),
		ip4(guest4, remote4, protoUDP, make([]byte, 100), ip4opts{id: 7, fragOff: 185}),
		ip4(guest4, remote4, 47, make([]byte, 8), ip4opts{}),
		ip6(guest6, remote6, []ext6hdr{opts6(protoHopByHop, 1), opts6(protoRouting, 1), frag6(0, true, 9)}, protoTCP, seg),
		ip6(guest6, remote6, []ext6hdr{frag6(3, false, 9)}, protoTCP, make([]byte, 24)),
		ip6(guest6, remote6, nil, protoICMPv6, icmpMsg(129, 0, 1, 1, nil)),
		ip6(router6, guest6, nil, protoICMPv6, icmpMsg(2, 0, 0, 1280, ip6(guest6, remote6, []ext6hdr{opts6(protoDstOpts, 1)}, protoTCP, seg))),
		ip6("fe80::1", "ff02::1", nil, protoICMPv6, icmpMsg(135, 0, 0, 0, make([]byte, 16))),
		ip6(guest6, remote6, []ext6hdr{{typ: protoAH, body: make([]byte, 10)}}, protoUDP, udp(1, 2, 0)),
	}
	var out [][]byte
	for _, l3 := range l3s {
		et := uint16(EtherTypeIPv4)
		if l3[0]>>4 == 6 {
			et = EtherTypeIPv6
		}
		f, _ := eth(et, l3, false)
		out = append(out, f)
	}
	return out
}

// checkPacket checks what Parse must guarantee of any input.
func checkPacket(t *testing.T, p *Packet, et uint16, dir Dir) {
	if p.Dir != dir || p.Kind > KindMalformed {
		t.Fatalf("dir %v kind %v", p.Dir, p.Kind)
	}
	if et != EtherTypeIPv4 && et != EtherTypeIPv6 && p.Kind != KindUntracked {
		t.Fatalf("non-IP %#x parsed as %v", et, p.Kind)
	}
	switch p.Kind {
	case KindTCP, KindUDP, KindICMPEcho, KindICMPError, KindOther, KindFragment:
		want := uint8(4)
		if et == EtherTypeIPv6 {
			want = 6
		}
		if p.Key.Family != want {
			t.Fatalf("%v with family %d", p.Kind, p.Key.Family)
		}
		if want == 4 && (p.Key.Local[10] != 0xff || p.Key.Local[11] != 0xff || p.Key.Remote[10] != 0xff) {
			t.Fatalf("IPv4 address not mapped: %v", p.Key.Local)
		}
	}
	switch p.Kind {
	case KindTCP:
		if p.Key.Proto != protoTCP || p.WScale < -1 || p.WScale > 14 || (p.WScale >= 0 && p.Flags&FlagSYN == 0) || p.Flags > 0x3f {
			t.Fatalf("tcp %+v", p)
		}
	case KindUDP:
		if p.Key.Proto != protoUDP {
			t.Fatalf("udp proto %d", p.Key.Proto)
		}
	case KindICMPEcho:
		if p.Key.RPort != 0 || (p.Key.Proto != protoICMP && p.Key.Proto != protoICMPv6) {
			t.Fatalf("echo %+v", p.Key)
		}
	case KindICMPError:
		if p.Inner.Family != p.Key.Family {
			t.Fatalf("inner family %d, outer %d", p.Inner.Family, p.Key.Family)
		}
	case KindFragment:
		if p.FragOff == 0 || p.FragFirst {
			t.Fatalf("fragment offset %d first %v", p.FragOff, p.FragFirst)
		}
	}
	if p.FragFirst && p.FragOff != 0 {
		t.Fatal("first fragment with an offset")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s, 14, s[12]>>4 == 8, false)
	}
	f.Fuzz(func(t *testing.T, data []byte, l3 int, v6, inbound bool) {
		et := uint16(EtherTypeIPv4)
		if v6 {
			et = EtherTypeIPv6
		}
		if l3%7 == 3 {
			et = 0x0806
		}
		dir := Outbound
		if inbound {
			dir = Inbound
		}
		orig := append([]byte(nil), data...)
		var p, q Packet
		Parse(data, l3, et, dir, &p)
		if !bytes.Equal(orig, data) {
			t.Fatal("Parse wrote to the frame")
		}
		checkPacket(t, &p, et, dir)
		// The IPv4 TCP fast path fills the packet as the general parser.
		if et == EtherTypeIPv4 && l3 >= 0 && l3 <= len(data) {
			g := Packet{Dir: dir, Kind: KindUntracked, WScale: -1}
			parseIPv4(data[l3:], len(data)-l3, &g)
			if g != p {
				t.Fatalf("fast path: %+v\ngeneral parser: %+v", p, g)
			}
		}
		// Deterministic, and the other direction mirrors the key.
		Parse(data, l3, et, 1-dir, &q)
		if q.Kind != p.Kind {
			t.Fatalf("kind %v one way, %v the other", p.Kind, q.Kind)
		}
		if p.Kind != KindMalformed && p.Kind != KindUntracked {
			lp, rp := p.Key.RPort, p.Key.LPort // ports swap, but an echo's identifier stays
			if p.Kind == KindICMPEcho {
				lp, rp = p.Key.LPort, p.Key.RPort
			}
			if q.Key.Local != p.Key.Remote || q.Key.Remote != p.Key.Local || q.Key.LPort != lp || q.Key.RPort != rp {
				t.Fatalf("keys %+v / %+v", p.Key, q.Key)
			}
		}
		if p.Kind == KindICMPError && (q.Inner.Local != p.Inner.Remote || q.Inner.Remote != p.Inner.Local) {
			t.Fatalf("inner keys %+v / %+v", p.Inner, q.Inner)
		}
		// The head alone (a switch's copy of a frame whose payload stays
		// in the sender's memory) gives the same packet, or Malformed
		// when a header is cut.
		for _, k := range []int{l3 + 20, l3 + 40, l3 + 60, 128} {
			if k < 0 || k >= len(data) {
				continue
			}
			var h Packet
			ParseHead(data[:k], len(data), l3, et, dir, &h)
			if h != p && h.Kind != KindMalformed {
				t.Fatalf("head of %d bytes: %+v\nwhole frame: %+v", k, h, p)
			}
		}
	})
}

// FuzzTrack feeds a sequence of frames, some raw (mutated seeds), some
// TCP/UDP/ICMP frames built from a few fields over a handful of keys (so
// that they meet existing entries), to two zones of a small table, and
// checks the verdicts against the kinds and the limits after each.
func FuzzTrack(f *testing.F) {
	seeds := fuzzSeeds()
	f.Add([]byte{0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 1, 1, 3, 0x12, 0, 0, 0, 0, 2, 0, 2, 0x10, 0, 0, 0, 0})
	f.Add(bytes.Repeat([]byte{1, 5, 1, 0x02, 9, 9, 9, 9, 0}, 10))
	for i, s := range seeds {
		f.Add(append([]byte{0xff, byte(i), byte(len(s))}, s...))
	}
	f.Fuzz(runTrackProg)
}

func runTrackProg(t *testing.T, prog []byte) {
	const zoneLimit, tableLimit = 8, 12
	if len(prog) > 1024 {
		prog = prog[:1024] // long programs add little and slow the minimizer down
	}
	{
		tb := NewTable(Config{ZoneLimit: zoneLimit, TableLimit: tableLimit})
		zs := [2]*Zone{tb.NewZone(), tb.NewZone()}
		// A twin of the table whose frames are tracked with one Hint
		// shared by both zones: every verdict and counter must be the
		// same as without (hints go stale by sweeps, flushes, expiry
		// and slot reuse under the small limits).
		tbH := NewTable(Config{ZoneLimit: zoneLimit, TableLimit: tableLimit})
		zsH := [2]*Zone{tbH.NewZone(), tbH.NewZone()}
		var hint Hint
		// A third twin whose frames go as a switch sends them: TrackFast
		// from the frame's bytes, the general path when it declines;
		// also one Hint and one HintCache for both zones. Its entries must be the first
		// table's in every field, after every frame.
		tbF := NewTable(Config{ZoneLimit: zoneLimit, TableLimit: tableLimit})
		zsF := [2]*Zone{tbF.NewZone(), tbF.NewZone()}
		var hintF Hint
		var hintsF HintCache
		now := int64(1000 * sec)
		hosts := []string{"10.0.0.1", "10.0.0.2", "192.0.2.1"}
		hosts6 := []string{"2001:db8::1", "2001:db8::2", "2001:db8::3"}
		for len(prog) >= 9 {
			op, b := prog[0], prog[1:9]
			prog = prog[9:]
			z, zH, zF := zs[op&1], zsH[op&1], zsF[op&1]
			dir := Dir(op >> 1 & 1)
			now += int64(b[7]) * int64(b[7]) * sec / 4
			var frame []byte
			l3, et := 14, uint16(EtherTypeIPv4)
			if op == 0xff { // a raw frame: b[1] bytes of the program
				n := min(int(b[1]), len(prog))
				frame = prog[:n]
				prog = prog[n:]
				if len(frame) > 12 && frame[12] == 0x86 {
					et = EtherTypeIPv6
				}
			} else {
				v6 := op>>2&1 == 1
				src, dst := b[0]%3, b[0]/3%3
				sp, dp := uint16(b[1]%4), uint16(80)
				var l4 []byte
				proto := uint8(protoTCP)
				switch op >> 3 & 3 {
				case 0, 1:
					seg := tcpseg{sport: sp, dport: dp, seq: binary.BigEndian.Uint32(b[3:7]) & 0xffff00ff,
						ack: uint32(b[5]) << 16, flags: b[2] & 0x3f, win: uint16(b[6]) << 8, wscale: int(b[6]&15) - 1,
						paylen: int(b[4] & 0x3f)}
					if seg.flags&FlagSYN == 0 {
						// Options in a segment other than a SYN: none
						// or timestamps (TrackFast's), a window scale
						// (ignored), or a SACK block.
						seg.wscale = -1
						switch b[6] & 3 {
						case 1:
							seg.ts = true
						case 2:
							seg.wscale = int(b[6] >> 4)
						case 3:
							seg.sack = []uint32{seg.ack, seg.ack + uint32(b[4])<<8}
						}
					}
					l4 = seg.bytes()
				case 2:
					proto, l4 = protoUDP, udp(sp, dp, int(b[4]&7))
				case 3:
					proto = protoICMP
					if v6 {
						proto = protoICMPv6
					}
					l4 = icmpMsg(b[2], 0, sp, 0, nil)
				}
				var ip []byte
				if v6 {
					et = EtherTypeIPv6
					ip = ip6(hosts6[src], hosts6[dst], nil, proto, l4)
				} else {
					ip = ip4(hosts[src], hosts[dst], proto, l4, ip4opts{id: uint16(b[5]), mf: b[2]&0x80 != 0})
				}
				frame, _ = eth(et, ip, false)
			}
			var p Packet
			Parse(frame, l3, et, dir, &p)
			// Peek says what Track will, and changes nothing.
			n0, c0 := z.Len(), z.Counters()
			pv := z.Peek(&p, now)
			if n1, c1 := z.Len(), z.Counters(); n1 != n0 || c1 != c0 {
				t.Fatalf("Peek changed the zone: %d entries %+v, then %d %+v", n0, c0, n1, c1)
			}
			v := z.Track(&p, now)
			if pv != v {
				t.Fatalf("Peek said %v, Track %v (kind %v flags %#x)", pv, v, p.Kind, p.Flags)
			}
			if vH := zH.TrackHint(&p, now, &hint); vH != v {
				t.Fatalf("TrackHint said %v, Track %v (kind %v flags %#x)", vH, v, p.Kind, p.Flags)
			}
			vF, fast := zF.TrackFast(frame, len(frame), l3, et, dir, now, &hintsF)
			if !fast {
				vF = zF.TrackHint(&p, now, &hintF)
			}
			if vF != v {
				t.Fatalf("TrackFast (%v) said %v, Track %v (kind %v flags %#x)", fast, vF, v, p.Kind, p.Flags)
			}
			switch {
			case p.Kind == KindUntracked:
				if v != Untracked {
					t.Fatalf("untracked frame: %v", v)
				}
			case p.Kind == KindMalformed:
				if v != Invalid {
					t.Fatalf("malformed frame: %v", v)
				}
			case p.Kind == KindICMPError:
				if v != Related && v != Invalid {
					t.Fatalf("icmp error: %v", v)
				}
			case p.Kind == KindFragment:
				if v == New || v == Related {
					t.Fatalf("fragment: %v", v)
				}
			case v == Untracked || v == Related:
				t.Fatalf("%v: %v", p.Kind, v)
			}
			before := z.Len()
			if v == New {
				ok := z.Commit(&p, now)
				if okH := zH.Commit(&p, now); okH != ok {
					t.Fatalf("commit: %v, in the hinted twin %v", ok, okH)
				}
				if okF := zF.Commit(&p, now); okF != ok {
					t.Fatalf("commit: %v, in the fast twin %v", ok, okF)
				}
				if ok && z.Len() > before+1 {
					t.Fatal("commit added more than one entry")
				}
				if ok && z.Len() == before+1 { // a new entry (not an existing one's key)
					v2 := z.Track(&p, now)
					if v2 == New || v2 == Untracked || v2 == Related {
						t.Fatalf("after commit: %v", v2)
					}
					if v2H := zH.TrackHint(&p, now, &hint); v2H != v2 {
						t.Fatalf("after commit: TrackHint said %v, Track %v", v2H, v2)
					}
					v2F, fast := zF.TrackFast(frame, len(frame), l3, et, dir, now, &hintsF)
					if !fast {
						v2F = zF.TrackHint(&p, now, &hintF)
					}
					if v2F != v2 {
						t.Fatalf("after commit: TrackFast (%v) said %v, Track %v", fast, v2F, v2)
					}
				}
			}
			for _, zz := range zs {
				if zz.Len() > zoneLimit || zz.Len() < 0 {
					t.Fatalf("zone holds %d", zz.Len())
				}
			}
			if tb.Len() > tableLimit || tb.Len() != zs[0].Len()+zs[1].Len() {
				t.Fatalf("table holds %d (%d+%d)", tb.Len(), zs[0].Len(), zs[1].Len())
			}
			if op&0x40 != 0 {
				z.Sweep(now)
				zH.Sweep(now)
				zF.Sweep(now)
			}
			if op&0xe0 == 0xe0 {
				z.Flush()
				zH.Flush()
				zF.Flush()
			}
			if c, cH := z.Counters(), zH.Counters(); c != cH {
				t.Fatalf("counters %+v, in the hinted twin %+v", c, cH)
			}
			if c, cF := z.Counters(), zF.Counters(); c != cF {
				t.Fatalf("counters %+v, in the fast twin %+v", c, cF)
			}
			if m, mF := zoneEntries(z), zoneEntries(zF); !maps.Equal(m, mF) {
				t.Fatalf("entries %+v, in the fast twin %+v", m, mF)
			}
		}
		for _, z := range zs {
			n := 0
			z.Entries(now, func(Entry) bool { n++; return true })
			if n > z.Len() {
				t.Fatalf("%d entries listed, %d counted", n, z.Len())
			}
			z.Sweep(now + 1e18)
			if z.Len() != 0 {
				t.Fatalf("%d left after the end of time", z.Len())
			}
		}
		if tb.Len() != 0 {
			t.Fatalf("table holds %d", tb.Len())
		}
	}
}

// FuzzTrackEstablished drives an established connection (a handshake
// with fuzzed initial sequence numbers, window scales and windows, or a
// loose pickup) with segments near its windows' edges, both ways, with
// and without timestamps, some with SACK blocks or other flags, and the
// clock moving: the path a switch takes (TrackFast, else the general
// one) and the general path alone, each in a table of its own, must give
// the same verdicts and the same entry, field by field, after every
// segment (tcpConnTest's twin).
func FuzzTrackEstablished(f *testing.F) {
	f.Add([]byte{7, 7, 1, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x90, 0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0, 1, 2, 3, 4, 0x18, 5, 0x80, 0, 0x10, 0x40, 1, 0xff, 0x11, 7, 7, 7, 7})
	f.Fuzz(func(t *testing.T, prog []byte) { runEstablishedProg(t, prog) })
}

// TestTrackEstablishedRandom is FuzzTrackEstablished's check over
// random programs, in every test run; and the fast path must have
// taken a fair share of their segments, some of them out of window.
func TestTrackEstablishedRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 1))
	var fast, all, invalid int
	for range 300 {
		prog := make([]byte, 4+8*64)
		for i := range prog {
			prog[i] = byte(rng.Uint32())
		}
		// Mostly small offsets and plain ACKs, as a real connection.
		for i := 4; i+8 <= len(prog); i += 8 {
			if rng.IntN(4) != 0 {
				prog[i] &^= 0x3c
				prog[i+1] &= 0x7f
				prog[i+2] &= 0x7f
			}
			prog[i+7] &= 3
			if rng.IntN(16) == 0 { // a zero window
				prog[i+3], prog[i+4] = 0, 0
			}
		}
		f, a, inv := runEstablishedProg(t, prog)
		fast, all, invalid = fast+f, all+a, invalid+inv
	}
	t.Logf("%d of %d segments through the fast path, %d of those invalid", fast, all, invalid)
	if fast < all/3 || invalid == 0 {
		t.Fatalf("%d of %d segments through the fast path, %d invalid", fast, all, invalid)
	}
}

// runEstablishedProg runs one FuzzTrackEstablished program and returns
// how many segments TrackFast took, how many there were, and how many
// of TrackFast's were Invalid.
func runEstablishedProg(t *testing.T, prog []byte) (fast, all, invalid int) {
	{
		if len(prog) < 4 || len(prog) > 1024 {
			return
		}
		z := newZone(t, Config{})
		c := newTCPTest(t, z, false, binary.BigEndian.Uint32(prog[0:4]), binary.BigEndian.Uint32(prog[0:4])*2654435761)
		c.guest.ws, c.remote.ws = int(prog[0]%16)-1, int(prog[1]%16)-1
		c.guest.win, c.remote.win = uint16(prog[2])<<8|1, uint16(prog[3])<<7|1
		if prog[2]&1 == 0 {
			c.handshake()
		} else { // a loose pickup
			c.send(c.guest, FlagACK, 0, true)
		}
		prog = prog[4:]
		for len(prog) >= 8 {
			op := prog[:8]
			prog = prog[8:]
			e := c.guest
			if op[0]&1 != 0 {
				e = c.remote
			}
			// Sequence and acknowledgement near what is expected:
			// ±2^k for a k the program picks.
			off := func(b byte) uint32 {
				if b&0x80 == 0 {
					return 0
				}
				v := uint32(1) << (b & 31)
				if b&0x40 != 0 {
					return -v
				}
				return v
			}
			s := tcpseg{seq: e.nxt + off(op[1]), ack: e.rcv + off(op[2]), win: uint16(op[3])<<8 | uint16(op[4]),
				paylen: int(op[5]) * 8, wscale: -1, ts: op[0]&2 != 0}
			switch op[0] >> 2 & 7 {
			case 0, 1, 2, 3:
				s.flags = FlagACK
			case 4:
				s.flags = FlagACK | FlagPSH
			case 5:
				s.flags = FlagACK | FlagURG
			case 6:
				s.flags = FlagACK
				s.sack = []uint32{s.ack, s.ack + uint32(op[5])<<4}
			case 7:
				s.flags = []uint8{FlagFIN | FlagACK, FlagRST, FlagRST | FlagACK, FlagSYN, FlagSYN | FlagACK, 0, FlagACK | FlagPSH, FlagACK}[op[6]&7]
			}
			f0, i0 := c.fast, c.fastInvalid
			c.track(e, s)
			all++
			fast += c.fast - f0
			invalid += c.fastInvalid - i0
			if op[0]&0x20 == 0 && s.flags&(FlagSYN|FlagFIN|FlagRST) == 0 && op[1]&0x80 == 0 {
				// In order: the sender moves on, the peer takes it.
				e.nxt += uint32(s.paylen)
				if op[0]&0x40 == 0 {
					c.peer(e).rcv = e.nxt
				}
			}
			c.now += int64(op[7]) * int64(op[7]) * sec
		}
	}
	return fast, all, invalid
}
