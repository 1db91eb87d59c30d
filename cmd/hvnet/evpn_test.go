package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hvnet/hvnet/internal/netnstest"
)

// Two hvnet hosts, each an `hvnet switch` in its own namespace on an
// underlay bridge, join VLAN 10 as VNI 100 over VXLAN with BGP EVPN
// between them: each learns the other from its type-3 route, the
// endpoints behind them ping each other (ARP crossing as a flood, the
// echoes as unicast to a MAC the other host advertised in a type-2
// route), and when one host stops, the other withdraws what it had from
// it.
func TestEVPNHosts(t *testing.T) {
	f := newFabric(t, "ev", 2)
	var eps []*endpoint
	for i, h := range f.hosts {
		eps = append(eps, f.endpoint(h, "eve", "up0", 10, "", fmt.Sprintf("192.168.10.%d", i+1), false))
	}
	for i, h := range f.hosts {
		peer := f.hosts[1-i].addr
		f.start(h, "--uplink", "name=up,if=up0,vlan=10",
			"--port", fmt.Sprintf("kind=vxlan,name=vx,vlan=10,local=%s,vni=100:10,asn=65000,neighbor=%s,hold-time=3s,connect-retry=1s", h.addr, peer))
	}
	for i, h := range f.hosts {
		other := f.hosts[1-i].addr
		f.wait(fmt.Sprintf("host %d: BGP established and VNI 100 flooding to %s", i+1, other), 30*time.Second, func() bool {
			tn := f.tunnel(h, "vx")
			return len(tn.Neighbors) == 1 && tn.Neighbors[0].State == "established" &&
				len(tn.VNIs) == 1 && len(tn.VNIs[0].VTEPs) == 1 && tn.VNIs[0].VTEPs[0] == other
		})
	}
	f.ping(eps[0], "192.168.10.2")
	// Each host has the other's endpoint MAC from a type-2 route, not
	// from learning (learning is off with EVPN).
	for i, h := range f.hosts {
		want := eps[1-i].mac
		f.wait(fmt.Sprintf("host %d: the other endpoint's MAC from EVPN", i+1), 30*time.Second, func() bool {
			for _, m := range f.tunnel(h, "vx").RemoteMACs {
				if m.MAC == want && m.VNI == 100 && !m.Learned && m.VTEP == f.hosts[1-i].addr {
					return true
				}
			}
			return false
		})
	}
	code, text, errs := runCtl(t, f.hosts[0].sock, "port", "vx")
	t.Logf("ctl port vx on host 1:\n%s", text)
	if code != 0 || !strings.Contains(text, "bgp neighbor 10.8.0.2") || !strings.Contains(text, "established") ||
		!strings.Contains(text, "floods to 10.8.0.2") || !strings.Contains(text, "behind 10.8.0.2 (evpn)") {
		t.Errorf("ctl port vx on host 1: %d\n%s%s", code, text, errs)
	}
	// Host 2 stops: host 1 withdraws its flood entry and MACs.
	f.hosts[1].d.term(t)
	f.wait("host 1: host 2's routes withdrawn", 30*time.Second, func() bool {
		tn := f.tunnel(f.hosts[0], "vx")
		return len(tn.VNIs[0].VTEPs) == 0 && len(tn.RemoteMACs) == 0
	})
}

// TestEVPNHosts over an IPv6 underlay: the VTEPs and the BGP session are
// IPv6 (fd00:8::1, ::2; router IDs 10.0.0.N), the type-2 and type-3
// routes carry IPv6 next hops and PMSI tunnel endpoints, and the
// endpoints ping each other both ways (ARP as a flood to the VTEP a
// type-3 route named, echoes as unicast to MACs of type-2 routes). The
// 56-byte overhead: a 1444-byte frame crosses a 1500-byte underlay, a
// 1445-byte one is dropped and counted.
func TestEVPNHosts6(t *testing.T) {
	f := newFabricOf(t, "e6", 2, true)
	var eps []*endpoint
	for i, h := range f.hosts {
		eps = append(eps, f.endpoint(h, "e6e", "up0", 10, "", fmt.Sprintf("192.168.10.%d", i+1), false))
		netnstest.Run(t, "ip", "-n", eps[i].ns, "link", "set", "ep0", "mtu", "1500")
	}
	for i, h := range f.hosts {
		peer := f.hosts[1-i].addr
		f.start(h, "--uplink", "name=up,if=up0,vlan=10",
			"--port", fmt.Sprintf("kind=vxlan,name=vx,vlan=10,local=%s,vni=100:10,asn=65000,router-id=10.0.0.%d,neighbor=[%s]:65000,hold-time=3s,connect-retry=1s",
				h.addr, i+1, peer))
	}
	for i, h := range f.hosts {
		other := f.hosts[1-i].addr
		f.wait(fmt.Sprintf("host %d: BGP established and VNI 100 flooding to %s", i+1, other), 30*time.Second, func() bool {
			tn := f.tunnel(h, "vx")
			return len(tn.Neighbors) == 1 && tn.Neighbors[0].State == "established" &&
				len(tn.VNIs) == 1 && len(tn.VNIs[0].VTEPs) == 1 && tn.VNIs[0].VTEPs[0] == other
		})
	}
	f.ping(eps[0], "192.168.10.2")
	f.ping(eps[1], "192.168.10.1")
	// A broadcast and a unicast probe each way, each arriving once.
	probes := []*probe{openProbe(t, eps[0]), openProbe(t, eps[1])}
	for i, p := range probes {
		mac, _ := net.ParseMAC(eps[1-i].mac)
		p.send(t, nil, fmt.Sprintf("b%d", i))
		p.send(t, mac, fmt.Sprintf("u%d", i))
	}
	// Until each has arrived (however long a loaded machine takes), then
	// 300 ms more for duplicates.
	all := receivedAll(t, map[int]*probe{0: probes[0], 1: probes[1]}, map[int]map[string]int{
		0: {"b1": 1, "u1": 1}, 1: {"b0": 1, "u0": 1}}, 300*time.Millisecond)
	for i := range probes {
		if got := all[i]; len(got) != 2 || got[fmt.Sprintf("b%d", 1-i)] != 1 || got[fmt.Sprintf("u%d", 1-i)] != 1 {
			t.Errorf("endpoint %d got probes %v, want the other's broadcast and unicast once each", i+1, got)
		}
	}
	for i, h := range f.hosts {
		want := eps[1-i].mac
		f.wait(fmt.Sprintf("host %d: the other endpoint's MAC from EVPN", i+1), 30*time.Second, func() bool {
			for _, m := range f.tunnel(h, "vx").RemoteMACs {
				if m.MAC == want && m.VNI == 100 && !m.Learned && m.VTEP == f.hosts[1-i].addr {
					return true
				}
			}
			return false
		})
	}
	// 1402 bytes of ICMP data: an IPv4 packet of 1430, a frame of 1444.
	if out, err := exec.Command("ip", "netns", "exec", eps[0].ns, "ping", "-c", "1", "-W", "30", "-M", "do", "-s", "1402", "192.168.10.2").CombinedOutput(); err != nil {
		t.Errorf("a 1444-byte frame over the IPv6 underlay: %v\n%s", err, out)
	}
	if out, err := exec.Command("ip", "netns", "exec", eps[0].ns, "ping", "-c", "1", "-W", "1", "-M", "do", "-s", "1403", "192.168.10.2").CombinedOutput(); err == nil {
		t.Errorf("a 1445-byte frame crossed the IPv6 underlay:\n%s", out)
	}
	p, err := f.hosts[0].c.Port(context.Background(), "vx")
	if err != nil || p.Device == nil || p.Device.VXLANCounters == nil || p.Device.VXLANCounters.TxDropOversize != 1 {
		t.Errorf("host 1's vx counters: %+v, %v", p, err)
	}
	code, text, errs := runCtl(t, f.hosts[0].sock, "evpn", "routes")
	t.Logf("ctl evpn routes on host 1:\n%s", text)
	if code != 0 || !strings.Contains(text, "fd00:8::2") || !strings.Contains(text, "fd00:8::1") {
		t.Errorf("ctl evpn routes on host 1: %d\n%s%s", code, text, errs)
	}
	f.hosts[1].d.term(t)
	f.wait("host 1: host 2's routes withdrawn", 30*time.Second, func() bool {
		tn := f.tunnel(f.hosts[0], "vx")
		return len(tn.VNIs[0].VTEPs) == 0 && len(tn.RemoteMACs) == 0
	})
}

// A vxlan port over IPv6 through the API (hvnet ctl add): the addresses
// as given, the claim in [ADDR]:PORT form (a second port on the same
// address and UDP port is refused), mixing families refused naming the
// option.
func TestVXLANCtlAdd6(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	ns := netnstest.New(t, "vx6c")
	netnstest.Run(t, "ip", "-n", ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
	netnstest.Run(t, "ip", "-n", ns, "addr", "add", "fd00:a::1/64", "dev", "d0", "nodad")
	netnstest.Run(t, "ip", "-n", ns, "link", "set", "d0", "up")
	netnstest.Run(t, "ip", "-n", ns, "link", "set", "d1", "up")
	sock := filepath.Join(t.TempDir(), "api.sock")
	d := startHvnet(t, []string{"ip", "netns", "exec", ns}, "switch", "--api", sock)
	c := d.waitAPI(t, sock)
	if code, out, errs := runCtl(t, sock, "add", "vxlan", "vx", "local=fd00:a::1", "vni=100:10", "vlan=10", "remote=fd00:a::2"); code != 0 {
		t.Fatalf("ctl add vxlan over IPv6: %d %s%s\n%s", code, out, errs, d.logs)
	}
	p, err := c.Port(context.Background(), "vx")
	if err != nil || p.Tunnel == nil || p.Tunnel.Local != "fd00:a::1" || len(p.Tunnel.VNIs) != 1 ||
		strings.Join(p.Tunnel.VNIs[0].VTEPs, ",") != "fd00:a::2" {
		t.Errorf("port vx: %+v, %v", p, err)
	}
	code, out, errs := runCtl(t, sock, "port", "vx")
	if code != 0 || !strings.Contains(out, "fd00:a::2") {
		t.Errorf("ctl port vx: %d\n%s%s", code, out, errs)
	}
	code, out, errs = runCtl(t, sock, "add", "vxlan", "vx2", "local=fd00:a::1", "vni=200:20", "vlan=20")
	if code == 0 || !strings.Contains(out+errs, "[fd00:a::1]:4789") {
		t.Errorf("a second port on [fd00:a::1]:4789: %d %s%s", code, out, errs)
	}
	code, out, errs = runCtl(t, sock, "add", "vxlan", "vx3", "local=fd00:a::1", "udp-port=4790", "vni=300:30", "vlan=30", "remote=10.0.0.2")
	if code == 0 || !strings.Contains(out+errs, `remote: "10.0.0.2" is IPv4, but local=fd00:a::1 is IPv6: one address family per port`) {
		t.Errorf("mixed families: %d %s%s", code, out, errs)
	}
}
