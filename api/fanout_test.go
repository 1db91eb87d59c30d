package api

import (
	"testing"

	vswitch "github.com/hvnet/hvnet/switch"
)

// BenchmarkFanoutMirror measures the forwarding path's cost of one live
// capture: copying a batch of 32 64-byte frames into a pooled batch and
// queueing it (a reader drains the queue). It should not allocate.
func BenchmarkFanoutMirror(b *testing.B) {
	f := newFanout(256)
	t := newTap("a", true, true, 256)
	f.add(t)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case bt := <-t.ch:
				batchPool.Put(bt)
			case <-done:
				return
			}
		}
	}()
	defer close(done)
	frames := make([]vswitch.Frame, 32)
	for i := range frames {
		frames[i].Data = eth(mac(2), mac(1), 50)
	}
	b.ReportAllocs()
	b.SetBytes(32 * 64)
	for b.Loop() {
		f.Mirror("a", vswitch.Ingress, 1, frames)
	}
}

// BenchmarkFanoutNoListener is the cost for a port nobody captures (its
// mirror flags are off, so the switch does not even call this).
func BenchmarkFanoutNoListener(b *testing.B) {
	f := newFanout(256)
	frames := make([]vswitch.Frame, 32)
	b.ReportAllocs()
	for b.Loop() {
		f.Mirror("a", vswitch.Ingress, 1, frames)
	}
}
