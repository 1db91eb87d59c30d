package vswitch

import (
	"bytes"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Regression tests for bugs found in review.

// A dot1q-tunnel port must carry a full-size (MTU 1500) C-tagged customer
// frame, and a trunk the resulting S+C-tagged frame: tags are not L3
// payload. They were dropped as oversize.
func TestQinQFullSizeCustomerFrame(t *testing.T) {
	ts := newTestSwitch(t, PortConfig{Name: "cust", Mode: ModeDot1QTunnel, PVID: 100}, trunk("core", 0, 100))
	cframe := tag(eth(mac(2), mac(1), 0x0800, 1500), tpidCTag, 0, 42)
	ts.in("cust", cframe)
	if got := ts.s["core"].take(); len(got) != 1 || len(got[0].Data) != len(cframe)+4 {
		t.Fatalf("core got %d frames; want the S-tagged 1522-byte customer frame (drops %v)", len(got), ts.h["cust"].Counters().Drops)
	}
	back := tag(tag(eth(mac(1), mac(2), 0x0800, 1500), tpidCTag, 0, 42), tpidSTag, 0, 100)
	ts.in("core", back)
	if got := ts.s["cust"].take(); len(got) != 1 || !bytes.Equal(got[0].Data, append(append([]byte{}, back[:12]...), back[16:]...)) {
		t.Fatalf("cust got %d frames; want the full-size customer frame back (drops %v)", len(got), ts.h["core"].Counters().Drops)
	}
	// One byte more is still oversize, and a truncated inner tag is malformed.
	ts.in("cust", tag(eth(mac(2), mac(1), 0x0800, 1501), tpidCTag, 0, 42))
	short := tag(eth(mac(2), mac(1), 0x8100, 0), tpidCTag, 0, 42) // inner TPID, no TCI
	ts.in("cust", short)
	if got := ts.drops("cust", DropMalformed); got != 2 {
		t.Errorf("malformed drops %d; want 2", got)
	}
}

// The drop eligible indicator is part of the tag and must survive a trunk
// to trunk hop (it was cleared when the tag was rewritten).
func TestDEIPreserved(t *testing.T) {
	ts := newTestSwitch(t, trunk("t1", 0, 10), trunk("t2", 0, 10))
	f := tag(eth(Broadcast, mac(1), 0x0800, 46), tpidCTag, 5, 10)
	f[14] |= 0x10 // DEI
	ts.in("t1", f)
	if got := ts.s["t2"].take(); len(got) != 1 || !bytes.Equal(got[0].Data, f) {
		t.Fatalf("t2 got %x; want %x", got, f)
	}
}

// Frames to the reserved 01-80-C2-00-00-0X addresses (PAUSE, LACP, STP,
// LLDP...) are never relayed (IEEE 802.1Q §8.6.3); a tunnel port still
// tunnels customer BPDUs (-00). They used to be flooded.
func TestReservedAddressesNotRelayed(t *testing.T) {
	ts := newTestSwitch(t, access("a", 1), access("b", 1), PortConfig{Name: "cust", Mode: ModeDot1QTunnel, PVID: 1})
	for _, last := range []byte{0x00, 0x01, 0x02, 0x0e} {
		ts.in("a", eth(MAC{0x01, 0x80, 0xc2, 0, 0, last}, mac(1), 0x88cc, 46))
	}
	if got := ts.s["b"].take(); len(got) != 0 {
		t.Errorf("b got %d reserved frames; want 0", len(got))
	}
	if got := ts.drops("a", DropReserved); got != 4 {
		t.Errorf("reserved drops %d; want 4", got)
	}
	ts.in("cust", eth(MAC{0x01, 0x80, 0xc2, 0, 0, 0}, mac(3), 0x0026, 46)) // customer STP BPDU
	ts.in("cust", eth(MAC{0x01, 0x80, 0xc2, 0, 0, 1}, mac(3), 0x8808, 46)) // PAUSE
	if got := ts.s["b"].take(); len(got) != 1 || got[0].Data[5] != 0 {
		t.Errorf("b got %d frames from the tunnel port; want the BPDU only", len(got))
	}
	// Not reserved: 01-80-C2-00-00-10 and 01-80-C2-00-01-00 flood.
	ts.in("a", eth(MAC{0x01, 0x80, 0xc2, 0, 0, 0x10}, mac(1), 0x0800, 46), eth(MAC{0x01, 0x80, 0xc2, 0, 1, 0}, mac(1), 0x0800, 46))
	if got := ts.s["b"].take(); len(got) != 2 {
		t.Errorf("b got %d frames; want 2", len(got))
	}
}

// The all-zeros source address is not learned (it was).
func TestZeroSourceMAC(t *testing.T) {
	ts := newTestSwitch(t, access("a", 1), access("b", 1))
	ts.in("a", eth(Broadcast, MAC{}, 0x0800, 46))
	if n := ts.sw.SwitchCounters().FDBEntries; n != 0 || ts.drops("a", DropMalformed) != 1 {
		t.Errorf("FDB entries %d, malformed drops %d; want 0, 1", n, ts.drops("a", DropMalformed))
	}
}

// A destination looked up (unknown) earlier in a batch and learned as a
// source on the ingress port later in the same batch must not be flooded.
func TestBatchCacheForgetsLearnedSource(t *testing.T) {
	ts := newTestSwitch(t, access("a", 1), access("b", 1))
	ts.in("a",
		eth(mac(9), mac(1), 0x0800, 46), // mac(9) unknown: flooded
		eth(Broadcast, mac(9), 0x0800, 46),
		eth(mac(9), mac(1), 0x0800, 46)) // mac(9) is on a: filtered
	if got := ts.s["b"].take(); len(got) != 2 {
		t.Errorf("b got %d frames; want 2 (the unknown unicast and the broadcast)", len(got))
	}
}

// gatedPort blocks in Send until released, and records Sends after closed.
type gatedPort struct {
	entered chan struct{}
	release chan struct{}
	closed  atomic.Bool
	late    atomic.Int32
	once    sync.Once
}

func (p *gatedPort) Send(frames []Frame) int {
	if p.closed.Load() {
		p.late.Add(1)
	}
	p.once.Do(func() { close(p.entered); <-p.release })
	return len(frames)
}
func (p *gatedPort) Caps() Caps { return 0 }

// After RemovePort returns the switch no longer calls the port's Send: an
// Input of another port that was delivering to it finishes first. (It used
// to return while such a Send was still running, or about to run.)
func TestRemovePortWaitsForSenders(t *testing.T) {
	ts := newTestSwitch(t, access("a", 1))
	g := &gatedPort{entered: make(chan struct{}), release: make(chan struct{})}
	if _, err := ts.sw.AddPort(access("g", 1), g); err != nil {
		t.Fatal(err)
	}
	go ts.in("a", eth(Broadcast, mac(1), 0x0800, 46))
	<-g.entered
	removed := make(chan struct{})
	go func() {
		if err := ts.sw.RemovePort("g"); err != nil {
			t.Error(err)
		}
		g.closed.Store(true)
		close(removed)
	}()
	select {
	case <-removed:
		t.Fatal("RemovePort returned while a Send to the port was running")
	case <-time.After(20 * time.Millisecond): // only bounds how long we look for the bug
	}
	close(g.release)
	<-removed
	ts.in("a", eth(Broadcast, mac(1), 0x0800, 46))
	if n := g.late.Load(); n != 0 {
		t.Errorf("%d Sends after RemovePort returned", n)
	}
}
