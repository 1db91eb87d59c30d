package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/internal/lines"
	"github.com/hvnet/hvnet/internal/netnstest"
)

// underlayCapture runs f while tcpdump watches the VXLAN packets on the
// underlay bridge of namespace ns, and returns what tcpdump printed
// (it decodes VXLAN on port 4789 and the inner frames).
func underlayCapture(t *testing.T, ns string, f func(), until func(out string) bool) string {
	t.Helper()
	var out, errs lines.Buffer
	cmd := exec.Command("ip", "netns", "exec", ns, "tcpdump", "-i", "br0", "-n", "-l", "-U", "udp", "port", "4789")
	cmd.Stdout, cmd.Stderr = &out, &errs
	if err := cmd.Start(); err != nil {
		t.Fatalf("tcpdump: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(errs.String(), "listening on"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("tcpdump did not start: %s", errs.String())
		}
	}
	f()
	// Until tcpdump printed what the caller waits for (up to 30 s: a
	// loaded machine delays it), then 300 ms for anything after it.
	for deadline := time.Now().Add(30 * time.Second); !until(out.String()) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Wait()
	return out.String()
}

// evpnHost is one hvnet host of TestEVPNARPSuppression: a namespace with
// the daemon, an underlay address, and an endpoint namespace behind the
// daemon's uplink.
type evpnHost struct {
	ns, ep string
	sock   string
	d      *daemonProc
	c      *api.Client
}

// Two hvnet hosts with EVPN (as TestEVPNHosts), endpoints with IPv4 and
// IPv6 addresses: once host 2 has seen its endpoint's addresses (in the
// ARP reply and neighbour advertisement it sends to host 1's endpoint)
// and advertised them in MAC/IP routes, host 1 answers its endpoint's
// ARP requests and neighbour solicitations for them itself: nothing of
// them crosses the underlay, which tcpdump watches.
func TestEVPNARPSuppression(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Fatal("tcpdump is not installed (run.sh installs it)")
	}
	ul := netnstest.New(t, "eau")
	netnstest.Run(t, "ip", "-n", ul, "link", "add", "br0", "type", "bridge")
	netnstest.Run(t, "ip", "-n", ul, "link", "set", "br0", "up")
	dir := t.TempDir()
	var hosts []*evpnHost
	for i := range 2 {
		h := &evpnHost{ns: netnstest.New(t, "eah"), ep: netnstest.New(t, "eae"), sock: filepath.Join(dir, fmt.Sprintf("h%d.sock", i))}
		b := fmt.Sprintf("b%d", i)
		netnstest.Run(t, "ip", "-n", h.ns, "link", "add", "u0", "type", "veth", "peer", "name", b, "netns", ul)
		netnstest.Run(t, "ip", "-n", h.ns, "addr", "add", fmt.Sprintf("10.8.0.%d/24", i+1), "dev", "u0")
		netnstest.Run(t, "ip", "-n", h.ns, "link", "set", "u0", "up")
		netnstest.Run(t, "ip", "-n", ul, "link", "set", b, "master", "br0", "up")
		netnstest.Run(t, "ip", "-n", h.ns, "link", "add", "up0", "type", "veth", "peer", "name", "ep0", "netns", h.ep)
		netnstest.Run(t, "ip", "-n", h.ns, "link", "set", "up0", "up")
		netnstest.Run(t, "ip", "-n", h.ep, "addr", "add", fmt.Sprintf("192.168.10.%d/24", i+1), "dev", "ep0")
		netnstest.Run(t, "ip", "-n", h.ep, "addr", "add", fmt.Sprintf("2001:db8:10::%d/64", i+1), "dev", "ep0", "nodad")
		netnstest.Run(t, "ip", "-n", h.ep, "link", "set", "ep0", "mtu", "1450", "up")
		hosts = append(hosts, h)
	}
	for i, h := range hosts {
		peer := fmt.Sprintf("10.8.0.%d", 2-i)
		h.d = startHvnet(t, []string{"ip", "netns", "exec", h.ns}, "switch", "--api", h.sock,
			"--uplink", "name=up,if=up0,vlan=10",
			"--port", fmt.Sprintf("kind=vxlan,name=vx,vlan=10,local=10.8.0.%d,vni=100:10,asn=65000,neighbor=%s,hold-time=3s,connect-retry=1s", i+1, peer))
		h.c = h.d.waitAPI(t, h.sock)
	}
	port := func(h *evpnHost) api.Port {
		p, err := h.c.Port(context.Background(), "vx")
		if err != nil || p.Tunnel == nil || p.Device == nil || p.Device.VXLANCounters == nil {
			t.Fatalf("port vx: %+v, %v\n%s", p, err, h.d.logs)
		}
		return p
	}
	wait := func(what string, d time.Duration, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(d); !cond(); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after %v\nhost 1:\n%s\nhost 2:\n%s", what, d, hosts[0].d.logs, hosts[1].d.logs)
			}
		}
	}
	for i, h := range hosts {
		wait(fmt.Sprintf("host %d: BGP established and VNI 100 flooding", i+1), 30*time.Second, func() bool {
			tn := port(h).Tunnel
			return len(tn.Neighbors) == 1 && tn.Neighbors[0].State == "established" && len(tn.VNIs) == 1 && len(tn.VNIs[0].VTEPs) == 1
		})
	}
	ping := func(args ...string) {
		t.Helper()
		cmd := append([]string{"netns", "exec", hosts[0].ep, "ping", "-c", "1", "-W", "30"}, args...) // -W: a hang guard; it returns with the answer
		if out, err := exec.Command("ip", cmd...).CombinedOutput(); err != nil {
			t.Fatalf("ping %v: %v\n%s\nhost 1:\n%s", args, err, out, hosts[0].d.logs)
		}
	}
	const who4, who6 = "who-has 192.168.10.2 tell 192.168.10.1", "who has 2001:db8:10::2"
	// The first requests cross (flooded: nobody knows the address yet).
	first := underlayCapture(t, ul, func() {
		ping("192.168.10.2")
		ping("-6", "2001:db8:10::2")
	}, func(out string) bool { return strings.Contains(out, who4) && strings.Contains(out, who6) })
	if !strings.Contains(first, who4) || !strings.Contains(first, who6) {
		t.Fatalf("the first ARP request and solicitation did not cross the underlay:\n%s", first)
	}
	// Host 2 advertised its endpoint's addresses; host 1 has them.
	epMAC := func(h *evpnHost) string {
		out, err := exec.Command("ip", "-n", h.ep, "-br", "link", "show", "ep0").CombinedOutput()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Fields(string(out))[2]
	}
	mac2 := epMAC(hosts[1])
	wait("host 1: host 2's endpoint's MAC/IP routes", 30*time.Second, func() bool {
		for _, m := range port(hosts[0]).Tunnel.RemoteMACs {
			if m.MAC == mac2 && slices.Contains(m.IPs, "192.168.10.2") && slices.Contains(m.IPs, "2001:db8:10::2") {
				return true
			}
		}
		return false
	})
	if st := port(hosts[1]).Device.VXLANCounters; st.LocalIPs < 2 {
		t.Errorf("host 2: %d local IPs, want 2 at least", st.LocalIPs)
	}
	before := *port(hosts[0]).Device.VXLANCounters
	netnstest.Run(t, "ip", "-n", hosts[0].ep, "neigh", "flush", "dev", "ep0")
	netnstest.Run(t, "ip", "-n", hosts[0].ep, "-6", "neigh", "flush", "dev", "ep0")
	// The echo requests follow any address request: once they are in
	// the capture, a request that crossed would be too.
	again := underlayCapture(t, ul, func() {
		ping("192.168.10.2")
		ping("-6", "2001:db8:10::2")
	}, func(out string) bool {
		return strings.Contains(out, "ICMP echo request") && strings.Contains(out, "ICMP6, echo request")
	})
	t.Logf("underlay after the flush:\n%s", again)
	// The echoes cross (the capture sees the tunnel), the requests not.
	if !strings.Contains(again, "ICMP echo request") || !strings.Contains(again, "ICMP6, echo request") {
		t.Errorf("the echo requests are not in the capture:\n%s", again)
	}
	if strings.Contains(again, who4) || strings.Contains(again, who6) {
		t.Errorf("a request crossed the underlay although host 1 knows the address:\n%s", again)
	}
	after := *port(hosts[0]).Device.VXLANCounters
	if after.ARPSuppressed <= before.ARPSuppressed || after.NDSuppressed <= before.NDSuppressed ||
		after.SuppressReplies < after.ARPSuppressed+after.NDSuppressed {
		t.Errorf("host 1: arp suppressed %d → %d, nd %d → %d, replies %d", before.ARPSuppressed, after.ARPSuppressed,
			before.NDSuppressed, after.NDSuppressed, after.SuppressReplies)
	}
	// The endpoint's neighbour entries are the remote endpoint's MAC.
	if out := netnstest.Run(t, "ip", "-n", hosts[0].ep, "neigh", "show", "dev", "ep0"); !strings.Contains(out, "192.168.10.2 lladdr "+mac2) ||
		!strings.Contains(out, "2001:db8:10::2 lladdr "+mac2) {
		t.Errorf("neighbours of host 1's endpoint:\n%s", out)
	}
	code, text, errs := runCtl(t, hosts[0].sock, "port", "vx")
	t.Logf("ctl port vx on host 1:\n%s", text)
	if code != 0 || !strings.Contains(text, "IPs 192.168.10.2 2001:db8:10::2") || !strings.Contains(text, "ND requests answered locally") {
		t.Errorf("ctl port vx on host 1: %d\n%s%s", code, text, errs)
	}
}
