package vnet_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/frame"
	"github.com/hvnet/hvnet/virtio"
	vnet "github.com/hvnet/hvnet/virtio/net"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

// These tests put what makes one frame differ from the next (a bad chain,
// a chain too small, a tail that faults, a frame that needs more than one
// buffer) in the middle of one Receive call's frames and pin down what
// the guest gets: the used entries in order, the counts, the chains left
// for the next frame. They hold for any way of taking a call's frames
// (one at a time, or in DPDK-style passes: rxBurst, kept since session 20,
// vhost/BENCH_NOTES.md) and were checked against the code before the
// region memo.

// chainBytes returns what the device wrote into the chain at head (nbufs
// buffers), n bytes.
func chainBytes(d *virtiotest.Driver, head uint16, nbufs int, n uint32) []byte {
	var got []byte
	for i := 0; i < nbufs && n > 0; i++ {
		a := d.BufAddr(head, i)
		k := min(n, a.Len)
		if k > 0 { // a zero-length buffer may lie anywhere
			got = append(got, d.Bytes(a.Addr, uint64(k))...)
		}
		n -= k
	}
	return got
}

type wantUsed struct {
	head  uint16
	frame []byte // nil: used with length 0
}

func checkUsed(t *testing.T, d *virtiotest.Driver, nbufs int, want []wantUsed) {
	t.Helper()
	used := d.DrainUsed()
	if len(used) != len(want) {
		t.Fatalf("%d used entries %+v, want %d", len(used), used, len(want))
	}
	for i, w := range want {
		u := used[i]
		if u.ID != uint32(w.head) {
			t.Fatalf("used[%d] is chain %d, want %d (all: %+v)", i, u.ID, w.head, used)
		}
		if w.frame == nil {
			if u.Len != 0 {
				t.Fatalf("used[%d] (chain %d) len %d, want 0", i, u.ID, u.Len)
			}
			continue
		}
		got := chainBytes(d, w.head, nbufs, u.Len)
		if len(got) != vnet.HdrLen+len(w.frame) || !bytes.Equal(got[vnet.HdrLen:], w.frame) {
			t.Fatalf("used[%d] (chain %d): %d bytes, not the frame of %d", i, u.ID, len(got), len(w.frame))
		}
		if h, _ := vnet.DecodeHeader(got); h.NumBuffers != 1 {
			t.Fatalf("used[%d]: num_buffers %d", i, h.NumBuffers)
		}
	}
}

func frameData(fs []vnet.Frame) [][]byte {
	var out [][]byte
	for _, f := range fs {
		out = append(out, f.Data)
	}
	return out
}

// A bad chain and a chain too small for the frame at hand, in the middle
// of a burst: the bad one is used empty and counted, and the frame that
// met it dropped with it; the small one is kept for the next frame, which
// fits it.
func TestRXSeqBadAndSmallChains(t *testing.T) {
	b := rxBed(t, baseFeat)
	d := b.rx(0)
	c0 := d.AddChain(virtiotest.Buf{Len: 200, Write: true})
	c1 := d.AddChain(virtiotest.Buf{Len: 200})             // readable: bad
	c2 := d.AddChain(virtiotest.Buf{Len: 60, Write: true}) // too small for 100 bytes
	c3 := d.AddChain(virtiotest.Buf{Len: 5, Write: true})  // smaller than the header: bad
	c4 := d.AddChain(virtiotest.Buf{Len: 200, Write: true})
	c5 := d.AddChain(virtiotest.Buf{Len: 200, Write: true})
	d.Push(c0, c1, c2, c3, c4, c5)
	f0, f3, f6 := ethFrame(100, 0), ethFrame(30, 3), ethFrame(70, 6)
	fs := []vnet.Frame{
		{Data: f0},
		{Data: ethFrame(100, 1)},                // meets c1: dropped with it
		{Data: ethFrame(100, 2)},                // does not fit c2: dropped, c2 kept
		{Data: f3},                              // fits c2
		{Data: ethFrame(vnet.MaxFrameLen+1, 4)}, // over MaxFrameLen
		{Data: ethFrame(100, 5)},                // meets c3: dropped with it
		{Data: f6},                              // into c4
	}
	if n := b.dev.Receive(fs); n != 3 {
		t.Fatalf("Receive() = %d, want 3", n)
	}
	// Accepted ones first, in order.
	got := frameData(fs[:3])
	if !bytes.Equal(got[0], f0) || !bytes.Equal(got[1], f3) || !bytes.Equal(got[2], f6) {
		t.Fatal("accepted frames not moved to the front in order")
	}
	checkUsed(t, d, 1, []wantUsed{{c0, f0}, {c1, nil}, {c2, f3}, {c3, nil}, {c4, f6}})
	s := b.dev.Stats()
	if s.RxPackets != 3 || s.RxDropBadChain != 2 || s.RxDropOversize != 2 || s.RxDropNoBuffer != 0 {
		t.Fatalf("stats %+v", s)
	}
	// c5 is still there for the next frame.
	f7 := ethFrame(80, 7)
	if n := b.dev.Receive([]vnet.Frame{{Data: f7}}); n != 1 {
		t.Fatal("the chain left over was not there for the next frame")
	}
	checkUsed(t, d, 1, []wantUsed{{c5, f7}})
}

// The last frames of a burst meet a chain too small for all of them: the
// chain is given back, not used.
func TestRXSeqSmallChainLast(t *testing.T) {
	b := rxBed(t, baseFeat)
	d := b.rx(0)
	c0 := d.AddChain(virtiotest.Buf{Len: 200, Write: true})
	c1 := d.AddChain(virtiotest.Buf{Len: 50, Write: true})
	d.Push(c0, c1)
	f0 := ethFrame(100, 0)
	if n := b.dev.Receive([]vnet.Frame{{Data: f0}, {Data: ethFrame(100, 1)}, {Data: ethFrame(100, 2)}}); n != 1 {
		t.Fatalf("Receive() = %d, want 1", n)
	}
	checkUsed(t, d, 1, []wantUsed{{c0, f0}})
	if s := b.dev.Stats(); s.RxDropOversize != 2 {
		t.Fatalf("stats %+v", s)
	}
	f := ethFrame(30, 3)
	if n := b.dev.Receive([]vnet.Frame{{Data: f}}); n != 1 {
		t.Fatal("the small chain was not given back")
	}
	checkUsed(t, d, 1, []wantUsed{{c1, f}})
}

// The ring runs out in the middle of a burst: the frames before are
// written and used (the one that met the bad chain dropped with it), the
// rest counted as no buffer.
func TestRXSeqRunsOut(t *testing.T) {
	b := rxBed(t, baseFeat)
	d := b.rx(0)
	c0 := d.AddChain(virtiotest.Buf{Len: 200, Write: true})
	c1 := d.AddChain(virtiotest.Buf{Len: 200})
	d.Push(c0, c1)
	f0 := ethFrame(100, 0)
	fs := []vnet.Frame{{Data: f0}, {Data: ethFrame(100, 1)}, {Data: ethFrame(100, 2)}}
	if n := b.dev.Receive(fs); n != 1 {
		t.Fatalf("Receive() = %d", n)
	}
	checkUsed(t, d, 1, []wantUsed{{c0, f0}, {c1, nil}})
	if s := b.dev.Stats(); s.RxDropNoBuffer != 1 || s.RxDropBadChain != 1 || b.sig[0].n != 1 {
		t.Fatalf("stats %+v, signals %d", s, b.sig[0].n)
	}
}

// A frame whose tail faults in the middle of a burst: its chain and every
// chain taken after it go back to the ring, and the frames behind it take
// them as if the faulting frame had never had one: a bad chain among them
// (and the frame that meets it) and a frame over MaxFrameLen behind it
// are counted once.
func TestRXSeqTailFault(t *testing.T) {
	const pg = 4096
	fd, raw := memfdMem(t, 2*pg)
	if err := unix.Ftruncate(fd, pg); err != nil {
		t.Fatal(err)
	}
	bad := vnet.Frame{Data: ethFrame(frame.HeadLen, 9), Tail: raw[pg-500 : pg+500]}
	for _, mrg := range []bool{false, true} {
		feat := uint64(baseFeat)
		name := "single"
		if mrg {
			feat |= vnet.Features(vnet.FMrgRxbuf)
			name = "mergeable"
		}
		t.Run(name, func(t *testing.T) {
			b := rxBed(t, feat)
			d := b.rx(0)
			c0 := d.AddChain(virtiotest.Buf{Len: 2000, Write: true})
			c1 := d.AddChain(virtiotest.Buf{Len: 2000, Write: true})
			c2 := d.AddChain(virtiotest.Buf{Len: 2000}) // bad
			c3 := d.AddChain(virtiotest.Buf{Len: 2000, Write: true})
			c4 := d.AddChain(virtiotest.Buf{Len: 2000, Write: true})
			d.Push(c0, c1, c2, c3, c4)
			f0, f2, f5 := ethFrame(100, 0), ethFrame(200, 2), ethFrame(300, 5)
			fs := []vnet.Frame{
				{Data: f0},
				bad,        // into c1: faults, c1 given back
				{Data: f2}, // into c1
				{Data: ethFrame(vnet.MaxFrameLen+1, 3)},
				{Data: ethFrame(100, 4)}, // meets c2: dropped with it
				{Data: f5},               // into c3
			}
			if n := b.dev.Receive(fs); n != 3 {
				t.Fatalf("Receive() = %d, want 3", n)
			}
			got := frameData(fs[:3])
			if !bytes.Equal(got[0], f0) || !bytes.Equal(got[1], f2) || !bytes.Equal(got[2], f5) {
				t.Fatal("accepted frames not moved to the front in order")
			}
			checkUsed(t, d, 1, []wantUsed{{c0, f0}, {c1, f2}, {c2, nil}, {c3, f5}})
			s := b.dev.Stats()
			if s.RxDropSourceFault != 1 || s.RxDropBadChain != 1 || s.RxDropOversize != 1 ||
				s.RxPackets != 3 || s.Faults != 0 || len(b.faults) != 0 {
				t.Fatalf("stats %+v, faults %v", s, b.faults)
			}
			f := ethFrame(60, 5)
			if n := b.dev.Receive([]vnet.Frame{{Data: f}}); n != 1 {
				t.Fatal("the last chain is gone")
			}
			checkUsed(t, d, 1, []wantUsed{{c4, f}})
		})
	}
}

// More frames than a burst holds, and more bad chains than a burst holds
// ahead of the good ones (each takes a frame with it).
func TestRXSeqLong(t *testing.T) {
	b := newBed(t, 1, baseFeat, 256, 1<<20, &recSink{})
	d := b.rx(0)
	var want []wantUsed
	var fs []vnet.Frame
	for i := range 70 {
		h := d.AddChain(virtiotest.Buf{Len: 64}) // bad
		d.Push(h)
		want = append(want, wantUsed{h, nil})
		fs = append(fs, vnet.Frame{Data: ethFrame(60, byte(i))})
	}
	for i := range 150 {
		h := d.AddChain(virtiotest.Buf{Len: 128, Write: true})
		d.Push(h)
		f := ethFrame(60+i%50, byte(i))
		fs = append(fs, vnet.Frame{Data: f})
		want = append(want, wantUsed{h, f})
	}
	if n := b.dev.Receive(fs); n != 150 {
		t.Fatalf("Receive() = %d, want 150", n)
	}
	for i, f := range fs[:150] {
		if !bytes.Equal(f.Data, want[70+i].frame) {
			t.Fatalf("accepted frame %d out of place", i)
		}
	}
	checkUsed(t, d, 1, want)
	if s := b.dev.Stats(); s.RxDropBadChain != 70 || s.RxPackets != 150 || b.sig[0].n != 1 {
		t.Fatalf("stats %+v, signals %d", s, b.sig[0].n)
	}
}

// Frames that fit their chain's first buffer (the burst) and frames that
// do not (across the chain's buffers, or across chains with mergeable
// buffers) in one call, in the order they came.
func TestRXSeqMixedPaths(t *testing.T) {
	t.Run("mergeable", func(t *testing.T) {
		b := rxBed(t, baseFeat|vnet.Features(vnet.FMrgRxbuf))
		d := b.rx(0)
		var heads []uint16
		for range 20 {
			h := d.AddChain(virtiotest.Buf{Len: 1000, Write: true})
			heads = append(heads, h)
			d.Push(h)
		}
		whole := ethFrame(2500, 7)
		sizes := []int{60, 2500, 100, 0, 4000, 60, 988, 989}
		var fs []vnet.Frame
		var want [][]byte
		for i, n := range sizes {
			if n == 0 { // a two-part frame that fits one buffer
				fs = append(fs, vnet.Frame{Data: whole[:frame.HeadLen], Tail: whole[frame.HeadLen:900]})
				want = append(want, whole[:900])
				continue
			}
			f := ethFrame(n, byte(i))
			if n == 2500 { // a two-part frame across chains
				fs = append(fs, vnet.Frame{Data: whole[:frame.HeadLen], Tail: whole[frame.HeadLen:]})
				want = append(want, whole)
				continue
			}
			fs = append(fs, vnet.Frame{Data: f})
			want = append(want, f)
		}
		if n := b.dev.Receive(fs); n != len(sizes) {
			t.Fatalf("Receive() = %d, want %d", n, len(sizes))
		}
		used := d.DrainUsed()
		k := 0
		for i, w := range want {
			if k >= len(used) {
				t.Fatalf("frame %d: no used entry", i)
			}
			first := chainBytes(d, uint16(used[k].ID), 1, used[k].Len)
			nb := int(binary.LittleEndian.Uint16(first[10:12]))
			got := first[vnet.HdrLen:]
			for j := 1; j < nb; j++ {
				got = append(got, chainBytes(d, uint16(used[k+j].ID), 1, used[k+j].Len)...)
			}
			if !bytes.Equal(got, w) {
				t.Fatalf("frame %d (%d bytes, %d buffers): not what the guest got (%d bytes)", i, len(w), nb, len(got))
			}
			if wantNB := (len(w) + vnet.HdrLen + 999) / 1000; nb != wantNB {
				t.Fatalf("frame %d: num_buffers %d, want %d", i, nb, wantNB)
			}
			k += nb
		}
		for j, u := range used {
			if u.ID != uint32(heads[j]) {
				t.Fatalf("used[%d] is chain %d, want %d: out of order", j, u.ID, heads[j])
			}
		}
	})
	t.Run("single", func(t *testing.T) {
		b := rxBed(t, baseFeat)
		d := b.rx(0)
		one := []virtiotest.Buf{{Len: 1600, Write: true}}
		split := []virtiotest.Buf{{Len: vnet.HdrLen, Write: true}, {Len: 1600, Write: true}}
		layouts := [][]virtiotest.Buf{one, split, one, one, split, split, one}
		var want []wantUsed
		var fs []vnet.Frame
		for i, l := range layouts {
			h := d.AddChain(l...)
			d.Push(h)
			f := ethFrame(100+i, byte(i))
			fs = append(fs, vnet.Frame{Data: f})
			want = append(want, wantUsed{h, f})
		}
		if n := b.dev.Receive(fs); n != len(layouts) {
			t.Fatalf("Receive() = %d", n)
		}
		checkUsed(t, d, 2, want)
	})
}

// A new memory table between two bursts (SET_MEM_TABLE): the second burst
// writes into the new table's memory, never the old one's, and a buffer
// the new table lacks is a bad chain.
func TestRXSeqNewMemory(t *testing.T) {
	const perQueue = 1 << 18
	raw := make([]byte, 3*perQueue)
	b := newBedIn(t, raw, 1, baseFeat, 64, perQueue, &recSink{})
	d := b.rx(0)
	c0 := d.AddChain(virtiotest.Buf{Len: 200, Write: true})
	d.Push(c0)
	f0 := ethFrame(100, 0)
	if n := b.dev.Receive([]vnet.Frame{{Data: f0}}); n != 1 {
		t.Fatal("first frame refused")
	}
	checkUsed(t, d, 1, []wantUsed{{c0, f0}})

	// The next chain, then the same guest-physical layout in new host
	// memory.
	c1 := d.AddChain(virtiotest.Buf{Len: 200, Write: true})
	a1 := d.BufAddr(c1, 0)
	d.Push(c1)
	moved := append([]byte(nil), raw...)
	m2, _ := virtio.NewMemory(virtio.Region{GPA: virtiotest.DefaultBase, Data: moved})
	b.dev.SetMemory(m2)
	f1 := ethFrame(100, 1)
	if n := b.dev.Receive([]vnet.Frame{{Data: f1}}); n != 1 {
		t.Fatal("frame refused after the new memory table")
	}
	off := a1.Addr - virtiotest.DefaultBase
	if !bytes.Equal(moved[off+vnet.HdrLen:off+vnet.HdrLen+100], f1) {
		t.Fatal("the frame is not in the new memory")
	}
	if !bytes.Equal(raw[off:off+200], make([]byte, 200)) {
		t.Fatal("the frame was written into the old memory")
	}

	// A table that ends before the next buffer: that chain is bad.
	c2 := d.AddChain(virtiotest.Buf{Len: 200, Write: true})
	a2 := d.BufAddr(c2, 0)
	d.Push(c2)
	cut := a2.Addr - virtiotest.DefaultBase
	copy(moved[:cut], raw[:cut]) // the rings as the driver left them
	m3, _ := virtio.NewMemory(virtio.Region{GPA: virtiotest.DefaultBase, Data: moved[:cut]})
	b.dev.SetMemory(m3)
	if n := b.dev.Receive([]vnet.Frame{{Data: ethFrame(100, 2)}}); n != 0 {
		t.Fatal("frame written into memory the table no longer has")
	}
	if s := b.dev.Stats(); s.RxDropBadChain != 1 {
		t.Fatalf("stats %+v", s)
	}
	for _, err := range b.faults { // the other queues' rings are outside m3
		var fe *vnet.FaultError
		if !errors.As(err, &fe) || fe.Queue == 0 {
			t.Fatalf("fault %v: the receive queue faulted", err)
		}
	}
	if !bytes.Equal(raw[cut:cut+200], make([]byte, 200)) || !bytes.Equal(moved[cut:cut+200], make([]byte, 200)) {
		t.Fatal("a buffer outside the table was written")
	}
}

// Random rings and frames, taken in one call (bursts) and one frame a
// call (one frame at a time): the guest must see the same used entries,
// with the same bytes, and the counters must agree.
func TestRXSeqSameAsOneAtATime(t *testing.T) {
	const pg = 4096
	fd, raw := memfdMem(t, 2*pg)
	if err := unix.Ftruncate(fd, pg); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 300 {
		feat := uint64(baseFeat)
		if rng.IntN(2) == 0 {
			feat |= vnet.Features(vnet.FMrgRxbuf)
		}
		// Chains: [bufs]; a buffer length 0 marks a readable (bad) one.
		var chains [][]virtiotest.Buf
		for range rng.IntN(40) {
			var bufs []virtiotest.Buf
			for range 1 + rng.IntN(3) {
				switch rng.IntN(10) {
				case 0:
					bufs = append(bufs, virtiotest.Buf{Len: 100})
				case 1:
					bufs = append(bufs, virtiotest.Buf{Len: uint32(rng.IntN(20)), Write: true})
				default:
					bufs = append(bufs, virtiotest.Buf{Len: uint32(1 + rng.IntN(2000)), Write: true})
				}
			}
			chains = append(chains, bufs)
		}
		var frames []vnet.Frame
		for range rng.IntN(40) {
			n := 14 + rng.IntN(3000)
			f := vnet.Frame{Data: ethFrame(n, byte(rng.IntN(256)))}
			switch rng.IntN(12) {
			case 0:
				f.Data = make([]byte, vnet.MaxFrameLen+1)
			case 1:
				f.Off = frame.Offload{Flags: frame.NeedsCsum} // not negotiated
			case 2:
				if n > frame.HeadLen {
					f.Tail = f.Data[frame.HeadLen:]
					f.Data = f.Data[:frame.HeadLen]
				}
			case 3:
				if n < frame.HeadLen {
					break
				}
				f.Data = f.Data[:frame.HeadLen]
				f.Tail = raw[pg-100 : pg+100] // faults after 100 bytes
			}
			frames = append(frames, f)
		}
		run := func(oneByOne bool) (vnet.Stats, []virtiotest.Used, [][]byte, int) {
			b := rxBed(t, feat)
			d := b.rx(0)
			for _, c := range chains {
				d.Push(d.AddChain(c...))
			}
			fs := append([]vnet.Frame(nil), frames...)
			accepted, dry := 0, uint64(0)
			if oneByOne {
				for i := range fs {
					accepted += b.dev.Receive(fs[i : i+1])
					if b.dev.Stats().RxDropNoBuffer != 0 {
						// A call stops where the ring runs dry and
						// counts the frames behind as no buffer.
						dry = uint64(len(fs) - i - 1)
						break
					}
				}
			} else {
				accepted = b.dev.Receive(fs)
			}
			used := d.DrainUsed()
			var got [][]byte
			for _, u := range used {
				var nb int
				for nb = 0; nb < 3; nb++ {
					if d.BufAddr(uint16(u.ID), nb).Flags&virtio.DescFNext == 0 {
						break
					}
				}
				got = append(got, chainBytes(d, uint16(u.ID), nb+1, u.Len))
			}
			st := b.dev.Stats()
			st.RxDropNoBuffer += dry
			return st, used, got, accepted
		}
		s1, u1, g1, n1 := run(false)
		s2, u2, g2, n2 := run(true)
		if n1 != n2 || s1 != s2 || len(u1) != len(u2) {
			t.Fatalf("iteration %d: burst accepted %d, used %d, stats %+v\none at a time accepted %d, used %d, stats %+v",
				iter, n1, len(u1), s1, n2, len(u2), s2)
		}
		for i := range u1 {
			if u1[i] != u2[i] || !bytes.Equal(g1[i], g2[i]) {
				t.Fatalf("iteration %d: used[%d] %+v differs from one at a time %+v", iter, i, u1[i], u2[i])
			}
		}
	}
}
