package evpn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/types/known/anypb"
)

// Route is one EVPN route in the speaker's RIB, as Routes lists it: one
// the speaker advertises (Local) or one a neighbor sent.
type Route struct {
	// Type is the EVPN route type: 2 (MAC/IP Advertisement) or 3
	// (Inclusive Multicast Ethernet Tag).
	Type int
	// RD is the route distinguisher as FRR prints it (192.0.2.1:1, or
	// 65000:1 for a type 0 RD).
	RD string
	// VNI is the route's VNI (from its label, else its route target); 0
	// when it has none, which makes it unusable (Reason says so).
	VNI uint32
	// MAC and IP are a type-2 route's; IP is invalid when the route
	// carries none.
	MAC net.HardwareAddr
	IP  netip.Addr
	// VTEP is where the route points: the next hop of a type-2 route,
	// the PMSI tunnel endpoint (or originator) of a type-3 route.
	VTEP netip.Addr
	// Seq is a type-2 route's MAC mobility sequence number (0: none).
	Seq uint32
	// RouteTargets are its route targets (ASN:N or ADDR:N).
	RouteTargets []string
	// Local: the speaker originates it. Otherwise Neighbor is the
	// neighbor that sent it.
	Local    bool
	Neighbor netip.Addr
	// Best: GoBGP's best path for the route's NLRI (every local route
	// is).
	Best bool
	// Accepted: a received best path the speaker takes into account (a
	// type-3 route puts its VTEP on the flood list; among the type-2
	// routes of one MAC, MAC mobility then picks the VTEP with the
	// highest sequence number); false for local routes, paths that are
	// not the best, and routes it ignores, with Reason saying why.
	Accepted bool
	Reason   string
}

// RouteFilter selects routes for Routes; zero fields select all.
type RouteFilter struct {
	Type int              // 2 or 3
	VNI  uint32           // the route's VNI
	MAC  net.HardwareAddr // type-2 routes for this MAC
	// Local and Remote: only the speaker's own routes, only received
	// ones (both false: both).
	Local, Remote bool
}

func (f RouteFilter) match(r *Route) bool {
	return (f.Type == 0 || r.Type == f.Type) && (f.VNI == 0 || r.VNI == f.VNI) &&
		(len(f.MAC) == 0 || r.MAC.String() == f.MAC.String()) &&
		(!f.Local || r.Local) && (!f.Remote || !r.Local)
}

// Routes lists the EVPN routes of the speaker's RIB that match f: those
// it advertises and every path its neighbors sent (GoBGP's Loc-RIB keeps
// each neighbor's path, best or not), sorted by type, VNI, MAC, IP, VTEP
// and source. It reads GoBGP's RIB; the caller should not call it on the
// data path. At most DefaultMaxRoutesPerPeer routes per neighbor exist
// (Config.MaxRoutesPerPeer), so the list is bounded.
func (s *Speaker) Routes(f RouteFilter) ([]Route, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("evpn: list routes: %w", ErrClosed)
	}
	var out []Route
	nbs := make(map[string]bool)
	err := s.bgp.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: evpnFamily},
		func(d *api.Destination) {
			for _, p := range d.GetPaths() {
				if p.GetIsWithdraw() {
					continue
				}
				if _, err := netip.ParseAddr(p.GetNeighborIp()); err == nil {
					nbs[p.GetNeighborIp()] = true
				}
				r, ok := s.describePath(p)
				if ok && f.match(&r) {
					out = append(out, r)
				}
			}
		})
	// GoBGP converted the paths reading their neighbors' PeerInfo without
	// a lock, as its watcher does: order that before the next rewrite.
	s.barrier(nbs)
	if err != nil {
		return nil, fmt.Errorf("evpn: list routes: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return routeLess(&out[i], &out[j]) })
	return out, nil
}

func routeLess(a, b *Route) bool {
	if a.Type != b.Type {
		return a.Type < b.Type
	}
	if a.VNI != b.VNI {
		return a.VNI < b.VNI
	}
	if c := bytes.Compare(a.MAC, b.MAC); c != 0 {
		return c < 0
	}
	if a.IP != b.IP {
		return a.IP.Less(b.IP)
	}
	if a.VTEP != b.VTEP {
		return a.VTEP.Less(b.VTEP)
	}
	if a.Local != b.Local {
		return a.Local
	}
	if a.Neighbor != b.Neighbor {
		return a.Neighbor.Less(b.Neighbor)
	}
	return a.RD < b.RD
}

// describePath turns a path of GoBGP's RIB into a Route: what decodePath
// reads (as the dispatcher does), plus the RD and route targets. ok is
// false for route types the speaker does not use.
func (s *Speaker) describePath(p *api.Path) (Route, bool) {
	r, err := decodePath(p)
	if errors.Is(err, errIgnored) {
		return Route{}, false
	}
	out := Route{Type: int(r.kind), VNI: r.vni, IP: r.ip, VTEP: r.vtep, Seq: r.seq, Local: r.local, Best: p.GetBest()}
	if r.kind == kindMAC {
		out.MAC = net.HardwareAddr(r.mac[:])
	}
	if !r.local {
		out.Neighbor, _ = s.rel.realAddr(p.GetNeighborIp())
	}
	if nlri, e := p.GetNlri().UnmarshalNew(); e == nil {
		switch n := nlri.(type) {
		case *api.EVPNMACIPAdvertisementRoute:
			out.RD = rdString(n.GetRd())
		case *api.EVPNInclusiveMulticastEthernetTagRoute:
			out.RD = rdString(n.GetRd())
		}
	}
	for _, a := range p.GetPattrs() {
		if m, e := a.UnmarshalNew(); e == nil {
			if ec, ok := m.(*api.ExtendedCommunitiesAttribute); ok {
				out.RouteTargets = routeTargets(ec.GetCommunities())
			}
		}
	}
	switch {
	case err != nil:
		out.Reason = err.Error()
	case r.local:
	case r.vtep == s.cfg.VTEP:
		out.Reason = "points at our own VTEP"
	case !out.Best:
		out.Reason = "not the best path"
	default:
		out.Accepted = true
	}
	return out, true
}

// routeTargets prints the route targets among comms.
func routeTargets(comms []*anypb.Any) []string {
	var out []string
	for _, c := range comms {
		m, err := c.UnmarshalNew()
		if err != nil {
			continue
		}
		switch v := m.(type) {
		case *api.TwoOctetAsSpecificExtended:
			if v.GetSubType() == subTypeRouteTarget {
				out = append(out, fmt.Sprintf("%d:%d", v.GetAsn(), v.GetLocalAdmin()))
			}
		case *api.FourOctetAsSpecificExtended:
			if v.GetSubType() == subTypeRouteTarget {
				out = append(out, fmt.Sprintf("%d:%d", v.GetAsn(), v.GetLocalAdmin()))
			}
		case *api.IPv4AddressSpecificExtended:
			if v.GetSubType() == subTypeRouteTarget {
				out = append(out, fmt.Sprintf("%s:%d", v.GetAddress(), v.GetLocalAdmin()))
			}
		}
	}
	return out
}

// Counts are the speaker's routes by kind, cheap enough for every
// metrics scrape.
type Counts struct {
	// LocalMACs and LocalVNIs are the type-2 and type-3 routes the
	// speaker advertises (a MAC that moved away is not advertised).
	LocalMACs, LocalVNIs int
	// RemoteMACs and RemoteVTEPs are the best received type-2 and type-3
	// routes the speaker uses.
	RemoteMACs, RemoteVTEPs int
}

// Counts counts the speaker's routes.
func (s *Speaker) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := Counts{LocalVNIs: len(s.vnis), RemoteMACs: len(s.rib.macOf), RemoteVTEPs: len(s.rib.imets)}
	for _, routes := range s.local {
		for _, lm := range routes {
			if !lm.moved {
				c.LocalMACs++
			}
		}
	}
	return c
}
