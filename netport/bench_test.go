package netport

import (
	"fmt"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"

	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/virtio"
	vnet "github.com/hvnet/hvnet/virtio/net"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

// benchSide is one guest of BenchmarkForwardPath: a device with a mock
// driver on each of its receive and transmit queues, attached to the
// switch.
type benchSide struct {
	dev    *vnet.Device
	rx, tx []*virtiotest.Driver // by queue pair
	rxH    [][]uint16
	txH    [][]uint16
	faults atomic.Int64
}

const (
	benchBatch = 32   // frames per transmit burst: DPDK's burst
	benchRxBuf = 2048 // receive buffer, mergeable, as DPDK's virtio-user posts
	benchQueue = 1024
)

// newBenchSide builds one guest on sw with pairs queue pairs (all
// active): the driver offers what DPDK's virtio-user negotiates with the
// vhost-user backend (VERSION_1, EVENT_IDX, MRG_RXBUF, no offloads; MQ
// with several pairs), and transmits one-descriptor chains (the
// virtio-net header pushed in front of the frame), as it does. Pair q's
// frames come from src(q) to dst.
func newBenchSide(b *testing.B, sw *vswitch.Switch, name string, frameLen, pairs int, src func(q int) vswitch.MAC, dst vswitch.MAC) *benchSide {
	const perQueue = 4 << 20
	raw := make([]byte, 2*pairs*perQueue+perQueue)
	mem, err := virtio.NewMemory(virtio.Region{GPA: virtiotest.DefaultBase, Data: raw})
	if err != nil {
		b.Fatal(err)
	}
	s := &benchSide{}
	p := New(nil)
	dev, err := vnet.New(vnet.Config{QueuePairs: pairs, MaxQueueSize: benchQueue, Sink: p,
		OnFault: func(error) { s.faults.Add(1) }})
	if err != nil {
		b.Fatal(err)
	}
	feat := uint64(1)<<virtio.FVersion1 | 1<<virtio.FEventIdx | vnet.Features(vnet.FMrgRxbuf)
	if pairs > 1 {
		feat |= vnet.Features(vnet.FMQ, vnet.FCtrlVQ)
	}
	dev.SetMemory(mem)
	if err := dev.SetFeatures(feat); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 2*pairs; i++ {
		off := i * perQueue
		d := virtiotest.NewIn(mem, raw[off:off+perQueue], virtiotest.DefaultBase+uint64(off), benchQueue)
		if err := dev.ConfigureQueue(i, func(q *virtio.Queue) error {
			q.SetSignaler(nopSignal{})
			return d.Configure(q, feat)
		}); err != nil {
			b.Fatal(err)
		}
		if i%2 == 0 {
			s.rx = append(s.rx, d)
		} else {
			s.tx = append(s.tx, d)
		}
	}
	if err := dev.SetActivePairs(pairs); err != nil {
		b.Fatal(err)
	}
	s.dev = dev
	p.SetDevice(dev)
	h, err := sw.AddPort(vswitch.PortConfig{Name: name, Mode: vswitch.ModeAccess, PVID: 10}, p)
	if err != nil {
		b.Fatal(err)
	}
	p.SetHandle(h)
	for q := range pairs {
		chain := make([]byte, vnet.HdrLen+frameLen)
		f := chain[vnet.HdrLen:]
		m := src(q)
		copy(f[0:6], dst[:])
		copy(f[6:12], m[:])
		f[12], f[13] = 0x08, 0x00
		for i := 14; i < len(f); i++ {
			f[i] = byte(i)
		}
		var txH, rxH []uint16
		for i := 0; i < benchBatch; i++ {
			txH = append(txH, s.tx[q].AddChain(virtiotest.Buf{Data: chain}))
			rxH = append(rxH, s.rx[q].AddChain(virtiotest.Buf{Len: benchRxBuf, Write: true}))
		}
		s.txH, s.rxH = append(s.txH, txH), append(s.rxH, rxH)
	}
	return s
}

// round is one iteration of pair q: a burst from s crosses the switch
// into o's receive queue q.
func (s *benchSide) round(o *benchSide, q int) {
	s.tx[q].Push(s.txH[q]...)
	o.rx[q].Push(o.rxH[q]...)
	s.dev.ProcessTX(q)
	s.tx[q].DiscardUsed()
	o.rx[q].DiscardUsed()
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
			same := func(int) vswitch.MAC { return src }
			a := newBenchSide(b, sw, "a", size, 1, same, dst)
			c := newBenchSide(b, sw, "b", size, 1, same, dst)
			b.ReportAllocs()
			b.SetBytes(int64(2 * benchBatch * size))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				a.round(c, 0)
				c.round(a, 0)
			}
			b.StopTimer()
			frames := float64(b.N) * 2 * benchBatch
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/frames, "ns/frame")
			for _, s := range [2]*benchSide{a, c} {
				if st := s.dev.Stats(); st.RxPackets != uint64(b.N*benchBatch) || s.faults.Load() != 0 {
					b.Fatalf("received %d of %d frames, %d faults; stats %+v", st.RxPackets, b.N*benchBatch, s.faults.Load(), st)
				}
			}
		})
	}
}

// BenchmarkForwardPathMQ is BenchmarkForwardPath with N queue pairs on
// each guest, each pair served by its own worker goroutine (as a
// vhost-user session runs one per transmit ring): worker q sends bursts
// from guest a's transmit queue q to b's receive queue q and back, the
// frames from a source MAC of its own to a destination never learned
// (flooded), so the workers share nothing but the switch. Metrics:
// ns/frame is wall time per frame of all workers together (falls as
// workers are added while nothing serialises them, up to the cores
// GOMAXPROCS gives: run with -cpu 1,2), ns/frame/queue the wall time per
// frame of one worker (the per-queue cost; it stays flat while the
// workers do not wait on each other), and mutex-wait-ns/frame the time
// goroutines spent blocked on sync.Mutex per frame (runtime/metrics'
// /sync/mutex/wait/total), which a lock shared by the queues would
// raise.
func BenchmarkForwardPathMQ(b *testing.B) {
	for _, queues := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("64B/queues=%d", queues), func(b *testing.B) {
			sw := vswitch.New(vswitch.Config{})
			dst := vswitch.MAC{2, 1, 2, 3, 4, 0xff}
			a := newBenchSide(b, sw, "a", 60, queues, func(q int) vswitch.MAC { return vswitch.MAC{2, 0, 0, 0, 0xa, byte(q)} }, dst)
			c := newBenchSide(b, sw, "b", 60, queues, func(q int) vswitch.MAC { return vswitch.MAC{2, 0, 0, 0, 0xb, byte(q)} }, dst)
			wait := []metrics.Sample{{Name: "/sync/mutex/wait/total:seconds"}}
			metrics.Read(wait)
			before := wait[0].Value.Float64()
			b.ReportAllocs()
			b.SetBytes(int64(2 * benchBatch * 60 * queues))
			b.ResetTimer()
			var wg sync.WaitGroup
			for q := range queues {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < b.N; i++ {
						a.round(c, q)
						c.round(a, q)
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			metrics.Read(wait)
			frames := float64(b.N) * 2 * benchBatch
			ns := float64(b.Elapsed().Nanoseconds())
			b.ReportMetric(ns/(frames*float64(queues)), "ns/frame")
			b.ReportMetric(ns/frames, "ns/frame/queue")
			b.ReportMetric((wait[0].Value.Float64()-before)*1e9/(frames*float64(queues)), "mutex-wait-ns/frame")
			for _, s := range [2]*benchSide{a, c} {
				st := s.dev.Stats()
				if want := uint64(b.N * benchBatch * queues); st.RxPackets != want || s.faults.Load() != 0 {
					b.Fatalf("received %d of %d frames, %d faults; stats %+v", st.RxPackets, want, s.faults.Load(), st)
				}
				// Steered by queue: receive queue q took exactly
				// worker q's frames.
				for q := range queues {
					if got, want := s.rx[q].UsedIdx(), uint16(b.N*benchBatch); got != want {
						b.Fatalf("receive queue %d: used index %d, want %d", q, got, want)
					}
				}
			}
		})
	}
}
