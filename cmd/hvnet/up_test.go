package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/daemon"
	"github.com/hvnet/hvnet/internal/lines"
	"github.com/hvnet/hvnet/internal/netnstest"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/topology"
	"github.com/hvnet/hvnet/vmtest"
)

func TestUpGoodFile(t *testing.T) {
	dir := t.TempDir()
	sa, sb, sock := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock"), filepath.Join(dir, "hvnet.sock")
	file := filepath.Join(dir, "lab.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf(`switch:
  api: %s
  aging: 60s
ports:
  - name: a
    socket: %s
    vlan: 10
    mac: 52:54:00:00:01:01
    rate: 10M
  - name: b
    socket: %s
    trunk: [10, 20]
    native: 1
`, sock, sa, sb)), 0o644)
	d := startHvnet(t, nil, "up", file)
	c := d.waitAPI(t, sock)
	a, err := c.Port(context.Background(), "a")
	if err != nil || a.Config.PVID != 10 || a.Config.Egress.RateBPS != 10e6 {
		t.Fatalf("port a = %+v, %v", a.Config, err)
	}
	b, err := c.Port(context.Background(), "b")
	if err != nil || b.Config.Mode != "trunk" || len(b.Config.AllowedVLANs) != 2 || b.Config.NativeVLAN != 1 {
		t.Fatalf("port b = %+v, %v", b.Config, err)
	}
	negotiate(t, sa).Close()
	negotiate(t, sb).Close()
	// SIGHUP applies the edited file: a's VLAN and rate change live, b goes.
	os.WriteFile(file, []byte(fmt.Sprintf(`switch:
  api: %s
ports:
  - name: a
    socket: %s
    vlan: 30
    rate: 20M
`, sock, sa)), 0o644)
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitCond(t, "the reload", func() bool {
		a, err := c.Port(context.Background(), "a")
		return err == nil && a.Config.PVID == 30 && a.Config.Egress.RateBPS == 20e6
	})
	if _, err := c.Port(context.Background(), "b"); err == nil {
		t.Error("port b still there after the reload")
	}
	d.term(t)
	noFile(t, sa, sb, sock)
}

func TestUpBadFiles(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown key", "switch:\n  api: /tmp/x.sock\nports:\n  - name: a\n    socket: /tmp/a.sock\n    colour: red\n", `bad.yaml:6: ports[0].colour: unknown key`},
		{"inconsistent", "ports:\n  - name: a\n    socket: /tmp/a.sock\n  - name: a\n    socket: /tmp/b.sock\n", `bad.yaml:4: ports[1].name: duplicate port name "a"`},
		{"guest vlan", "switch:\n  api: /tmp/x.sock\nguests:\n  - name: g1\n    vlan: 5000\n", `bad.yaml:5: guests[0].vlan: VLAN 5000 outside 1..4094`},
		{"guest name", "ports:\n  - name: a\n    socket: /tmp/a.sock\nguests:\n  - name: a\n", `bad.yaml:5: guests[0].name: duplicate port name "a"`},
		{"missing", "", "no such file"},
	} {
		file := filepath.Join(dir, "bad.yaml")
		os.Remove(file)
		if tc.name != "missing" {
			os.WriteFile(file, []byte(tc.yaml), 0o644)
		}
		var out bytes.Buffer
		if code := run([]string{"up", file}, nil, &out, &out); code != 2 || !strings.Contains(out.String(), tc.want) {
			t.Errorf("%s: status %d, %q; want 2 and %q", tc.name, code, out.String(), tc.want)
		}
	}
	var out bytes.Buffer
	if code := run([]string{"up"}, nil, &out, &out); code != 2 {
		t.Errorf("up without a file: status %d", code)
	}
}

// topologyConfig maps the example file's ports and uplink (guests aside).
func TestTopologyConfig(t *testing.T) {
	tp, err := topology.Load("../../topology/testdata/lab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tp.Guests = nil
	cfg, err := topologyConfig(tp)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.API != "/run/hvnet.sock" || cfg.Aging != 300*time.Second || len(cfg.Ports) != 3 {
		t.Fatalf("topologyConfig = %+v", cfg)
	}
	q, dp, u := cfg.Ports[0], cfg.Ports[1], cfg.Ports[2]
	if q.Name() != "qemu0" || q.Kind != api.KindVhostUser || q.Values.Get("mode") != "server" || q.Values.Get("queues") != "2" ||
		q.Values.Get("mac") != "52:54:00:00:01:01" || q.Port.PVID != 10 || q.Port.MACLimit != 4 || len(q.Port.AllowedMACs) != 1 {
		t.Errorf("qemu0 = %+v", q)
	}
	if dp.Values.Get("mode") != "client" || dp.Port.Mode != vswitch.ModeTrunk || dp.Port.Ingress.Bytes.Rate == 0 {
		t.Errorf("dpdk0 = %+v", dp)
	}
	if u.Name() != "uplink" || u.Kind != api.KindUplink || u.Values.Get("if") != "hv-up0" || u.Values.Get("tx") != "ring" || u.Port.Mode != vswitch.ModeTrunk {
		t.Errorf("uplink = %+v", u)
	}
}

// labGuests maps the example file's guests: MAC, address, VLAN, queues,
// and the rate in bits per second.
func TestLabGuests(t *testing.T) {
	tp, err := topology.Load("../../topology/testdata/lab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	gs, err := labGuests(tp)
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != 3 {
		t.Fatalf("labGuests = %+v", gs)
	}
	g1, g2, g3 := gs[0], gs[1], gs[2]
	p1, p2, p3 := g1.PortConfig(), g2.PortConfig(), g3.PortConfig()
	if g1.Name != "g1" || g1.MAC != [6]byte{0x52, 0x54, 0, 0, 0, 1} || g1.Addr.String() != "10.0.10.1/24" ||
		p1.Name != "g1" || p1.Mode != vswitch.ModeAccess || p1.PVID != 10 || p1.Egress.Bytes.Rate != 0 {
		t.Errorf("g1 = %+v, port %+v", g1, p1)
	}
	if p2.Egress.Bytes.Rate != 100e6/8 || p2.Ingress.Bytes.Rate != 100e6/8 || g2.Script != "iperf3 -s -1" {
		t.Errorf("g2 = %+v, port %+v", g2, p2)
	}
	if p3.PVID != 20 || g3.Queues != 2 {
		t.Errorf("g3 = %+v, port %+v", g3, p3)
	}
	// A guest's lab keys are checked as on every surface, with the line.
	bad, err := topology.Parse("g.yaml", []byte("guests:\n  - name: g\n    ip: 10.0.0.1/24\n    mem: lots\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := labGuests(bad); err == nil || !strings.Contains(err.Error(), `g.yaml:4: guests[0]: field "mem": "lots"`) {
		t.Errorf("guest with mem: lots: %v", err)
	}
}

// TestUpGuests brings up a topology with lab guests: b pings a (VLAN 10)
// and ends with 0 when it got replies; c (VLAN 20) ends with 7, which
// becomes hvnet up's status. While they run, the control API lists the
// guests' ports next to the file's vhost-user port, and everything the
// daemon made is gone afterwards.
func TestUpGuests(t *testing.T) {
	if vmtest.Nest(t, vmtest.NestOptions{MemMiB: 2048, Timeout: 4 * time.Minute}) {
		return
	}
	set := vmtest.Images(t)
	dir := t.TempDir()
	sock, sa := filepath.Join(dir, "hvnet.sock"), filepath.Join(dir, "v0.sock")
	file := filepath.Join(dir, "up.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf(`switch:
  api: %s
ports:
  - name: v0
    socket: %s
    vlan: 10
guests:
  - name: a
    ip: 10.0.10.1/24
    vlan: 10
    cmd: iperf3 -s -1
  - name: b
    ip: 10.0.10.2/24
    vlan: 10
    cmd: |
      for i in $(seq 1 60); do
        if ping -c 1 -w 1000 10.0.10.1; then break; fi
      done
      ping -c 2 10.0.10.1 || exit 3
      iperf3 -c 10.0.10.1 -t 1
  - name: c
    ip: 10.0.20.3/24
    vlan: 20
    cmd: exit 7
`, sock, sa)), 0o644)
	out := &lines.Buffer{}
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"up", "--nested", "never", "--kernel", set.Kernel, "--initrd", set.Initrd, file}, nil, out, out)
	}()
	c := api.NewClient(sock)
	ctx := context.Background()
	var names []string
	for i := 0; ; i++ { // deadlock guard: 60 s
		ps, err := c.Ports(ctx)
		if err == nil && len(ps) == 4 {
			for _, p := range ps {
				names = append(names, p.Name)
			}
			break
		}
		select {
		case code := <-done:
			t.Fatalf("hvnet up ended (%d) before its API listed 4 ports (%v, %v):\n%s", code, ps, err, out)
		case <-time.After(10 * time.Millisecond):
		}
		if i == 6000 {
			t.Fatalf("the API never listed 4 ports (%v, %v):\n%s", ps, err, out)
		}
	}
	if strings.Join(names, " ") != "a b c v0" {
		t.Errorf("ports = %v, want a b c v0", names)
	}
	var code int
	select {
	case code = <-done:
	case <-time.After(3 * time.Minute): // deadlock guard
		t.Fatalf("hvnet up did not end:\n%s", out)
	}
	logs := out.String()
	t.Logf("hvnet up:\n%s", logs)
	if code != 7 {
		t.Errorf("status %d, want 7 (guest c's)", code)
	}
	for _, g := range []string{"a", "b"} {
		if !strings.Contains(logs, "guest="+g+" status=0 error=<nil>") {
			t.Errorf("guest %s did not end with status 0", g)
		}
	}
	noFile(t, sock, sa)
}

// The daemon's uplinks, from --uplink and from the API, on veth pairs in
// namespaces the test creates: the daemon runs in one ("the host"), the
// peers in another ("the physical network"). The host's own interfaces
// are never touched.
func TestSwitchDaemonUplink(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2")
	}
	host, phys := netnstest.New(t, "hvd-host"), netnstest.New(t, "hvd-phys")
	for _, pair := range [][2]string{{"up0", "wire0"}, {"up1", "wire1"}} {
		netnstest.Run(t, "ip", "-n", host, "link", "add", pair[0], "type", "veth", "peer", "name", pair[1], "netns", phys)
		netnstest.Run(t, "ip", "-n", host, "link", "set", pair[0], "up")
		netnstest.Run(t, "ip", "-n", phys, "link", "set", pair[1], "up")
	}
	netnstest.Run(t, "ip", "-n", phys, "addr", "add", "10.99.0.2/24", "dev", "wire0")

	dir := t.TempDir()
	sock := filepath.Join(dir, "hvnet.sock")
	d := startHvnet(t, []string{"ip", "netns", "exec", host}, "switch", "--api", sock,
		"--uplink", "name=uplink,if=up0,trunk=10:20,native=1,tx=sendmmsg")
	c := d.waitAPI(t, sock)
	ctx := context.Background()
	if code, out, errs := runCtl(t, sock, "ports"); code != 0 || !strings.Contains(out, "uplink") || !strings.Contains(out, "trunk") {
		t.Fatalf("ctl ports = %d %q %q", code, out, errs)
	}
	// Untagged frames from the physical network (ARP for an absent
	// host) arrive on the uplink.
	deadline := time.Now().Add(20 * time.Second) // deadlock guard
	for {
		exec.Command("ip", "netns", "exec", phys, "ping", "-c", "1", "-W", "0.2", "10.99.0.1").Run()
		p, err := c.Port(ctx, "uplink")
		if err == nil && p.Counters.RxPackets > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("uplink received nothing: %+v, %v\n%s", p.Counters, err, d.logs)
		}
	}

	// An uplink added and removed through the API.
	if _, err := c.AddPort(ctx, api.PortSpec{Kind: api.KindUplink,
		Config: api.PortConfig{Name: "u1", PVID: 20}, Options: api.Opts("if", "up1", "tx", "ring")}); err != nil {
		t.Fatalf("AddPort uplink u1: %v\n%s", err, d.logs)
	}
	if _, err := c.AddPort(ctx, api.PortSpec{Kind: api.KindUplink,
		Config: api.PortConfig{Name: "u2", PVID: 20}, Options: api.Opts("if", "up1")}); err == nil || !strings.Contains(err.Error(), "u1") {
		t.Errorf("second uplink on up1: %v, want a refusal naming u1", err)
	}
	if _, err := c.AddPort(ctx, api.PortSpec{Kind: api.KindUplink,
		Config: api.PortConfig{Name: "u3", PVID: 20}, Options: api.Opts("if", "nosuch0")}); err == nil || !strings.Contains(err.Error(), "no such network interface") {
		t.Errorf("uplink on a missing interface: %v", err)
	}
	if err := c.DeletePort(ctx, "u1"); err != nil {
		t.Fatal(err)
	}
	if ps, _ := c.Ports(ctx); len(ps) != 1 {
		t.Errorf("after DELETE u1: %+v", ps)
	}
	// Re-adding proves the first one let go of the interface.
	if _, err := c.AddPort(ctx, api.PortSpec{Kind: api.KindUplink,
		Config: api.PortConfig{Name: "u1", PVID: 20}, Options: api.Opts("if", "up1")}); err != nil {
		t.Fatalf("AddPort u1 again: %v", err)
	}
	d.term(t)
	noFile(t, sock)
}

// TestUpLabAging: the file's switch.aging reaches the lab's switch (lab
// honours Config.Switch: lab.TestSwitchConfig).
func TestUpLabAging(t *testing.T) {
	tp, err := topology.Load("../../topology/testdata/lab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tp.Switch.Aging = 42 * time.Second
	cfg, err := topologyConfig(tp)
	if err != nil {
		t.Fatal(err)
	}
	gs, err := labGuests(tp)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{stdout: io.Discard, stderr: io.Discard, log: hclog.NewNullLogger()}
	lc := upLabConfig(e, cfg, gs, "k", "i", nil)
	if lc.Switch.AgingTime != 42*time.Second || len(lc.Guests) != 3 || lc.Kernel != "k" {
		t.Errorf("upLabConfig: aging %v, %d guests, kernel %q; want 42s, 3, k", lc.Switch.AgingTime, len(lc.Guests), lc.Kernel)
	}
}

// TestUpACLs: a port's ACL in the topology file (both directions) is on
// the switch once the daemon is up.
func TestUpACLs(t *testing.T) {
	dir := t.TempDir()
	tp, err := topology.Parse("acl.yaml", []byte(fmt.Sprintf(`switch:
  api: %s/api.sock
ports:
  - name: v
    socket: %s/v.sock
    acl:
      rules:
        - {action: deny, protocol: tcp, dst_ports: 22}
        - {action: deny, direction: egress, protocol: udp, dst_ports: 53}
      egress_default: deny
`, dir, dir)))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := topologyConfig(tp)
	if err != nil {
		t.Fatal(err)
	}
	sw := vswitch.New(vswitch.Config{})
	r, err := daemon.Start(context.Background(), hclog.NewNullLogger(), sw, cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown()
	h := sw.Port("v")
	in, _ := h.ACL()
	out, _ := h.EgressACL()
	if len(in.Rules) != 1 || len(out.Rules) != 1 || out.Default != vswitch.ACLDeny || out.Rules[0].Proto != 17 {
		t.Errorf("port v: ingress %+v, egress %+v", in, out)
	}
}

// hvnet ctl config prints the running configuration as a topology file:
// restarted with it, the daemon has the same ports in the same state
// (kinds, settings, rates, ACLs).
func TestCtlConfigRoundTrip(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "api.sock")
	file := filepath.Join(dir, "in.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf(`switch:
  api: %[1]s
conntrack:
  max_entries_per_port: 1000
  timeouts: {udp: 1m}
ports:
  - name: a
    socket: %[2]s/a.sock
    queues: 2
    mac: 52:54:00:00:01:01
    options: {socket-mode: "0660", socket-group: nogroup}
    vlan: 10
    mac_limit: 4
    egress: {rate_bps: 20M, burst_bytes: 64k}
    ingress: {rate_pps: 1000}
    acl:
      default: deny
      rules:
        - {action: allow, protocol: tcp, dst_ports: "22"}
        - {action: deny, direction: egress, dst_ip: 10.9.0.0/16}
    security_group:
      inbound:
        - {protocol: tcp, ports: 22, remote: 10.0.0.0/8}
        - {protocol: icmp}
      outbound_default: deny
  - name: b
    socket: %[2]s/b.sock
    mode: client
    options: {queues: 2}
    trunk: [10, 20]
    native: 1
    port_security: false
    storm:
      broadcast: {rate_pps: 500}
`, sock, dir)), 0o644)
	state := func() []api.Port {
		t.Helper()
		ps, err := api.NewClient(sock).Ports(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for i := range ps {
			ps[i].Counters, ps[i].Device = api.Counters{}, nil
			if a := ps[i].ACL; a != nil {
				a.DefaultHits, a.EgressDefaultHits = 0, 0
				for j := range a.Rules {
					a.Rules[j].Hits = 0
				}
			}
		}
		return ps
	}
	group := func() (api.SecurityGroup, *api.ConntrackSettings) {
		t.Helper()
		c := api.NewClient(sock)
		g, err := c.SecurityGroup(context.Background(), "a")
		if err != nil {
			t.Fatal(err)
		}
		var si api.SwitchInfo
		if err := c.Do(context.Background(), http.MethodGet, "/v1/switch", nil, &si); err != nil {
			t.Fatal(err)
		}
		return g, si.Conntrack
	}
	d := startHvnet(t, nil, "up", file)
	d.waitAPI(t, sock)
	before := state()
	sgBefore, ctBefore := group()
	code, out, errs := runCtl(t, sock, "config")
	if code != 0 {
		t.Fatalf("ctl config: %d %s", code, errs)
	}
	d.term(t)
	again := filepath.Join(dir, "again.yaml")
	os.WriteFile(again, []byte(out), 0o644)
	d = startHvnet(t, nil, "up", again)
	d.waitAPI(t, sock)
	after := state()
	if sgAfter, ctAfter := group(); !reflect.DeepEqual(sgBefore, sgAfter) || !reflect.DeepEqual(ctBefore, ctAfter) ||
		len(sgBefore.Inbound) != 2 || ctBefore.MaxEntriesPerPort != 1000 || ctBefore.Timeouts.UDP != "1m0s" {
		t.Errorf("security group / conntrack after a restart: %+v %+v; before %+v %+v\nfile:\n%s", sgAfter, ctAfter, sgBefore, ctBefore, out)
	}
	if !reflect.DeepEqual(before, after) {
		b1, _ := json.MarshalIndent(before, "", " ")
		b2, _ := json.MarshalIndent(after, "", " ")
		t.Errorf("state after a restart with ctl config's file differs:\nbefore %s\nafter %s\nfile:\n%s", b1, b2, out)
	}
	if len(before) != 2 || before[0].Kind != api.KindVhostUser || before[0].ACL == nil || len(before[0].ACL.Rules) != 2 ||
		before[0].Config.Egress.RateBPS != 20e6 || before[1].Options["mode"][0] != "client" ||
		before[0].Options["socket-group"][0] != "nogroup" || before[1].Options["queues"][0] != "2" {
		t.Errorf("the state compared is not the file's: %+v", before)
	}
	d.term(t)
}

// A topology port of any kind: kind and options, the command line's keys.
func TestTopologyKinds(t *testing.T) {
	tp, err := topology.Parse("k.yaml", []byte("ports:\n  - name: u\n    kind: uplink\n    options: {if: eth9, tx: sendmmsg}\n    trunk: [10]\n"+
		"  - name: v\n    socket: /s\n    options:\n      queues: 4\n      socket-mode: \"0660\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := topologyConfig(tp)
	if err != nil {
		t.Fatal(err)
	}
	u, v := cfg.Ports[0], cfg.Ports[1]
	if u.Kind != api.KindUplink || u.Values.Get("if") != "eth9" || u.Values.Get("tx") != "sendmmsg" || u.Port.Mode != vswitch.ModeTrunk ||
		v.Kind != api.KindVhostUser || v.Values.Get("queues") != "4" || v.Values.Get("socket-mode") != "0660" {
		t.Errorf("ports = %+v", cfg.Ports)
	}
	// A vxlan port over IPv6: YAML reads the addresses as text, unquoted;
	// a neighbor with an ASN is quoted ([...] would be a YAML list).
	tp, err = topology.Parse("k.yaml", []byte("ports:\n  - name: vx\n    kind: vxlan\n    trunk: [10]\n    options:\n"+
		"      local: 2001:db8::1\n      remote: [2001:db8::9]\n      vni: [\"100:10\"]\n      udp6_zero_csum_rx: on\n"+
		"      asn: 65000\n      router_id: 10.0.0.1\n      neighbor: [2001:db8::2, \"[2001:db8::3]:65001\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err = topologyConfig(tp); err != nil {
		t.Fatal(err)
	}
	if vx := cfg.Ports[0]; vx.Values.Get("local") != "2001:db8::1" || vx.Values["neighbor"][1] != "[2001:db8::3]:65001" ||
		vx.Values.Get("udp6-zero-csum-rx") != "on" || vx.Values.Get("remote") != "2001:db8::9" {
		t.Errorf("vxlan port over IPv6: %+v", vx)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"ports:\n  - name: u\n    kind: uplink\n    options:\n      if: eth9\n      colour: red\n", `k.yaml:6: port u: field "colour": unknown for kind uplink`},
		{"ports:\n  - name: vx\n    kind: vxlan\n    trunk: [10]\n    options: {local: 2001:db8::1, vni: [\"100:10\"], remote: [10.0.0.2]}\n",
			`port vx: field "remote": "10.0.0.2" is IPv4, but local=2001:db8::1 is IPv6`},
		{"ports:\n  - name: v\n    socket: /s\n    options:\n      socket: /t\n", `k.yaml:5: port v: options.socket: given as socket too`},
		{"ports:\n  - name: x\n    kind: tunnel\n", `kind "tunnel": unknown`},
	} {
		tp, err := topology.Parse("k.yaml", []byte(tc.yaml))
		if err == nil {
			_, err = topologyConfig(tp)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v; want %q", tc.yaml, err, tc.want)
		}
	}
}
