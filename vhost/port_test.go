package vhost

import (
	"bytes"
	"testing"
	"time"

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

// A busy-polled transmit ring counts the time its polls spent on frames
// (PollBusyNanos, which "hvnet bench vhost" divides by the frames moved);
// it reaches the port's counters at the latest when the ring goes idle.
func TestPollBusyCounted(t *testing.T) {
	sw := vswitch.New(vswitch.Config{})
	pa, sockA := testPort(t, sw, "a", 1)
	_, sockB := testPort(t, sw, "b", 1)
	a, b := dialGuest(t, sockA), dialGuest(t, sockB)
	a.mustNegotiate()
	b.mustNegotiate()
	b.postRx(8)
	a.send(ethFrame(0xff, 1, 1), ethFrame(0xff, 1, 2))
	b.recv(2)
	waitUntil(t, "port a to count busy poll time", func() bool { return pa.NotifyStats().PollBusyNanos > 0 })
	if n := pa.NotifyStats().PollBusyNanos; n > int64(time.Minute) {
		t.Errorf("PollBusyNanos = %d for two frames", n)
	}
}
