package vnet_test

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/hvnet/hvnet/virtio"
	vnet "github.com/hvnet/hvnet/virtio/net"
	"github.com/hvnet/hvnet/virtio/virtiotest"
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

// Receive's contract (vswitch.Port.Send's): it returns n and leaves in
// frames[:n] exactly the frames the guest got, in their order, whatever
// was skipped on the way: a frame too long for its buffer, a frame for a
// second queue pair whose ring is full. Before, it returned a count while
// the frames written were not a prefix, so the switch mirrored and counted
// the wrong ones.
func TestReceiveReportsWhatItWrote(t *testing.T) {
	feats := baseFeat | vnet.Features(vnet.FCtrlVQ, vnet.FMQ)
	b := newBed(t, 2, feats, 64, 1<<20, &recSink{})
	if ack := sendCtrl(t, b, vnet.CtrlMQ, vnet.CtrlMQVQPairsSet, le16(2)); ack != vnet.CtrlOK {
		t.Fatal("VQ_PAIRS_SET 2 refused")
	}
	// Which pair each flow (destination MAC) is steered to: one frame
	// each, with a buffer on both pairs.
	flow := func(i, n int) []byte {
		f := ethFrame(n, byte(i))
		f[0], f[5] = 0x02, byte(i)
		return f
	}
	var on [2][]int
	for i := 0; len(on[0]) < 6 || len(on[1]) < 3; i++ {
		if i == 200 {
			t.Fatalf("200 flows steered to pairs %d and %d only", len(on[0]), len(on[1]))
		}
		for p := range 2 {
			b.rx(p).Push(b.rx(p).AddChain(virtiotest.Buf{Len: 2048, Write: true}))
		}
		u0, u1 := b.rx(0).UsedIdx(), b.rx(1).UsedIdx()
		if n := b.dev.Receive([]vnet.Frame{{Data: flow(i, 60)}}); n != 1 {
			t.Fatalf("flow %d: %d written", i, n)
		}
		p := 0
		if b.rx(1).UsedIdx() != u1 {
			p = 1
		} else if b.rx(0).UsedIdx() == u0 {
			t.Fatalf("flow %d written nowhere", i)
		}
		on[p] = append(on[p], i)
	}
	for p := range 2 {
		for {
			if _, ok := b.rx(p).PopUsed(); !ok {
				break
			}
		}
	}
	// Pair 0's ring gets exactly 3 more buffers (one left over from the
	// probing on one of the pairs is used up first); pair 1 gets none.
	spare := [2]int{int(b.rx(0).AvailIdx() - b.rx(0).UsedIdx()), int(b.rx(1).AvailIdx() - b.rx(1).UsedIdx())}
	for range 3 {
		b.rx(0).Push(b.rx(0).AddChain(virtiotest.Buf{Len: 2048, Write: true}))
	}
	room0 := spare[0] + 3
	if spare[1] != 0 {
		// Fill pair 1 with frames until its ring is empty.
		fill := make([]vnet.Frame, spare[1])
		for k := range fill {
			fill[k] = vnet.Frame{Data: flow(on[1][0], 60)}
		}
		if n := b.dev.Receive(fill); n != spare[1] {
			t.Fatalf("filling pair 1: %d of %d", n, spare[1])
		}
	}
	// Pair 1 first (full), pair 0 too long, then room0+2 frames for pair
	// 0 (the last two find no buffer), pair 1 interleaved.
	in := []vnet.Frame{{Data: flow(on[1][0], 100)}, {Data: flow(on[0][0], 3000)}}
	var want [][]byte
	for k := range room0 + 2 {
		f := flow(on[0][1+k%5], 200+k)
		in = append(in, vnet.Frame{Data: f})
		if k < room0 {
			want = append(want, f)
		}
		if k%2 == 0 {
			in = append(in, vnet.Frame{Data: flow(on[1][1+k%2], 300+k)})
		}
	}
	all := append([]vnet.Frame(nil), in...)
	before := b.dev.Stats()
	n := b.dev.Receive(in)
	if n != len(want) {
		t.Fatalf("Receive = %d, want %d (pair 0's buffers)", n, len(want))
	}
	for k := range n {
		if !bytes.Equal(in[k].Data, want[k]) {
			t.Errorf("frames[%d] is a %d-byte frame, want the %d-byte one written %d-th", k, len(in[k].Data), len(want[k]), k)
		}
	}
	// What the guest got, in order, is frames[:n].
	for k := range n {
		u, ok := b.rx(0).PopUsed()
		if !ok {
			t.Fatalf("pair 0 has %d used buffers, want %d", k, n)
		}
		if got := b.rx(0).Bytes(b.rx(0).BufAddr(uint16(u.ID), 0).Addr, uint64(u.Len))[vnet.HdrLen:]; !bytes.Equal(got, in[k].Data) {
			t.Errorf("guest buffer %d holds a %d-byte frame, frames[%d] a %d-byte one", k, len(got), k, len(in[k].Data))
		}
	}
	// frames[n:] are the others, none lost or doubled.
	seen := map[*byte]int{}
	for _, f := range in {
		seen[&f.Data[0]]++
	}
	for _, f := range all {
		if seen[&f.Data[0]] != 1 {
			t.Errorf("a %d-byte frame is in the result %d times", len(f.Data), seen[&f.Data[0]])
		}
	}
	st := b.dev.Stats()
	if d := st.RxDropOversize - before.RxDropOversize; d != 1 {
		t.Errorf("rx_drop_oversize +%d, want 1", d)
	}
	if d := st.RxDropNoBuffer - before.RxDropNoBuffer; int(d) != len(all)-n-1 {
		t.Errorf("rx_drop_no_buffer +%d, want %d", d, len(all)-n-1)
	}
}

// A control-only device (a vhost-user NIC's VMM side) needs no Sink, runs
// its control queue, and never touches its data queues: a kick on a
// transmit queue takes nothing, Receive refuses and counts.
func TestControlOnly(t *testing.T) {
	dev, err := vnet.New(vnet.Config{QueuePairs: 1, ControlOnly: true})
	if err != nil {
		t.Fatalf("New(ControlOnly, no Sink) = %v", err)
	}
	// A bed's guest memory and mock drivers, its rings configured on the
	// control-only device too and driven against it.
	full := newBed(t, 1, baseFeat|vnet.Features(vnet.FCtrlVQ, vnet.FCtrlRx), 256, 1<<20, &recSink{})
	dev.SetMemory(full.mem)
	if err := dev.SetFeatures(baseFeat | vnet.Features(vnet.FCtrlVQ, vnet.FCtrlRx)); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		drv := full.drv[i]
		if err := dev.ConfigureQueue(i, func(q *virtio.Queue) error {
			return drv.Configure(q, baseFeat|vnet.Features(vnet.FCtrlVQ, vnet.FCtrlRx))
		}); err != nil {
			t.Fatal(err)
		}
	}
	tx := full.tx(0)
	tx.Push(tx.AddChain(virtiotest.Buf{Data: append(hdr(vnet.Header{}), ethFrame(100, 1)...)}))
	if more := dev.HandleKick(1); more {
		t.Error("HandleKick on a transmit queue asked to be called again")
	}
	if st := dev.Watch(1); st.Taken != 0 {
		t.Errorf("the transmit queue's chain was taken (%+v)", st)
	}
	rx := full.rx(0)
	rx.Push(rx.AddChain(virtiotest.Buf{Len: 1526, Write: true}))
	if n := dev.Receive([]vnet.Frame{{Data: ethFrame(100, 2)}}); n != 0 {
		t.Errorf("Receive on a control-only device = %d, want 0", n)
	}
	if s := dev.Stats(); s.RxDropNoBuffer != 1 || s.TxPackets != 0 {
		t.Errorf("stats %+v, want one refused frame and nothing sent", s)
	}
	// The control queue works: RX promiscuous on, acknowledged.
	ctrl := full.ctrl()
	head := ctrl.AddChain(virtiotest.Buf{Data: []byte{0, 0, 1}}, virtiotest.Buf{Len: 1, Write: true})
	ctrl.Push(head)
	if dev.ProcessCtrl() != 1 {
		t.Fatal("the control command was not processed")
	}
	if s := dev.Stats(); s.CtrlOK != 1 {
		t.Errorf("CtrlOK = %d, want 1", s.CtrlOK)
	}
}

func TestFeatureNames(t *testing.T) {
	got := strings.Join(vnet.FeatureNames(vnet.Features(vnet.FCsum, vnet.FMrgRxbuf, vnet.FMQ, 32, 61)), " ")
	if got != "CSUM MRG_RXBUF MQ VERSION_1 bit61" {
		t.Errorf("FeatureNames = %q", got)
	}
}
