package netport

import (
	"fmt"
	"testing"

	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/virtio"
	vnet "github.com/hvnet/hvnet/virtio/net"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

// benchSide is one guest of BenchmarkForwardPath: a device with a mock
// driver on its receive and transmit queues, attached to the switch.
type benchSide struct {
	dev    *vnet.Device
	rx, tx *virtiotest.Driver
	rxH    []uint16
	txH    []uint16
	faults int
}

const (
	benchBatch = 32   // frames per transmit burst: DPDK's burst
	benchRxBuf = 2048 // receive buffer, mergeable, as DPDK's virtio-user posts
	benchQueue = 1024
)

// newBenchSide builds one guest on sw: the driver offers what DPDK's
// virtio-user negotiates with the vhost-user backend (VERSION_1,
// EVENT_IDX, MRG_RXBUF, no offloads), and transmits one-descriptor
// chains (the virtio-net header pushed in front of the frame), as it does.
func newBenchSide(b *testing.B, sw *vswitch.Switch, name string, frameLen int, src, dst vswitch.MAC) *benchSide {
	const perQueue = 4 << 20
	raw := make([]byte, 3*perQueue)
	mem, err := virtio.NewMemory(virtio.Region{GPA: virtiotest.DefaultBase, Data: raw})
	if err != nil {
		b.Fatal(err)
	}
	s := &benchSide{}
	p := New(nil)
	dev, err := vnet.New(vnet.Config{QueuePairs: 1, MaxQueueSize: benchQueue, Sink: p,
		OnFault: func(error) { s.faults++ }})
	if err != nil {
		b.Fatal(err)
	}
	feat := uint64(1)<<virtio.FVersion1 | 1<<virtio.FEventIdx | vnet.Features(vnet.FMrgRxbuf)
	dev.SetMemory(mem)
	if err := dev.SetFeatures(feat); err != nil {
		b.Fatal(err)
	}
	var drv []*virtiotest.Driver
	for i := 0; i < 2; i++ {
		off := i * perQueue
		d := virtiotest.NewIn(mem, raw[off:off+perQueue], virtiotest.DefaultBase+uint64(off), benchQueue)
		drv = append(drv, d)
		if err := dev.ConfigureQueue(i, func(q *virtio.Queue) error {
			q.SetSignaler(nopSignal{})
			return d.Configure(q, feat)
		}); err != nil {
			b.Fatal(err)
		}
	}
	s.dev, s.rx, s.tx = dev, drv[0], drv[1]
	p.SetDevice(dev)
	h, err := sw.AddPort(vswitch.PortConfig{Name: name, Mode: vswitch.ModeAccess, PVID: 10}, p)
	if err != nil {
		b.Fatal(err)
	}
	p.SetHandle(h)
	chain := make([]byte, vnet.HdrLen+frameLen)
	f := chain[vnet.HdrLen:]
	copy(f[0:6], dst[:])
	copy(f[6:12], src[:])
	f[12], f[13] = 0x08, 0x00
	for i := 14; i < len(f); i++ {
		f[i] = byte(i)
	}
	for i := 0; i < benchBatch; i++ {
		s.txH = append(s.txH, s.tx.AddChain(virtiotest.Buf{Data: chain}))
		s.rxH = append(s.rxH, s.rx.AddChain(virtiotest.Buf{Len: benchRxBuf, Write: true}))
	}
	return s
}

type nopSignal struct{}

func (nopSignal) Signal() error { return nil }

// BenchmarkForwardPath is the forwarding core of `hvnet bench vhost`
// without its processes and eventfds: two guests (mock drivers) on one
// switch, each transmitting a burst of 32 frames per iteration that
// cross the switch into the other's receive buffers, the frames as DPDK
// testpmd's flowgen makes them (one source MAC on both sides, a
// destination never learned: every frame is flooded to the one other
// port; the MAC-move hold-down off, as the bench sets it). ns/frame is
// the whole path: the transmit ring, the copy of the head, the switch,
// the receive ring; the mock drivers' refills are in it too.
func BenchmarkForwardPath(b *testing.B) {
	for _, size := range []int{60, 1510} {
		b.Run(fmt.Sprintf("%dB", size+4), func(b *testing.B) {
			sw := vswitch.New(vswitch.Config{MACMoveHoldDown: -1})
			src, dst := vswitch.MAC{0, 1, 2, 3, 4, 0}, vswitch.MAC{0, 1, 2, 3, 4, 1}
			a := newBenchSide(b, sw, "a", size, src, dst)
			c := newBenchSide(b, sw, "b", size, src, dst)
			b.ReportAllocs()
			b.SetBytes(int64(2 * benchBatch * size))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for _, s := range [2]*benchSide{a, c} {
					s.tx.Push(s.txH...)
					o := a
					if s == a {
						o = c
					}
					o.rx.Push(o.rxH...)
					s.dev.ProcessTX(0)
					s.tx.DiscardUsed()
					o.rx.DiscardUsed()
				}
			}
			b.StopTimer()
			frames := float64(b.N) * 2 * benchBatch
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/frames, "ns/frame")
			for _, s := range [2]*benchSide{a, c} {
				if st := s.dev.Stats(); st.RxPackets != uint64(b.N*benchBatch) || s.faults != 0 {
					b.Fatalf("received %d of %d frames, %d faults; stats %+v", st.RxPackets, b.N*benchBatch, s.faults, st)
				}
			}
		})
	}
}
