package soak

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	nsh "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/internal/netnstest"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/uplink"
)

// As root the tests run in a private network namespace
// (netnstest.Main), so the uplink's veth pair and everything else the soak
// creates live there; the uplink's peer is in a further namespace. Nothing
// touches the host's interfaces. Without root the uplink part is skipped.
func TestMain(m *testing.M) { netnstest.Main(m) }

// lockedThread runs f on a goroutine locked to an OS thread that is never
// unlocked: the thread ends with the goroutine, and whatever f did to it
// (unshare, setns) never reaches other goroutines.
func lockedThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- f()
	}()
	return <-errc
}

// noIPv6 turns IPv6 off in the calling thread's namespace, so the kernel
// sends nothing of its own (DAD, MLD) on the veth pair: every frame on it
// is the soak's.
func noIPv6() error {
	for _, k := range []string{"all", "default"} {
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+k+"/disable_ipv6", []byte("1"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

const (
	uplinkIf = "soakup0" // the uplink's end, in the test's namespace
	peerIf   = "eth0"    // the peer's end, in the peer namespace
	etherTyp = 0x88b5
)

// peer is the far end of the uplink: an AF_PACKET socket on peerIf in its
// own namespace that sends frames to dst and counts frames from src.
type peer struct {
	ns       nsh.NsHandle
	h        *netlink.Handle
	fd       int
	mac      [6]byte
	proto    uint16        // frames it counts: etherTyp, or ETH_P_ALL (any)
	burst    int           // frames sent at a time (default 32)
	every    time.Duration // between bursts (default 1 ms)
	sent     atomic.Uint64
	received atomic.Uint64
	refused  atomic.Uint64 // sends the kernel refused (not counted as sent)
	downSent atomic.Uint64 // sent while a flap had the link down (flap)
	wg       sync.WaitGroup
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// newPeer creates the peer namespace and the veth pair (uplinkIf here,
// peerIf there, both up) and opens the peer's socket, which receives
// frames of EtherType proto (unix.ETH_P_ALL: every frame).
func newPeer(mac [6]byte, proto uint16) (_ *peer, err error) {
	p := &peer{fd: -1, mac: mac, proto: proto, burst: 32, every: time.Millisecond}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	p.ns = -1
	if err := noIPv6(); err != nil {
		return nil, fmt.Errorf("disable IPv6: %w", err)
	}
	if err := lockedThread(func() error {
		var err error
		if p.ns, err = nsh.New(); err != nil { // unshare(CLONE_NEWNET) of this thread
			return err
		}
		return noIPv6()
	}); err != nil {
		return nil, fmt.Errorf("peer namespace: %w", err)
	}
	if p.h, err = netlink.NewHandleAt(p.ns, unix.NETLINK_ROUTE); err != nil {
		return nil, fmt.Errorf("netlink in peer namespace: %w", err)
	}
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: uplinkIf}, PeerName: peerIf, PeerNamespace: netlink.NsFd(p.ns)}
	if err := netlink.LinkAdd(v); err != nil {
		return nil, fmt.Errorf("veth %s <-> %s: %w", uplinkIf, peerIf, err)
	}
	if err := setUp(netlink.LinkSetUp, nil, uplinkIf); err != nil {
		return nil, err
	}
	if l, err := p.h.LinkByName(peerIf); err != nil || p.h.LinkSetHardwareAddr(l, mac[:]) != nil {
		return nil, fmt.Errorf("%s: MAC: %v", peerIf, err)
	}
	if err := setUp(p.h.LinkSetUp, p.h, peerIf); err != nil {
		return nil, err
	}
	l, err := p.h.LinkByName(peerIf)
	if err != nil {
		return nil, err
	}
	idx := l.Attrs().Index
	err = lockedThread(func() error {
		if err := nsh.Set(p.ns); err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(proto)))
		if err != nil {
			return err
		}
		p.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: idx}); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20); err != nil {
			return err
		}
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 20_000})
	})
	if err != nil {
		return nil, fmt.Errorf("peer socket: %w", err)
	}
	return p, nil
}

func setUp(up func(netlink.Link) error, h *netlink.Handle, name string) error {
	var l netlink.Link
	var err error
	if h != nil {
		l, err = h.LinkByName(name)
	} else {
		l, err = netlink.LinkByName(name)
	}
	if err != nil {
		return err
	}
	if err := up(l); err != nil {
		return fmt.Errorf("%s up: %w", name, err)
	}
	return nil
}

// flap takes the uplink's interface down for d, then up again.
func flap(d time.Duration) error {
	l, err := netlink.LinkByName(uplinkIf)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetDown(l); err != nil {
		return err
	}
	time.Sleep(d)
	return netlink.LinkSetUp(l)
}

// flap takes the uplink's link down for d and up again (flap), then waits
// until the peer's end is operational again: the kernel's linkwatch has
// put its queueing discipline back. Until then the peer's sends go to the
// noop qdisc, which drops them without a count and reports success (not
// even tx_dropped shows them), so what the peer sent from the flap's start
// to that point is recorded (downSent): the bound on frames lost at a flap
// uncounted.
func (p *peer) flap(d time.Duration) error {
	s0 := p.sent.Load()
	if err := flap(d); err != nil {
		return err
	}
	for deadline := time.Now().Add(30 * time.Second); ; { // ends when it is up: room for a loaded machine
		l, err := p.h.LinkByName(peerIf)
		if err == nil && l.Attrs().OperState == netlink.OperUp {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not operational 30 s after a flap (err %v)", peerIf, err)
		}
		time.Sleep(time.Millisecond)
	}
	p.downSent.Add(p.sent.Load() - s0)
	return nil
}

// txDropped is the kernel's tx_dropped count of an interface: a veth
// counts there the frames it could not pass to its peer (peer down).
func txDropped(h *netlink.Handle, name string) uint64 {
	var l netlink.Link
	var err error
	if h != nil {
		l, err = h.LinkByName(name)
	} else {
		l, err = netlink.LinkByName(name)
	}
	if err != nil || l.Attrs().Statistics == nil {
		return 0
	}
	return l.Attrs().Statistics.TxDropped
}

// socketDrops are the frames the kernel dropped at the peer's socket
// (receive buffer full): PACKET_STATISTICS, which resets on reading.
func (p *peer) socketDrops() uint64 {
	st, err := unix.GetsockoptTpacketStats(p.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return 0
	}
	return uint64(st.Drops)
}

// run sends bursts of p.burst frames to other every p.every until ctx
// ends, and counts frames from from (of p.proto) until rxStop is closed.
func (p *peer) run(ctx context.Context, rxStop <-chan struct{}, other, from [6]byte) {
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		var fr [frameSz]byte
		copy(fr[:], other[:])
		copy(fr[6:], p.mac[:])
		fr[12], fr[13] = etherTyp>>8, etherTyp&0xff
		var seq uint32
		for ctx.Err() == nil {
			for range p.burst {
				fr[14], fr[15], fr[16], fr[17] = byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq)
				if _, err := unix.Write(p.fd, fr[:]); err != nil {
					p.refused.Add(1)
					continue
				}
				seq++
				p.sent.Add(1)
			}
			time.Sleep(p.every)
		}
	}()
	go func() {
		defer p.wg.Done()
		var b [2048]byte
		for {
			n, err := unix.Read(p.fd, b[:])
			if err != nil {
				select {
				case <-rxStop:
					return
				default:
					continue // receive timeout: look again
				}
			}
			if n >= 14 && [6]byte(b[6:12]) == from && (p.proto == unix.ETH_P_ALL || b[12] == etherTyp>>8 && b[13] == etherTyp&0xff) {
				p.received.Add(1)
			}
		}
	}()
}

// settle waits, once the peer stopped sending, until the uplink's last
// frames have reached the peer and the peer's have left the uplink's
// receive ring (a block is handed over when full or at its timeout):
// 200 ms without a change. Then it stops the peer's receiver (closing
// rxStop) and waits for it.
func (p *peer) settle(up *uplink.Port, rxStop chan struct{}) {
	settled := func() uint64 { return p.received.Load() + up.Stats().RxFrames }
	for last, quiet := settled(), 0; quiet < 10; {
		time.Sleep(20 * time.Millisecond)
		if n := settled(); n == last {
			quiet++
		} else {
			last, quiet = n, 0
		}
	}
	close(rxStop)
	p.wait()
}

// wait returns once both goroutines ended.
func (p *peer) wait() { p.wg.Wait() }

func (p *peer) close() {
	if p.fd >= 0 {
		unix.Close(p.fd)
	}
	if p.h != nil {
		p.h.Close()
	}
	if l, err := netlink.LinkByName(uplinkIf); err == nil {
		netlink.LinkDel(l)
	}
	if p.ns >= 0 {
		p.ns.Close()
	}
}

// uplinkBooks is the uplink's share of a soak's books.
type uplinkBooks struct {
	sent, delivered uint64 // by the peer; to the peer
	kdrops          uint64 // counted by the kernel (sockets, veth tx_dropped)
	linkLost        uint64 // vanished at a flap uncounted (bounded: a burst per flap)
	unaccounted     uint64
}

// uplinkAccount checks the frames between the peer and the switch's
// uplink port pc (the peer's traffic has stopped and settled) against the
// uplink's and the kernel's counters, with nFlaps link flaps.
func uplinkAccount(t *testing.T, pr *peer, up *uplink.Port, pc vswitch.PortCounters, nFlaps int) uplinkBooks {
	t.Helper()
	var b uplinkBooks
	st := up.Stats()
	ps, prcv, sockDrops := pr.sent.Load(), pr.received.Load(), pr.socketDrops()
	upTxDrop, peerTxDrop := txDropped(nil, uplinkIf), txDropped(pr.h, peerIf)
	b.sent, b.delivered = ps, prcv
	// Peer -> switch: what the switch did not get was dropped by the
	// kernel: the uplink's socket (ring full), or the veth (the uplink's
	// end down: tx_dropped at the peer's end). The check is a bound (gap
	// <= tx_dropped); in the runs so far it was exact. tx_dropped also
	// counts the sends the peer saw refused (not counted as sent), so
	// those come off first.
	//
	// A send the kernel accepted while the link was down can also vanish
	// uncounted (a qdisc swapped to noop on carrier loss drops it and
	// reports success): those are bounded by what the peer sent while a
	// flap had the link down (peer.flap), plus a burst per flap in
	// flight at its start, and reported apart as "link-down, uncounted".
	bound := uint64(pr.burst)*uint64(nFlaps) + pr.downSent.Load()
	linkDown := peerTxDrop - min(peerTxDrop, pr.refused.Load())
	upGap := int64(ps) - int64(pc.RxPackets+st.RxKernelDrops+st.RxBad)
	uncounted := uint64(max(upGap-int64(linkDown), 0))
	if upGap < 0 || uncounted > bound {
		t.Errorf("uplink rx: peer sent %d, switch got %d, uplink socket drops %d bad %d, veth tx_dropped %d (refused %d)", ps, pc.RxPackets, st.RxKernelDrops, st.RxBad, peerTxDrop, pr.refused.Load())
		b.unaccounted += uint64(max(upGap, -upGap))
	} else {
		b.kdrops += uint64(upGap) - uncounted + st.RxKernelDrops + st.RxBad
		b.linkLost += uncounted
	}
	// Switch -> peer: the switch's TxPackets on the uplink are what the
	// kernel accepted (sendmmsg); not received means dropped at the veth
	// (peer's end unreachable: tx_dropped) or at the peer's socket
	// (buffer full).
	downGap := int64(pc.TxPackets) - int64(prcv+sockDrops)
	if downGap < 0 || uint64(downGap) > upTxDrop {
		t.Errorf("uplink tx: switch sent %d, peer received %d, socket drops %d, veth tx_dropped %d", pc.TxPackets, prcv, sockDrops, upTxDrop)
		b.unaccounted += uint64(max(downGap, -downGap))
	} else {
		b.kdrops += uint64(downGap) + sockDrops
	}
	t.Logf("uplink: peer->switch link-down drops %d, tx_dropped shows %d (uncounted %d, bound %d: sent while down %d + a burst of %d per flap)",
		max(upGap, 0), linkDown, uncounted, bound, pr.downSent.Load(), pr.burst)
	t.Logf("uplink: flaps %d attaches %d peer sent %d (refused %d) received %d; switch rx %d tx %d drops %v; uplink %+v; kernel: veth tx_dropped up %d peer %d, peer socket drops %d",
		nFlaps, st.Attaches, ps, pr.refused.Load(), prcv, pc.RxPackets, pc.TxPackets, pc.Drops, st, upTxDrop, peerTxDrop, sockDrops)
	return b
}
