package evpn

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
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
//
// It unpacks only the messages it reads, each into its own type (the
// Any's type name picked by a switch, not looked up in the protobuf
// registry), and builds the route's key without fmt: every route of a
// burst passes here, on both ends (bench evpn: a third of the speaker's
// own CPU per route went to decoding before).
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
	var label uint32
	switch anyName(p.GetNlri()) {
	case nameMACIP:
		var n api.EVPNMACIPAdvertisementRoute
		if err := proto.Unmarshal(p.GetNlri().GetValue(), &n); err != nil {
			return r, fmt.Errorf("unmarshal NLRI: %w", err)
		}
		r.kind = kindMAC
		mac, ok := parseMAC(n.GetMacAddress())
		if !ok {
			return r, fmt.Errorf("type-2 route: bad MAC %q", n.GetMacAddress())
		}
		r.mac = mac
		if r.ip, err = parseOptionalAddr(n.GetIpAddress()); err != nil {
			return r, fmt.Errorf("type-2 route for %s: %w", net.HardwareAddr(mac[:]), err)
		}
		if len(n.GetLabels()) > 0 {
			label = n.GetLabels()[0]
		}
		r.key = routeKey(2, n.GetRd(), n.GetEthernetTag(), &r.mac, r.ip)
	case nameIMET:
		var n api.EVPNInclusiveMulticastEthernetTagRoute
		if err := proto.Unmarshal(p.GetNlri().GetValue(), &n); err != nil {
			return r, fmt.Errorf("unmarshal NLRI: %w", err)
		}
		r.kind = kindIMET
		orig, err := parseOptionalAddr(n.GetIpAddress())
		if err != nil {
			return r, fmt.Errorf("type-3 route: originator: %w", err)
		}
		r.vtep = orig
		r.key = routeKey(3, n.GetRd(), n.GetEthernetTag(), nil, orig)
	default:
		// Another route type (1, 4, 5...), or something GoBGP's
		// registry does not know.
		if _, err := p.GetNlri().UnmarshalNew(); err != nil {
			return r, fmt.Errorf("unmarshal NLRI: %w", err)
		}
		return r, errIgnored
	}
	if r.withdraw {
		return r, nil
	}
	var rtVNI uint32
	var nextHop netip.Addr
	for _, a := range p.GetPattrs() {
		// An attribute that does not unmarshal is skipped, as one of a
		// type this GoBGP build does not know is.
		switch anyName(a) {
		case nameMPReach:
			if hop, ok := firstNextHop(a.GetValue()); ok {
				nextHop, _ = netip.ParseAddr(hop)
			}
		case nameNextHop:
			var v api.NextHopAttribute
			if proto.Unmarshal(a.GetValue(), &v) == nil {
				nextHop, _ = netip.ParseAddr(v.GetNextHop())
			}
		case nameExtComms:
			var v api.ExtendedCommunitiesAttribute
			if proto.Unmarshal(a.GetValue(), &v) == nil {
				rtVNI, r.seq = readCommunities(v.GetCommunities())
			}
		case namePMSI:
			// RFC 8365 §5.1.3: the PMSI label carries the VNI, the
			// tunnel identifier of ingress replication the VTEP.
			var v api.PmsiTunnelAttribute
			if r.kind == kindIMET && proto.Unmarshal(a.GetValue(), &v) == nil {
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

// firstNextHop reads the first of an MpReachNLRIAttribute's next_hops
// (field 2) from its protobuf encoding, leaving the NLRIs it repeats
// (field 3) unread. A malformed encoding has none.
func firstNextHop(b []byte) (string, bool) {
	const nextHops = 2 // apipb.MpReachNLRIAttribute.next_hops
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", false
		}
		b = b[n:]
		if num == nextHops && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return "", false
			}
			return string(v), true
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return "", false
		}
		b = b[n:]
	}
	return "", false
}

// The full names of the messages decodePath reads.
var (
	nameMACIP    = fullName(&api.EVPNMACIPAdvertisementRoute{})
	nameIMET     = fullName(&api.EVPNInclusiveMulticastEthernetTagRoute{})
	nameMPReach  = fullName(&api.MpReachNLRIAttribute{})
	nameNextHop  = fullName(&api.NextHopAttribute{})
	nameExtComms = fullName(&api.ExtendedCommunitiesAttribute{})
	namePMSI     = fullName(&api.PmsiTunnelAttribute{})
	nameRT2      = fullName(&api.TwoOctetAsSpecificExtended{})
	nameMobility = fullName(&api.MacMobilityExtended{})
	nameRDIP     = fullName(&api.RouteDistinguisherIPAddress{})
	nameRDAS2    = fullName(&api.RouteDistinguisherTwoOctetASN{})
	nameRDAS4    = fullName(&api.RouteDistinguisherFourOctetASN{})
)

func fullName(m proto.Message) string { return string(m.ProtoReflect().Descriptor().FullName()) }

// anyName is the full name of the message in a (its type URL's last
// segment, as anypb.Any.MessageName reads it).
func anyName(a *anypb.Any) string {
	u := a.GetTypeUrl()
	if i := strings.LastIndexByte(u, '/'); i >= 0 {
		return u[i+1:]
	}
	return u
}

// parseMAC parses GoBGP's printing of a 48-bit MAC (aa:bb:cc:dd:ee:ff).
func parseMAC(s string) (mac [6]byte, ok bool) {
	if len(s) != 17 {
		return mac, false
	}
	for i := range 6 {
		if i > 0 && s[3*i-1] != ':' {
			return mac, false
		}
		hi, ok1 := unhex(s[3*i])
		lo, ok2 := unhex(s[3*i+1])
		if !ok1 || !ok2 {
			return mac, false
		}
		mac[i] = hi<<4 | lo
	}
	return mac, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// routeKey is a route's identity (RFC 7432 §7.2, §7.3: the RD, the
// Ethernet tag, the MAC and IP of a type-2 route, the originator of a
// type-3 route; labels and attributes aside), as a string for map keys.
func routeKey(typ byte, rd *anypb.Any, tag uint32, mac *[6]byte, ip netip.Addr) string {
	b := make([]byte, 0, 80)
	b = append(b, '0'+typ, '|')
	b = appendRD(b, rd)
	b = append(b, '|')
	b = strconv.AppendUint(b, uint64(tag), 10)
	if mac != nil {
		b = append(b, '|')
		b = append(b, net.HardwareAddr(mac[:]).String()...)
	}
	b = append(b, '|')
	b = ip.AppendTo(b)
	return string(b)
}

// readCommunities returns the VNI of the first route target that carries
// one (its local administrator's low 24 bits: FRR's ASN:VNI, also with the
// RFC 8365 §5.1.2.1 type bits) and the MAC mobility sequence number.
func readCommunities(comms []*anypb.Any) (rtVNI, seq uint32) {
	for _, c := range comms {
		switch anyName(c) {
		case nameRT2:
			var v api.TwoOctetAsSpecificExtended
			if rtVNI == 0 && proto.Unmarshal(c.GetValue(), &v) == nil && v.GetSubType() == subTypeRouteTarget {
				rtVNI = v.GetLocalAdmin() & MaxVNI
			}
		case nameMobility:
			var v api.MacMobilityExtended
			if proto.Unmarshal(c.GetValue(), &v) == nil {
				seq = v.GetSequenceNum()
			}
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
func rdString(a *anypb.Any) string { return string(appendRD(nil, a)) }

// appendRD appends rdString's printing of a route distinguisher to b.
func appendRD(b []byte, a *anypb.Any) []byte {
	if a == nil {
		return append(b, '-')
	}
	switch anyName(a) {
	case nameRDIP:
		var v api.RouteDistinguisherIPAddress
		if proto.Unmarshal(a.GetValue(), &v) == nil {
			b = append(b, v.GetAdmin()...)
			b = append(b, ':')
			return strconv.AppendUint(b, uint64(v.GetAssigned()), 10)
		}
	case nameRDAS2:
		var v api.RouteDistinguisherTwoOctetASN
		if proto.Unmarshal(a.GetValue(), &v) == nil {
			b = strconv.AppendUint(b, uint64(v.GetAdmin()), 10)
			b = append(b, ':')
			return strconv.AppendUint(b, uint64(v.GetAssigned()), 10)
		}
	case nameRDAS4:
		var v api.RouteDistinguisherFourOctetASN
		if proto.Unmarshal(a.GetValue(), &v) == nil {
			b = strconv.AppendUint(b, uint64(v.GetAdmin()), 10)
			b = append(b, '.')
			return strconv.AppendUint(b, uint64(v.GetAssigned()), 10)
		}
	default:
		return append(b, a.GetTypeUrl()...)
	}
	b = append(b, a.GetTypeUrl()...)
	b = append(b, '?')
	return append(b, a.GetValue()...)
}
