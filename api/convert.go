package api

import (
	"fmt"
	"net/http"
	"slices"

	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/units"
)

// Limits on values from requests. The switch rejects the same values; the
// API checks first so that the answer names the field.
const (
	MaxRate  = 1 << 40 // tokens per second (about 8.8 Tbit/s of bytes)
	MaxBurst = 1 << 32 // tokens
	MaxMTU   = 65535
	MinMTU   = 68
)

func badField(field, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Field: field, Message: fmt.Sprintf(format, args...)}
}

// checkVLAN: IEEE 802.1Q-2018 Table 9-2, VID 0 means no VLAN and 0xFFF is reserved.
func checkVLAN(field string, v int) (uint16, *Error) {
	if v < 1 || v > 4094 {
		return 0, badField(field, "VLAN %d outside 1..4094", v)
	}
	return uint16(v), nil
}

func parseMode(field, s string) (vswitch.VLANMode, *Error) {
	switch s {
	case "access":
		return vswitch.ModeAccess, nil
	case "trunk":
		return vswitch.ModeTrunk, nil
	case "dot1q-tunnel":
		return vswitch.ModeDot1QTunnel, nil
	}
	return 0, badField(field, "mode %q: want access, trunk or dot1q-tunnel", s)
}

func parseMAC(field, s string) (vswitch.MAC, *Error) {
	m, err := vswitch.ParseMAC(s)
	if err != nil {
		return vswitch.MAC{}, badField(field, "%v", err)
	}
	return m, nil
}

func toRate(field string, r RateLimit) (vswitch.RateLimit, *Error) {
	for _, c := range []struct {
		name string
		v    int64
		max  int64
		unit string
	}{
		{"rate_bps", int64(r.RateBPS), units.MaxBitRate, "bit/s"}, {"burst_bytes", r.BurstBytes, MaxBurst, "bytes"},
		{"one_time_burst_bytes", r.OneTimeBurstBytes, MaxBurst, "bytes"}, {"rate_pps", r.RatePPS, MaxRate, "packets/s"},
		{"burst_packets", r.BurstPackets, MaxBurst, "packets"}, {"one_time_burst_packets", r.OneTimeBurstPackets, MaxBurst, "packets"},
	} {
		if c.v < 0 || c.v > c.max {
			return vswitch.RateLimit{}, badField(field+"."+c.name, "%d outside 0..%d %s", c.v, c.max, c.unit)
		}
	}
	return vswitch.RateLimit{
		Bytes:   vswitch.Bucket{Rate: units.BytesPerSecond(int64(r.RateBPS)), Burst: r.BurstBytes, OneTimeBurst: r.OneTimeBurstBytes},
		Packets: vswitch.Bucket{Rate: r.RatePPS, Burst: r.BurstPackets, OneTimeBurst: r.OneTimeBurstPackets},
	}, nil
}

func toStorm(field string, s StormControl) (vswitch.StormControl, *Error) {
	var out vswitch.StormControl
	var err *Error
	if out.Broadcast, err = toRate(field+".broadcast", s.Broadcast); err != nil {
		return out, err
	}
	if out.Multicast, err = toRate(field+".multicast", s.Multicast); err != nil {
		return out, err
	}
	out.UnknownUnicast, err = toRate(field+".unknown_unicast", s.UnknownUnicast)
	return out, err
}

// applyPatch returns cfg changed by p, every value checked.
// checkVLANFields refuses a patch's VLAN settings that contradict the
// port's VLAN mode (once the patch's vlan_mode is applied), as the command
// line and the topology file do: a trunk has no access VLAN, only a trunk
// carries tagged VLANs or has a native one.
func checkVLANFields(mode vswitch.VLANMode, p *PortPatch) *Error {
	if mode == vswitch.ModeTrunk {
		if p.PVID != nil && *p.PVID != 0 {
			return badField("vlan", "a trunk has no access VLAN: use native for untagged frames")
		}
		return nil
	}
	if p.AllowedVLANs != nil && len(*p.AllowedVLANs) > 0 {
		return badField("trunk", "only a trunk carries tagged VLANs (vlan_mode is %s)", mode)
	}
	if p.NativeVLAN != nil && *p.NativeVLAN != 0 {
		return badField("native", "only a trunk has a native VLAN (vlan_mode is %s)", mode)
	}
	return nil
}

func applyPatch(cfg vswitch.PortConfig, p *PortPatch) (vswitch.PortConfig, *Error) {
	var err *Error
	if p.Mode != nil {
		mode, err := parseMode("vlan_mode", *p.Mode)
		if err != nil {
			return cfg, err
		}
		if mode != cfg.Mode { // the old mode's VLAN settings go with it
			if mode == vswitch.ModeTrunk {
				cfg.PVID = 0
			} else {
				cfg.AllowedVLANs, cfg.NativeVLAN = nil, 0
				if cfg.PVID == 0 {
					cfg.PVID = 1 // as a new access port: VLAN 1
				}
			}
		}
		cfg.Mode = mode
	}
	if err := checkVLANFields(cfg.Mode, p); err != nil {
		return cfg, err
	}
	if p.PVID != nil {
		if cfg.PVID, err = checkVLAN("vlan", *p.PVID); err != nil {
			return cfg, err
		}
	}
	if p.AllowedVLANs != nil {
		cfg.AllowedVLANs = make([]uint16, 0, len(*p.AllowedVLANs))
		for i, v := range *p.AllowedVLANs {
			f := fmt.Sprintf("trunk[%d]", i)
			vid, err := checkVLAN(f, v)
			if err != nil {
				return cfg, err
			}
			if slices.Contains(cfg.AllowedVLANs, vid) {
				return cfg, badField(f, "VLAN %d listed twice", v)
			}
			cfg.AllowedVLANs = append(cfg.AllowedVLANs, vid)
		}
	}
	if cfg.Mode == vswitch.ModeTrunk && len(cfg.AllowedVLANs) == 0 && (p.Mode != nil || p.AllowedVLANs != nil) {
		return cfg, badField("trunk", "a trunk needs the VLANs it carries (trunk)")
	}
	if p.NativeVLAN != nil {
		cfg.NativeVLAN = 0
		if *p.NativeVLAN != 0 { // 0: untagged frames dropped
			if cfg.NativeVLAN, err = checkVLAN("native", *p.NativeVLAN); err != nil {
				return cfg, err
			}
		}
	}
	if p.DefaultPCP != nil {
		if *p.DefaultPCP < 0 || *p.DefaultPCP > 7 {
			return cfg, badField("pcp", "PCP %d outside 0..7", *p.DefaultPCP)
		}
		cfg.DefaultPCP = uint8(*p.DefaultPCP)
	}
	if p.MTU != nil {
		if *p.MTU < MinMTU || *p.MTU > MaxMTU {
			return cfg, badField("mtu", "MTU %d outside %d..%d", *p.MTU, MinMTU, MaxMTU)
		}
		cfg.MTU = *p.MTU
	}
	if p.Ingress != nil {
		if cfg.Ingress, err = toRate("ingress", *p.Ingress); err != nil {
			return cfg, err
		}
	}
	if p.Egress != nil {
		if cfg.Egress, err = toRate("egress", *p.Egress); err != nil {
			return cfg, err
		}
	}
	if p.Storm != nil {
		if cfg.Storm, err = toStorm("storm", *p.Storm); err != nil {
			return cfg, err
		}
	}
	if p.MACLimit != nil {
		if *p.MACLimit < vswitch.NoMACLimit || *p.MACLimit > vswitch.MaxMACLimit {
			return cfg, badField("mac_limit", "MAC limit %d outside -1 (none), 0 (the switch's default), 1..%d", *p.MACLimit, vswitch.MaxMACLimit)
		}
		cfg.MACLimit = *p.MACLimit
	}
	if p.PortSecurity != nil {
		cfg.PortSecurity = vswitch.PortSecurityOn
		if !*p.PortSecurity {
			cfg.PortSecurity = vswitch.PortSecurityOff
		}
	}
	if p.AllowedMACs != nil {
		cfg.AllowedMACs = make([]vswitch.MAC, 0, len(*p.AllowedMACs))
		for i, s := range *p.AllowedMACs {
			f := fmt.Sprintf("allowed_macs[%d]", i)
			m, err := parseMAC(f, s)
			if err != nil {
				return cfg, err
			}
			if m[0]&1 != 0 {
				return cfg, badField(f, "%s is a group address", s)
			}
			cfg.AllowedMACs = append(cfg.AllowedMACs, m)
		}
	}
	if err = applyAllocation(&cfg, p); err != nil {
		return cfg, err
	}
	if cfg.Mode == vswitch.ModeTrunk && len(cfg.AllowedVLANs) == 0 && cfg.NativeVLAN == 0 {
		return cfg, badField("trunk", "a trunk needs VLANs to carry (trunk) or a native VLAN (native)")
	}
	if cfg.Mode != vswitch.ModeTrunk && cfg.PVID == 0 {
		return cfg, badField("vlan", "an %s port needs a VLAN", cfg.Mode)
	}
	return cfg, nil
}

// checkBitRate checks a rate of the allocation and returns it in bytes
// per second, as the switch takes it.
func checkBitRate(field string, r BitRate) (int64, *Error) {
	if r < 0 || r > units.MaxBitRate {
		return 0, badField(field, "%d outside 0..%d bit/s", int64(r), int64(units.MaxBitRate))
	}
	return units.BytesPerSecond(int64(r)), nil
}

// applyAllocation applies the patch's allocation and class map to cfg.
func applyAllocation(cfg *vswitch.PortConfig, p *PortPatch) *Error {
	var err *Error
	if p.ReservationBPS != nil {
		if cfg.Allocation.Reservation, err = checkBitRate("reservation_bps", *p.ReservationBPS); err != nil {
			return err
		}
	}
	if p.LimitBPS != nil {
		if cfg.Allocation.Limit, err = checkBitRate("limit_bps", *p.LimitBPS); err != nil {
			return err
		}
	}
	if p.Shares != nil {
		if *p.Shares < 0 || *p.Shares > vswitch.MaxShares {
			return badField("shares", "shares %d outside 1..%d (0: the default, %d)", *p.Shares, vswitch.MaxShares, vswitch.DefaultShares)
		}
		cfg.Allocation.Shares = *p.Shares
	}
	if a := cfg.Allocation; a.Limit != 0 && a.Reservation > a.Limit {
		f := "reservation_bps"
		if p.ReservationBPS == nil {
			f = "limit_bps"
		}
		return badField(f, "reservation %s above limit %s", units.FormatBitRate(a.Reservation*8), units.FormatBitRate(a.Limit*8))
	}
	if p.PCPClass != nil {
		cfg.Classes.PCP = nil
		if len(*p.PCPClass) > 0 {
			cs, i, e := CheckPCPClasses(*p.PCPClass)
			if e != nil {
				f := "pcp_class"
				if i >= 0 {
					f = fmt.Sprintf("pcp_class[%d]", i)
				}
				return badField(f, "%v", e)
			}
			cfg.Classes.PCP = cs
		}
	}
	if p.DSCPClass != nil {
		cfg.Classes.DSCP = nil
		for i, s := range *p.DSCPClass {
			d, e := ParseDSCPClass(s)
			if e != nil {
				return badField(fmt.Sprintf("dscp_class[%d]", i), "%v", e)
			}
			cfg.Classes.DSCP = append(cfg.Classes.DSCP, d)
		}
	}
	return nil
}

// fromConfig builds a switch port configuration from a full API one.
// SwitchConfig checks an API port configuration and returns the
// switch's, as POST /v1/ports attaches the port with (errors name the
// request's field under config).
func SwitchConfig(c PortConfig) (vswitch.PortConfig, *Error) { return fromConfig(c) }

func fromConfig(c PortConfig) (vswitch.PortConfig, *Error) {
	if err := CheckPortName(c.Name); err != nil {
		return vswitch.PortConfig{}, badField("config.name", "%v", err)
	}
	mode := c.Mode
	if mode == "" {
		mode = "access"
	}
	p := &PortPatch{Mode: &mode, DefaultPCP: &c.DefaultPCP, Ingress: &c.Ingress, Egress: &c.Egress,
		Storm: &c.Storm, MACLimit: &c.MACLimit, PortSecurity: c.PortSecurity}
	if c.PVID == 0 && mode != "trunk" {
		c.PVID = 1 // as on the command line: a port without a VLAN is in VLAN 1
	}
	if c.PVID != 0 || mode != "trunk" {
		p.PVID = &c.PVID
	}
	if c.AllowedVLANs != nil {
		p.AllowedVLANs = &c.AllowedVLANs
	}
	if c.NativeVLAN != 0 {
		p.NativeVLAN = &c.NativeVLAN
	}
	if c.MTU != 0 {
		p.MTU = &c.MTU
	}
	if c.AllowedMACs != nil {
		p.AllowedMACs = &c.AllowedMACs
	}
	p.ReservationBPS, p.Shares, p.LimitBPS = &c.ReservationBPS, &c.Shares, &c.LimitBPS
	if c.PCPClass != nil {
		p.PCPClass = &c.PCPClass
	}
	if c.DSCPClass != nil {
		p.DSCPClass = &c.DSCPClass
	}
	cfg, err := applyPatch(vswitch.PortConfig{Name: c.Name}, p)
	if err != nil && err.Field != "config.name" {
		err.Field = "config." + err.Field
	}
	return cfg, err
}

func toAPIRate(r vswitch.RateLimit) RateLimit {
	return RateLimit{
		RateBPS: BitRate(r.Bytes.Rate * 8), BurstBytes: r.Bytes.Burst, OneTimeBurstBytes: r.Bytes.OneTimeBurst,
		RatePPS: r.Packets.Rate, BurstPackets: r.Packets.Burst, OneTimeBurstPackets: r.Packets.OneTimeBurst,
	}
}

// ConfigOf is a switch port's configuration as the API shows it (and
// takes it in POST /v1/ports).
func ConfigOf(c vswitch.PortConfig) PortConfig { return toAPIConfig(c) }

func toAPIConfig(c vswitch.PortConfig) PortConfig {
	out := PortConfig{
		Name: c.Name, Mode: c.Mode.String(), PVID: int(c.PVID), NativeVLAN: int(c.NativeVLAN),
		DefaultPCP: int(c.DefaultPCP), MTU: c.MTU, Ingress: toAPIRate(c.Ingress), Egress: toAPIRate(c.Egress),
		Storm: StormControl{Broadcast: toAPIRate(c.Storm.Broadcast), Multicast: toAPIRate(c.Storm.Multicast),
			UnknownUnicast: toAPIRate(c.Storm.UnknownUnicast)},
		MACLimit: c.MACLimit, MirrorIngress: c.MirrorIngress, MirrorEgress: c.MirrorEgress,
	}
	ps := c.PortSecurity != vswitch.PortSecurityOff
	out.PortSecurity = &ps
	if c.Mode == vswitch.ModeTrunk {
		out.PVID = 0
	}
	for _, v := range c.AllowedVLANs {
		out.AllowedVLANs = append(out.AllowedVLANs, int(v))
	}
	for _, m := range c.AllowedMACs {
		out.AllowedMACs = append(out.AllowedMACs, m.String())
	}
	out.ReservationBPS, out.Shares, out.LimitBPS = allocationOf(c.Allocation)
	for _, p := range c.Classes.PCP {
		out.PCPClass = append(out.PCPClass, int(p))
	}
	_, out.DSCPClass = ClassMapStrings(c.Classes)
	return out
}

// allocationOf is an allocation in the API's units, with the shares in
// force.
func allocationOf(a vswitch.Allocation) (reservation BitRate, shares int, limit BitRate) {
	shares = a.Shares
	if shares == 0 {
		shares = vswitch.DefaultShares
	}
	return BitRate(a.Reservation * 8), shares, BitRate(a.Limit * 8)
}

// toAPIQueues is a shaped egress's queues; none for an egress that is
// not shaped and never queued anything (vswitch lists its class queues
// all the same).
func toAPIQueues(cfg vswitch.PortConfig, qs []vswitch.QueueStats) []Queue {
	out := []Queue{}
	used := cfg.Egress.Bytes.Rate != 0 || cfg.Egress.Packets.Rate != 0
	for _, q := range qs {
		used = used || q.QueuedFrames != 0 || q.SentPackets != 0 || q.Drops != 0 || q.Port != ""
	}
	if !used {
		return out
	}
	for _, q := range qs {
		a := Queue{Port: q.Port, Class: q.Class, QueuedFrames: q.QueuedFrames, QueuedBytes: q.QueuedBytes,
			SentPackets: q.SentPackets, SentBytes: q.SentBytes, Drops: q.Drops, RateBPS: BitRate(q.Rate * 8)}
		if q.Port != "" {
			a.ReservationBPS, a.Shares, a.LimitBPS = allocationOf(q.Allocation)
		}
		out = append(out, a)
	}
	return out
}

// portMAC is the port's own MAC, or "".
func portMAC(h *vswitch.PortHandle) string {
	if m, ok := h.MAC(); ok {
		return m.String()
	}
	return ""
}

func toAPICounters(c vswitch.PortCounters) Counters {
	out := Counters{RxPackets: c.RxPackets, RxBytes: c.RxBytes, TxPackets: c.TxPackets, TxBytes: c.TxBytes,
		LearnedMACs: c.LearnedMACs, ShaperQueued: c.ShaperQueued, Drops: make(map[string]uint64, len(c.Drops))}
	for r, n := range c.Drops {
		out.Drops[vswitch.DropReason(r).String()] = n
	}
	return out
}
