package soak

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	nsh "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// As root the test binary re-executes itself in a fresh network namespace
// (CLONE_NEWNET), so the uplink's veth pair and everything else the soak
// creates live there; the uplink's peer is in a further namespace. Nothing
// touches the host's interfaces. Without root the uplink part is skipped.
const netnsEnv = "HVNET_SOAK_NETNS"

func TestMain(m *testing.M) {
	if os.Geteuid() == 0 && os.Getenv(netnsEnv) == "" {
		cmd := exec.Command(os.Args[0], os.Args[1:]...)
		cmd.Env = append(os.Environ(), netnsEnv+"=1")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
		if err := cmd.Run(); err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				os.Exit(ee.ExitCode())
			}
			fmt.Fprintln(os.Stderr, "re-exec in a new network namespace:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func inPrivateNetns() bool { return os.Getenv(netnsEnv) != "" }

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
	sent     atomic.Uint64
	received atomic.Uint64
	refused  atomic.Uint64 // sends the kernel refused (not counted as sent)
	wg       sync.WaitGroup
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// newPeer creates the peer namespace and the veth pair (uplinkIf here,
// peerIf there, both up) and opens the peer's socket.
func newPeer(mac [6]byte) (_ *peer, err error) {
	p := &peer{fd: -1, mac: mac}
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
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(etherTyp)))
		if err != nil {
			return err
		}
		p.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(etherTyp), Ifindex: idx}); err != nil {
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

// run sends 32-frame bursts to other every millisecond until ctx ends, and
// counts frames from other until rxStop is closed.
func (p *peer) run(ctx context.Context, rxStop <-chan struct{}, other [6]byte) {
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		var fr [frameSz]byte
		copy(fr[:], other[:])
		copy(fr[6:], p.mac[:])
		fr[12], fr[13] = etherTyp>>8, etherTyp&0xff
		var seq uint32
		for ctx.Err() == nil {
			for range 32 {
				fr[14], fr[15], fr[16], fr[17] = byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq)
				if _, err := unix.Write(p.fd, fr[:]); err != nil {
					p.refused.Add(1)
					continue
				}
				seq++
				p.sent.Add(1)
			}
			time.Sleep(time.Millisecond)
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
			if n >= 14 && [6]byte(b[6:12]) == other && b[12] == etherTyp>>8 && b[13] == etherTyp&0xff {
				p.received.Add(1)
			}
		}
	}()
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
