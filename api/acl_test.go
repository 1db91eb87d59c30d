package api

import (
	"encoding/binary"
	"encoding/json"
	"net/http"
	"reflect"
	"testing"

	vswitch "github.com/hvnet/hvnet/switch"
)

// udp4 builds an Ethernet/IPv4/UDP frame to dport.
func udp4(dst, src vswitch.MAC, dport uint16) []byte {
	b := eth(dst, src, 46)
	ip := b[14:]
	clear(ip)
	ip[0], ip[9] = 0x45, 17
	copy(ip[12:], []byte{10, 0, 0, 1})
	copy(ip[16:], []byte{10, 0, 0, 2})
	binary.BigEndian.PutUint16(ip[22:], dport)
	return b
}

func TestACLEndpoints(t *testing.T) {
	e := newEnv(t)
	c := ctx(t)
	got, err := e.c.ACL(c, "a")
	if err != nil || got.Default != "allow" || len(got.Rules) != 0 {
		t.Fatalf("ACL before = %+v, %v", got, err)
	}
	want := ACL{Default: "deny", Rules: []ACLRule{
		{Action: "deny", Protocol: "udp", DstPorts: "22"},
		{Action: "allow", EtherType: "ipv4", SrcIP: "10.0.0.0/24", DstIP: "10.0.0.2", Protocol: "udp", DstPorts: "1-1023"},
		{Action: "allow", SrcMAC: "02:00:00:00:00:01", EtherType: "0x86dd", DstIP: "fd00::/64"},
	}}
	set, err := e.c.SetACL(c, "a", want)
	if err != nil {
		t.Fatal(err)
	}
	norm := []ACLRule{
		{Action: "deny", Protocol: "udp", DstPorts: "22"},
		{Action: "allow", EtherType: "0x0800", SrcIP: "10.0.0.0/24", DstIP: "10.0.0.2/32", Protocol: "udp", DstPorts: "1-1023"},
		{Action: "allow", SrcMAC: "02:00:00:00:00:01", EtherType: "0x86dd", DstIP: "fd00::/64"},
	}
	if set.Default != "deny" || !reflect.DeepEqual(set.Rules, norm) {
		t.Fatalf("SetACL answered %+v", set)
	}
	// b learns, then a sends: 2 to port 53 (rule 1), 1 to 22 (rule 0), 1 ARP (default).
	e.send("b", mac(2), vswitch.Broadcast, 1)
	e.h["a"].Input([]vswitch.Frame{{Data: udp4(mac(2), mac(1), 53)}, {Data: udp4(mac(2), mac(1), 53)},
		{Data: udp4(mac(2), mac(1), 22)}, {Data: eth(mac(2), mac(1), 46)}})
	eth0806 := eth(mac(2), mac(1), 46)
	binary.BigEndian.PutUint16(eth0806[12:], 0x0806)
	e.h["a"].Input([]vswitch.Frame{{Data: eth0806}})
	got, err = e.c.ACL(c, "a")
	if err != nil {
		t.Fatal(err)
	}
	hits := []uint64{got.Rules[0].Hits, got.Rules[1].Hits, got.Rules[2].Hits, got.DefaultHits}
	// The untyped eth() frame claims IPv4 but has a zero header: not IPv4 to the ACL.
	if !reflect.DeepEqual(hits, []uint64{1, 2, 0, 2}) {
		t.Errorf("hits = %v; want [1 2 0 2]", hits)
	}
	p, err := e.c.Port(c, "a")
	if err != nil {
		t.Fatal(err)
	}
	if p.ACL == nil || p.ACL.Rules[1].Hits != 2 || p.Counters.Drops["acl"] != 3 {
		t.Errorf("port show: acl %+v, drops %v", p.ACL, p.Counters.Drops)
	}
	fams := scrape(t, e)
	if v := metricValue(t, fams, "hvnet_acl_hits_total", map[string]string{"port": "a", "rule": "1"}); v != 2 {
		t.Errorf("hvnet_acl_hits_total{a,1} = %v", v)
	}
	if v := metricValue(t, fams, "hvnet_acl_hits_total", map[string]string{"port": "a", "rule": "default"}); v != 2 {
		t.Errorf("hvnet_acl_hits_total{a,default} = %v", v)
	}
	if v := metricValue(t, fams, "hvnet_port_drops_total", map[string]string{"port": "a", "reason": "acl"}); v != 3 {
		t.Errorf("acl drops metric = %v", v)
	}
	// A GET answer can be PUT back as is (hits are read-only, ignored).
	if _, err := e.c.SetACL(c, "a", got); err != nil {
		t.Errorf("PUT of a GET answer: %v", err)
	}
	// Clearing it.
	if _, err := e.c.SetACL(c, "a", ACL{}); err != nil {
		t.Fatal(err)
	}
	if p, _ := e.c.Port(c, "a"); p.ACL != nil {
		t.Errorf("port still shows an ACL: %+v", p.ACL)
	}
}

func TestACLBadInput(t *testing.T) {
	e := newEnv(t)
	c := ctx(t)
	ok := ACL{Default: "deny", Rules: []ACLRule{{Action: "allow", Protocol: "tcp", DstPorts: "80"}}}
	if _, err := e.c.SetACL(c, "a", ok); err != nil {
		t.Fatal(err)
	}
	rule := func(r ACLRule) ACL { return ACL{Rules: []ACLRule{{Action: "allow"}, r}} }
	for _, tc := range []struct {
		name  string
		body  any
		port  string
		code  int
		field string
	}{
		{"unknown port", ok, "zz", 404, "port"},
		{"bad default", ACL{Default: "maybe"}, "a", 400, "default"},
		{"bad action", rule(ACLRule{Action: "drop"}), "a", 400, "rules[1].action"},
		{"bad prefix", rule(ACLRule{Action: "deny", SrcIP: "10.0.0.0/33"}), "a", 400, "rules[1].src_ip"},
		{"host bits", rule(ACLRule{Action: "deny", DstIP: "10.0.0.1/24"}), "a", 400, "rules[1].dst_ip"},
		{"not an address", rule(ACLRule{Action: "deny", DstIP: "ten"}), "a", 400, "rules[1].dst_ip"},
		{"mixed families", rule(ACLRule{Action: "deny", SrcIP: "10.0.0.0/8", DstIP: "fd00::/8"}), "a", 400, "rules[1].dst_ip"},
		{"ethertype vs prefix", rule(ACLRule{Action: "deny", EtherType: "ipv6", DstIP: "10.0.0.0/8"}), "a", 400, "rules[1].ethertype"},
		{"ethertype small", rule(ACLRule{Action: "deny", EtherType: "0x05dc"}), "a", 400, "rules[1].ethertype"},
		{"port out of range", rule(ACLRule{Action: "deny", Protocol: "tcp", DstPorts: "70000"}), "a", 400, "rules[1].dst_ports"},
		{"port range reversed", rule(ACLRule{Action: "deny", Protocol: "tcp", SrcPorts: "90-80"}), "a", 400, "rules[1].src_ports"},
		{"port without protocol", rule(ACLRule{Action: "deny", DstPorts: "80"}), "a", 400, "rules[1].dst_ports"},
		{"port with icmp", rule(ACLRule{Action: "deny", Protocol: "icmp", DstPorts: "80"}), "a", 400, "rules[1].dst_ports"},
		{"bad protocol", rule(ACLRule{Action: "deny", Protocol: "300"}), "a", 400, "rules[1].protocol"},
		{"bad mac", rule(ACLRule{Action: "deny", SrcMAC: "02:00:00:00:00"}), "a", 400, "rules[1].src_mac"},
		{"unknown field", json.RawMessage(`{"rules":[{"action":"deny","dst_port":"80"}]}`), "a", 400, "rules[0].dst_port"},
		{"unknown top field", json.RawMessage(`{"rulez":[]}`), "a", 400, "rulez"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.c.Raw(c, http.MethodPut, "/v1/ports/"+tc.port+"/acl", tc.body)
			wantError(t, err, tc.code, tc.field)
			// Nothing changed.
			got, err := e.c.ACL(c, "a")
			if err != nil || got.Default != "deny" || len(got.Rules) != 1 || got.Rules[0].DstPorts != "80" {
				t.Errorf("ACL changed: %+v, %v", got, err)
			}
		})
	}
	if _, err := e.c.ACL(c, "zz"); err == nil {
		t.Errorf("GET acl of a missing port succeeded")
	}
}

func TestTraceEndpoint(t *testing.T) {
	e := newEnv(t)
	c := ctx(t)
	e.send("b", mac(2), vswitch.Broadcast, 1)
	r, err := e.c.Trace(c, TraceRequest{InPort: "a", SrcMAC: "02:00:00:00:00:01", DstMAC: "02:00:00:00:00:02"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Drop != "" || len(r.Outputs) != 1 || r.Outputs[0].Port != "b" || r.VLAN != 10 || r.Flooded {
		t.Errorf("trace = %+v", r)
	}
	// Unknown unicast from the trunk, tagged 10: flooded to a and b untagged.
	r, err = e.c.Trace(c, TraceRequest{InPort: "t", SrcMAC: "02:00:00:00:00:05", DstMAC: "02:00:00:00:00:09", VLAN: 10,
		SrcIP: "fd00::1", DstIP: "fd00::2", Protocol: "tcp", DstPort: 443})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Flooded || len(r.Outputs) != 2 || r.Outputs[0].Tagged {
		t.Errorf("trace = %+v", r)
	}
	// ACL deny.
	if _, err := e.c.SetACL(c, "a", ACL{Rules: []ACLRule{{Action: "deny", Protocol: "tcp", DstPorts: "22"}}}); err != nil {
		t.Fatal(err)
	}
	r, err = e.c.Trace(c, TraceRequest{InPort: "a", SrcMAC: "02:00:00:00:00:01", DstMAC: "02:00:00:00:00:02",
		SrcIP: "10.0.0.1", DstIP: "10.0.0.2", Protocol: "tcp", DstPort: 22})
	if err != nil || r.Drop != "acl" {
		t.Errorf("trace = %+v, %v; want drop acl", r, err)
	}
	if got := e.h["a"].Counters(); got.RxPackets != 0 {
		t.Errorf("trace counted frames: %+v", got)
	}
	for _, tc := range []struct {
		name  string
		body  any
		code  int
		field string
	}{
		{"unknown port", TraceRequest{InPort: "zz", SrcMAC: "02:00:00:00:00:01", DstMAC: "02:00:00:00:00:02"}, 404, "in_port"},
		{"no port", TraceRequest{SrcMAC: "02:00:00:00:00:01", DstMAC: "02:00:00:00:00:02"}, 400, "in_port"},
		{"bad src", TraceRequest{InPort: "a", SrcMAC: "x", DstMAC: "02:00:00:00:00:02"}, 400, "src_mac"},
		{"bad vlan", TraceRequest{InPort: "a", SrcMAC: "02:00:00:00:00:01", DstMAC: "02:00:00:00:00:02", VLAN: 5000}, 400, "vlan"},
		{"bad pcp", TraceRequest{InPort: "a", SrcMAC: "02:00:00:00:00:01", DstMAC: "02:00:00:00:00:02", PCP: 9}, 400, "pcp"},
		{"bad ethertype", TraceRequest{InPort: "a", SrcMAC: "02:00:00:00:00:01", DstMAC: "02:00:00:00:00:02", EtherType: "ip"}, 400, "ethertype"},
		{"one address", TraceRequest{InPort: "a", SrcMAC: "02:00:00:00:00:01", DstMAC: "02:00:00:00:00:02", SrcIP: "10.0.0.1"}, 400, "dst_ip"},
		{"port range", TraceRequest{InPort: "a", SrcMAC: "02:00:00:00:00:01", DstMAC: "02:00:00:00:00:02", Protocol: "udp", DstPort: 70000}, 400, "dst_port"},
		{"port without proto", TraceRequest{InPort: "a", SrcMAC: "02:00:00:00:00:01", DstMAC: "02:00:00:00:00:02", DstPort: 80}, 400, "dst_port"},
		{"bad tpid", TraceRequest{InPort: "a", SrcMAC: "02:00:00:00:00:01", DstMAC: "02:00:00:00:00:02", TPID: "0x9999"}, 400, "tpid"},
		{"unknown field", json.RawMessage(`{"in_port":"a","src":"x"}`), 400, "src"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.c.Raw(c, http.MethodPost, "/v1/trace", tc.body)
			wantError(t, err, tc.code, tc.field)
		})
	}
}
