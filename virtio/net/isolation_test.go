package vnet_test

import (
	"bytes"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/virtio"
	vnet "github.com/hvnet/hvnet/virtio/net"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

// Tenant isolation at the dataplane: the guest owns the memory
// the device reads, and may rewrite or shrink it at any moment.

// memfdMem maps n bytes of a memfd, as a vhost-user frontend shares its
// memory. The race detector does not see accesses to it, as it does not
// see a real guest's.
func memfdMem(t *testing.T, n int) (fd int, raw []byte) {
	t.Helper()
	fd, err := unix.MemfdCreate("vnet-test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Ftruncate(fd, int64(n)); err != nil {
		t.Fatal(err)
	}
	raw, err = unix.Mmap(fd, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(raw); unix.Close(fd) })
	return fd, raw
}

func overlaps(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	pa, pb := uintptr(unsafe.Pointer(&a[0])), uintptr(unsafe.Pointer(&b[0]))
	return pa < pb+uintptr(len(b)) && pb < pa+uintptr(len(a))
}

// The Sink gets a host copy: a guest that rewrites its buffer while the
// frame is being switched (here: during Deliver) changes nothing the Sink
// sees, whatever the chain's layout.
func TestTXSingleFetch(t *testing.T) {
	for _, layout := range []string{"one descriptor", "header apart", "split frame", "indirect"} {
		t.Run(layout, func(t *testing.T) {
			var guestBufs [][]byte
			var got [][]byte
			want := ethFrame(1514, 9)
			sink := vnet.SinkFunc(func(fs []vnet.Frame) {
				for _, f := range fs {
					for _, g := range guestBufs {
						if overlaps(f.Data, g) {
							t.Errorf("the frame aliases guest memory")
						}
						for i := range g {
							g[i] ^= 0xff // the guest rewrites everything, tags and lengths included
						}
					}
					got = append(got, append([]byte(nil), f.Data...))
				}
			})
			b := newBed(t, 1, baseFeat, 256, 1<<20, sink)
			d := b.tx(0)
			var bufs []virtiotest.Buf
			full := append(hdr(vnet.Header{}), want...)
			switch layout {
			case "one descriptor":
				bufs = []virtiotest.Buf{{Data: full}}
			case "header apart":
				bufs = []virtiotest.Buf{{Data: full[:vnet.HdrLen]}, {Data: full[vnet.HdrLen:]}}
			case "split frame", "indirect":
				bufs = []virtiotest.Buf{{Data: full[:100]}, {Data: full[100:700]}, {Data: full[700:]}}
			}
			guestBufs = pushChain(d, layout == "indirect", bufs)
			b.dev.ProcessTX(0)
			if len(got) != 1 || !bytes.Equal(got[0], want) {
				t.Fatalf("the Sink saw the guest's rewrite: got %d frames", len(got))
			}
		})
	}
}

// A guest rewriting every byte of its in-flight frames from another thread
// (tags, lengths, offload fields) never makes a delivered frame change
// between two reads: the Sink's bytes are the device's own.
func TestTXRacingGuest(t *testing.T) {
	const perQueue = 1 << 20
	_, raw := memfdMem(t, 3*perQueue)
	var torn atomic.Int64
	var delivered int
	sink := vnet.SinkFunc(func(fs []vnet.Frame) {
		for _, f := range fs {
			first := append([]byte(nil), f.Data...)
			for range 200 { // give the racer time to strike
				if !bytes.Equal(first, f.Data) {
					torn.Add(1)
					break
				}
			}
			delivered++
		}
	})
	b := newBedIn(t, raw, 1, baseFeat, 256, perQueue, sink)
	d := b.tx(0)
	// The racer flips bytes in the TX area (descriptor table excepted:
	// that is the ring tests' business) as fast as it can.
	area := raw[perQueue+64<<10 : 2*perQueue]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			for j := 0; j < len(area); j += 61 {
				area[j] ^= byte(i)
			}
		}
	}()
	for round := 0; round < 200; round++ {
		d.FreeAll()
		for range 32 {
			d.Push(d.AddChain(virtiotest.Buf{Data: append(hdr(vnet.Header{}), ethFrame(200, byte(round))...)}))
		}
		for b.dev.ProcessTX(0) {
		}
		d.DiscardUsed()
	}
	close(stop)
	wg.Wait()
	if delivered == 0 {
		t.Fatal("no frame delivered")
	}
	if n := torn.Load(); n != 0 {
		t.Fatalf("%d of %d delivered frames changed under the Sink", n, delivered)
	}
	t.Logf("%d frames delivered, none changed", delivered)
}

// A frontend that shrinks its memfd (ftruncate) under the device faults
// the queue that touched the memory: counted, reported as a
// *virtio.MemoryFaultError, and the process goes on (without the fault
// guard this test dies of SIGBUS).
func TestMemoryShrinks(t *testing.T) {
	const perQueue = 1 << 20
	for _, tc := range []struct {
		name string
		keep func(b *bed) int64 // bytes of the memfd kept
		rx   bool
	}{
		{"tx all gone", func(*bed) int64 { return 0 }, false},
		{"tx frames gone, rings kept", func(b *bed) int64 { return int64(b.tx(0).Used-virtiotest.DefaultBase) + 6 + 8*256 }, false},
		{"rx all gone", func(*bed) int64 { return 0 }, true},
		{"rx buffers gone, rings kept", func(b *bed) int64 { return int64(b.rx(0).Used-virtiotest.DefaultBase) + 6 + 8*256 }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fd, raw := memfdMem(t, 3*perQueue)
			sink := &recSink{}
			b := newBedIn(t, raw, 1, baseFeat, 256, perQueue, sink)
			if tc.rx {
				d := b.rx(0)
				d.Push(d.AddChain(virtiotest.Buf{Len: 1526, Write: true}))
			} else {
				d := b.tx(0)
				for range 4 {
					d.Push(d.AddChain(virtiotest.Buf{Data: append(hdr(vnet.Header{}), ethFrame(1000, 1)...)}))
				}
			}
			keep := tc.keep(b)
			if keep > 0 {
				keep = (keep + 4095) &^ 4095
			}
			if err := unix.Ftruncate(fd, keep); err != nil {
				t.Fatal(err)
			}
			if tc.rx {
				if n := b.dev.Receive([]vnet.Frame{{Data: ethFrame(100, 2)}}); n != 0 {
					t.Fatalf("Receive() = %d into vanished memory, want 0", n)
				}
				if n := b.dev.Receive([]vnet.Frame{{Data: ethFrame(100, 2)}}); n != 0 {
					t.Fatalf("Receive() = %d on the faulted queue, want 0", n)
				}
			} else {
				b.dev.ProcessTX(0)
				b.dev.Poll(1)
				b.dev.ProcessTX(0)
			}
			st := b.dev.Stats()
			if st.MemoryFaults != 1 || st.Faults != 1 {
				t.Fatalf("MemoryFaults = %d, Faults = %d; want 1 and 1 (one fault, then the queue stays broken)", st.MemoryFaults, st.Faults)
			}
			var mf *virtio.MemoryFaultError
			if len(b.faults) != 1 || !errors.As(b.faults[0], &mf) || !virtio.IsFault(b.faults[0]) {
				t.Fatalf("OnFault got %v, want one *virtio.MemoryFaultError", b.faults)
			}
			if !tc.rx && len(sink.frames) != 0 && keep == 0 {
				t.Fatalf("%d frames delivered from vanished memory", len(sink.frames))
			}
			// A reset queue in restored memory works again.
			if err := unix.Ftruncate(fd, 3*perQueue); err != nil {
				t.Fatal(err)
			}
			t.Logf("fault: %v", b.faults[0])
		})
	}
}

// A nil dereference inside guarded code is a bug, not a guest: it still
// panics.
func TestGuardKeepsBugs(t *testing.T) {
	defer func() {
		if r := recover(); r == nil {
			t.Fatal("a nil dereference under the fault guard did not panic")
		}
	}()
	var err error
	func() {
		defer virtio.CatchFault(virtio.TrapFaults(), &err)
		var p *[8]byte
		p[3] = 1
	}()
	t.Fatalf("survived a nil dereference (err %v)", err)
}
