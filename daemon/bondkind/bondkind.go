// Package bondkind is the daemon's bond port kind: several AF_PACKET
// uplinks that act as one switch port (package bond), in active-backup,
// balance-slb or LACP mode.
package bondkind

import (
	"context"
	"fmt"
	"time"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/bond"
	"github.com/hvnet/hvnet/daemon"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/uplink"
)

// Kind is the kind's name.
const Kind = "bond"

func init() { daemon.Register(kind{}) }

type kind struct{}

func (kind) Name() string { return Kind }
func (kind) Summary() string {
	return "AF_PACKET uplinks bonded into one port: active-backup, balance-slb or LACP"
}

func (kind) Options() []daemon.Option {
	return []daemon.Option{
		{Key: "if", Value: "IFACE", Help: "a member interface (repeatable)", Required: true, Repeat: true},
		{Key: "mode", Value: "active-backup|balance-slb|lacp", Help: "how the members are used (default active-backup)"},
		{Key: "primary", Value: "IFACE", Help: "active-backup's preferred member while its link is up"},
		{Key: "updelay", Value: "DURATION", Help: "a member's carrier must stay up this long before it is used (default 0)"},
		{Key: "downdelay", Value: "DURATION", Help: "... and down this long before it stops being used (default 0)"},
		{Key: "lacp", Value: "active|passive", Help: "LACP activity (mode=lacp; default active)"},
		{Key: "lacp-rate", Value: "fast|slow", Help: "the LACPDU rate asked of the partner: every 1 s or 30 s (default slow)"},
		{Key: "lacp-fallback", Value: "active-backup|none", Help: "with no LACP partner: one member carries traffic, or none (default active-backup)"},
		{Key: "hash", Value: "l2|l23|l34", Help: "LACP's transmit hash (default l34)"},
		{Key: "rebalance", Value: "DURATION", Help: "balance-slb's rebalancing interval (default 10s)"},
		{Key: "tx", Value: "ring|sendmmsg", Help: "how members send: the TPACKET ring (default) or sendmmsg"},
	}
}

type spec struct {
	cfg bond.Config
}

func duration(v daemon.Values, key string) (time.Duration, error) {
	s := v.Get(key)
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d > time.Hour {
		return 0, daemon.Bad(key, s, "is not a duration from 0s to 1h")
	}
	return d, nil
}

// LinkSpeed is a bond's capacity for rate=link: in active-backup one
// member carries traffic, so the slowest member's speed (what is left
// after any failover); in balance-slb and lacp the members' speeds add up.
func (kind) LinkSpeed(v daemon.Values) (int64, error) { return linkSpeed(v, uplink.LinkSpeed) }

func linkSpeed(v daemon.Values, speed func(string) (int64, error)) (int64, error) {
	sum, least := int64(0), int64(0)
	for _, m := range v["if"] {
		bps, err := speed(m)
		if err != nil {
			return 0, err
		}
		sum += bps
		if least == 0 || bps < least {
			least = bps
		}
	}
	if m, err := bond.ParseMode(v.Get("mode")); v.Get("mode") == "" || (err == nil && m == bond.ModeActiveBackup) {
		return least, nil
	}
	return sum, nil
}

func (kind) Parse(v daemon.Values, _ vswitch.PortConfig) (daemon.Spec, error) {
	c := bond.Config{Members: v["if"], Primary: v.Get("primary"), LACPFallback: true, Hash: bond.HashL34}
	seen := map[string]bool{}
	for _, m := range c.Members {
		if seen[m] {
			return nil, daemon.Bad("if", m, "is given twice")
		}
		seen[m] = true
	}
	if len(c.Members) > 16 {
		return nil, daemon.Bad("if", v["if"][16], "is a 17th member: at most 16")
	}
	if c.Primary != "" && !seen[c.Primary] {
		return nil, daemon.Bad("primary", c.Primary, "is not one of the if= members")
	}
	if s := v.Get("mode"); s != "" {
		m, err := bond.ParseMode(s)
		if err != nil {
			return nil, daemon.Bad("mode", s, "is not active-backup, balance-slb or lacp")
		}
		c.Mode = m
	}
	var err error
	if c.UpDelay, err = duration(v, "updelay"); err != nil {
		return nil, err
	}
	if c.DownDelay, err = duration(v, "downdelay"); err != nil {
		return nil, err
	}
	if c.Rebalance, err = duration(v, "rebalance"); err != nil {
		return nil, err
	}
	if c.Rebalance != 0 && c.Rebalance < 100*time.Millisecond {
		return nil, daemon.Bad("rebalance", v.Get("rebalance"), "is shorter than 100ms")
	}
	for _, k := range []string{"lacp", "lacp-rate", "lacp-fallback", "hash"} {
		if v.Get(k) != "" && c.Mode != bond.ModeLACP {
			return nil, daemon.Bad(k, v.Get(k), "needs mode=lacp")
		}
	}
	if v.Get("rebalance") != "" && c.Mode != bond.ModeBalanceSLB {
		return nil, daemon.Bad("rebalance", v.Get("rebalance"), "needs mode=balance-slb")
	}
	if v.Get("primary") != "" && c.Mode != bond.ModeActiveBackup {
		return nil, daemon.Bad("primary", v.Get("primary"), "needs mode=active-backup")
	}
	switch s := v.Get("lacp"); s {
	case "", "active":
	case "passive":
		c.LACPPassive = true
	default:
		return nil, daemon.Bad("lacp", s, "is not active or passive")
	}
	switch s := v.Get("lacp-rate"); s {
	case "", "slow":
	case "fast":
		c.LACPRate = bond.RateFast
	default:
		return nil, daemon.Bad("lacp-rate", s, "is not fast or slow")
	}
	switch s := v.Get("lacp-fallback"); s {
	case "", "active-backup":
	case "none":
		c.LACPFallback = false
	default:
		return nil, daemon.Bad("lacp-fallback", s, "is not active-backup or none")
	}
	if s := v.Get("hash"); s != "" {
		h, err := bond.ParseHash(s)
		if err != nil {
			return nil, daemon.Bad("hash", s, "is not l2, l23 or l34")
		}
		c.Hash = h
	}
	if t := v.Get("tx"); t != "" {
		m, err := uplink.ParseTXMode(t)
		if err != nil {
			return nil, daemon.Bad("tx", t, "is not ring or sendmmsg")
		}
		c.Uplink.TX = m
	}
	return &spec{cfg: c}, nil
}

func (s *spec) Claims() []string {
	var c []string
	for _, m := range s.cfg.Members {
		c = append(c, daemon.ClaimInterface(m))
	}
	return c
}

// Start opens the members and starts the bond.
func (s *spec) Start(_ context.Context, h *daemon.Host, name string, attach vswitch.AttachFunc) (daemon.Backend, error) {
	cfg := s.cfg
	cfg.Logger = h.Log.Named("bond").With("port", name)
	cfg.Uplink.Logger = cfg.Logger
	sw := h.Switch
	cfg.LocalMACs = func() []bond.LocalMAC {
		var out []bond.LocalMAC
		for _, e := range sw.FDB() {
			if e.Port != name {
				out = append(out, bond.LocalMAC{MAC: e.MAC, VLAN: e.VLAN})
			}
		}
		return out
	}
	p, err := bond.Open(cfg)
	if err != nil {
		return nil, fmt.Errorf("bond %q: %w", name, err)
	}
	ph, err := attach(p)
	if err != nil {
		p.Close()
		return nil, err
	}
	if err := p.Start(ph); err != nil {
		p.Close()
		return nil, fmt.Errorf("bond %q: %w", name, err)
	}
	h.Log.Info("port ready", "port", name, "kind", Kind, "members", cfg.Members, "mode", cfg.Mode.String())
	return backend{p: p, tx: cfg.Uplink.TX}, nil
}

type backend struct {
	p  *bond.Port
	tx uplink.TXMode
}

// Close closes the members.
func (b backend) Close() error { return b.p.Close() }

// DeviceCounters are the bond's LACPDUs, failovers and drops.
func (b backend) DeviceCounters() *api.DeviceCounters {
	st := b.p.Stats()
	return &api.DeviceCounters{Kind: Kind, BondCounters: &api.BondCounters{LACPRx: st.LACPRx, LACPTx: st.LACPTx, LACPBad: st.LACPBad,
		LACPQueueFull: st.LACPQueueFull, Failovers: st.Failovers, Announced: st.Announced, RxInactive: st.RxInactive,
		RxReflected: st.RxReflected, TxNoMember: st.TxNoMember, Rebalanced: st.Rebalanced}}
}

// Bond reports the bond's members.
func (b backend) Bond() *api.BondInfo {
	st := b.p.Stats()
	bi := &api.BondInfo{Mode: st.Mode, Aggregate: st.LACPAggregate, Members: []api.BondMember{}}
	for _, m := range st.Members {
		bm := api.BondMember{Name: m.Name, Carrier: m.Carrier, Usable: m.Usable, Carrying: m.Carrying, RxFrames: m.RxFrames,
			TxFrames: m.TxFrames, RxDrops: m.RxDrops}
		if l := m.LACP; l != nil {
			bm.LACP = &api.LACPMember{ActorState: l.Actor.State.String(), ActorKey: int(l.Actor.Key), ActorPort: int(l.Actor.Port),
				PartnerSystem: vswitch.MAC(l.Partner.System).String(), PartnerKey: int(l.Partner.Key), PartnerPort: int(l.Partner.Port),
				PartnerState: l.Partner.State.String(), ReceiveState: l.RxState, Selected: l.Selected, RxPDUs: l.RxPDUs, TxPDUs: l.TxPDUs,
				PartnerExpired: l.Expiries, PartnerChanges: l.PartnerChanges, FlapHolds: l.FlapHolds, FlapHeld: l.Held}
		}
		bi.Members = append(bi.Members, bm)
	}
	return bi
}

// Reconfigure applies new settings live (members, mode, primary, delays,
// LACP activity, rate, fallback and hash, rebalancing): the members that
// stay keep carrying traffic. A new tx= is not live: the port restarts.
func (b backend) Reconfigure(s daemon.Spec) (bool, error) {
	ns, ok := s.(*spec)
	if !ok || ns.cfg.Uplink.TX != b.tx {
		return false, nil
	}
	if err := b.p.Reconfigure(ns.cfg); err != nil {
		return false, err
	}
	return true, nil
}
