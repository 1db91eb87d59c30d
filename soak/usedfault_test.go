package soak

import (
	"encoding/binary"
	"testing"

	"github.com/hvnet/hvnet/virtio/virtiotest"
)

// TestUsedIndexFault: a used index that steps backwards, or past what the
// driver made available, is reported and not counted as frames sent (a
// backwards step of k read as 65536-k used chains once inflated the
// daemon path's books by exactly 65536).
func TestUsedIndexFault(t *testing.T) {
	g := &guest{rx: virtiotest.New(qSize, 1<<20), tx: virtiotest.New(qSize, 1<<20)}
	setUsed := func(d *virtiotest.Driver, v uint16) {
		binary.LittleEndian.PutUint16(d.Bytes(d.Used+2, 2), v)
	}
	var c counts
	faults0 := usedFaults.Load()
	g.txPushed = 40
	setUsed(g.tx, 30)
	g.poll(&c)
	if c.sent.Load() != 30 || usedFaults.Load() != faults0 {
		t.Fatalf("in-range step: sent %d faults %d, want 30 and none", c.sent.Load(), usedFaults.Load()-faults0)
	}
	setUsed(g.tx, 29) // backwards
	g.poll(&c)
	setUsed(g.tx, 41) // past the 40 made available
	g.poll(&c)
	if got := usedFaults.Load() - faults0; got != 2 || c.sent.Load() != 30 {
		t.Fatalf("bad steps: sent %d faults %d, want 30 and 2", c.sent.Load(), got)
	}
	setUsed(g.tx, 40) // the backend's next correct value counts as usual
	g.poll(&c)
	if c.sent.Load() != 40 {
		t.Fatalf("after recovery: sent %d, want 40", c.sent.Load())
	}
	setUsed(g.rx, qSize+1) // more used than buffers posted
	g.poll(&c)
	if got := usedFaults.Load() - faults0; got != 3 || c.received.Load() != 0 {
		t.Fatalf("receive: received %d faults %d, want 0 and 3", c.received.Load(), got)
	}
	usedFaultLog.Lock()
	t.Logf("reported: %v", usedFaultLog.lines)
	usedFaultLog.lines = nil
	usedFaultLog.Unlock()
	usedFaults.Store(faults0) // keep TestSoak's report clean
}
