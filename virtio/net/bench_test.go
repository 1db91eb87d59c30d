package vnet_test

import (
	"fmt"
	"testing"

	"github.com/hvnet/hvnet/frame"
	vnet "github.com/hvnet/hvnet/virtio/net"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

// benchCase is one frame size of the dataplane benchmark.
type benchCase struct {
	name     string
	frameLen int
	frags    int    // TX buffers after the header buffer
	batch    int    // frames per iteration
	rxBuf    uint32 // RX buffer size (mergeable)
	size     uint16 // queue size
}

var benchCases = []benchCase{
	{name: "64B", frameLen: 64, frags: 1, batch: 64, rxBuf: 1536, size: 256},
	{name: "1514B", frameLen: 1514, frags: 1, batch: 64, rxBuf: 1536, size: 256},
	{name: "64KiB-GSO-1desc", frameLen: 65536, frags: 1, batch: 16, rxBuf: 4096, size: 1024},
	{name: "64KiB-GSO-16frags", frameLen: 65536, frags: 16, batch: 16, rxBuf: 4096, size: 1024},
}

// BenchmarkDataplane moves frames guest TX (mock driver) → vnet → a trivial
// sink calling another device's Receive → guest RX (mock driver), and, in
// the same run, copies the same bytes with copy() as the reference.
func BenchmarkDataplane(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name+"/virtio", func(b *testing.B) { benchVirtio(b, bc) })
		b.Run(bc.name+"/memcpy", func(b *testing.B) { benchMemcpy(b, bc) })
	}
}

func report(b *testing.B, bc benchCase) {
	frames := float64(b.N) * float64(bc.batch)
	sec := b.Elapsed().Seconds()
	b.ReportMetric(frames/sec/1e6, "Mpps")
	b.ReportMetric(frames*float64(bc.frameLen)*8/sec/1e9, "Gbit/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/frames, "ns/frame")
}

// fwdSink hands a device's frames to another device's receive queues; it
// reads the first 66 bytes of each (Ethernet, IPv4, TCP), as the switch
// reads a frame's headers, and takes the rest as a tail.
type fwdSink struct{ dst *vnet.Device }

func (s *fwdSink) HeadNeed([]byte, frame.Offload) int { return 66 }

func (s *fwdSink) Deliver(fs []vnet.Frame) {
	if n := s.dst.Receive(fs); n != len(fs) {
		panic(fmt.Sprintf("receive accepted %d of %d", n, len(fs)))
	}
}

func benchVirtio(b *testing.B, bc benchCase) {
	gso := bc.frameLen > 1514
	h := vnet.Header{}
	if gso {
		h = vnet.Header{Flags: frame.NeedsCsum, GSOType: frame.GSOTCPv4, HdrLen: 66, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}
	}
	perQueue := 4 << 20
	if gso {
		perQueue = 8 << 20
	}
	dst := newBed(b, 1, baseFeat|vnet.Features(vnet.FMrgRxbuf, vnet.FGuestCsum, vnet.FGuestTSO4), bc.size, perQueue, &recSink{})
	// The sink takes two-part frames as the switch does: headers copied,
	// the payload copied once, from the sender's buffer into the
	// receiver's.
	fwd := &fwdSink{dst: dst.dev}
	src := newBed(b, 1, baseFeat|vnet.Features(vnet.FCsum, vnet.FHostTSO4), bc.size, perQueue, fwd)

	tx, rx := src.tx(0), dst.rx(0)
	f := ethFrame(bc.frameLen, 1)
	var txHeads, rxHeads []uint16
	for i := 0; i < bc.batch; i++ {
		bufs := []virtiotest.Buf{{Data: hdr(h)}}
		step := bc.frameLen / bc.frags
		for off := 0; off < bc.frameLen; off += step {
			bufs = append(bufs, virtiotest.Buf{Data: f[off:min(off+step, bc.frameLen)]})
		}
		txHeads = append(txHeads, tx.AddChain(bufs...))
	}
	perFrame := (bc.frameLen + vnet.HdrLen + int(bc.rxBuf) - 1) / int(bc.rxBuf)
	for i := 0; i < bc.batch*perFrame; i++ {
		rxHeads = append(rxHeads, rx.AddChain(virtiotest.Buf{Len: bc.rxBuf, Write: true}))
	}
	b.ReportAllocs()
	b.SetBytes(int64(bc.batch * bc.frameLen))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rx.Push(rxHeads...)
		tx.Push(txHeads...)
		src.dev.ProcessTX(0)
		tx.DiscardUsed()
		rx.DiscardUsed()
	}
	b.StopTimer()
	report(b, bc)
	if s := dst.dev.Stats(); s.RxPackets != uint64(b.N*bc.batch) || len(src.faults)+len(dst.faults) != 0 {
		b.Fatalf("received %d of %d frames; stats %+v", s.RxPackets, b.N*bc.batch, s)
	}
}

func benchMemcpy(b *testing.B, bc benchCase) {
	src := make([][]byte, bc.batch)
	dst := make([][]byte, bc.batch)
	for i := range src {
		src[i] = ethFrame(bc.frameLen, byte(i))
		dst[i] = make([]byte, bc.frameLen)
	}
	b.ReportAllocs()
	b.SetBytes(int64(bc.batch * bc.frameLen))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range src {
			copy(dst[j], src[j])
		}
	}
	b.StopTimer()
	report(b, bc)
}
