package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.yaml.in/yaml/v3"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/daemon"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/topology"
)

func TestCtlSG(t *testing.T) {
	sw, sock := ctlDaemon(t)
	if code, _, errs := runCtl(t, sock, "sg", "a"); code != 1 || !strings.Contains(errs, `port "a" has no security group`) {
		t.Fatalf("sg a without one = %d %q", code, errs)
	}
	file := filepath.Join(t.TempDir(), "sg.json")
	os.WriteFile(file, []byte(`{"inbound":[{"protocol":"tcp","ports":"22","remote":"10.0.0.0/8"},{"protocol":"icmpv6","family":6}],
		"outbound":[{"protocol":"udp","ports":"53"}],"outbound_default":"deny"}`), 0o600)
	code, out, errs := runCtl(t, sock, "sg", "a", "set", file)
	if code != 0 || out != "security group of a: 2 inbound rule(s), default deny; 1 outbound rule(s), default deny\n" {
		t.Fatalf("sg a set = %d %q %q", code, out, errs)
	}
	if g, ok := sw.Port("a").SecurityGroup(); !ok || len(g.Inbound) != 2 || g.OutboundDefault != vswitch.ACLDeny {
		t.Fatalf("the switch's group = %+v %v", g, ok)
	}
	code, out, errs = runCtl(t, sock, "sg", "a", "show")
	if code != 0 {
		t.Fatalf("sg a show = %d %q", code, errs)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	fields := func(i int) string { return strings.Join(strings.Fields(lines[i]), " ") }
	if len(lines) != 6 || fields(0) != "DIRECTION # PROTO PORTS REMOTE FAMILY" || fields(1) != "inbound 0 tcp 22 10.0.0.0/8 *" ||
		fields(2) != "inbound 1 icmpv6 * * IPv6" || fields(3) != "inbound default deny" || fields(4) != "outbound 0 udp 53 * *" ||
		fields(5) != "outbound default deny" || strings.Index(lines[1], "tcp") != strings.Index(lines[0], "PROTO") ||
		strings.Index(lines[3], "deny") != strings.Index(lines[0], "PROTO") {
		t.Fatalf("sg show table:\n%s", out)
	}
	// What show --json prints, set takes back.
	code, out, _ = runCtl(t, sock, "--json", "sg", "a")
	var g api.SecurityGroup
	if code != 0 || json.Unmarshal([]byte(out), &g) != nil || len(g.Inbound) != 2 || g.Inbound[1].Protocol != "icmpv6" || g.InboundDefault != "deny" {
		t.Fatalf("sg --json = %d %q", code, out)
	}
	os.WriteFile(file, []byte(out), 0o600)
	zone := sw.Port("a").Conntrack()
	if code, out, errs = runCtl(t, sock, "sg", "a", "set", "--flush", file); code != 0 || !strings.Contains(out, "tracked connections flushed") {
		t.Fatalf("set of show --json output with --flush = %d %q %q", code, out, errs)
	}
	if again, _ := sw.Port("a").SecurityGroup(); len(again.Inbound) != 2 || sw.Port("a").Conntrack() != zone {
		t.Fatalf("the group set back: %+v (same connection table: %v)", again, sw.Port("a").Conntrack() == zone)
	}
	// Bad input: the server's message names the field; nothing changes.
	for _, tc := range []struct{ body, want string }{
		{`{"inbound":[{"protocol":"tcp"},{"ports":"22"}]}`, "inbound[1].ports: ports need protocol tcp or udp"},
		{`{"outbound":[{"remote":"10.0.0.1/8"}]}`, "outbound[0].remote"},
		{`{"ingress":[]}`, "ingress"},
	} {
		os.WriteFile(file, []byte(tc.body), 0o600)
		if code, _, errs = runCtl(t, sock, "sg", "a", "set", file); code == 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("sg set %s = %d %q; want %q", tc.body, code, errs, tc.want)
		}
	}
	if g, _ := sw.Port("a").SecurityGroup(); len(g.Inbound) != 2 || len(g.Outbound) != 1 {
		t.Fatalf("group changed by a bad set: %+v", g)
	}
	// From stdin.
	var o, e bytes.Buffer
	if code := run([]string{"ctl", "--socket", sock, "sg", "b", "set", "-"}, strings.NewReader(`{"inbound_default":"allow"}`), &o, &e); code != 0 ||
		!strings.Contains(o.String(), "0 inbound rule(s), default allow; 0 outbound rule(s), default allow") {
		t.Fatalf("sg b set - = %d %q %q", code, o.String(), e.String())
	}
	if code, out, _ = runCtl(t, sock, "port", "a"); code != 0 || !strings.Contains(out, "2 inbound rule(s) (default deny), 1 outbound (default deny), 0 connection(s) tracked") {
		t.Errorf("port a:\n%s", out)
	}
	for _, args := range [][]string{{"sg", "a", "frobnicate"}, {"sg"}, {"sg", "a", "show", "--flush"}, {"sg", "a", "set"}} {
		if code, _, _ = runCtl(t, sock, args...); code != 2 {
			t.Errorf("%q: exit %d; want 2", args, code)
		}
	}
	if code, out, errs = runCtl(t, sock, "sg", "a", "delete"); code != 0 || !strings.Contains(out, "security group of a removed") {
		t.Fatalf("sg a delete = %d %q %q", code, out, errs)
	}
	if _, ok := sw.Port("a").SecurityGroup(); ok {
		t.Fatal("group still there after delete")
	}
	if code, _, errs = runCtl(t, sock, "sg", "a", "delete"); code != 1 || !strings.Contains(errs, "no security group") {
		t.Fatalf("second delete = %d %q", code, errs)
	}
	if code, _, errs = runCtl(t, sock, "sg", "zz"); code != 1 || !strings.Contains(errs, `no port "zz"`) {
		t.Fatalf("sg of a missing port = %d %q", code, errs)
	}
}

func TestCtlConntrack(t *testing.T) {
	sw, sock := ctlDaemon(t)
	code, out, errs := runCtl(t, sock, "conntrack")
	if code != 0 || !strings.Contains(out, "no port has a security group") || !strings.Contains(out, "65536 per port, 1048576 in all") {
		t.Fatalf("conntrack without groups = %d %q %q", code, out, errs)
	}
	if code, _, errs = runCtl(t, sock, "conntrack", "a"); code != 1 || !strings.Contains(errs, "no security group") {
		t.Fatalf("conntrack a without a group = %d %q", code, errs)
	}
	g := vswitch.DefaultSecurityGroup()
	for _, p := range []string{"a", "b"} {
		if err := sw.SetSecurityGroup(p, &g, false); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errs = runCtl(t, sock, "conntrack")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if code != 0 || len(lines) != 5 || !strings.HasPrefix(lines[0], "PORT") || !strings.HasPrefix(lines[1], "a ") ||
		!strings.HasPrefix(lines[3], "total") || lines[4] != "0 of 1048576 connections tracked in all; at most 65536 per port" ||
		strings.Index(lines[1], "0") != strings.Index(lines[0], "ENTRIES") {
		t.Fatalf("conntrack = %d %q\n%s", code, errs, out)
	}
	code, out, errs = runCtl(t, sock, "conntrack", "a", "--limit", "5")
	if code != 0 || !strings.HasPrefix(out, "PROTO") || !strings.Contains(out, "port a: 0 of 65536 connections tracked") {
		t.Fatalf("conntrack a = %d %q %q", code, out, errs)
	}
	code, out, _ = runCtl(t, sock, "--json", "conntrack", "a")
	var pc api.PortConntrack
	if code != 0 || json.Unmarshal([]byte(out), &pc) != nil || pc.Port != "a" || pc.Limit != api.DefaultConntrackList {
		t.Fatalf("conntrack --json a = %d %q", code, out)
	}
	code, out, _ = runCtl(t, sock, "conntrack", "--json")
	var s api.ConntrackSummary
	if code != 0 || json.Unmarshal([]byte(out), &s) != nil || len(s.Ports) != 2 {
		t.Fatalf("conntrack --json = %d %q", code, out)
	}
	if code, out, errs = runCtl(t, sock, "conntrack", "b", "--flush"); code != 0 || out != "0 tracked connection(s) of b flushed\n" {
		t.Fatalf("conntrack b --flush = %d %q %q", code, out, errs)
	}
	for _, args := range [][]string{{"conntrack", "--flush"}, {"conntrack", "a", "b"}, {"conntrack", "a", "--limit", "99999"}, {"conntrack", "--frob"}} {
		if code, _, _ = runCtl(t, sock, args...); code != 2 {
			t.Errorf("%q: exit %d; want 2", args, code)
		}
	}
	if code, _, errs = runCtl(t, sock, "conntrack", "zz"); code != 1 || !strings.Contains(errs, `no port "zz"`) {
		t.Fatalf("conntrack zz = %d %q", code, errs)
	}
}

// A port's connections as ctl prints them: endpoints with their ports
// (IPv6 in brackets), ICMP's identifier, what the limit left out.
func TestPrintPortConntrack(t *testing.T) {
	p := func(n int) *int { return &n }
	var b bytes.Buffer
	err := printPortConntrack(&b, api.PortConntrack{Port: "vm1", MaxEntries: 100, LeftOut: 7, Entries: []api.ConntrackEntry{
		{Family: 4, Protocol: "tcp", Local: "10.0.0.2", Remote: "10.0.0.1", LocalPort: p(22), RemotePort: p(40000), Origin: "inbound",
			State: "ESTABLISHED", ExpiresIn: 431999, Packets: api.ConntrackPackets{Outbound: 5, Inbound: 6}},
		{Family: 6, Protocol: "udp", Local: "2001:db8::2", Remote: "2001:db8::1", LocalPort: p(5000), RemotePort: p(53), Origin: "outbound", State: "REPLIED", ExpiresIn: 110},
		{Family: 6, Protocol: "icmpv6", Local: "2001:db8::2", Remote: "2001:db8::1", ICMPID: p(7), Origin: "outbound", State: "UNREPLIED", ExpiresIn: 29},
	}, Counters: api.ConntrackCounters{Entries: 10, New: 12, Invalid: 1}})
	if err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"10.0.0.2:22", "10.0.0.1:40000", "119h59m59s", "[2001:db8::2]:5000", "[2001:db8::1]:53", "icmpv6 id 7",
		"(7 more not shown: --limit, at most 10000)", "port vm1: 10 of 100 connections tracked; 12 opened, 1 invalid frames"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	lines := strings.Split(out, "\n")
	if strings.Index(lines[1], "ESTABLISHED") != strings.Index(lines[0], "STATE") {
		t.Errorf("not aligned:\n%s", out)
	}
}

// ctl config writes security groups and the conntrack section in a file
// the topology package takes back with the same settings.
func TestRunningConfigSecurityGroups(t *testing.T) {
	ct := api.ConntrackInfo((&topology.Conntrack{MaxEntries: 5000, MaxEntriesPerPort: 100, Timeouts: &topology.ConntrackTimeouts{UDP: time.Minute}}).Config())
	sw := api.SwitchInfo{Aging: "5m0s", Conntrack: &ct}
	group := api.SecurityGroup{Inbound: []api.SGRule{{Protocol: "tcp", Ports: "22", Remote: "10.0.0.0/8"}, {Protocol: "icmpv6", Family: 6}},
		Outbound: []api.SGRule{}, InboundDefault: "deny", OutboundDefault: "deny"}
	ps := []api.Port{
		{Name: "a", Kind: api.KindVhostUser, Options: map[string]api.OptionValue{"socket": {"/run/hvnet/a.sock"}},
			Config: api.PortConfig{Name: "a", Mode: "access", PVID: 10}, SecurityGroup: &api.SecurityGroupSummary{InboundRules: 2}},
		{Name: "u", Kind: api.KindUplink, Options: map[string]api.OptionValue{"if": {"eth1"}},
			Config: api.PortConfig{Name: "u", Mode: "access", PVID: 1}, SecurityGroup: &api.SecurityGroupSummary{}},
	}
	f, _ := runningConfig("/run/hvnet.sock", sw, ps, map[string]api.SecurityGroup{"a": group,
		"u": {Inbound: []api.SGRule{}, Outbound: []api.SGRule{}, InboundDefault: "deny", OutboundDefault: "allow"}})
	var b bytes.Buffer
	if err := yaml.NewEncoder(&b).Encode(f); err != nil {
		t.Fatal(err)
	}
	tp, err := topology.Parse("now.yaml", b.Bytes())
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	cfg, err := topologyConfig(tp)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := api.FromSecurityGroup(group)
	if len(cfg.SecurityGroups) != 2 || cfg.SecurityGroups[0].Port != "a" || !reflect.DeepEqual(cfg.SecurityGroups[0].Group, want) ||
		cfg.SecurityGroups[1].Port != "u" || cfg.SecurityGroups[1].Group.OutboundDefault != vswitch.ACLAllow {
		t.Errorf("groups = %+v\n%s", cfg.SecurityGroups, b.String())
	}
	if got := api.ConntrackInfo(cfg.Conntrack); !reflect.DeepEqual(got, ct) || cfg.Conntrack.Timeouts.UDP != time.Minute {
		t.Errorf("conntrack = %+v, want %+v\n%s", got, ct, b.String())
	}
}

// TestUpSecurityGroups: a port's security group and the conntrack
// section of the topology file are on the switch once the daemon is up.
func TestUpSecurityGroups(t *testing.T) {
	dir := t.TempDir()
	tp, err := topology.Parse("sg.yaml", []byte(fmt.Sprintf(`switch:
  api: %s/api.sock
conntrack:
  max_entries: 3000
  max_entries_per_port: 300
  timeouts: {tcp_established: 1h}
ports:
  - name: v
    socket: %s/v.sock
    security_group:
      inbound:
        - {protocol: tcp, ports: 22}
      outbound_default: deny
  - name: w
    socket: %s/w.sock
`, dir, dir, dir)))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := topologyConfig(tp)
	if err != nil {
		t.Fatal(err)
	}
	if sc := cfg.SwitchConfig(); sc.Conntrack.TableLimit != 3000 || sc.Conntrack.ZoneLimit != 300 || sc.Conntrack.Timeouts.TCPEstablished != time.Hour {
		t.Errorf("switch config's conntrack = %+v", sc.Conntrack)
	}
	sw := vswitch.New(cfg.SwitchConfig())
	r, err := daemon.Start(context.Background(), hclog.NewNullLogger(), sw, cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown()
	g, ok := sw.Port("v").SecurityGroup()
	if !ok || len(g.Inbound) != 1 || g.Inbound[0].Ports.From != 22 || g.OutboundDefault != vswitch.ACLDeny || g.InboundDefault != vswitch.ACLDeny {
		t.Errorf("port v's group = %+v %v", g, ok)
	}
	if _, ok := sw.Port("w").SecurityGroup(); ok {
		t.Error("port w got a group")
	}
	s, err := api.NewClient(dir + "/api.sock").Conntrack(context.Background())
	if err != nil || s.MaxEntries != 3000 || s.MaxEntriesPerPort != 300 || len(s.Ports) != 1 {
		t.Errorf("GET /v1/conntrack = %+v, %v", s, err)
	}
}
