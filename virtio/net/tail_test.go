package vnet_test

import (
	"bytes"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/frame"
	vnet "github.com/hvnet/hvnet/virtio/net"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

// tailSink is a vnet.TailSink: need says how many leading bytes it reads
// (HeadNeed); during Deliver it runs hook, then records each frame's head,
// its tail read with frame.ReadTail, and whether the tail was there.
type tailSink struct {
	need   int
	hook   func(fs []vnet.Frame)
	heads  [][]byte
	wholes [][]byte
	tails  []bool
}

func (s *tailSink) HeadNeed([]byte, frame.Offload) int { return s.need }

func (s *tailSink) Deliver(fs []vnet.Frame) {
	if s.hook != nil {
		s.hook(fs)
	}
	for _, f := range fs {
		w := append([]byte(nil), f.Data...)
		w = append(w, make([]byte, len(f.Tail))...)
		if !frame.ReadTail(w[len(f.Data):], f.Tail) {
			panic("tail faulted")
		}
		s.heads = append(s.heads, append([]byte(nil), f.Data...))
		s.wholes = append(s.wholes, w)
		s.tails = append(s.tails, f.Tail != nil)
	}
}

// A sink that takes tails gets a long frame's first frame.HeadLen bytes as
// a host copy and the rest as its tail when the rest lies in one guest
// buffer and the sink reads no further; else the whole frame, copied. The
// head never aliases guest memory: a guest rewriting its buffers during
// Deliver changes the tail it sends, never the head the sink decides on.
func TestTXTails(t *testing.T) {
	const n = 1514
	for _, tc := range []struct {
		layout string
		size   int
		need   int
		tail   bool
	}{
		{"one descriptor", n, 100, true},
		{"header apart", n, 100, true},
		{"head across buffers, rest in one", n, 100, true},
		{"rest across buffers", n, 100, false},
		{"indirect", n, 100, true},
		{"one descriptor", n, frame.HeadLen + 1, false}, // the sink reads past the head
		{"one descriptor", frame.HeadLen, 100, false},   // nothing behind the head
		{"one descriptor", frame.HeadLen + 1, 100, true},
		{"one descriptor", 65000, 100, true},
	} {
		t.Run(fmt.Sprintf("%s/%d/need%d", tc.layout, tc.size, tc.need), func(t *testing.T) {
			want := ethFrame(tc.size, 3)
			full := append(hdr(vnet.Header{}), want...)
			var guestBufs [][]byte
			sink := &tailSink{need: tc.need}
			sink.hook = func(fs []vnet.Frame) {
				for _, f := range fs {
					for _, g := range guestBufs {
						if overlaps(f.Data, g) {
							t.Errorf("the head aliases guest memory")
						}
					}
				}
			}
			b := newBed(t, 1, baseFeat, 256, 1<<20, sink)
			d := b.tx(0)
			var bufs []virtiotest.Buf
			switch tc.layout {
			case "one descriptor", "indirect":
				bufs = []virtiotest.Buf{{Data: full}}
			case "header apart":
				bufs = []virtiotest.Buf{{Data: full[:vnet.HdrLen]}, {Data: full[vnet.HdrLen:]}}
			case "head across buffers, rest in one":
				bufs = []virtiotest.Buf{{Data: full[:100]}, {Data: full[100:]}}
			case "rest across buffers":
				bufs = []virtiotest.Buf{{Data: full[:100]}, {Data: full[100:700]}, {Data: full[700:]}}
			}
			guestBufs = pushChain(d, tc.layout == "indirect", bufs)
			b.dev.ProcessTX(0)
			if len(sink.wholes) != 1 || !bytes.Equal(sink.wholes[0], want) {
				t.Fatalf("sink got %d frames, the frame intact: %v", len(sink.wholes), len(sink.wholes) == 1 && bytes.Equal(sink.wholes[0], want))
			}
			if sink.tails[0] != tc.tail {
				t.Fatalf("tail: %v, want %v", sink.tails[0], tc.tail)
			}
			if tc.tail && len(sink.heads[0]) != frame.HeadLen {
				t.Fatalf("head of %d bytes, want %d", len(sink.heads[0]), frame.HeadLen)
			}
			if s := b.dev.Stats(); s.TxPackets != 1 || s.TxBytes != uint64(tc.size) {
				t.Fatalf("stats %+v, want 1 frame of %d bytes", s, tc.size)
			}
		})
	}
}

// The guest rewrites every byte of its buffer during Deliver: the sink's
// head is the bytes of before, the tail whatever the guest wrote (its own
// payload, nothing the switch decides on).
func TestTXTailRewritten(t *testing.T) {
	want := ethFrame(1514, 4)
	full := append(hdr(vnet.Header{}), want...)
	var guest []byte
	sink := &tailSink{need: 100, hook: func([]vnet.Frame) {
		for i := range guest {
			guest[i] ^= 0xff
		}
	}}
	b := newBed(t, 1, baseFeat, 256, 1<<20, sink)
	d := b.tx(0)
	head := d.AddChain(virtiotest.Buf{Data: full})
	a := d.BufAddr(head, 0)
	guest = d.Bytes(a.Addr, uint64(a.Len))
	d.Push(head)
	b.dev.ProcessTX(0)
	if len(sink.heads) != 1 || !bytes.Equal(sink.heads[0], want[:frame.HeadLen]) {
		t.Fatal("the head changed with the guest's buffer")
	}
	for i, c := range sink.wholes[0][frame.HeadLen:] {
		if c != want[frame.HeadLen+i]^0xff {
			t.Fatalf("tail byte %d: %#x, want the guest's rewrite %#x", i, c, want[frame.HeadLen+i]^0xff)
		}
	}
}

// A two-part frame lands in the guest's buffers exactly as the whole frame
// would: in one buffer, and spread over several (mergeable buffers, or a
// chain of small ones), where the device makes it whole first.
func TestRXTails(t *testing.T) {
	whole := ethFrame(3000, 8)
	f := vnet.Frame{Data: whole[:frame.HeadLen], Tail: whole[frame.HeadLen:]}
	for _, tc := range []struct {
		name string
		feat uint64
		bufs []virtiotest.Buf
	}{
		{"one buffer", baseFeat, []virtiotest.Buf{{Len: 4000, Write: true}}},
		{"chain of buffers", baseFeat, []virtiotest.Buf{{Len: 5, Write: true}, {Len: 1000, Write: true}, {Len: 4000, Write: true}}},
		{"mergeable", baseFeat | vnet.Features(vnet.FMrgRxbuf), []virtiotest.Buf{{Len: 1000, Write: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := rxBed(t, tc.feat)
			d := b.rx(0)
			var heads []uint16
			for range 4 {
				h := d.AddChain(tc.bufs...)
				heads = append(heads, h)
				d.Push(h)
			}
			if n := b.dev.Receive([]vnet.Frame{f}); n != 1 {
				t.Fatalf("Receive() = %d, want 1", n)
			}
			var got []byte
			for _, u := range d.DrainUsed() {
				left := u.Len
				for i := range tc.bufs {
					a := d.BufAddr(uint16(u.ID), i)
					k := min(left, a.Len)
					got = append(got, d.Bytes(a.Addr, uint64(k))...)
					left -= k
				}
			}
			if len(got) < vnet.HdrLen || !bytes.Equal(got[vnet.HdrLen:], whole) {
				t.Fatalf("the guest got %d bytes, not the frame", len(got))
			}
			if s := b.dev.Stats(); s.RxBytes != uint64(len(whole)) {
				t.Fatalf("RxBytes %d, want %d", s.RxBytes, len(whole))
			}
		})
	}
}

// A tail that faults while it is copied into a guest (its sender shrank
// its memory) is the sender's loss: the frame is dropped and counted
// (RxDropSourceFault), the receiving queue is not faulted, and the buffer
// it took is given back for the next frame.
func TestRXTailFault(t *testing.T) {
	const pg = 4096
	fd, raw := memfdMem(t, 2*pg)
	if err := unix.Ftruncate(fd, pg); err != nil {
		t.Fatal(err)
	}
	head := ethFrame(frame.HeadLen, 1)
	// The tail's first 500 bytes are there, the rest is cut off: with
	// mergeable buffers the fault comes in the frame's second buffer.
	bad := vnet.Frame{Data: head, Tail: raw[pg-500 : pg+500]}
	good := ethFrame(500, 2)
	for _, tc := range []struct {
		name string
		feat uint64
		bufs []virtiotest.Buf
	}{
		{"one buffer", baseFeat, []virtiotest.Buf{{Len: 4000, Write: true}}},
		{"chain of buffers", baseFeat, []virtiotest.Buf{{Len: 5, Write: true}, {Len: 4000, Write: true}}},
		{"mergeable", baseFeat | vnet.Features(vnet.FMrgRxbuf), []virtiotest.Buf{{Len: 600, Write: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := rxBed(t, tc.feat)
			d := b.rx(0)
			h := d.AddChain(tc.bufs...)
			d.Push(h)
			d.Push(d.AddChain(tc.bufs...), d.AddChain(tc.bufs...))
			if n := b.dev.Receive([]vnet.Frame{bad, {Data: good}}); n != 1 {
				t.Fatalf("Receive() = %d, want 1 (the good frame)", n)
			}
			s := b.dev.Stats()
			if s.RxDropSourceFault != 1 || s.MemoryFaults != 0 || s.Faults != 0 || len(b.faults) != 0 {
				t.Fatalf("stats %+v, faults %v: want one source fault and the queue whole", s, b.faults)
			}
			used := d.DrainUsed()
			if len(used) != 1 || used[0].ID != uint32(h) || used[0].Len != uint32(vnet.HdrLen+len(good)) {
				t.Fatalf("used %+v, want the good frame in buffer %d (the buffers the bad one took given back)", used, h)
			}
		})
	}
}

// A batch of whole frames (each copied into host memory) gives its chains
// back before the sink sees the frames: the guest may refill and rewrite
// those buffers while the frames are switched, and the sink still has the
// frames as sent. A batch with a two-part frame keeps every chain until
// the sink is done (the tail is read from the guest's buffer then).
func TestTXUsedBeforeDelivery(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sizes []int
		early bool
	}{
		{"whole frames", []int{60, 1514, 100}, true},
		{"one with a tail", []int{60, 1514, 100}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			need := 100 // frames longer than the head leave a tail
			if tc.early {
				need = 1 << 16 // the sink reads everything: no tails
			}
			var d *virtiotest.Driver
			var guest [][]byte
			var usedAtDelivery uint16
			sink := &tailSink{need: need, hook: func([]vnet.Frame) {
				usedAtDelivery = d.UsedIdx()
				if tc.early {
					for _, g := range guest { // the guest reuses its buffers
						for i := range g {
							g[i] = 0xee
						}
					}
				}
			}}
			b := newBed(t, 1, baseFeat, 256, 1<<20, sink)
			d = b.tx(0)
			var want [][]byte
			for i, n := range tc.sizes {
				f := ethFrame(n, byte(i+1))
				want = append(want, f)
				guest = append(guest, pushChain(d, false, []virtiotest.Buf{{Data: append(hdr(vnet.Header{}), f...)}})...)
			}
			b.dev.ProcessTX(0)
			if wantUsed := map[bool]uint16{true: uint16(len(want)), false: 0}[tc.early]; usedAtDelivery != wantUsed {
				t.Fatalf("used index %d while the sink had the frames, want %d", usedAtDelivery, wantUsed)
			}
			if u := d.UsedIdx(); u != uint16(len(want)) {
				t.Fatalf("used index %d after the batch, want %d", u, len(want))
			}
			if len(sink.wholes) != len(want) {
				t.Fatalf("sink got %d frames, want %d", len(sink.wholes), len(want))
			}
			for i := range want {
				if !bytes.Equal(sink.wholes[i], want[i]) {
					t.Fatalf("frame %d changed with the guest's buffer", i)
				}
			}
		})
	}
}
