package evpn

import (
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hvnet/hvnet/internal/frrtest"
	"github.com/hvnet/hvnet/internal/netnstest"
)

// TestFRRInterop runs FRR 8.4 (zebra + bgpd, advertise-all-vni) with a
// kernel VXLAN device in a namespace and peers with it over a veth pair.
func TestFRRInterop(t *testing.T) {
	netnstest.Need(t)
	frrtest.Need(t)
	loopbackUp(t)
	var (
		ours     = netip.MustParseAddr("10.77.0.1") // router ID, VTEP, session
		theirs   = netip.MustParseAddr("10.77.0.2")
		hostMAC  = "02:00:00:77:00:01" // behind FRR's bridge
		ourMAC   = [6]byte{0x02, 0, 0, 0, 0xaa, 1}
		ourIP    = netip.MustParseAddr("10.100.0.5")
		fake     = netip.MustParseAddr("127.0.0.3")
		stranger = netip.MustParseAddr("127.0.0.4")
	)
	ns := netnstest.New(t, "evfrr")
	netnstest.Veth(t, "evpn0", ns, "evpn1")
	netnstest.Run(t, "ip", "addr", "add", ours.String()+"/24", "dev", "evpn0")
	in := func(args ...string) { netnstest.Run(t, append([]string{"ip", "-n", ns}, args...)...) }
	in("addr", "add", theirs.String()+"/24", "dev", "evpn1")
	in("link", "add", "br100", "type", "bridge")
	in("link", "set", "br100", "up")
	if out, err := exec.Command("ip", "-n", ns, "link", "add", "vxlan100", "type", "vxlan", "id", "100",
		"local", theirs.String(), "dstport", "4789", "nolearning").CombinedOutput(); err != nil {
		t.Skipf("no kernel VXLAN here (ip link add type vxlan: %v: %s)", err, out)
	}
	in("link", "set", "vxlan100", "master", "br100")
	in("link", "set", "vxlan100", "up")
	in("link", "add", "host0", "type", "veth", "peer", "name", "host1")
	in("link", "set", "host1", "address", hostMAC)
	in("link", "set", "host0", "master", "br100")
	in("link", "set", "host0", "up")
	in("link", "set", "host1", "up")
	// replace, not add: the bridge may have learned the MAC from host1 already.
	netnstest.Run(t, "bridge", "-n", ns, "fdb", "replace", hostMAC, "dev", "host0", "master", "static")

	f := frrtest.Start(t, ns, frrtest.EVPNConfig(theirs, ours))

	r := newRecorder("speaker")
	sp := startSpeaker(t, Config{
		ASN: 65000, RouterID: ours, VTEP: ours,
		Neighbors:    []Neighbor{{Addr: theirs}, {Addr: fake, Port: freePort(t, fake)}},
		HoldTime:     3 * time.Second,
		ConnectRetry: time.Second,
		Logger:       testLogger(t, "speaker"),
	}, r)
	t.Cleanup(func() { r.check(t) })
	dump := func() {
		t.Logf("FRR:\n%s\n%s\n%s", f.Show("show bgp l2vpn evpn summary"), f.Show("show bgp l2vpn evpn route"), f.Show("show evpn mac vni all"))
	}

	waitFor(t, 30*time.Second, "the session with FRR", func() bool {
		st, _ := f.PeerState(ours)
		return established(sp, theirs)() && st == "Established"
	})
	if err := sp.AddVNI(100); err != nil {
		t.Fatalf("AddVNI: %v", err)
	}
	if err := sp.AdvertiseMAC(100, ourMAC, ourIP, 0); err != nil {
		t.Fatalf("AdvertiseMAC: %v", err)
	}
	ourMACs := net.HardwareAddr(ourMAC[:]).String()
	rd := ours.String() + ":1"
	waitFor(t, 20*time.Second, "FRR to hold our type-3 route for VNI 100", f.HasRoute(rd, 3, "", ours.String(), ours))
	waitFor(t, 20*time.Second, "FRR to hold our type-2 route", f.HasRoute(rd, 2, ourMACs, ourIP.String(), ours))
	// zebra imported both into VNI 100 and programmed the kernel: flood
	// entry and MAC behind our VTEP in vxlan100's FDB.
	waitFor(t, 20*time.Second, "FRR's kernel FDB to point our MAC and BUM traffic at our VTEP", func() bool {
		out, err := exec.Command("bridge", "-n", ns, "fdb", "show", "dev", "vxlan100").CombinedOutput()
		s := string(out)
		return err == nil && strings.Contains(s, "00:00:00:00:00:00 dst "+ours.String()) &&
			strings.Contains(s, ourMACs+" dst "+ours.String())
	})

	// What FRR advertises: its VTEP in VNI 100, the host MAC behind it.
	hw, _ := net.ParseMAC(hostMAC)
	var host [6]byte
	copy(host[:], hw)
	waitFor(t, 20*time.Second, "FRR's type-3 route (RemoteVTEP 100)", func() bool { return r.hasVTEP(100, theirs) }, r)
	waitFor(t, 20*time.Second, "FRR's type-2 route for the host MAC", r.hasMAC(100, host, netip.Addr{}, theirs, 0), r)

	// Garbage from a fake neighbor and a stranger: their sessions only.
	_, before := f.PeerState(ours)
	attack(t, sp, r, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 179), fake, stranger, theirs)
	if st, after := f.PeerState(ours); st != "Established" || after != before {
		t.Errorf("FRR's session after the attacks: %s, established %d times (before: %d); want untouched", st, after, before)
	}
	if !f.HasRoute(rd, 2, ourMACs, ourIP.String(), ours)() || !r.hasMAC(100, host, netip.Addr{}, theirs, 0)() {
		dump()
		t.Errorf("routes lost in the attacks")
	}

	// Withdrawal, then Close: FRR drops our routes.
	if err := sp.WithdrawMAC(100, ourMAC, ourIP); err != nil {
		t.Fatalf("WithdrawMAC: %v", err)
	}
	waitFor(t, 20*time.Second, "FRR to drop our type-2 route", func() bool {
		return !f.HasRoute(rd, 2, ourMACs, ourIP.String(), ours)()
	})
	if err := sp.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitFor(t, 20*time.Second, "FRR to drop our type-3 route after Close", func() bool {
		return len(f.Routes(rd)) == 0
	})
	if t.Failed() {
		dump()
	}
}
