package vswitch

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/frame"
)

// split is what a virtio-net device hands the switch: the first
// frame.HeadLen bytes copied, the rest as a tail in a buffer of its own,
// when the frame is longer and HeaderNeed says the head holds every header
// the switch reads; else the frame whole.
func split(f Frame) Frame {
	if len(f.Data) <= frame.HeadLen || HeaderNeed(f.Data[:frame.HeadLen], &f.Off) > frame.HeadLen {
		return Frame{Data: append([]byte(nil), f.Data...), Off: f.Off}
	}
	return Frame{
		Data: append([]byte(nil), f.Data[:frame.HeadLen]...),
		Tail: append([]byte(nil), f.Data[frame.HeadLen:]...),
		Off:  f.Off,
	}
}

// tailBed is a switch with every kind of destination a two-part frame
// can meet: ports with and without CapTail and offloads, a trunk (tag
// pushed), a shaped port, an egress-mirrored port, an egress ACL that
// reads L4 ports; frames enter on a trunk, an access port and a
// dot1q-tunnel port, the trunk mirrored on ingress.
type tailBed struct {
	ts     *testSwitch
	mirror *capture
}

func newTailBed(t *testing.T) *tailBed {
	full := CapCsum | CapGSOTCPv4 | CapGSOTCPv6 | CapGSOECN
	ts := newTestSwitch(t)
	in := trunk("in", 1, 1, 5, 100)
	in.MirrorIngress = true
	ts.add(in, full|CapTail)
	ts.add(access("ina", 5), full|CapTail)
	ts.add(PortConfig{Name: "tun", Mode: ModeDot1QTunnel, PVID: 100}, full|CapTail)
	ts.add(access("tail", 5), full|CapTail)
	ts.add(access("tail0", 5), CapTail)
	ts.add(access("plain", 5), full)
	ts.add(trunk("trk", 0, 1, 5, 100), full|CapTail)
	sh := access("shaped", 5)
	sh.Egress = RateLimit{Bytes: Bucket{Rate: 1 << 40, Burst: 1 << 30}}
	sh.EgressQueue = QueueConfig{Frames: 1024, Bytes: 1 << 24}
	ts.add(sh, full|CapTail)
	mo := access("mirrored", 5)
	mo.MirrorEgress = true
	ts.add(mo, full|CapTail)
	ts.add(access("acl", 5), full|CapTail)
	if err := ts.sw.SetEgressACL("acl", ACL{Rules: []ACLRule{{Action: ACLDeny, Proto: 6, DstPort: PortRange{5201, 5201}}}}); err != nil {
		t.Fatal(err)
	}
	ts.add(access("tunout", 100), full|CapTail)
	b := &tailBed{ts: ts, mirror: &capture{}}
	ts.sw.SetMirror(b.mirror)
	return b
}

// tailCorpus is frames of every shape the switch parses, long enough to
// have a tail, and random rewrites of their header bytes (what a hostile
// guest sends), with their offload metadata.
func tailCorpus(rng *rand.Rand) []Frame {
	var out []Frame
	for _, v6 := range []bool{false, true} {
		for _, tags := range [][][2]uint16{nil, {{tpidCTag, 5}}, {{tpidSTag, 100}, {tpidCTag, 7}}, {{tpidCTag, 100}}} {
			for _, payload := range []int{100, 300, 1460, 9000, 30000} {
				for _, mss := range []uint16{0, 1448} {
					f := tcpFrame(v6, tags, payload, mss, 0x18)
					out = append(out, f)
					plain := Frame{Data: f.Data}
					out = append(out, plain)
				}
			}
		}
	}
	for _, n := range []int{200, 700, 1500, 9000} {
		for _, et := range []uint16{0x0800, 0x0806, 0x86dd, 0x88cc} {
			out = append(out, Frame{Data: eth(mac(9), mac(1), et, n)}, Frame{Data: eth(Broadcast, mac(1), et, n)})
		}
	}
	// IPv6 with a long hop-by-hop header: the TCP header lies past the
	// head, so the device hands it whole (HeaderNeed).
	long := tcpFrame(true, nil, 1000, 0, 0x18)
	l3 := 14
	ext := make([]byte, 256)
	ext[0], ext[1] = 6, 256/8-1
	b := append(append(append([]byte(nil), long.Data[:l3+40]...), ext...), long.Data[l3+40:]...)
	b[l3+6] = 0 // next header: hop-by-hop
	out = append(out, Frame{Data: b})
	// Hostile: random bytes over the headers, random offload fields.
	n := len(out)
	for range 3000 {
		f := out[rng.IntN(n)]
		d := append([]byte(nil), f.Data...)
		for range 1 + rng.IntN(6) {
			d[12+rng.IntN(min(len(d), 140)-12)] = byte(rng.Uint32())
		}
		o := f.Off
		switch rng.IntN(4) {
		case 0:
			o.HdrLen = uint16(rng.IntN(400))
		case 1:
			o.CsumStart, o.CsumOffset = uint16(rng.IntN(300)), uint16(rng.IntN(40))
		case 2:
			o.GSOType, o.GSOSize = uint8(rng.IntN(6)), uint16(rng.IntN(3000))
		}
		out = append(out, Frame{Data: d, Off: o})
	}
	return out
}

// Two-part frames make no difference to what the switch decides and
// sends: the same frames, whole into one switch and as a device hands them
// (split) into another, give every port the same bytes, offloads and drop
// counts, and the mirror the same copies; ports without CapTail, shaped
// ports and mirrors never see a tail.
func TestTwoPartFramesSameAsWhole(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	corpus := tailCorpus(rng)
	whole, parts := newTailBed(t), newTailBed(t)
	ins := []string{"in", "ina", "tun"}
	splitSeen := 0
	for i := 0; i < len(corpus); i += 16 {
		batch := corpus[i:min(i+16, len(corpus))]
		port := ins[(i/16)%len(ins)]
		w := make([]Frame, len(batch))
		p := make([]Frame, len(batch))
		for k, f := range batch {
			w[k] = Frame{Data: append([]byte(nil), f.Data...), Off: f.Off}
			p[k] = split(f)
			if p[k].Tail != nil {
				splitSeen++
			}
		}
		whole.ts.h[port].Input(w)
		parts.ts.h[port].Input(p)
		whole.ts.sw.Poll(whole.ts.clock.Now())
		parts.ts.sw.Poll(parts.ts.clock.Now())
	}
	if splitSeen < len(corpus)/2 {
		t.Fatalf("only %d of %d frames came in two parts", splitSeen, len(corpus))
	}
	tailsSeen := 0
	for name, ws := range whole.ts.s {
		ps := parts.ts.s[name]
		wg, pg := ws.take(), ps.take()
		if len(wg) != len(pg) {
			t.Fatalf("port %s: %d frames from whole input, %d from two-part input", name, len(wg), len(pg))
		}
		for k := range wg {
			if !bytes.Equal(wg[k].Data, pg[k].Data) || wg[k].Off != pg[k].Off {
				t.Fatalf("port %s frame %d differs: %d bytes %+v vs %d bytes %+v", name, k, len(wg[k].Data), wg[k].Off, len(pg[k].Data), pg[k].Off)
			}
		}
		if ps.badTails != 0 {
			t.Errorf("port %s (caps %#x) got %d tails", name, ps.caps, ps.badTails)
		}
		if (name == "shaped" || name == "mirrored") && ps.tails != 0 {
			t.Errorf("port %s got %d tails; shaped and mirrored ports get whole frames", name, ps.tails)
		}
		tailsSeen += ps.tails
		wc, pc := whole.ts.h[name].Counters(), parts.ts.h[name].Counters()
		if wc.Drops != pc.Drops || wc.RxBytes != pc.RxBytes || wc.TxBytes != pc.TxBytes || wc.TxPackets != pc.TxPackets {
			t.Errorf("port %s counters differ:\nwhole %+v\nparts %+v", name, wc, pc)
		}
	}
	if tailsSeen == 0 {
		t.Fatal("no port was handed a tail: the two-part path was not exercised")
	}
	if len(whole.mirror.frames) != len(parts.mirror.frames) || len(whole.mirror.frames) == 0 {
		t.Fatalf("mirror: %d copies from whole input, %d from two-part", len(whole.mirror.frames), len(parts.mirror.frames))
	}
	for k := range whole.mirror.frames {
		if !bytes.Equal(whole.mirror.frames[k], parts.mirror.frames[k]) {
			t.Fatalf("mirror copy %d differs", k)
		}
	}
}

// faultingTail maps two pages of a memfd and truncates it to one: the
// second page's bytes are a tail whose every read faults (a vhost-user
// frontend that shrank its memory under a frame in flight).
func faultingTail(t *testing.T, n int) []byte {
	t.Helper()
	fd, err := unix.MemfdCreate("tail", 0)
	if err != nil {
		t.Fatalf("memfd_create: %v", err)
	}
	f := os.NewFile(uintptr(fd), "tail")
	defer f.Close()
	pg := os.Getpagesize()
	size := pg + (n+pg-1)/pg*pg
	if err := f.Truncate(int64(size)); err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(m) })
	if err := f.Truncate(int64(pg)); err != nil {
		t.Fatal(err)
	}
	return m[pg : pg+n : pg+n]
}

// A tail that faults under the switch is the sender's loss: each copy out
// of it (a tag pushed, a checksum completed, a frame segmented, a whole
// copy for a port without tails, a mirror's copy) is dropped and counted
// on the ingress port as source_fault, a port with CapTail meets the fault
// in its own ReadTail, nothing panics, and the frames around it in the
// batch are delivered.
func TestTailFaultIsTheSenders(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, mss := range []uint16{0, 1448} {
			t.Run(fmt.Sprintf("v6=%v,mss=%d", v6, mss), func(t *testing.T) {
				payload := 1400 // one MTU-sized frame
				if mss != 0 {
					payload = 3000
				}
				b, ref := newTailBed(t), newTailBed(t)
				good := split(tcpFrame(v6, nil, payload, mss, 0x18))
				bad := split(tcpFrame(v6, nil, payload, mss, 0x18))
				if bad.Tail == nil {
					t.Fatal("frame not split")
				}
				bad.Tail = faultingTail(t, len(bad.Tail))
				b.ts.h["ina"].Input([]Frame{good, bad, good})
				b.ts.sw.Poll(b.ts.clock.Now())
				ref.ts.h["ina"].Input([]Frame{good, good})
				ref.ts.sw.Poll(ref.ts.clock.Now())
				if n := b.ts.drops("ina", DropSourceFault); n == 0 {
					t.Errorf("no source_fault drop counted on the ingress port")
				}
				// Every port got what it gets of the two good frames alone.
				for name, s := range b.ts.s {
					got, want := s.take(), ref.ts.s[name].take()
					if len(got) != len(want) {
						t.Errorf("port %s: %d frames, want %d (those of the good frames)", name, len(got), len(want))
						continue
					}
					for k := range got {
						if !bytes.Equal(got[k].Data, want[k].Data) {
							t.Errorf("port %s: frame %d differs from the good frames'", name, k)
						}
					}
				}
				if s := b.ts.s["tail"]; s.tailFaults != 1 {
					t.Errorf("port with tails: %d faults reading them, want 1 (its own ReadTail)", s.tailFaults)
				}
			})
		}
	}
}

// HeaderNeed covers what the parsers read: for random frames whose head
// holds HeaderNeed bytes, classify, the flow key and the offload check
// give the same answers on the head alone as on the whole frame.
func TestHeaderNeedCoversParsers(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	corpus := tailCorpus(rng)
	checked := 0
	for _, f := range corpus {
		if len(f.Data) <= frame.HeadLen {
			continue
		}
		head := f.Data[:frame.HeadLen]
		if HeaderNeed(head, &f.Off) > len(head) {
			continue
		}
		checked++
		l3w, etw := l3Offset(f.Data)
		l3h, eth := l3Offset(head)
		if l3w != l3h || etw != eth {
			t.Fatalf("l3Offset: whole %d %#x, head %d %#x", l3w, etw, l3h, eth)
		}
		var kw, kh flowKey
		parseFlow(f.Data, l3w, etw, &kw, true)
		parseFlow(head, l3h, eth, &kh, true)
		if kw != kh {
			t.Fatalf("parseFlow: whole %+v, head %+v", kw, kh)
		}
		var pw, ph pkt
		off := f.Off
		okw := checkOffload(f.Data, len(f.Data), &off, &pw)
		okh := checkOffload(head, len(f.Data), &off, &ph)
		if okw != okh || pw != ph {
			t.Fatalf("checkOffload: whole %v %+v, head %v %+v (frame %x, %+v)", okw, pw, okh, ph, head, off)
		}
	}
	if checked < 1000 {
		t.Fatalf("only %d frames checked", checked)
	}
}
