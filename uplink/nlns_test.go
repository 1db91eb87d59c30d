package uplink

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	nsh "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"hvnet/internal/netnstest"
	vswitch "hvnet/switch"
	"hvnet/vmtest"
)

// Helpers for the tests that build real 802.1Q topologies. They use only
// netlink and setns from Go, no iproute2: the nested test host, where these
// tests run when this kernel lacks 802.1Q, has u-root's ip (no `ip netns`,
// no VLAN links) and no nsenter. Namespaces are anonymous (held by a file
// descriptor); programs run in one by being started from an OS thread that
// joined it, which the child inherits.

// nsT is a network namespace created by the test.
type nsT struct {
	name string
	fd   nsh.NsHandle
	h    *netlink.Handle // netlink in the namespace
}

// newNS creates a namespace with lo up. It goes away at cleanup, with the
// links in it (a veth's other end too).
func newNS(t testing.TB, name string) *nsT {
	t.Helper()
	var fd nsh.NsHandle
	err := lockedThread(func() error {
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
	n := &nsT{name: name, fd: fd, h: h}
	t.Cleanup(func() { h.Close(); fd.Close() })
	n.up(t, "lo")
	return n
}

// lockedThread runs f on a goroutine locked to an OS thread that is never
// unlocked, so the thread ends with the goroutine and whatever f did to it
// (setns, unshare) never reaches other goroutines.
func lockedThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- f()
	}()
	return <-errc
}

// do runs f on a thread in n. Sockets f opens stay in n; processes it
// starts run in n.
func (n *nsT) do(f func() error) error {
	return lockedThread(func() error {
		if err := nsh.Set(n.fd); err != nil {
			return fmt.Errorf("setns %s: %w", n.name, err)
		}
		return f()
	})
}

func (n *nsT) link(t testing.TB, name string) netlink.Link {
	t.Helper()
	l, err := n.h.LinkByName(name)
	if err != nil {
		t.Fatalf("%s: link %s: %v", n.name, name, err)
	}
	return l
}

func (n *nsT) up(t testing.TB, name string) {
	t.Helper()
	if err := n.h.LinkSetUp(n.link(t, name)); err != nil {
		t.Fatalf("%s: %s up: %v", n.name, name, err)
	}
}

func (n *nsT) addr(t testing.TB, name, cidr string) {
	t.Helper()
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.h.AddrAdd(n.link(t, name), a); err != nil {
		t.Fatalf("%s: address %s on %s: %v", n.name, cidr, name, err)
	}
}

func (n *nsT) setMAC(t testing.TB, name, mac string) {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.h.LinkSetHardwareAddr(n.link(t, name), hw); err != nil {
		t.Fatalf("%s: MAC %s on %s: %v", n.name, mac, name, err)
	}
}

// vlan creates an 802.1Q (or, with proto 802.1ad, an S-VLAN) subinterface
// name of parent with vid, and brings it up: `ip link add link PARENT name
// NAME type vlan proto PROTO id VID`.
func (n *nsT) vlan(t testing.TB, parent, name string, vid int, proto netlink.VlanProtocol) {
	t.Helper()
	l := &netlink.Vlan{
		LinkAttrs:    netlink.LinkAttrs{Name: name, ParentIndex: n.link(t, parent).Attrs().Index},
		VlanId:       vid,
		VlanProtocol: proto,
	}
	if err := n.h.LinkAdd(l); err != nil {
		t.Fatalf("%s: VLAN %s (%s %d on %s): %v", n.name, name, proto, vid, parent, err)
	}
	n.up(t, name)
}

// vethInto creates a veth pair: local in the test's namespace, peer in n,
// both up. local is deleted at cleanup.
func vethInto(t testing.TB, local string, n *nsT, peer string) {
	t.Helper()
	v := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: local},
		PeerName:      peer,
		PeerNamespace: netlink.NsFd(n.fd),
	}
	if err := netlink.LinkAdd(v); err != nil {
		t.Fatalf("veth %s <-> %s/%s: %v", local, n.name, peer, err)
	}
	t.Cleanup(func() { netlink.LinkDel(v) })
	if err := netlink.LinkSetUp(v); err != nil {
		t.Fatalf("%s up: %v", local, err)
	}
	n.up(t, peer)
}

// start starts a program in n. No Pdeathsig: it would fire when the
// starting thread ends, right away.
func (n *nsT) start(out *bytes.Buffer, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	err := n.do(cmd.Start)
	return cmd, err
}

// run runs a program in n and returns its output.
func (n *nsT) run(args ...string) (string, error) {
	var out bytes.Buffer
	cmd, err := n.start(&out, args...)
	if err != nil {
		return "", err
	}
	err = cmd.Wait()
	return out.String(), err
}

var icmpID atomic.Uint32

// echo sends ICMP echo requests from n to dst, up to tries of them, each
// waiting wait for its reply, and reports whether one came back. (ICMP from
// Go: the ping programs of the host and of the nested host take different
// flags.)
func (n *nsT) echo(t testing.TB, dst string, tries int, wait time.Duration) bool {
	t.Helper()
	var c net.PacketConn
	err := n.do(func() (err error) {
		c, err = net.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	})
	if err != nil {
		t.Fatalf("%s: ICMP socket: %v", n.name, err)
	}
	defer c.Close()
	to := &net.IPAddr{IP: net.ParseIP(dst)}
	id := uint16(icmpID.Add(1)) ^ uint16(os.Getpid())
	req := make([]byte, 8+32)
	buf := make([]byte, 2048)
	for seq := range uint16(tries) {
		// RFC 792: type 8 (echo), code 0, checksum, identifier, sequence.
		clear(req)
		req[0] = 8
		binary.BigEndian.PutUint16(req[4:], id)
		binary.BigEndian.PutUint16(req[6:], seq)
		binary.BigEndian.PutUint16(req[2:], inetChecksum(req))
		if _, err := c.WriteTo(req, to); err != nil {
			t.Logf("%s: ping %s: %v", n.name, dst, err)
		}
		c.SetReadDeadline(time.Now().Add(wait))
		for {
			m, from, err := c.ReadFrom(buf) // the IPv4 header is stripped
			if err != nil {
				break
			}
			if ip, ok := from.(*net.IPAddr); !ok || !ip.IP.Equal(to.IP) || m < 8 {
				continue
			}
			if buf[0] == 0 && binary.BigEndian.Uint16(buf[4:]) == id && binary.BigEndian.Uint16(buf[6:]) == seq {
				return true
			}
		}
	}
	return false
}

// reaches reports whether n reaches dst (one reply out of a few is enough).
func (n *nsT) reaches(t testing.TB, dst string) bool {
	t.Helper()
	return n.echo(t, dst, 5, time.Second)
}

// unreachable reports whether two echo requests from n to dst get no reply.
func (n *nsT) unreachable(t testing.TB, dst string) bool {
	t.Helper()
	return !n.echo(t, dst, 2, time.Second)
}

func inetChecksum(b []byte) uint16 {
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

// iperf3 runs a TCP transfer of secs seconds from cli to the server at
// addr in srv (or back with reverse) and returns the client's output.
func iperf3(t testing.TB, srv *nsT, addr string, cli *nsT, secs int, reverse bool) string {
	t.Helper()
	var sout bytes.Buffer
	s, err := srv.start(&sout, "iperf3", "-s", "-1", "-B", addr)
	if err != nil {
		t.Fatalf("iperf3 server in %s: %v", srv.name, err)
	}
	defer func() { s.Process.Kill(); s.Wait() }()
	args := []string{"iperf3", "-c", addr, "-t", fmt.Sprint(secs)}
	if reverse {
		args = append(args, "-R")
	}
	var out string
	for range 100 { // until the server listens
		if out, err = cli.run(args...); err == nil {
			return out
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("iperf3 client in %s: %v\n%s\nserver: %s", cli.name, err, out, sout.String())
	return ""
}

// nsGuest is a namespace playing a VM: its eth0 is a veth whose other end
// is an AF_PACKET switch port in the given VLAN configuration.
type nsGuest struct {
	*nsT
	port *Port
}

func newNSGuest(t testing.TB, sw *vswitch.Switch, name string, cfg vswitch.PortConfig, mac, addr string) *nsGuest {
	t.Helper()
	n := newNS(t, name)
	vethInto(t, name, n, "eth0")
	if mac != "" {
		n.setMAC(t, "eth0", mac)
	}
	if addr != "" {
		n.addr(t, "eth0", addr)
	}
	cfg.Name = name
	return &nsGuest{nsT: n, port: attach(t, sw, name, cfg, Config{})}
}

// kernelVLANs returns nil when this kernel can build the real topologies:
// an 802.1Q subinterface, an 802.1ad one, and a bridge with
// vlan_filtering=1. It tries them on a scratch veth pair in the test's
// private namespace, so netlink loads the modules where they exist.
func kernelVLANs() (err error) {
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "hvprobe0"}, PeerName: "hvprobe1"}
	if err := netlink.LinkAdd(v); err != nil {
		return fmt.Errorf("veth: %w", err)
	}
	defer netlink.LinkDel(v)
	l, err := netlink.LinkByName("hvprobe0")
	if err != nil {
		return err
	}
	for _, p := range []netlink.VlanProtocol{netlink.VLAN_PROTOCOL_8021Q, netlink.VLAN_PROTOCOL_8021AD} {
		vl := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: "hvprobe0.v", ParentIndex: l.Attrs().Index},
			VlanId: 10, VlanProtocol: p}
		if err := netlink.LinkAdd(vl); err != nil {
			return fmt.Errorf("%s subinterface: %w", p, err)
		}
		netlink.LinkDel(vl)
	}
	on := true
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "hvprobebr"}, VlanFiltering: &on}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("bridge with vlan_filtering=1: %w", err)
	}
	defer netlink.LinkDel(br)
	got, err := netlink.LinkByName("hvprobebr")
	if err != nil {
		return err
	}
	if b, ok := got.(*netlink.Bridge); !ok || b.VlanFiltering == nil || !*b.VlanFiltering {
		return errors.New("bridge vlan_filtering does not stick (CONFIG_BRIDGE_VLAN_FILTERING off)")
	}
	return nil
}

// needVLANKernel is the start of a test that needs kernelVLANs: it returns
// true when the test ran inside the nested test host instead (the caller
// returns), and fails the test when it must run here on a kernel without.
func needVLANKernel(t *testing.T) bool {
	t.Helper()
	netnstest.Need(t)
	kerr := kernelVLANs()
	if kerr != nil {
		t.Logf("this kernel: %v", kerr)
	}
	if vmtest.NestUnless(t, kerr == nil) {
		return true
	}
	if kerr != nil {
		t.Fatalf("kernel lacks 802.1Q or bridge VLAN filtering (%v); nesting is off (HVNET_NESTED=never)", kerr)
	}
	return false
}
