package topology

import (
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/units"
)

func (l *Limit) rateLimit() vswitch.RateLimit {
	if l == nil {
		return vswitch.RateLimit{}
	}
	return vswitch.RateLimit{
		Bytes: vswitch.Bucket{Rate: units.BytesPerSecond(int64(l.RateBPS)), Burst: int64(l.BurstBytes),
			OneTimeBurst: int64(l.OneTimeBurstBytes)},
		Packets: vswitch.Bucket{Rate: int64(l.RatePPS), Burst: l.BurstPackets, OneTimeBurst: l.OneTimeBurstPackets},
	}
}

// Config returns the switch port configuration of settings s for port
// name. The topology must have been checked (Load or Parse).
func (s *PortSettings) Config(name string) vswitch.PortConfig {
	cfg := vswitch.PortConfig{Name: name, PVID: uint16(s.PVID), NativeVLAN: uint16(s.NativeVLAN),
		DefaultPCP: uint8(s.PCP), MTU: s.MTU, Ingress: s.Ingress.rateLimit(), Egress: s.Egress.rateLimit(),
		MACLimit: s.MACLimit}
	switch {
	case s.Rate == RateLink:
		cfg.Egress.Bytes.Rate = vswitch.LinkRate // the kind reads its link's speed
	case s.Rate > 0:
		cfg.Egress.Bytes.Rate = units.BytesPerSecond(int64(s.Rate))
	}
	if s.PPS > 0 {
		cfg.Egress.Packets.Rate = int64(s.PPS)
	}
	if s.Police > 0 {
		cfg.Ingress.Bytes.Rate = units.BytesPerSecond(int64(s.Police))
	}
	switch s.Mode {
	case "trunk":
		cfg.Mode, cfg.PVID = vswitch.ModeTrunk, 0
	case "dot1q-tunnel":
		cfg.Mode = vswitch.ModeDot1QTunnel
	}
	for _, v := range s.AllowedVLANs {
		cfg.AllowedVLANs = append(cfg.AllowedVLANs, uint16(v))
	}
	if st := s.Storm; st != nil {
		cfg.Storm = vswitch.StormControl{Broadcast: st.Broadcast.rateLimit(), Multicast: st.Multicast.rateLimit(),
			UnknownUnicast: st.UnknownUnicast.rateLimit()}
	}
	for _, m := range s.AllowedMACs {
		mac, _ := vswitch.ParseMAC(m)
		cfg.AllowedMACs = append(cfg.AllowedMACs, mac)
	}
	cfg.PortSecurity = portSecurity(s.PortSecurity)
	cfg.Allocation = vswitch.Allocation{Reservation: units.BytesPerSecond(int64(s.Reservation)), Shares: s.Shares,
		Limit: units.BytesPerSecond(int64(s.Limit))}
	if s.PCPClass != nil {
		cfg.Classes.PCP = append([]uint8(nil), s.PCPClass...)
	}
	for _, d := range s.DSCPClass {
		cfg.Classes.DSCP = append(cfg.Classes.DSCP, vswitch.DSCPClass(d))
	}
	return cfg
}

func portSecurity(b *bool) vswitch.PortSecurity {
	if b != nil && !*b {
		return vswitch.PortSecurityOff
	}
	return vswitch.PortSecurityOn
}

// Config returns the switch port configuration of a guest's NIC.
func (g *Guest) Config() vswitch.PortConfig { return g.PortSettings.Config(g.Name) }
