package evpn

import (
	"fmt"
	"net"
	"net/netip"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Wire constants of the routes the speaker builds and reads.
const (
	// subTypeRouteTarget is the Route Target sub-type of the AS-specific
	// extended communities (RFC 4360 §4).
	subTypeRouteTarget = 0x02
	// tunnelTypeVXLAN is the BGP Encapsulation extended community's tunnel
	// type for VXLAN (RFC 9012 §14.2 / RFC 8365 §5.1.3).
	tunnelTypeVXLAN = 8
	// pmsiIngressReplication is the PMSI tunnel type "Ingress Replication"
	// (RFC 6514 §5; RFC 8365 §5.1.3: the tunnel identifier is the VTEP).
	pmsiIngressReplication = 6
	// originIGP is ORIGIN IGP (RFC 4271 §5.1.1).
	originIGP = 0
)

// evpnFamily is AFI 25 (L2VPN), SAFI 70 (EVPN), RFC 7432 §7.
var evpnFamily = &api.Family{Afi: api.Family_AFI_L2VPN, Safi: api.Family_SAFI_EVPN}

// mustAny wraps m into an anypb.Any. The messages are the speaker's own,
// built from validated values, so marshalling cannot fail.
func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(fmt.Sprintf("evpn: marshal %T: %v", m, err))
	}
	return a
}

// routeTarget is the VNI's route target ASN:VNI as FRR derives it
// (bgpd/bgp_evpn.c form_auto_rt): a transitive two-octet AS specific
// extended community with the low 16 bits of the ASN as global
// administrator and the VNI as the 4-octet local administrator (RFC 8365
// §5.1.2.1 with the "A" bit and type field clear). For a 2-octet ASN this is
// exactly ASN:VNI; a 4-octet ASN cannot fit with a 24-bit VNI in any RT
// type, and FRR truncates it the same way, so the two interoperate.
func routeTarget(asn, vni uint32) *api.TwoOctetAsSpecificExtended {
	return &api.TwoOctetAsSpecificExtended{
		IsTransitive: true,
		SubType:      subTypeRouteTarget,
		Asn:          asn & 0xffff,
		LocalAdmin:   vni,
	}
}

// routeDistinguisher is the type 1 RD RouterID:index (RFC 4364 §4.2), one
// index per VNI, as FRR's auto-derived RD (RFC 7432 §7.9).
func routeDistinguisher(routerID netip.Addr, index uint16) *anypb.Any {
	return mustAny(&api.RouteDistinguisherIPAddress{Admin: routerID.String(), Assigned: uint32(index)})
}

// commonAttrs are the attributes of every route the speaker originates:
// ORIGIN, next hop = VTEP (RFC 8365 §5.1.3: the BGP next hop carries the
// VTEP address) and the extended communities: the VNI's route target, the
// encapsulation VXLAN (RFC 8365 §5.1.3) and, when seq > 0, MAC mobility
// (RFC 7432 §7.7).
func (s *Speaker) commonAttrs(vni uint32, seq uint32) []*anypb.Any {
	comms := []*anypb.Any{
		mustAny(routeTarget(s.cfg.ASN, vni)),
		mustAny(&api.EncapExtended{TunnelType: tunnelTypeVXLAN}),
	}
	if seq > 0 {
		comms = append(comms, mustAny(&api.MacMobilityExtended{SequenceNum: seq}))
	}
	return []*anypb.Any{
		mustAny(&api.OriginAttribute{Origin: originIGP}),
		mustAny(&api.NextHopAttribute{NextHop: s.cfg.VTEP.String()}),
		mustAny(&api.ExtendedCommunitiesAttribute{Communities: comms}),
	}
}

// imetPath is the Inclusive Multicast Ethernet Tag route (type 3, RFC
// 7432 §7.3) of a VNI: Ethernet tag 0 (VLAN-based service, RFC 8365 §5.1.2),
// originating router = VTEP, and a PMSI tunnel attribute (RFC 6514 §5)
// "ingress replication" to the VTEP whose label field carries the VNI (RFC
// 8365 §5.1.3).
func (s *Speaker) imetPath(vni uint32, rdIndex uint16) *api.Path {
	nlri := &api.EVPNInclusiveMulticastEthernetTagRoute{
		Rd:          routeDistinguisher(s.cfg.RouterID, rdIndex),
		EthernetTag: 0,
		IpAddress:   s.cfg.VTEP.String(),
	}
	attrs := append(s.commonAttrs(vni, 0), mustAny(&api.PmsiTunnelAttribute{
		Type:  pmsiIngressReplication,
		Label: vni,
		Id:    s.cfg.VTEP.AsSlice(),
	}))
	return &api.Path{Family: evpnFamily, Nlri: mustAny(nlri), Pattrs: attrs}
}

// macPath is the MAC/IP Advertisement route (type 2, RFC 7432 §7.2) of mac
// (and ip, when valid) in vni: ESI 0 (single-homed), Ethernet tag 0, and
// the VNI in the MPLS Label1 field (RFC 8365 §5.1.3).
func (s *Speaker) macPath(vni uint32, rdIndex uint16, mac [6]byte, ip netip.Addr, seq uint32) *api.Path {
	nlri := &api.EVPNMACIPAdvertisementRoute{
		Rd:          routeDistinguisher(s.cfg.RouterID, rdIndex),
		Esi:         &api.EthernetSegmentIdentifier{Type: 0, Value: make([]byte, 9)},
		EthernetTag: 0,
		MacAddress:  net.HardwareAddr(mac[:]).String(),
		Labels:      []uint32{vni},
	}
	if ip.IsValid() {
		nlri.IpAddress = ip.String()
	}
	return &api.Path{Family: evpnFamily, Nlri: mustAny(nlri), Pattrs: s.commonAttrs(vni, seq)}
}
