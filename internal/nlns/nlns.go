// Package nlns builds network namespaces for tests with netlink and
// setns only, no iproute2: the nested test host, where tests run when
// this kernel lacks a feature (802.1Q, bonding), has u-root's ip (no `ip
// netns`, no VLAN or bond links) and no nsenter. Namespaces are
// anonymous (held by a file descriptor); programs run in one by being
// started from an OS thread that joined it, which the child inherits.
package nlns

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	nsh "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NS is a network namespace created by a test.
type NS struct {
	Name string
	FD   nsh.NsHandle
	H    *netlink.Handle // netlink in the namespace
}

// New creates a namespace with lo up. It goes away at cleanup, with the
// links in it (a veth's other end too).
func New(t testing.TB, name string) *NS {
	t.Helper()
	var fd nsh.NsHandle
	err := LockedThread(func() error {
		var err error
		fd, err = nsh.New() // unshare(CLONE_NEWNET) of this thread
		return err
	})
	if err != nil {
		t.Fatalf("new network namespace %s: %v", name, err)
	}
	h, err := netlink.NewHandleAt(fd, unix.NETLINK_ROUTE) // only rtnetlink: L1 lacks xfrm and nfnetlink
	if err != nil {
		fd.Close()
		t.Fatalf("netlink in namespace %s: %v", name, err)
	}
	n := &NS{Name: name, FD: fd, H: h}
	t.Cleanup(func() { h.Close(); fd.Close() })
	n.Up(t, "lo")
	return n
}

// LockedThread runs f on a goroutine locked to an OS thread that is never
// unlocked, so the thread ends with the goroutine and whatever f did to it
// (setns, unshare) never reaches other goroutines.
func LockedThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- f()
	}()
	return <-errc
}

// Do runs f on a thread in n. Sockets f opens stay in n; processes it
// starts run in n.
func (n *NS) Do(f func() error) error {
	return LockedThread(func() error {
		if err := nsh.Set(n.FD); err != nil {
			return fmt.Errorf("setns %s: %w", n.Name, err)
		}
		return f()
	})
}

// Link returns the link called name in n.
func (n *NS) Link(t testing.TB, name string) netlink.Link {
	t.Helper()
	l, err := n.H.LinkByName(name)
	if err != nil {
		t.Fatalf("%s: link %s: %v", n.Name, name, err)
	}
	return l
}

// Up sets a link up.
func (n *NS) Up(t testing.TB, name string) {
	t.Helper()
	if err := n.H.LinkSetUp(n.Link(t, name)); err != nil {
		t.Fatalf("%s: %s up: %v", n.Name, name, err)
	}
}

// Down sets a link down.
func (n *NS) Down(t testing.TB, name string) {
	t.Helper()
	if err := n.H.LinkSetDown(n.Link(t, name)); err != nil {
		t.Fatalf("%s: %s down: %v", n.Name, name, err)
	}
}

// Addr adds an address (CIDR) to a link.
func (n *NS) Addr(t testing.TB, name, cidr string) {
	t.Helper()
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.H.AddrAdd(n.Link(t, name), a); err != nil {
		t.Fatalf("%s: address %s on %s: %v", n.Name, cidr, name, err)
	}
}

// SetMAC sets a link's MAC.
func (n *NS) SetMAC(t testing.TB, name, mac string) {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.H.LinkSetHardwareAddr(n.Link(t, name), hw); err != nil {
		t.Fatalf("%s: MAC %s on %s: %v", n.Name, mac, name, err)
	}
}

// Master puts link name into the bridge or bond master.
func (n *NS) Master(t testing.TB, name, master string) {
	t.Helper()
	if err := n.H.LinkSetMaster(n.Link(t, name), n.Link(t, master)); err != nil {
		t.Fatalf("%s: %s master %s: %v", n.Name, name, master, err)
	}
}

// Add creates a link in n.
func (n *NS) Add(t testing.TB, l netlink.Link) {
	t.Helper()
	if err := n.H.LinkAdd(l); err != nil {
		t.Fatalf("%s: add %s %s: %v", n.Name, l.Type(), l.Attrs().Name, err)
	}
}

// Veth creates a veth pair: local in the test's namespace, peer in n,
// both up. local is deleted at cleanup.
func Veth(t testing.TB, local string, n *NS, peer string) {
	t.Helper()
	v := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: local},
		PeerName:      peer,
		PeerNamespace: netlink.NsFd(n.FD),
	}
	if err := netlink.LinkAdd(v); err != nil {
		t.Fatalf("veth %s <-> %s/%s: %v", local, n.Name, peer, err)
	}
	t.Cleanup(func() { netlink.LinkDel(v) })
	if err := netlink.LinkSetUp(v); err != nil {
		t.Fatalf("%s up: %v", local, err)
	}
	n.Up(t, peer)
}

// VethBetween creates a veth pair a (in na) <-> b (in nb), both up.
func VethBetween(t testing.TB, na *NS, a string, nb *NS, b string) {
	t.Helper()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a}, PeerName: b, PeerNamespace: netlink.NsFd(nb.FD)}
	na.Add(t, v)
	na.Up(t, a)
	nb.Up(t, b)
}

// Start starts a program in n. No Pdeathsig: it would fire when the
// starting thread ends, right away.
func (n *NS) Start(out *bytes.Buffer, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	err := n.Do(cmd.Start)
	return cmd, err
}

// Run runs a program in n and returns its output.
func (n *NS) Run(args ...string) (string, error) {
	var out bytes.Buffer
	cmd, err := n.Start(&out, args...)
	if err != nil {
		return "", err
	}
	err = cmd.Wait()
	return out.String(), err
}

// ReadFile reads a file from a thread in n: /proc/thread-self/net/...
// shows n's view.
func (n *NS) ReadFile(path string) (string, error) {
	var b []byte
	err := n.Do(func() (err error) {
		b, err = os.ReadFile(path)
		return err
	})
	return string(b), err
}

var icmpID atomic.Uint32

// Pinger sends ICMP echo requests from a namespace (from Go: the ping
// programs of the host and of the nested test host take different flags).
type Pinger struct {
	c  net.PacketConn
	id uint16
	// next is the next sequence number: every request of the Pinger has
	// its own, so a reply that comes after its call gave up (it sits in
	// the socket) is never taken for one of a later call's.
	next uint16
}

// Pinger opens an ICMP socket in n; it is closed at cleanup.
func (n *NS) Pinger(t testing.TB) *Pinger {
	t.Helper()
	var c net.PacketConn
	err := n.Do(func() (err error) {
		c, err = net.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	})
	if err != nil {
		t.Fatalf("%s: ICMP socket: %v", n.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return &Pinger{c: c, id: uint16(icmpID.Add(1)) ^ uint16(os.Getpid())}
}

func (p *Pinger) send(to *net.IPAddr, seq uint16) error {
	// RFC 792: type 8 (echo), code 0, checksum, identifier, sequence.
	var req [40]byte
	req[0] = 8
	binary.BigEndian.PutUint16(req[4:], p.id)
	binary.BigEndian.PutUint16(req[6:], seq)
	binary.BigEndian.PutUint16(req[2:], Checksum(req[:]))
	_, err := p.c.WriteTo(req[:], to)
	return err
}

// Echo sends up to tries echo requests to dst, each waiting wait for its
// reply, and reports whether one came back.
func (p *Pinger) Echo(dst string, tries int, wait time.Duration) bool {
	to := &net.IPAddr{IP: net.ParseIP(dst)}
	buf := make([]byte, 2048)
	for range tries {
		seq := p.next
		p.next++
		p.send(to, seq)
		p.c.SetReadDeadline(time.Now().Add(wait))
		for {
			m, from, err := p.c.ReadFrom(buf) // the IPv4 header is stripped
			if err != nil {
				break
			}
			if ip, ok := from.(*net.IPAddr); !ok || !ip.IP.Equal(to.IP) || m < 8 {
				continue
			}
			if buf[0] == 0 && binary.BigEndian.Uint16(buf[4:]) == p.id && binary.BigEndian.Uint16(buf[6:]) == seq {
				return true
			}
		}
	}
	return false
}

// Flood sends count echo requests to dst, one every interval, and counts
// the distinct replies and the duplicates (a reply to a sequence number
// already answered) that come until wait after the last request, or after
// the last missing reply, should that come later: replies missing at wait
// are waited for up to FloodLate after the last request (a loaded machine
// can hold a forwarder for seconds; a reply that comes late was not
// lost). A call whose replies all came in time takes as long as before.
func (p *Pinger) Flood(dst string, count int, interval, wait time.Duration) (replies, dups int) {
	to := &net.IPAddr{IP: net.ParseIP(dst)}
	seen := make([]bool, count)
	base := p.next
	p.next += uint16(count)
	var mu sync.Mutex // orders the deadline calls: all replies in, all requests out
	var sent bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			m, from, err := p.c.ReadFrom(buf)
			if err != nil {
				return
			}
			if ip, ok := from.(*net.IPAddr); !ok || !ip.IP.Equal(to.IP) || m < 8 || buf[0] != 0 || binary.BigEndian.Uint16(buf[4:]) != p.id {
				continue
			}
			seq := int(binary.BigEndian.Uint16(buf[6:]) - base)
			if seq >= count {
				continue // an earlier call's, late
			}
			if seen[seq] {
				dups++
				continue
			}
			mu.Lock()
			seen[seq] = true
			replies++
			if replies == count && sent {
				// The last one came late: duplicates for wait more.
				p.c.SetReadDeadline(time.Now().Add(wait))
			}
			mu.Unlock()
		}
	}()
	p.c.SetReadDeadline(time.Time{})
	next := time.Now()
	for seq := range count {
		p.send(to, base+uint16(seq))
		next = next.Add(interval)
		time.Sleep(time.Until(next))
	}
	mu.Lock()
	sent = true
	if replies == count {
		p.c.SetReadDeadline(time.Now().Add(wait))
	} else {
		p.c.SetReadDeadline(time.Now().Add(max(wait, FloodLate)))
	}
	mu.Unlock()
	<-done
	return replies, dups
}

// FloodLate is how long after its last request Flood waits for replies
// still missing.
const FloodLate = 5 * time.Second

// Checksum is the Internet checksum (RFC 1071).
func Checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
