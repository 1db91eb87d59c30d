// Package vxlankind is the daemon's VXLAN tunnel port kind (package
// vxlan): the switch's VLANs carried as VNIs to remote VTEPs over the
// host's IPv4 underlay.
package vxlankind

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"hvnet/api"
	"hvnet/daemon"
	vswitch "hvnet/switch"
	"hvnet/vxlan"
)

// Kind is the kind's name on every surface.
const Kind = "vxlan"

func init() { daemon.Register(kind{}) }

type kind struct{}

func (kind) Name() string { return Kind }
func (kind) Summary() string {
	return "a VXLAN tunnel (RFC 7348): the port's VLANs as VNIs to remote VTEPs over the IPv4 underlay"
}

func (kind) Options() []daemon.Option {
	return []daemon.Option{
		{Key: "local", Value: "ADDR", Help: "the local VTEP address (IPv4, one of the host's)", Required: true},
		{Key: "vni", Value: "VNI:VLAN", Help: "a VNI (1..16777215) and the VLAN it carries (repeatable, one at least)", Required: true, Repeat: true},
		{Key: "remote", Value: "ADDR", Help: "a remote VTEP every VNI floods to (repeatable)", Repeat: true},
		{Key: "learning", Value: "on|off", Help: "learn remote MACs from received packets (default on)"},
		{Key: "vtep-policy", Value: "known|any", Help: "accept packets from known VTEPs only (default) or from any address"},
		{Key: "underlay-mtu", Value: "576..65535", Help: "the largest outer packet (default 1500: inner frames up to 1464 bytes)"},
		{Key: "udp-port", Value: "PORT", Help: "the UDP port (default 4789)"},
		{Key: "max-remote-macs", Value: "N", Help: "bound on the table of remote MACs (default 65536)"},
	}
}

type spec struct{ cfg vxlan.Config }

func (kind) Parse(v daemon.Values, port vswitch.PortConfig) (daemon.Spec, error) {
	var c vxlan.Config
	l := v.Get("local")
	a, err := netip.ParseAddr(l)
	if err != nil || !a.Is4() {
		return nil, daemon.Bad("local", l, "is not an IPv4 address")
	}
	c.Local = a
	c.VNIs = map[uint32]uint16{}
	for _, s := range v["vni"] {
		vs, ls, ok := strings.Cut(s, ":")
		vni, err1 := strconv.ParseUint(vs, 10, 32)
		vid, err2 := vswitch.ParseVID(ls)
		if !ok || err1 != nil || vni < 1 || vni > vxlan.MaxVNI || err2 != nil {
			return nil, daemon.Bad("vni", s, fmt.Sprintf("is not VNI:VLAN (VNI 1..%d, VLAN 1..4094)", vxlan.MaxVNI))
		}
		if _, dup := c.VNIs[uint32(vni)]; dup {
			return nil, daemon.Bad("vni", s, "maps a VNI given before")
		}
		for o, ov := range c.VNIs {
			if ov == vid {
				return nil, daemon.Bad("vni", s, fmt.Sprintf("maps VLAN %d, which VNI %d carries already", vid, o))
			}
		}
		if !carries(port, vid) {
			return nil, daemon.Bad("vni", s, fmt.Sprintf("maps VLAN %d, which the port does not carry (give it trunk=%s)", vid, trunkOf(port, vid)))
		}
		c.VNIs[uint32(vni)] = vid
	}
	switch port.Mode {
	case vswitch.ModeTrunk:
		c.NativeVLAN = port.NativeVLAN
	case vswitch.ModeAccess:
		c.NativeVLAN = port.PVID
	}
	for _, r := range v["remote"] {
		a, err := netip.ParseAddr(r)
		if err != nil || !a.Is4() {
			return nil, daemon.Bad("remote", r, "is not an IPv4 address")
		}
		c.Remotes = append(c.Remotes, a)
	}
	c.Learning = true
	if s := v.Get("learning"); s != "" {
		on, ok := map[string]bool{"on": true, "off": false}[s]
		if !ok {
			return nil, daemon.Bad("learning", s, "is not on or off")
		}
		c.Learning = on
	}
	switch s := v.Get("vtep-policy"); s {
	case "", "known":
	case "any":
		c.AnyVTEP = true
	default:
		return nil, daemon.Bad("vtep-policy", s, "is not known or any")
	}
	num := func(key string, lo, hi int) (int, error) {
		s := v.Get(key)
		if s == "" {
			return 0, nil
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < lo || n > hi {
			return 0, daemon.Bad(key, s, fmt.Sprintf("is not a number in %d..%d", lo, hi))
		}
		return n, nil
	}
	if c.UnderlayMTU, err = num("underlay-mtu", 576, 65535); err != nil {
		return nil, err
	}
	p, err := num("udp-port", 1, 65535)
	if err != nil {
		return nil, err
	}
	c.Port = uint16(p)
	if c.MaxRemoteMACs, err = num("max-remote-macs", 1, 1<<20); err != nil {
		return nil, err
	}
	return &spec{cfg: c}, nil
}

// carries says whether port takes frames of VLAN vid.
func carries(port vswitch.PortConfig, vid uint16) bool {
	switch port.Mode {
	case vswitch.ModeTrunk:
		return port.NativeVLAN == vid || slices.Contains(port.AllowedVLANs, vid)
	case vswitch.ModeAccess:
		return port.PVID == vid
	}
	return false
}

// trunkOf is the trunk= value that would carry vid too.
func trunkOf(port vswitch.PortConfig, vid uint16) string {
	vids := []uint16{vid}
	if port.Mode == vswitch.ModeTrunk {
		vids = append(vids, port.AllowedVLANs...)
	}
	slices.Sort(vids)
	var s []string
	for _, v := range slices.Compact(vids) {
		s = append(s, strconv.Itoa(int(v)))
	}
	return strings.Join(s, ":")
}

func (s *spec) Claims() []string {
	p := s.cfg.Port
	if p == 0 {
		p = vxlan.DefaultPort
	}
	return []string{fmt.Sprintf("vxlan %v:%d", s.cfg.Local, p)}
}

// Start opens the tunnel's sockets and starts it.
func (s *spec) Start(_ context.Context, h *daemon.Host, name string, attach vswitch.AttachFunc) (daemon.Backend, error) {
	cfg := s.cfg
	cfg.Logger = h.Log.Named("vxlan").With("port", name)
	p, err := vxlan.Open(cfg)
	if err != nil {
		return nil, fmt.Errorf("vxlan %q: %w", name, err)
	}
	ph, err := attach(p)
	if err != nil {
		p.Close()
		return nil, err
	}
	p.Start(ph)
	h.Log.Info("port ready", "port", name, "kind", Kind, "local", cfg.Local, "vnis", len(cfg.VNIs), "remotes", len(cfg.Remotes))
	return backend{p}, nil
}

type backend struct{ p *vxlan.Port }

// Close stops the tunnel and closes its sockets.
func (b backend) Close() error { return b.p.Close() }

// DeviceCounters are the tunnel's packets and drops.
func (b backend) DeviceCounters() *api.DeviceCounters {
	return &api.DeviceCounters{Kind: Kind, VXLANCounters: Counters(b.p.Stats())}
}

// Counters are a tunnel's counters as the API shows them.
func Counters(st vxlan.Stats) *api.VXLANCounters {
	return &api.VXLANCounters{RxPackets: st.RxPackets, TxPackets: st.TxPackets, FloodCopies: st.TxFloodCopies, RemoteMACs: st.RemoteMACs,
		RxDropShort: st.RxDropShort, RxDropFlags: st.RxDropFlags, RxDropUnknownVNI: st.RxDropUnknownVNI, RxDropUnknownVTEP: st.RxDropUnknownVTEP,
		RxDropInnerTag: st.RxDropInnerTag, RxDropOversize: st.RxDropOversize, RxErrors: st.RxErrors, TxDropNoVNI: st.TxDropNoVNI,
		TxDropOversize: st.TxDropOversize, TxDropNoRemote: st.TxDropNoRemote, TxErrors: st.TxErrors, RemoteMACsFull: st.RemoteMACsFull}
}
