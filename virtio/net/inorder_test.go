package vnet_test

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/hvnet/hvnet/frame"
	"github.com/hvnet/hvnet/virtio"
	vnet "github.com/hvnet/hvnet/virtio/net"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

// TestTXInOrder: the transmit path uses chains in the order they were
// made available, the dropped ones in their place (a writable buffer, a
// runt, an oversized frame, a header it refuses, a chain in two
// descriptors among one-descriptor ones), whatever the sink (whole frames,
// used before delivery; frames in two parts, used after). With
// VIRTIO_F_IN_ORDER the used index moves by exactly the chains taken and
// the last entry names the last chain (§2.7.9: one entry a batch);
// without it every chain has its entry, in the order popped. The sink
// gets the good frames in order.
func TestTXInOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(35, 9))
	for _, inOrder := range []bool{true, false} {
		for _, tails := range []bool{false, true} {
			feat := uint64(baseFeat)
			if inOrder {
				feat |= 1 << virtio.FInOrder
			}
			var sink vnet.Sink = &recSink{}
			if tails {
				sink = &tailSink{need: frame.HeadLen}
			}
			b := newBed(t, 1, feat, 256, 8<<20, sink)
			d := b.tx(0)
			var want [][]byte
			for round := range 200 {
				d.FreeAll()
				var heads []uint16
				for range rng.IntN(150) {
					var h uint16
					switch rng.IntN(12) {
					case 0:
						h = d.AddChain(virtiotest.Buf{Len: 100, Write: true})
					case 1:
						h = d.AddChain(virtiotest.Buf{Data: append(hdr(vnet.Header{}), 1, 2, 3)})
					case 2:
						h = d.AddChain(virtiotest.Buf{Data: append(hdr(vnet.Header{}), make([]byte, vnet.MaxFrameLen+1)...)})
					case 3: // GSO the device did not offer: refused
						h = d.AddChain(virtiotest.Buf{Data: append(hdr(vnet.Header{GSOType: frame.GSOTCPv4, HdrLen: 54, GSOSize: 1000}), ethFrame(200, 1)...)})
					case 4:
						f := ethFrame(60+rng.IntN(3000), byte(round))
						h = d.AddChain(virtiotest.Buf{Data: hdr(vnet.Header{})}, virtiotest.Buf{Data: f})
						want = append(want, f)
					default:
						f := ethFrame(60+rng.IntN(1500), byte(round))
						h = d.AddChain(virtiotest.Buf{Data: append(hdr(vnet.Header{}), f...)})
						want = append(want, f)
					}
					heads = append(heads, h)
				}
				before := d.UsedIdx()
				d.Push(heads...)
				for b.dev.ProcessTX(0) {
				}
				if got := d.UsedIdx() - before; got != uint16(len(heads)) {
					t.Fatalf("in order %v, tails %v, round %d: used index moved by %d for %d chains", inOrder, tails, round, got, len(heads))
				}
				if inOrder {
					if len(heads) > 0 {
						d.DiscardUsed()
						last := d.Bytes(d.Used+4+8*uint64((d.UsedIdx()-1)&(d.Size-1)), 4)
						if id := uint16(last[0]) | uint16(last[1])<<8; id != heads[len(heads)-1] {
							t.Fatalf("in order, round %d: last used entry names chain %d, the last chain is %d", round, id, heads[len(heads)-1])
						}
					}
					continue
				}
				used := d.DrainUsed()
				for i, u := range used {
					if u.ID != uint32(heads[i]) || u.Len != 0 {
						t.Fatalf("tails %v, round %d: used[%d] = %+v, want chain %d, length 0 (in the order popped)", tails, round, i, u, heads[i])
					}
				}
			}
			var got [][]byte
			if tails {
				got = sink.(*tailSink).wholes
			} else {
				got = frameData(sink.(*recSink).frames)
			}
			if len(got) != len(want) {
				t.Fatalf("in order %v, tails %v: sink got %d frames, want %d", inOrder, tails, len(got), len(want))
			}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("in order %v, tails %v: frame %d differs", inOrder, tails, i)
				}
			}
		}
	}
}
