package demo

import (
	"strings"
	"testing"

	topo "github.com/hvnet/hvnet/topology"
)

// The fabric demo's topology files are ones `hvnet up` takes: each
// host's tunnel maps both VLANs, peers with the other host, and its
// guests carry their scripts, short enough for the kernel command line
// the agent's script travels on, with a target for every other guest.
func TestFabricTopologyFiles(t *testing.T) {
	hosts := fabricTopology()
	var all []guestSpec
	for _, h := range hosts {
		all = append(all, h.guests...)
	}
	for i, h := range hosts {
		peer := hosts[1-i].under.Addr()
		text := h.topologyFile("/run/"+h.name+".sock", peer, all)
		top, err := topo.Parse(h.name+".yaml", []byte(text))
		if err != nil {
			t.Fatalf("%s: %v\n%s", h.name, err, text)
		}
		if len(top.Ports) != 1 || top.Ports[0].Kind != "vxlan" {
			t.Fatalf("%s: ports %+v", h.name, top.Ports)
		}
		o := top.Ports[0].Options.Values
		if got := strings.Join(o["vni"], " "); got != "100:10 200:20" || o["neighbor"][0] != peer.String() || o["local"][0] != h.under.Addr().String() {
			t.Errorf("%s: tunnel options %v", h.name, o)
		}
		if len(top.Guests) != 2 {
			t.Fatalf("%s: guests %+v", h.name, top.Guests)
		}
		for j, g := range top.Guests {
			spec := h.guests[j]
			if g.Name != spec.name || g.IP != spec.addr.String() || g.GuestMTU != fabricMTU {
				t.Errorf("%s: guest %+v, want %+v", h.name, g, spec)
			}
			if len(g.Cmd) > 1500 {
				t.Errorf("%s: %s's script is %d bytes: too long for the kernel command line", h.name, g.Name, len(g.Cmd))
			}
			for _, o := range all {
				if o.name != g.Name && !strings.Contains(g.Cmd, "DEMO-REACH "+o.name+" ") {
					t.Errorf("%s: %s does not ping %s:\n%s", h.name, g.Name, o.name, g.Cmd)
				}
			}
		}
	}
}

// judge reads each guest's lines out of its host's output and fails
// every mismatch: a VLAN 10 guest that reached a VLAN 20 one, a missing
// result, a host without the other's MACs.
func TestFabricJudge(t *testing.T) {
	hosts := fabricTopology()
	var all []guestSpec
	for _, h := range hosts {
		all = append(all, h.guests...)
	}
	out := func(h fabricHost, leak bool) string {
		var b strings.Builder
		for _, g := range h.guests {
			for _, tg := range fabricTargets(g, all) {
				ok := tg.expect || (leak && g.name == "a1" && tg.name == "b2")
				r := "fail"
				if ok {
					r = "ok"
				}
				b.WriteString(g.name + "| DEMO-REACH " + tg.name + " " + r + "\n")
			}
		}
		return b.String()
	}
	tunnel := func(i int) string {
		o := hosts[1-i]
		return "bgp neighbor " + o.under.Addr().String() + ": AS 65000, established\nremote mac " + o.mac[0] + " vni 100: x\nremote mac " + o.mac[1] + " vni 200: x\n"
	}
	for _, leak := range []bool{false, true} {
		r := &FabricReport{}
		for i, h := range hosts {
			r.Hosts = append(r.Hosts, FabricHostResult{Name: h.name, Output: out(h, leak), Tunnel: tunnel(i)})
		}
		r.judge(hosts, all, nil)
		if leak != (len(r.Failures) == 1) || leak && !strings.Contains(r.Failures[0], "a1 -> b2") {
			t.Errorf("leak %v: failures %q", leak, r.Failures)
		}
		if len(r.Reach) != 12 {
			t.Errorf("%d cells, want 12", len(r.Reach))
		}
	}
	r := &FabricReport{Hosts: []FabricHostResult{{Name: "h1", Status: 1}, {Name: "h2", Tunnel: tunnel(1)}}}
	r.judge(hosts, all, nil)
	if len(r.Failures) < 2+6 { // h1's status, its missing session and MACs, and 6 untested cells
		t.Errorf("failures %q", r.Failures)
	}
}
