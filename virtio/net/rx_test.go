package vnet_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/hvnet/hvnet/frame"
	"github.com/hvnet/hvnet/virtio"
	vnet "github.com/hvnet/hvnet/virtio/net"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

func rxBed(t *testing.T, features uint64) *bed {
	return newBed(t, 1, features, 256, 1<<20, &recSink{})
}

// readRX returns the header and frame the device wrote into the chain at
// head (one descriptor) with used length n.
func readRX(b *bed, head uint16, n uint32) (vnet.Header, []byte) {
	d := b.rx(0).BufAddr(head, 0)
	buf := b.rx(0).Bytes(d.Addr, uint64(n))
	h, _ := vnet.DecodeHeader(buf)
	return h, buf[vnet.HdrLen:]
}

func TestRXSingleBuffer(t *testing.T) {
	b := rxBed(t, baseFeat)
	head := b.rx(0).AddChain(virtiotest.Buf{Len: 1526, Write: true})
	b.rx(0).Push(head)
	f := ethFrame(100, 5)
	if n := b.dev.Receive([]vnet.Frame{{Data: f}}); n != 1 {
		t.Fatalf("Receive() = %d, want 1", n)
	}
	u, ok := b.rx(0).PopUsed()
	if !ok || u.ID != uint32(head) || u.Len != 112 {
		t.Fatalf("used %+v %v, want head %d len 112", u, ok, head)
	}
	h, got := readRX(b, head, u.Len)
	if h != (vnet.Header{NumBuffers: 1}) || !bytes.Equal(got, f) {
		t.Fatalf("header %+v, frame intact %v", h, bytes.Equal(got, f))
	}
	if s := b.dev.Stats(); s.RxPackets != 1 || s.RxBytes != 100 || b.sig[0].n != 1 {
		t.Fatalf("stats %+v, signals %d", s, b.sig[0].n)
	}
}

func TestRXMultiDescriptorChain(t *testing.T) {
	// Without MRG_RXBUF, one chain of several buffers takes a big frame,
	// the header split across buffers.
	b := rxBed(t, baseFeat)
	head := b.rx(0).AddChain(virtiotest.Buf{Len: 5, Write: true}, virtiotest.Buf{Len: 4000, Write: true}, virtiotest.Buf{Len: 4000, Write: true})
	b.rx(0).Push(head)
	f := ethFrame(6000, 6)
	if n := b.dev.Receive([]vnet.Frame{{Data: f}}); n != 1 {
		t.Fatalf("Receive() = %d", n)
	}
	u, _ := b.rx(0).PopUsed()
	got := make([]byte, u.Len)
	gpa := []uint64{b.rx(0).BufAddr(head, 0).Addr, b.rx(0).BufAddr(head, 1).Addr, b.rx(0).BufAddr(head, 2).Addr}
	copy(got, b.rx(0).Bytes(gpa[0], 5))
	copy(got[5:], b.rx(0).Bytes(gpa[1], 4000))
	copy(got[4005:], b.rx(0).Bytes(gpa[2], uint64(u.Len)-4005))
	if u.Len != 6012 || !bytes.Equal(got[vnet.HdrLen:], f) {
		t.Fatalf("used len %d, frame intact %v", u.Len, bytes.Equal(got[vnet.HdrLen:], f))
	}
}

func TestRXMergeable(t *testing.T) {
	b := rxBed(t, baseFeat|vnet.Features(vnet.FMrgRxbuf))
	var heads []uint16
	for i := 0; i < 4; i++ {
		h := b.rx(0).AddChain(virtiotest.Buf{Len: 1000, Write: true})
		heads = append(heads, h)
		b.rx(0).Push(h)
	}
	f := ethFrame(2500, 7) // 12 + 2500 = 2512: three buffers
	if n := b.dev.Receive([]vnet.Frame{{Data: f}}); n != 1 {
		t.Fatalf("Receive() = %d", n)
	}
	used := b.rx(0).DrainUsed()
	want := []virtiotest.Used{{ID: uint32(heads[0]), Len: 1000}, {ID: uint32(heads[1]), Len: 1000}, {ID: uint32(heads[2]), Len: 512}}
	if len(used) != 3 || used[0] != want[0] || used[1] != want[1] || used[2] != want[2] {
		t.Fatalf("used = %+v, want %+v", used, want)
	}
	var got []byte
	for i, u := range used {
		got = append(got, b.rx(0).Bytes(b.rx(0).BufAddr(heads[i], 0).Addr, uint64(u.Len))...)
	}
	h, _ := vnet.DecodeHeader(got)
	if h.NumBuffers != 3 || !bytes.Equal(got[vnet.HdrLen:], f) {
		t.Fatalf("num_buffers = %d (want 3), frame intact %v", h.NumBuffers, bytes.Equal(got[vnet.HdrLen:], f))
	}
	// The fourth buffer is left for the next frame: a small one.
	if n := b.dev.Receive([]vnet.Frame{{Data: ethFrame(60, 1)}}); n != 1 {
		t.Fatal("small frame not received into the remaining buffer")
	}
	u, _ := b.rx(0).PopUsed()
	if hh, _ := readRX(b, heads[3], u.Len); hh.NumBuffers != 1 || u.Len != 72 {
		t.Fatalf("num_buffers %d len %d", hh.NumBuffers, u.Len)
	}
}

func TestRXMergeableHeaderSplit(t *testing.T) {
	// num_buffers straddles two descriptors of the first chain.
	b := rxBed(t, baseFeat|vnet.Features(vnet.FMrgRxbuf))
	h0 := b.rx(0).AddChain(virtiotest.Buf{Len: 11, Write: true}, virtiotest.Buf{Len: 100, Write: true})
	h1 := b.rx(0).AddChain(virtiotest.Buf{Len: 100, Write: true})
	b.rx(0).Push(h0, h1)
	if n := b.dev.Receive([]vnet.Frame{{Data: ethFrame(150, 1)}}); n != 1 {
		t.Fatal("frame not received")
	}
	lo := b.rx(0).Bytes(b.rx(0).BufAddr(h0, 0).Addr+10, 1)[0]
	hi := b.rx(0).Bytes(b.rx(0).BufAddr(h0, 1).Addr, 1)[0]
	if lo != 2 || hi != 0 {
		t.Fatalf("num_buffers bytes = %d, %d; want 2, 0", lo, hi)
	}
}

func TestRXNoBuffer(t *testing.T) {
	b := rxBed(t, baseFeat)
	fs := []vnet.Frame{{Data: ethFrame(60, 1)}, {Data: ethFrame(60, 2)}}
	if n := b.dev.Receive(fs); n != 0 {
		t.Fatalf("Receive() with no buffers = %d", n)
	}
	if s := b.dev.Stats(); s.RxDropNoBuffer != 2 {
		t.Fatalf("RxDropNoBuffer = %d, want 2", s.RxDropNoBuffer)
	}
	if b.rx(0).UsedIdx() != 0 || b.sig[0].n != 0 {
		t.Fatal("used ring touched or driver signalled with nothing used")
	}
}

func TestRXMergeableRunsOut(t *testing.T) {
	b := rxBed(t, baseFeat|vnet.Features(vnet.FMrgRxbuf))
	a := b.rx(0).AddChain(virtiotest.Buf{Len: 200, Write: true})
	c := b.rx(0).AddChain(virtiotest.Buf{Len: 200, Write: true})
	b.rx(0).Push(a, c)
	if n := b.dev.Receive([]vnet.Frame{{Data: ethFrame(1000, 1)}}); n != 0 {
		t.Fatal("frame accepted without room")
	}
	if b.rx(0).UsedIdx() != 0 || b.dev.Stats().RxDropNoBuffer != 1 {
		t.Fatalf("used idx %d, stats %+v", b.rx(0).UsedIdx(), b.dev.Stats())
	}
	// The buffers were given back: a frame that fits uses the first.
	if n := b.dev.Receive([]vnet.Frame{{Data: ethFrame(100, 1)}}); n != 1 {
		t.Fatal("small frame not received")
	}
	if u, _ := b.rx(0).PopUsed(); u.ID != uint32(a) {
		t.Fatalf("used head %d, want %d", u.ID, a)
	}
}

func TestRXReadOnlyBuffer(t *testing.T) {
	for _, mrg := range []bool{false, true} {
		f := uint64(baseFeat)
		if mrg {
			f |= vnet.Features(vnet.FMrgRxbuf)
		}
		b := rxBed(t, f)
		head := b.rx(0).AddChain(virtiotest.Buf{Len: 2000})
		b.rx(0).Push(head)
		if n := b.dev.Receive([]vnet.Frame{{Data: ethFrame(60, 1)}}); n != 0 {
			t.Fatalf("mrg=%v: frame written into a read-only buffer", mrg)
		}
		u, ok := b.rx(0).PopUsed()
		if !ok || u.ID != uint32(head) || u.Len != 0 || b.dev.Stats().RxDropBadChain != 1 {
			t.Fatalf("mrg=%v: used %+v %v, stats %+v", mrg, u, ok, b.dev.Stats())
		}
		if len(b.faults) != 0 {
			t.Fatalf("read-only RX buffer faulted the device")
		}
	}
}

func TestRXBufferSmallerThanHeader(t *testing.T) {
	b := rxBed(t, baseFeat|vnet.Features(vnet.FMrgRxbuf))
	b.rx(0).Push(b.rx(0).AddChain(virtiotest.Buf{Len: 8, Write: true}))
	if n := b.dev.Receive([]vnet.Frame{{Data: ethFrame(60, 1)}}); n != 0 || b.dev.Stats().RxDropBadChain != 1 {
		t.Fatalf("accepted %d, stats %+v", n, b.dev.Stats())
	}
}

func TestRXMergeableBadChainMidFrame(t *testing.T) {
	b := rxBed(t, baseFeat|vnet.Features(vnet.FMrgRxbuf))
	a := b.rx(0).AddChain(virtiotest.Buf{Len: 100, Write: true})
	bad := b.rx(0).AddChain(virtiotest.Buf{Len: 100})
	b.rx(0).Push(a, bad)
	if n := b.dev.Receive([]vnet.Frame{{Data: ethFrame(150, 1)}}); n != 0 {
		t.Fatal("frame accepted through a bad chain")
	}
	used := b.rx(0).DrainUsed()
	if len(used) != 2 || used[0].Len != 0 || used[1].Len != 0 {
		t.Fatalf("used = %+v, want both chains back empty", used)
	}
}

func TestRXFrameTooBigForBuffer(t *testing.T) {
	b := rxBed(t, baseFeat)
	head := b.rx(0).AddChain(virtiotest.Buf{Len: 1526, Write: true})
	b.rx(0).Push(head)
	fs := []vnet.Frame{{Data: ethFrame(9000, 1)}, {Data: ethFrame(60, 2)}}
	if n := b.dev.Receive(fs); n != 1 {
		t.Fatalf("Receive() = %d, want 1 (the small frame)", n)
	}
	if s := b.dev.Stats(); s.RxDropOversize != 1 {
		t.Fatalf("RxDropOversize = %d", s.RxDropOversize)
	}
	if u, _ := b.rx(0).PopUsed(); u.ID != uint32(head) || u.Len != 72 {
		t.Fatalf("used %+v", u)
	}
	if n := b.dev.Receive([]vnet.Frame{{Data: make([]byte, vnet.MaxFrameLen+1)}}); n != 0 {
		t.Fatal("frame over MaxFrameLen accepted")
	}
}

func TestRXOffload(t *testing.T) {
	gso := frame.Offload{Flags: frame.NeedsCsum, GSOType: frame.GSOTCPv4, HdrLen: 66, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}
	t.Run("not negotiated", func(t *testing.T) {
		b := rxBed(t, baseFeat|vnet.Features(vnet.FMrgRxbuf))
		b.rx(0).Push(b.rx(0).AddChain(virtiotest.Buf{Len: 65600, Write: true}))
		fs := []vnet.Frame{{Data: ethFrame(30000, 1), Off: gso}, {Data: ethFrame(100, 1), Off: frame.Offload{Flags: frame.NeedsCsum}}}
		if n := b.dev.Receive(fs); n != 0 || b.dev.Stats().RxDropOffload != 2 {
			t.Fatalf("accepted %d, stats %+v", n, b.dev.Stats())
		}
	})
	t.Run("negotiated", func(t *testing.T) {
		b := rxBed(t, baseFeat|vnet.Features(vnet.FGuestCsum, vnet.FGuestTSO4, vnet.FCtrlGuestOffload))
		head := b.rx(0).AddChain(virtiotest.Buf{Len: 65600, Write: true})
		b.rx(0).Push(head)
		if n := b.dev.Receive([]vnet.Frame{{Data: ethFrame(30000, 1), Off: gso}}); n != 1 {
			t.Fatal("GSO frame refused")
		}
		u, _ := b.rx(0).PopUsed()
		h, _ := readRX(b, head, u.Len)
		want := vnet.Header{Flags: gso.Flags, GSOType: gso.GSOType, HdrLen: gso.HdrLen, GSOSize: gso.GSOSize, CsumStart: gso.CsumStart, CsumOffset: gso.CsumOffset, NumBuffers: 1}
		if h != want {
			t.Fatalf("header %+v, want %+v", h, want)
		}
		// The driver turns TSO4 off through the control queue.
		sendCtrl(t, b, vnet.CtrlGuestOffloads, vnet.CtrlGuestOffloadsSet, le64(vnet.Features(vnet.FGuestCsum)))
		b.rx(0).Push(b.rx(0).AddChain(virtiotest.Buf{Len: 65600, Write: true}))
		if n := b.dev.Receive([]vnet.Frame{{Data: ethFrame(30000, 1), Off: gso}}); n != 0 {
			t.Fatal("GSO frame accepted after the guest disabled TSO4")
		}
	})
}

func TestRXFault(t *testing.T) {
	b := rxBed(t, baseFeat)
	b.rx(0).SetAvailIdx(1000)
	if n := b.dev.Receive([]vnet.Frame{{Data: ethFrame(60, 1)}}); n != 0 {
		t.Fatal("frame accepted on a broken ring")
	}
	var e *virtio.InvalidAvailIdxError
	if len(b.faults) != 1 || !errors.As(b.faults[0], &e) || e.Reported != 1000 {
		t.Fatalf("faults = %v", b.faults)
	}
}

func le16(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
