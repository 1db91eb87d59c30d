package evpn

import (
	"context"
	"net/netip"
	"sort"
	"strings"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
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
		ns.LimitHeld = st.GetAdminState() == api.PeerState_PFX_CT
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

// gobgpWarning is the log adapter's hook, called from GoBGP goroutines
// that hold GoBGP locks: it must not call GoBGP. GoBGP names neighbors
// by their relay aliases.
func (s *Speaker) gobgpWarning(msg string, f gobgplog.Fields) {
	alias, _ := f["Key"].(string)
	if alias == "" {
		return
	}
	// The early warning at ShutdownThresholdPct carries "Pct"; the
	// speaker sets no threshold, but tell the two apart anyway.
	if _, threshold := f["Pct"]; msg == msgPrefixLimit && !threshold {
		s.countCut(alias)
	}
}

// countCut counts a route-limit cut and arms the timer that lets the
// neighbor back in. GoBGP v3 holds a neighbor it cut for the prefix limit
// down (admin state PFX_CT) until EnablePeer.
func (s *Speaker) countCut(alias string) {
	neighbor, _ := s.rel.realAddr(alias)
	s.cutMu.Lock()
	defer s.cutMu.Unlock()
	s.cuts[neighbor.String()]++
	s.log.Warn("neighbor sent too many routes: session reset", "neighbor", neighbor,
		"max_routes", s.cfg.MaxRoutesPerPeer, "held_down", s.cfg.RouteLimitRestart)
	if s.cutClosed {
		return
	}
	if t := s.held[alias]; t != nil {
		t.Stop()
	}
	s.held[alias] = time.AfterFunc(s.cfg.RouteLimitRestart, func() { s.release(alias, neighbor) })
}

// release lets a neighbor cut for the route limit reconnect.
func (s *Speaker) release(alias string, neighbor netip.Addr) {
	s.cutMu.Lock()
	closed := s.cutClosed
	delete(s.held, alias)
	s.cutMu.Unlock()
	if closed {
		return
	}
	if err := s.bgp.EnablePeer(context.Background(), &api.EnablePeerRequest{Address: alias}); err != nil {
		s.log.Warn("re-enable a neighbor after its route-limit hold", "neighbor", neighbor, "error", err)
		return
	}
	s.log.Info("neighbor released after its route-limit hold", "neighbor", neighbor)
}
