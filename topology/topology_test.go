package topology

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/conntrack"
	vswitch "github.com/hvnet/hvnet/switch"
)

func TestLoadExample(t *testing.T) {
	top, err := Load("testdata/lab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if top.Switch.API != "/run/hvnet.sock" || top.Switch.Aging != 300*time.Second {
		t.Errorf("switch = %+v", top.Switch)
	}
	if len(top.Ports) != 2 || len(top.Guests) != 3 || top.Uplink == nil || top.Uplink.Name != "uplink" {
		t.Fatalf("topology = %+v", top)
	}
	q := top.Ports[0].Config("qemu0")
	if q.Mode != vswitch.ModeAccess || q.PVID != 10 || q.MACLimit != 4 || len(q.AllowedMACs) != 1 {
		t.Errorf("qemu0 config = %+v", q)
	}
	d := top.Ports[1].Config("dpdk0")
	if d.Mode != vswitch.ModeTrunk || !reflect.DeepEqual(d.AllowedVLANs, []uint16{10, 20}) || d.NativeVLAN != 1 ||
		d.Ingress.Bytes.Rate != 125_000_000 || d.Ingress.Bytes.Burst != 256_000 || d.Storm.Broadcast.Packets.Rate != 1000 {
		t.Errorf("dpdk0 config = %+v", d)
	}
	g2 := top.Guests[1].Config()
	if g2.PVID != 10 || g2.Egress.Bytes.Rate != 12_500_000 || g2.Ingress.Bytes.Rate != 12_500_000 || top.Guests[1].Cmd != "iperf3 -s -1" {
		t.Errorf("g2 config = %+v", g2)
	}
	if g := top.Guests[0].SecurityGroup.Group(); g == nil || len(g.Inbound) != 2 || g.InboundDefault != vswitch.ACLDeny {
		t.Errorf("g1's security group = %+v", g)
	}
	if c := top.Conntrack.Config(); c.TableLimit != 1<<20 || c.ZoneLimit != 65536 || c.Timeouts.UDP != 30*time.Second {
		t.Errorf("conntrack = %+v", c)
	}
	if f := top.FlowExport.Config(); !f.Enabled || len(f.Collectors) != 1 || f.ActiveTimeout != time.Minute || f.MaxFlows != 65536 {
		t.Errorf("flow export = %+v", f)
	}
	if top.Ports[1].LineOf("trunk") != 22 {
		t.Errorf("dpdk0 trunk on line %d, want 22", top.Ports[1].LineOf("trunk"))
	}
	if u := top.Uplink.Config("uplink"); u.Mode != vswitch.ModeTrunk || !reflect.DeepEqual(u.AllowedVLANs, []uint16{10, 20}) {
		t.Errorf("uplink config = %+v", u)
	}
	// Every port config the file produces is one the switch accepts.
	sw := vswitch.New(vswitch.Config{})
	cfgs := []vswitch.PortConfig{q, d, top.Uplink.Config("uplink")}
	for _, g := range top.Guests {
		cfgs = append(cfgs, g.Config())
	}
	for _, c := range cfgs {
		if _, err := sw.AddPort(c, nopPort{}); err != nil {
			t.Errorf("switch rejects %s: %v", c.Name, err)
		}
	}
}

type nopPort struct{}

func (nopPort) Send(f []vswitch.Frame) int { return len(f) }
func (nopPort) Caps() vswitch.Caps         { return 0 }

func TestBadTopologies(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string // substrings of the error, "FILE:LINE: FIELD: ..."
	}{
		{"unknown top key", "switch: {}\nprots: []\n", []string{`bad.yaml:2: prots: unknown key`}},
		{"unknown port key", "ports:\n  - name: a\n    socket: /s\n    vlan: 3\n    vlna: 4\n", []string{`bad.yaml:5: ports[0].vlna: unknown key (known keys here: acl, allowed_macs, dscp_class, egress,`}},
		{"former names", "ports:\n  - name: a\n    socket: /s\n    pvid: 3\n    allowed_vlans: [3]\nuplink:\n  interface: x\n  mode: trunk\n  ingress: {rate: 1M}\n",
			[]string{`bad.yaml:4: ports[0].pvid: unknown key: it is now called vlan`, `bad.yaml:5: ports[0].allowed_vlans: unknown key: it is now called trunk`,
				`bad.yaml:7: uplink.interface: unknown key: it is now called if`, `bad.yaml:8: uplink.mode: unknown key: it is now called vlan_mode`,
				`bad.yaml:9: uplink.ingress.rate: unknown key: it is now called rate_bps`}},
		{"command line spelling", "ports:\n  - name: a\n    socket: /s\n    mac-limit: 3\n    mac_limit: 4\n", []string{`bad.yaml:5: ports[0].mac_limit: key given twice (first on line 4)`}},
		{"unknown nested key", "guests:\n  - name: g\n    rate: 1M\nuplink:\n  if: x\n  ingress: {rate_bps: 1M, brust: 3}\n", []string{`bad.yaml:6: uplink.ingress.brust: unknown key`}},
		{"duplicate key", "ports:\n  - name: a\n    socket: /s\n    name: b\n", []string{`bad.yaml:4: ports[0].name: key given twice (first on line 2)`}},
		{"wrong type", "ports:\n  - name: a\n    socket: /s\n    vlan: ten\n", []string{`bad.yaml:4: ports[0].vlan: want an integer, got "ten"`}},
		{"not a list", "ports:\n  name: a\n", []string{`bad.yaml:2: ports: want a list`}},
		{"bad duration", "switch:\n  aging: forever\n", []string{`bad.yaml:2: switch.aging: "forever" is not a duration`}},
		{"vlan range", "ports:\n  - name: a\n    socket: /s\n    vlan: 4095\n", []string{`bad.yaml:4: ports[0].vlan: VLAN 4095 outside 1..4094`}},
		{"guest vlan", "guests:\n  - name: g\n    vlan: 5000\n", []string{`bad.yaml:3: guests[0].vlan: VLAN 5000 outside 1..4094`}},
		{"trunk without vlans", "uplink:\n  if: x\n  vlan_mode: trunk\n", []string{`bad.yaml:3: uplink.trunk: a trunk needs the VLANs it carries`}},
		{"trunk vlan range", "uplink:\n  if: x\n  trunk: [10, 0]\n", []string{`bad.yaml:3: uplink.trunk[1]: VLAN 0 outside 1..4094`}},
		{"trunk string", "uplink:\n  if: x\n  trunk: 10:5000\n", []string{`bad.yaml:3: uplink.trunk:`, `5000`}},
		{"trunk with vlan", "uplink:\n  if: x\n  trunk: [10]\n  vlan: 3\n", []string{`bad.yaml:4: uplink.vlan: a trunk has no access VLAN`}},
		{"access with vlans", "ports:\n  - name: a\n    socket: /s\n    vlan_mode: access\n    trunk: [3]\n", []string{`bad.yaml:5: ports[0].trunk: only a trunk`}},
		{"bad mode", "ports:\n  - name: a\n    socket: /s\n    vlan_mode: hybrid\n", []string{`bad.yaml:4: ports[0].vlan_mode: "hybrid"`}},
		{"old vlan mode", "ports:\n  - name: a\n    socket: /s\n    mode: trunk\n", []string{`bad.yaml:4: ports[0].mode: "trunk": want server or client (the VLAN mode is vlan_mode)`}},
		{"rate twice", "ports:\n  - name: a\n    socket: /s\n    rate: 1M\n    egress: {rate_bps: 2M}\n", []string{`bad.yaml:4: ports[0].rate: give rate or egress, not both`}},
		{"duplicate names", "ports:\n  - name: a\n    socket: /s1\nguests:\n  - name: a\n", []string{`bad.yaml:5: guests[0].name: duplicate port name "a" (also ports[0])`}},
		{"duplicate sockets", "ports:\n  - name: a\n    socket: /s\n  - name: b\n    socket: /s\n", []string{`bad.yaml:5: ports[1].socket: duplicate socket "/s"`}},
		{"duplicate macs", "guests:\n  - name: a\n    mac: 02:00:00:00:00:01\n  - name: b\n    mac: 02:00:00:00:00:01\n", []string{`bad.yaml:5: guests[1].mac: duplicate MAC`}},
		{"duplicate ips", "guests:\n  - name: a\n    ip: 10.0.0.1/24\n  - name: b\n    ip: 10.0.0.1/24\n", []string{`bad.yaml:5: guests[1].ip: duplicate address 10.0.0.1`}},
		{"group mac", "guests:\n  - name: a\n    mac: 01:00:00:00:00:01\n", []string{`bad.yaml:3: guests[0].mac: 01:00:00:00:00:01 is a group address`}},
		{"bad ip", "guests:\n  - name: a\n    ip: 10.0.0.1\n", []string{`bad.yaml:3: guests[0].ip: "10.0.0.1": want address/prefix`}},
		{"socket on another kind", "ports:\n  - name: u\n    kind: uplink\n    socket: /s\n", []string{`bad.yaml:4: ports[0].socket: only for kind vhost-user`}},
		{"options not a mapping", "ports:\n  - name: a\n    socket: /s\n    options: 3\n", []string{`bad.yaml:4: ports[0].options: want a mapping`}},
		{"nested option", "ports:\n  - name: a\n    socket: /s\n    options: {x: {y: 1}}\n", []string{`bad.yaml:4: ports[0].options: line 4: x: want a value or a list`}},
		{"bad metrics address", "switch:\n  metrics_addr: 9477\n", []string{`bad.yaml:2: switch.metrics_addr: "9477": want HOST:PORT`}},
		{"bad dashboard address", "switch:\n  dashboard_addr: localhost:http\n", []string{`bad.yaml:2: switch.dashboard_addr: "localhost:http": port "http" is not a number in 0..65535`}},
		{"negative rate", "guests:\n  - name: a\n    rate: -5M\n", []string{`bad.yaml:3: guests[0].rate: rate "-5M": want bits per second`}},
		{"absurd rate", "ports:\n  - name: a\n    socket: /s\n    egress:\n      rate_bps: 100Tbit\n", []string{`bad.yaml:5: ports[0].egress.rate_bps: rate "100Tbit": above 8.796 Tbit/s`}},
		{"absurd pps", "ports:\n  - name: a\n    socket: /s\n    egress:\n      rate_pps: 9000000000000000\n", []string{`bad.yaml:5: ports[0].egress.rate_pps:`}},
		{"empty limit", "ports:\n  - name: a\n    socket: /s\n    egress: {burst_bytes: 3}\n", []string{`bad.yaml:4: ports[0].egress: a limit needs rate_bps or rate_pps`}},
		{"socket mode", "ports:\n  - name: a\n    socket: /s\n    mode: both\n", []string{`bad.yaml:4: ports[0].mode: "both": want server or client`}},
		{"missing socket", "ports:\n  - name: a\n", []string{`bad.yaml:2: ports[0].socket: missing`}},
		{"uplink iface", "uplink:\n  tx: turbo\n", []string{`bad.yaml:1: uplink.if: missing`, `bad.yaml:2: uplink.tx: "turbo"`}},
		{"several errors", "guests:\n  - name: a\n    vlan: 0\n    queues: 99\n", []string{`bad.yaml:3: guests[0].vlan`, `bad.yaml:4: guests[0].queues: 99 outside 0..16`}},
		{"relative api", "switch:\n  api: hvnet.sock\n", []string{`bad.yaml:2: switch.api: "hvnet.sock": want an absolute path`}},
		{"acl direction", "ports:\n  - name: a\n    socket: /s\n    acl:\n      rules:\n        - action: deny\n        - action: deny\n          direction: out\n", []string{`bad.yaml:8: ports[0].acl.rules[1].direction: "out": want ingress or egress`}},
		{"acl ports without proto", "uplink:\n  if: x\n  acl:\n    rules:\n      - {action: deny, direction: egress, dst_ports: 53}\n", []string{`bad.yaml:5: uplink.acl.rules[0].dst_ports: ports need protocol tcp or udp`}},
		{"acl egress default", "ports:\n  - name: a\n    socket: /s\n    acl:\n      egress_default: maybe\n", []string{`bad.yaml:5: ports[0].acl.egress_default: action "maybe"`}},
		{"acl unknown key", "ports:\n  - name: a\n    socket: /s\n    acl:\n      rules:\n        - {action: deny, dir: egress}\n", []string{`bad.yaml:6: ports[0].acl.rules[0].dir: unknown key`}},
		{"sg ports without proto", "ports:\n  - name: a\n    socket: /s\n    security_group:\n      inbound:\n        - {protocol: tcp}\n        - {protocol: tcp}\n        - {ports: 22}\n",
			[]string{`bad.yaml:8: ports[0].security_group.inbound[2].ports: ports need protocol tcp or udp`}},
		{"sg remote family", "uplink:\n  if: x\n  security_group:\n    outbound:\n      - family: 6\n        remote: 10.0.0.0/8\n",
			[]string{`bad.yaml:6: uplink.security_group.outbound[0].remote: 10.0.0.0/8 is not IPv6`}},
		{"sg host bits", "guests:\n  - name: g\n    security_group:\n      inbound: [{remote: 10.0.0.1/8}]\n",
			[]string{`bad.yaml:4: guests[0].security_group.inbound[0].remote: prefix "10.0.0.1/8" has host bits set`}},
		{"sg default", "ports:\n  - name: a\n    socket: /s\n    security_group:\n      inbound_default: reject\n",
			[]string{`bad.yaml:5: ports[0].security_group.inbound_default: action "reject": want allow or deny`}},
		{"sg acl words", "ports:\n  - name: a\n    socket: /s\n    security_group:\n      ingress: []\n",
			[]string{`bad.yaml:5: ports[0].security_group.ingress: unknown key (known keys here: inbound, inbound_default, outbound, outbound_default)`}},
		{"sg rule key", "ports:\n  - name: a\n    socket: /s\n    security_group:\n      outbound:\n        - {protocol: udp, dst_ports: 53}\n",
			[]string{`bad.yaml:6: ports[0].security_group.outbound[0].dst_ports: unknown key (known keys here: family, ports, protocol, remote)`}},
		{"sg family", "ports:\n  - name: a\n    socket: /s\n    security_group:\n      outbound:\n        - family: ipv4\n",
			[]string{`bad.yaml:6: ports[0].security_group.outbound[0].family: want an integer, got "ipv4"`}},
		{"conntrack limits", "conntrack:\n  max_entries: 1000\n  max_entries_per_port: 2000\n",
			[]string{`bad.yaml:3: conntrack.max_entries_per_port: max_entries_per_port 2000: above max_entries (1000)`}},
		{"conntrack default limit", "conntrack:\n  max_entries_per_port: 2000000\n",
			[]string{`bad.yaml:2: conntrack.max_entries_per_port: max_entries_per_port 2000000: above max_entries (1048576)`}},
		{"conntrack negative", "conntrack:\n  max_entries: -1\n", []string{`bad.yaml:2: conntrack.max_entries: max_entries -1: outside 1..16777216`}},
		{"conntrack timeouts", "conntrack:\n  timeouts:\n    udp: 30\n    tcp_established: -1s\n    icmp: 1000h\n    tcp_syn: 1s\n",
			[]string{`bad.yaml:3: conntrack.timeouts.udp: "30" is not a duration`, `bad.yaml:6: conntrack.timeouts.tcp_syn: unknown key (known keys here: icmp, other, tcp_close,`}},
		{"conntrack timeout range", "conntrack:\n  timeouts:\n    tcp_established: -1s\n    icmp: 1000h\n",
			[]string{`bad.yaml:3: conntrack.timeouts.tcp_established: negative timeout -1s`, `bad.yaml:4: conntrack.timeouts.icmp: 1000h0m0s above 720h0m0s`}},
		{"conntrack under switch", "switch:\n  conntrack: {max_entries: 5}\n", []string{`bad.yaml:2: switch.conntrack: unknown key`}},
		{"flow collector", "flow_export:\n  sampling: 10\n  collectors: [127.0.0.1:4739, nowhere]\n",
			[]string{`bad.yaml:3: flow_export.collectors[1]: "nowhere": want HOST:PORT`}},
		{"flow timeout", "flow_export:\n  collectors: [127.0.0.1:4739]\n  idle_timeout: 2d\n", []string{`bad.yaml:3: flow_export.idle_timeout: "2d" is not a duration`}},
		{"flow sampling", "flow_export:\n  sampling: -5\n", []string{`bad.yaml:2: flow_export.sampling: "-5": want 1..16777216`}},
		{"flow key", "flow_export:\n  collector: 127.0.0.1:4739\n", []string{`bad.yaml:2: flow_export.collector: unknown key`}},
		{"empty", "", []string{`bad.yaml:1: (file): empty topology`}},
		{"not yaml", "ports: [\n", []string{`bad.yaml: yaml:`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("bad.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatalf("Parse(%q) succeeded, want errors %q", tc.yaml, tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse(%q) = %v\nwant it to contain %q", tc.yaml, err, w)
				}
			}
		})
	}
}

// TestACLs: a port's ACL in a file, both directions, as the switch gets it.
func TestACLs(t *testing.T) {
	tp, err := Parse("acl.yaml", []byte(`ports:
  - name: a
    socket: /s
    acl:
      default: deny
      egress_default: allow
      rules:
        - {action: allow, protocol: tcp, dst_ports: 22}
        - {action: deny, direction: egress, protocol: udp, dst_ports: "53"}
        - {action: allow, direction: ingress, ethertype: arp}
`))
	if err != nil {
		t.Fatal(err)
	}
	in, eg := tp.Ports[0].ACL.Lists()
	if in.Default != vswitch.ACLDeny || len(in.Rules) != 2 || in.Rules[0].DstPort != (vswitch.PortRange{From: 22, To: 22}) || in.Rules[1].EtherType != 0x0806 {
		t.Errorf("ingress = %+v", in)
	}
	if eg.Default != vswitch.ACLAllow || len(eg.Rules) != 1 || eg.Rules[0].Action != vswitch.ACLDeny || eg.Rules[0].Proto != 17 {
		t.Errorf("egress = %+v", eg)
	}
	g, err := Parse("g.yaml", []byte("guests:\n  - name: g\n    acl:\n      rules:\n        - {action: deny, direction: egress, protocol: icmp}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, eg := g.Guests[0].ACL.Lists(); len(eg.Rules) != 1 || eg.Rules[0].Proto != 1 {
		t.Errorf("guest egress = %+v", eg)
	}
	var none *ACL
	if in, eg := none.Lists(); len(in.Rules)+len(eg.Rules) != 0 {
		t.Errorf("nil ACL lists = %+v %+v", in, eg)
	}
}

// TestSecurityGroups: a port's, the uplink's and a guest's security group
// in a file, as the switch gets them, and the conntrack section.
func TestSecurityGroups(t *testing.T) {
	tp, err := Parse("sg.yaml", []byte(`conntrack:
  max_entries: 200000
  max_entries_per_port: 1000
  timeouts:
    tcp_established: 1h
    udp: 1m
ports:
  - name: a
    socket: /s
    security_group:
      inbound:
        - {protocol: tcp, ports: 22, remote: 10.0.0.0/8}
        - {protocol: icmpv6, family: 6}
      outbound:
        - protocol: udp
          ports: "53"
          remote: 2001:db8::1
      outbound_default: deny
uplink:
  if: x
  security_group: {}
guests:
  - name: g
    security_group:
      inbound_default: allow
`))
	if err != nil {
		t.Fatal(err)
	}
	g := tp.Ports[0].SecurityGroup.Group()
	if g == nil || g.InboundDefault != vswitch.ACLDeny || g.OutboundDefault != vswitch.ACLDeny || len(g.Inbound) != 2 || len(g.Outbound) != 1 ||
		g.Inbound[0].Proto != 6 || g.Inbound[0].Ports != (vswitch.PortRange{From: 22, To: 22}) || g.Inbound[0].Remote.String() != "10.0.0.0/8" ||
		g.Inbound[1].Family != 6 || g.Outbound[0].Remote.Bits() != 128 {
		t.Errorf("port a's group = %+v", g)
	}
	if u := tp.Uplink.SecurityGroup.Group(); u == nil || !reflect.DeepEqual(*u, vswitch.SecurityGroup{InboundDefault: vswitch.ACLDeny, OutboundDefault: vswitch.ACLAllow,
		Inbound: []vswitch.SGRule{}, Outbound: []vswitch.SGRule{}}) {
		t.Errorf("the uplink's group (the clouds' defaults) = %+v", u)
	}
	if gg := tp.Guests[0].SecurityGroup.Group(); gg == nil || gg.InboundDefault != vswitch.ACLAllow {
		t.Errorf("guest's group = %+v", gg)
	}
	var none *SecurityGroup
	if none.Group() != nil {
		t.Error("a nil group converts to a group")
	}
	if tp.Ports[0].SecurityGroup.LineOf("inbound") != 11 || tp.Ports[0].SecurityGroup.Outbound[0].LineOf("remote") != 17 {
		t.Errorf("lines: inbound %d, outbound[0].remote %d", tp.Ports[0].SecurityGroup.LineOf("inbound"), tp.Ports[0].SecurityGroup.Outbound[0].LineOf("remote"))
	}
	cc := tp.Conntrack.Config()
	if cc.TableLimit != 200000 || cc.ZoneLimit != 1000 || cc.Timeouts.TCPEstablished != time.Hour || cc.Timeouts.UDP != time.Minute || cc.Timeouts.ICMP != 0 {
		t.Errorf("conntrack config = %+v", cc)
	}
	var noCT *Conntrack
	if noCT.Config() != (conntrack.Config{}) {
		t.Error("no conntrack section is not the defaults")
	}
	if err := api.CheckConntrackLimits(0, 0, [2]string{"a", "b"}); err != nil {
		t.Errorf("defaults: %v", err)
	}
	if err := api.CheckConntrackLimits(0, 1<<30, [2]string{"--x", "--y"}); err == nil || !strings.HasPrefix(err.Error(), "--y 1073741824: outside") {
		t.Errorf("absurd per-port limit: %v", err)
	}
}
