package vnet_test

import (
	"sync"
	"testing"

	"hvnet/virtio"
	vnet "hvnet/virtio/net"
	"hvnet/virtio/virtiotest"
)

func TestNewRejects(t *testing.T) {
	for _, cfg := range []vnet.Config{
		{QueuePairs: 0, Sink: &recSink{}},
		{QueuePairs: 1},
		{QueuePairs: 1, Sink: &recSink{}, MaxQueueSize: 1000},
	} {
		if _, err := vnet.New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	d, _ := vnet.New(vnet.Config{QueuePairs: 1, Sink: &recSink{}})
	if err := d.SetFeatures(0); err == nil {
		t.Error("SetFeatures without VERSION_1 succeeded")
	}
	if err := d.ConfigureQueue(3, func(*virtio.Queue) error { return nil }); err == nil {
		t.Error("ConfigureQueue(3) on a one-pair device succeeded")
	}
}

func TestMultiqueue(t *testing.T) {
	sink := &recSink{}
	feats := baseFeat | vnet.Features(vnet.FCtrlVQ, vnet.FMQ)
	b := newBed(t, 2, feats, 64, 1<<20, sink)
	if b.dev.NumQueues() != 5 || b.dev.CtrlQueue() != 4 {
		t.Fatalf("queues %d ctrl %d", b.dev.NumQueues(), b.dev.CtrlQueue())
	}
	// TX on the second pair.
	b.tx(1).Push(b.tx(1).AddChain(virtiotest.Buf{Data: append(hdr(vnet.Header{}), ethFrame(60, 1)...)}))
	b.dev.HandleKick(3)
	if len(sink.frames) != 1 {
		t.Fatal("TX on pair 1 not delivered")
	}
	// Before VQ_PAIRS_SET everything lands on pair 0.
	for p := 0; p < 2; p++ {
		for i := 0; i < 32; i++ {
			b.rx(p).Push(b.rx(p).AddChain(virtiotest.Buf{Len: 2048, Write: true}))
		}
	}
	flows := make([]vnet.Frame, 16)
	for i := range flows {
		f := ethFrame(100, 0)
		f[5] = byte(i) // a different destination MAC per flow
		flows[i] = vnet.Frame{Data: f}
	}
	if n := b.dev.Receive(flows[:4]); n != 4 || b.rx(1).UsedIdx() != 0 {
		t.Fatalf("accepted %d, pair 1 used %d", n, b.rx(1).UsedIdx())
	}
	if ack := sendCtrl(t, b, vnet.CtrlMQ, vnet.CtrlMQVQPairsSet, le16(2)); ack != vnet.CtrlOK {
		t.Fatal("VQ_PAIRS_SET 2 refused")
	}
	if n := b.dev.Receive(flows); n != 16 {
		t.Fatalf("accepted %d of 16", n)
	}
	if b.rx(0).UsedIdx() == 4 || b.rx(1).UsedIdx() == 0 {
		t.Fatalf("flows not spread: pair 0 used %d, pair 1 used %d", b.rx(0).UsedIdx()-4, b.rx(1).UsedIdx())
	}
	// One flow stays on one queue.
	before0, before1 := b.rx(0).UsedIdx(), b.rx(1).UsedIdx()
	b.dev.Receive([]vnet.Frame{flows[3], flows[3], flows[3]})
	if d0, d1 := b.rx(0).UsedIdx()-before0, b.rx(1).UsedIdx()-before1; d0 != 0 && d1 != 0 {
		t.Fatalf("one flow split across queues: %d, %d", d0, d1)
	}
}

func TestReset(t *testing.T) {
	sink := &recSink{}
	b := newBed(t, 1, baseFeat|vnet.Features(vnet.FCtrlVQ, vnet.FCtrlRx), 16, 1<<18, sink)
	sendCtrl(t, b, vnet.CtrlRx, vnet.CtrlRxPromisc, []byte{0})
	b.tx(0).SetAvailIdx(100) // break it
	b.dev.ProcessTX(0)
	b.dev.Reset()
	if b.dev.Features() != 0 || !b.dev.Filter().Promisc || b.dev.ActivePairs() != 1 {
		t.Fatal("Reset left state behind")
	}
	// Queues are disabled after reset: kicks and frames are ignored.
	b.dev.ProcessTX(0)
	if n := b.dev.Receive([]vnet.Frame{{Data: ethFrame(60, 0)}}); n != 0 {
		t.Fatal("frame accepted by a reset device")
	}
	// Renegotiate and reconfigure: works again.
	if err := b.dev.SetFeatures(baseFeat); err != nil {
		t.Fatal(err)
	}
	fresh := virtiotest.NewIn(b.mem, b.tx(0).Bytes(b.tx(0).Base, 1<<18), b.tx(0).Base, 16)
	if err := b.dev.ConfigureQueue(1, func(q *virtio.Queue) error { return fresh.Configure(q, baseFeat) }); err != nil {
		t.Fatal(err)
	}
	fresh.SetAvailIdx(0)
	fresh.Push(fresh.AddChain(virtiotest.Buf{Data: append(hdr(vnet.Header{}), ethFrame(60, 1)...)}))
	b.dev.ProcessTX(0)
	if len(sink.frames) != 1 {
		t.Fatal("TX after reset did not work")
	}
}

func TestSetMemoryRemap(t *testing.T) {
	b := newBed(t, 1, baseFeat, 16, 1<<18, &recSink{})
	small, _ := virtio.NewMemory(virtio.Region{GPA: virtiotest.DefaultBase, Data: make([]byte, 4096)})
	b.dev.SetMemory(small) // no queue's rings fit in it any more
	if len(b.faults) != 3 {
		t.Fatalf("faults after shrinking memory = %v, want 3", b.faults)
	}
	if n := b.dev.Receive([]vnet.Frame{{Data: ethFrame(60, 0)}}); n != 0 {
		t.Fatal("frame accepted on a queue whose memory went away")
	}
}

// TestConcurrentTXRX runs guest TX on one goroutine while another delivers
// frames to the same pair's RX queue (run with -race).
func TestConcurrentTXRX(t *testing.T) {
	var delivered int
	sink := vnet.SinkFunc(func(fs []vnet.Frame) { delivered += len(fs) })
	b := newBed(t, 1, baseFeat|vnet.Features(vnet.FMrgRxbuf), 64, 1<<20, sink)
	const rounds = 200
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		d := b.tx(0)
		head := d.AddChain(virtiotest.Buf{Data: append(hdr(vnet.Header{}), ethFrame(60, 1)...)})
		for i := 0; i < rounds; i++ {
			d.Push(head)
			b.dev.ProcessTX(0)
			d.DiscardUsed()
		}
	}()
	received := 0
	go func() {
		defer wg.Done()
		d := b.rx(0)
		head := d.AddChain(virtiotest.Buf{Len: 2048, Write: true})
		fs := []vnet.Frame{{Data: ethFrame(100, 2)}}
		for i := 0; i < rounds; i++ {
			d.Push(head)
			received += b.dev.Receive(fs)
			d.DiscardUsed()
		}
	}()
	wg.Wait()
	if delivered != rounds || received != rounds {
		t.Fatalf("delivered %d, received %d, want %d each", delivered, received, rounds)
	}
}

func TestNoAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counting")
	}
	dst := newBed(t, 1, baseFeat|vnet.Features(vnet.FMrgRxbuf), 256, 1<<20, &recSink{})
	fwd := vnet.SinkFunc(func(fs []vnet.Frame) { dst.dev.Receive(fs) })
	src := newBed(t, 1, baseFeat, 256, 1<<20, fwd)
	tx := src.tx(0)
	var txHeads []uint16
	for i := 0; i < 32; i++ {
		txHeads = append(txHeads, tx.AddChain(virtiotest.Buf{Data: hdr(vnet.Header{})}, virtiotest.Buf{Data: ethFrame(64, 1)}))
	}
	rx := dst.rx(0)
	var rxHeads []uint16
	for i := 0; i < 32; i++ {
		rxHeads = append(rxHeads, rx.AddChain(virtiotest.Buf{Len: 2048, Write: true}))
	}
	allocs := testing.AllocsPerRun(100, func() {
		tx.Push(txHeads...)
		rx.Push(rxHeads...)
		src.dev.ProcessTX(0)
		tx.DiscardUsed()
		rx.DiscardUsed()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per 32-frame round, want 0", allocs)
	}
	if s := dst.dev.Stats(); s.RxPackets != 101*32 {
		t.Fatalf("received %d frames, want %d", s.RxPackets, 101*32)
	}
}
