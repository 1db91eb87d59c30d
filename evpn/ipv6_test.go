package evpn

import (
	"net/netip"
	"testing"
	"time"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/hvnet/hvnet/internal/netnstest"
)

// IPv6 underlay: the sessions run between IPv6 addresses (on lo, without
// duplicate address detection: a tentative address cannot be bound) and
// the VTEPs are IPv6.
var (
	v6A     = netip.MustParseAddr("fd00:e::1")
	v6B     = netip.MustParseAddr("fd00:e::2")
	v6Fake  = netip.MustParseAddr("fd00:e::3")
	v6VTEPA = netip.MustParseAddr("2001:db8:ff::1")
	v6VTEPB = netip.MustParseAddr("2001:db8:ff::2")
	v6VTEPF = netip.MustParseAddr("2001:db8:ff::3")
)

func ipv6Loopback(t *testing.T) {
	t.Helper()
	netnstest.Need(t)
	loopbackUp(t)
	for _, a := range []netip.Addr{v6A, v6B, v6Fake} {
		netnstest.Run(t, "ip", "addr", "replace", a.String()+"/128", "dev", "lo", "nodad")
	}
}

// newPair6 is newPair over IPv6: sessions from fd00:e::1 and ::2, VTEPs
// 2001:db8:ff::1 and ::2 (the router IDs stay IPv4: a BGP identifier is
// 4 octets, RFC 6286).
func newPair6(t *testing.T) *pair {
	t.Helper()
	ipv6Loopback(t)
	p := &pair{ra: newRecorder("A"), rb: newRecorder("B"), addrA: v6A, addrB: v6B, vtepA: v6VTEPA, vtepB: v6VTEPB}
	portA, portB := freePort(t, p.addrA), freePort(t, p.addrB)
	common := Config{ASN: 65000, HoldTime: 3 * time.Second, ConnectRetry: time.Second}
	p.cfgA, p.cfgB = common, common
	p.cfgA.RouterID, p.cfgA.VTEP, p.cfgA.LocalAddr, p.cfgA.ListenPort = netip.MustParseAddr("10.0.0.1"), p.vtepA, p.addrA, int32(portA)
	p.cfgB.RouterID, p.cfgB.VTEP, p.cfgB.LocalAddr, p.cfgB.ListenPort = netip.MustParseAddr("10.0.0.2"), p.vtepB, p.addrB, int32(portB)
	p.cfgA.Neighbors = []Neighbor{{Addr: p.addrB, Port: portB}}
	p.cfgB.Neighbors = []Neighbor{{Addr: p.addrA, Port: portA}}
	p.cfgA.Logger, p.cfgB.Logger = testLogger(t, "A"), testLogger(t, "B")
	return p
}

// Two speakers over IPv6: type-3 routes put each one's IPv6 VTEP on the
// other's flood list, type-2 routes point MACs at it, and the listing
// shows them; when one stops, the other drops its routes.
func TestTwoSpeakersIPv6(t *testing.T) {
	p := newPair6(t)
	p.start(t)
	a, b, ra, rb := p.a, p.b, p.ra, p.rb
	m1, m2 := [6]byte{0x02, 0, 0, 0, 0x6a, 1}, [6]byte{0x02, 0, 0, 0, 0x6b, 1}
	ip1 := netip.MustParseAddr("2001:db8:1::1")
	for _, s := range []*Speaker{a, b} {
		if err := s.AddVNI(100); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.AdvertiseMAC(100, m1, ip1, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.AdvertiseMAC(100, m2, netip.Addr{}, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, routeTimeout, "each to learn the other's IPv6 VTEP and MAC", func() bool {
		return rb.hasVTEP(100, v6VTEPA) && ra.hasVTEP(100, v6VTEPB) && rb.hasMAC(100, m1, ip1, v6VTEPA, 0)() &&
			ra.hasMAC(100, m2, netip.Addr{}, v6VTEPB, 0)()
	}, ra, rb)
	rs, err := b.Routes(RouteFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var got3, got2 bool
	for _, r := range rs {
		if r.Local {
			if r.VTEP != v6VTEPB {
				t.Errorf("B's own route with VTEP %v", r.VTEP)
			}
			continue
		}
		if r.Neighbor != v6A || r.VTEP != v6VTEPA || !r.Best || r.Reason != "" || r.VNI != 100 {
			t.Errorf("route from A at B: %+v", r)
		}
		got3 = got3 || r.Type == 3
		got2 = got2 || r.Type == 2 && r.IP == ip1
	}
	if !got3 || !got2 {
		t.Errorf("B's routes from A: %+v", rs)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, routeTimeout, "B to drop A's routes", func() bool {
		return !rb.hasVTEP(100, v6VTEPA) && rb.noMAC(100, m1, ip1)()
	}, rb)
}

// On the wire, over IPv6 (RFC 8365 §5.1.3 with RFC 7432 §7.2/§7.3 and
// RFC 6514 §5): the type-3 route's originating router's IP is the
// 128-bit VTEP, its PMSI tunnel attribute is ingress replication with the
// VNI as label and the 16-byte VTEP as tunnel identifier (21 bytes, as
// FRR 10's IPv6 VTEPs send), and every route's MP_REACH next hop is the
// 16-byte VTEP. And the same routes from a neighbor (as FRR with an IPv6
// VTEP sends them) reach the Handler with the IPv6 VTEP.
func TestWireIPv6(t *testing.T) {
	ipv6Loopback(t)
	port := freePort(t, v6A)
	rec := newRecorder("A")
	s := startSpeaker(t, Config{ASN: 65000, RouterID: netip.MustParseAddr("10.0.0.1"), VTEP: v6VTEPA, LocalAddr: v6A,
		ListenPort: int32(port), HoldTime: 3 * time.Second, ConnectRetry: time.Second,
		Neighbors: []Neighbor{{Addr: v6Fake, Port: freePort(t, v6Fake)}}, Logger: testLogger(t, "A")}, rec)
	t.Cleanup(func() { rec.check(t) })
	if err := s.AddVNI(4242); err != nil {
		t.Fatal(err)
	}
	mac := [6]byte{2, 0, 0, 0, 0x6c, 1}
	if err := s.AdvertiseMAC(4242, mac, netip.Addr{}, 0); err != nil {
		t.Fatal(err)
	}
	f := connectFake(t, s, v6Fake, netip.AddrPortFrom(v6A, port))
	var saw2, saw3 bool
	for deadline := time.Now().Add(routeTimeout); !(saw2 && saw3) && time.Now().Before(deadline); {
		m, err := f.read(time.Until(deadline))
		if err != nil {
			t.Fatalf("reading A's UPDATEs: %v", err)
		}
		u, ok := m.Body.(*bgp.BGPUpdate)
		if !ok {
			continue
		}
		var pmsi *bgp.PathAttributePmsiTunnel
		var mp *bgp.PathAttributeMpReachNLRI
		for _, a := range u.PathAttributes {
			switch a := a.(type) {
			case *bgp.PathAttributePmsiTunnel:
				pmsi = a
			case *bgp.PathAttributeMpReachNLRI:
				mp = a
			}
		}
		if mp == nil {
			continue
		}
		if nh, _ := netip.AddrFromSlice(mp.Nexthop); len(mp.Nexthop) != 16 || nh != v6VTEPA {
			t.Errorf("next hop %v (%d bytes), want %v in 16", mp.Nexthop, len(mp.Nexthop), v6VTEPA)
		}
		for _, n := range mp.Value {
			switch r := n.(*bgp.EVPNNLRI).RouteTypeData.(type) {
			case *bgp.EVPNMulticastEthernetTagRoute:
				saw3 = true
				if ip, _ := netip.AddrFromSlice(r.IPAddress); r.IPAddressLength != 128 || ip != v6VTEPA {
					t.Errorf("type-3 originating router's IP %v, length %d", r.IPAddress, r.IPAddressLength)
				}
				if pmsi == nil {
					t.Fatal("type-3 route without a PMSI tunnel attribute")
				}
				id, _ := pmsi.TunnelID.Serialize()
				if ip, _ := netip.AddrFromSlice(id); pmsi.TunnelType != bgp.PMSI_TUNNEL_TYPE_INGRESS_REPL || pmsi.Label != 4242 ||
					len(id) != 16 || ip != v6VTEPA || pmsi.Length != 21 {
					t.Errorf("PMSI tunnel: type %d, label %d, id % x, length %d", pmsi.TunnelType, pmsi.Label, id, pmsi.Length)
				}
			case *bgp.EVPNMacIPAdvertisementRoute:
				saw2 = true
			}
		}
	}
	if !saw2 || !saw3 {
		t.Fatalf("A's UPDATEs: type 2 seen %v, type 3 seen %v", saw2, saw3)
	}

	// The fake neighbor's routes, IPv6 VTEP 2001:db8:ff::3.
	rd := bgp.NewRouteDistinguisherIPAddressAS("10.0.0.3", 1)
	imet := bgp.NewEVPNMulticastEthernetTagRoute(rd, 0, v6VTEPF.String())
	f.send(bgp.NewBGPUpdateMessage(nil, []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(0),
		bgp.NewPathAttributeAsPath(nil),
		bgp.NewPathAttributeLocalPref(100),
		bgp.NewPathAttributeMpReachNLRI(v6VTEPF.String(), []bgp.AddrPrefixInterface{imet}),
		bgp.NewPathAttributeExtendedCommunities([]bgp.ExtendedCommunityInterface{
			bgp.NewTwoOctetAsSpecificExtended(bgp.EC_SUBTYPE_ROUTE_TARGET, 65000, 4242, true),
			bgp.NewEncapExtended(bgp.TUNNEL_TYPE_VXLAN),
		}),
		bgp.NewPathAttributePmsiTunnel(bgp.PMSI_TUNNEL_TYPE_INGRESS_REPL, false, 4242, bgp.NewIngressReplTunnelID(v6VTEPF.String())),
	}, nil))
	f.send(fakeMACUpdate(v6VTEPF, 4242, 4242, "02:00:00:00:6d:01"))
	fmac := [6]byte{2, 0, 0, 0, 0x6d, 1}
	waitFor(t, routeTimeout, "A to learn the IPv6 VTEP and MAC of its neighbor's routes", func() bool {
		return rec.hasVTEP(4242, v6VTEPF) && rec.hasMAC(4242, fmac, netip.Addr{}, v6VTEPF, 0)()
	}, rec)
}
