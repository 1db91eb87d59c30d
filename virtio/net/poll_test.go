package vnet_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/hvnet/hvnet/virtio"
	vnet "github.com/hvnet/hvnet/virtio/net"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

// TestPollKeepsKicksOff: Poll processes a transmit queue with
// VIRTQ_USED_F_NO_NOTIFY left set even when it empties the ring (§2.7.10);
// EnableKick clears it and reports chains that arrived meanwhile.
func TestPollKeepsKicksOff(t *testing.T) {
	sink := &recSink{}
	b := newBed(t, 1, fVersion1, 256, 64<<10, sink) // no EVENT_IDX: the flag is used
	if b.dev.Poll(1) {
		t.Fatal("Poll() = true on an empty ring")
	}
	f := ethFrame(60, 3)
	b.tx(0).Push(b.tx(0).AddChain(virtiotest.Buf{Data: append(hdr(vnet.Header{}), f...)}))
	if !b.dev.Poll(1) {
		t.Fatal("Poll() = false with a frame available")
	}
	if len(sink.frames) != 1 || !bytes.Equal(sink.frames[0].Data, f) {
		t.Fatalf("sink got %d frames, want the one sent", len(sink.frames))
	}
	if b.tx(0).UsedFlags()&virtio.UsedFNoNotify == 0 {
		t.Fatal("kicks re-enabled by Poll")
	}
	if b.dev.Poll(1) {
		t.Fatal("Poll() = true on a drained ring")
	}
	b.tx(0).Push(b.tx(0).AddChain(virtiotest.Buf{Data: append(hdr(vnet.Header{}), f...)}))
	if !b.dev.EnableKick(1) {
		t.Fatal("EnableKick() = false with a chain pending: the kick would be lost")
	}
	if !b.dev.Poll(1) || b.dev.EnableKick(1) {
		t.Fatal("after polling the last chain, EnableKick() should report an empty ring")
	}
	if b.tx(0).UsedFlags()&virtio.UsedFNoNotify != 0 {
		t.Fatal("EnableKick left kicks off")
	}
	if b.dev.Poll(0) || b.dev.EnableKick(0) || b.dev.Poll(2) {
		t.Fatal("Poll/EnableKick on a receive or control queue")
	}
}

// TestPollAvailJumpFaults: an available index more than a ring ahead,
// found by Poll's idle check before any chain is popped, is a fault like
// any other (counted, reported: the device needs reset); it once left the
// queue broken without a word, and a vhost-user frontend got no error
// signal.
func TestPollAvailJumpFaults(t *testing.T) {
	b := newBed(t, 1, fVersion1, 256, 64<<10, &recSink{})
	b.tx(0).SetAvailIdx(1000)
	if b.dev.Poll(1) {
		t.Fatal("Poll() = true on a broken ring")
	}
	if len(b.faults) != 1 || b.dev.Stats().Faults != 1 {
		t.Fatalf("faults reported %v, counted %d; want one of each", b.faults, b.dev.Stats().Faults)
	}
	var ie *virtio.InvalidAvailIdxError
	if !errors.As(b.faults[0], &ie) {
		t.Fatalf("fault %v, want an InvalidAvailIdxError", b.faults[0])
	}
	if b.dev.Poll(1) || len(b.faults) != 1 {
		t.Fatal("a broken queue polled again, or its fault reported twice")
	}
}
