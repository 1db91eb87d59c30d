package vnet_test

import (
	"slices"
	"testing"

	vnet "github.com/hvnet/hvnet/virtio/net"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

// queueRec is a QueueSink that records which pair each batch came from
// (-1: Deliver, no pair).
type queueRec struct{ pairs []int }

func (s *queueRec) Deliver(fs []vnet.Frame) { s.pairs = append(s.pairs, -1) }

func (s *queueRec) DeliverQueue(pair int, fs []vnet.Frame) { s.pairs = append(s.pairs, pair) }

// A device with several active pairs tells a QueueSink which transmit
// queue each batch came from, and ReceiveQueue writes the frames of a
// sender's queue q to receive queue q modulo the active pairs; with one
// active pair (SetActivePairs, the transport's word, or the control
// queue's) both behave as before: Deliver, and Receive's queue 0.
func TestQueueSteering(t *testing.T) {
	feats := baseFeat | vnet.Features(vnet.FCtrlVQ, vnet.FMQ)
	rec := &queueRec{}
	b := newBed(t, 3, feats, 64, 1<<20, rec)
	for _, n := range []int{0, 4, -1} {
		if err := b.dev.SetActivePairs(n); err == nil {
			t.Errorf("SetActivePairs(%d) on a 3-pair device: no error", n)
		}
	}
	send := func(pair int) {
		b.tx(pair).Push(b.tx(pair).AddChain(virtiotest.Buf{Data: append(hdr(vnet.Header{}), ethFrame(60, 1)...)}))
		b.dev.ProcessTX(pair)
	}
	send(1) // one active pair: Deliver
	if err := b.dev.SetActivePairs(3); err != nil {
		t.Fatal(err)
	}
	send(2)
	send(0)
	if want := []int{-1, 2, 0}; !slices.Equal(rec.pairs, want) {
		t.Errorf("batches came as pairs %v, want %v", rec.pairs, want)
	}

	// Receive side: with 2 of 3 pairs active, sender queue q lands on
	// pair q%2; a negative q (no hint) is Receive's hash.
	if err := b.dev.SetActivePairs(2); err != nil {
		t.Fatal(err)
	}
	for p := range 3 {
		for range 8 {
			b.rx(p).Push(b.rx(p).AddChain(virtiotest.Buf{Len: 2048, Write: true}))
		}
	}
	for q, want := range []int{0, 1, 0, 1, 0, 1} {
		var before [3]uint16
		for p := range 3 {
			before[p] = b.rx(p).UsedIdx()
		}
		if n := b.dev.ReceiveQueue(q, []vnet.Frame{{Data: ethFrame(60, byte(q))}}); n != 1 {
			t.Fatalf("ReceiveQueue(%d): %d written", q, n)
		}
		for p := range 3 {
			if got := b.rx(p).UsedIdx() - before[p]; got != boolN(p == want) {
				t.Errorf("ReceiveQueue(%d): pair %d took %d frames, want the frame on pair %d", q, p, got, want)
			}
		}
	}
	if err := b.dev.SetActivePairs(1); err != nil {
		t.Fatal(err)
	}
	u0 := b.rx(0).UsedIdx()
	if n := b.dev.ReceiveQueue(5, []vnet.Frame{{Data: ethFrame(60, 9)}}); n != 1 || b.rx(0).UsedIdx() != u0+1 {
		t.Errorf("one active pair: ReceiveQueue(5) wrote %d, pair 0 used %d -> %d; want it on pair 0", n, u0, b.rx(0).UsedIdx())
	}
	if len(b.faults) != 0 {
		t.Errorf("faults: %v", b.faults)
	}
}

func boolN(b bool) uint16 {
	if b {
		return 1
	}
	return 0
}
