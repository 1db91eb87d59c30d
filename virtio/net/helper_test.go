package vnet_test

import (
	"testing"

	"github.com/hvnet/hvnet/virtio"
	vnet "github.com/hvnet/hvnet/virtio/net"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

const (
	fVersion1 = 1 << virtio.FVersion1
	fEventIdx = 1 << virtio.FEventIdx
	fIndirect = 1 << virtio.FIndirectDesc
	baseFeat  = fVersion1 | fEventIdx | fIndirect
)

// recSink records copies of the frames it is given.
type recSink struct {
	frames  []vnet.Frame
	batches int
}

func (s *recSink) Deliver(fs []vnet.Frame) {
	s.batches++
	for _, f := range fs {
		s.frames = append(s.frames, vnet.Frame{Data: append([]byte(nil), f.Data...), Off: f.Off})
	}
}

type countSig struct{ n int }

func (c *countSig) Signal() error { c.n++; return nil }

// bed is a Device with a mock driver on every queue, all in one guest memory.
type bed struct {
	t      testing.TB
	dev    *vnet.Device
	mem    *virtio.Memory
	drv    []*virtiotest.Driver
	sig    []*countSig
	faults []error
}

func newBed(t testing.TB, pairs int, features uint64, size uint16, perQueue int, sink vnet.Sink) *bed {
	t.Helper()
	return newBedIn(t, make([]byte, (2*pairs+1)*perQueue), pairs, features, size, perQueue, sink)
}

// newBedIn is newBed in caller-provided guest memory raw (for example an
// mmap'd memfd), which must hold (2*pairs+1)*perQueue bytes.
func newBedIn(t testing.TB, raw []byte, pairs int, features uint64, size uint16, perQueue int, sink vnet.Sink) *bed {
	t.Helper()
	b := &bed{t: t}
	nq := 2*pairs + 1
	mem, err := virtio.NewMemory(virtio.Region{GPA: virtiotest.DefaultBase, Data: raw})
	if err != nil {
		t.Fatal(err)
	}
	b.mem = mem
	b.dev, err = vnet.New(vnet.Config{
		QueuePairs:   pairs,
		MaxQueueSize: 1024,
		Sink:         sink,
		OnFault:      func(err error) { b.faults = append(b.faults, err) },
	})
	if err != nil {
		t.Fatal(err)
	}
	b.dev.SetMemory(mem)
	if err := b.dev.SetFeatures(features); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < nq; i++ {
		off := i * perQueue
		drv := virtiotest.NewIn(mem, raw[off:off+perQueue], virtiotest.DefaultBase+uint64(off), size)
		sig := &countSig{}
		b.drv = append(b.drv, drv)
		b.sig = append(b.sig, sig)
		err := b.dev.ConfigureQueue(i, func(q *virtio.Queue) error {
			q.SetSignaler(sig)
			return drv.Configure(q, features)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func (b *bed) rx(pair int) *virtiotest.Driver { return b.drv[2*pair] }
func (b *bed) tx(pair int) *virtiotest.Driver { return b.drv[2*pair+1] }
func (b *bed) ctrl() *virtiotest.Driver       { return b.drv[len(b.drv)-1] }

// ethFrame returns an Ethernet frame of n bytes with recognisable contents.
func ethFrame(n int, seed byte) []byte {
	f := make([]byte, n)
	for i := range f {
		f[i] = seed + byte(i*7)
	}
	if n >= 14 {
		f[12], f[13] = 0x08, 0x00
	}
	return f
}

func hdr(h vnet.Header) []byte {
	b := make([]byte, vnet.HdrLen)
	h.Encode(b)
	return b
}

// pushChain makes bufs available on d as one chain (in an indirect table
// when indirect) and returns the guest memory of each buffer, for a test
// to rewrite behind the device's back.
func pushChain(d *virtiotest.Driver, indirect bool, bufs []virtiotest.Buf) [][]byte {
	var head uint16
	if indirect {
		head = d.AddIndirect(bufs...)
	} else {
		head = d.AddChain(bufs...)
	}
	var mem [][]byte
	for i := range bufs {
		a := d.BufAddr(head, i)
		mem = append(mem, d.Bytes(a.Addr, uint64(a.Len)))
	}
	d.Push(head)
	return mem
}
