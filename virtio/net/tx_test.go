package vnet_test

import (
	"bytes"
	"errors"
	"runtime"
	"testing"

	"github.com/hvnet/hvnet/frame"
	"github.com/hvnet/hvnet/virtio"
	vnet "github.com/hvnet/hvnet/virtio/net"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

func txBed(t *testing.T, features uint64) (*bed, *recSink) {
	sink := &recSink{}
	return newBed(t, 1, features, 256, 1<<20, sink), sink
}

func TestTXSingleDescriptor(t *testing.T) {
	b, sink := txBed(t, baseFeat)
	f := ethFrame(60, 1)
	head := b.tx(0).AddChain(virtiotest.Buf{Data: append(hdr(vnet.Header{}), f...)})
	b.tx(0).Push(head)
	if more := b.dev.HandleKick(1); more {
		t.Fatal("HandleKick() = true with one frame")
	}
	if len(sink.frames) != 1 || !bytes.Equal(sink.frames[0].Data, f) {
		t.Fatalf("sink got %d frames, want the one sent", len(sink.frames))
	}
	u, ok := b.tx(0).PopUsed()
	if !ok || u.ID != uint32(head) || u.Len != 0 {
		t.Fatalf("used = %+v %v; want head %d len 0", u, ok, head)
	}
	if s := b.dev.Stats(); s.TxPackets != 1 || s.TxBytes != 60 {
		t.Fatalf("stats %+v", s)
	}
	if b.sig[1].n != 1 {
		t.Fatalf("signals = %d, want 1", b.sig[1].n)
	}
	if b.tx(0).AvailEvent() != 1 {
		t.Fatalf("avail_event = %d, want 1 (kick me at the next frame)", b.tx(0).AvailEvent())
	}
}

func TestTXMultiDescriptor(t *testing.T) {
	b, sink := txBed(t, baseFeat)
	f := ethFrame(3000, 2)
	head := b.tx(0).AddChain(
		virtiotest.Buf{Data: hdr(vnet.Header{})[:5]}, // header split too
		virtiotest.Buf{Data: append(hdr(vnet.Header{})[5:], f[:100]...)},
		virtiotest.Buf{Data: f[100:1500]},
		virtiotest.Buf{Data: f[1500:]},
	)
	b.tx(0).Push(head)
	b.dev.ProcessTX(0)
	if len(sink.frames) != 1 || !bytes.Equal(sink.frames[0].Data, f) {
		t.Fatalf("multi-descriptor frame not delivered intact")
	}
}

func TestTXIndirect(t *testing.T) {
	b, sink := txBed(t, baseFeat)
	f := ethFrame(200, 4)
	b.tx(0).Push(b.tx(0).AddIndirect(virtiotest.Buf{Data: hdr(vnet.Header{})}, virtiotest.Buf{Data: f[:50]}, virtiotest.Buf{Data: f[50:]}))
	b.dev.ProcessTX(0)
	if len(sink.frames) != 1 || !bytes.Equal(sink.frames[0].Data, f) {
		t.Fatal("indirect frame not delivered")
	}
}

func TestTXBatches(t *testing.T) {
	b, sink := txBed(t, baseFeat)
	const n = 100
	for i := 0; i < n; i++ {
		b.tx(0).Push(b.tx(0).AddChain(virtiotest.Buf{Data: append(hdr(vnet.Header{}), ethFrame(64, byte(i))...)}))
	}
	b.dev.ProcessTX(0)
	if len(sink.frames) != n || sink.batches != 2 {
		t.Fatalf("%d frames in %d batches, want %d in 2", len(sink.frames), sink.batches, n)
	}
	if len(b.tx(0).DrainUsed()) != n {
		t.Fatal("not every chain returned")
	}
	if b.tx(0).AvailEvent() != n {
		t.Fatalf("avail_event = %d, want %d", b.tx(0).AvailEvent(), n)
	}
}

func TestTXArenaFull(t *testing.T) {
	// Frames spanning descriptors are copied into a 256 KiB arena; a full
	// arena delivers the batch early, and nothing is lost.
	sink := &recSink{}
	b := newBed(t, 1, baseFeat|vnet.Features(vnet.FHostTSO4, vnet.FCsum), 64, 4<<20, sink)
	const n = 8
	big := ethFrame(60000, 9)
	h := hdr(vnet.Header{Flags: frame.NeedsCsum, GSOType: frame.GSOTCPv4, HdrLen: 54, GSOSize: 1448, CsumStart: 34, CsumOffset: 16})
	for i := 0; i < n; i++ {
		b.tx(0).Push(b.tx(0).AddChain(virtiotest.Buf{Data: h}, virtiotest.Buf{Data: big[:30000]}, virtiotest.Buf{Data: big[30000:]}))
	}
	b.dev.ProcessTX(0)
	if len(sink.frames) != n || sink.batches < 2 {
		t.Fatalf("%d frames in %d batches, want %d in several", len(sink.frames), sink.batches, n)
	}
	for _, f := range sink.frames {
		if !bytes.Equal(f.Data, big) || f.Off.GSOType != frame.GSOTCPv4 || f.Off.GSOSize != 1448 {
			t.Fatal("GSO frame or its offload corrupted")
		}
	}
}

// expectTXDrop sends one chain and expects it dropped and counted in stat.
func expectTXDrop(t *testing.T, b *bed, sink *recSink, stat func(vnet.Stats) uint64, bufs ...virtiotest.Buf) {
	t.Helper()
	head := b.tx(0).AddChain(bufs...)
	b.tx(0).Push(head)
	before := stat(b.dev.Stats())
	b.dev.ProcessTX(0)
	if len(sink.frames) != 0 {
		t.Fatalf("bad chain delivered %d frames", len(sink.frames))
	}
	if stat(b.dev.Stats()) != before+1 {
		t.Fatalf("drop not counted: %+v", b.dev.Stats())
	}
	u, ok := b.tx(0).PopUsed()
	if !ok || u.ID != uint32(head) || u.Len != 0 {
		t.Fatalf("dropped chain not returned: %+v %v", u, ok)
	}
	if len(b.faults) != 0 {
		t.Fatalf("a bad chain faulted the device: %v", b.faults)
	}
}

func badChain(s vnet.Stats) uint64  { return s.TxDropBadChain }
func badHeader(s vnet.Stats) uint64 { return s.TxDropBadHeader }

func TestTXAddressOutsideMemory(t *testing.T) {
	b, sink := txBed(t, baseFeat)
	expectTXDrop(t, b, sink, badChain, virtiotest.Buf{Data: hdr(vnet.Header{})}, virtiotest.Buf{Addr: 1 << 40, Len: 64})
}

func TestTXWriteOnlyBuffer(t *testing.T) {
	b, sink := txBed(t, baseFeat)
	expectTXDrop(t, b, sink, badChain, virtiotest.Buf{Len: 100, Write: true})
	expectTXDrop(t, b, sink, badChain, virtiotest.Buf{Data: append(hdr(vnet.Header{}), ethFrame(60, 0)...)}, virtiotest.Buf{Len: 10, Write: true})
}

func TestTXEmptyFrame(t *testing.T) {
	b, sink := txBed(t, baseFeat)
	runt := func(s vnet.Stats) uint64 { return s.TxDropRunt }
	expectTXDrop(t, b, sink, runt, virtiotest.Buf{Len: 0})
	expectTXDrop(t, b, sink, runt, virtiotest.Buf{Data: hdr(vnet.Header{})})
	expectTXDrop(t, b, sink, runt, virtiotest.Buf{Data: append(hdr(vnet.Header{}), ethFrame(13, 0)...)})
}

func TestTXBigFrame(t *testing.T) {
	sink := &recSink{}
	b := newBed(t, 1, baseFeat, 8, 1<<20, sink)
	big := make([]byte, vnet.HdrLen+vnet.MaxFrameLen+1)
	expectTXDrop(t, b, sink, func(s vnet.Stats) uint64 { return s.TxDropOversize }, virtiotest.Buf{Data: big})
}

func TestTXLengthOverflow(t *testing.T) {
	// Lengths whose sum passes 4 GiB: caught before any copy. The buffers
	// are outside memory, so the chain fails first on the address check;
	// the overflow itself is covered in the virtio package.
	b, sink := txBed(t, baseFeat)
	expectTXDrop(t, b, sink, badChain, virtiotest.Buf{Addr: virtiotest.DefaultBase, Len: 0xffff_ffff}, virtiotest.Buf{Addr: virtiotest.DefaultBase, Len: 0xffff_ffff})
}

func TestTXBadHeader(t *testing.T) {
	for _, tc := range []struct {
		name     string
		features uint64
		h        vnet.Header
	}{
		{"needs csum without CSUM", baseFeat, vnet.Header{Flags: frame.NeedsCsum, CsumStart: 14, CsumOffset: 6}},
		{"csum outside frame", baseFeat | vnet.Features(vnet.FCsum), vnet.Header{Flags: frame.NeedsCsum, CsumStart: 90, CsumOffset: 16}},
		{"unknown flags", baseFeat | vnet.Features(vnet.FCsum), vnet.Header{Flags: 0x40}},
		{"data valid on TX", baseFeat | vnet.Features(vnet.FCsum), vnet.Header{Flags: frame.DataValid}},
		{"TSO4 not negotiated", baseFeat, vnet.Header{GSOType: frame.GSOTCPv4, GSOSize: 1448}},
		{"TSO6 not negotiated", baseFeat | vnet.Features(vnet.FHostTSO4), vnet.Header{GSOType: frame.GSOTCPv6, GSOSize: 1448}},
		{"UFO not negotiated", baseFeat, vnet.Header{GSOType: frame.GSOUDP, GSOSize: 1448}},
		{"ECN not negotiated", baseFeat | vnet.Features(vnet.FHostTSO4), vnet.Header{GSOType: frame.GSOTCPv4 | frame.GSOECN, GSOSize: 1448}},
		{"gso size zero", baseFeat | vnet.Features(vnet.FHostTSO4), vnet.Header{GSOType: frame.GSOTCPv4}},
		{"unknown gso", baseFeat | vnet.Features(vnet.FHostTSO4), vnet.Header{GSOType: 2, GSOSize: 100}},
		{"hdr_len past frame", baseFeat | vnet.Features(vnet.FHostTSO4), vnet.Header{GSOType: frame.GSOTCPv4, GSOSize: 100, HdrLen: 101}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &recSink{}
			b := newBed(t, 1, tc.features, 8, 1<<20, sink)
			expectTXDrop(t, b, sink, badHeader, virtiotest.Buf{Data: append(hdr(tc.h), ethFrame(100, 0)...)})
		})
	}
}

func TestCheckTXAccepts(t *testing.T) {
	all := vnet.Features(vnet.FCsum, vnet.FHostTSO4, vnet.FHostTSO6, vnet.FHostECN, vnet.FHostUFO, vnet.FHostUSO)
	for _, h := range []vnet.Header{
		{},
		{Flags: frame.NeedsCsum, CsumStart: 34, CsumOffset: 16},
		{Flags: frame.NeedsCsum, GSOType: frame.GSOTCPv4, GSOSize: 1448, HdrLen: 66, CsumStart: 34, CsumOffset: 16},
		{GSOType: frame.GSOTCPv6 | frame.GSOECN, GSOSize: 1428, HdrLen: 86},
		{GSOType: frame.GSOUDP, GSOSize: 1400},
		{GSOType: frame.GSOUDPL4, GSOSize: 1400},
	} {
		if err := vnet.CheckTX(h, 9000, all); err != nil {
			t.Errorf("CheckTX(%+v) = %v, want nil", h, err)
		}
	}
	var he *vnet.HeaderError
	if err := vnet.CheckTX(vnet.Header{GSOType: 9}, 100, all); !errors.As(err, &he) || he.FrameLen != 100 {
		t.Errorf("CheckTX(bad) = %v, want *HeaderError with the frame length", err)
	}
}

// expectTXFault builds a hostile ring with setup and expects a fault.
func expectTXFault(t *testing.T, setup func(d *virtiotest.Driver), check func(error) bool) {
	t.Helper()
	b, sink := txBed(t, baseFeat)
	setup(b.tx(0))
	b.dev.ProcessTX(0)
	if len(b.faults) != 1 {
		t.Fatalf("faults = %v, want one", b.faults)
	}
	var fe *vnet.FaultError
	if !errors.As(b.faults[0], &fe) || fe.Queue != 1 || !check(fe.Err) {
		t.Fatalf("fault = %v, want a FaultError on queue 1 of the right kind", b.faults[0])
	}
	if b.dev.Stats().Faults != 1 || len(sink.frames) != 0 {
		t.Fatalf("stats %+v, frames %d", b.dev.Stats(), len(sink.frames))
	}
	// Further kicks are ignored, not re-reported, and do not panic.
	b.dev.ProcessTX(0)
	if len(b.faults) != 1 {
		t.Fatalf("fault reported again: %v", b.faults)
	}
	// A reset and re-setup make the queue usable again.
	err := b.dev.ConfigureQueue(1, func(q *virtio.Queue) error {
		q.Reset()
		return b.tx(0).Configure(q, baseFeat)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestTXDescriptorLoop(t *testing.T) {
	expectTXFault(t, func(d *virtiotest.Driver) {
		buf := d.Alloc(64)
		d.SetDesc(0, virtiotest.Desc{Addr: buf, Len: 64, Flags: virtio.DescFNext, Next: 1})
		d.SetDesc(1, virtiotest.Desc{Addr: buf, Len: 64, Flags: virtio.DescFNext, Next: 0})
		d.Push(0)
	}, func(err error) bool { return errors.Is(err, virtio.ErrDescLoop) })
}

func TestTXNextOutOfRange(t *testing.T) {
	expectTXFault(t, func(d *virtiotest.Driver) {
		d.SetDesc(0, virtiotest.Desc{Addr: d.Alloc(64), Len: 64, Flags: virtio.DescFNext, Next: 4096})
		d.Push(0)
	}, func(err error) bool { var e *virtio.DescIndexError; return errors.As(err, &e) })
}

func TestTXAvailIdxJump(t *testing.T) {
	expectTXFault(t, func(d *virtiotest.Driver) { d.SetAvailIdx(257) }, func(err error) bool {
		var e *virtio.InvalidAvailIdxError
		return errors.As(err, &e) && e.QueueSize == 256 && e.Reported == 257
	})
}

func TestTXNestedIndirect(t *testing.T) {
	expectTXFault(t, func(d *virtiotest.Driver) {
		inner := d.Alloc(16)
		outer := d.Alloc(16)
		d.WriteDescAt(outer, 0, virtiotest.Desc{Addr: inner, Len: 16, Flags: virtio.DescFIndirect})
		d.SetDesc(0, virtiotest.Desc{Addr: outer, Len: 16, Flags: virtio.DescFIndirect})
		d.Push(0)
	}, func(err error) bool { return errors.Is(err, virtio.ErrNestedIndirect) })
}

// Devices made and released one after another (a vhost-user frontend that
// reconnects in a loop) share their transmit arenas instead of allocating
// 256 KiB a queue each, and a frame never carries bytes another device
// left in the arena: a short frame after a long one is exactly the short
// one.
func TestTXArenaReused(t *testing.T) {
	const devices = 32
	perDevice := func(release bool) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := range devices {
			sink := &recSink{}
			b := newBed(t, 1, baseFeat, 256, 64<<10, sink) // small beds: few garbage collections
			long, short := ethFrame(9000, byte(i)), ethFrame(60, byte(i)+100)
			for _, f := range [][]byte{long, short} {
				b.tx(0).Push(b.tx(0).AddChain(virtiotest.Buf{Data: append(hdr(vnet.Header{}), f...)}))
			}
			b.dev.ProcessTX(0)
			if len(sink.frames) != 2 || !bytes.Equal(sink.frames[0].Data, long) || !bytes.Equal(sink.frames[1].Data, short) {
				t.Fatalf("device %d: %d frames delivered, or not the ones sent", i, len(sink.frames))
			}
			if release {
				b.dev.Release()
			}
		}
		runtime.ReadMemStats(&after)
		return (after.TotalAlloc - before.TotalAlloc) / devices
	}
	kept, released := perDevice(false), perDevice(true)
	// Not released, each device's arena is garbage (256 KiB); released,
	// the next device takes it (a garbage collection may empty the pool
	// now and then, and the race detector drops a quarter of the arenas
	// given back).
	if kept < released+128<<10 {
		t.Errorf("bytes allocated per device: %d with arenas released, %d without: want 256 KiB saved", released, kept)
	}
}
