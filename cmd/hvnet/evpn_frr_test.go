package main

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/internal/frrtest"
	"github.com/hvnet/hvnet/internal/netnstest"
)

// An hvnet host and FRR 8.4 (zebra + bgpd, advertise-all-vni, a Linux
// bridge with a kernel VXLAN device, nolearning) on an underlay bridge,
// VNI 100. FRR's host talks to the bridge's own address (its SVI), so
// the kernel's neighbour table on the bridge has the host's IPv4 and
// IPv6 addresses; zebra reads them and bgpd advertises them in MAC/IP
// routes (RFC 7432 §7.2). hvnet takes those into its suppression table:
// its endpoint's ARP requests and neighbour solicitations for the host
// are answered by hvnet itself, with the host's MAC, and none of them
// crosses the underlay (tcpdump watches it; before FRR's routes came,
// the same requests did cross, flooded). The pings themselves go
// through, both ways.
func TestEVPNFRRSuppression(t *testing.T) {
	frrtest.Need(t)
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Fatal("tcpdump is not installed (run.sh installs it)")
	}
	const (
		hostMAC = "02:00:00:77:00:01" // FRR's host
		hostV4  = "192.168.10.2"
		hostV6  = "2001:db8:10::2"
		epV4    = "192.168.10.1" // hvnet's endpoint
		epV6    = "2001:db8:10::1"
	)
	ours, theirs := netip.MustParseAddr("10.8.0.1"), netip.MustParseAddr("10.8.0.2")
	ul := netnstest.New(t, "efu")
	hv := netnstest.New(t, "efh")  // hvnet's host
	ep := netnstest.New(t, "efe")  // hvnet's endpoint
	fr := netnstest.New(t, "eff")  // FRR
	fh := netnstest.New(t, "effh") // FRR's host
	run := func(ns string, args ...string) { netnstest.Run(t, append([]string{"ip", "-n", ns}, args...)...) }
	run(ul, "link", "add", "br0", "type", "bridge")
	run(ul, "link", "set", "br0", "up")
	for i, ns := range []string{hv, fr} {
		b := fmt.Sprintf("b%d", i)
		run(ns, "link", "add", "u0", "type", "veth", "peer", "name", b, "netns", ul)
		run(ns, "addr", "add", fmt.Sprintf("10.8.0.%d/24", i+1), "dev", "u0")
		run(ns, "link", "set", "u0", "up")
		run(ul, "link", "set", b, "master", "br0", "up")
	}
	// hvnet's side: the endpoint behind the uplink.
	run(hv, "link", "add", "up0", "type", "veth", "peer", "name", "ep0", "netns", ep)
	run(hv, "link", "set", "up0", "up")
	run(ep, "addr", "add", epV4+"/24", "dev", "ep0")
	run(ep, "addr", "add", epV6+"/64", "dev", "ep0", "nodad")
	run(ep, "link", "set", "ep0", "mtu", "1450", "up")
	// FRR's side: br100 with an address (the SVI zebra learns neighbours
	// on), vxlan100 and the host in a namespace of its own.
	run(fr, "link", "add", "br100", "type", "bridge")
	run(fr, "addr", "add", "192.168.10.254/24", "dev", "br100")
	run(fr, "addr", "add", "2001:db8:10::fe/64", "dev", "br100", "nodad")
	run(fr, "link", "set", "br100", "up")
	if out, err := exec.Command("ip", "-n", fr, "link", "add", "vxlan100", "type", "vxlan", "id", "100",
		"local", theirs.String(), "dstport", "4789", "nolearning").CombinedOutput(); err != nil {
		t.Skipf("no kernel VXLAN here (ip link add type vxlan: %v: %s)", err, out)
	}
	run(fr, "link", "set", "vxlan100", "master", "br100", "up")
	run(fr, "link", "add", "host0", "type", "veth", "peer", "name", "host1", "netns", fh)
	run(fr, "link", "set", "host0", "master", "br100", "up")
	run(fh, "link", "set", "host1", "address", hostMAC)
	run(fh, "addr", "add", hostV4+"/24", "dev", "host1")
	run(fh, "addr", "add", hostV6+"/64", "dev", "host1", "nodad")
	run(fh, "link", "set", "host1", "mtu", "1450", "up")

	f := frrtest.Start(t, fr, frrtest.EVPNConfig(theirs, ours))
	sock := filepath.Join(t.TempDir(), "h.sock")
	d := startHvnet(t, []string{"ip", "netns", "exec", hv}, "switch", "--api", sock,
		"--uplink", "name=up,if=up0,vlan=10",
		"--port", fmt.Sprintf("kind=vxlan,name=vx,vlan=10,local=%s,vni=100:10,asn=65000,neighbor=%s,hold-time=3s,connect-retry=1s", ours, theirs))
	c := d.waitAPI(t, sock)
	dump := func() string {
		return fmt.Sprintf("hvnet:\n%s\nFRR:\n%s\n%s\n%s", d.logs, f.Show("show bgp l2vpn evpn summary"),
			f.Show("show bgp l2vpn evpn route"), f.Show("show evpn arp-cache vni all"))
	}
	port := func() api.Port {
		p, err := c.Port(context.Background(), "vx")
		if err != nil || p.Tunnel == nil || p.Device == nil || p.Device.VXLANCounters == nil {
			t.Fatalf("port vx: %+v, %v\n%s", p, err, d.logs)
		}
		return p
	}
	wait := func(what string, dl time.Duration, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(dl); !cond(); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after %v\n%s", what, dl, dump())
			}
		}
	}
	wait("BGP established with FRR and VNI 100 flooding to it", 30*time.Second, func() bool {
		tn := port().Tunnel
		return len(tn.Neighbors) == 1 && tn.Neighbors[0].State == "established" && len(tn.VNIs) == 1 &&
			slices.Equal(tn.VNIs[0].VTEPs, []string{theirs.String()})
	})
	ping := func(args ...string) {
		t.Helper()
		cmd := append([]string{"netns", "exec", ep, "ping", "-c", "1", "-W", "30"}, args...) // -W: a hang guard; it returns with the answer
		if out, err := exec.Command("ip", cmd...).CombinedOutput(); err != nil {
			t.Fatalf("ping %v: %v\n%s\n%s", args, err, out, dump())
		}
	}
	const who4, who6 = "who-has " + hostV4 + " tell " + epV4, "who has " + hostV6
	// Before FRR has the host's addresses, the requests cross, flooded
	// to FRR's VTEP (the capture sees them: it decodes VXLAN).
	first := underlayCapture(t, ul, func() {
		ping(hostV4)
		ping("-6", hostV6)
	}, func(out string) bool { return strings.Contains(out, who4) && strings.Contains(out, who6) })
	if !strings.Contains(first, who4) || !strings.Contains(first, who6) {
		t.Fatalf("without FRR's MAC/IP routes, the ARP request and solicitation did not cross the underlay:\n%s", first)
	}

	// FRR's host talks to the SVI: zebra learns its neighbours and bgpd
	// advertises them.
	netnstest.Exec(t, fh, "ping", "-c", "1", "-W", "30", "192.168.10.254")
	netnstest.Exec(t, fh, "ping", "-6", "-c", "1", "-W", "30", "2001:db8:10::fe")
	wait("FRR's MAC/IP routes for its host", 30*time.Second, func() bool {
		return f.HasRoute("", 2, hostMAC, hostV4, theirs)() && f.HasRoute("", 2, hostMAC, hostV6, theirs)()
	})
	t.Logf("FRR's MAC/IP routes:\n%s", f.Show("show bgp l2vpn evpn route type macip"))
	wait("hvnet: FRR's host MAC with both IPs", 30*time.Second, func() bool {
		for _, m := range port().Tunnel.RemoteMACs {
			if m.MAC == hostMAC && m.VTEP == theirs.String() && !m.Learned &&
				slices.Contains(m.IPs, hostV4) && slices.Contains(m.IPs, hostV6) {
				return true
			}
		}
		return false
	})

	before := *port().Device.VXLANCounters
	netnstest.Run(t, "ip", "-n", ep, "neigh", "flush", "dev", "ep0")
	netnstest.Run(t, "ip", "-n", ep, "-6", "neigh", "flush", "dev", "ep0")
	again := underlayCapture(t, ul, func() {
		ping(hostV4)
		ping("-6", hostV6)
	}, func(out string) bool { // the echoes follow any request: it would be in by then
		return strings.Contains(out, "ICMP echo request") && strings.Contains(out, "ICMP6, echo request")
	})
	t.Logf("underlay with FRR's MAC/IP routes in:\n%s", again)
	if !strings.Contains(again, "ICMP echo request") || !strings.Contains(again, "ICMP6, echo request") {
		t.Errorf("the echo requests are not in the capture:\n%s", again)
	}
	if strings.Contains(again, who4) || strings.Contains(again, who6) {
		t.Errorf("a request for FRR's host crossed the underlay although hvnet has its MAC/IP routes:\n%s", again)
	}
	after := *port().Device.VXLANCounters
	if after.ARPSuppressed <= before.ARPSuppressed || after.NDSuppressed <= before.NDSuppressed ||
		after.SuppressReplies-before.SuppressReplies < (after.ARPSuppressed-before.ARPSuppressed)+(after.NDSuppressed-before.NDSuppressed) {
		t.Errorf("ARP suppressed %d → %d, ND %d → %d, replies %d → %d", before.ARPSuppressed, after.ARPSuppressed,
			before.NDSuppressed, after.NDSuppressed, before.SuppressReplies, after.SuppressReplies)
	}
	// hvnet's answers carried the host's MAC.
	if out := netnstest.Run(t, "ip", "-n", ep, "neigh", "show", "dev", "ep0"); !strings.Contains(out, hostV4+" lladdr "+hostMAC) ||
		!strings.Contains(out, hostV6+" lladdr "+hostMAC) {
		t.Errorf("neighbours of hvnet's endpoint:\n%s", out)
	}
	if t.Failed() {
		t.Log(dump())
	}
}
