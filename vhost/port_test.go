package vhost

import (
	"bytes"
	"testing"

	vswitch "github.com/hvnet/hvnet/switch"
)

// A frame transmitted by one frontend crosses the switch and arrives in
// the other frontend's receive queue.
func TestFramesCrossSwitch(t *testing.T) {
	sw := vswitch.New(vswitch.Config{})
	pa, sockA := testPort(t, sw, "a", 1)
	_, sockB := testPort(t, sw, "b", 1)
	a, b := dialGuest(t, sockA), dialGuest(t, sockB)
	a.mustNegotiate()
	b.mustNegotiate()
	b.postRx(8)
	want := [][]byte{ethFrame(0xff, 1, 1), ethFrame(0xff, 1, 2), ethFrame(0xff, 1, 3)}
	a.send(want...)
	got := b.recv(len(want))
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("frame %d = % x, want % x", i, got[i], want[i])
		}
	}
	// The reply is unicast to the learned address.
	a.postRx(4)
	b.send(ethFrame(1, 2, 9))
	if r := a.recv(1); !bytes.Equal(r[0], ethFrame(1, 2, 9)) {
		t.Errorf("reply = % x", r[0])
	}
	// Input counts a batch after forwarding it: let a's ring worker finish.
	waitUntil(t, "port a to count its input", func() bool { return pa.Handle().Counters().RxPackets >= 3 })
	if c := pa.Handle().Counters(); c.RxPackets != 3 {
		t.Errorf("port a counters %+v, want 3 frames in", c)
	}
}
