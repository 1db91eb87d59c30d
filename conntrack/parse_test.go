package conntrack

import (
	"testing"
)

func TestParseTCPv4BothDirections(t *testing.T) {
	seg := tcpseg{sport: 40000, dport: 443, seq: 1000, ack: 2000, flags: FlagSYN | FlagACK,
		win: 29200, wscale: 7, paylen: 0}
	l3 := ip4("10.0.0.10", "192.0.2.20", protoTCP, seg.bytes(), ip4opts{df: true, options: 8})
	out := parse4(l3, Outbound)
	if out.Kind != KindTCP || out.Key.Family != 4 || out.Key.Proto != protoTCP {
		t.Fatalf("kind %v family %d proto %d", out.Kind, out.Key.Family, out.Key.Proto)
	}
	if out.Key.Local != key16("10.0.0.10") || out.Key.Remote != key16("192.0.2.20") ||
		out.Key.LPort != 40000 || out.Key.RPort != 443 {
		t.Fatalf("outbound key %+v", out.Key)
	}
	if out.Seq != 1000 || out.Ack != 2000 || out.SAck != 2000 || out.Win != 29200 ||
		out.WScale != 7 || out.Flags != FlagSYN|FlagACK || out.PayLen != 0 || out.FragFirst {
		t.Fatalf("fields %+v", out)
	}
	// The reply, as the remote sends it to the guest: same key.
	rseg := tcpseg{sport: 443, dport: 40000, seq: 2000, ack: 1001, flags: FlagACK | FlagPSH,
		win: 500, wscale: -1, paylen: 100, ts: true}
	in := parse4(ip4("192.0.2.20", "10.0.0.10", protoTCP, rseg.bytes(), ip4opts{}), Inbound)
	if in.Kind != KindTCP || in.Key != out.Key || in.Dir != Inbound {
		t.Fatalf("inbound key %+v, want %+v", in.Key, out.Key)
	}
	if in.PayLen != 100 || in.WScale != -1 || in.Flags != FlagACK|FlagPSH {
		t.Fatalf("inbound fields %+v", in)
	}
}

func TestParseTCPOptions(t *testing.T) {
	// Window scale only counts in a SYN, and is capped at 14.
	for _, c := range []struct {
		flags uint8
		ws    int
		want  int8
	}{{FlagSYN, 7, 7}, {FlagSYN, 15, 14}, {FlagSYN, 200, 14}, {FlagSYN, -1, -1}, {FlagACK, 7, -1}} {
		p := parse4(ip4("10.0.0.1", "10.0.0.2", protoTCP,
			tcpseg{flags: c.flags, wscale: c.ws}.bytes(), ip4opts{}), Outbound)
		if p.WScale != c.want {
			t.Errorf("flags %#x ws %d: WScale %d, want %d", c.flags, c.ws, p.WScale, c.want)
		}
	}
	// SACK: the highest right edge after the ACK, wrap-around aware.
	p := parse4(ip4("10.0.0.1", "10.0.0.2", protoTCP, tcpseg{flags: FlagACK, ack: 0xfffffff0, wscale: -1,
		sack: []uint32{0xfffffff8, 0x00000010, 0x00000020, 0x00000030}}.bytes(), ip4opts{}), Outbound)
	if p.SAck != 0x30 || p.Ack != 0xfffffff0 {
		t.Fatalf("SAck %#x Ack %#x", p.SAck, p.Ack)
	}
	// Malformed options stop option parsing, not the packet.
	raw := tcpseg{flags: FlagSYN, wscale: -1}.bytes()
	raw = append(raw[:20], 3, 0, 1, 1) // window scale with length 0
	raw[12] = 6 << 4
	p = parse4(ip4("10.0.0.1", "10.0.0.2", protoTCP, raw, ip4opts{}), Outbound)
	if p.Kind != KindTCP || p.WScale != -1 {
		t.Fatalf("silly option: %v %d", p.Kind, p.WScale)
	}
	raw = tcpseg{flags: FlagSYN, wscale: -1}.bytes()
	raw = append(raw[:20], 1, 1, 3, 9) // window scale running past the options
	raw[12] = 6 << 4
	p = parse4(ip4("10.0.0.1", "10.0.0.2", protoTCP, raw, ip4opts{}), Outbound)
	if p.Kind != KindTCP || p.WScale != -1 {
		t.Fatalf("partial option: %v %d", p.Kind, p.WScale)
	}
}

func TestParseIgnoresPadding(t *testing.T) {
	l3 := ip4("10.0.0.1", "10.0.0.2", protoUDP, udp(53, 5353, 4), ip4opts{})
	l3 = append(l3, make([]byte, 18)...) // Ethernet padding
	p := parse4(l3, Outbound)
	if p.Kind != KindUDP || p.Key.LPort != 53 || p.Key.RPort != 5353 {
		t.Fatalf("%+v", p)
	}
	tcp := parse4(append(ip4("10.0.0.1", "10.0.0.2", protoTCP, tcpseg{flags: FlagACK, wscale: -1, paylen: 6}.bytes(), ip4opts{}), 0, 0, 0, 0), Inbound)
	if tcp.PayLen != 6 {
		t.Fatalf("PayLen %d counts padding", tcp.PayLen)
	}
}

func TestParseNonIP(t *testing.T) {
	var p Packet
	f := make([]byte, 60)
	Parse(f, 14, 0x0806, Outbound, &p) // ARP
	if p.Kind != KindUntracked || p.Dir != Outbound {
		t.Fatalf("ARP: %v", p.Kind)
	}
	Parse(f, 14, 0x88cc, Inbound, &p) // LLDP
	if p.Kind != KindUntracked || p.Dir != Inbound {
		t.Fatalf("LLDP: %v", p.Kind)
	}
}

// icmpErrKey is what the parser must report as Inner for an error about
// a packet from src:sport to dst:dport, seen by a port whose guest is g.
func TestParseKinds(t *testing.T) {
	type want struct {
		kind   Kind
		proto  uint8
		lp, rp uint16
		reply  bool
	}
	inner4 := ip4("10.0.0.10", "192.0.2.20", protoUDP, udp(40000, 53, 0), ip4opts{})
	cases := []struct {
		name string
		p    Packet
		w    want
	}{
		{"udp4 out", parse4(ip4("10.0.0.10", "192.0.2.20", protoUDP, udp(40000, 53, 10), ip4opts{}), Outbound),
			want{KindUDP, protoUDP, 40000, 53, false}},
		{"udp4 in", parse4(ip4("192.0.2.20", "10.0.0.10", protoUDP, udp(53, 40000, 10), ip4opts{}), Inbound),
			want{KindUDP, protoUDP, 40000, 53, false}},
		{"udp6", parse6(ip6("2001:db8::10", "2001:db8::20", nil, protoUDP, udp(1, 2, 0)), Outbound),
			want{KindUDP, protoUDP, 1, 2, false}},
		{"echo req", parse4(ip4("10.0.0.10", "192.0.2.20", protoICMP, icmpMsg(8, 0, 777, 1, nil), ip4opts{}), Outbound),
			want{KindICMPEcho, protoICMP, 777, 0, false}},
		{"echo reply", parse4(ip4("192.0.2.20", "10.0.0.10", protoICMP, icmpMsg(0, 0, 777, 1, nil), ip4opts{}), Inbound),
			want{KindICMPEcho, protoICMP, 777, 0, true}},
		{"echo6 req", parse6(ip6("2001:db8::10", "2001:db8::20", nil, protoICMPv6, icmpMsg(128, 0, 9, 1, nil)), Outbound),
			want{KindICMPEcho, protoICMPv6, 9, 0, false}},
		{"echo6 reply", parse6(ip6("2001:db8::20", "2001:db8::10", nil, protoICMPv6, icmpMsg(129, 0, 9, 1, nil)), Inbound),
			want{KindICMPEcho, protoICMPv6, 9, 0, true}},
		{"icmp timestamp", parse4(ip4("10.0.0.10", "192.0.2.20", protoICMP, icmpMsg(13, 0, 1, 1, make([]byte, 12)), ip4opts{}), Outbound),
			want{KindOther, protoICMP, 0, 0, false}},
		{"icmp6 node info", parse6(ip6("2001:db8::10", "2001:db8::20", nil, protoICMPv6, icmpMsg(139, 0, 1, 1, nil)), Outbound),
			want{KindOther, protoICMPv6, 0, 0, false}},
		{"gre", parse4(ip4("10.0.0.10", "192.0.2.20", 47, make([]byte, 8), ip4opts{}), Outbound),
			want{KindOther, 47, 0, 0, false}},
		{"esp6", parse6(ip6("2001:db8::10", "2001:db8::20", nil, protoESP, make([]byte, 16)), Outbound),
			want{KindOther, protoESP, 0, 0, false}},
		{"no next header", parse6(ip6("2001:db8::10", "2001:db8::20", []ext6hdr{opts6(protoDstOpts, 1)}, protoNoNext, nil), Outbound),
			want{KindOther, protoNoNext, 0, 0, false}},
		{"icmp4 in ipv6", parse6(ip6("2001:db8::10", "2001:db8::20", nil, protoICMP, icmpMsg(8, 0, 1, 1, nil)), Outbound),
			want{KindOther, protoICMP, 0, 0, false}},
		{"icmp6 in ipv4", parse4(ip4("10.0.0.10", "192.0.2.20", protoICMPv6, icmpMsg(128, 0, 1, 1, nil), ip4opts{}), Outbound),
			want{KindOther, protoICMPv6, 0, 0, false}},
		{"icmp error", parse4(ip4("192.0.2.1", "10.0.0.10", protoICMP, icmpMsg(3, 3, 0, 0, inner4), ip4opts{}), Inbound),
			want{KindICMPError, protoICMP, 0, 0, false}},
	}
	for _, c := range cases {
		p := c.p
		if p.Kind != c.w.kind || p.Key.Proto != c.w.proto || p.Key.LPort != c.w.lp || p.Key.RPort != c.w.rp || p.EchoReply != c.w.reply {
			t.Errorf("%s: kind %v proto %d ports %d/%d reply %v; want %+v", c.name, p.Kind, p.Key.Proto,
				p.Key.LPort, p.Key.RPort, p.EchoReply, c.w)
		}
		if p.Key.Family != 4 && p.Key.Family != 6 {
			t.Errorf("%s: family %d", c.name, p.Key.Family)
		}
	}
	// Every ND and MLD type is untracked; the other ICMPv6 informational
	// types are not.
	for typ := 128; typ < 256; typ++ {
		p := parse6(ip6("fe80::1", "ff02::1", nil, protoICMPv6, icmpMsg(uint8(typ), 0, 0, 0, make([]byte, 16))), Outbound)
		nd := typ >= 130 && typ <= 137 || typ == 143
		if nd != (p.Kind == KindUntracked) {
			t.Errorf("icmpv6 type %d: %v", typ, p.Kind)
		}
	}
	// IPv6 addresses as they are; IPv4 ones IPv4-mapped.
	p := parse6(ip6("2001:db8::10", "2001:db8::20", nil, protoUDP, udp(1, 2, 0)), Inbound)
	if p.Key.Local != key16("2001:db8::20") || p.Key.Remote != key16("2001:db8::10") {
		t.Fatalf("v6 addresses %+v", p.Key)
	}
	if m := key16("10.0.0.10"); m[10] != 0xff || m[11] != 0xff || m[0] != 0 {
		t.Fatalf("mapped form %v", m)
	}
}

func TestParseIPv6ExtensionHeaders(t *testing.T) {
	seg := tcpseg{sport: 5000, dport: 22, flags: FlagACK, wscale: -1, paylen: 33}.bytes()
	exts := []ext6hdr{opts6(protoHopByHop, 1), opts6(protoDstOpts, 2), opts6(protoRouting, 3),
		{typ: protoAH, body: make([]byte, 22)}, opts6(protoDstOpts, 1)}
	p := parse6(ip6("2001:db8::1", "2001:db8::2", exts, protoTCP, seg), Outbound)
	if p.Kind != KindTCP || p.Key.Proto != protoTCP || p.Key.LPort != 5000 || p.Key.RPort != 22 || p.PayLen != 33 {
		t.Fatalf("%+v", p)
	}
	// MaxExtHeaders headers pass, one more does not.
	var many []ext6hdr
	for range MaxExtHeaders {
		many = append(many, opts6(protoDstOpts, 1))
	}
	if p := parse6(ip6("2001:db8::1", "2001:db8::2", many, protoTCP, seg), Outbound); p.Kind != KindTCP {
		t.Fatalf("%d headers: %v", MaxExtHeaders, p.Kind)
	}
	many = append(many, opts6(protoDstOpts, 1))
	if p := parse6(ip6("2001:db8::1", "2001:db8::2", many, protoTCP, seg), Outbound); p.Kind != KindMalformed {
		t.Fatalf("%d headers: %v", len(many), p.Kind)
	}
	// Hop-by-Hop after another header (RFC 8200 §4.1).
	bad := []ext6hdr{opts6(protoDstOpts, 1), opts6(protoHopByHop, 1)}
	if p := parse6(ip6("2001:db8::1", "2001:db8::2", bad, protoTCP, seg), Outbound); p.Kind != KindMalformed {
		t.Fatalf("late hop-by-hop: %v", p.Kind)
	}
}

func TestParseMalformed(t *testing.T) {
	good4 := ip4("10.0.0.1", "10.0.0.2", protoTCP, tcpseg{flags: FlagACK, wscale: -1}.bytes(), ip4opts{})
	good6 := ip6("2001:db8::1", "2001:db8::2", nil, protoTCP, tcpseg{flags: FlagACK, wscale: -1}.bytes())
	mod := func(b []byte, f func([]byte)) []byte {
		c := append([]byte(nil), b...)
		f(c)
		return c
	}
	v4 := map[string][]byte{
		"short":          good4[:19],
		"version":        mod(good4, func(b []byte) { b[0] = 0x65 }),
		"ihl 4":          mod(good4, func(b []byte) { b[0] = 0x44 }),
		"ihl past end":   mod(good4, func(b []byte) { b[0] = 0x4f; bin.PutUint16(b[2:], 60) }),
		"total > frame":  mod(good4, func(b []byte) { bin.PutUint16(b[2:], uint16(len(b)+1)) }),
		"total < ihl":    mod(good4, func(b []byte) { bin.PutUint16(b[2:], 19) }),
		"tcp short":      ip4("10.0.0.1", "10.0.0.2", protoTCP, make([]byte, 19), ip4opts{}),
		"tcp doff 4":     mod(good4, func(b []byte) { b[20+12] = 4 << 4 }),
		"tcp doff big":   mod(good4, func(b []byte) { b[20+12] = 6 << 4 }),
		"udp short":      ip4("10.0.0.1", "10.0.0.2", protoUDP, make([]byte, 7), ip4opts{}),
		"udp len 7":      ip4("10.0.0.1", "10.0.0.2", protoUDP, mod(udp(1, 2, 0), func(b []byte) { b[5] = 7 }), ip4opts{}),
		"udp len big":    ip4("10.0.0.1", "10.0.0.2", protoUDP, mod(udp(1, 2, 0), func(b []byte) { b[5] = 9 }), ip4opts{}),
		"icmp short":     ip4("10.0.0.1", "10.0.0.2", protoICMP, make([]byte, 7), ip4opts{}),
		"icmp err no ip": ip4("10.0.0.1", "10.0.0.2", protoICMP, icmpMsg(3, 1, 0, 0, make([]byte, 19)), ip4opts{}),
		"icmp err no l4": ip4("10.0.0.1", "10.0.0.2", protoICMP, icmpMsg(11, 0, 0, 0,
			ip4("10.0.0.2", "10.0.0.3", protoUDP, nil, ip4opts{})), ip4opts{}),
		"icmp err about err": ip4("10.0.0.1", "10.0.0.2", protoICMP, icmpMsg(3, 1, 0, 0,
			ip4("10.0.0.2", "10.0.0.3", protoICMP, icmpMsg(3, 1, 0, 0, nil), ip4opts{})), ip4opts{}),
		"icmp err about fragment": ip4("10.0.0.1", "10.0.0.2", protoICMP, icmpMsg(3, 1, 0, 0,
			ip4("10.0.0.2", "10.0.0.3", protoUDP, udp(1, 2, 0), ip4opts{fragOff: 3})), ip4opts{}),
	}
	for name, b := range v4 {
		if p := parse4(b, Outbound); p.Kind != KindMalformed {
			t.Errorf("v4 %s: %v", name, p.Kind)
		}
	}
	v6 := map[string][]byte{
		"short":          good6[:39],
		"version":        mod(good6, func(b []byte) { b[0] = 0x40 }),
		"plen 0":         mod(good6, func(b []byte) { bin.PutUint16(b[4:], 0) }),
		"plen > frame":   mod(good6, func(b []byte) { bin.PutUint16(b[4:], uint16(len(b)-39)) }),
		"ext truncated":  ip6("2001:db8::1", "2001:db8::2", []ext6hdr{opts6(protoDstOpts, 1)}, protoTCP, nil)[:44],
		"ext len past":   mod(ip6("2001:db8::1", "2001:db8::2", []ext6hdr{opts6(protoDstOpts, 1)}, protoUDP, udp(1, 2, 0)), func(b []byte) { b[41] = 5 }),
		"icmp6 short":    ip6("2001:db8::1", "2001:db8::2", nil, protoICMPv6, make([]byte, 3)),
		"echo6 short":    ip6("2001:db8::1", "2001:db8::2", nil, protoICMPv6, []byte{128, 0, 0, 0, 0, 1}),
		"err6 no ip":     ip6("2001:db8::1", "2001:db8::2", nil, protoICMPv6, icmpMsg(1, 4, 0, 0, make([]byte, 39))),
		"err6 about err": ip6("2001:db8::1", "2001:db8::2", nil, protoICMPv6, icmpMsg(1, 4, 0, 0, ip6("2001:db8::2", "2001:db8::3", nil, protoICMPv6, icmpMsg(2, 0, 0, 0, nil)))),
	}
	for name, b := range v6 {
		if p := parse6(b, Outbound); p.Kind != KindMalformed {
			t.Errorf("v6 %s: %v", name, p.Kind)
		}
	}
	// l3 out of the frame, for IP only.
	var p Packet
	f, _ := eth(EtherTypeIPv4, good4, false)
	for _, off := range []int{-1, len(f) + 1, len(f)} {
		Parse(f, off, EtherTypeIPv4, Outbound, &p)
		if p.Kind != KindMalformed {
			t.Errorf("l3 %d: %v", off, p.Kind)
		}
	}
	Parse(nil, 14, EtherTypeIPv6, Outbound, &p)
	if p.Kind != KindMalformed {
		t.Errorf("nil frame: %v", p.Kind)
	}
}

func TestParseICMPErrorInner(t *testing.T) {
	g, r, router := "10.0.0.10", "192.0.2.20", "198.51.100.1"
	g6, r6, router6 := "2001:db8::10", "2001:db8:1::20", "2001:db8:ff::1"
	wantOut := Key{Local: key16(g), Remote: key16(r), LPort: 40000, RPort: 53, Proto: protoUDP, Family: 4}
	wantOut6 := Key{Local: key16(g6), Remote: key16(r6), LPort: 40000, RPort: 53, Proto: protoUDP, Family: 6}
	for _, typ := range []uint8{3, 4, 5, 11, 12} {
		// Inbound: a router tells the guest its packet to r failed.
		q := ip4(g, r, protoUDP, udp(40000, 53, 100), ip4opts{})
		p := parse4(ip4(router, g, protoICMP, icmpMsg(typ, 0, 0, 0, q[:28]), ip4opts{}), Inbound)
		if p.Kind != KindICMPError || p.Inner != wantOut {
			t.Errorf("v4 type %d inbound: %v inner %+v", typ, p.Kind, p.Inner)
		}
		if p.Key.Local != key16(g) || p.Key.Remote != key16(router) || p.Key.Proto != protoICMP {
			t.Errorf("v4 type %d: outer key %+v", typ, p.Key)
		}
		// Outbound: the guest tells r its packet to the guest failed.
		q = ip4(r, g, protoUDP, udp(53, 40000, 100), ip4opts{})
		p = parse4(ip4(g, r, protoICMP, icmpMsg(typ, 3, 0, 0, q), ip4opts{}), Outbound)
		if p.Kind != KindICMPError || p.Inner != wantOut {
			t.Errorf("v4 type %d outbound: %v inner %+v", typ, p.Kind, p.Inner)
		}
	}
	for _, typ := range []uint8{1, 2, 3, 4} {
		q := ip6(g6, r6, []ext6hdr{opts6(protoDstOpts, 1)}, protoUDP, udp(40000, 53, 100))
		p := parse6(ip6(router6, g6, nil, protoICMPv6, icmpMsg(typ, 0, 0, 0, q)), Inbound)
		if p.Kind != KindICMPError || p.Inner != wantOut6 {
			t.Errorf("v6 type %d inbound: %v inner %+v", typ, p.Kind, p.Inner)
		}
		q = ip6(r6, g6, nil, protoUDP, udp(53, 40000, 100))
		p = parse6(ip6(g6, r6, nil, protoICMPv6, icmpMsg(typ, 0, 0, 0, q)), Outbound)
		if p.Kind != KindICMPError || p.Inner != wantOut6 {
			t.Errorf("v6 type %d outbound: %v inner %+v", typ, p.Kind, p.Inner)
		}
	}
	// An error about an echo request carries its identifier; about TCP,
	// its ports from 4 bytes of quote.
	q := ip4(g, r, protoICMP, icmpMsg(8, 0, 4242, 7, nil), ip4opts{})
	p := parse4(ip4(router, g, protoICMP, icmpMsg(11, 0, 0, 0, q), ip4opts{}), Inbound)
	if p.Kind != KindICMPError || p.Inner.LPort != 4242 || p.Inner.Proto != protoICMP || p.Inner.Local != key16(g) {
		t.Errorf("echo inner %v %+v", p.Kind, p.Inner)
	}
	q = ip4(g, r, protoTCP, tcpseg{sport: 40001, dport: 80, wscale: -1}.bytes(), ip4opts{})
	p = parse4(ip4(router, g, protoICMP, icmpMsg(3, 4, 0, 1400, q[:24]), ip4opts{}), Inbound)
	if p.Kind != KindICMPError || p.Inner.LPort != 40001 || p.Inner.RPort != 80 || p.Inner.Proto != protoTCP {
		t.Errorf("tcp inner %v %+v", p.Kind, p.Inner)
	}
}

func TestParseFragments(t *testing.T) {
	seg := tcpseg{sport: 1, dport: 2, flags: FlagACK, wscale: -1, paylen: 100}.bytes()
	// IPv4 first fragment: tracked by its TCP header, PayLen an upper bound.
	p := parse4(ip4("10.0.0.1", "10.0.0.2", protoTCP, seg, ip4opts{id: 0x1234, mf: true}), Outbound)
	if p.Kind != KindTCP || !p.FragFirst || p.FragID != 0x1234 || p.FragOff != 0 || p.PayLen < 100 {
		t.Fatalf("v4 first: %+v", p)
	}
	// Later fragment.
	p = parse4(ip4("10.0.0.1", "10.0.0.2", protoTCP, make([]byte, 64), ip4opts{id: 0x1234, fragOff: 16, mf: true}), Outbound)
	if p.Kind != KindFragment || p.FragFirst || p.FragID != 0x1234 || p.FragOff != 16 || p.Key.Proto != protoTCP {
		t.Fatalf("v4 later: %+v", p)
	}
	// Tiny first fragments (RFC 1858 §3): TCP under 20 bytes, UDP/ICMP under 8.
	for _, c := range []struct {
		proto uint8
		n     int
	}{{protoTCP, 16}, {protoUDP, 4}, {protoICMP, 4}} {
		p = parse4(ip4("10.0.0.1", "10.0.0.2", c.proto, make([]byte, c.n), ip4opts{id: 1, mf: true}), Outbound)
		if p.Kind != KindMalformed || !p.FragFirst {
			t.Errorf("tiny first proto %d: %v first %v", c.proto, p.Kind, p.FragFirst)
		}
	}
	// A UDP first fragment's length field covers the whole datagram.
	u := udp(1, 2, 3000)[:1480]
	p = parse4(ip4("10.0.0.1", "10.0.0.2", protoUDP, u, ip4opts{id: 9, mf: true}), Outbound)
	if p.Kind != KindUDP || !p.FragFirst {
		t.Fatalf("udp first: %+v", p)
	}
	// IPv6.
	p = parse6(ip6("2001:db8::1", "2001:db8::2", []ext6hdr{frag6(0, true, 0xdeadbeef)}, protoUDP, u), Outbound)
	if p.Kind != KindUDP || !p.FragFirst || p.FragID != 0xdeadbeef {
		t.Fatalf("v6 first: %+v", p)
	}
	p = parse6(ip6("2001:db8::1", "2001:db8::2", []ext6hdr{frag6(185, false, 0xdeadbeef)}, protoUDP, make([]byte, 100)), Outbound)
	if p.Kind != KindFragment || p.FragOff != 185 || p.FragID != 0xdeadbeef {
		t.Fatalf("v6 later: %+v", p)
	}
	// Atomic fragment (RFC 6946): a whole packet.
	p = parse6(ip6("2001:db8::1", "2001:db8::2", []ext6hdr{frag6(0, false, 5)}, protoUDP, udp(1, 2, 0)), Outbound)
	if p.Kind != KindUDP || p.FragFirst {
		t.Fatalf("atomic: %+v", p)
	}
	// RFC 7112: a first fragment without the transport header.
	cut := ip6("2001:db8::1", "2001:db8::2", []ext6hdr{frag6(0, true, 6), opts6(protoDstOpts, 2)}, protoTCP, nil)[:40+8+8]
	bin.PutUint16(cut[4:], 16)
	p = parse6(cut, Outbound)
	if p.Kind != KindMalformed || !p.FragFirst {
		t.Fatalf("v6 first without header: %v first %v", p.Kind, p.FragFirst)
	}
	p = parse6(ip6("2001:db8::1", "2001:db8::2", []ext6hdr{frag6(0, true, 6)}, protoTCP, make([]byte, 12)), Outbound)
	if p.Kind != KindMalformed || !p.FragFirst {
		t.Fatalf("v6 first with partial TCP: %v first %v", p.Kind, p.FragFirst)
	}
	// Two fragment headers.
	p = parse6(ip6("2001:db8::1", "2001:db8::2", []ext6hdr{frag6(0, true, 6), frag6(0, true, 7)}, protoUDP, udp(1, 2, 0)), Outbound)
	if p.Kind != KindMalformed {
		t.Fatalf("two fragment headers: %v", p.Kind)
	}
}

func TestParseNoAlloc(t *testing.T) {
	f, off := eth(EtherTypeIPv6, ip6("2001:db8::1", "2001:db8::2", []ext6hdr{opts6(protoHopByHop, 1)}, protoTCP,
		tcpseg{flags: FlagACK, wscale: -1, sack: []uint32{1, 2}, paylen: 1000}.bytes()), false)
	var p Packet
	if n := testing.AllocsPerRun(100, func() { Parse(f, off, EtherTypeIPv6, Inbound, &p) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
