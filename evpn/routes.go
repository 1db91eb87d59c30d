package evpn

import (
	"fmt"
	"net"
	"net/netip"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
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

// The speaker hands GoBGP its routes in wire format (api.Path's
// NlriBinary and PattrsBinary), built with GoBGP's own packet types:
// GoBGP decodes them with its BGP parser (apiutil.GetNativeNlri,
// GetNativePathAttributes) instead of unpacking a protobuf Any per
// attribute and community. That unpacking, and the packing of the Anys
// before it, were a third of the CPU an advertised MAC cost (bench evpn's
// profile of host A).

// wirePath is a path of ours in wire format.
func wirePath(nlri bgp.AddrPrefixInterface, attrs []bgp.PathAttributeInterface) *api.Path {
	nb, err := nlri.Serialize()
	if err != nil {
		panic(fmt.Sprintf("evpn: serialize %v: %v", nlri, err))
	}
	ab := make([][]byte, len(attrs))
	for i, a := range attrs {
		if ab[i], err = a.Serialize(); err != nil {
			panic(fmt.Sprintf("evpn: serialize %v: %v", a, err))
		}
	}
	// The routes are the speaker's own, built from validated values, so
	// serializing cannot fail.
	return &api.Path{Family: evpnFamily, NlriBinary: nb, PattrsBinary: ab}
}

// routeTarget is the VNI's route target ASN:VNI as FRR derives it
// (bgpd/bgp_evpn.c form_auto_rt): a transitive two-octet AS specific
// extended community with the low 16 bits of the ASN as global
// administrator and the VNI as the 4-octet local administrator (RFC 8365
// §5.1.2.1 with the "A" bit and type field clear). For a 2-octet ASN this is
// exactly ASN:VNI; a 4-octet ASN cannot fit with a 24-bit VNI in any RT
// type, and FRR truncates it the same way, so the two interoperate.
func routeTarget(asn, vni uint32) bgp.ExtendedCommunityInterface {
	return bgp.NewTwoOctetAsSpecificExtended(subTypeRouteTarget, uint16(asn&0xffff), vni, true)
}

// routeDistinguisher is the type 1 RD RouterID:index (RFC 4364 §4.2), one
// index per VNI, as FRR's auto-derived RD (RFC 7432 §7.9).
func routeDistinguisher(routerID netip.Addr, index uint16) bgp.RouteDistinguisherInterface {
	return bgp.NewRouteDistinguisherIPAddressAS(routerID.String(), index)
}

// commonAttrs are the attributes of every route the speaker originates:
// ORIGIN, next hop = VTEP (RFC 8365 §5.1.3: the BGP next hop carries the
// VTEP address; GoBGP moves it into MP_REACH_NLRI) and the extended
// communities: the VNI's route target, the encapsulation VXLAN (RFC 8365
// §5.1.3) and, when seq > 0, MAC mobility (RFC 7432 §7.7).
func (s *Speaker) commonAttrs(vni uint32, seq uint32) []bgp.PathAttributeInterface {
	comms := []bgp.ExtendedCommunityInterface{
		routeTarget(s.cfg.ASN, vni),
		bgp.NewEncapExtended(tunnelTypeVXLAN),
	}
	if seq > 0 {
		comms = append(comms, bgp.NewMacMobilityExtended(seq, false))
	}
	return []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(originIGP),
		bgp.NewPathAttributeNextHop(s.cfg.VTEP.String()),
		bgp.NewPathAttributeExtendedCommunities(comms),
	}
}

// imetPath is the Inclusive Multicast Ethernet Tag route (type 3, RFC
// 7432 §7.3) of a VNI: Ethernet tag 0 (VLAN-based service, RFC 8365 §5.1.2),
// originating router = VTEP, and a PMSI tunnel attribute (RFC 6514 §5)
// "ingress replication" to the VTEP whose label field carries the VNI (RFC
// 8365 §5.1.3).
func (s *Speaker) imetPath(vni uint32, rdIndex uint16) *api.Path {
	nlri := bgp.NewEVPNMulticastEthernetTagRoute(routeDistinguisher(s.cfg.RouterID, rdIndex), 0, s.cfg.VTEP.String())
	attrs := append(s.commonAttrs(vni, 0), bgp.NewPathAttributePmsiTunnel(pmsiIngressReplication, false, vni,
		bgp.NewIngressReplTunnelID(s.cfg.VTEP.String())))
	return wirePath(nlri, attrs)
}

// macPath is the MAC/IP Advertisement route (type 2, RFC 7432 §7.2) of mac
// (and ip, when valid) in vni: ESI 0 (single-homed), Ethernet tag 0, and
// the VNI in the MPLS Label1 field (RFC 8365 §5.1.3).
func (s *Speaker) macPath(vni uint32, rdIndex uint16, mac [6]byte, ip netip.Addr, seq uint32) *api.Path {
	var ips string
	if ip.IsValid() {
		ips = ip.String()
	}
	esi := bgp.EthernetSegmentIdentifier{Type: bgp.ESI_ARBITRARY, Value: make([]byte, 9)}
	nlri := bgp.NewEVPNMacIPAdvertisementRoute(routeDistinguisher(s.cfg.RouterID, rdIndex), esi, 0,
		net.HardwareAddr(mac[:]).String(), ips, []uint32{vni})
	return wirePath(nlri, s.commonAttrs(vni, seq))
}
