package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
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
		f.wait(fmt.Sprintf("host %d: the other endpoint's MAC from EVPN", i+1), 10*time.Second, func() bool {
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
	f.wait("host 1: host 2's routes withdrawn", 15*time.Second, func() bool {
		tn := f.tunnel(f.hosts[0], "vx")
		return len(tn.VNIs[0].VTEPs) == 0 && len(tn.RemoteMACs) == 0
	})
}
