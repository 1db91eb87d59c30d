package vxlankind

import (
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/daemon"
	"github.com/hvnet/hvnet/evpn"
	"github.com/hvnet/hvnet/internal/netnstest"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/vxlan"
)

func TestMain(m *testing.M) { netnstest.Main(m) }

func TestParse(t *testing.T) {
	p, err := daemon.ParsePort(Kind, strings.Split("name=vx,trunk=10:20,native=30,local=10.9.0.1,vni=100:10,vni=200:20,vni=300:30,"+
		"remote=10.9.0.2,remote=10.9.0.3,learning=off,vtep-policy=any,underlay-mtu=9000,udp-port=8472,max-remote-macs=1000", ","))
	if err != nil {
		t.Fatal(err)
	}
	c := p.Spec().(*spec).cfg
	if c.Local != netip.MustParseAddr("10.9.0.1") || len(c.VNIs) != 3 || c.VNIs[200] != 20 || c.NativeVLAN != 30 || len(c.Remotes) != 2 ||
		c.Learning || !c.AnyVTEP || c.UnderlayMTU != 9000 || c.Port != 8472 || c.MaxRemoteMACs != 1000 {
		t.Errorf("config = %+v", c)
	}
	if cl := p.Spec().Claims(); len(cl) != 1 || cl[0] != "vxlan 10.9.0.1:8472" {
		t.Errorf("claims = %q", cl)
	}
	// An access port carries its one VLAN untagged.
	p, err = daemon.ParsePort(Kind, []string{"name=vx", "vlan=10", "local=10.9.0.1", "vni=100:10"})
	if err != nil || p.Spec().(*spec).cfg.NativeVLAN != 10 || !p.Spec().(*spec).cfg.Learning {
		t.Errorf("access port: %+v, %v", p, err)
	}
	for _, tc := range []struct{ spec, want string }{
		{"name=vx,trunk=10", `field "local": missing`},
		{"name=vx,trunk=10,local=10.9.0.1", `field "vni": missing`},
		{"name=vx,trunk=10,local=fe80::1,vni=1:10", `field "local": "fe80::1" is a link-local address: a VTEP needs a global one`},
		{"name=vx,trunk=10,local=ff02::1,vni=1:10", `field "local": "ff02::1" is not a unicast address`},
		{"name=vx,trunk=10,local=x,vni=1:10", `field "local": "x" is not an IPv4 or IPv6 address`},
		{"name=vx,trunk=10,local=10.9.0.1,vni=100", `field "vni": "100" is not VNI:VLAN`},
		{"name=vx,trunk=10,local=10.9.0.1,vni=16777216:10", `is not VNI:VLAN (VNI 1..16777215`},
		{"name=vx,trunk=10,local=10.9.0.1,vni=0:10", `is not VNI:VLAN`},
		{"name=vx,trunk=10,local=10.9.0.1,vni=100:10,vni=100:20", `maps a VNI given before`},
		{"name=vx,trunk=10:20,local=10.9.0.1,vni=100:10,vni=200:10", `which VNI 100 carries already`},
		{"name=vx,trunk=10,local=10.9.0.1,vni=200:20", `maps VLAN 20, which the port does not carry (give it trunk=10:20)`},
		{"name=vx,local=10.9.0.1,vni=200:20", `(give it trunk=20)`},
		{"name=vx,trunk=10,local=10.9.0.1,vni=100:10,remote=x", `field "remote": "x" is not an IPv4 or IPv6 address`},
		{"name=vx,trunk=10,local=10.9.0.1,vni=100:10,remote=2001:db8::2",
			`field "remote": "2001:db8::2" is IPv6, but local=10.9.0.1 is IPv4: one address family per port`},
		{"name=vx,trunk=10,local=2001:db8::1,vni=100:10,remote=10.9.0.2",
			`field "remote": "10.9.0.2" is IPv4, but local=2001:db8::1 is IPv6: one address family per port`},
		{"name=vx,trunk=10,local=10.9.0.1,vni=100:10,udp6-zero-csum-tx=on", `field "udp6-zero-csum-tx": "on" is for an IPv6 underlay`},
		{"name=vx,trunk=10,local=2001:db8::1,vni=100:10,udp6-zero-csum-rx=yes", `field "udp6-zero-csum-rx": "yes" is not on or off`},
		{"name=vx,trunk=10,local=10.9.0.1,vni=100:10,learning=maybe", `field "learning"`},
		{"name=vx,trunk=10,local=10.9.0.1,vni=100:10,vtep-policy=some", `field "vtep-policy"`},
		{"name=vx,trunk=10,local=10.9.0.1,vni=100:10,underlay-mtu=100", `field "underlay-mtu": "100" is not a number in 576..65535`},
		{"name=vx,trunk=10,local=10.9.0.1,vni=100:10,udp-port=0", `field "udp-port"`},
	} {
		if _, err := daemon.ParsePort(Kind, strings.Split(tc.spec, ",")); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.spec, err, tc.want)
		}
	}
}

type fakeAdv struct {
	adv map[routeKey]uint32
	log []string
}

func routeName(mac [6]byte, ip netip.Addr) string {
	if ip.IsValid() {
		return vswitch.MAC(mac).String() + "/" + ip.String()
	}
	return vswitch.MAC(mac).String()
}

func (f *fakeAdv) AdvertiseMAC(vni uint32, mac [6]byte, ip netip.Addr, seq uint32) error {
	f.adv[routeKey{vni, mac, ip}] = seq
	f.log = append(f.log, "+"+routeName(mac, ip))
	return nil
}

func (f *fakeAdv) WithdrawMAC(vni uint32, mac [6]byte, ip netip.Addr) error {
	delete(f.adv, routeKey{vni, mac, ip})
	f.log = append(f.log, "-"+routeName(mac, ip))
	return nil
}

// fakeIPs are a tunnel port's local bindings.
type fakeIPs struct {
	b []vxlan.IPBinding
}

func (f *fakeIPs) LocalIPs() []vxlan.IPBinding { return slices.Clone(f.b) }
func (f *fakeIPs) DelLocalIP(vni uint32, mac [6]byte, ip netip.Addr) {
	f.b = slices.DeleteFunc(f.b, func(b vxlan.IPBinding) bool { return b == vxlan.IPBinding{VNI: vni, MAC: mac, IP: ip} })
}

type sink struct{}

func (sink) Send(fs []vswitch.Frame) int { return len(fs) }
func (sink) Caps() vswitch.Caps          { return 0 }

// The MACs the switch learns on local ports of mapped VLANs are
// advertised under their VNI, and withdrawn when they go; MACs of other
// VLANs and those behind the tunnel are not.
func TestMACSync(t *testing.T) {
	sw := vswitch.New(vswitch.Config{})
	ports := map[string]*vswitch.PortHandle{}
	for _, p := range []struct {
		name string
		cfg  vswitch.PortConfig
	}{
		{"a", vswitch.PortConfig{Name: "a", PVID: 10}},
		{"b", vswitch.PortConfig{Name: "b", PVID: 30}},
		{"vx", vswitch.PortConfig{Name: "vx", Mode: vswitch.ModeTrunk, AllowedVLANs: []uint16{10}}},
	} {
		h, err := sw.AddPort(p.cfg, sink{})
		if err != nil {
			t.Fatal(err)
		}
		ports[p.name] = h
	}
	frame := func(src byte, tag uint16) []byte {
		f := make([]byte, 60)
		copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, src})
		if tag != 0 {
			f[12], f[13], f[14], f[15] = 0x81, 0, byte(tag>>8), byte(tag)
			f[16], f[17] = 0x88, 0xb5
		} else {
			f[12], f[13] = 0x88, 0xb5
		}
		return f
	}
	ports["a"].Input([]vswitch.Frame{{Data: frame(1, 0)}})
	ports["b"].Input([]vswitch.Frame{{Data: frame(2, 0)}})
	ports["vx"].Input([]vswitch.Frame{{Data: frame(3, 10)}})
	f := &fakeAdv{adv: map[routeKey]uint32{}}
	m := newMACSync(sw, "vx", map[uint16]uint32{10: 100}, f, nil, hclog.NewNullLogger(), func(uint32, [6]byte) uint32 { return 7 })
	if n := m.sync(); n != 1 || len(f.adv) != 1 || f.adv[routeKey{vni: 100, mac: [6]byte{2, 0, 0, 0, 0, 1}}] != 7 {
		t.Fatalf("after the first sync: %d changes, advertised %v", n, f.adv)
	}
	if n := m.sync(); n != 0 {
		t.Errorf("a sync with nothing new changed %d", n)
	}
	if err := sw.RemovePort("a"); err != nil {
		t.Fatal(err)
	}
	if n := m.sync(); n != 1 || len(f.adv) != 0 {
		t.Errorf("after port a went: %d changes, advertised %v", n, f.adv)
	}
	if got := strings.Join(f.log, " "); got != "+02:00:00:00:00:01 -02:00:00:00:00:01" {
		t.Errorf("advertisements: %s", got)
	}
}

// Each learned IP of a local MAC is advertised as a MAC/IP route beside
// the MAC's own; a binding that goes is withdrawn, and one whose MAC is
// not local (or no longer) is forgotten.
func TestMACSyncIPs(t *testing.T) {
	sw := vswitch.New(vswitch.Config{})
	a, err := sw.AddPort(vswitch.PortConfig{Name: "a", PVID: 10}, sink{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sw.AddPort(vswitch.PortConfig{Name: "vx", PVID: 10}, sink{}); err != nil {
		t.Fatal(err)
	}
	f := make([]byte, 60)
	copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x88, 0xb5})
	a.Input([]vswitch.Frame{{Data: f}})
	mac1, mac9 := [6]byte{2, 0, 0, 0, 0, 1}, [6]byte{2, 0, 0, 0, 0, 9}
	v4, v6 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("2001:db8::1")
	ips := &fakeIPs{b: []vxlan.IPBinding{{VNI: 100, MAC: mac1, IP: v4}, {VNI: 100, MAC: mac1, IP: v6}, {VNI: 100, MAC: mac9, IP: netip.MustParseAddr("10.0.0.9")}}}
	adv := &fakeAdv{adv: map[routeKey]uint32{}}
	m := newMACSync(sw, "vx", map[uint16]uint32{10: 100}, adv, ips, hclog.NewNullLogger(), func(uint32, [6]byte) uint32 { return 3 })
	if n := m.sync(); n != 3 || len(adv.adv) != 3 || adv.adv[routeKey{100, mac1, v4}] != 3 || adv.adv[routeKey{100, mac1, v6}] != 3 {
		t.Fatalf("first sync: %d changes, advertised %v", n, adv.adv)
	}
	if len(ips.b) != 2 {
		t.Errorf("the binding of a MAC that is not local stayed: %v", ips.b)
	}
	ips.b = ips.b[1:] // 10.0.0.1 goes
	if n := m.sync(); n != 1 || len(adv.adv) != 2 {
		t.Errorf("after a binding went: %d changes, advertised %v", n, adv.adv)
	}
	sw.RemovePort("a")
	if n := m.sync(); n != 2 || len(adv.adv) != 0 || len(ips.b) != 0 {
		t.Errorf("after the MAC's port went: %d changes, advertised %v, bindings %v", n, adv.adv, ips.b)
	}
	slices.Sort(adv.log)
	want := []string{"+02:00:00:00:00:01", "+02:00:00:00:00:01/10.0.0.1", "+02:00:00:00:00:01/2001:db8::1",
		"-02:00:00:00:00:01", "-02:00:00:00:00:01/10.0.0.1", "-02:00:00:00:00:01/2001:db8::1"}
	if !slices.Equal(adv.log, want) {
		t.Errorf("routes: %q, want %q", adv.log, want)
	}
}

// Remote MAC/IP routes: the MAC is in the tunnel's table while any of its
// routes is, each IP while its route is.
func TestRemoteMACRoutes(t *testing.T) {
	netnstest.Need(t)
	netnstest.Run(t, "ip", "link", "set", "lo", "up")
	p, err := vxlan.Open(vxlan.Config{Local: netip.MustParseAddr("127.0.0.1"), Port: 4999, VNIs: map[uint32]uint16{100: 10}, Suppress: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	b := &backend{p: p, seqs: map[macKey]uint32{}, routes: map[macKey]map[netip.Addr]struct{}{}}
	mac, vtep := [6]byte{2, 0, 0, 0, 0, 7}, netip.MustParseAddr("127.0.0.2")
	v4, v6 := netip.MustParseAddr("10.0.0.7"), netip.MustParseAddr("2001:db8::7")
	state := func() string {
		var s []string
		for _, m := range p.RemoteMACs() {
			s = append(s, vswitch.MAC(m.MAC).String())
		}
		var ips []string
		for _, r := range p.RemoteIPs() {
			ips = append(ips, r.IP.String())
		}
		slices.Sort(ips)
		return strings.Join(append(s, ips...), " ")
	}
	for _, step := range []struct {
		ip        netip.Addr
		withdrawn bool
		want      string
	}{
		{netip.Addr{}, false, "02:00:00:00:00:07"},
		{v4, false, "02:00:00:00:00:07 10.0.0.7"},
		{v6, false, "02:00:00:00:00:07 10.0.0.7 2001:db8::7"},
		{v4, false, "02:00:00:00:00:07 10.0.0.7 2001:db8::7"}, // again (a new sequence number)
		{v4, true, "02:00:00:00:00:07 2001:db8::7"},
		{netip.Addr{}, true, "02:00:00:00:00:07 2001:db8::7"},
		{v6, true, ""},
		{v6, false, "02:00:00:00:00:07 2001:db8::7"},
		{v6, true, ""},
	} {
		b.RemoteMAC(100, mac, step.ip, vtep, 0, step.withdrawn)
		if got := state(); got != step.want {
			t.Errorf("after %v withdrawn=%v: %q, want %q", step.ip, step.withdrawn, got, step.want)
		}
	}
}

// An IPv6 underlay: local= and remote= IPv6, the checksum options, the
// claims in [ADDR]:PORT form.
func TestParse6(t *testing.T) {
	p, err := daemon.ParsePort(Kind, strings.Split("name=vx,trunk=10,local=2001:db8::1,vni=100:10,remote=2001:db8::2,remote=2001:db8::3,"+
		"udp6-zero-csum-tx=on,udp6-zero-csum-rx=on", ","))
	if err != nil {
		t.Fatal(err)
	}
	s := p.Spec().(*spec)
	c := s.cfg
	if c.Local != netip.MustParseAddr("2001:db8::1") || len(c.Remotes) != 2 || c.Remotes[1] != netip.MustParseAddr("2001:db8::3") ||
		!c.UDP6ZeroCsumTx || !c.UDP6ZeroCsumRx {
		t.Errorf("config = %+v", c)
	}
	if cl := s.Claims(); len(cl) != 1 || cl[0] != "vxlan [2001:db8::1]:4789" {
		t.Errorf("claims = %q", cl)
	}
	p, err = daemon.ParsePort(Kind, strings.Split("name=vx,vlan=10,local=2001:db8::1,vni=100:10,asn=65000,router-id=10.0.0.1,"+
		"neighbor=2001:db8::2,neighbor=[2001:db8::3]:65001,neighbor=[2001:db8::4]", ","))
	if err != nil {
		t.Fatal(err)
	}
	s = p.Spec().(*spec)
	b := s.bgp
	if b.VTEP != netip.MustParseAddr("2001:db8::1") || b.LocalAddr != b.VTEP || b.RouterID != netip.MustParseAddr("10.0.0.1") || len(b.Neighbors) != 3 ||
		b.Neighbors[0] != (evpn.Neighbor{Addr: netip.MustParseAddr("2001:db8::2")}) ||
		b.Neighbors[1] != (evpn.Neighbor{Addr: netip.MustParseAddr("2001:db8::3"), ASN: 65001}) ||
		b.Neighbors[2] != (evpn.Neighbor{Addr: netip.MustParseAddr("2001:db8::4")}) {
		t.Errorf("evpn config = %+v", b)
	}
	if cl := s.Claims(); len(cl) != 2 || cl[1] != "bgp [2001:db8::1]:179" {
		t.Errorf("claims = %q", cl)
	}
	for _, tc := range []struct{ spec, want string }{
		{"asn=65000", `field "router-id": is required with an IPv6 local= (2001:db8::1): a BGP identifier is 4 octets`},
		{"asn=65000,router-id=2001:db8::1", `field "router-id": "2001:db8::1" is not a non-zero IPv4 address`},
		{"asn=65000,router-id=1.1.1.1,neighbor=10.0.0.2", `field "neighbor": "10.0.0.2" is IPv4, but local=2001:db8::1 is IPv6: one address family per port (the sessions run from local=)`},
		{"asn=65000,router-id=1.1.1.1,neighbor=[2001:db8::2]:x", `field "neighbor": "[2001:db8::2]:x" is not ADDR[:ASN]`},
		{"asn=65000,router-id=1.1.1.1,neighbor=[2001:db8::2", `field "neighbor": "[2001:db8::2" is not ADDR[:ASN]`},
		{"asn=65000,router-id=1.1.1.1,neighbor=[2001:db8::2]65001", `is not ADDR[:ASN]`},
		{"asn=65000,router-id=1.1.1.1,neighbor=ff02::2", `is not ADDR[:ASN]`},
	} {
		spec := "name=vx,vlan=10,local=2001:db8::1,vni=100:10," + tc.spec
		if _, err := daemon.ParsePort(Kind, strings.Split(spec, ",")); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.spec, err, tc.want)
		}
	}
	if _, err := daemon.ParsePort(Kind, strings.Split("name=vx,vlan=10,local=10.8.0.1,vni=100:10,asn=65000,neighbor=[2001:db8::2]", ",")); err == nil ||
		!strings.Contains(err.Error(), `is IPv6, but local=10.8.0.1 is IPv4`) {
		t.Errorf("IPv6 neighbor of an IPv4 port: %v", err)
	}
}

func TestParseEVPN(t *testing.T) {
	p, err := daemon.ParsePort(Kind, strings.Split("name=vx,vlan=10,local=10.8.0.1,vni=100:10,asn=65000,neighbor=10.8.0.2,"+
		"neighbor=10.8.0.3:65001,bgp-port=1179,hold-time=9s,connect-retry=2s,max-routes=500,router-id=1.2.3.4,max-flood-vteps=64", ","))
	if err != nil {
		t.Fatal(err)
	}
	s := p.Spec().(*spec)
	b := s.bgp
	if b == nil || b.ASN != 65000 || b.RouterID != netip.MustParseAddr("1.2.3.4") || b.VTEP != netip.MustParseAddr("10.8.0.1") ||
		len(b.Neighbors) != 2 || b.Neighbors[0].ASN != 0 || b.Neighbors[1].ASN != 65001 || b.Neighbors[1].Port != 1179 ||
		b.ListenPort != 1179 || b.HoldTime.Seconds() != 9 || b.ConnectRetry.Seconds() != 2 || b.MaxRoutesPerPeer != 500 || s.cfg.Learning ||
		s.cfg.MaxFloodVTEPs != 64 {
		t.Errorf("evpn config = %+v (learning %v, max flood VTEPs %d)", b, s.cfg.Learning, s.cfg.MaxFloodVTEPs)
	}
	if cl := s.Claims(); len(cl) != 2 || cl[1] != "bgp 10.8.0.1:1179" {
		t.Errorf("claims = %q", cl)
	}
	if !s.cfg.LearnIPs || !s.cfg.Suppress {
		t.Errorf("EVPN: learn IPs %v, suppress %v; want both on", s.cfg.LearnIPs, s.cfg.Suppress)
	}
	if p, err := daemon.ParsePort(Kind, strings.Split("name=vx,vlan=10,local=10.8.0.1,vni=100:10,asn=65000,arp-suppress=off", ",")); err != nil ||
		p.Spec().(*spec).cfg.Suppress || !p.Spec().(*spec).cfg.LearnIPs {
		t.Errorf("arp-suppress=off: %v", err)
	}
	if p, err := daemon.ParsePort(Kind, strings.Split("name=vx,vlan=10,local=10.8.0.1,vni=100:10", ",")); err != nil ||
		p.Spec().(*spec).cfg.Suppress || p.Spec().(*spec).cfg.LearnIPs {
		t.Errorf("without EVPN: suppression or IP learning on (%v)", err)
	}
	if p, err := daemon.ParsePort(Kind, strings.Split("name=vx,vlan=10,local=10.8.0.1,vni=100:10,asn=65000,learning=on", ",")); err != nil ||
		!p.Spec().(*spec).cfg.Learning {
		t.Errorf("learning=on with EVPN: %v", err)
	}
	for _, tc := range []struct{ spec, want string }{
		{"neighbor=10.8.0.2", `field "neighbor": "10.8.0.2" needs asn=`},
		{"asn=0", `field "asn": "0" is not an AS number`},
		{"asn=65000,neighbor=10.8.0.300", `field "neighbor": "10.8.0.300" is not ADDR[:ASN]`},
		{"asn=65000,neighbor=10.8.0.2:x", `field "neighbor": "10.8.0.2:x" is not ADDR[:ASN]`},
		{"asn=65000,router-id=0.0.0.0", `field "router-id"`},
		{"asn=65000,hold-time=2s", `field "hold-time": "2s" is not whole seconds`},
		{"asn=65000,connect-retry=500ms", `field "connect-retry": "500ms" is not whole seconds`},
		{"connect-retry=5s", `field "connect-retry": "5s" needs asn=`},
		{"asn=65000,bgp-port=70000", `field "bgp-port"`},
		{"asn=65000,max-routes=0", `field "max-routes"`},
		{"asn=65000,max-routes=3000000000", `field "max-routes": "3000000000" is not a number of routes (1..2147483647)`},
		{"asn=65000,max-flood-vteps=0", `field "max-flood-vteps": "0" is not a number in 1..65536`},
		{"asn=65000,max-flood-vteps=65537", `field "max-flood-vteps": "65537" is not a number in 1..65536`},
		{"max-flood-vteps=100", `field "max-flood-vteps": "100" needs asn=`},
		{"arp-suppress=on", `field "arp-suppress": "on" needs asn=`},
		{"asn=65000,arp-suppress=yes", `field "arp-suppress": "yes" is not on or off`},
	} {
		spec := "name=vx,vlan=10,local=10.8.0.1,vni=100:10," + tc.spec
		if _, err := daemon.ParsePort(Kind, strings.Split(spec, ",")); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.spec, err, tc.want)
		}
	}
}

// The MAC mobility sequences kept per remote MAC: a MAC's goes with its
// last route, so a peer that announces new MACs and withdraws them, over
// and over, grows nothing; routes of VNIs the port does not map keep
// nothing; while a MAC has a route the next local advertisement outbids
// its VTEP's sequence (RFC 7432 §15.1), after the last none is kept.
func TestRemoteMACSeqs(t *testing.T) {
	netnstest.Need(t)
	netnstest.Run(t, "ip", "link", "set", "lo", "up")
	p, err := vxlan.Open(vxlan.Config{Local: netip.MustParseAddr("127.0.0.1"), Port: 4998, VNIs: map[uint32]uint16{100: 10}, Suppress: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	b := &backend{p: p, seqs: map[macKey]uint32{}, routes: map[macKey]map[netip.Addr]struct{}{}}
	vtep, vtep2 := netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")
	kept := func() (int, int) {
		b.seqMu.Lock()
		defer b.seqMu.Unlock()
		return len(b.seqs), len(b.routes)
	}
	const n = 2000
	for round := range 5 {
		mac := func(i int) [6]byte { return [6]byte{2, byte(round), 0, byte(i >> 16), byte(i >> 8), byte(i)} }
		ip := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(round), byte(i >> 8), byte(i)}) }
		for i := range n {
			b.RemoteMAC(100, mac(i), netip.Addr{}, vtep, uint32(i%4), false)
			b.RemoteMAC(100, mac(i), ip(i), vtep, uint32(i%4), false)
			b.RemoteMAC(999, mac(i), netip.Addr{}, vtep, 7, false) // a VNI not mapped here
		}
		if s, r := kept(); s != n || r != n {
			t.Fatalf("round %d: %d sequences, %d routes kept for %d MACs of VNI 100", round, s, r, n)
		}
		for i := range n {
			b.RemoteMAC(100, mac(i), ip(i), vtep, 0, true)
			b.RemoteMAC(100, mac(i), netip.Addr{}, vtep, 0, true)
			b.RemoteMAC(999, mac(i), netip.Addr{}, vtep, 0, true)
		}
		if s, r := kept(); s != 0 || r != 0 {
			t.Fatalf("round %d: %d sequences, %d routes kept after every route was withdrawn", round, s, r)
		}
	}
	if st := p.Stats(); st.RemoteMACs != 0 || st.RemoteIPs != 0 {
		t.Errorf("the port keeps %d remote MACs, %d IPs", st.RemoteMACs, st.RemoteIPs)
	}
	// Mobility: a MAC at a remote VTEP with sequence 5 comes here as 6;
	// withdrawing one of its two routes keeps that; it moving to another
	// VTEP (withdrawn, then added with 7) makes it 8; its last route
	// withdrawn, a MAC learned here is a new one.
	mac, ip := [6]byte{2, 0, 0, 0, 0, 9}, netip.MustParseAddr("10.0.0.9")
	b.RemoteMAC(100, mac, netip.Addr{}, vtep, 5, false)
	b.RemoteMAC(100, mac, ip, vtep, 5, false)
	if s := b.localSeq(100, mac); s != 6 {
		t.Errorf("local sequence %d, want 6", s)
	}
	b.RemoteMAC(100, mac, ip, vtep, 0, true)
	if s := b.localSeq(100, mac); s != 6 {
		t.Errorf("one route left: local sequence %d, want 6", s)
	}
	b.RemoteMAC(100, mac, netip.Addr{}, vtep, 0, true)
	b.RemoteMAC(100, mac, netip.Addr{}, vtep2, 7, false)
	if s := b.localSeq(100, mac); s != 8 {
		t.Errorf("moved to %v with 7: local sequence %d, want 8", vtep2, s)
	}
	b.RemoteMAC(100, mac, netip.Addr{}, vtep2, 0, true)
	if s := b.localSeq(100, mac); s != 0 {
		t.Errorf("no route left: local sequence %d, want 0", s)
	}
	if s := b.localSeq(999, mac); s != 0 {
		t.Errorf("unmapped VNI: local sequence %d, want 0", s)
	}
}

// Counters maps every field of vxlan.Stats but the byte counts (the
// switch's port counters have those): a counter added to the package
// and not to the API fails here.
func TestCountersMapEveryStat(t *testing.T) {
	var st vxlan.Stats
	sv := reflect.ValueOf(&st).Elem()
	for i := range sv.NumField() {
		switch f := sv.Field(i); f.Kind() {
		case reflect.Uint64:
			f.SetUint(uint64(i + 1))
		case reflect.Int:
			f.SetInt(int64(i + 1))
		default:
			t.Fatalf("vxlan.Stats.%s: kind %v", sv.Type().Field(i).Name, f.Kind())
		}
	}
	got := map[uint64]bool{}
	cv := reflect.ValueOf(Counters(st)).Elem()
	for i := range cv.NumField() {
		switch f := cv.Field(i); f.Kind() {
		case reflect.Uint64:
			got[f.Uint()] = true
		case reflect.Int:
			got[uint64(f.Int())] = true
		}
	}
	for i := range sv.NumField() {
		name := sv.Type().Field(i).Name
		if name != "RxBytes" && name != "TxBytes" && !got[uint64(i+1)] {
			t.Errorf("vxlan.Stats.%s is not in Counters (api.VXLANCounters)", name)
		}
	}
}
