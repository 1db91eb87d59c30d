package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/internal/netnstest"
)

// Three hvnet hosts in an iBGP full mesh carry VLAN 10 as VNI 100 and
// VLAN 20 as VNI 200; each host has an endpoint in VLANs 10, 20 and 30
// (30 is mapped to no VNI). Checked with probe frames counted at every
// endpoint: each broadcast reaches every other endpoint of its VNI
// exactly once and no endpoint of another VNI or VLAN; unicast reaches
// its destination alone. A MAC moves from host 1 to host 2 (RFC 7432
// §15): host 2 advertises it with sequence 1, host 1 withdraws, host 3
// sends to host 2. Host 3 stops: the others drop its routes, flood
// entries and MACs. hvnet ctl's evpn, vteps, fdb and metrics output is
// checked along the way.
func TestEVPNFabric(t *testing.T) {
	f := newFabric(t, "ef", 3)
	vlans := []int{10, 20, 30}
	type hv struct{ host, vlan int }
	eps := map[hv]*endpoint{}
	for _, h := range f.hosts {
		for _, v := range vlans {
			eps[hv{h.n, v}] = f.endpoint(h, "efe", fmt.Sprintf("up%d", v), v, fmt.Sprintf("02:00:00:%02x:%02x:01", h.n, v),
				fmt.Sprintf("192.168.%d.%d", v, h.n), false)
		}
	}
	// The MAC that moves: up behind host 1, down behind host 2.
	const moverMAC, moverIP = "02:00:00:00:99:01", "192.168.10.99"
	mv1 := f.endpoint(f.hosts[0], "efm", "mv10", 10, moverMAC, moverIP, false)
	mv2 := f.endpoint(f.hosts[1], "efm", "mv10", 10, moverMAC, moverIP, true)
	for _, h := range f.hosts {
		var args, nbs []string
		for _, o := range f.hosts {
			if o != h {
				nbs = append(nbs, "neighbor="+o.addr)
			}
		}
		for _, v := range vlans {
			args = append(args, "--uplink", fmt.Sprintf("name=e%d,if=up%d,vlan=%d", v, v, v))
		}
		if h.n <= 2 {
			args = append(args, "--uplink", "name=m10,if=mv10,vlan=10")
		}
		args = append(args, "--port", fmt.Sprintf("kind=vxlan,name=vx,trunk=10:20,local=%s,vni=100:10,vni=200:20,asn=65000,%s,hold-time=3s,connect-retry=1s",
			h.addr, strings.Join(nbs, ",")))
		f.start(h, args...)
	}
	others := func(h *fabricHost) []string {
		var out []string
		for _, o := range f.hosts {
			if o != h && o.d != nil {
				out = append(out, o.addr)
			}
		}
		return out
	}
	for _, h := range f.hosts {
		want := others(h)
		f.wait(fmt.Sprintf("host %d: both sessions established, both VNIs flooding to %v", h.n, want), 30*time.Second, func() bool {
			tn := f.tunnel(h, "vx")
			up := 0
			for _, n := range tn.Neighbors {
				if n.State == "established" {
					up++
				}
			}
			return up == 2 && len(tn.VNIs) == 2 && slices.Equal(slices.Sorted(slices.Values(tn.VNIs[0].VTEPs)), want) &&
				slices.Equal(slices.Sorted(slices.Values(tn.VNIs[1].VTEPs)), want)
		})
	}

	// Unicast across hosts in each VNI; VLAN 30 is not carried.
	for _, v := range []int{10, 20} {
		f.ping(eps[hv{1, v}], fmt.Sprintf("192.168.%d.2", v))
		f.ping(eps[hv{1, v}], fmt.Sprintf("192.168.%d.3", v))
		f.ping(eps[hv{2, v}], fmt.Sprintf("192.168.%d.3", v))
	}
	if out, err := exec.Command("ip", "netns", "exec", eps[hv{1, 30}].ns, "ping", "-c", "2", "-i", "0.2", "-W", "1", "192.168.30.2").CombinedOutput(); err == nil {
		t.Errorf("VLAN 30, mapped to no VNI, reached another host:\n%s", out)
	}
	// Every host knows every other host's endpoint MACs of VLANs 10 and
	// 20 from EVPN, behind the right VTEP, and none of VLAN 30.
	for _, h := range f.hosts {
		f.wait(fmt.Sprintf("host %d: the other hosts' endpoint MACs from EVPN", h.n), 30*time.Second, func() bool {
			have := map[string]string{}
			for _, m := range f.tunnel(h, "vx").RemoteMACs {
				have[fmt.Sprintf("%d %s", m.VNI, m.MAC)] = m.VTEP
			}
			for k, e := range eps {
				want := ""
				if k.host != h.n && k.vlan != 30 {
					want = e.host.addr
				}
				if have[fmt.Sprintf("%d %s", k.vlan*10, e.mac)] != want {
					return false
				}
			}
			return true
		})
	}

	// Broadcast: three probes from every endpoint.
	probes := map[hv]*probe{}
	for k, e := range eps {
		probes[k] = openProbe(t, e)
	}
	for k, p := range probes {
		for i := range 3 {
			p.send(t, nil, fmt.Sprintf("b h%d v%d %d", k.host, k.vlan, i))
		}
	}
	// Unicast: three probes to an endpoint on another host, which alone
	// gets them.
	uni := []struct{ from, to hv }{{hv{1, 10}, hv{3, 10}}, {hv{2, 20}, hv{1, 20}}, {hv{3, 10}, hv{2, 10}}}
	for _, u := range uni {
		dst, _ := net.ParseMAC(eps[u.to].mac)
		for i := range 3 {
			probes[u.from].send(t, dst, fmt.Sprintf("u h%d v%d %d", u.from.host, u.from.vlan, i))
		}
	}
	// What each endpoint must get: the waits end once it is there, then
	// a second more for late copies (duplicates, loops).
	expect := map[hv]map[string]int{}
	for rk := range probes {
		expect[rk] = map[string]int{}
		for sk := range probes {
			if sk.vlan == rk.vlan && sk.vlan != 30 && sk.host != rk.host {
				for i := range 3 {
					expect[rk][fmt.Sprintf("b h%d v%d %d", sk.host, sk.vlan, i)] = 1
				}
			}
		}
		for _, u := range uni {
			if u.to == rk {
				for i := range 3 {
					expect[rk][fmt.Sprintf("u h%d v%d %d", u.from.host, u.from.vlan, i)] = 1
				}
			}
		}
	}
	all := receivedAll(t, probes, expect, time.Second)
	for rk := range probes {
		got := all[rk]
		for sk := range probes {
			want := 0
			if sk.vlan == rk.vlan && sk.vlan != 30 && sk.host != rk.host {
				want = 1
			}
			for i := range 3 {
				tag := fmt.Sprintf("b h%d v%d %d", sk.host, sk.vlan, i)
				if got[tag] != want {
					t.Errorf("broadcast %q reached %s %d times, want %d", tag, eps[rk].name, got[tag], want)
				}
			}
		}
		for _, u := range uni {
			want := 0
			if u.to == rk {
				want = 1
			}
			for i := range 3 {
				tag := fmt.Sprintf("u h%d v%d %d", u.from.host, u.from.vlan, i)
				if got[tag] != want {
					t.Errorf("unicast %q to %s reached %s %d times, want %d", tag, eps[u.to].name, eps[rk].name, got[tag], want)
				}
			}
		}
	}
	// (No tx_drop_no_remote check: the endpoints' IPv6 multicast before
	// the sessions came up had nowhere to go.)
	for _, h := range f.hosts {
		p, err := h.c.Port(context.Background(), "vx")
		if err != nil || p.Device == nil || p.Device.VXLANCounters == nil {
			t.Fatalf("host %d: port vx: %+v, %v", h.n, p, err)
		}
		if x := p.Device.VXLANCounters; x.RxDropUnknownVNI+x.RxDropUnknownVTEP+x.RxDropShort+x.RxDropFlags+x.RxDropInnerTag > 0 {
			t.Errorf("host %d: tunnel drops: %+v", h.n, *x)
		}
	}

	checkFabricCtl(t, f, eps[hv{2, 10}].mac)

	// MAC move (RFC 7432 §15): the mover answers behind host 1, then
	// goes down there and comes up behind host 2.
	h1, h2, h3 := f.hosts[0], f.hosts[1], f.hosts[2]
	f.ping(eps[hv{3, 10}], moverIP)
	routesOf := func(h *fabricHost, mac string) []api.EVPNRoute {
		rs, err := h.c.EVPNRoutes(context.Background(), "", 2, 100, mac)
		if err != nil {
			t.Fatalf("host %d: routes: %v", h.n, err)
		}
		return rs
	}
	// only: every type-2 route of the MAC on h is from source with
	// sequence seq (there may be a MAC-only and a MAC/IP route), and
	// there is one.
	only := func(h *fabricHost, source string, seq uint32) func() bool {
		return func() bool {
			rs := routesOf(h, moverMAC)
			for _, r := range rs {
				if r.Source != source || r.Seq != seq || r.Port != "vx" || (source != "local" && (!r.Accepted || r.VTEP != source)) {
					return false
				}
			}
			return len(rs) > 0
		}
	}
	f.wait("host 3: the mover at host 1, sequence 0", 30*time.Second, only(h3, h1.addr, 0))
	f.wait("host 2: the mover at host 1, sequence 0", 30*time.Second, only(h2, h1.addr, 0))
	netnstest.Run(t, "ip", "-n", mv1.ns, "link", "set", "ep0", "down")
	netnstest.Run(t, "ip", "-n", mv2.ns, "link", "set", "ep0", "up")
	mvProbe := openProbe(t, mv2)
	f.wait("the mover, behind host 2, reaches host 3's endpoint", 30*time.Second, func() bool {
		return exec.Command("ip", "netns", "exec", mv2.ns, "ping", "-c", "1", "-W", "1", "192.168.10.3").Run() == nil
	})
	f.wait("host 2: advertises the mover with sequence 1", 30*time.Second, only(h2, "local", 1))
	f.wait("host 1: withdrew its route, has host 2's with sequence 1", 30*time.Second, only(h1, h2.addr, 1))
	f.wait("host 3: the mover at host 2 with sequence 1, host 1's route gone", 30*time.Second, only(h3, h2.addr, 1))
	f.wait("host 3: sends the mover's MAC to host 2", 30*time.Second, func() bool {
		for _, m := range f.tunnel(h3, "vx").RemoteMACs {
			if m.MAC == moverMAC {
				return m.VTEP == h2.addr && m.VNI == 100
			}
		}
		return false
	})
	f.ping(eps[hv{3, 10}], moverIP) // behind host 1 it is down: this is host 2's
	dst, _ := net.ParseMAC(moverMAC)
	mvProbe.received(t)
	for i := range 3 {
		probes[hv{3, 10}].send(t, dst, fmt.Sprintf("m %d", i))
	}
	// Until the three arrived, then half a second for duplicates.
	if got := receivedAll(t, map[int]*probe{0: mvProbe}, map[int]map[string]int{0: {"m 0": 1, "m 1": 1, "m 2": 1}},
		500*time.Millisecond)[0]; got["m 0"]+got["m 1"]+got["m 2"] != 3 {
		t.Errorf("unicast to the moved MAC from host 3: %v at its new place, want each of 3 once", got)
	}
	code, out, errs := runCtl(t, h3.sock, "evpn", "routes", "--mac", moverMAC)
	t.Logf("host 3: ctl evpn routes --mac %s:\n%s", moverMAC, out)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if code != 0 || len(lines) < 2 {
		t.Fatalf("ctl evpn routes --mac: %d %q %q", code, out, errs)
	}
	for _, l := range lines[1:] {
		// PORT TYPE VNI MAC IP VTEP SEQ RD RT SOURCE STATUS
		fs := strings.Fields(l)
		if len(fs) < 11 || fs[0] != "vx" || fs[1] != "2" || fs[2] != "100" || fs[3] != moverMAC || fs[5] != h2.addr || fs[6] != "1" ||
			fs[9] != h2.addr || !strings.HasPrefix(fs[7], h2.addr+":") || !strings.Contains(l, "best, accepted") {
			t.Errorf("ctl evpn routes --mac on host 3: line %q; want the route from host 2 with sequence 1", l)
		}
	}

	// Host 3 stops: hosts 1 and 2 drop what they had from it.
	h3.d.term(t)
	h3.d = nil
	for _, h := range []*fabricHost{h1, h2} {
		f.wait(fmt.Sprintf("host %d: host 3's routes, flood entries and MACs gone", h.n), 30*time.Second, func() bool {
			tn := f.tunnel(h, "vx")
			for _, v := range tn.VNIs {
				if slices.Contains(v.VTEPs, h3.addr) {
					return false
				}
			}
			for _, m := range tn.RemoteMACs {
				if m.VTEP == h3.addr {
					return false
				}
			}
			rs, err := h.c.EVPNRoutes(context.Background(), "", 0, 0, "")
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rs {
				if r.Source == h3.addr {
					return false
				}
			}
			return true
		})
		ns, err := h.c.EVPNNeighbors(context.Background(), "vx")
		if err != nil || len(ns) != 2 || ns[1].Address != h3.addr || ns[1].State == "established" || ns[0].State != "established" {
			t.Errorf("host %d: neighbors after host 3 stopped: %+v, %v", h.n, ns, err)
		}
	}
	if code, out, _ := runCtl(t, h1.sock, "vteps"); code != 0 || strings.Contains(out, h3.addr) || !strings.Contains(out, h2.addr) {
		t.Errorf("host 1: ctl vteps after host 3 stopped: %d\n%s", code, out)
	}
	// Hosts 1 and 2 still flood to each other, once.
	for _, p := range probes {
		p.received(t)
	}
	probes[hv{1, 20}].send(t, nil, "after")
	after := receivedAll(t, map[hv]*probe{{2, 20}: probes[hv{2, 20}], {2, 10}: probes[hv{2, 10}]},
		map[hv]map[string]int{{2, 20}: {"after": 1}}, 500*time.Millisecond)
	if got := after[hv{2, 20}]; got["after"] != 1 {
		t.Errorf("broadcast from host 1 to host 2 after host 3 stopped: %v", got)
	}
	if got := after[hv{2, 10}]; got["after"] != 0 {
		t.Errorf("broadcast of VNI 200 reached VNI 100 after host 3 stopped: %v", got)
	}
}

// checkFabricCtl checks hvnet ctl's view of the fabric on host 1 of a
// running three-host fabric: neighbors, routes, VTEPs, the FDB's remote
// VTEP (remoteMAC: a MAC behind host 2 in VLAN 10) and metrics.
func checkFabricCtl(t *testing.T, f *fabric, remoteMAC string) {
	t.Helper()
	sock := f.hosts[0].sock
	ctl := func(args ...string) []string {
		t.Helper()
		code, out, errs := runCtl(t, sock, args...)
		t.Logf("host 1: hvnet ctl %s:\n%s", strings.Join(args, " "), out)
		if code != 0 {
			t.Fatalf("ctl %s: %d %q", strings.Join(args, " "), code, errs)
		}
		return strings.Split(strings.TrimRight(out, "\n"), "\n")
	}
	// column checks that the table is aligned: each line's value of the
	// column starts under its heading.
	column := func(lines []string, head string, want ...string) {
		t.Helper()
		at := strings.Index(" "+lines[0]+" ", " "+head+" ") // the whole heading: RT is not PORT's end
		if at < 0 || len(lines)-1 != len(want) {
			t.Errorf("table with %q: want %d lines:\n%s", head, len(want), strings.Join(lines, "\n"))
			return
		}
		for i, l := range lines[1:] {
			if len(l) < at || !strings.HasPrefix(l[at:], want[i]) {
				t.Errorf("table: line %q has no %q under %s", l, want[i], head)
			}
		}
	}
	lines := ctl("evpn", "neighbors")
	column(lines, "STATE", "established", "established")
	column(lines, "NEIGHBOR", "10.8.0.2", "10.8.0.3")
	column(lines, "PORT", "vx", "vx")

	lines = ctl("evpn", "routes", "--type", "3")
	column(lines, "SOURCE", "local", "10.8.0.2", "10.8.0.3", "local", "10.8.0.2", "10.8.0.3")
	column(lines, "VNI", "100", "100", "100", "200", "200", "200")
	column(lines, "RT", "65000:100", "65000:100", "65000:100", "65000:200", "65000:200", "65000:200")
	column(lines, "RD", "10.8.0.1:", "10.8.0.2:", "10.8.0.3:", "10.8.0.1:", "10.8.0.2:", "10.8.0.3:") // VNIs get their numbers in any order
	column(lines, "STATUS", "advertised", "best, accepted", "best, accepted", "advertised", "best, accepted", "best, accepted")

	lines = ctl("evpn", "routes", "--vni", "100", "--mac", remoteMAC)
	if len(lines) < 2 {
		t.Errorf("ctl evpn routes --vni 100 --mac %s: no route", remoteMAC)
	}
	for _, l := range lines[1:] {
		if fs := strings.Fields(l); len(fs) < 11 || fs[3] != remoteMAC || fs[5] != "10.8.0.2" || fs[6] != "0" || fs[9] != "10.8.0.2" {
			t.Errorf("ctl evpn routes --mac: %q", l)
		}
	}
	code, out, _ := runCtl(t, sock, "--json", "evpn", "routes", "--type", "2")
	var rs []api.EVPNRoute
	if err := json.Unmarshal([]byte(out), &rs); code != 0 || err != nil {
		t.Fatalf("ctl --json evpn routes: %d %v\n%s", code, err, out)
	}
	local, remote := 0, 0
	for _, r := range rs {
		if r.Type != 2 || r.Port != "vx" || len(r.RouteTargets) != 1 {
			t.Errorf("ctl --json evpn routes --type 2: %+v", r)
		}
		if r.Source == "local" {
			local++
		} else {
			remote++
		}
	}
	// Host 1 advertises its two endpoints and the mover at least; it
	// has the others' four.
	if local < 3 || remote < 4 {
		t.Errorf("ctl --json evpn routes --type 2: %d local, %d received routes; want 3 and 4 at least", local, remote)
	}

	lines = ctl("vteps")
	column(lines, "VTEP", "10.8.0.2", "10.8.0.3")
	column(lines, "VNIS", "100,200", "100,200")

	lines = ctl("fdb", "--mac", remoteMAC)
	column(lines, "PORT", "vx")
	column(lines, "REMOTE VTEP", "10.8.0.2")

	metrics := strings.Join(ctl("metrics"), "\n") + "\n"
	if problems, err := promlint.New(strings.NewReader(metrics)).Lint(); err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %+v", err, problems)
	}
	for _, want := range []string{`hvnet_evpn_bgp_sessions{port="vx",state="established"} 2`, `hvnet_evpn_local_routes{port="vx",type="3"} 2`,
		`hvnet_evpn_neighbor_established{neighbor="10.8.0.3",port="vx"} 1`, `hvnet_evpn_remote_routes{port="vx",type="3"} 4`,
		`hvnet_vxlan_packets_total{direction="rx",port="vx"} `} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
