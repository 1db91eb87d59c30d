package vhost

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/vhostuser/frontend"
	"github.com/hvnet/hvnet/virtio"
	vnet "github.com/hvnet/hvnet/virtio/net"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

// Hostile rings: a frontend that feeds its transmit ring
// descriptor loops, out-of-range heads and next indices and an available
// index that jumps more than a ring ahead stops that queue: the backend
// signals the ring's error eventfd (SET_VRING_ERR, vhost-user's "device
// needs reset") and counts a fault. Bad chains (addresses outside its
// memory or wrapping the address space, device-writable buffers on
// transmit, huge lengths, runts) are each dropped, counted and used; the
// queue goes on. Only the hostile port is affected: TestHostileRings
// checks that two other ports keep forwarding, BenchmarkNextToHostile
// measures them next to it.

// faultRings are malformed transmit rings; each must stop the queue.
var faultRings = []struct {
	name string
	feed func(d *virtiotest.Driver, buf uint64)
}{
	{"desc-loop", func(d *virtiotest.Driver, buf uint64) { // 0 -> 1 -> 0 (§2.7.5.3.1)
		d.SetDesc(0, virtiotest.Desc{Addr: buf, Len: 72, Flags: virtio.DescFNext, Next: 1})
		d.SetDesc(1, virtiotest.Desc{Addr: buf, Len: 72, Flags: virtio.DescFNext, Next: 0})
		d.Push(0)
	}},
	{"next-out-of-range", func(d *virtiotest.Driver, buf uint64) {
		d.SetDesc(0, virtiotest.Desc{Addr: buf, Len: 72, Flags: virtio.DescFNext, Next: 200})
		d.Push(0)
	}},
	{"head-out-of-range", func(d *virtiotest.Driver, buf uint64) { d.Push(999) }},
	{"avail-jump", func(d *virtiotest.Driver, buf uint64) { // more than a ring ahead (§2.7.6)
		d.SetDesc(0, virtiotest.Desc{Addr: buf, Len: 72})
		d.SetAvailIdx(d.AvailIdx() + 1000)
	}},
}

// badChains are transmit chains the backend must drop and count (the
// ring stays usable); buf is a valid 2 KiB buffer.
func badChains(buf uint64) []virtiotest.Desc {
	return []virtiotest.Desc{
		{Addr: 1 << 40, Len: 64},                       // outside the memory table
		{Addr: guestBase + guestSize - 32, Len: 64},    // straddles its end
		{Addr: ^uint64(0) - 63, Len: 256},              // wraps the address space
		{Addr: buf, Len: 72, Flags: virtio.DescFWrite}, // device-writable on transmit
		{Addr: buf, Len: 0xffff_ffff},                  // huge length
		{Addr: buf, Len: 8},                            // runt: shorter than the header
		{Addr: buf, Len: hdrLen + 6},                   // runt: shorter than an Ethernet header
	}
}

// openHostile dials sock, negotiates like QEMU and hands over an error
// eventfd for the transmit ring.
func openHostile(sock string) (*guest, *virtio.EventFD, error) {
	f, err := frontend.Dial(sock)
	if err != nil {
		return nil, nil, err
	}
	g, err := newGuest(f)
	if err != nil {
		return nil, nil, err
	}
	if err := g.negotiate(); err != nil {
		g.close()
		return nil, nil, fmt.Errorf("negotiate: %w", err)
	}
	errFD, err := virtio.NewEventFD(false)
	if err != nil {
		g.close()
		return nil, nil, err
	}
	if err := g.f.SetVringErr(1, errFD.FD()); err != nil {
		errFD.Close()
		g.close()
		return nil, nil, fmt.Errorf("SET_VRING_ERR: %w", err)
	}
	return g, errFD, nil
}

// waitFD waits up to ms for e to be signalled and reads it.
func waitFD(e *virtio.EventFD, ms int) bool {
	fds := []unix.PollFd{{Fd: int32(e.FD()), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n == 0 {
			return false
		}
		e.Read()
		return true
	}
}

// feedBad makes the bad chains and one good frame from src to dst
// available, kicks, and waits until all are used (10 s guard).
func feedBad(g *guest, dst, src, seq byte) error {
	g.tx.FreeAll()
	buf := g.tx.Alloc(2048)
	good := g.tx.Alloc(hdrLen + 60)
	gb := g.tx.Bytes(good, hdrLen+60)
	clear(gb[:hdrLen])
	copy(gb[hdrLen:], ethFrame(dst, src, seq))
	bad := badChains(buf)
	for i, d := range append(bad, virtiotest.Desc{Addr: good, Len: hdrLen + 60}) {
		g.tx.SetDesc(uint16(i), d)
		g.tx.Push(uint16(i))
	}
	return kickAndDrain(g)
}

// feedGood makes n good frames from src to dst available, kicks, and
// waits until all are used.
func feedGood(g *guest, n int, dst, src, seq byte) error {
	g.tx.FreeAll()
	good := append(make([]byte, hdrLen), ethFrame(dst, src, seq)...)
	for range n {
		g.tx.Push(g.tx.AddChain(virtiotest.Buf{Data: good}))
	}
	return kickAndDrain(g)
}

func kickAndDrain(g *guest) error {
	if err := g.kick[1].Signal(); err != nil {
		return err
	}
	for g.tx.UsedIdx() != g.tx.AvailIdx() {
		if !g.waitCall(1) {
			return fmt.Errorf("transmit chains not used in 10 s (used %d of %d)", g.tx.UsedIdx(), g.tx.AvailIdx())
		}
	}
	return nil
}

// feedFault feeds fault case i and waits for the error eventfd.
func feedFault(g *guest, errFD *virtio.EventFD, i int) error {
	c := faultRings[i%len(faultRings)]
	g.tx.FreeAll()
	c.feed(g.tx, g.tx.Alloc(2048))
	if err := g.kick[1].Signal(); err != nil {
		return err
	}
	if !waitFD(errFD, 10_000) {
		return fmt.Errorf("%s: no error signal in 10 s", c.name)
	}
	return nil
}

func TestHostileRings(t *testing.T) {
	hb := newHostileBed(t)
	sock := hb.victim.Socket
	session := func(when string, fn func(g *guest, errFD *virtio.EventFD) error) vnet.Stats {
		t.Helper()
		g, errFD, err := openHostile(sock)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		defer errFD.Close()
		waitFor(t, hb.ev.up, "the hostile frontend's session")
		if err := fn(g, errFD); err != nil {
			g.close()
			t.Fatalf("%s: %v", when, err)
		}
		hb.flows(t, when)
		g.close()
		waitFor(t, hb.ev.down, "the hostile frontend's session end")
		st, ok := hb.port.LastStats()
		if !ok {
			t.Fatalf("%s: no session counters", when)
		}
		return st
	}
	for i, c := range faultRings {
		st := session(c.name, func(g *guest, errFD *virtio.EventFD) error { return feedFault(g, errFD, i) })
		if st.Faults != 1 || st.TxPackets != 0 {
			t.Errorf("%s: faults %d tx packets %d, want 1 and 0", c.name, st.Faults, st.TxPackets)
		}
	}
	nBad := len(badChains(0))
	st := session("bad chains", func(g *guest, errFD *virtio.EventFD) error {
		hb.b.postRx(1) // b gets the good frame that follows them
		if err := feedBad(g, 2, 3, 0x42); err != nil {
			return err
		}
		if waitFD(errFD, 0) {
			return errors.New("bad chains stopped the queue")
		}
		if got := hb.b.recv(1)[0]; got[11] != 3 || got[14] != 0x42 {
			return fmt.Errorf("b received % x, want the hostile port's good frame", got)
		}
		return nil
	})
	drops := st.TxDropBadChain + st.TxDropRunt + st.TxDropOversize + st.TxDropBadHeader
	if st.Faults != 0 || st.TxPackets != 1 || drops != uint64(nBad) {
		t.Errorf("bad chains: faults %d tx packets %d drops %d (%+v), want 0, 1, %d", st.Faults, st.TxPackets, drops, st, nBad)
	}
	// After all that, a well-behaved session on the same port works.
	st = session("a well-behaved session after", func(g *guest, errFD *virtio.EventFD) error {
		hb.b.postRx(1)
		if err := feedGood(g, 1, 2, 3, 0x43); err != nil {
			return err
		}
		if got := hb.b.recv(1)[0]; got[11] != 3 || got[14] != 0x43 {
			return fmt.Errorf("b received % x, want the hostile port's good frame", got)
		}
		return nil
	})
	if st.Faults != 0 || st.TxPackets != 1 {
		t.Errorf("well-behaved session: faults %d tx packets %d, want 0 and 1", st.Faults, st.TxPackets)
	}
}

// neighbourPace is how often the neighbour in BenchmarkNextToHostile
// starts a round.
const neighbourPace = 2 * time.Millisecond

// neighbour is the third port's frontend in BenchmarkNextToHostile: every
// neighbourPace a new session (the vhost-user counterpart of a device
// reset) that either feeds the bad chains and one fault case (hostile) or
// the same number of well-formed frames and one more (benign: the same
// sessions, kicks and chains, minus the malformed input).
type neighbour struct {
	sock    string
	hostile bool
	rounds  atomic.Int64
	mu      sync.Mutex
	err     error
}

func (n *neighbour) run(stop <-chan struct{}) {
	next := time.Now()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-time.After(time.Until(next)):
		}
		next = next.Add(neighbourPace)
		if err := n.round(i); err != nil {
			n.mu.Lock()
			if n.err == nil {
				n.err = err
			}
			n.mu.Unlock()
			return
		}
		n.rounds.Add(1)
	}
}

func (n *neighbour) round(i int) error {
	g, errFD, err := openHostile(n.sock)
	if err != nil {
		return err
	}
	defer errFD.Close()
	defer g.close()
	// Its frames go to an address nobody has, on a VLAN of its own.
	if !n.hostile {
		if err := feedGood(g, len(badChains(0))+1, 9, 3, byte(i)); err != nil {
			return err
		}
		return feedGood(g, 1, 9, 3, byte(i))
	}
	if err := feedBad(g, 9, 3, byte(i)); err != nil {
		return err
	}
	return feedFault(g, errFD, i)
}

// BenchmarkNextToHostile is BenchmarkForward's victims (two ports, VLAN
// 10) with a third port on the same switch (VLAN 20): quiet (no frontend),
// hostile, benign (see neighbour), or racing (racingNeighbour: rewrites
// its frames' headers while the switch forwards them). Compare ns/frame
// across them: ./run.sh bench hostile runs it interleaved and prints the
// ratios.
func BenchmarkNextToHostile(b *testing.B) {
	for _, mode := range []string{"quiet", "hostile", "benign", "racing"} {
		b.Run(mode, func(b *testing.B) {
			sw := vswitch.New(vswitch.Config{})
			_, sockA := testPort(b, sw, "a", 10)
			_, sockB := testPort(b, sw, "b", 10)
			// The neighbour's port logs a fault per session: not here.
			hcfg := PortConfig{Port: vswitch.PortConfig{Name: "h", PVID: 20}, Socket: filepath.Join(b.TempDir(), "h.sock"), Logger: hclog.NewNullLogger()}
			startPort(b, sw, hcfg)
			var n *neighbour
			var rn *racingNeighbour
			stop := make(chan struct{})
			done := make(chan struct{})
			if mode == "racing" {
				rn = &racingNeighbour{sock: hcfg.Socket}
				go func() { defer close(done); rn.run(stop) }()
			} else if mode != "quiet" {
				n = &neighbour{sock: hcfg.Socket, hostile: mode == "hostile"}
				go func() { defer close(done); n.run(stop) }()
			} else {
				close(done)
			}
			forwardLoop(b, dialGuest(b, sockA), dialGuest(b, sockB))
			close(stop)
			<-done
			if n != nil {
				if n.err != nil {
					b.Fatalf("neighbour: %v", n.err)
				}
				b.ReportMetric(float64(n.rounds.Load())/b.Elapsed().Seconds(), "rounds/s")
			}
			if rn != nil {
				if rn.err != nil {
					b.Fatalf("racing neighbour: %v", rn.err)
				}
				b.ReportMetric(float64(rn.rounds.Load())/b.Elapsed().Seconds(), "rounds/s")
			}
		})
	}
}
