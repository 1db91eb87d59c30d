package evpn

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/types/known/anypb"
)

// routeKind tells the EVPN route types the speaker uses apart.
type routeKind uint8

const (
	kindMAC  routeKind = 2 // MAC/IP Advertisement (RFC 7432 §7.2)
	kindIMET routeKind = 3 // Inclusive Multicast Ethernet Tag (RFC 7432 §7.3)
)

// route is a received EVPN route, reduced to what the Handler needs.
// Everything in it was checked: a VNI in 1..MaxVNI, a unicast MAC, a valid
// VTEP.
type route struct {
	kind     routeKind
	key      string // the NLRI's identity: RD, tag, MAC, IP or originator
	withdraw bool
	local    bool // originated by this speaker (no neighbor)
	ignore   bool // a remote route the speaker will not use
	vni      uint32
	mac      [6]byte
	ip       netip.Addr // type 2 only; invalid: MAC only
	vtep     netip.Addr
	seq      uint32 // MAC mobility sequence (RFC 7432 §7.7); 0 without one
}

// errIgnored marks routes of types the speaker has no use for (types 1, 4,
// 5...): they are skipped without a warning.
var errIgnored = errors.New("route type not used")

// decodePath reads a path from GoBGP's best-path watcher. Remote paths
// are hostile input; anything malformed is an error and the path is
// skipped by the caller. A withdrawn path needs only its NLRI.
func decodePath(p *api.Path) (route, error) {
	r := route{withdraw: p.GetIsWithdraw()}
	if p.GetFamily().GetAfi() != api.Family_AFI_L2VPN || p.GetFamily().GetSafi() != api.Family_SAFI_EVPN {
		return r, errIgnored
	}
	nb, err := netip.ParseAddr(p.GetNeighborIp())
	r.local = err != nil || nb.IsUnspecified()
	if p.GetNlri() == nil {
		return r, errors.New("path without NLRI")
	}
	nlri, err := p.GetNlri().UnmarshalNew()
	if err != nil {
		return r, fmt.Errorf("unmarshal NLRI: %w", err)
	}
	var label uint32
	switch n := nlri.(type) {
	case *api.EVPNMACIPAdvertisementRoute:
		r.kind = kindMAC
		hw, err := net.ParseMAC(n.GetMacAddress())
		if err != nil || len(hw) != 6 {
			return r, fmt.Errorf("type-2 route: bad MAC %q", n.GetMacAddress())
		}
		copy(r.mac[:], hw)
		if r.ip, err = parseOptionalAddr(n.GetIpAddress()); err != nil {
			return r, fmt.Errorf("type-2 route for %s: %w", hw, err)
		}
		if len(n.GetLabels()) > 0 {
			label = n.GetLabels()[0]
		}
		r.key = fmt.Sprintf("2|%s|%d|%s|%s", rdString(n.GetRd()), n.GetEthernetTag(), hw, r.ip)
	case *api.EVPNInclusiveMulticastEthernetTagRoute:
		r.kind = kindIMET
		orig, err := parseOptionalAddr(n.GetIpAddress())
		if err != nil {
			return r, fmt.Errorf("type-3 route: originator: %w", err)
		}
		r.vtep = orig
		r.key = fmt.Sprintf("3|%s|%d|%s", rdString(n.GetRd()), n.GetEthernetTag(), orig)
	default:
		return r, errIgnored
	}
	if r.withdraw {
		return r, nil
	}
	var rtVNI uint32
	var nextHop netip.Addr
	for _, a := range p.GetPattrs() {
		attr, err := a.UnmarshalNew()
		if err != nil {
			continue // an attribute type this GoBGP build does not know
		}
		switch v := attr.(type) {
		case *api.MpReachNLRIAttribute:
			if hops := v.GetNextHops(); len(hops) > 0 {
				nextHop, _ = netip.ParseAddr(hops[0])
			}
		case *api.NextHopAttribute:
			nextHop, _ = netip.ParseAddr(v.GetNextHop())
		case *api.ExtendedCommunitiesAttribute:
			rtVNI, r.seq = readCommunities(v.GetCommunities())
		case *api.PmsiTunnelAttribute:
			// RFC 8365 §5.1.3: the PMSI label carries the VNI, the
			// tunnel identifier of ingress replication the VTEP.
			if r.kind == kindIMET {
				label = v.GetLabel()
				if v.GetType() == pmsiIngressReplication {
					if ip, ok := netip.AddrFromSlice(v.GetId()); ok {
						r.vtep = ip.Unmap()
					}
				}
			}
		}
	}
	nextHop = nextHop.Unmap()
	if r.kind == kindMAC || !r.vtep.IsValid() || r.vtep.IsUnspecified() {
		r.vtep = nextHop
	}
	if !r.vtep.IsValid() || r.vtep.IsUnspecified() || r.vtep.IsMulticast() {
		return r, fmt.Errorf("type-%d route: no usable VTEP (next hop %s)", r.kind, nextHop)
	}
	// RFC 8365 §5.1.3: the VNI is in the label field; a route target
	// ASN:VNI is the fallback (a label of 0 is no VNI).
	r.vni = label & MaxVNI
	if r.vni == 0 {
		r.vni = rtVNI
	}
	if r.vni == 0 {
		return r, fmt.Errorf("type-%d route: no VNI in label or route target", r.kind)
	}
	if r.kind == kindMAC && (r.mac[0]&1 != 0 || r.mac == [6]byte{}) {
		return r, fmt.Errorf("type-2 route: %s is not a unicast MAC", net.HardwareAddr(r.mac[:]))
	}
	return r, nil
}

// readCommunities returns the VNI of the first route target that carries
// one (its local administrator's low 24 bits: FRR's ASN:VNI, also with the
// RFC 8365 §5.1.2.1 type bits) and the MAC mobility sequence number.
func readCommunities(comms []*anypb.Any) (rtVNI, seq uint32) {
	for _, c := range comms {
		m, err := c.UnmarshalNew()
		if err != nil {
			continue
		}
		switch v := m.(type) {
		case *api.TwoOctetAsSpecificExtended:
			if v.GetSubType() == subTypeRouteTarget && rtVNI == 0 {
				rtVNI = v.GetLocalAdmin() & MaxVNI
			}
		case *api.MacMobilityExtended:
			seq = v.GetSequenceNum()
		}
	}
	return rtVNI, seq
}

// parseOptionalAddr parses an address GoBGP printed: empty, "<nil>" and
// the unspecified addresses mean none.
func parseOptionalAddr(s string) (netip.Addr, error) {
	if s == "" || s == "<nil>" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("bad IP %q", s)
	}
	if a.IsUnspecified() {
		return netip.Addr{}, nil
	}
	return a.Unmap(), nil
}

// rdString prints a route distinguisher for use in a route's key.
func rdString(a *anypb.Any) string {
	if a == nil {
		return "-"
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		return a.GetTypeUrl() + "?" + string(a.GetValue())
	}
	switch v := m.(type) {
	case *api.RouteDistinguisherIPAddress:
		return fmt.Sprintf("%s:%d", v.GetAdmin(), v.GetAssigned())
	case *api.RouteDistinguisherTwoOctetASN:
		return fmt.Sprintf("%d:%d", v.GetAdmin(), v.GetAssigned())
	case *api.RouteDistinguisherFourOctetASN:
		return fmt.Sprintf("%d.%d", v.GetAdmin(), v.GetAssigned())
	}
	return a.GetTypeUrl()
}
