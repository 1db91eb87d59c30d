package vxlan

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hvnet/hvnet/internal/netnstest"
	vswitch "github.com/hvnet/hvnet/switch"
)

var (
	macA   = [6]byte{2, 0, 0, 0, 0, 0xa}
	macB   = [6]byte{2, 0, 0, 0, 0, 0xb}
	macR   = [6]byte{2, 0, 0, 0, 0x77, 1} // a remote MAC
	bcast  = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	ip4A   = [4]byte{10, 0, 0, 1}
	ip4R   = [4]byte{10, 0, 0, 9}
	ip6A   = netip.MustParseAddr("2001:db8::1")
	ip6R   = netip.MustParseAddr("2001:db8::9")
	udpSeq atomic.Uint32
)

// neighRig is a switch with a VXLAN port (VNI 100 = VLAN 10, a trunk;
// local 127.0.0.1, flooding to 127.0.0.2 on the loopback) and a host on
// an access port of VLAN 10 that keeps what it gets. The tests hand
// frames to the VXLAN port's Send as the switch would.
type neighRig struct {
	sw *vswitch.Switch
	vx *Port
	ph *vswitch.PortHandle
	h  *host
}

func newNeighRig(t *testing.T, cfg Config, start bool) *neighRig {
	t.Helper()
	netnstest.Need(t)
	netnstest.Run(t, "ip", "link", "set", "lo", "up")
	cfg.Local = netip.MustParseAddr("127.0.0.1")
	cfg.Port = uint16(4900 + udpSeq.Add(1))
	cfg.VNIs = map[uint32]uint16{100: 10}
	cfg.Remotes = []netip.Addr{netip.MustParseAddr("127.0.0.2")}
	vx, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vx.Close() })
	r := &neighRig{sw: vswitch.New(vswitch.Config{}), vx: vx, h: newHost(macA, ip4A)}
	r.ph, err = r.sw.AddPort(vswitch.PortConfig{Name: "vx", Mode: vswitch.ModeTrunk, AllowedVLANs: []uint16{10}}, vx)
	if err != nil {
		t.Fatal(err)
	}
	hh, err := r.sw.AddPort(vswitch.PortConfig{Name: "h", Mode: vswitch.ModeAccess, PVID: 10}, r.h)
	if err != nil {
		t.Fatal(err)
	}
	r.h.h = hh
	if start {
		vx.Start(r.ph)
	}
	return r
}

// send hands one frame to the port's Send and returns how many went.
func (r *neighRig) send(f []byte) int { return r.vx.Send([]vswitch.Frame{{Data: f}}) }

// tagged puts an 802.1Q tag of VLAN 10 into an untagged frame.
func tagged(f []byte) []byte {
	out := make([]byte, 0, len(f)+4)
	out = append(out, f[:12]...)
	out = append(out, 0x81, 0, 0, 10)
	return append(out, f[12:]...)
}

// arp is an Ethernet/IPv4 ARP frame, untagged, padded to 60 bytes.
func arp(dst, src [6]byte, op uint16, sha [6]byte, spa [4]byte, tha [6]byte, tpa [4]byte) []byte {
	f := make([]byte, 60)
	copy(f[0:6], dst[:])
	copy(f[6:12], src[:])
	binary.BigEndian.PutUint16(f[12:], 0x0806)
	a := f[14:]
	binary.BigEndian.PutUint16(a[0:], 1)
	binary.BigEndian.PutUint16(a[2:], 0x0800)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:], op)
	copy(a[8:14], sha[:])
	copy(a[14:18], spa[:])
	copy(a[18:24], tha[:])
	copy(a[24:28], tpa[:])
	return f
}

// testChecksum is the ICMPv6 checksum, computed here apart from the
// port's: the Internet checksum of the pseudo-header (RFC 8200 §8.1)
// followed by the message.
func testChecksum(src, dst netip.Addr, msg []byte) uint16 {
	ph := make([]byte, 0, 40+len(msg))
	ph = append(ph, src.AsSlice()...)
	ph = append(ph, dst.AsSlice()...)
	ph = binary.BigEndian.AppendUint32(ph, uint32(len(msg)))
	ph = append(ph, 0, 0, 0, 58)
	ph = append(ph, msg...)
	return ^csum(ph)
}

func solicited(target netip.Addr) (netip.Addr, [6]byte) {
	t := target.As16()
	return netip.AddrFrom16([16]byte{0xff, 0x02, 11: 1, 12: 0xff, 13: t[13], 14: t[14], 15: t[15]}),
		[6]byte{0x33, 0x33, 0xff, t[13], t[14], t[15]}
}

// nd is an NS or NA frame (untagged), with a link-layer address option
// of type opt (0: none) and a correct checksum.
func nd(dst, src [6]byte, srcIP, dstIP netip.Addr, typ byte, target netip.Addr, opt byte, lla [6]byte) []byte {
	msg := make([]byte, 24)
	msg[0] = typ
	if typ == 136 {
		msg[4] = 0x20 // O
	}
	copy(msg[8:24], target.AsSlice())
	if opt != 0 {
		msg = append(msg, opt, 1)
		msg = append(msg, lla[:]...)
	}
	binary.BigEndian.PutUint16(msg[2:], testChecksum(srcIP, dstIP, msg))
	f := make([]byte, 14+40, 14+40+len(msg))
	copy(f[0:6], dst[:])
	copy(f[6:12], src[:])
	binary.BigEndian.PutUint16(f[12:], 0x86dd)
	ip := f[14:]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(msg)))
	ip[6], ip[7] = 58, 255
	copy(ip[8:24], srcIP.AsSlice())
	copy(ip[24:40], dstIP.AsSlice())
	return append(f, msg...)
}

// ns is a multicast solicitation from A (ip6A) for target.
func ns(target netip.Addr) []byte {
	dip, dmac := solicited(target)
	return nd(dmac, macA, ip6A, dip, 135, target, 1, macA)
}

// refix recomputes an untagged ND frame's checksum after a change.
func refix(f []byte) []byte {
	msg := f[14+40:]
	binary.BigEndian.PutUint16(msg[2:], 0)
	binary.BigEndian.PutUint16(msg[2:], testChecksum(netip.AddrFrom16([16]byte(f[22:38])), netip.AddrFrom16([16]byte(f[38:54])), msg))
	return f
}

func (r *neighRig) local() []string {
	var out []string
	for _, b := range r.vx.LocalIPs() {
		out = append(out, vswitch.MAC(b.MAC).String()+" "+b.IP.String())
	}
	slices.Sort(out)
	return out
}

// Every shape of ARP and ND the port learns from, and every malformed or
// hostile one it ignores (counted), each checked on its own.
func TestSnoop(t *testing.T) {
	type tc struct {
		name    string
		f       []byte
		learned string // the binding it teaches, "" for none
		ignored bool   // counted as ignored
	}
	mut := func(f []byte, m func([]byte)) []byte { m(f); return f }
	bad6 := func(m func([]byte)) []byte { return refix(mut(ns(ip6R), m)) }
	cases := []tc{
		{"arp request", arp(bcast, macA, 1, macA, ip4A, [6]byte{}, ip4R), "02:00:00:00:00:0a 10.0.0.1", false},
		{"arp reply", arp(macR, macA, 2, macA, ip4A, macR, ip4R), "02:00:00:00:00:0a 10.0.0.1", false},
		{"gratuitous arp", arp(bcast, macA, 1, macA, ip4A, [6]byte{}, ip4A), "02:00:00:00:00:0a 10.0.0.1", false},
		{"gratuitous arp reply", arp(bcast, macA, 2, macA, ip4A, bcast, ip4A), "02:00:00:00:00:0a 10.0.0.1", false},
		{"arp probe", arp(bcast, macA, 1, macA, [4]byte{}, [6]byte{}, ip4A), "", false},
		{"short arp", arp(bcast, macA, 1, macA, ip4A, [6]byte{}, ip4R)[:14+20], "", true},
		{"arp hardware type", mut(arp(bcast, macA, 1, macA, ip4A, [6]byte{}, ip4R), func(f []byte) { f[15] = 6 }), "", true},
		{"arp protocol type", mut(arp(bcast, macA, 1, macA, ip4A, [6]byte{}, ip4R), func(f []byte) { f[16] = 0x86 }), "", true},
		{"arp hardware length", mut(arp(bcast, macA, 1, macA, ip4A, [6]byte{}, ip4R), func(f []byte) { f[18] = 8 }), "", true},
		{"arp protocol length", mut(arp(bcast, macA, 1, macA, ip4A, [6]byte{}, ip4R), func(f []byte) { f[19] = 16 }), "", true},
		{"arp opcode 3", arp(bcast, macA, 3, macA, ip4A, [6]byte{}, ip4R), "", true},
		{"arp sender is not the source", arp(bcast, macA, 1, macB, ip4A, [6]byte{}, ip4R), "", true},
		{"arp from a multicast MAC", arp(bcast, [6]byte{1, 0, 0x5e, 0, 0, 1}, 1, [6]byte{1, 0, 0x5e, 0, 0, 1}, ip4A, [6]byte{}, ip4R), "", true},
		{"arp from a zero MAC", arp(bcast, [6]byte{}, 1, [6]byte{}, ip4A, [6]byte{}, ip4R), "", true},
		{"arp claiming a remote MAC", arp(bcast, macR, 1, macR, ip4A, [6]byte{}, ip4R), "", true},
		{"arp broadcast sender IP", arp(bcast, macA, 1, macA, [4]byte{255, 255, 255, 255}, [6]byte{}, ip4R), "", true},
		{"arp multicast sender IP", arp(bcast, macA, 1, macA, [4]byte{224, 0, 0, 1}, [6]byte{}, ip4R), "", true},
		{"arp loopback sender IP", arp(bcast, macA, 1, macA, [4]byte{127, 0, 0, 1}, [6]byte{}, ip4R), "", true},
		{"ns", ns(ip6R), "02:00:00:00:00:0a 2001:db8::1", false},
		{"unicast ns", nd(macR, macA, ip6A, ip6R, 135, ip6R, 1, macA), "02:00:00:00:00:0a 2001:db8::1", false},
		{"na", nd(macR, macA, netip.MustParseAddr("fe80::1"), ip6R, 136, ip6A, 2, macA), "02:00:00:00:00:0a 2001:db8::1", false},
		{"unsolicited na", nd([6]byte{0x33, 0x33, 0, 0, 0, 1}, macA, ip6A, netip.MustParseAddr("ff02::1"), 136, ip6A, 2, macA), "02:00:00:00:00:0a 2001:db8::1", false},
		{"ns without option", nd(macR, macA, ip6A, ip6R, 135, ip6R, 0, macA), "", false},
		{"na without option", nd(macR, macA, ip6A, ip6R, 136, ip6A, 0, macA), "", false},
		{"dad ns", func() []byte {
			dip, dmac := solicited(ip6A)
			return nd(dmac, macA, netip.IPv6Unspecified(), dip, 135, ip6A, 0, macA)
		}(), "", false},
		{"link-local ns", func() []byte {
			dip, dmac := solicited(ip6R)
			return nd(dmac, macA, netip.MustParseAddr("fe80::1"), dip, 135, ip6R, 1, macA)
		}(), "", false},
		{"echo request", mut(ns(ip6R), func(f []byte) { f[54] = 128 }), "", false},
		{"ns bad checksum", mut(ns(ip6R), func(f []byte) { f[56] ^= 1 }), "", true},
		{"ns hop limit 64", bad6(func(f []byte) { f[21] = 64 }), "", true},
		{"ns code 1", bad6(func(f []byte) { f[55] = 1 }), "", true},
		{"ns version 4", bad6(func(f []byte) { f[14] = 0x40 }), "", true},
		{"ns option length 0", bad6(func(f []byte) { f[14+40+25] = 0 }), "", true},
		{"ns option past the end", bad6(func(f []byte) { f[14+40+25] = 2 }), "", true},
		{"ns payload past the frame", mut(ns(ip6R), func(f []byte) { f[19] = 40 }), "", true},
		{"ns payload too short", mut(ns(ip6R), func(f []byte) { f[19] = 16 }), "", true},
		{"ns option is not the source", bad6(func(f []byte) { f[14+40+26+5] = 0xb }), "", true},
		{"ns multicast target", bad6(func(f []byte) { f[14+40+8] = 0xff }), "", true},
		{"ns claiming a remote MAC", nd(macR, macR, ip6A, ip6R, 135, ip6R, 1, macR), "", true},
		{"na from a multicast MAC", nd(macR, [6]byte{0x33, 0x33, 0, 0, 0, 1}, ip6A, ip6R, 136, ip6A, 2, [6]byte{0x33, 0x33, 0, 0, 0, 1}), "", true},
		{"na link-local target", nd(macR, macA, ip6A, ip6R, 136, netip.MustParseAddr("fe80::1"), 2, macA), "", false},
	}
	for _, c := range cases {
		for _, tag := range []bool{false, true} {
			name := c.name
			f := append([]byte(nil), c.f...)
			if tag {
				name += " tagged"
				f = tagged(f)
			}
			t.Run(name, func(t *testing.T) {
				// Tagged: VLAN 10 on a trunk; untagged: the native VLAN.
				var r *neighRig
				if tag {
					r = newNeighRig(t, Config{LearnIPs: true}, false)
				} else {
					r = newNativeRig(t)
				}
				if err := r.vx.SetRemoteMAC(100, macR, netip.MustParseAddr("127.0.0.2")); err != nil {
					t.Fatal(err)
				}
				if n := r.send(f); n != 1 {
					t.Errorf("Send = %d, want 1 (flooded as before)", n)
				}
				got := r.local()
				if c.learned == "" && len(got) != 0 || c.learned != "" && !slices.Equal(got, []string{c.learned}) {
					t.Errorf("learned %q, want %q", got, c.learned)
				}
				if ig := r.vx.Stats().SnoopIgnored; (ig == 1) != c.ignored || ig > 1 {
					t.Errorf("ignored %d, want %v", ig, c.ignored)
				}
			})
		}
	}
}

// newNativeRig is newNeighRig with VLAN 10 the trunk's native VLAN: the
// switch sends its frames untagged.
func newNativeRig(t *testing.T) *neighRig {
	t.Helper()
	netnstest.Need(t)
	netnstest.Run(t, "ip", "link", "set", "lo", "up")
	vx, err := Open(Config{Local: netip.MustParseAddr("127.0.0.1"), Port: uint16(4900 + udpSeq.Add(1)), VNIs: map[uint32]uint16{100: 10},
		NativeVLAN: 10, Remotes: []netip.Addr{netip.MustParseAddr("127.0.0.2")}, LearnIPs: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vx.Close() })
	return &neighRig{vx: vx}
}

// Without LearnIPs nothing is learned.
func TestSnoopOff(t *testing.T) {
	r := newNeighRig(t, Config{}, false)
	r.send(tagged(arp(bcast, macA, 1, macA, ip4A, [6]byte{}, ip4R)))
	r.send(tagged(ns(ip6R)))
	if got := r.local(); len(got) != 0 {
		t.Errorf("learned %q with LearnIPs off", got)
	}
}

// The bounds: a MAC has 4 IPs at most, the table MaxLocalIPs; an IP that
// moves to another MAC leaves the first MAC room for another.
func TestLocalBounds(t *testing.T) {
	r := newNeighRig(t, Config{LearnIPs: true, MaxLocalIPs: 6}, false)
	for i := range 10 { // a flood of distinct IPs from one MAC
		r.send(tagged(arp(bcast, macA, 1, macA, [4]byte{10, 0, 1, byte(i + 1)}, [6]byte{}, ip4R)))
	}
	st := r.vx.Stats()
	if st.LocalIPs != 4 || st.LocalIPsFull != 6 {
		t.Fatalf("after 10 IPs from one MAC: %d bindings, %d full; want 4, 6", st.LocalIPs, st.LocalIPsFull)
	}
	// The same IP again is no new binding and counts nothing.
	r.send(tagged(arp(bcast, macA, 1, macA, [4]byte{10, 0, 1, 1}, [6]byte{}, ip4R)))
	if st := r.vx.Stats(); st.LocalIPs != 4 || st.LocalIPsFull != 6 {
		t.Errorf("a known binding again: %d bindings, %d full", st.LocalIPs, st.LocalIPsFull)
	}
	for i := range 3 {
		r.send(tagged(arp(bcast, macB, 1, macB, [4]byte{10, 0, 2, byte(i + 1)}, [6]byte{}, ip4R)))
	}
	if st := r.vx.Stats(); st.LocalIPs != 6 || st.LocalIPsFull != 7 {
		t.Errorf("table of 6: %d bindings, %d full; want 6, 7", st.LocalIPs, st.LocalIPsFull)
	}
	// 10.0.1.1 moves from A to B: B had 2, now 3; A has 3 and room for one.
	r.send(tagged(arp(bcast, macB, 1, macB, [4]byte{10, 0, 1, 1}, [6]byte{}, ip4R)))
	r.send(tagged(arp(bcast, macA, 1, macA, [4]byte{10, 0, 1, 9}, [6]byte{}, ip4R)))
	want := []string{"02:00:00:00:00:0a 10.0.1.2", "02:00:00:00:00:0a 10.0.1.3", "02:00:00:00:00:0a 10.0.1.4", "02:00:00:00:00:0b 10.0.1.1",
		"02:00:00:00:00:0b 10.0.2.1", "02:00:00:00:00:0b 10.0.2.2"}
	if got := r.local(); !slices.Equal(got, want) {
		t.Errorf("after the move: %q, want %q", got, want)
	}
	// Full table: 10.0.1.9 was not learned. Forgetting one makes room.
	r.vx.DelLocalIP(100, macA, netip.MustParseAddr("10.0.1.2"))
	r.vx.DelLocalIP(100, macA, netip.MustParseAddr("10.0.1.1")) // B's now: stays
	r.send(tagged(arp(bcast, macA, 1, macA, [4]byte{10, 0, 1, 9}, [6]byte{}, ip4R)))
	if got := r.local(); !slices.Contains(got, "02:00:00:00:00:0a 10.0.1.9") || !slices.Contains(got, "02:00:00:00:00:0b 10.0.1.1") ||
		slices.Contains(got, "02:00:00:00:00:0a 10.0.1.2") {
		t.Errorf("after DelLocalIP: %q", got)
	}
}

func TestRemoteIPs(t *testing.T) {
	r := newNeighRig(t, Config{MaxRemoteIPs: 2}, false)
	ipA, ipB, ipC := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")
	for _, ip := range []netip.Addr{ipA, ipB} {
		if err := r.vx.SetRemoteIP(100, macR, ip); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.vx.SetRemoteIP(100, macR, ipC); err == nil {
		t.Error("a third remote IP in a table of 2 was set")
	}
	if err := r.vx.SetRemoteIP(100, macB, ipA); err != nil { // ipA moves to B: no new entry
		t.Errorf("replacing a binding: %v", err)
	}
	for _, bad := range []struct {
		vni uint32
		mac [6]byte
		ip  netip.Addr
	}{{100, macR, netip.MustParseAddr("224.0.0.1")}, {100, macR, netip.MustParseAddr("fe80::1")}, {100, bcast, ipA},
		{100, [6]byte{}, ipA}, {200, macR, ipA}, {100, macR, netip.Addr{}}} {
		if err := r.vx.SetRemoteIP(bad.vni, bad.mac, bad.ip); err == nil {
			t.Errorf("SetRemoteIP(%d, %v, %v) succeeded", bad.vni, vswitch.MAC(bad.mac), bad.ip)
		}
	}
	st := r.vx.Stats()
	if st.RemoteIPs != 2 || st.RemoteIPsFull != 1 {
		t.Errorf("%d remote IPs, %d full; want 2, 1", st.RemoteIPs, st.RemoteIPsFull)
	}
	r.vx.DelRemoteIP(100, macR, ipA) // B's now: stays
	r.vx.DelRemoteIP(100, macR, ipB)
	got := r.vx.RemoteIPs()
	if len(got) != 1 || got[0] != (IPBinding{100, macB, ipA}) {
		t.Errorf("remote IPs %v, want B's %v", got, ipA)
	}
}

// waitFrames waits until the host has n frames (up to 30 s: room for a
// loaded machine; it ends as soon as they are there).
func waitFrames(t *testing.T, h *host, n int) [][]byte {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		fs := h.frames()
		if len(fs) >= n || time.Now().After(deadline) {
			if len(fs) != n {
				t.Fatalf("the host got %d frames, want %d", len(fs), n)
			}
			return fs
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A request for an IP of the remote table is answered, into the switch,
// and not flooded; the answers parse back.
func TestSuppress(t *testing.T) {
	r := newNeighRig(t, Config{LearnIPs: true, Suppress: true}, true)
	if err := r.vx.SetRemoteIP(100, macR, netip.AddrFrom4(ip4R)); err != nil {
		t.Fatal(err)
	}
	if err := r.vx.SetRemoteIP(100, macR, ip6R); err != nil {
		t.Fatal(err)
	}
	if n := r.send(tagged(arp(bcast, macA, 1, macA, ip4A, [6]byte{}, ip4R))); n != 1 {
		t.Fatalf("Send = %d", n)
	}
	st := r.vx.Stats()
	if st.ARPSuppressed != 1 || st.TxPackets != 0 {
		t.Fatalf("arp: %d suppressed, %d sent; want 1, 0", st.ARPSuppressed, st.TxPackets)
	}
	f := waitFrames(t, r.h, 1)[0]
	want := arp(macA, macR, 2, macR, ip4R, macA, ip4A)
	if !slices.Equal(f, want) {
		t.Errorf("ARP reply\n%x\nwant\n%x", f, want)
	}

	if n := r.send(tagged(ns(ip6R))); n != 1 {
		t.Fatalf("Send = %d", n)
	}
	if st := r.vx.Stats(); st.NDSuppressed != 1 || st.TxPackets != 0 {
		t.Fatalf("nd: %d suppressed, %d sent; want 1, 0", st.NDSuppressed, st.TxPackets)
	}
	f = waitFrames(t, r.h, 2)[1]
	if len(f) != 14+40+32 || [6]byte(f[0:6]) != macA || [6]byte(f[6:12]) != macR || binary.BigEndian.Uint16(f[12:]) != 0x86dd {
		t.Fatalf("NA frame %x", f)
	}
	ip := f[14:]
	src, dst := netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
	if ip[0] != 0x60 || binary.BigEndian.Uint16(ip[4:]) != 32 || ip[6] != 58 || ip[7] != 255 || src != ip6R || dst != ip6A {
		t.Errorf("NA IPv6 header %x", ip[:40])
	}
	na := ip[40:]
	if na[0] != 136 || na[1] != 0 || na[4] != 0x40 || netip.AddrFrom16([16]byte(na[8:24])) != ip6R ||
		na[24] != 2 || na[25] != 1 || [6]byte(na[26:32]) != macR {
		t.Errorf("NA %x", na)
	}
	got := binary.BigEndian.Uint16(na[2:])
	binary.BigEndian.PutUint16(na[2:], 0)
	if w := testChecksum(src, dst, na); got != w {
		t.Errorf("NA checksum %#04x, want %#04x", got, w)
	}
	if st := r.vx.Stats(); st.SuppressReplies != 2 {
		t.Errorf("%d replies, want 2", st.SuppressReplies)
	}

	// Not answered, flooded: unknown targets, gratuitous ARP, a probe, a
	// unicast request, a solicitation to another group, DAD.
	dip, dmac := solicited(ip6R)
	for _, f := range [][]byte{
		arp(bcast, macA, 1, macA, ip4A, [6]byte{}, [4]byte{10, 0, 0, 8}),
		arp(bcast, macA, 1, macA, ip4R, [6]byte{}, ip4R),
		arp(bcast, macA, 1, macA, [4]byte{}, [6]byte{}, ip4R),
		arp(macB, macA, 1, macA, ip4A, [6]byte{}, ip4R),
		ns(netip.MustParseAddr("2001:db8::8")),
		nd([6]byte{0x33, 0x33, 0, 0, 0, 1}, macA, ip6A, netip.MustParseAddr("ff02::1"), 135, ip6R, 1, macA),
		nd(dmac, macA, netip.IPv6Unspecified(), dip, 135, ip6R, 0, macA),
		nd(dmac, macR, ip6R, dip, 135, ip6R, 1, macR), // the owner asking for itself
	} {
		before := r.vx.Stats().TxPackets
		if n := r.send(tagged(f)); n != 1 {
			t.Errorf("Send = %d", n)
		}
		if st := r.vx.Stats(); st.TxPackets != before+1 || st.ARPSuppressed != 1 || st.NDSuppressed != 1 {
			t.Errorf("frame %x: %d sent, %d+%d suppressed; want flooded", f[:14], st.TxPackets-before, st.ARPSuppressed, st.NDSuppressed)
		}
	}
	// Withdrawn: flooded again.
	r.vx.DelRemoteIP(100, macR, netip.AddrFrom4(ip4R))
	r.send(tagged(arp(bcast, macA, 1, macA, ip4A, [6]byte{}, ip4R)))
	if st := r.vx.Stats(); st.ARPSuppressed != 1 {
		t.Errorf("after DelRemoteIP: %d suppressed", st.ARPSuppressed)
	}
}

// Untagged (native VLAN) requests are answered untagged; with
// suppression off they are flooded.
func TestSuppressNativeAndOff(t *testing.T) {
	netnstest.Need(t)
	netnstest.Run(t, "ip", "link", "set", "lo", "up")
	for _, on := range []bool{true, false} {
		vx, err := Open(Config{Local: netip.MustParseAddr("127.0.0.1"), Port: uint16(4900 + udpSeq.Add(1)), VNIs: map[uint32]uint16{100: 10},
			NativeVLAN: 10, Remotes: []netip.Addr{netip.MustParseAddr("127.0.0.2")}, Suppress: on})
		if err != nil {
			t.Fatal(err)
		}
		defer vx.Close()
		sw := vswitch.New(vswitch.Config{})
		ph, err := sw.AddPort(vswitch.PortConfig{Name: "vx", Mode: vswitch.ModeTrunk, NativeVLAN: 10}, vx)
		if err != nil {
			t.Fatal(err)
		}
		h := newHost(macA, ip4A)
		if h.h, err = sw.AddPort(vswitch.PortConfig{Name: "h", Mode: vswitch.ModeAccess, PVID: 10}, h); err != nil {
			t.Fatal(err)
		}
		vx.Start(ph)
		vx.SetRemoteIP(100, macR, netip.AddrFrom4(ip4R))
		vx.Send([]vswitch.Frame{{Data: arp(bcast, macA, 1, macA, ip4A, [6]byte{}, ip4R)}})
		st := vx.Stats()
		if on {
			if st.ARPSuppressed != 1 || st.TxPackets != 0 {
				t.Errorf("on: %d suppressed, %d sent", st.ARPSuppressed, st.TxPackets)
			}
			if f := waitFrames(t, h, 1)[0]; !slices.Equal(f, arp(macA, macR, 2, macR, ip4R, macA, ip4A)) {
				t.Errorf("untagged reply %x", f)
			}
		} else if st.ARPSuppressed != 0 || st.TxPackets != 1 {
			t.Errorf("off: %d suppressed, %d sent", st.ARPSuppressed, st.TxPackets)
		}
	}
}

// A full queue of answers: the request is flooded as without
// suppression, and counted; the queued answers are delivered once the
// port runs.
func TestSuppressQueueFull(t *testing.T) {
	r := newNeighRig(t, Config{Suppress: true}, false)
	r.vx.handle.Store(r.ph) // the port answers, but nothing delivers yet
	r.vx.SetRemoteIP(100, macR, netip.AddrFrom4(ip4R))
	for range replyRingSize + 1 {
		r.send(tagged(arp(bcast, macA, 1, macA, ip4A, [6]byte{}, ip4R)))
	}
	st := r.vx.Stats()
	if st.ARPSuppressed != replyRingSize || st.SuppressFull != 1 || st.TxPackets != 1 {
		t.Fatalf("%d suppressed, %d full, %d sent; want %d, 1, 1", st.ARPSuppressed, st.SuppressFull, st.TxPackets, replyRingSize)
	}
	r.vx.Start(r.ph)
	waitFrames(t, r.h, replyRingSize)
	if st := r.vx.Stats(); st.SuppressReplies != replyRingSize {
		t.Errorf("%d replies delivered", st.SuppressReplies)
	}
}

// Send from several goroutines while remote IPs and MACs come and go,
// and the tables are read: every request is either answered or flooded,
// and every answer is delivered (run with -race).
func TestSuppressConcurrent(t *testing.T) {
	r := newNeighRig(t, Config{LearnIPs: true, Suppress: true}, true)
	const senders, each = 4, 500
	stop := make(chan struct{})
	var wg, ctl sync.WaitGroup
	ctl.Add(1)
	go func() {
		defer ctl.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ip := netip.AddrFrom4([4]byte{10, 0, 0, byte(10 + i%4)})
			if i%2 == 0 {
				r.vx.SetRemoteIP(100, macR, ip)
				r.vx.SetRemoteMAC(100, macR, netip.MustParseAddr("127.0.0.2"))
			} else {
				r.vx.DelRemoteIP(100, macR, ip)
				r.vx.DelRemoteMAC(100, macR)
			}
			r.vx.Stats()
			r.vx.LocalIPs()
			r.vx.RemoteIPs()
		}
	}()
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mac := [6]byte{2, 0, 0, 0, 1, byte(s)}
			for i := range each {
				f := tagged(arp(bcast, mac, 1, mac, [4]byte{10, 0, 1, byte(s)}, [6]byte{}, [4]byte{10, 0, 0, byte(10 + i%4)}))
				if n := r.vx.Send([]vswitch.Frame{{Data: f}, {Data: tagged(ns(ip6R))}}); n != 2 {
					t.Errorf("Send = %d", n)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	ctl.Wait()
	st := r.vx.Stats()
	if total := uint64(2 * senders * each); st.ARPSuppressed+st.NDSuppressed+st.TxPackets+st.TxErrors != total {
		t.Errorf("%d answered + %d sent + %d refused, want %d", st.ARPSuppressed+st.NDSuppressed, st.TxPackets, st.TxErrors, total)
	}
	if st.ARPSuppressed == 0 {
		t.Error("nothing was answered")
	}
	if st.LocalIPs != senders+1 { // and A's IPv6 address
		t.Errorf("%d local IPs, want %d", st.LocalIPs, senders+1)
	}
	deadline := time.Now().Add(30 * time.Second)
	for r.vx.Stats().SuppressReplies < st.ARPSuppressed+st.NDSuppressed && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := r.vx.Stats().SuppressReplies; got != st.ARPSuppressed+st.NDSuppressed {
		t.Errorf("%d replies delivered, %d answered", got, st.ARPSuppressed+st.NDSuppressed)
	}
}

// Snooping and answering allocate nothing per frame.
func TestSuppressNoAlloc(t *testing.T) {
	r := newNeighRig(t, Config{LearnIPs: true, Suppress: true}, false)
	r.vx.handle.Store(r.ph) // answers queue (until the queue is full), nothing delivers them
	r.vx.SetRemoteIP(100, macR, ip6R)
	a := tagged(arp(bcast, macA, 1, macA, ip4A, [6]byte{}, ip4R))
	n := tagged(ns(ip6R))
	r.vx.Send([]vswitch.Frame{{Data: a}, {Data: n}}) // the binding and the batch's first use
	fs := make([]vswitch.Frame, 2)
	allocs := testing.AllocsPerRun(100, func() {
		fs[0].Data, fs[1].Data = a, n
		r.vx.Send(fs)
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per Send", allocs)
	}
}

type sinkPort struct{}

func (sinkPort) Send(fs []vswitch.Frame) int { return len(fs) }
func (sinkPort) Caps() vswitch.Caps          { return 0 }

// The cost of answering an ARP request in Send (the answer's delivery
// into the switch runs in the port's own goroutine, beside), and of
// looking at an ARP request that is flooded (the UDP send included).
func BenchmarkSuppress(b *testing.B) {
	netnstest.Need(b)
	netnstest.Run(b, "ip", "link", "set", "lo", "up")
	for _, bc := range []struct {
		name string
		tpa  [4]byte
	}{{"answered", ip4R}, {"flooded", [4]byte{10, 0, 0, 8}}} {
		b.Run(bc.name, func(b *testing.B) {
			vx, err := Open(Config{Local: netip.MustParseAddr("127.0.0.1"), Port: uint16(4900 + udpSeq.Add(1)), VNIs: map[uint32]uint16{100: 10},
				Remotes: []netip.Addr{netip.MustParseAddr("127.0.0.2")}, LearnIPs: true, Suppress: true})
			if err != nil {
				b.Fatal(err)
			}
			defer vx.Close()
			sw := vswitch.New(vswitch.Config{})
			ph, err := sw.AddPort(vswitch.PortConfig{Name: "vx", Mode: vswitch.ModeTrunk, AllowedVLANs: []uint16{10}}, vx)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := sw.AddPort(vswitch.PortConfig{Name: "h", Mode: vswitch.ModeAccess, PVID: 10}, sinkPort{}); err != nil {
				b.Fatal(err)
			}
			vx.Start(ph)
			vx.SetRemoteIP(100, macR, netip.AddrFrom4(ip4R))
			fs := []vswitch.Frame{{Data: tagged(arp(bcast, macA, 1, macA, ip4A, [6]byte{}, bc.tpa))}}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				vx.Send(fs)
			}
			b.StopTimer()
			st := vx.Stats()
			b.ReportMetric(float64(st.SuppressFull), "queue-full")
		})
	}
}
