package evpn

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"testing"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func testSpeaker() *Speaker {
	return &Speaker{cfg: Config{
		ASN:      65000,
		RouterID: netip.MustParseAddr("10.0.0.1"),
		VTEP:     netip.MustParseAddr("192.0.2.1"),
	}}
}

// wire serializes a path's NLRI and attributes the way GoBGP sends them.
func wire(t *testing.T, p *api.Path) (nlri []byte, attrs map[bgp.BGPAttrType][]byte) {
	t.Helper()
	n, err := apiutil.GetNativeNlri(p)
	if err != nil {
		t.Fatalf("GetNativeNlri: %v", err)
	}
	if nlri, err = n.Serialize(); err != nil {
		t.Fatalf("serialize NLRI: %v", err)
	}
	pa, err := apiutil.GetNativePathAttributes(p)
	if err != nil {
		t.Fatalf("GetNativePathAttributes: %v", err)
	}
	attrs = make(map[bgp.BGPAttrType][]byte)
	for _, a := range pa {
		b, err := a.Serialize()
		if err != nil {
			t.Fatalf("serialize %v: %v", a.GetType(), err)
		}
		attrs[a.GetType()] = b
	}
	return nlri, attrs
}

// anyForm is p as GoBGP's watcher hands paths out: NLRI and attributes
// as protobuf Anys (toPathApi).
func anyForm(p *api.Path) *api.Path {
	n, err := apiutil.GetNativeNlri(p)
	if err != nil {
		panic(err)
	}
	pa, err := apiutil.GetNativePathAttributes(p)
	if err != nil {
		panic(err)
	}
	a := &api.Path{Family: p.Family, IsWithdraw: p.IsWithdraw, NeighborIp: p.NeighborIp}
	if a.Nlri, err = apiutil.MarshalNLRI(n); err != nil {
		panic(err)
	}
	if a.Pattrs, err = apiutil.MarshalPathAttributes(pa); err != nil {
		panic(err)
	}
	return a
}

func (s *Speaker) macAny(vni uint32, rdIndex uint16, mac [6]byte, ip netip.Addr, seq uint32) *api.Path {
	return anyForm(s.macPath(vni, rdIndex, mac, ip, seq))
}

func (s *Speaker) imetAny(vni uint32, rdIndex uint16) *api.Path {
	return anyForm(s.imetPath(vni, rdIndex))
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

// rdAny is the route distinguisher RouterID:index as an Any.
func rdAny(routerID netip.Addr, index uint16) *anypb.Any {
	return mustAny(&api.RouteDistinguisherIPAddress{Admin: routerID.String(), Assigned: uint32(index)})
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// The bytes on the wire are what FRR 8.4 sends and expects (RFC 7432 §7,
// RFC 8365 §5.1.3): VNI 100 = 0x000064 in the label fields, RT 65000:100
// (0x0002 fde8 00000064), encapsulation VXLAN (0x030c ... 0008).
func TestWireFormat(t *testing.T) {
	s := testSpeaker()
	rtAndEncap := "0002fde800000064" + "030c000000000008"

	nlri, attrs := wire(t, s.imetPath(100, 1))
	// type 3, length 17, RD type 1 10.0.0.1:1, tag 0, IP length 32, 192.0.2.1
	if want := mustHex("0311" + "00010a0000010001" + "00000000" + "20" + "c0000201"); !bytes.Equal(nlri, want) {
		t.Errorf("type-3 NLRI = %x; want %x", nlri, want)
	}
	// flags 0, type 6 (ingress replication), label = VNI, tunnel ID = VTEP
	if pmsi := attrs[bgp.BGP_ATTR_TYPE_PMSI_TUNNEL]; !bytes.HasSuffix(pmsi, mustHex("0006"+"000064"+"c0000201")) {
		t.Errorf("PMSI tunnel attribute = %x; want ingress replication, label 0x000064, 192.0.2.1", pmsi)
	}
	if ec := attrs[bgp.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES]; !bytes.HasSuffix(ec, mustHex(rtAndEncap)) {
		t.Errorf("type-3 extended communities = %x; want RT 65000:100 and encap VXLAN", ec)
	}
	// GoBGP moves the next hop into MP_REACH_NLRI (api2Path); FRR reads
	// it there in the interop test.
	if nh := attrs[bgp.BGP_ATTR_TYPE_NEXT_HOP]; !bytes.HasSuffix(nh, mustHex("c0000201")) {
		t.Errorf("next hop = %x; want 192.0.2.1", nh)
	}

	mac := [6]byte{0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee}
	nlri, attrs = wire(t, s.macPath(100, 1, mac, netip.MustParseAddr("10.1.1.1"), 7))
	// type 2, length 37: RD, ESI 0, tag 0, MAC length 48, MAC, IP length
	// 32, IP, Label1 = VNI
	want := mustHex("0225" + "00010a0000010001" + "00000000000000000000" + "00000000" +
		"30" + "02aabbccddee" + "20" + "0a010101" + "000064")
	if !bytes.Equal(nlri, want) {
		t.Errorf("type-2 NLRI = %x; want %x", nlri, want)
	}
	// MAC mobility: type 6 sub-type 0, flags 0, reserved, sequence 7
	if ec := attrs[bgp.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES]; !bytes.HasSuffix(ec, mustHex(rtAndEncap+"0600000000000007")) {
		t.Errorf("type-2 extended communities = %x; want RT, encap and MAC mobility seq 7", ec)
	}
	nlri, attrs = wire(t, s.macPath(100, 1, mac, netip.Addr{}, 0))
	if want := mustHex("0221" + "00010a0000010001" + "00000000000000000000" + "00000000" +
		"30" + "02aabbccddee" + "00" + "000064"); !bytes.Equal(nlri, want) {
		t.Errorf("MAC-only type-2 NLRI = %x; want %x", nlri, want)
	}
	if ec := attrs[bgp.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES]; !bytes.HasSuffix(ec, mustHex(rtAndEncap)) {
		t.Errorf("seq 0 extended communities = %x; want RT and encap only", ec)
	}

	// A 4-octet ASN: FRR's auto RT keeps its low 16 bits.
	s.cfg.ASN = 4200000001 // 0xfa56ea01
	_, attrs = wire(t, s.imetPath(100, 1))
	if ec := attrs[bgp.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES]; !bytes.Contains(ec, mustHex("0002ea0100000064")) {
		t.Errorf("4-octet ASN RT = %x; want 0002ea0100000064", ec)
	}
}

// remote makes one of our paths look received from a neighbor.
func remote(p *api.Path, withdraw bool) *api.Path {
	p.NeighborIp = "10.0.0.9"
	p.IsWithdraw = withdraw
	return p
}

func TestDecodeOwnPaths(t *testing.T) {
	s := testSpeaker()
	vtep := s.cfg.VTEP
	mac := [6]byte{0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee}
	ip := netip.MustParseAddr("2001:db8::5")
	for _, tc := range []struct {
		name string
		p    *api.Path
		want route
	}{
		{"type 3", remote(s.imetAny(4097, 3), false), route{kind: kindIMET, vni: 4097, vtep: vtep}},
		{"type 2", remote(s.macAny(5000, 3, mac, ip, 9), false), route{kind: kindMAC, vni: 5000, mac: mac, ip: ip, vtep: vtep, seq: 9}},
		{"type 2 MAC only", remote(s.macAny(MaxVNI, 3, mac, netip.Addr{}, 0), false), route{kind: kindMAC, vni: MaxVNI, mac: mac, vtep: vtep}},
		{"withdrawn", remote(s.macAny(1, 3, mac, netip.Addr{}, 0), true), route{kind: kindMAC, mac: mac, withdraw: true}},
		{"local", s.macAny(1, 3, mac, netip.Addr{}, 4), route{kind: kindMAC, vni: 1, mac: mac, vtep: vtep, seq: 4, local: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodePath(tc.p)
			if err != nil {
				t.Fatalf("decodePath: %v", err)
			}
			if got.key == "" {
				t.Error("decodePath gave no key")
			}
			got.key = ""
			if got != tc.want {
				t.Errorf("decodePath = %+v; want %+v", got, tc.want)
			}
		})
	}
}

func TestDecodeHostilePaths(t *testing.T) {
	s := testSpeaker()
	mac := [6]byte{0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee}
	withLabel := func(label uint32, mac string, ip string) *api.Path {
		p := remote(s.macAny(100, 1, [6]byte{2}, netip.Addr{}, 0), false)
		p.Nlri = mustAny(&api.EVPNMACIPAdvertisementRoute{
			Rd: rdAny(s.cfg.RouterID, 1), MacAddress: mac, IpAddress: ip, Labels: []uint32{label},
		})
		return p
	}
	noNextHop := remote(s.macAny(100, 1, mac, netip.Addr{}, 0), false)
	noNextHop.Pattrs = noNextHop.Pattrs[:1] // ORIGIN only
	noRT := remote(s.macAny(100, 1, mac, netip.Addr{}, 0), false)
	noRT.Pattrs[2] = mustAny(&api.ExtendedCommunitiesAttribute{})
	noRTNoLabel := withLabel(0, "02:00:00:00:00:01", "")
	noRTNoLabel.Pattrs[2] = mustAny(&api.ExtendedCommunitiesAttribute{})
	garbage := remote(s.macAny(100, 1, mac, netip.Addr{}, 0), false)
	garbage.Nlri = &anypb.Any{TypeUrl: "type.googleapis.com/apipb.EVPNMACIPAdvertisementRoute", Value: []byte{0xff, 0xff}}

	for _, tc := range []struct {
		name string
		p    *api.Path
	}{
		{"broadcast MAC", withLabel(100, "ff:ff:ff:ff:ff:ff", "")},
		{"multicast MAC", withLabel(100, "01:00:5e:00:00:01", "")},
		{"zero MAC", withLabel(100, "00:00:00:00:00:00", "")},
		{"long MAC", withLabel(100, "02:00:00:00:00:00:00:01", "")},
		{"bad IP", withLabel(100, "02:00:00:00:00:01", "300.1.1.1")},
		{"no VNI anywhere", noRTNoLabel},
		{"no next hop", noNextHop},
		{"unparsable NLRI", garbage},
		{"no NLRI", &api.Path{Family: evpnFamily, NeighborIp: "10.0.0.9"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r, err := decodePath(tc.p); err == nil {
				t.Errorf("decodePath = %+v, nil error; want an error", r)
			}
		})
	}
	// A label of 0 falls back to the route target.
	if r, err := decodePath(withLabel(0, "02:00:00:00:00:01", "")); err != nil || r.vni != 100 {
		t.Errorf("label 0: decodePath = %+v, %v; want VNI 100 from the RT", r, err)
	}
	// No route target: the label alone is enough.
	if r, err := decodePath(noRT); err != nil || r.vni != 100 {
		t.Errorf("no RT: decodePath = %+v, %v; want VNI 100 from the label", r, err)
	}
	// Other families and route types are skipped quietly.
	if _, err := decodePath(&api.Path{Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}}); err != errIgnored {
		t.Errorf("IPv4 unicast path: err = %v; want errIgnored", err)
	}
	type5 := remote(s.imetAny(100, 1), false)
	type5.Nlri = mustAny(&api.EVPNIPPrefixRoute{Rd: rdAny(s.cfg.RouterID, 1), IpPrefix: "10.0.0.0", IpPrefixLen: 8})
	if _, err := decodePath(type5); err != errIgnored {
		t.Errorf("type-5 path: err = %v; want errIgnored", err)
	}
}

// BenchmarkDecodePath decodes a remote type-2 route as GoBGP's watcher
// hands it out (the next hop in MP_REACH_NLRI, LOCAL_PREF of iBGP).
func BenchmarkDecodePath(b *testing.B) {
	s := testSpeaker()
	wp := s.macPath(100, 1, [6]byte{2, 0xaa, 0xbb, 0xcc, 0xdd, 0xee}, netip.Addr{}, 3)
	n, _ := apiutil.GetNativeNlri(wp)
	pa, _ := apiutil.GetNativePathAttributes(wp)
	attrs := []bgp.PathAttributeInterface{pa[0], bgp.NewPathAttributeMpReachNLRI("192.0.2.1", []bgp.AddrPrefixInterface{n}), pa[2],
		bgp.NewPathAttributeLocalPref(100)}
	p := &api.Path{Family: evpnFamily, NeighborIp: "10.0.0.9"}
	p.Nlri, _ = apiutil.MarshalNLRI(n)
	p.Pattrs, _ = apiutil.MarshalPathAttributes(attrs)
	if r, err := decodePath(p); err != nil || r.vtep != netip.MustParseAddr("192.0.2.1") || r.seq != 3 || r.vni != 100 {
		b.Fatalf("decodePath = %+v, %v", r, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodePath(p); err != nil {
			b.Fatal(err)
		}
	}
}

// firstNextHop reads the next hop from GoBGP's encoding and nothing from
// garbage.
func TestFirstNextHop(t *testing.T) {
	n, _ := apiutil.GetNativeNlri(testSpeaker().macPath(100, 1, [6]byte{2, 1, 2, 3, 4, 5}, netip.Addr{}, 0))
	for _, hop := range []string{"192.0.2.1", "2001:db8::1"} {
		a, err := apiutil.NewMpReachNLRIAttributeFromNative(bgp.NewPathAttributeMpReachNLRI(hop, []bgp.AddrPrefixInterface{n}))
		if err != nil {
			t.Fatal(err)
		}
		b, err := proto.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := firstNextHop(b); !ok || got != hop {
			t.Errorf("firstNextHop = %q, %v; want %s", got, ok, hop)
		}
		for i := range len(b) - 1 {
			if got, ok := firstNextHop(b[:i]); ok && got != hop {
				t.Errorf("%d bytes of it: %q", i, got)
			}
		}
	}
	for _, b := range [][]byte{nil, {0xff}, {0x12}, {0x12, 0x05, 'a'}, {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}} {
		if got, ok := firstNextHop(b); ok {
			t.Errorf("firstNextHop(%x) = %q", b, got)
		}
	}
}
