package evpn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
)

// Handler receives what the speaker learns from its neighbors. Its methods
// are called from one goroutine, in the order the routes changed, never
// for routes this speaker originated, and never after Close returns. They
// may call the Speaker's methods, except Close.
type Handler interface {
	// RemoteVTEP reports a remote VTEP taking part in vni (from type-3
	// routes, RFC 8365 §5.1.3): BUM traffic of the VNI is replicated to
	// it. withdrawn: the VTEP left the VNI. Several routes for one
	// (vni, vtep) are reported once.
	RemoteVTEP(vni uint32, vtep netip.Addr, withdrawn bool)
	// RemoteMAC reports a MAC (with ip, when the route carries one)
	// reachable through the remote vtep in vni (from type-2 routes, RFC
	// 8365 §5.1.3), with its MAC mobility sequence number (0: none).
	// withdrawn: the MAC/IP is no longer there. For each (vni, mac) only
	// the routes of the winning VTEP are reported (RFC 7432 §15: the
	// higher sequence number wins, then the lower VTEP address), and
	// none while this speaker's own advertisement of the MAC wins. A MAC
	// moving from one VTEP to another is reported as withdrawn from the
	// old one, then added at the new one.
	RemoteMAC(vni uint32, mac [6]byte, ip netip.Addr, vtep netip.Addr, seq uint32, withdrawn bool)
}

// Errors returned by the Speaker's methods (wrapped, test with errors.Is).
var (
	// ErrClosed: the speaker was closed.
	ErrClosed = errors.New("evpn: speaker closed")
	// ErrUnknownVNI: a MAC was advertised in a VNI not added with AddVNI.
	ErrUnknownVNI = errors.New("evpn: VNI not added")
)

// Speaker is a BGP EVPN speaker: an embedded GoBGP server, the routes it
// originates for the local VTEP, and a watcher that turns the best paths
// learned from its neighbors into Handler calls. Its methods are safe for
// concurrent use.
type Speaker struct {
	cfg  Config
	log  hclog.Logger
	bgp  *server.BgpServer
	rel  *relay
	h    Handler
	stop context.CancelFunc // ends the watcher and the dispatcher
	done chan struct{}      // closed when the dispatcher has returned
	q    queue

	// mu guards the route state below. It is held across GoBGP's
	// AddPath/DeletePath so that the RIB and the state agree; GoBGP's
	// goroutines never wait for it (the watcher callback only queues), and
	// Handler calls are made without it.
	mu     sync.Mutex
	closed bool
	vnis   map[uint32]*vniState
	rdUsed map[uint16]bool
	local  map[macKey]map[netip.Addr]*localMAC
	rib    ribState // remote routes and what the Handler was told

	cutMu sync.Mutex
	cuts  map[string]uint64 // neighbor address -> route-limit resets (the relay's cuts)
}

// vniState is a VNI added with AddVNI.
type vniState struct {
	rd   uint16    // the route distinguisher's assigned number
	imet *api.Path // our type-3 route
}

// localMAC is one of our type-2 routes.
type localMAC struct {
	seq uint32
	// moved: a remote VTEP advertised the MAC with a higher sequence
	// number, so the route was withdrawn (RFC 7432 §15) until the caller
	// advertises it again.
	moved bool
}

// macKey names a MAC within a VNI.
type macKey struct {
	vni uint32
	mac [6]byte
}

// Start starts a speaker: it validates cfg, starts GoBGP, listens (unless
// ListenPort is -1), adds the neighbors and starts watching best paths. ctx
// bounds the start-up only; the speaker runs until Close. h must not be
// nil.
func Start(ctx context.Context, cfg Config, h Handler) (*Speaker, error) {
	if h == nil {
		return nil, errors.New("evpn: nil Handler")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Speaker{
		cfg:    cfg,
		log:    cfg.Logger.Named("evpn"),
		h:      h,
		done:   make(chan struct{}),
		vnis:   make(map[uint32]*vniState),
		rdUsed: make(map[uint16]bool),
		local:  make(map[macKey]map[netip.Addr]*localMAC),
		rib:    newRIBState(),
		cuts:   make(map[string]uint64),
	}
	s.q.init()
	s.q.barrier = s.barrier
	rel, err := newRelay(&s.cfg, s.log.Named("relay"))
	if err != nil {
		return nil, err
	}
	s.rel = rel
	rel.onLimit = s.countCut
	gl := &gobgpLogger{l: cfg.Logger.Named("gobgp"), rel: rel}
	s.bgp = server.NewBgpServer(server.LoggerOption(gl))
	go s.bgp.Serve()

	if err := s.startBGP(ctx); err != nil {
		s.bgp.Stop()
		rel.close()
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	err = s.bgp.WatchEvent(wctx, &api.WatchEventRequest{
		Peer: &api.WatchEventRequest_Peer{},
		Table: &api.WatchEventRequest_Table{Filters: []*api.WatchEventRequest_Table_Filter{
			{Type: api.WatchEventRequest_Table_Filter_BEST, Init: true},
		}},
	}, s.q.push)
	if err != nil {
		cancel()
		s.bgp.Stop()
		rel.close()
		return nil, fmt.Errorf("evpn: watch GoBGP best paths: %w", err)
	}
	go s.dispatch(wctx)
	for _, p := range rel.peers {
		if err := s.addNeighbor(ctx, p); err != nil {
			s.Close()
			return nil, err
		}
	}
	s.log.Info("started", "asn", cfg.ASN, "router_id", cfg.RouterID, "vtep", cfg.VTEP,
		"listen_port", cfg.ListenPort, "neighbors", len(cfg.Neighbors))
	return s, nil
}

// startBGP configures GoBGP's global settings, without a listener (the
// relay listens), and the export policy.
func (s *Speaker) startBGP(ctx context.Context) error {
	g := &api.Global{
		Asn:        s.cfg.ASN,
		RouterId:   s.cfg.RouterID.String(),
		ListenPort: -1,
	}
	if err := s.bgp.StartBgp(ctx, &api.StartBgpRequest{Global: g}); err != nil {
		return fmt.Errorf("evpn: start GoBGP (AS %d, router ID %s): %w", s.cfg.ASN, s.cfg.RouterID, err)
	}
	return s.exportOnlyLocal(ctx)
}

// exportOnlyLocal makes the speaker a leaf: it advertises only its own
// routes, never what it learned (GoBGP would pass routes between eBGP
// neighbors, rewriting their next hop, which for EVPN must stay the
// originating VTEP).
func (s *Speaker) exportOnlyLocal(ctx context.Context) error {
	const name = "evpn-export-only-local"
	pol := &api.Policy{Name: name}
	for _, rt := range []api.Conditions_RouteType{api.Conditions_ROUTE_TYPE_INTERNAL, api.Conditions_ROUTE_TYPE_EXTERNAL} {
		pol.Statements = append(pol.Statements, &api.Statement{
			Name:       fmt.Sprintf("%s-%s", name, rt),
			Conditions: &api.Conditions{RouteType: rt},
			Actions:    &api.Actions{RouteAction: api.RouteAction_REJECT},
		})
	}
	if err := s.bgp.AddPolicy(ctx, &api.AddPolicyRequest{Policy: pol, ReferExistingStatements: false}); err != nil {
		return fmt.Errorf("evpn: add export policy: %w", err)
	}
	err := s.bgp.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name:          "global",
		Direction:     api.PolicyDirection_EXPORT,
		Policies:      []*api.Policy{{Name: name}},
		DefaultAction: api.RouteAction_ACCEPT,
	}})
	if err != nil {
		return fmt.Errorf("evpn: assign export policy: %w", err)
	}
	return nil
}

// addNeighbor configures one neighbor in GoBGP, with only the EVPN family,
// under its relay alias.
func (s *Speaker) addNeighbor(ctx context.Context, rp *relayPeer) error {
	n := rp.n
	asn := n.ASN
	if asn == 0 {
		asn = s.cfg.ASN
	}
	p := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: rp.alias.String(), PeerAsn: asn,
			Description: "evpn neighbor " + n.Addr.String(), AuthPassword: s.rel.key},
		Transport: &api.Transport{RemotePort: uint32(rp.aliasPort()), LocalAddress: s.rel.inner.String()},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:          uint64(s.cfg.HoldTime / time.Second),
			KeepaliveInterval: uint64(s.cfg.HoldTime / time.Second / 3),
			// GoBGP dials the relay's alias, cheaply, every second; the
			// relay paces its own attempts by Config.ConnectRetry.
			ConnectRetry: 1,
		}},
		// The route limit is the relay's (forwardChecked), not GoBGP's.
		AfiSafis: []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: evpnFamily, Enabled: true}}},
	}
	if err := s.bgp.AddPeer(ctx, &api.AddPeerRequest{Peer: p}); err != nil {
		return fmt.Errorf("evpn: add neighbor %s AS %d: %w", n.Addr, asn, err)
	}
	return nil
}

// Close withdraws the speaker's routes (its sessions end with a Cease
// NOTIFICATION, so the neighbors drop everything it advertised), stops
// GoBGP and the Handler calls. It must not be called from the Handler.
// GoBGP v3 cannot stop its main loop, so one idle goroutine stays behind.
func (s *Speaker) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	err := s.bgp.StopBgp(context.Background(), &api.StopBgpRequest{})
	s.bgp.Stop()
	s.rel.close()
	if s.stop != nil {
		s.stop()
		<-s.done
	}
	s.log.Info("closed")
	if err != nil {
		return fmt.Errorf("evpn: stop GoBGP: %w", err)
	}
	return nil
}

// AddVNI advertises the VNI's Inclusive Multicast Ethernet Tag route (type
// 3) so that neighbors send the VNI's BUM traffic to our VTEP (ingress
// replication). The VNI gets a route distinguisher RouterID:n of its own.
// Adding a VNI twice does nothing.
func (s *Speaker) AddVNI(vni uint32) error {
	if vni == 0 || vni > MaxVNI {
		return fmt.Errorf("evpn: add VNI %d: out of range 1..%d", vni, MaxVNI)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("evpn: add VNI %d: %w", vni, ErrClosed)
	}
	if s.vnis[vni] != nil {
		return nil
	}
	rd, ok := s.allocRD()
	if !ok {
		return fmt.Errorf("evpn: add VNI %d: all 65535 route distinguishers in use", vni)
	}
	v := &vniState{rd: rd, imet: s.imetPath(vni, rd)}
	if _, err := s.bgp.AddPath(context.Background(), &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: v.imet}); err != nil {
		delete(s.rdUsed, rd)
		return fmt.Errorf("evpn: add VNI %d: advertise type-3 route: %w", vni, err)
	}
	s.vnis[vni] = v
	s.log.Debug("VNI added", "vni", vni, "rd", fmt.Sprintf("%s:%d", s.cfg.RouterID, rd))
	return nil
}

// allocRD returns the lowest free route distinguisher number (from 1, as
// FRR's auto-derived RDs).
func (s *Speaker) allocRD() (uint16, bool) {
	for i := 1; i <= 0xffff; i++ {
		if !s.rdUsed[uint16(i)] {
			s.rdUsed[uint16(i)] = true
			return uint16(i), true
		}
	}
	return 0, false
}

// DelVNI withdraws the VNI's type-3 route and every MAC advertised in it.
// Deleting a VNI that was not added does nothing.
func (s *Speaker) DelVNI(vni uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("evpn: delete VNI %d: %w", vni, ErrClosed)
	}
	v := s.vnis[vni]
	if v == nil {
		return nil
	}
	var errs []error
	for k, routes := range s.local {
		if k.vni != vni {
			continue
		}
		for ip, lm := range routes {
			if err := s.deleteLocal(k, ip, lm); err != nil {
				errs = append(errs, fmt.Errorf("withdraw %s %s: %w", net.HardwareAddr(k.mac[:]), ip, err))
			}
		}
		delete(s.local, k)
	}
	if err := s.bgp.DeletePath(context.Background(), &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: evpnFamily, Path: v.imet}); err != nil {
		errs = append(errs, fmt.Errorf("withdraw type-3 route: %w", err))
	}
	delete(s.vnis, vni)
	delete(s.rdUsed, v.rd)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("evpn: delete VNI %d: %w", vni, err)
	}
	s.log.Debug("VNI deleted", "vni", vni)
	return nil
}

// deleteLocal withdraws one of our type-2 routes from GoBGP, unless a
// move already did. The caller holds s.mu; the route's VNI is there.
// The withdrawal carries no MAC mobility community: GoBGP v3 refuses to
// delete a path whose sequence number is below a remote one for the
// same MAC.
func (s *Speaker) deleteLocal(k macKey, ip netip.Addr, lm *localMAC) error {
	v := s.vnis[k.vni]
	if lm.moved || v == nil {
		return nil
	}
	del := s.macPath(k.vni, v.rd, k.mac, ip, 0)
	return s.bgp.DeletePath(context.Background(), &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: evpnFamily, Path: del})
}

// AdvertiseMAC advertises a MAC/IP Advertisement route (type 2) for mac,
// and ip when it is valid, behind our VTEP in vni, which must have been
// added. seq is the MAC mobility sequence number (RFC 7432 §7.7). 0
// means: none for a new MAC; the MAC's current number if we advertise it
// already (numbers never go down); the remote's highest plus one if a
// remote VTEP holds the MAC with an equal or higher number (RFC 7432
// §15.1: the MAC moved here). A non-zero seq must exceed the remote's
// (GoBGP refuses it otherwise). Advertising the same MAC/IP again replaces
// the route. If a remote VTEP later wins the MAC (a higher sequence
// number, or the same and a lower VTEP address), the speaker withdraws
// the route itself (RFC 7432 §15) and the Handler hears of the MAC at the
// remote VTEP; advertise it again when the MAC is back (seq 0 picks the
// next number).
func (s *Speaker) AdvertiseMAC(vni uint32, mac [6]byte, ip netip.Addr, seq uint32) error {
	hw := net.HardwareAddr(mac[:])
	if mac[0]&1 != 0 || mac == [6]byte{} {
		return fmt.Errorf("evpn: advertise %s in VNI %d: not a unicast MAC", hw, vni)
	}
	ip = ip.Unmap()
	if ip.IsValid() && (ip.IsUnspecified() || ip.IsMulticast() || ip.Zone() != "") {
		return fmt.Errorf("evpn: advertise %s in VNI %d: IP %s is not a unicast address without zone", hw, vni, ip)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("evpn: advertise %s in VNI %d: %w", hw, vni, ErrClosed)
	}
	v := s.vnis[vni]
	if v == nil {
		return fmt.Errorf("evpn: advertise %s in VNI %d: %w", hw, vni, ErrUnknownVNI)
	}
	k := macKey{vni, mac}
	if seq == 0 {
		// Sequence numbers never go down; a MAC that a remote VTEP holds
		// moved here (RFC 7432 §15.1).
		for _, lm := range s.local[k] {
			if !lm.moved && lm.seq > seq {
				seq = lm.seq
			}
		}
		if rs, ok := s.rib.maxRemoteSeq(k); ok && rs >= seq {
			seq = rs + 1
		}
	}
	if lm := s.local[k][ip]; lm != nil && !lm.moved && lm.seq == seq {
		return nil
	}
	p := s.macPath(vni, v.rd, mac, ip, seq)
	if _, err := s.bgp.AddPath(context.Background(), &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: p}); err != nil {
		return fmt.Errorf("evpn: advertise %s %s seq %d in VNI %d: %w", hw, ip, seq, vni, err)
	}
	if s.local[k] == nil {
		s.local[k] = make(map[netip.Addr]*localMAC)
	}
	s.local[k][ip] = &localMAC{seq: seq}
	return nil
}

// WithdrawMAC withdraws the type-2 route AdvertiseMAC made for (vni, mac,
// ip). Withdrawing a route that is not advertised does nothing.
func (s *Speaker) WithdrawMAC(vni uint32, mac [6]byte, ip netip.Addr) error {
	ip = ip.Unmap()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("evpn: withdraw %s in VNI %d: %w", net.HardwareAddr(mac[:]), vni, ErrClosed)
	}
	k := macKey{vni, mac}
	lm := s.local[k][ip]
	if lm == nil {
		return nil
	}
	if err := s.deleteLocal(k, ip, lm); err != nil {
		return fmt.Errorf("evpn: withdraw %s %s in VNI %d: %w", net.HardwareAddr(mac[:]), ip, vni, err)
	}
	delete(s.local[k], ip)
	if len(s.local[k]) == 0 {
		delete(s.local, k)
	}
	return nil
}
