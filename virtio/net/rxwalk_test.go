package vnet_test

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hvnet/hvnet/virtio"
	vnet "github.com/hvnet/hvnet/virtio/net"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

// emptyBufs returns n writable buffers, all of length 0 but the last,
// which holds last bytes: a chain that takes n descriptors to walk and
// holds almost nothing.
func emptyBufs(n int, last uint32) []virtiotest.Buf {
	bufs := make([]virtiotest.Buf, n)
	for i := range bufs {
		bufs[i] = virtiotest.Buf{Write: true}
	}
	bufs[n-1].Len = last
	return bufs
}

// usedLens returns the used entries' lengths published since the last
// call.
func usedLens(d *virtiotest.Driver) []uint32 {
	var ls []uint32
	for _, u := range d.DrainUsed() {
		ls = append(ls, u.Len)
	}
	return ls
}

// A receiving guest's chains of many descriptors holding almost nothing
// cannot make one frame walk more than rxMaxDescs (1024) descriptors: the
// frame's chains go back used with length 0 (the guest must make them
// available again) and the frame is a bad-chain drop.
func TestRXDescriptorBudget(t *testing.T) {
	b := newBed(t, 1, baseFeat|vnet.Features(vnet.FMrgRxbuf), 1024, 4<<20, &recSink{})
	rx := b.rx(0)
	head := rx.AddIndirect(emptyBufs(1000, 12)...)
	heads := make([]uint16, 200)
	for i := range heads {
		heads[i] = head // one table behind every ring entry
	}
	rx.Push(heads...)
	frames := []vnet.Frame{{Data: ethFrame(1514, 1)}, {Data: ethFrame(1514, 2)}}
	if n := b.dev.Receive(frames); n != 0 {
		t.Fatalf("%d frames written into 12-byte buffers", n)
	}
	// 1000 descriptors a chain: the second chain takes a frame past 1024.
	lens := usedLens(rx)
	if len(lens) != 4 {
		t.Fatalf("used entries %v, want the two frames' two chains each", lens)
	}
	for _, l := range lens {
		if l != 0 {
			t.Fatalf("used entries %v, want length 0", lens)
		}
	}
	if s := b.dev.Stats(); s.RxDropBadChain != 2 {
		t.Fatalf("bad-chain drops %d, want 2 (stats %+v)", s.RxDropBadChain, s)
	}
	// The same frame over chains within the budget is written.
	ok := newBed(t, 1, baseFeat|vnet.Features(vnet.FMrgRxbuf), 1024, 4<<20, &recSink{})
	orx := ok.rx(0)
	for range 2 {
		orx.Push(orx.AddIndirect(emptyBufs(500, 1000)...))
	}
	if n := ok.dev.Receive(frames[:1]); n != 1 {
		t.Fatalf("frame over 2 chains of 500 descriptors: %d written (stats %+v)", n, ok.dev.Stats())
	}
}

// A frame the receiving guest's buffers cannot hold leaves them available
// (Rewind); while the guest adds none and the device takes none, the
// frames after it that need as much are dropped without the device
// walking those buffers again. The guest rewrites the buffers' descriptors
// to readable ones after the first frame: a walk would find them bad.
func TestRXShortBuffersNotWalkedAgain(t *testing.T) {
	for _, mrg := range []bool{true, false} {
		name := "mergeable"
		feats := baseFeat | vnet.Features(vnet.FMrgRxbuf)
		if !mrg {
			name, feats = "single", baseFeat
		}
		t.Run(name, func(t *testing.T) {
			b := newBed(t, 1, feats, 1024, 4<<20, &recSink{})
			rx := b.rx(0)
			var heads []uint16
			chains := 126
			if !mrg {
				chains = 1
			}
			for range chains {
				if mrg {
					heads = append(heads, rx.AddChain(virtiotest.Buf{Len: 12, Write: true}))
				} else {
					heads = append(heads, rx.AddIndirect(emptyBufs(1000, 1000)...))
				}
			}
			rx.Push(heads...)
			big := []vnet.Frame{{Data: ethFrame(1514, 1)}}
			if n := b.dev.Receive(big); n != 0 {
				t.Fatalf("1514-byte frame written into %d small chains", len(heads))
			}
			before := b.dev.Stats()
			// Now every buffer the device kept is bad if walked.
			for _, h := range heads {
				if mrg {
					a := rx.BufAddr(h, 0)
					rx.SetDesc(h, virtiotest.Desc{Addr: a.Addr, Len: a.Len})
				} else {
					rx.SetDesc(h, virtiotest.Desc{Addr: 0, Len: 16, Flags: virtio.DescFIndirect})
				}
			}
			for range 50 {
				if n := b.dev.Receive(big); n != 0 {
					t.Fatal("frame written")
				}
			}
			after := b.dev.Stats()
			if after.RxDropBadChain != before.RxDropBadChain || len(b.faults) != 0 {
				t.Fatalf("the kept buffers were walked again: bad chains %d -> %d, faults %v",
					before.RxDropBadChain, after.RxDropBadChain, b.faults)
			}
			drops := after.RxDropNoBuffer - before.RxDropNoBuffer
			if !mrg {
				drops = after.RxDropOversize - before.RxDropOversize
			}
			if drops != 50 {
				t.Fatalf("50 frames dropped, %d counted (before %+v, after %+v)", drops, before, after)
			}
			if u := rx.DrainUsed(); len(u) != 0 {
				t.Fatalf("used entries %v, want none", u)
			}
			// A new buffer makes the device look again (mergeable: it
			// walks the rewritten chains and finds them bad).
			rx.Push(rx.AddChain(virtiotest.Buf{Len: 2048, Write: true}))
			b.dev.Receive(big)
			if mrg && b.dev.Stats().RxDropBadChain == after.RxDropBadChain {
				t.Fatalf("a new buffer, and the device did not walk the ring again (stats %+v)", b.dev.Stats())
			}
		})
	}
}

// The device forgets the short buffers when it takes one, when the guest
// adds one, and when the queue is set up again; a frame that fits what
// they hold is written at once.
func TestRXShortBuffersForgotten(t *testing.T) {
	b := newBed(t, 1, baseFeat|vnet.Features(vnet.FMrgRxbuf), 1024, 4<<20, &recSink{})
	rx := b.rx(0)
	for range 126 {
		rx.Push(rx.AddChain(virtiotest.Buf{Len: 12, Write: true}))
	}
	if n := b.dev.Receive([]vnet.Frame{{Data: ethFrame(1514, 1)}}); n != 0 {
		t.Fatal("1514-byte frame written into 126 buffers of 12 bytes")
	}
	// 60 bytes need 6 buffers: written.
	if n := b.dev.Receive([]vnet.Frame{{Data: ethFrame(60, 2)}}); n != 1 {
		t.Fatalf("60-byte frame that fits: %d written (stats %+v)", n, b.dev.Stats())
	}
	rx.DrainUsed()
	// 120 left (1440 bytes): the 1514-byte frame again, short; then one
	// buffer of 2048 more and it fits (121 buffers).
	if n := b.dev.Receive([]vnet.Frame{{Data: ethFrame(1514, 3)}}); n != 0 {
		t.Fatal("frame written into too few buffers")
	}
	rx.Push(rx.AddChain(virtiotest.Buf{Len: 2048, Write: true}))
	if n := b.dev.Receive([]vnet.Frame{{Data: ethFrame(1514, 4)}}); n != 1 {
		t.Fatalf("after a new buffer: %d written (stats %+v)", n, b.dev.Stats())
	}
	if u := rx.DrainUsed(); len(u) != 121 {
		t.Fatalf("%d used entries, want 121", len(u))
	}
	// Setting the queue up again forgets too: a reset driver posts big
	// buffers at the same index.
	s := newBed(t, 1, baseFeat, 256, 1<<20, &recSink{})
	srx := s.rx(0)
	srx.Push(srx.AddChain(virtiotest.Buf{Len: 100, Write: true}))
	if n := s.dev.Receive([]vnet.Frame{{Data: ethFrame(1514, 5)}}); n != 0 {
		t.Fatal("frame written into a 100-byte buffer")
	}
	if err := s.dev.ConfigureQueue(0, func(q *virtio.Queue) error {
		srx.SetDesc(0, virtiotest.Desc{Addr: srx.Alloc(2048), Len: 2048, Flags: virtio.DescFWrite})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n := s.dev.Receive([]vnet.Frame{{Data: ethFrame(1514, 6)}}); n != 1 {
		t.Fatalf("after the queue was set up again: %d written (stats %+v)", n, s.dev.Stats())
	}
}

// The attack with concurrency: the hostile guest keeps making chains of
// empty descriptors and chains too few for a frame available from its own
// thread, and rewrites their lengths as the device reads them, while one
// sender's goroutine delivers frames to it and to a well-behaved guest.
// Every frame to the hostile guest is written or counted once, the
// well-behaved one gets all of its frames, and no queue faults.
func TestRXHostileReceiverConcurrent(t *testing.T) {
	const perQueue = 4 << 20
	_, raw := memfdMem(t, 3*perQueue)
	feats := baseFeat | vnet.Features(vnet.FMrgRxbuf)
	bad := newBedIn(t, raw, 1, feats, 1024, perQueue, &recSink{})
	good := newBed(t, 1, feats, 1024, 1<<20, &recSink{})
	brx, grx := bad.rx(0), good.rx(0)
	// Chains of 1000 descriptors holding 12 bytes, of one 12-byte
	// buffer, of one 2048-byte buffer: some frames fit, some run out,
	// some take too many descriptors.
	var lastLens [][]byte // the 12-byte buffers' length fields
	var heads []uint16
	for i := range 64 {
		n, last := 1000, uint32(12)
		switch i % 4 {
		case 1, 2:
			n = 1
		case 3:
			n, last = 1, 2048
		}
		h := brx.AddIndirect(emptyBufs(n, last)...)
		heads = append(heads, h)
		if last == 12 {
			table := brx.BufAddr(h, 0).Addr
			lastLens = append(lastLens, brx.Bytes(table+16*uint64(n-1)+8, 4))
		}
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the guest: keep the ring topped up, flip lengths 12 <-> 0
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			brx.DiscardUsed()
			if brx.AvailIdx()-brx.UsedIdx() < uint16(i/128%24) { // at times only a few
				brx.Push(heads[i%len(heads)])
			}
			lastLens[i%len(lastLens)][0] ^= 12
		}
	}()
	frames := make([]vnet.Frame, 8)
	sent := 0
	for round := range 3000 {
		for i := range frames {
			frames[i] = vnet.Frame{Data: ethFrame(60+(round*37+i*200)%1454, byte(i))}
		}
		bad.dev.Receive(frames)
		sent += len(frames)
		for range frames {
			grx.Push(grx.AddChain(virtiotest.Buf{Len: 2048, Write: true}))
		}
		if n := good.dev.Receive(frames); n != len(frames) {
			t.Fatalf("round %d: the well-behaved guest got %d of %d frames", round, n, len(frames))
		}
		grx.DiscardUsed()
		grx.FreeAll()
	}
	stop.Store(true)
	wg.Wait()
	s := bad.dev.Stats()
	if got := s.RxPackets + s.RxDropBadChain + s.RxDropNoBuffer + s.RxDropOversize; got != uint64(sent) {
		t.Fatalf("%d frames to the hostile guest, %d accounted for (stats %+v)", sent, got, s)
	}
	if s.RxDropBadChain == 0 || s.RxPackets == 0 || s.RxDropNoBuffer == 0 {
		t.Fatalf("the hostile guest's frames were not all of written, bad chains and no buffer (stats %+v)", s)
	}
	if len(bad.faults) != 0 || len(good.faults) != 0 {
		t.Fatalf("faults: hostile %v, well-behaved %v", bad.faults, good.faults)
	}
	t.Logf("hostile guest: %d written, %d bad-chain drops, %d no-buffer drops of %d", s.RxPackets, s.RxDropBadChain, s.RxDropNoBuffer, sent)
}

// A guest's bad chains and headers cost the device no allocation: chains
// outside guest memory, too long, readable after writable, headers the
// device refuses, and receive chains that are readable or too small.
// (Before: five allocations a bad chain, one a bad header; the errors
// now live in the chain and the queue.) The counters are kept between
// two powers of two while measured: drop logs only there.
func TestNoAllocsHostile(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counting")
	}
	dst := newBed(t, 1, baseFeat|vnet.Features(vnet.FMrgRxbuf), 256, 1<<20, &recSink{})
	fwd := vnet.SinkFunc(func(fs []vnet.Frame) { dst.dev.Receive(fs) })
	src := newBed(t, 1, baseFeat|vnet.Features(vnet.FCsum), 256, 1<<20, fwd)
	tx, rx := src.tx(0), dst.rx(0)
	var txHeads, rxHeads []uint16
	for i := range 32 {
		var h uint16
		switch i % 4 {
		case 0: // outside guest memory
			h = tx.AddChain(virtiotest.Buf{Addr: 0x7000_0000_0000, Len: 100})
		case 1: // readable after writable
			h = tx.AddChain(virtiotest.Buf{Len: 12, Write: true}, virtiotest.Buf{Data: ethFrame(64, 1)})
		case 2: // a header the device refuses
			h = tx.AddChain(virtiotest.Buf{Data: append(hdr(vnet.Header{Flags: 0x40}), ethFrame(64, 1)...)})
		default: // a good frame, to the receiver's bad chains
			h = tx.AddChain(virtiotest.Buf{Data: append(hdr(vnet.Header{}), ethFrame(64, 1)...)})
		}
		txHeads = append(txHeads, h)
		if i%2 == 0 {
			rxHeads = append(rxHeads, rx.AddChain(virtiotest.Buf{Data: make([]byte, 64)})) // readable
		} else {
			rxHeads = append(rxHeads, rx.AddChain(virtiotest.Buf{Len: 8, Write: true})) // smaller than the header
		}
	}
	round := func() {
		tx.Push(txHeads...)
		rx.Push(rxHeads[:8]...)
		src.dev.ProcessTX(0)
		tx.DiscardUsed()
		rx.DiscardUsed()
	}
	for range 130 { // 2080 bad chains, 1040 bad headers and receive chains: 100 more rounds cross no power of two
		round()
	}
	allocs := testing.AllocsPerRun(100, round)
	s, d := src.dev.Stats(), dst.dev.Stats()
	if s.TxDropBadChain == 0 || s.TxDropBadHeader == 0 || d.RxDropBadChain == 0 {
		t.Fatalf("the hostile chains were not all refused: sender %+v, receiver %+v", s, d)
	}
	if allocs != 0 {
		t.Fatalf("%v allocations per round of 32 bad chains and headers, want 0", allocs)
	}
}
