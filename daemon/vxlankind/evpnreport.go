package vxlankind

import (
	"net"
	"time"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/evpn"
)

// EVPN returns the tunnel's BGP EVPN control plane as the API shows it
// (daemon.EVPNReporter), nil without one.
func (b *backend) EVPN() api.EVPNPort {
	if b.sp == nil {
		return nil
	}
	return evpnView{b.sp}
}

// evpnView is a speaker as api.EVPNPort.
type evpnView struct{ sp *evpn.Speaker }

// bgpNeighbor is a session as the port answer's tunnel shows it.
func bgpNeighbor(n evpn.NeighborState) api.BGPNeighbor {
	bn := api.BGPNeighbor{Address: n.Addr.String(), ASN: n.ASN, State: n.State, RoutesReceived: int(n.Received), RoutesAccepted: int(n.Accepted)}
	if n.Uptime > 0 {
		bn.Uptime = n.Uptime.Round(time.Second).String()
	}
	return bn
}

func (v evpnView) EVPNNeighbors() []api.EVPNNeighbor {
	out := []api.EVPNNeighbor{}
	for _, n := range v.sp.Neighbors() {
		out = append(out, api.EVPNNeighbor{BGPNeighbor: bgpNeighbor(n), Flaps: n.Flops, RouteLimitResets: n.LimitResets,
			RouteLimitHeld: n.LimitHeld, BadMessages: n.BadMessages})
	}
	return out
}

func (v evpnView) EVPNCounts() api.EVPNCounts {
	c := v.sp.Counts()
	return api.EVPNCounts{LocalMACs: c.LocalMACs, LocalVNIs: c.LocalVNIs, RemoteMACs: c.RemoteMACs, RemoteVTEPs: c.RemoteVTEPs}
}

func (v evpnView) EVPNRoutes(f api.EVPNRouteFilter) ([]api.EVPNRoute, error) {
	ef := evpn.RouteFilter{Type: f.Type, VNI: f.VNI}
	if f.HasMAC {
		ef.MAC = net.HardwareAddr(f.MAC[:])
	}
	rs, err := v.sp.Routes(ef)
	if err != nil {
		return nil, err
	}
	out := make([]api.EVPNRoute, 0, len(rs))
	for _, r := range rs {
		ar := api.EVPNRoute{Type: r.Type, RD: r.RD, VNI: r.VNI, VTEP: r.VTEP.String(), Seq: r.Seq, RouteTargets: r.RouteTargets,
			Source: "local", Best: r.Best, Accepted: r.Accepted, Reason: r.Reason}
		if r.MAC != nil {
			ar.MAC = r.MAC.String()
		}
		if r.IP.IsValid() {
			ar.IP = r.IP.String()
		}
		if !r.Local {
			ar.Source = r.Neighbor.String()
		}
		if !r.VTEP.IsValid() {
			ar.VTEP = ""
		}
		out = append(out, ar)
	}
	return out, nil
}
