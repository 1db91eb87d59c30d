package api

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/hvnet/hvnet/conntrack"
	vswitch "github.com/hvnet/hvnet/switch"
)

// udp4Frame builds a well-formed Ethernet/IPv4/UDP frame (header checksum
// set, UDP checksum 0: none, RFC 768).
func udp4Frame(dst, src vswitch.MAC, sip, dip string, sport, dport uint16) []byte {
	b := make([]byte, 14+20+8+8)
	copy(b, dst[:])
	copy(b[6:], src[:])
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	s, d := netip.MustParseAddr(sip).As4(), netip.MustParseAddr(dip).As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	u := ip[20:]
	binary.BigEndian.PutUint16(u, sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	return b
}

func TestSecurityGroupEndpoints(t *testing.T) {
	e := newEnv(t)
	c := ctx(t)
	_, err := e.c.SecurityGroup(c, "a")
	wantError(t, err, http.StatusNotFound, "")
	_, err = e.c.SecurityGroup(c, "zz")
	wantError(t, err, http.StatusNotFound, "port")
	if p, err := e.c.Port(c, "a"); err != nil || p.SecurityGroup != nil {
		t.Fatalf("port a before: %+v, %v", p.SecurityGroup, err)
	}
	// Absent defaults are the clouds'; answers spell them out and give
	// rules in their normal form.
	set, err := e.c.SetSecurityGroup(c, "a", SecurityGroup{
		Inbound: []SGRule{{Protocol: "tcp", Ports: "22", Remote: "10.0.0.0/8"}, {Protocol: "58", Family: 6},
			{Protocol: "udp", Ports: "1000-2000", Remote: "2001:db8::1"}},
		Outbound: []SGRule{{Family: 4}},
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	want := SecurityGroup{
		Inbound: []SGRule{{Protocol: "tcp", Ports: "22", Remote: "10.0.0.0/8"}, {Protocol: "icmpv6", Family: 6},
			{Protocol: "udp", Ports: "1000-2000", Remote: "2001:db8::1/128"}},
		Outbound: []SGRule{{Family: 4}}, InboundDefault: "deny", OutboundDefault: "allow",
	}
	if !reflect.DeepEqual(set, want) {
		t.Fatalf("SetSecurityGroup answered %+v\nwant %+v", set, want)
	}
	got, err := e.c.SecurityGroup(c, "a")
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("SecurityGroup = %+v, %v", got, err)
	}
	g, ok := e.h["a"].SecurityGroup()
	if !ok || g.InboundDefault != vswitch.ACLDeny || g.Inbound[0].Ports != (vswitch.PortRange{From: 22, To: 22}) ||
		g.Inbound[0].Remote != netip.MustParsePrefix("10.0.0.0/8") || g.Inbound[1].Proto != 58 || g.Outbound[0].Family != 4 {
		t.Fatalf("the switch's group = %+v %v", g, ok)
	}
	// What an answer says, a request takes back.
	if again, err := e.c.SetSecurityGroup(c, "a", got, true); err != nil || !reflect.DeepEqual(again, want) {
		t.Fatalf("set of the answer = %+v, %v", again, err)
	}
	p, err := e.c.Port(c, "a")
	if err != nil || p.SecurityGroup == nil || *p.SecurityGroup != (SecurityGroupSummary{InboundRules: 3, OutboundRules: 1,
		InboundDefault: "deny", OutboundDefault: "allow"}) {
		t.Fatalf("port a's security_group = %+v, %v", p.SecurityGroup, err)
	}
	ps, err := e.c.Ports(c)
	if err != nil || ps[0].Name != "a" || ps[0].SecurityGroup == nil || ps[1].SecurityGroup != nil {
		t.Fatalf("ports: %v", err)
	}
	// Replacing the rules keeps the port's connection table: the same zone.
	z := e.h["a"].Conntrack()
	if _, err := e.c.SetSecurityGroup(c, "a", SecurityGroup{InboundDefault: "allow"}, false); err != nil || e.h["a"].Conntrack() != z {
		t.Fatalf("replace: %v; zone kept: %v", err, e.h["a"].Conntrack() == z)
	}
	if err := e.c.DeleteSecurityGroup(c, "a"); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.h["a"].SecurityGroup(); ok || e.h["a"].Conntrack() != nil {
		t.Fatal("group still there after DELETE")
	}
	wantError(t, e.c.DeleteSecurityGroup(c, "a"), http.StatusNotFound, "")
	wantError(t, e.c.DeleteSecurityGroup(c, "zz"), http.StatusNotFound, "port")
}

// Bad groups are refused naming the field, and change nothing.
func TestSecurityGroupErrors(t *testing.T) {
	e := newEnv(t)
	c := ctx(t)
	keep := SecurityGroup{Inbound: []SGRule{{Protocol: "tcp", Ports: "22"}}}
	if _, err := e.c.SetSecurityGroup(c, "a", keep, false); err != nil {
		t.Fatal(err)
	}
	many := make([]SGRule, vswitch.MaxSGRules+1)
	for _, tc := range []struct {
		body, field, msg string
	}{
		{`{"inbound":[{"protocol":"tcp"},{"protocol":"tcp"},{"ports":"22"}]}`, "inbound[2].ports", "need protocol tcp or udp"},
		{`{"outbound":[{"protocol":"icmp","ports":"7"}]}`, "outbound[0].ports", "need protocol tcp or udp"},
		{`{"inbound":[{"protocol":"tcp","ports":"99999"}]}`, "inbound[0].ports", "ports"},
		{`{"inbound":[{"protocol":"tcp","ports":"20-10"}]}`, "inbound[0].ports", "N <= M"},
		{`{"inbound":[{"protocol":"gre"}]}`, "inbound[0].protocol", "want tcp, udp"},
		{`{"inbound":[{"protocol":"0"}]}`, "inbound[0].protocol", "1..255"},
		{`{"inbound":[{"remote":"10.0.0.1/8"}]}`, "inbound[0].remote", "host bits"},
		{`{"inbound":[{"remote":"banana"}]}`, "inbound[0].remote", "address"},
		{`{"inbound":[{"remote":"::ffff:10.0.0.1"}]}`, "inbound[0].remote", "IPv4 as IPv4"},
		{`{"inbound":[{"family":5}]}`, "inbound[0].family", "want 4 or 6"},
		{`{"outbound":[{"family":6,"remote":"10.0.0.0/8"}]}`, "outbound[0].remote", "not IPv6"},
		{`{"inbound":[{"protocol":"icmp","family":6}]}`, "inbound[0].protocol", "never travels over IPv6"},
		{`{"inbound":[{"protocol":"icmpv6","remote":"10.0.0.0/8"}]}`, "inbound[0].protocol", "never travels over IPv4"},
		{`{"inbound_default":"maybe"}`, "inbound_default", "want allow or deny"},
		{`{"outbound_default":"reject"}`, "outbound_default", "want allow or deny"},
		{`{"inbound":[{"direction":"ingress"}]}`, "inbound[0].direction", "unknown field"},
		{`{"inbound":[{"family":"4"}]}`, "inbound.family", "want int"},
		{`{"ingress":[]}`, "ingress", "unknown field"},
	} {
		_, err := e.c.Raw(c, http.MethodPut, "/v1/ports/a/security-group", json.RawMessage(tc.body))
		var ae *Error
		if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || ae.Field != tc.field || !strings.Contains(ae.Message, tc.msg) {
			t.Errorf("PUT %s: %v (%+v); want 400 %s: ...%s...", tc.body, err, ae, tc.field, tc.msg)
		}
	}
	_, err := e.c.SetSecurityGroup(c, "a", SecurityGroup{Outbound: many}, false)
	wantError(t, err, http.StatusBadRequest, "outbound")
	_, err = e.c.Raw(c, http.MethodPut, "/v1/ports/a/security-group?flush=perhaps", SecurityGroup{})
	wantError(t, err, http.StatusBadRequest, "flush")
	_, err = e.c.SetSecurityGroup(c, "zz", keep, false)
	wantError(t, err, http.StatusNotFound, "port")
	if g, _ := e.h["a"].SecurityGroup(); len(g.Inbound) != 1 || len(g.Outbound) != 0 {
		t.Fatalf("a bad request changed the group: %+v", g)
	}
}

func TestConntrackEndpoints(t *testing.T) {
	e := newEnv(t)
	c := ctx(t)
	_, err := e.c.PortConntrack(c, "a", 0)
	wantError(t, err, http.StatusNotFound, "")
	_, err = e.c.FlushConntrack(c, "zz")
	wantError(t, err, http.StatusNotFound, "port")
	sum, err := e.c.Conntrack(c)
	if err != nil || len(sum.Ports) != 0 || sum.MaxEntries != conntrack.DefaultTableLimit || sum.MaxEntriesPerPort != conntrack.DefaultZoneLimit {
		t.Fatalf("conntrack before = %+v, %v", sum, err)
	}
	for _, p := range []string{"b", "a"} {
		if _, err := e.c.SetSecurityGroup(c, p, SecurityGroup{}, false); err != nil {
			t.Fatal(err)
		}
	}
	pc, err := e.c.PortConntrack(c, "a", 0)
	if err != nil || pc.Port != "a" || pc.Entries == nil || pc.Limit != DefaultConntrackList || pc.MaxEntries != conntrack.DefaultZoneLimit {
		t.Fatalf("port conntrack = %+v, %v", pc, err)
	}
	for _, l := range []string{"0", "-1", "x", "10001"} {
		_, err := e.c.Raw(c, http.MethodGet, "/v1/ports/a/conntrack?limit="+l, nil)
		wantError(t, err, http.StatusBadRequest, "limit")
	}
	if pc, err := e.c.PortConntrack(c, "a", MaxConntrackList); err != nil || pc.Limit != MaxConntrackList {
		t.Fatalf("limit max: %+v, %v", pc, err)
	}
	if n, err := e.c.FlushConntrack(c, "a"); err != nil || n != 0 {
		t.Fatalf("flush = %d, %v", n, err)
	}
	sum, err = e.c.Conntrack(c)
	if err != nil || len(sum.Ports) != 2 || sum.Ports[0].Port != "a" || sum.Ports[1].Port != "b" {
		t.Fatalf("conntrack = %+v, %v", sum, err)
	}
	if sum.MaxEntries != conntrack.DefaultTableLimit || sum.MaxEntriesPerPort != conntrack.DefaultZoneLimit {
		t.Fatalf("default limits: %+v", sum)
	}
	// The limits the switch's table holds.
	sw := vswitch.New(vswitch.Config{Conntrack: conntrack.Config{TableLimit: 5000, ZoneLimit: 50}})
	if sum := NewServer(sw, Options{}).conntrackSummary(); sum.MaxEntries != 5000 || sum.MaxEntriesPerPort != 50 {
		t.Fatalf("conntrack with limits = %+v", sum)
	}
}

// Connections as answers give them, from the zone's snapshots.
func TestConntrackEntryForm(t *testing.T) {
	k := conntrack.Key{Family: 4, Proto: 6, LPort: 22, RPort: 40000}
	l, r := netip.MustParseAddr("10.0.0.2").As16(), netip.MustParseAddr("10.0.0.1").As16()
	k.Local, k.Remote = netip.AddrFrom16(l).As16(), netip.AddrFrom16(r).As16()
	got := toAPIEntry(conntrack.Entry{Key: k, Origin: conntrack.Inbound, State: "ESTABLISHED", Expires: 431999*time.Second + 500*time.Millisecond,
		Packets: [2]uint64{3, 4}})
	b, _ := json.Marshal(got)
	want := `{"family":4,"protocol":"tcp","local":"10.0.0.2","remote":"10.0.0.1","local_port":22,"remote_port":40000,"origin":"inbound","state":"ESTABLISHED","expires_in":431999,"packets":{"outbound":3,"inbound":4}}`
	if string(b) != want {
		t.Errorf("tcp entry:\n%s\nwant\n%s", b, want)
	}
	k6 := conntrack.Key{Family: 6, Proto: 58, LPort: 7, Local: netip.MustParseAddr("2001:db8::2").As16(), Remote: netip.MustParseAddr("2001:db8::1").As16()}
	got = toAPIEntry(conntrack.Entry{Key: k6, Origin: conntrack.Outbound, State: "REPLIED", Expires: -time.Second})
	b, _ = json.Marshal(got)
	want = `{"family":6,"protocol":"icmpv6","local":"2001:db8::2","remote":"2001:db8::1","icmp_id":7,"origin":"outbound","state":"REPLIED","expires_in":0,"packets":{"outbound":0,"inbound":0}}`
	if string(b) != want {
		t.Errorf("icmpv6 entry:\n%s\nwant\n%s", b, want)
	}
	got = toAPIEntry(conntrack.Entry{Key: conntrack.Key{Family: 4, Proto: 47}, State: "UNREPLIED"})
	if got.Protocol != "47" || got.LocalPort != nil || got.ICMPID != nil || got.Local != "0.0.0.0" {
		t.Errorf("gre entry: %+v", got)
	}
}

// The conntrack metrics of a port with a group, and the table's, in an
// exposition promlint and promtool accept.
func TestConntrackMetrics(t *testing.T) {
	e := newEnv(t)
	if _, err := e.c.SetSecurityGroup(ctx(t), "a", SecurityGroup{}, false); err != nil {
		t.Fatal(err)
	}
	fams := scrape(t, e)
	a := map[string]string{"port": "a"}
	for _, m := range []struct {
		name   string
		labels map[string]string
	}{
		{"hvnet_conntrack_entries", a}, {"hvnet_conntrack_new_total", a}, {"hvnet_conntrack_invalid_total", a},
		{"hvnet_conntrack_expired_total", a}, {"hvnet_conntrack_full_total", map[string]string{"port": "a", "scope": "port"}},
		{"hvnet_conntrack_full_total", map[string]string{"port": "a", "scope": "table"}},
		{"hvnet_conntrack_table_entries", nil},
	} {
		if v := metricValue(t, fams, m.name, m.labels); v != 0 {
			t.Errorf("%s%v = %v", m.name, m.labels, v)
		}
	}
	if v := metricValue(t, fams, "hvnet_conntrack_max_entries", nil); v != conntrack.DefaultTableLimit {
		t.Errorf("hvnet_conntrack_max_entries = %v", v)
	}
	if v := metricValue(t, fams, "hvnet_conntrack_max_entries_per_port", nil); v != conntrack.DefaultZoneLimit {
		t.Errorf("hvnet_conntrack_max_entries_per_port = %v", v)
	}
	if n := len(fams["hvnet_conntrack_entries"].GetMetric()); n != 1 {
		t.Errorf("hvnet_conntrack_entries has %d series; want 1 (ports without a group have none)", n)
	}
	for _, r := range []string{"security_group", "ct_invalid", "ct_full"} {
		metricValue(t, fams, "hvnet_port_drops_total", map[string]string{"port": "a", "reason": r})
	}
	text, err := e.c.Metrics(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if problems, err := promlint.New(strings.NewReader(text)).Lint(); err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %+v", err, problems)
	}
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Log("promtool is not installed (Debian's prometheus package; run.sh installs it)")
		return
	}
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// Tracked traffic through the endpoints: a denied inbound connection is a
// security_group drop of the port; an outbound one is listed with its
// reply, counted, and flushed.
func TestSecurityGroupTraffic(t *testing.T) {
	e := newEnv(t)
	c := ctx(t)
	if _, err := e.c.SetSecurityGroup(c, "a", SecurityGroup{}, false); err != nil { // inbound deny, outbound allow
		t.Fatal(err)
	}
	// b (10.0.0.1) opens toward a (10.0.0.2): refused on a.
	e.h["b"].Input([]vswitch.Frame{{Data: udp4Frame(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1000, 53)}})
	// a opens toward b, b answers: one connection, both ways.
	e.h["a"].Input([]vswitch.Frame{{Data: udp4Frame(mac(2), mac(1), "10.0.0.2", "10.0.0.1", 5000, 53)}})
	e.h["b"].Input([]vswitch.Frame{{Data: udp4Frame(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 53, 5000)}})
	if n := e.h["a"].Counters().Drops[vswitch.DropSecurityGroup]; n != 1 {
		t.Errorf("a's security_group drops = %d; want 1", n)
	}
	pc, err := e.c.PortConntrack(c, "a", 0)
	if err != nil || len(pc.Entries) != 1 || pc.LeftOut != 0 || pc.Counters.Entries != 1 || pc.Counters.New != 1 {
		t.Fatalf("a's connections = %+v, %v", pc, err)
	}
	en := pc.Entries[0]
	if en.Protocol != "udp" || en.Local != "10.0.0.2" || en.Remote != "10.0.0.1" || *en.LocalPort != 5000 || *en.RemotePort != 53 ||
		en.Origin != "outbound" || en.Packets != (ConntrackPackets{Outbound: 1, Inbound: 1}) || en.ExpiresIn <= 0 {
		t.Errorf("a's connection = %+v", en)
	}
	if pc, err := e.c.PortConntrack(c, "a", 1); err != nil || len(pc.Entries) != 1 {
		t.Errorf("limit 1: %+v, %v", pc, err)
	}
	fams := scrape(t, e)
	if v := metricValue(t, fams, "hvnet_conntrack_entries", map[string]string{"port": "a"}); v != 1 {
		t.Errorf("hvnet_conntrack_entries{a} = %v", v)
	}
	if v := metricValue(t, fams, "hvnet_port_drops_total", map[string]string{"port": "a", "reason": "security_group"}); v != 1 {
		t.Errorf("security_group drops metric = %v", v)
	}
	if p, _ := e.c.Port(c, "a"); p.SecurityGroup == nil || p.SecurityGroup.ConntrackEntries != 1 {
		t.Errorf("port a's summary = %+v", p.SecurityGroup)
	}
	if n, err := e.c.FlushConntrack(c, "a"); err != nil || n != 1 {
		t.Errorf("flush = %d, %v", n, err)
	}
}
