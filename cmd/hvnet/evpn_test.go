package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hvnet/api"
	"hvnet/internal/netnstest"
)

// evpnHost is one hvnet host of TestEVPNHosts: a namespace with the
// daemon, an underlay address, and an endpoint namespace behind the
// daemon's uplink (a Linux stack in VLAN 10).
type evpnHost struct {
	ns, ep string
	sock   string
	d      *daemonProc
	c      *api.Client
}

// Two hvnet hosts, each an `hvnet switch` in its own namespace on an
// underlay bridge, join VLAN 10 as VNI 100 over VXLAN with BGP EVPN
// between them: each learns the other from its type-3 route, the
// endpoints behind them ping each other (ARP crossing as a flood, the
// echoes as unicast to a MAC the other host advertised in a type-2
// route), and when one host stops, the other withdraws what it had from
// it.
func TestEVPNHosts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	ul := netnstest.New(t, "evu")
	netnstest.Run(t, "ip", "-n", ul, "link", "add", "br0", "type", "bridge")
	netnstest.Run(t, "ip", "-n", ul, "link", "set", "br0", "up")
	dir := t.TempDir()
	var hosts []*evpnHost
	for i := range 2 {
		h := &evpnHost{ns: netnstest.New(t, "evh"), ep: netnstest.New(t, "eve"), sock: filepath.Join(dir, fmt.Sprintf("h%d.sock", i))}
		b := fmt.Sprintf("b%d", i)
		netnstest.Run(t, "ip", "-n", h.ns, "link", "add", "u0", "type", "veth", "peer", "name", b, "netns", ul)
		netnstest.Run(t, "ip", "-n", h.ns, "addr", "add", fmt.Sprintf("10.8.0.%d/24", i+1), "dev", "u0")
		netnstest.Run(t, "ip", "-n", h.ns, "link", "set", "u0", "up")
		netnstest.Run(t, "ip", "-n", ul, "link", "set", b, "master", "br0", "up")
		netnstest.Run(t, "ip", "-n", h.ns, "link", "add", "up0", "type", "veth", "peer", "name", "ep0", "netns", h.ep)
		netnstest.Run(t, "ip", "-n", h.ns, "link", "set", "up0", "up")
		netnstest.Run(t, "ip", "-n", h.ep, "addr", "add", fmt.Sprintf("192.168.10.%d/24", i+1), "dev", "ep0")
		netnstest.Run(t, "ip", "-n", h.ep, "link", "set", "ep0", "mtu", "1450", "up")
		hosts = append(hosts, h)
	}
	for i, h := range hosts {
		peer := fmt.Sprintf("10.8.0.%d", 2-i)
		h.d = startHvnet(t, []string{"ip", "netns", "exec", h.ns}, "switch", "--api", h.sock,
			"--uplink", "name=up,if=up0,vlan=10",
			"--port", fmt.Sprintf("kind=vxlan,name=vx,vlan=10,local=10.8.0.%d,vni=100:10,asn=65000,neighbor=%s,hold-time=3s", i+1, peer))
		h.c = h.d.waitAPI(t, h.sock)
	}
	tunnel := func(h *evpnHost) *api.TunnelInfo {
		p, err := h.c.Port(context.Background(), "vx")
		if err != nil || p.Tunnel == nil {
			t.Fatalf("port vx: %+v, %v\n%s", p, err, h.d.logs)
		}
		return p.Tunnel
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
		other := fmt.Sprintf("10.8.0.%d", 2-i)
		wait(fmt.Sprintf("host %d: BGP established and VNI 100 flooding to %s", i+1, other), 30*time.Second, func() bool {
			tn := tunnel(h)
			return len(tn.Neighbors) == 1 && tn.Neighbors[0].State == "established" &&
				len(tn.VNIs) == 1 && len(tn.VNIs[0].VTEPs) == 1 && tn.VNIs[0].VTEPs[0] == other
		})
	}
	out, err := exec.Command("ip", "netns", "exec", hosts[0].ep, "ping", "-c", "3", "-i", "0.2", "-W", "2", "192.168.10.2").CombinedOutput()
	if err != nil {
		t.Fatalf("ping across the hosts: %v\n%s\nhost 1:\n%s", err, out, hosts[0].d.logs)
	}
	// Each host has the other's endpoint MAC from a type-2 route, not
	// from learning (learning is off with EVPN).
	epMAC := func(h *evpnHost) string {
		out, err := exec.Command("ip", "-n", h.ep, "-br", "link", "show", "ep0").CombinedOutput()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Fields(string(out))[2]
	}
	for i, h := range hosts {
		want := epMAC(hosts[1-i])
		wait(fmt.Sprintf("host %d: the other endpoint's MAC from EVPN", i+1), 10*time.Second, func() bool {
			for _, m := range tunnel(h).RemoteMACs {
				if m.MAC == want && m.VNI == 100 && !m.Learned && m.VTEP == fmt.Sprintf("10.8.0.%d", 2-i) {
					return true
				}
			}
			return false
		})
	}
	code, text, errs := runCtl(t, hosts[0].sock, "port", "vx")
	t.Logf("ctl port vx on host 1:\n%s", text)
	if code != 0 || !strings.Contains(text, "bgp neighbor 10.8.0.2") || !strings.Contains(text, "established") ||
		!strings.Contains(text, "floods to 10.8.0.2") || !strings.Contains(text, "behind 10.8.0.2 (evpn)") {
		t.Errorf("ctl port vx on host 1: %d\n%s%s", code, text, errs)
	}
	// Host 2 stops: host 1 withdraws its flood entry and MACs.
	hosts[1].d.term(t)
	wait("host 1: host 2's routes withdrawn", 15*time.Second, func() bool {
		tn := tunnel(hosts[0])
		return len(tn.VNIs[0].VTEPs) == 0 && len(tn.RemoteMACs) == 0
	})
}
