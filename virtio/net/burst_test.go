package vnet_test

import (
	"bytes"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"testing"

	"github.com/hvnet/hvnet/frame"
	"github.com/hvnet/hvnet/virtio"
	vnet "github.com/hvnet/hvnet/virtio/net"
	"github.com/hvnet/hvnet/virtio/virtiotest"
	"golang.org/x/sys/unix"
)

// rxCall is what one Receive call gave: how many frames were written and
// those frames, in the order Receive left them.
type rxCall struct {
	accepted int
	written  [][]byte
}

// TestRXBurstAgreesWithLoop: the receive burst (rxBurst: pop every chain,
// then write every frame, then stage every used entry) leaves the guest
// exactly what the one-frame loop leaves, byte for byte, entry for entry,
// count for count, whatever the chains and frames: one-buffer chains of
// every size (too small, just right, larger), chains of several buffers,
// bad chains (a readable buffer, a buffer outside guest memory, shorter
// than the header), frames with offloads the guest took or did not, frames
// with tails, tails whose sender's memory is gone (wholly or from the
// middle on: the frame is dropped and counted, the chains around it
// used), oversized frames, more frames than a burst, and the ring running
// out, over several calls in a row. Both use the chains in the order they
// were made available (VIRTIO_F_IN_ORDER).
func TestRXBurstAgreesWithLoop(t *testing.T) {
	rng := rand.New(rand.NewPCG(22, 20))
	gone := goneMem(t, 2*frame.HeadLen+vnet.MaxFrameLen)
	var sourceFaults uint64
	for iter := range 1500 {
		feat := baseFeat | vnet.Features(vnet.FMrgRxbuf)
		if rng.IntN(2) == 0 {
			feat |= vnet.Features(vnet.FGuestCsum, vnet.FGuestTSO4)
		}
		type chain struct {
			bufs []virtiotest.Buf
			bad  uint64 // a buffer address outside guest memory, or 0
		}
		var chains []chain
		for range rng.IntN(120) {
			var c chain
			nb := 1
			if rng.IntN(6) == 0 {
				nb += 1 + rng.IntN(2)
			}
			for range nb {
				switch rng.IntN(14) {
				case 0:
					c.bufs = append(c.bufs, virtiotest.Buf{Len: 100}) // readable
				case 1:
					c.bufs = append(c.bufs, virtiotest.Buf{Len: uint32(rng.IntN(20)), Write: true})
				case 2:
					c.bufs = append(c.bufs, virtiotest.Buf{Len: uint32(60 + rng.IntN(40)), Write: true})
				default:
					c.bufs = append(c.bufs, virtiotest.Buf{Len: uint32(1 + rng.IntN(2100)), Write: true})
				}
			}
			if rng.IntN(40) == 0 {
				c.bad = 1 << 40
			}
			chains = append(chains, c)
		}
		var frames []vnet.Frame
		for range rng.IntN(100) {
			n := 14 + rng.IntN(200)
			if rng.IntN(4) == 0 {
				n = 14 + rng.IntN(1600)
			}
			f := vnet.Frame{Data: ethFrame(n, byte(rng.IntN(256)))}
			switch rng.IntN(16) {
			case 0:
				f.Data = make([]byte, vnet.MaxFrameLen+1)
			case 1:
				f.Off = frame.Offload{Flags: frame.NeedsCsum, CsumStart: 34, CsumOffset: 16}
			case 2:
				f.Off = frame.Offload{Flags: frame.NeedsCsum, GSOType: frame.GSOTCPv4, HdrLen: 54, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}
			case 3, 4, 5:
				if n > frame.HeadLen {
					f.Tail = f.Data[frame.HeadLen:]
					f.Data = f.Data[:frame.HeadLen]
				}
			case 6:
				// A tail in memory its sender truncated: from its
				// start, or from somewhere inside it.
				if n > frame.HeadLen {
					at := len(gone) / 2
					if rng.IntN(2) == 0 {
						at -= rng.IntN(n - frame.HeadLen)
					}
					f.Tail = gone[at : at+n-frame.HeadLen]
					f.Data = f.Data[:frame.HeadLen]
				}
			}
			frames = append(frames, f)
		}
		// The frames in one to three calls.
		cuts := []int{0, len(frames)}
		for range rng.IntN(3) {
			cuts = append(cuts, rng.IntN(len(frames)+1))
		}
		sortInts(cuts)

		if rng.IntN(2) == 0 {
			feat |= 1 << virtio.FInOrder
		}
		var pushed []uint16 // heads in the order made available
		run := func(loop bool) (vnet.Stats, []virtiotest.Used, [][]byte, []rxCall) {
			b := rxBed(t, feat)
			b.dev.SetNoBurst(loop)
			d := b.rx(0)
			pushed = pushed[:0]
			for _, c := range chains {
				h := d.AddChain(c.bufs...)
				pushed = append(pushed, h)
				if c.bad != 0 {
					desc := d.BufAddr(h, 0)
					desc.Addr = c.bad
					d.SetDesc(h, virtiotest.Desc{Addr: desc.Addr, Len: desc.Len, Flags: desc.Flags, Next: desc.Next})
				}
				d.Push(h)
			}
			var calls []rxCall
			for i := 1; i < len(cuts); i++ {
				fs := append([]vnet.Frame(nil), frames[cuts[i-1]:cuts[i]]...)
				n := b.dev.Receive(fs)
				var c rxCall
				c.accepted = n
				for _, f := range fs[:n] {
					c.written = append(c.written, append(append([]byte(nil), f.Data...), f.Tail...))
				}
				calls = append(calls, c)
			}
			used := d.DrainUsed()
			var got [][]byte
			for _, u := range used {
				nb := 1
				for nb < 3 && d.BufAddr(uint16(u.ID), nb-1).Flags&virtio.DescFNext != 0 {
					nb++
				}
				got = append(got, chainBytes(d, uint16(u.ID), nb, u.Len))
			}
			return b.dev.Stats(), used, got, calls
		}
		s1, u1, g1, c1 := run(false)
		s2, u2, g2, c2 := run(true)
		sourceFaults += s1.RxDropSourceFault
		if s1 != s2 {
			t.Fatalf("iteration %d: stats with the burst %+v\nwith the loop %+v", iter, s1, s2)
		}
		if len(u1) != len(u2) {
			t.Fatalf("iteration %d: %d used entries with the burst, %d with the loop", iter, len(u1), len(u2))
		}
		for i := range u1 {
			if u1[i] != u2[i] || !bytes.Equal(g1[i], g2[i]) {
				t.Fatalf("iteration %d: used[%d] %+v (%d bytes) with the burst, %+v (%d bytes) with the loop",
					iter, i, u1[i], len(g1[i]), u2[i], len(g2[i]))
			}
		}
		// In order (VIRTIO_F_IN_ORDER, and always on the receive side):
		// the chains used are the first ones made available, in that
		// order; a chain given back (too small, a frame that ran out)
		// comes after.
		for i, u := range u1 {
			if u.ID != uint32(pushed[i]) {
				t.Fatalf("iteration %d: used[%d] names chain %d; chain %d was made available %dth", iter, i, u.ID, pushed[i], i+1)
			}
		}
		for i := range c1 {
			if c1[i].accepted != c2[i].accepted {
				t.Fatalf("iteration %d call %d: %d accepted with the burst, %d with the loop", iter, i, c1[i].accepted, c2[i].accepted)
			}
			for j := range c1[i].written {
				if !bytes.Equal(c1[i].written[j], c2[i].written[j]) {
					t.Fatalf("iteration %d call %d: frame %d of the written ones differs", iter, i, j)
				}
			}
		}
	}
	if sourceFaults == 0 {
		t.Fatal("no frame's tail faulted: the test did not reach the sender-fault path")
	}
	t.Logf("%d frames dropped for their sender's memory", sourceFaults)
}

// goneMem maps n bytes of a memfd on each side of a page boundary and
// truncates the memfd to the first page's: the first half reads, every
// byte of the second half faults (a vhost-user frontend that shrank its
// memory under a frame in flight).
func goneMem(t *testing.T, n int) []byte {
	t.Helper()
	pg := os.Getpagesize()
	half := (n + pg - 1) / pg * pg
	fd, raw := memfdMem(t, 2*half)
	if err := unix.Ftruncate(fd, int64(half)); err != nil {
		t.Fatal(err)
	}
	return raw[half-n : half+n]
}

func sortInts(a []int) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

// TestRXBurstRacingDriver: a driver rewriting its receive descriptors
// and available ring from another thread while bursts are written (every
// field: address, length, flags, next; ring entries) gets its
// chains used, or dropped and counted, or its queue broken and the fault
// reported, and nothing else: no used length over what a frame needs,
// counts that add up, no crash. Guest memory is a shared mapping (the
// race detector does not see it), as a frontend's is.
func TestRXBurstRacingDriver(t *testing.T) {
	const perQueue = 1 << 20
	_, raw := memfdMem(t, 3*perQueue)
	const size = 256
	ring := raw[:16*size+6+2*size] // the RX queue's descriptor table and available ring
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(1, 1))
		for {
			select {
			case <-stop:
				return
			default:
			}
			for range 1 {
				switch i := r.IntN(16 * size); {
				case r.IntN(10) == 0: // a ring entry's low byte: another head
					ring[16*size+4+2*r.IntN(size)] ^= byte(1 << r.IntN(8))
				case i%16 < 3:
					// An address's low bytes would move a buffer onto
					// the driver's own used ring, which the device then
					// rightly writes: the check of used lengths could
					// not tell. Its high bytes move it out of memory.
					ring[i+3+r.IntN(5)] ^= byte(1 << r.IntN(8))
				default: // anything else: length, flags, next
					ring[i] ^= byte(1 << r.IntN(8))
				}
			}
			for range 200 { // spaced out, so that some rounds go through
				runtime.Gosched()
			}
		}
	}()
	var accepted, offered, dropped, faults uint64
	for bedN := range 40 {
		b := newBedIn(t, raw, 1, baseFeat|vnet.Features(vnet.FMrgRxbuf), size, perQueue, &recSink{})
		d := b.rx(0)
		var got uint64
		for round := range 100 {
			d.FreeAll()
			for range 64 {
				d.Push(d.AddChain(virtiotest.Buf{Len: uint32(60 + (bedN*100+round)*37%1500), Write: true}))
			}
			frames := make([]vnet.Frame, 64)
			for i := range frames {
				frames[i] = vnet.Frame{Data: ethFrame(60+i, byte(round))}
			}
			offered += uint64(len(frames))
			got += uint64(b.dev.Receive(frames))
			for _, u := range d.DrainUsed() {
				if u.Len > vnet.HdrLen+60+63 {
					close(stop)
					wg.Wait()
					t.Fatalf("bed %d round %d: used %+v: length more than any frame needs; stats %+v", bedN, round, u, b.dev.Stats())
				}
			}
		}
		st := b.dev.Stats()
		if st.RxPackets != got {
			t.Fatalf("bed %d: RxPackets %d, Receive accepted %d", bedN, st.RxPackets, got)
		}
		accepted += got
		dropped += rxDropped(st)
		faults += uint64(len(b.faults))
	}
	close(stop)
	wg.Wait()
	if accepted+dropped != offered {
		t.Fatalf("%d offered, %d written, %d counted as dropped", offered, accepted, dropped)
	}
	if accepted == 0 || dropped == 0 {
		t.Fatalf("%d written, %d dropped: the race did not reach both outcomes", accepted, dropped)
	}
	t.Logf("%d of %d frames written, %d dropped and counted, %d queue faults", accepted, offered, dropped, faults)
}

// TestRXSenderShrinks: a sender that shrinks and regrows its memory from
// another thread while frames' tails are copied out of it into a
// receiving guest (a vhost-user frontend's ftruncate) loses those frames,
// each counted as its own (RxDropSourceFault), and nothing else: the
// receiving queue stays up, every frame is written or counted, no used
// length is over what a frame needs.
func TestRXSenderShrinks(t *testing.T) {
	pg := os.Getpagesize()
	const tailLen = 1400
	full := 2*pg + 64*((tailLen+pg-1)/pg)*pg
	fd, sender := memfdMem(t, full)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			default:
			}
			size := full
			if k%4 != 0 { // shrunk three times in four
				size = pg + (k%64)*pg // cut somewhere among the tails
			}
			if err := unix.Ftruncate(fd, int64(size)); err != nil {
				panic(err)
			}
			for range 50 {
				runtime.Gosched()
			}
		}
	}()
	const perQueue = 1 << 20
	_, raw := memfdMem(t, 3*perQueue)
	var accepted, offered, dropped, source uint64
	for bedN := range 20 {
		b := newBedIn(t, raw, 1, baseFeat|vnet.Features(vnet.FMrgRxbuf), 256, perQueue, &recSink{})
		d := b.rx(0)
		var got uint64
		outstanding := 0 // chains given back for a dropped frame stay available
		for round := range 100 {
			d.FreeAll()
			for ; outstanding < 64; outstanding++ {
				d.Push(d.AddChain(virtiotest.Buf{Len: 2048, Write: true}))
			}
			frames := make([]vnet.Frame, 64)
			for i := range frames {
				head := ethFrame(frame.HeadLen, byte(round))
				at := pg + (i%64)*pg + round*37%(pg-tailLen) // one of 64 pages
				frames[i] = vnet.Frame{Data: head, Tail: sender[at : at+tailLen]}
			}
			offered += uint64(len(frames))
			got += uint64(b.dev.Receive(frames))
			for _, u := range d.DrainUsed() {
				outstanding--
				if u.Len > vnet.HdrLen+frame.HeadLen+tailLen {
					close(stop)
					wg.Wait()
					t.Fatalf("bed %d round %d: used %+v: more than the frame", bedN, round, u)
				}
			}
		}
		st := b.dev.Stats()
		if st.RxPackets != got {
			t.Fatalf("bed %d: RxPackets %d, Receive accepted %d", bedN, st.RxPackets, got)
		}
		if len(b.faults) != 0 {
			t.Fatalf("bed %d: the receiving queue faulted for the sender's memory: %v", bedN, b.faults)
		}
		accepted += got
		source += st.RxDropSourceFault
		dropped += rxDropped(st)
	}
	close(stop)
	wg.Wait()
	if accepted+dropped != offered {
		t.Fatalf("%d offered, %d written, %d counted as dropped", offered, accepted, dropped)
	}
	if accepted == 0 || source == 0 {
		t.Fatalf("%d written, %d dropped for the sender: the race did not reach both outcomes", accepted, source)
	}
	t.Logf("%d of %d frames written, %d dropped for the sender's memory", accepted, offered, source)
}

// rxDropped sums every counter of frames the receive path dropped.
func rxDropped(st vnet.Stats) uint64 {
	return st.RxDropNoBuffer + st.RxDropBadChain + st.RxDropOversize + st.RxDropOffload + st.RxDropSourceFault
}
