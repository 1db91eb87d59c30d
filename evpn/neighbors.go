package evpn

import (
	"context"
	"net/netip"
	"sort"
	"strings"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// NeighborState is a neighbor's session as Neighbors reports it.
type NeighborState struct {
	// Addr is the neighbor's address, as configured.
	Addr netip.Addr
	// ASN is its AS number.
	ASN uint32
	// State is the BGP FSM state (RFC 4271 §8.2.2): "idle", "connect",
	// "active" (also while the speaker waits to reach the neighbor),
	// "opensent", "openconfirm" or "established".
	State string
	// Uptime is how long the session has been established (0 if not).
	Uptime time.Duration
	// Received and Accepted count the EVPN routes in the neighbor's
	// Adj-RIB-In, all and accepted by policy.
	Received, Accepted uint64
	// LimitResets counts the times the session was reset because the
	// neighbor sent more than Config.MaxRoutesPerPeer routes.
	LimitResets uint64
	// LimitHeld: the session is held down after such a reset, until
	// Config.RouteLimitRestart has passed.
	LimitHeld bool
	// Flops counts the session's transitions out of established.
	Flops uint32
	// BadMessages counts the malformed messages the neighbor sent; each
	// ended its session (RFC 4271 §6: NOTIFICATION, then close).
	BadMessages uint64
}

// Neighbors reports the configured neighbors' sessions, sorted by address.
func (s *Speaker) Neighbors() []NeighborState {
	var out []NeighborState
	err := s.bgp.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
		st := p.GetState()
		addr, _ := s.rel.realAddr(st.GetNeighborAddress())
		ns := NeighborState{
			Addr:  addr,
			ASN:   st.GetPeerAsn(),
			State: sessionState(st.GetSessionState()),
			Flops: st.GetFlops(),
		}
		if ns.State == "established" {
			if up := p.GetTimers().GetState().GetUptime(); up != nil {
				ns.Uptime = time.Since(up.AsTime())
			}
		}
		for _, af := range p.GetAfiSafis() {
			if f := af.GetState().GetFamily(); f.GetAfi() == evpnFamily.Afi && f.GetSafi() == evpnFamily.Safi {
				ns.Received, ns.Accepted = af.GetState().GetReceived(), af.GetState().GetAccepted()
			}
		}
		s.cutMu.Lock()
		ns.LimitResets = s.cuts[addr.String()]
		s.cutMu.Unlock()
		if rp := s.rel.byIP[addr]; rp != nil {
			ns.BadMessages = rp.rejected.Load()
			if rp.awaiting() && ns.State != "established" {
				ns.State = "active" // GoBGP's connection waits for the neighbor
			}
		}
		if rp := s.rel.byIP[addr]; rp != nil {
			ns.LimitHeld = rp.held()
		}
		out = append(out, ns)
	})
	if err != nil {
		s.log.Warn("list neighbors", "error", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr.Less(out[j].Addr) })
	return out
}

// sessionState names a GoBGP session state as RFC 4271 does, in lower case.
func sessionState(st api.PeerState_SessionState) string {
	if st == api.PeerState_UNKNOWN {
		return "idle"
	}
	return strings.ToLower(st.String())
}

// countCut counts a route-limit cut (the relay's, which also holds the
// neighbor down).
func (s *Speaker) countCut(p *relayPeer) {
	s.cutMu.Lock()
	s.cuts[p.n.Addr.String()]++
	s.cutMu.Unlock()
	s.log.Warn("neighbor sent too many routes: session reset", "neighbor", p.n.Addr,
		"max_routes", s.cfg.MaxRoutesPerPeer, "held_down", s.cfg.RouteLimitRestart)
}
