package vhost

import (
	"testing"

	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

// BenchmarkForward moves batches of 32 64-byte frames from one in-process
// frontend through the backend, the switch (learning, VLAN 10) and the
// other port's backend into the second frontend's receive ring: kick
// eventfd, ring worker, TX, switch, RX, call eventfd. The mock drivers'
// own work (building chains, reading used rings) is included.
func BenchmarkForward(b *testing.B) {
	sw := vswitch.New(vswitch.Config{})
	_, sockA := testPort(b, sw, "a", 10)
	_, sockB := testPort(b, sw, "b", 10)
	forwardLoop(b, dialGuest(b, sockA), dialGuest(b, sockB))
}

// forwardLoop negotiates ga and gb and runs BenchmarkForward's loop
// from ga to gb.
func forwardLoop(b *testing.B, ga, gb *guest) {
	ga.mustNegotiate()
	gb.mustNegotiate()
	const batch = 32
	pkt := append(make([]byte, hdrLen), ethFrame(2, 1, 0)...)
	// Teach the switch where 2 is, so frames are forwarded by lookup.
	ga.postRx(1)
	gb.send(ethFrame(1, 2, 0))
	ga.recv(1)
	ga.tx.DiscardUsed()
	txHeads := make([]uint16, batch)
	rxHeads := make([]uint16, batch)
	b.SetBytes(batch * int64(len(pkt)-hdrLen))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		gb.rx.FreeAll()
		ga.tx.FreeAll()
		for i := range rxHeads {
			rxHeads[i] = gb.rx.AddChain(virtiotest.Buf{Len: 2048, Write: true})
		}
		gb.rx.Push(rxHeads...)
		for i := range txHeads {
			txHeads[i] = ga.tx.AddChain(virtiotest.Buf{Data: pkt})
		}
		ga.tx.Push(txHeads...)
		ga.kick[1].Signal()
		for got := 0; got < batch; {
			if n := gb.rx.DiscardUsed(); n > 0 {
				got += n
				continue
			}
			if !gb.waitCall(0) {
				b.Fatal("no frames in 10 s")
			}
		}
		for ga.tx.DiscardUsed() == 0 {
			ga.waitCall(1)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/frame")
}
