package evpn

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"

	api "github.com/osrg/gobgp/v3/api"
)

// queue carries work from GoBGP's watcher callback and from the API calls
// to the dispatcher goroutine. push never blocks, so GoBGP's goroutines
// never wait for the Handler; the queue is as long as the backlog of best
// path changes, which the route limits bound.
type queue struct {
	mu    sync.Mutex
	items []qitem
	wake  chan struct{}
	// barrier is called, in GoBGP's watcher goroutine, with the neighbors
	// whose paths GoBGP just converted for an event (see Speaker.barrier).
	barrier func(neighbors map[string]bool)
}

// qitem is one unit of dispatcher work.
type qitem struct {
	paths []*api.Path // best-path changes
	peer  *api.Peer   // a session state change
}

func (q *queue) init() { q.wake = make(chan struct{}, 1) }

func (q *queue) add(it qitem) {
	q.mu.Lock()
	q.items = append(q.items, it)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// push is GoBGP's WatchEvent callback.
func (q *queue) push(ev *api.WatchEventResponse) {
	switch e := ev.GetEvent().(type) {
	case *api.WatchEventResponse_Table:
		paths := e.Table.GetPaths()
		if len(paths) == 0 {
			return
		}
		q.add(qitem{paths: paths})
		if q.barrier != nil {
			nbs := make(map[string]bool)
			for _, p := range paths {
				if _, err := netip.ParseAddr(p.GetNeighborIp()); err == nil {
					nbs[p.GetNeighborIp()] = true
				}
			}
			q.barrier(nbs)
		}
	case *api.WatchEventResponse_Peer:
		if e.Peer.GetType() == api.WatchEventResponse_PeerEvent_STATE {
			q.add(qitem{peer: e.Peer.GetPeer()})
		}
	}
}

// wait returns the queued items, waiting for some; false once ctx is done.
func (q *queue) wait(ctx context.Context) ([]qitem, bool) {
	for {
		q.mu.Lock()
		items := q.items
		q.items = nil
		q.mu.Unlock()
		if len(items) > 0 {
			return items, true
		}
		select {
		case <-ctx.Done():
			return nil, false
		case <-q.wake:
		}
	}
}

// event is one Handler call.
type event struct {
	imet      bool // RemoteVTEP, else RemoteMAC
	vni       uint32
	mac       [6]byte
	ip        netip.Addr
	vtep      netip.Addr
	seq       uint32
	withdrawn bool
}

func (e event) deliver(h Handler) {
	if e.imet {
		h.RemoteVTEP(e.vni, e.vtep, e.withdrawn)
	} else {
		h.RemoteMAC(e.vni, e.mac, e.ip, e.vtep, e.seq, e.withdrawn)
	}
}

// dispatch runs the Handler: it applies queued best-path changes to the
// remote route state, resolves MAC mobility and calls the Handler, in
// order, from this one goroutine.
func (s *Speaker) dispatch(ctx context.Context) {
	defer close(s.done)
	up := make(map[netip.Addr]bool) // neighbors established
	for {
		items, ok := s.q.wait(ctx)
		if !ok {
			return
		}
		for _, it := range items {
			if it.peer != nil {
				// Info for the session coming up or going down, Debug
				// for the steps between (a neighbor that is down
				// cycles through them every few seconds).
				st := it.peer.GetState()
				addr, _ := s.rel.realAddr(st.GetNeighborAddress())
				state := sessionState(st.GetSessionState())
				log := s.log.Debug
				if (state == "established") != up[addr] {
					log = s.log.Info
					up[addr] = state == "established"
				}
				log("neighbor session", "neighbor", addr, "asn", st.GetPeerAsn(), "state", state)
				continue
			}
			for _, e := range s.apply(it) {
				e.deliver(s.h)
			}
		}
	}
}

// apply updates the state from one item and returns the Handler calls it
// causes. The paths are decoded before s.mu is taken: AdvertiseMAC and
// WithdrawMAC hold it across their GoBGP calls, and a burst of local
// MACs would otherwise wait for the decoding of its own best-path
// events.
func (s *Speaker) apply(it qitem) []event {
	routes := make([]route, 0, len(it.paths))
	for _, p := range it.paths {
		r, err := decodePath(p)
		if errors.Is(err, errIgnored) {
			continue
		}
		if err != nil {
			s.log.Warn("ignoring a malformed route", "neighbor", s.neighborName(p), "error", err)
			// Forget whatever the key held: the new path replaces it.
			if r.key == "" {
				continue
			}
			r.withdraw = true
		}
		if !r.withdraw && !r.local && r.vtep == s.cfg.VTEP {
			s.log.Debug("ignoring a route for our own VTEP", "neighbor", s.neighborName(p), "route", r.key)
			r.ignore = true
		}
		routes = append(routes, r)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var evs []event
	dirty := make(map[macKey]bool)
	for _, r := range routes {
		evs = s.rib.apply(r, dirty, evs)
	}
	for k := range dirty {
		var moved bool
		evs, moved = s.rib.resolve(k, s.rib.localClaim(k, s.cfg.VTEP), evs)
		if moved {
			s.markMoved(k)
		}
	}
	return evs
}

// markMoved withdraws our routes for a MAC that a remote VTEP won (RFC
// 7432 §15: "A PE receiving a MAC/IP Advertisement route for a MAC address
// with ... a higher sequence number than that which it had previously
// advertised withdraws its MAC/IP Advertisement route"). s.mu is held.
func (s *Speaker) markMoved(k macKey) {
	if s.closed {
		return
	}
	for ip, lm := range s.local[k] {
		if lm.moved {
			continue
		}
		if err := s.deleteLocal(k, ip, lm); err != nil {
			s.log.Warn("withdraw a MAC that moved away", "vni", k.vni, "mac", net.HardwareAddr(k.mac[:]).String(), "ip", ip, "error", err)
			continue
		}
		lm.moved = true
		s.log.Info("MAC moved to a remote VTEP: route withdrawn", "vni", k.vni, "mac", net.HardwareAddr(k.mac[:]).String(), "ip", ip, "seq", lm.seq)
	}
}

// neighborName is the neighbor a path came from, for logs.
func (s *Speaker) neighborName(p *api.Path) string {
	if a, ok := s.rel.realAddr(p.GetNeighborIp()); ok {
		return a.String()
	}
	return p.GetNeighborIp()
}

// barrier orders GoBGP's conversion of a neighbor's paths (WatchEvent
// reads the neighbor's PeerInfo without a lock) before GoBGP's next write
// of that PeerInfo (the FSM rewrites it in place, under its lock, when the
// neighbor reconnects): a ListPeer, from the same goroutine, takes and
// releases the FSM locks in GoBGP's server goroutine. Without it, the race
// detector sees a race in GoBGP v3 whenever a neighbor with routes
// reconnects (osrg/gobgp#2705, fixed in v4 only). In time the two are
// seconds apart (the idle hold), so this only makes the ordering explicit.
//
// The ListPeer asks for an address no neighbor has: GoBGP takes and
// releases every neighbor's FSM lock (to read its interface name) before
// it filters by address, and then converts none. Listing the neighbor
// itself would count its whole Adj-RIB-In on every event, which made a
// burst of n routes cost O(n²) (bench evpn: 40 % of the receiver's CPU at
// 10,000 routes).
func (s *Speaker) barrier(neighbors map[string]bool) {
	if len(neighbors) == 0 {
		return
	}
	s.bgp.ListPeer(context.Background(), &api.ListPeerRequest{Address: barrierAddress}, func(*api.Peer) {})
}

// barrierAddress is the address barrier lists: no neighbor's.
const barrierAddress = "barrier.invalid"
