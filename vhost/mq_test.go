package vhost

import (
	"path/filepath"
	"testing"
	"time"

	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/vhostuser/frontend"
	"github.com/hvnet/hvnet/vhostuser/proto"
	"github.com/hvnet/hvnet/virtio"
	vnet "github.com/hvnet/hvnet/virtio/net"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

// mqGuest is a vhost-user frontend with several queue pairs (rings 2p
// receive, 2p+1 transmit), each ring driven by a virtiotest mock in its
// own part of the shared memory.
type mqGuest struct {
	t     *testing.T
	f     *frontend.Frontend
	mem   *frontend.Memory
	rings []*virtiotest.Driver
	kick  []*virtio.EventFD
	call  []*virtio.EventFD
}

func dialMQGuest(t *testing.T, sock string, pairs int) *mqGuest {
	t.Helper()
	f, err := frontend.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	g := &mqGuest{t: t, f: f}
	t.Cleanup(func() {
		f.Close()
		for _, e := range append(g.kick, g.call...) {
			e.Close()
		}
		if g.mem != nil {
			g.mem.Close()
		}
	})
	const part = 256 << 10
	if g.mem, err = frontend.NewMemory(2*pairs*part, guestBase); err != nil {
		t.Fatal(err)
	}
	vm, err := g.mem.Virtio()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 * pairs {
		g.rings = append(g.rings, virtiotest.NewIn(vm, g.mem.Data[i*part:(i+1)*part], guestBase+uint64(i*part), qSize))
		k, err := virtio.NewEventFD(true)
		if err != nil {
			t.Fatal(err)
		}
		c, err := virtio.NewEventFD(true)
		if err != nil {
			t.Fatal(err)
		}
		g.kick, g.call = append(g.kick, k), append(g.call, c)
	}
	return g
}

// negotiate runs QEMU's start-up sequence for every ring, MQ accepted,
// the rings left disabled.
func (g *mqGuest) negotiate() {
	g.t.Helper()
	f := g.f
	must := func(err error) {
		g.t.Helper()
		if err != nil {
			g.t.Fatal(err)
		}
	}
	pf, err := f.GetProtocolFeatures()
	must(err)
	if pf&(1<<proto.PFMQ) == 0 {
		g.t.Fatal("backend does not offer the MQ protocol feature")
	}
	must(f.SetProtocolFeatures(pf & (1<<proto.PFReplyAck | 1<<proto.PFMQ)))
	n, err := f.GetQueueNum()
	must(err)
	if int(n) != len(g.rings)/2 {
		g.t.Fatalf("GET_QUEUE_NUM = %d, want %d", n, len(g.rings)/2)
	}
	must(f.SetOwner())
	must(f.SetFeatures(virtio.Feature(virtio.FVersion1) | 1<<proto.FProtocolFeatures | vnet.Features(vnet.FMQ)))
	must(f.SetMemTable(g.mem.Region()))
	for i, d := range g.rings {
		q := uint32(i)
		must(f.SetVringNum(q, qSize))
		must(f.SetVringBase(q, 0))
		must(f.SetVringAddr(proto.VringAddr{Index: q, Desc: g.mem.UVA(d.Desc), Avail: g.mem.UVA(d.Avail), Used: g.mem.UVA(d.Used)}))
		must(f.SetVringCall(q, g.call[i].FD()))
		must(f.SetVringKick(q, g.kick[i].FD()))
	}
}

// enable enables or disables both rings of pair p (SET_VRING_ENABLE, as
// QEMU does for the pairs its guest sets with MQ_VQ_PAIRS_SET).
func (g *mqGuest) enable(p int, on bool) {
	g.t.Helper()
	for _, q := range []uint32{uint32(2 * p), uint32(2*p + 1)} {
		if err := g.f.SetVringEnable(q, on); err != nil {
			g.t.Fatal(err)
		}
	}
}

// vhost-user multiqueue end to end: the pairs a frontend enables with
// SET_VRING_ENABLE are the device's active pairs (its receive side
// spreads over them), and frames sent on pair p's transmit ring of one
// port reach pair p's receive ring of another, each pair served by its
// own worker (the switch's input queue p, its queue hint p); a malformed
// ring faults its own queue only.
func TestMultiqueuePairs(t *testing.T) {
	const pairs = 3
	sw := vswitch.New(vswitch.Config{})
	dir := t.TempDir()
	var ports [2]*Port
	var gs [2]*mqGuest
	for i, name := range []string{"a", "b"} {
		sock := filepath.Join(dir, name+".sock")
		ports[i] = startPort(t, sw, PortConfig{Port: vswitch.PortConfig{Name: name, PVID: 1}, Socket: sock, QueuePairs: pairs})
		gs[i] = dialMQGuest(t, sock, pairs)
		gs[i].negotiate()
	}
	active := func(p *Port) int {
		_, n, ok := p.Negotiated()
		if !ok {
			t.Fatal("no session")
		}
		return n
	}
	waitActive := func(p *Port, want int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); active(p) != want; {
			if time.Now().After(deadline) {
				t.Fatalf("active pairs %d, want %d", active(p), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for p := range pairs {
		gs[0].enable(p, true)
		waitActive(ports[0], p+1)
	}
	gs[0].enable(1, false) // pair 1 off: only pair 0 is a prefix
	waitActive(ports[0], 1)
	gs[0].enable(1, true)
	waitActive(ports[0], pairs)
	for p := range pairs {
		gs[1].enable(p, true)
	}
	waitActive(ports[1], pairs)

	// a broadcasts from each pair (a source MAC per pair): each frame
	// lands on b's receive ring of the same pair.
	b := gs[1]
	for p := range pairs {
		rx := b.rings[2*p]
		for range 8 {
			rx.Push(rx.AddChain(virtiotest.Buf{Len: 2048, Write: true}))
		}
	}
	a := gs[0]
	for p := range pairs {
		tx := a.rings[2*p+1]
		for k := range 4 {
			tx.Push(tx.AddChain(virtiotest.Buf{Data: append(make([]byte, hdrLen), ethFrame(0xff, byte(0x10+p), byte(k))...)}))
		}
		if err := a.kick[2*p+1].Signal(); err != nil {
			t.Fatal(err)
		}
	}
	for p := range pairs {
		rx := b.rings[2*p]
		for deadline := time.Now().Add(10 * time.Second); rx.UsedIdx() < 4; {
			if time.Now().After(deadline) {
				t.Fatalf("b's pair %d received %d of 4 frames", p, rx.UsedIdx())
			}
			time.Sleep(5 * time.Millisecond)
		}
		for k := range 4 {
			u, ok := rx.PopUsed()
			if !ok {
				t.Fatalf("pair %d: used element %d missing", p, k)
			}
			d := rx.BufAddr(uint16(u.ID), 0)
			f := rx.Bytes(d.Addr, uint64(u.Len))[hdrLen:]
			if src := f[11]; src != byte(0x10+p) {
				t.Errorf("b's pair %d got a frame from source %#x (pair %d's): steered to the wrong queue", p, src, int(src)-0x10)
			}
		}
	}
	if st := ports[1].DeviceStats(); st.RxPackets != 4*pairs {
		t.Errorf("b's device received %d frames, want %d", st.RxPackets, 4*pairs)
	}
	// A malformed ring breaks only its own queue: pair 2's transmit ring
	// names a descriptor beyond its table; the fault is counted and
	// signalled on that ring's error eventfd, and pair 0 forwards on.
	errFD, err := virtio.NewEventFD(true)
	if err != nil {
		t.Fatal(err)
	}
	defer errFD.Close()
	if err := a.f.SetVringErr(5, errFD.FD()); err != nil {
		t.Fatal(err)
	}
	a.rings[5].Push(qSize + 3)
	if err := a.kick[5].Signal(); err != nil {
		t.Fatal(err)
	}
	if !waitFD(errFD, 10_000) {
		t.Fatal("no error signal for the malformed ring")
	}
	if st := ports[0].DeviceStats(); st.Faults != 1 {
		t.Errorf("a's device counted %d faults, want 1", st.Faults)
	}
	rx := b.rings[0]
	before := rx.UsedIdx()
	rx.Push(rx.AddChain(virtiotest.Buf{Len: 2048, Write: true}))
	tx := a.rings[1]
	tx.Push(tx.AddChain(virtiotest.Buf{Data: append(make([]byte, hdrLen), ethFrame(0xff, 0x10, 9)...)}))
	if err := a.kick[1].Signal(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); rx.UsedIdx() == before; {
		if time.Now().After(deadline) {
			t.Fatal("pair 0 stopped forwarding after pair 2's fault")
		}
		time.Sleep(5 * time.Millisecond)
	}

	// GET_VRING_BASE stops a ring: pair 1's receive ring stopped, pairs
	// 1 and 2 are no longer targets.
	if _, err := b.f.GetVringBase(2); err != nil {
		t.Fatal(err)
	}
	waitActive(ports[1], 1)
}
