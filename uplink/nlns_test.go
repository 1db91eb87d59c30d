package uplink

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/hvnet/hvnet/internal/netnstest"
	"github.com/hvnet/hvnet/internal/nlns"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/vmtest"
)

// Helpers for the tests that build real 802.1Q topologies, on package
// nlns's namespaces (netlink and setns only: the nested test host, where
// these tests run when this kernel lacks 802.1Q, has no iproute2 to
// speak of).

// nsT is a network namespace created by the test.
type nsT struct{ *nlns.NS }

// newNS creates a namespace with lo up; it goes away at cleanup.
func newNS(t testing.TB, name string) *nsT { return &nsT{nlns.New(t, name)} }

// vethInto creates a veth pair: local in the test's namespace, peer in n,
// both up. local is deleted at cleanup.
func vethInto(t testing.TB, local string, n *nsT, peer string) { nlns.Veth(t, local, n.NS, peer) }

// vlan creates an 802.1Q (or, with proto 802.1ad, an S-VLAN) subinterface
// name of parent with vid, and brings it up: `ip link add link PARENT name
// NAME type vlan proto PROTO id VID`.
func (n *nsT) vlan(t testing.TB, parent, name string, vid int, proto netlink.VlanProtocol) {
	t.Helper()
	l := &netlink.Vlan{
		LinkAttrs:    netlink.LinkAttrs{Name: name, ParentIndex: n.Link(t, parent).Attrs().Index},
		VlanId:       vid,
		VlanProtocol: proto,
	}
	n.Add(t, l)
	n.Up(t, name)
}

// reaches reports whether n reaches dst (one reply out of a few is enough).
func (n *nsT) reaches(t testing.TB, dst string) bool {
	t.Helper()
	return n.Pinger(t).Echo(dst, 5, time.Second)
}

// unreachable reports whether two echo requests from n to dst get no reply.
func (n *nsT) unreachable(t testing.TB, dst string) bool {
	t.Helper()
	return !n.Pinger(t).Echo(dst, 2, time.Second)
}

// iperf3 runs a TCP transfer of secs seconds from cli to the server at
// addr in srv (or back with reverse) and returns the client's output.
func iperf3(t testing.TB, srv *nsT, addr string, cli *nsT, secs int, reverse bool) string {
	t.Helper()
	var sout bytes.Buffer
	s, err := srv.Start(&sout, "iperf3", "-s", "-1", "-B", addr)
	if err != nil {
		t.Fatalf("iperf3 server in %s: %v", srv.Name, err)
	}
	defer func() { s.Process.Kill(); s.Wait() }()
	args := []string{"iperf3", "-c", addr, "-t", fmt.Sprint(secs)}
	if reverse {
		args = append(args, "-R")
	}
	var out string
	// Until the server listens: up to 30 s (it starts slowly on a loaded
	// machine; the loop ends with the first run that works).
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if out, err = cli.Run(args...); err == nil {
			return out
		}
	}
	t.Fatalf("iperf3 client in %s: %v\n%s\nserver: %s", cli.Name, err, out, sout.String())
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
		n.SetMAC(t, "eth0", mac)
	}
	if addr != "" {
		n.Addr(t, "eth0", addr)
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
