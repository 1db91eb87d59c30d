package vhost

import (
	"testing"
	"time"

	"github.com/hvnet/hvnet/virtio"
)

// DPDK's virtio-user negotiates VIRTIO_F_IN_ORDER with hvnet (its
// in_order devarg is on by default), and not when told in_order=0; either
// way a sustained loop of frames crosses the switch whole: testpmd in io
// forwarding sends one burst from each port (tx_first) and sends back
// whatever it receives, so the two bursts circle through hvnet's two
// ports for a second. A device that used a chain out of order, or moved
// the used index over a chain still in use, would have the driver free or
// reuse a buffer early: frames lost or changed, the loop dying out. The
// device counts no bad chain, header or fault, and the frames each port
// took from DPDK match what DPDK sent it, give or take the rings.
func TestDPDKInOrder(t *testing.T) {
	for _, tc := range []struct {
		name, devarg string
		inOrder      bool
	}{{"InOrder", "", true}, {"NotInOrder", ",in_order=0", false}} {
		t.Run(tc.name, func(t *testing.T) {
			pp := startPair(t, 10, 10, nil)
			pa, pb := pp.a, pp.b
			pmd := startTestpmd(t, []string{pp.ca.Socket + tc.devarg, pp.cb.Socket + tc.devarg}, "--forward-mode=io")
			waitFor(t, pp.evA.up, "DPDK port 0")
			waitFor(t, pp.evB.up, "DPDK port 1")
			for _, p := range []*Port{pa, pb} {
				f, _, ok := p.Negotiated()
				if !ok {
					t.Fatalf("port %s: no session", p.Name())
				}
				if got := virtio.HasFeature(f, virtio.FInOrder); got != tc.inOrder {
					t.Fatalf("port %s: IN_ORDER negotiated %v, want %v (features %#x)", p.Name(), got, tc.inOrder, f)
				}
			}
			pmd.send("start tx_first")
			time.Sleep(time.Second)
			pmd.send("stop")
			time.Sleep(100 * time.Millisecond) // the last frames settle
			_, tx0 := pmd.stats(0)
			_, tx1 := pmd.stats(1)
			for _, c := range []struct {
				p  *Port
				tx uint64
			}{{pa, tx0}, {pb, tx1}} {
				st := c.p.DeviceStats()
				if st.TxPackets < 10000 {
					t.Errorf("port %s: %d frames from DPDK in a second of looping: the loop died out (device stats %+v)", c.p.Name(), st.TxPackets, st)
				}
				if st.TxDropBadChain+st.TxDropBadHeader+st.TxDropRunt+st.TxDropOversize+st.RxDropBadChain+st.Faults+st.MemoryFaults != 0 {
					t.Errorf("port %s: drops or faults: %+v", c.p.Name(), st)
				}
				if d := int64(c.tx) - int64(st.TxPackets); d < 0 || d > 2048 {
					t.Errorf("port %s: DPDK sent %d frames, the device took %d", c.p.Name(), c.tx, st.TxPackets)
				}
			}
		})
	}
}
