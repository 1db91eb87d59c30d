package vnet_test

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"

	vnet "github.com/hvnet/hvnet/virtio/net"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

// sendCtrl sends one command on the control queue and returns the ack.
func sendCtrl(t *testing.T, b *bed, class, cmd uint8, data []byte) uint8 {
	t.Helper()
	d := b.ctrl()
	head := d.AddChain(virtiotest.Buf{Data: append([]byte{class, cmd}, data...)}, virtiotest.Buf{Len: 1, Write: true})
	d.Push(head)
	b.dev.HandleKick(b.dev.CtrlQueue())
	u, ok := d.PopUsed()
	if !ok || u.ID != uint32(head) || u.Len != 1 {
		t.Fatalf("control chain not returned with its ack: %+v %v", u, ok)
	}
	return d.Bytes(d.BufAddr(head, 1).Addr, 1)[0]
}

func macTable(macs ...[6]byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(macs)))
	for _, m := range macs {
		b = append(b, m[:]...)
	}
	return b
}

func TestCtrlCommands(t *testing.T) {
	all := baseFeat | vnet.Features(vnet.FCtrlVQ, vnet.FCtrlRx, vnet.FCtrlRxExtra, vnet.FCtrlVLAN,
		vnet.FGuestAnnounce, vnet.FMQ, vnet.FCtrlMACAddr, vnet.FCtrlGuestOffload, vnet.FGuestCsum)
	m1, m2 := [6]byte{2, 0, 0, 0, 0, 1}, [6]byte{1, 0, 0x5e, 0, 0, 1}
	for _, tc := range []struct {
		name       string
		features   uint64
		class, cmd uint8
		data       []byte
		ack        uint8
		check      func(f vnet.RXFilter, d *vnet.Device) bool
	}{
		{"promisc off", all, vnet.CtrlRx, vnet.CtrlRxPromisc, []byte{0}, vnet.CtrlOK, func(f vnet.RXFilter, _ *vnet.Device) bool { return !f.Promisc }},
		{"allmulti on", all, vnet.CtrlRx, vnet.CtrlRxAllMulti, []byte{1}, vnet.CtrlOK, func(f vnet.RXFilter, _ *vnet.Device) bool { return f.AllMulti }},
		{"nobcast on", all, vnet.CtrlRx, vnet.CtrlRxNoBcast, []byte{1}, vnet.CtrlOK, func(f vnet.RXFilter, _ *vnet.Device) bool { return f.NoBcast }},
		{"nobcast without extra", baseFeat | vnet.Features(vnet.FCtrlVQ, vnet.FCtrlRx), vnet.CtrlRx, vnet.CtrlRxNoBcast, []byte{1}, vnet.CtrlErr, nil},
		{"promisc without CTRL_RX", baseFeat | vnet.Features(vnet.FCtrlVQ), vnet.CtrlRx, vnet.CtrlRxPromisc, []byte{0}, vnet.CtrlErr, nil},
		{"promisc bad length", all, vnet.CtrlRx, vnet.CtrlRxPromisc, []byte{0, 0}, vnet.CtrlErr, nil},
		{"rx unknown command", all, vnet.CtrlRx, 9, []byte{0}, vnet.CtrlErr, nil},
		{"mac addr set", all, vnet.CtrlMAC, vnet.CtrlMACAddrSet, m1[:], vnet.CtrlOK, func(f vnet.RXFilter, _ *vnet.Device) bool { return f.MAC == m1 }},
		{"mac addr short", all, vnet.CtrlMAC, vnet.CtrlMACAddrSet, m1[:5], vnet.CtrlErr, nil},
		{"mac table set", all, vnet.CtrlMAC, vnet.CtrlMACTableSet, append(macTable(m1), macTable(m2, m2)...), vnet.CtrlOK,
			func(f vnet.RXFilter, _ *vnet.Device) bool {
				return len(f.Unicast) == 1 && f.Unicast[0] == m1 && len(f.Multicast) == 2
			}},
		{"mac table lies", all, vnet.CtrlMAC, vnet.CtrlMACTableSet, append(binary.LittleEndian.AppendUint32(nil, 1<<30), macTable()...), vnet.CtrlErr, nil},
		{"mac table trailing", all, vnet.CtrlMAC, vnet.CtrlMACTableSet, append(append(macTable(), macTable()...), 0), vnet.CtrlErr, nil},
		{"vlan add", all, vnet.CtrlVLAN, vnet.CtrlVLANAdd, le16(100), vnet.CtrlOK, func(f vnet.RXFilter, _ *vnet.Device) bool { return f.VLAN(100) && !f.VLAN(101) }},
		{"vlan out of range", all, vnet.CtrlVLAN, vnet.CtrlVLANAdd, le16(4096), vnet.CtrlErr, nil},
		{"vlan without feature", baseFeat | vnet.Features(vnet.FCtrlVQ), vnet.CtrlVLAN, vnet.CtrlVLANAdd, le16(1), vnet.CtrlErr, nil},
		{"announce ack", all, vnet.CtrlAnnounce, vnet.CtrlAnnounceAck, nil, vnet.CtrlOK, nil},
		{"announce without feature", baseFeat | vnet.Features(vnet.FCtrlVQ), vnet.CtrlAnnounce, vnet.CtrlAnnounceAck, nil, vnet.CtrlErr, nil},
		{"mq pairs 2", all, vnet.CtrlMQ, vnet.CtrlMQVQPairsSet, le16(2), vnet.CtrlOK, func(_ vnet.RXFilter, d *vnet.Device) bool { return d.ActivePairs() == 2 }},
		{"mq pairs 0", all, vnet.CtrlMQ, vnet.CtrlMQVQPairsSet, le16(0), vnet.CtrlErr, nil},
		{"mq pairs too many", all, vnet.CtrlMQ, vnet.CtrlMQVQPairsSet, le16(3), vnet.CtrlErr, nil},
		{"mq rss unsupported", all, vnet.CtrlMQ, 1, nil, vnet.CtrlErr, nil},
		{"offloads set", all, vnet.CtrlGuestOffloads, vnet.CtrlGuestOffloadsSet, le64(0), vnet.CtrlOK, nil},
		{"offloads not negotiated", all, vnet.CtrlGuestOffloads, vnet.CtrlGuestOffloadsSet, le64(vnet.Features(vnet.FGuestTSO4)), vnet.CtrlErr, nil},
		{"unknown class", all, 77, 0, nil, vnet.CtrlErr, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBed(t, 2, tc.features, 16, 1<<18, &recSink{})
			if ack := sendCtrl(t, b, tc.class, tc.cmd, tc.data); ack != tc.ack {
				t.Fatalf("ack = %d, want %d", ack, tc.ack)
			}
			if tc.check != nil && !tc.check(b.dev.Filter(), b.dev) {
				t.Fatalf("state after command: filter %+v, pairs %d", b.dev.Filter(), b.dev.ActivePairs())
			}
			s := b.dev.Stats()
			if (tc.ack == vnet.CtrlOK) != (s.CtrlOK == 1) || len(b.faults) != 0 {
				t.Fatalf("stats %+v, faults %v", s, b.faults)
			}
		})
	}
}

func TestCtrlMalformedChains(t *testing.T) {
	b := newBed(t, 1, baseFeat|vnet.Features(vnet.FCtrlVQ, vnet.FCtrlRx), 16, 1<<18, &recSink{})
	d := b.ctrl()
	noAck := d.AddChain(virtiotest.Buf{Data: []byte{0, 0, 1}})
	short := d.AddChain(virtiotest.Buf{Data: []byte{0}}, virtiotest.Buf{Len: 1, Write: true})
	huge := d.AddChain(virtiotest.Buf{Len: 9000}, virtiotest.Buf{Len: 1, Write: true})
	d.Push(noAck, short, huge)
	b.dev.ProcessCtrl()
	used := d.DrainUsed()
	if len(used) != 3 || used[0].Len != 0 || used[1].Len != 0 || used[2].Len != 1 {
		t.Fatalf("used = %+v", used)
	}
	if d.Bytes(d.BufAddr(huge, 1).Addr, 1)[0] != vnet.CtrlErr {
		t.Fatal("oversized command acknowledged OK")
	}
	if s := b.dev.Stats(); s.CtrlErr != 3 || len(b.faults) != 0 {
		t.Fatalf("stats %+v faults %v", s, b.faults)
	}
}

// A guest that keeps its control queue full (another thread makes each
// command available again as soon as its ack appears) gets at most 64
// commands executed a ProcessCtrl call, and HandleKick says there is
// more; a failed MAC table leaves the filter as it was; full MAC tables
// allocate nothing once the tables have grown. (Found by an audit: one
// call ran 8,108 commands in 214 ms and allocated 63 MiB.)
func TestCtrlBudget(t *testing.T) {
	const perQueue = 4 << 20
	_, raw := memfdMem(t, 3*perQueue)
	feats := baseFeat | vnet.Features(vnet.FCtrlVQ, vnet.FCtrlRx)
	b := newBedIn(t, raw, 1, feats, 256, perQueue, &recSink{})
	d := b.ctrl()
	macs := make([][6]byte, 1300)
	for i := range macs {
		macs[i] = [6]byte{2, 0, 0, 0, byte(i >> 8), byte(i)}
	}
	cmd := append([]byte{vnet.CtrlMAC, vnet.CtrlMACTableSet}, macTable(macs...)...)
	cmd = append(cmd, macTable()...)
	const k = 200
	heads := make([]uint16, k)
	acks := make([][]byte, k)
	for i := range heads {
		heads[i] = d.AddChain(virtiotest.Buf{Data: cmd}, virtiotest.Buf{Len: 1, Write: true})
		acks[i] = d.Bytes(d.BufAddr(heads[i], 1).Addr, 1)
		acks[i][0] = 0xff
	}
	d.Push(heads...)
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the guest: every acked command again at once
		defer wg.Done()
		for !stop.Load() {
			for i, a := range acks {
				if a[0] != 0xff {
					a[0] = 0xff
					d.DiscardUsed()
					d.Push(heads[i])
				}
			}
		}
	}()
	for call := range 200 {
		n := b.dev.ProcessCtrl()
		if n > 64 {
			t.Fatalf("call %d executed %d commands, want at most 64", call, n)
		}
	}
	stop.Store(true)
	wg.Wait()
	if f := b.dev.Filter(); len(f.Unicast) != 1300 || f.Unicast[1299] != macs[1299] || len(f.Multicast) != 0 {
		t.Fatalf("filter: %d unicast, %d multicast addresses after the tables", len(f.Unicast), len(f.Multicast))
	}
	// HandleKick reports the budget spent.
	for b.dev.HandleKick(b.dev.CtrlQueue()) { // what the guest left
	}
	d.DiscardUsed()
	d.Push(heads...)
	if !b.dev.HandleKick(b.dev.CtrlQueue()) {
		t.Fatal("HandleKick: no more work after 64 of 200 pending commands")
	}
	for b.dev.HandleKick(b.dev.CtrlQueue()) {
	}
	if n := d.DiscardUsed(); n != 200 {
		t.Fatalf("%d commands used, want 200", n)
	}
	if s := b.dev.Stats(); s.Faults != 0 {
		t.Fatalf("control queue faulted: %+v", s)
	}
	// No allocation per table once grown.
	allocs := testing.AllocsPerRun(20, func() {
		d.Push(heads[:64]...)
		b.dev.ProcessCtrl()
		d.DiscardUsed()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per 64 MAC tables, want 0", allocs)
	}
	// A malformed multicast table leaves the filter as it was.
	bad := append([]byte{}, macTable(macs[:5]...)...)
	bad = append(bad, 9, 0, 0, 0)
	if ack := sendCtrl(t, b, vnet.CtrlMAC, vnet.CtrlMACTableSet, bad); ack != vnet.CtrlErr {
		t.Fatalf("malformed table acked %d", ack)
	}
	if f := b.dev.Filter(); len(f.Unicast) != 1300 || f.Unicast[4] != macs[4] || f.Unicast[1299] != macs[1299] {
		t.Fatalf("a refused table changed the filter: %d unicast", len(f.Unicast))
	}
}
