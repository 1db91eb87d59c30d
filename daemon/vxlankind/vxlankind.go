// Package vxlankind is the daemon's VXLAN tunnel port kind (package
// vxlan): the switch's VLANs carried as VNIs to remote VTEPs over the
// host's IPv4 or IPv6 underlay.
package vxlankind

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/daemon"
	"github.com/hvnet/hvnet/evpn"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/vxlan"
)

// Kind is the kind's name on every surface.
const Kind = "vxlan"

func init() { daemon.Register(kind{}) }

type kind struct{}

func (kind) Name() string { return Kind }
func (kind) Summary() string {
	return "a VXLAN tunnel (RFC 7348): the port's VLANs as VNIs to remote VTEPs over the IPv4 or IPv6 underlay"
}

func (kind) Options() []daemon.Option {
	return []daemon.Option{
		{Key: "local", Value: "ADDR", Help: "the local VTEP address, IPv4 or IPv6 (one of the host's; its family is the underlay's)", Required: true},
		{Key: "vni", Value: "VNI:VLAN", Help: "a VNI (1..16777215) and the VLAN it carries (repeatable, one at least)", Required: true, Repeat: true},
		{Key: "remote", Value: "ADDR", Help: "a remote VTEP every VNI floods to, of local's family (repeatable)", Repeat: true},
		{Key: "learning", Value: "on|off", Help: "learn remote MACs from received packets (default on)"},
		{Key: "vtep-policy", Value: "known|any", Help: "accept packets from known VTEPs only (default) or from any address"},
		{Key: "underlay-mtu", Value: "576..65535", Help: "the largest outer packet (default 1500: inner frames up to 1464 bytes over IPv4, 1444 over IPv6)"},
		{Key: "udp6-zero-csum-tx", Value: "on|off", Help: "IPv6 underlay: send zero UDP checksums (default off, as Linux's udp6zerocsumtx)"},
		{Key: "udp6-zero-csum-rx", Value: "on|off", Help: "IPv6 underlay: accept zero UDP checksums (default off, as Linux's udp6zerocsumrx)"},
		{Key: "udp-port", Value: "PORT", Help: "the UDP port (default 4789)"},
		{Key: "udp-gso", Value: "on|off", Help: "send runs of one flow's packets to one VTEP as UDP GSO super-packets, written to the underlay device (default on; off: each through the kernel's IP output)"},
		{Key: "max-remote-macs", Value: "N", Help: "bound on the table of remote MACs (default 65536)"},
		{Key: "asn", Value: "1..4294967295", Help: "BGP EVPN: the local AS (turns the control plane on; learning then off by default)"},
		{Key: "router-id", Value: "ADDR", Help: "BGP EVPN: the router ID, an IPv4 address (default: local; required with an IPv6 local)"},
		{Key: "neighbor", Value: "ADDR[:ASN]", Help: "BGP EVPN: a neighbor of local's family (repeatable; without ASN: iBGP; IPv6 with an ASN: [ADDR]:ASN)", Repeat: true},
		{Key: "bgp-port", Value: "PORT", Help: "BGP EVPN: the TCP port to listen on and dial (default 179)"},
		{Key: "hold-time", Value: "3s..", Help: "BGP EVPN: the proposed hold time (default 90s; keepalives a third of it)"},
		{Key: "connect-retry", Value: "1s..", Help: "BGP EVPN: the least time between connection attempts to a neighbor that is down (default 10s)"},
		{Key: "max-routes", Value: "N", Help: "BGP EVPN: routes one neighbor may send before its session is reset (default 100000)"},
		{Key: "max-flood-vteps", Value: "N", Help: "BGP EVPN: bound on the VTEPs type-3 routes add to one VNI's flood list, each a copy of every flooded frame (default 1024; remote= not counted)"},
		{Key: "arp-suppress", Value: "on|off", Help: "BGP EVPN: answer ARP requests and neighbor solicitations for IPs of remote MAC/IP routes locally, not flooding them (default on)"},
	}
}

type spec struct {
	cfg  vxlan.Config
	bgp  *evpn.Config // nil: no control plane
	port uint16       // bgp-port: the neighbors' too
}

func (kind) Parse(v daemon.Values, port vswitch.PortConfig) (daemon.Spec, error) {
	var c vxlan.Config
	l := v.Get("local")
	a, err := parseVTEP(l)
	if err != nil {
		return nil, daemon.Bad("local", l, err.Error())
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
		a, err := parseVTEP(r)
		if err != nil {
			return nil, daemon.Bad("remote", r, err.Error())
		}
		if err := sameFamily(a, c.Local); err != nil {
			return nil, daemon.Bad("remote", r, err.Error())
		}
		c.Remotes = append(c.Remotes, a)
	}
	for _, o := range []struct {
		key string
		to  *bool
	}{{"udp6-zero-csum-tx", &c.UDP6ZeroCsumTx}, {"udp6-zero-csum-rx", &c.UDP6ZeroCsumRx}} {
		s := v.Get(o.key)
		if s == "" {
			continue
		}
		on, ok := map[string]bool{"on": true, "off": false}[s]
		if !ok {
			return nil, daemon.Bad(o.key, s, "is not on or off")
		}
		if !c.Local.Is6() {
			return nil, daemon.Bad(o.key, s, "is for an IPv6 underlay (local= is IPv4, whose UDP checksum is zero, RFC 7348 §5)")
		}
		*o.to = on
	}
	c.Learning = true
	if s := v.Get("learning"); s != "" {
		on, ok := map[string]bool{"on": true, "off": false}[s]
		if !ok {
			return nil, daemon.Bad("learning", s, "is not on or off")
		}
		c.Learning = on
	}
	if s := v.Get("udp-gso"); s != "" {
		on, ok := map[string]bool{"on": true, "off": false}[s]
		if !ok {
			return nil, daemon.Bad("udp-gso", s, "is not on or off")
		}
		c.NoUDPGSO = !on
	}
	switch s := v.Get("vtep-policy"); s {
	case "", "known":
	case "any":
		c.AnyVTEP = true
	default:
		return nil, daemon.Bad("vtep-policy", s, "is not known or any")
	}
	if c.UnderlayMTU, err = v.Int("underlay-mtu", 576, 65535); err != nil {
		return nil, err
	}
	p, err := v.Int("udp-port", 1, 65535)
	if err != nil {
		return nil, err
	}
	c.Port = uint16(p)
	if c.MaxRemoteMACs, err = v.Int("max-remote-macs", 1, 1<<20); err != nil {
		return nil, err
	}
	sp := &spec{cfg: c}
	if err := sp.parseBGP(v); err != nil {
		return nil, err
	}
	return sp, nil
}

// parseBGP reads the EVPN control plane's options, if asn= is given.
func (s *spec) parseBGP(v daemon.Values) error {
	as := v.Get("asn")
	if as == "" {
		for _, k := range []string{"router-id", "neighbor", "bgp-port", "hold-time", "connect-retry", "max-routes", "max-flood-vteps", "arp-suppress"} {
			if v.Get(k) != "" {
				return daemon.Bad(k, v.Get(k), "needs asn= (the EVPN control plane)")
			}
		}
		return nil
	}
	asn, err := strconv.ParseUint(as, 10, 32)
	if err != nil || asn == 0 {
		return daemon.Bad("asn", as, "is not an AS number (1..4294967295)")
	}
	// The VTEP is the next hop of the routes and the originating
	// router's IP and PMSI tunnel endpoint of the type-3 routes, IPv6 on
	// an IPv6 underlay (RFC 8365 §5.1.3, with RFC 6514 §5's and RFC 7432
	// §7.3's variable-length addresses); the sessions run from it too.
	b := &evpn.Config{ASN: uint32(asn), VTEP: s.cfg.Local, LocalAddr: s.cfg.Local}
	if s.cfg.Local.Is4() {
		b.RouterID = s.cfg.Local
	}
	if r := v.Get("router-id"); r != "" {
		a, err := netip.ParseAddr(r)
		if err != nil || !a.Is4() || a.IsUnspecified() {
			return daemon.Bad("router-id", r, "is not a non-zero IPv4 address (a BGP identifier is 4 octets, RFC 6286)")
		}
		b.RouterID = a
	} else if !b.RouterID.IsValid() {
		return daemon.Bad("router-id", "", fmt.Sprintf("is required with an IPv6 local= (%v): a BGP identifier is 4 octets (RFC 6286), give a unique IPv4 address", s.cfg.Local))
	}
	if p := v.Get("bgp-port"); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return daemon.Bad("bgp-port", p, "is not a TCP port (1..65535)")
		}
		s.port = uint16(n)
		b.ListenPort = int32(n)
	}
	for _, n := range v["neighbor"] {
		a, asn, err := parseNeighbor(n)
		if err != nil {
			return daemon.Bad("neighbor", n, err.Error())
		}
		if err := sameFamily(a, s.cfg.Local); err != nil {
			return daemon.Bad("neighbor", n, err.Error()+" (the sessions run from local=)")
		}
		b.Neighbors = append(b.Neighbors, evpn.Neighbor{Addr: a, ASN: asn, Port: s.port})
	}
	if h := v.Get("hold-time"); h != "" {
		d, err := time.ParseDuration(h)
		if err != nil || d < 3*time.Second || d%time.Second != 0 || d > 65535*time.Second {
			return daemon.Bad("hold-time", h, "is not whole seconds from 3s to 65535s")
		}
		b.HoldTime = d
	}
	if c := v.Get("connect-retry"); c != "" {
		d, err := time.ParseDuration(c)
		if err != nil || d < time.Second || d%time.Second != 0 || d > 65535*time.Second {
			return daemon.Bad("connect-retry", c, "is not whole seconds from 1s to 65535s")
		}
		b.ConnectRetry = d
	}
	if m := v.Get("max-routes"); m != "" {
		n, err := strconv.Atoi(m)
		if err != nil || n < 1 || n > evpn.MaxRoutesPerPeerLimit {
			return daemon.Bad("max-routes", m, fmt.Sprintf("is not a number of routes (1..%d)", evpn.MaxRoutesPerPeerLimit))
		}
		b.MaxRoutesPerPeer = n
	}
	if s.cfg.MaxFloodVTEPs, err = v.Int("max-flood-vteps", 1, 65536); err != nil {
		return err
	}
	if v.Get("learning") == "" {
		s.cfg.Learning = false // the control plane says where MACs are
	}
	// The local MACs' IPs are learned to be advertised; requests for
	// remote ones are answered from the routes.
	s.cfg.LearnIPs, s.cfg.Suppress = true, true
	if a := v.Get("arp-suppress"); a != "" {
		on, ok := map[string]bool{"on": true, "off": false}[a]
		if !ok {
			return daemon.Bad("arp-suppress", a, "is not on or off")
		}
		s.cfg.Suppress = on
	}
	s.bgp = b
	return nil
}

// parseVTEP reads a VTEP address: a unicast IPv4 or IPv6 address, not
// IPv6 link-local (a tunnel end point needs an address without a zone).
func parseVTEP(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		return a, errors.New("is not an IPv4 or IPv6 address")
	case a.Zone() != "" || a.Is6() && a.IsLinkLocalUnicast():
		return a, errors.New("is a link-local address: a VTEP needs a global one")
	case a.IsUnspecified() || a.IsMulticast():
		return a, errors.New("is not a unicast address")
	}
	return a.Unmap(), nil
}

// sameFamily refuses an address of another family than local's: a port
// has one underlay.
func sameFamily(a, local netip.Addr) error {
	if a.Is4() == local.Is4() {
		return nil
	}
	fam := map[bool]string{true: "IPv4", false: "IPv6"}
	return fmt.Errorf("is %s, but local=%v is %s: one address family per port", fam[a.Is4()], local, fam[local.Is4()])
}

// parseNeighbor reads neighbor=ADDR[:ASN]: ADDR, ADDR:ASN for IPv4,
// [ADDR]:ASN for IPv6 (as host:port, RFC 3986 §3.2.2).
func parseNeighbor(n string) (netip.Addr, uint32, error) {
	as, asn := n, uint64(0)
	bad := errors.New("is not ADDR[:ASN] (IPv6 with an ASN: [ADDR]:ASN) with a unicast address")
	if strings.HasPrefix(n, "[") {
		end := strings.Index(n, "]")
		if end < 0 {
			return netip.Addr{}, 0, bad
		}
		as = n[1:end]
		if rest := n[end+1:]; rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return netip.Addr{}, 0, bad
			}
			var err error
			if asn, err = strconv.ParseUint(rest[1:], 10, 32); err != nil || asn == 0 {
				return netip.Addr{}, 0, bad
			}
		}
	} else if i := strings.LastIndexByte(n, ':'); i >= 0 && !strings.Contains(n[:i], ":") {
		var err error
		if asn, err = strconv.ParseUint(n[i+1:], 10, 32); err != nil || asn == 0 {
			return netip.Addr{}, 0, bad
		}
		as = n[:i]
	}
	a, err := netip.ParseAddr(as)
	if err != nil || a.IsUnspecified() || a.IsMulticast() || a.Zone() != "" {
		return netip.Addr{}, 0, bad
	}
	return a.Unmap(), uint32(asn), nil
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
	c := []string{"vxlan " + netip.AddrPortFrom(s.cfg.Local, p).String()}
	if s.bgp != nil {
		bp := s.port
		if bp == 0 {
			bp = 179
		}
		c = append(c, "bgp "+netip.AddrPortFrom(s.cfg.Local, bp).String())
	}
	return c
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
	b := &backend{p: p, cfg: cfg}
	if s.bgp != nil {
		if err := b.startEVPN(h, name, *s.bgp); err != nil {
			p.Close()
			return nil, fmt.Errorf("vxlan %q: %w", name, err)
		}
	}
	h.Log.Info("port ready", "port", name, "kind", Kind, "local", cfg.Local, "vnis", len(cfg.VNIs), "remotes", len(cfg.Remotes),
		"evpn", s.bgp != nil)
	return b, nil
}

type backend struct {
	p   *vxlan.Port
	cfg vxlan.Config

	// The EVPN control plane, if any.
	sp       *evpn.Speaker
	stopSync context.CancelFunc
	syncDone chan struct{}
	seqMu    sync.Mutex
	// seqs is the last MAC mobility sequence seen from a remote VTEP per
	// MAC while the MAC has a route (its keys are routes' keys: bounded
	// as the speaker bounds its routes, max-routes a neighbor).
	seqs map[macKey]uint32
	// The remote routes the speaker reported per MAC of a mapped VNI (the
	// invalid address: the MAC-only route), in its dispatcher goroutine
	// only.
	routes map[macKey]map[netip.Addr]struct{}
}

// startEVPN starts the BGP speaker, announces the VNIs and keeps the
// local MACs advertised.
func (b *backend) startEVPN(h *daemon.Host, name string, bc evpn.Config) error {
	bc.Logger = h.Log.Named("evpn").With("port", name)
	b.seqs = map[macKey]uint32{}
	b.routes = map[macKey]map[netip.Addr]struct{}{}
	sp, err := evpn.Start(h.Ctx, bc, b)
	if err != nil {
		return err
	}
	b.sp = sp
	vlans := map[uint16]uint32{}
	for vni, vlan := range b.cfg.VNIs {
		if err := sp.AddVNI(vni); err != nil {
			sp.Close()
			return err
		}
		vlans[vlan] = vni
	}
	ctx, cancel := context.WithCancel(h.Ctx)
	b.stopSync, b.syncDone = cancel, make(chan struct{})
	ms := newMACSync(h.Switch, name, vlans, sp, b.p, bc.Logger, b.localSeq)
	// The watch starts before the first full read, so that no change
	// falls between the two.
	w := h.Switch.WatchFDB(watchKeys)
	go func() {
		defer close(b.syncDone)
		defer w.Close()
		ms.run(ctx, w, b.p.LocalIPsChanged())
	}()
	return nil
}

// localSeq is the sequence a local MAC is advertised with: one more
// than a remote VTEP's last, for a MAC that moved here (RFC 7432 §15).
func (b *backend) localSeq(vni uint32, mac [6]byte) uint32 {
	b.seqMu.Lock()
	defer b.seqMu.Unlock()
	if s, ok := b.seqs[macKey{vni, mac}]; ok {
		return s + 1
	}
	return 0
}

// RemoteVTEP implements evpn.Handler: a type-3 route puts the VTEP on the
// VNI's flood list.
func (b *backend) RemoteVTEP(vni uint32, vtep netip.Addr, withdrawn bool) {
	if withdrawn {
		b.p.DelFloodVTEP(vni, vtep)
		return
	}
	b.p.AddFloodVTEP(vni, vtep)
}

// RemoteMAC implements evpn.Handler: a type-2 route points the MAC at its
// VTEP, and one with an IP binds the IP to the MAC for ARP/ND
// suppression. The MAC stays while any of its routes (with an IP or
// without) does, and so does its sequence number: once the last is
// withdrawn no remote VTEP holds the MAC, and one learned here again is
// a new one (RFC 7432 §15.1; the speaker still numbers an advertisement
// past any remote route it holds). Routes of VNIs the port does not map
// are ignored: nothing of theirs is kept.
func (b *backend) RemoteMAC(vni uint32, mac [6]byte, ip netip.Addr, vtep netip.Addr, seq uint32, withdrawn bool) {
	if b.p.VNIVLAN(vni) == 0 {
		return
	}
	k := macKey{vni, mac}
	rs := b.routes[k]
	if withdrawn {
		if ip.IsValid() {
			b.p.DelRemoteIP(vni, mac, ip)
		}
		delete(rs, ip)
		if len(rs) == 0 {
			delete(b.routes, k)
			b.seqMu.Lock()
			delete(b.seqs, k)
			b.seqMu.Unlock()
			b.p.DelRemoteMAC(vni, mac)
		}
		return
	}
	if rs == nil {
		rs = map[netip.Addr]struct{}{}
		b.routes[k] = rs
	}
	rs[ip] = struct{}{}
	b.seqMu.Lock()
	b.seqs[k] = seq
	b.seqMu.Unlock()
	b.p.SetRemoteMAC(vni, mac, vtep)
	if ip.IsValid() {
		b.p.SetRemoteIP(vni, mac, ip)
	}
}

// Close stops the control plane (its routes withdrawn), then the tunnel.
func (b *backend) Close() error {
	if b.sp != nil {
		b.stopSync()
		<-b.syncDone
		b.sp.Close()
	}
	return b.p.Close()
}

// DeviceCounters are the tunnel's packets and drops.
func (b *backend) DeviceCounters() *api.DeviceCounters {
	return &api.DeviceCounters{Kind: Kind, VXLANCounters: Counters(b.p.Stats())}
}

// Tunnel reports the tunnel's VNIs, flood lists and remote MACs.
func (b *backend) Tunnel() *api.TunnelInfo {
	t := &api.TunnelInfo{Local: b.cfg.Local.String(), RemoteMACs: []api.TunnelRemoteMAC{}}
	flood := b.p.RemoteVTEPs()
	vnis := slices.Sorted(maps.Keys(b.cfg.VNIs))
	for _, vni := range vnis {
		v := api.TunnelVNI{VNI: vni, VLAN: int(b.cfg.VNIs[vni]), VTEPs: []string{}}
		fl := flood[vni]
		slices.SortFunc(fl, func(x, y netip.Addr) int { return x.Compare(y) })
		for _, a := range fl {
			v.VTEPs = append(v.VTEPs, a.String())
		}
		t.VNIs = append(t.VNIs, v)
	}
	ms := b.p.RemoteMACs()
	slices.SortFunc(ms, func(x, y vxlan.RemoteMACEntry) int {
		if x.VNI != y.VNI {
			return int(x.VNI) - int(y.VNI)
		}
		return bytes.Compare(x.MAC[:], y.MAC[:])
	})
	ips := map[macKey][]netip.Addr{}
	for _, r := range b.p.RemoteIPs() {
		k := macKey{r.VNI, r.MAC}
		ips[k] = append(ips[k], r.IP)
	}
	for _, m := range ms {
		tm := api.TunnelRemoteMAC{VNI: m.VNI, MAC: vswitch.MAC(m.MAC).String(), VTEP: m.VTEP.String(), Learned: m.Learned}
		l := ips[macKey{m.VNI, m.MAC}]
		slices.SortFunc(l, netip.Addr.Compare)
		for _, a := range l {
			tm.IPs = append(tm.IPs, a.String())
		}
		t.RemoteMACs = append(t.RemoteMACs, tm)
	}
	if b.sp != nil {
		for _, n := range b.sp.Neighbors() {
			t.Neighbors = append(t.Neighbors, bgpNeighbor(n))
		}
	}
	return t
}

// Counters are a tunnel's counters as the API shows them.
func Counters(st vxlan.Stats) *api.VXLANCounters {
	return &api.VXLANCounters{RxPackets: st.RxPackets, TxPackets: st.TxPackets, FloodCopies: st.TxFloodCopies, RemoteMACs: st.RemoteMACs,
		RxDropShort: st.RxDropShort, RxDropFlags: st.RxDropFlags, RxDropUnknownVNI: st.RxDropUnknownVNI, RxDropUnknownVTEP: st.RxDropUnknownVTEP,
		RxDropInnerTag: st.RxDropInnerTag, RxDropOversize: st.RxDropOversize, RxErrors: st.RxErrors, TxDropNoVNI: st.TxDropNoVNI,
		TxDropOversize: st.TxDropOversize, TxDropNoRemote: st.TxDropNoRemote, TxDropInnerTag: st.TxDropInnerTag, TxErrors: st.TxErrors,
		RemoteMACsFull: st.RemoteMACsFull, FloodVTEPsFull: st.FloodVTEPsFull,
		ARPSuppressed: st.ARPSuppressed, NDSuppressed: st.NDSuppressed, SuppressReplies: st.SuppressReplies, SuppressFull: st.SuppressFull,
		SnoopIgnored: st.SnoopIgnored, LocalIPs: st.LocalIPs, LocalIPsFull: st.LocalIPsFull, RemoteIPs: st.RemoteIPs, RemoteIPsFull: st.RemoteIPsFull,
		WrongFamily: st.WrongFamily, TxGSOPackets: st.TxGSOPackets, TxGSOFallbacks: st.TxGSOFallbacks, TxDirect: st.TxDirect, RxGROPackets: st.RxGROPackets}
}
