package evpn

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"
)

// DefaultMaxRoutesPerPeer is the EVPN route limit per neighbor when
// Config.MaxRoutesPerPeer is 0.
const DefaultMaxRoutesPerPeer = 100000

// MaxRoutesPerPeerLimit is the largest Config.MaxRoutesPerPeer (GoBGP's
// prefix limit is a uint32; 2^31-1 keeps it an int everywhere).
const MaxRoutesPerPeerLimit = 1<<31 - 1

// DefaultRouteLimitRestart is how long a neighbor cut for sending too many
// routes is held down when Config.RouteLimitRestart is 0.
const DefaultRouteLimitRestart = time.Minute

// defaultConnectRetry is ConnectRetry's default: FRR's for data centres
// ("frr defaults datacenter"), not RFC 4271 §10's 120 s, so that a fabric
// whose hosts start one after the other converges in seconds, not minutes.
const defaultConnectRetry = 10 * time.Second

// MaxVNI is the largest VXLAN network identifier (24 bits, RFC 7348 §5).
const MaxVNI = 1<<24 - 1

// Neighbor is a BGP peer the speaker connects to (and accepts a connection
// from). Only the l2vpn/evpn address family is negotiated with it.
type Neighbor struct {
	// Addr is the neighbor's address. Connections from any other address
	// are refused.
	Addr netip.Addr
	// ASN is the neighbor's AS number; 0 means Config.ASN (iBGP).
	ASN uint32
	// Port is the neighbor's BGP port; 0 means 179.
	Port uint16
}

// Config configures a Speaker. ASN, RouterID and VTEP are required.
type Config struct {
	// ASN is the local AS number (4-octet ASNs are fine).
	ASN uint32
	// RouterID is the BGP identifier, an IPv4 address. It is also the
	// administrator field of the speaker's route distinguishers (type 1,
	// RFC 4364 §4.2), so it should be unique among the speakers.
	RouterID netip.Addr
	// VTEP is the local VXLAN tunnel end point: the next hop of every route
	// the speaker originates and the PMSI tunnel endpoint of its type-3
	// routes (RFC 8365 §5.1.3).
	VTEP netip.Addr
	// LocalAddr, when valid, is the only address the speaker listens on
	// and the source address of the sessions it dials. Invalid: listen on
	// all addresses and let the kernel choose the source.
	LocalAddr netip.Addr
	// ListenPort is the TCP port to accept sessions on: 0 means 179, -1
	// means do not listen (only dial).
	ListenPort int32
	// Neighbors are the configured peers.
	Neighbors []Neighbor
	// MaxRoutesPerPeer caps the EVPN routes one neighbor may send; 0 means
	// DefaultMaxRoutesPerPeer. A neighbor that sends more gets a Cease
	// NOTIFICATION ("maximum number of prefixes reached", RFC 4486 §4),
	// its session is reset and its routes dropped, and the cut is counted
	// in NeighborState.LimitResets. The session is then held down for
	// RouteLimitRestart before it may come back.
	MaxRoutesPerPeer int
	// RouteLimitRestart is how long a neighbor cut by MaxRoutesPerPeer is
	// held down (the relay neither accepts nor makes its connections
	// meanwhile); 0 means
	// DefaultRouteLimitRestart. Whole seconds, at least 1 s.
	RouteLimitRestart time.Duration
	// HoldTime is the proposed BGP hold time (RFC 4271 §4.2); 0 means 90 s.
	// The keepalive interval is a third of it. Whole seconds, at least 3 s.
	HoldTime time.Duration
	// ConnectRetry is the least interval between connection attempts to a
	// neighbor that is down; 0 means 10 s (FRR's data-centre default;
	// RFC 4271 §10 suggests 120 s). Whole seconds,
	// at least 1 s.
	ConnectRetry time.Duration
	// Logger receives the speaker's logs and GoBGP's own; nil discards
	// them.
	Logger hclog.Logger
}

// validate checks cfg and fills in the defaults. Every error names the
// offending field.
func (cfg *Config) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if cfg.ASN == 0 {
		bad("ASN: must be set (0 is reserved, RFC 7607)")
	}
	if !cfg.RouterID.IsValid() {
		bad("RouterID: must be set")
	} else if !cfg.RouterID.Is4() || cfg.RouterID.IsUnspecified() {
		bad("RouterID %s: must be a non-zero IPv4 address (a BGP identifier is 4 octets)", cfg.RouterID)
	}
	if !cfg.VTEP.IsValid() {
		bad("VTEP: must be set")
	} else if cfg.VTEP.IsUnspecified() || cfg.VTEP.IsMulticast() || cfg.VTEP.Zone() != "" {
		bad("VTEP %s: must be a unicast address without zone", cfg.VTEP)
	} else {
		cfg.VTEP = cfg.VTEP.Unmap()
	}
	if cfg.LocalAddr.IsValid() && (cfg.LocalAddr.IsUnspecified() || cfg.LocalAddr.IsMulticast()) {
		bad("LocalAddr %s: must be a unicast address (leave it unset to listen on all)", cfg.LocalAddr)
	}
	if cfg.ListenPort < -1 || cfg.ListenPort > 65535 {
		bad("ListenPort %d: must be -1 (no listening), 0 (179) or a port number", cfg.ListenPort)
	}
	if cfg.MaxRoutesPerPeer < 0 || cfg.MaxRoutesPerPeer > MaxRoutesPerPeerLimit {
		bad("MaxRoutesPerPeer %d: want 0..%d (0: %d)", cfg.MaxRoutesPerPeer, MaxRoutesPerPeerLimit, DefaultMaxRoutesPerPeer)
	}
	if cfg.HoldTime != 0 && (cfg.HoldTime < 3*time.Second || cfg.HoldTime%time.Second != 0 || cfg.HoldTime > 65535*time.Second) {
		bad("HoldTime %s: must be 0 (90 s) or whole seconds from 3 s to 65535 s (RFC 4271 §4.2)", cfg.HoldTime)
	}
	if cfg.RouteLimitRestart < 0 || cfg.RouteLimitRestart%time.Second != 0 {
		bad("RouteLimitRestart %s: must be 0 or whole seconds, at least 1 s", cfg.RouteLimitRestart)
	}
	if cfg.ConnectRetry != 0 && (cfg.ConnectRetry < time.Second || cfg.ConnectRetry%time.Second != 0) {
		bad("ConnectRetry %s: must be 0 or whole seconds, at least 1 s", cfg.ConnectRetry)
	}
	if len(cfg.Neighbors) > maxNeighbors {
		bad("Neighbors: %d, at most %d", len(cfg.Neighbors), maxNeighbors)
	}
	cfg.Neighbors = slices.Clone(cfg.Neighbors)
	seen := make(map[netip.Addr]bool)
	for i, n := range cfg.Neighbors {
		a := n.Addr.Unmap()
		switch {
		case !a.IsValid():
			bad("Neighbors[%d].Addr: must be set", i)
		case a.IsUnspecified() || a.IsMulticast():
			bad("Neighbors[%d].Addr %s: must be a unicast address", i, a)
		case a.Zone() != "":
			bad("Neighbors[%d].Addr %s: link-local neighbors (with a zone) are not supported", i, a)
		case seen[a]:
			bad("Neighbors[%d].Addr %s: listed twice", i, a)
		}
		seen[a] = true
		cfg.Neighbors[i].Addr = a
	}
	if cfg.MaxRoutesPerPeer == 0 {
		cfg.MaxRoutesPerPeer = DefaultMaxRoutesPerPeer
	}
	if cfg.RouteLimitRestart == 0 {
		cfg.RouteLimitRestart = DefaultRouteLimitRestart
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if len(errs) > 0 {
		return fmt.Errorf("evpn: bad config: %w", errors.Join(errs...))
	}
	return nil
}
