package conntrack

import (
	"testing"
	"time"
)

const (
	guest4, remote4, router4 = "10.0.0.10", "192.0.2.20", "198.51.100.1"
	guest6, remote6, router6 = "2001:db8::10", "2001:db8:1::20", "2001:db8:ff::1"
)

func udpOut(v6 bool, gp, rp uint16) Packet {
	if v6 {
		return parse6(ip6(guest6, remote6, nil, protoUDP, udp(gp, rp, 20)), Outbound)
	}
	return parse4(ip4(guest4, remote4, protoUDP, udp(gp, rp, 20), ip4opts{}), Outbound)
}

func udpIn(v6 bool, gp, rp uint16) Packet {
	if v6 {
		return parse6(ip6(remote6, guest6, nil, protoUDP, udp(rp, gp, 20)), Inbound)
	}
	return parse4(ip4(remote4, guest4, protoUDP, udp(rp, gp, 20), ip4opts{}), Inbound)
}

func echo(v6 bool, dir Dir, reply bool, id uint16) Packet {
	src, dst := guest4, remote4
	if v6 {
		src, dst = guest6, remote6
	}
	if dir == Inbound {
		src, dst = dst, src
	}
	if v6 {
		typ := uint8(128)
		if reply {
			typ = 129
		}
		return parse6(ip6(src, dst, nil, protoICMPv6, icmpMsg(typ, 0, id, 1, nil)), dir)
	}
	typ := uint8(8)
	if reply {
		typ = 0
	}
	return parse4(ip4(src, dst, protoICMP, icmpMsg(typ, 0, id, 1, nil), ip4opts{}), dir)
}

func entryOf(z *Zone, k Key, now int64) (Entry, bool) {
	var got Entry
	found := false
	z.Entries(now, func(e Entry) bool {
		if e.Key == k {
			got, found = e, true
			return false
		}
		return true
	})
	return got, found
}

func expectV(t *testing.T, what string, got, want Verdict) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: %v, want %v", what, got, want)
	}
}

func TestUDPPseudoConnection(t *testing.T) {
	forFamilies(t, func(t *testing.T, v6 bool) {
		z := newZone(t, Config{})
		now := 100 * sec
		out, in := udpOut(v6, 5353, 53), udpIn(v6, 5353, 53)
		expectV(t, "first", z.Track(&out, now), New)
		if !z.Commit(&out, now) {
			t.Fatal("commit")
		}
		e, _ := entryOf(z, out.Key, now)
		if e.State != "UNREPLIED" || e.Origin != Outbound || e.Expires != 30*time.Second || e.Packets != [2]uint64{1, 0} {
			t.Fatalf("entry %+v", e)
		}
		expectV(t, "again", z.Track(&out, now+sec), Established)
		expectV(t, "reply", z.Track(&in, now+2*sec), Reply)
		e, _ = entryOf(z, out.Key, now+2*sec)
		if e.State != "REPLIED" || e.Expires != 120*time.Second || e.Packets != [2]uint64{2, 1} {
			t.Fatalf("entry %+v", e)
		}
		// Replied: 120 s from the last frame.
		expectV(t, "late reply", z.Track(&in, now+121*sec), Reply)
		expectV(t, "after 120 s idle", z.Track(&in, now+242*sec), New)

		// Unreplied: a reply after 30 s is New, not Reply.
		out2, in2 := udpOut(v6, 6000, 53), udpIn(v6, 6000, 53)
		expectV(t, "first", trackCommit(z, &out2, now), New)
		expectV(t, "reply after timeout", z.Track(&in2, now+30*sec), New)
		// Origin is whoever sent first.
		if !z.Commit(&in2, now+30*sec) {
			t.Fatal("commit inbound")
		}
		expectV(t, "outbound is now the reply", z.Track(&out2, now+31*sec), Reply)
	})
}

func TestICMPEcho(t *testing.T) {
	forFamilies(t, func(t *testing.T, v6 bool) {
		z := newZone(t, Config{})
		now := 100 * sec
		req, rep := echo(v6, Outbound, false, 77), echo(v6, Inbound, true, 77)
		if req.Key != rep.Key {
			t.Fatalf("request key %+v, reply key %+v", req.Key, rep.Key)
		}
		expectV(t, "unsolicited reply", z.Track(&rep, now), Invalid)
		if z.Commit(&rep, now) {
			t.Fatal("a reply opened an entry")
		}
		expectV(t, "request", trackCommit(z, &req, now), New)
		expectV(t, "reply", z.Track(&rep, now+sec), Reply)
		expectV(t, "next request", z.Track(&req, now+2*sec), Established)
		e, _ := entryOf(z, req.Key, now+2*sec)
		if e.State != "REPLIED" || e.Expires != 30*time.Second {
			t.Fatalf("%+v", e)
		}
		// The remote's own request with the same identifier is not a
		// reply: rules decide.
		rreq := echo(v6, Inbound, false, 77)
		expectV(t, "remote request", z.Track(&rreq, now+3*sec), New)
		// After 30 s without traffic, a reply is not related to anything.
		expectV(t, "late reply", z.Track(&rep, now+33*sec), Invalid)
	})
}

func TestOtherProtocol(t *testing.T) {
	z := newZone(t, Config{})
	now := 100 * sec
	gre := parse4(ip4(guest4, remote4, 47, make([]byte, 8), ip4opts{}), Outbound)
	greBack := parse4(ip4(remote4, guest4, 47, make([]byte, 8), ip4opts{}), Inbound)
	expectV(t, "gre", trackCommit(z, &gre, now), New)
	expectV(t, "gre back", z.Track(&greBack, now+599*sec), Reply)
	expectV(t, "gre idle", z.Track(&greBack, now+1200*sec), New)
	// An ICMP timestamp request (KindOther) and an echo with identifier
	// 0 share a key; neither passes as the other's reply.
	ts := parse4(ip4(guest4, remote4, protoICMP, icmpMsg(13, 0, 0, 0, make([]byte, 12)), ip4opts{}), Outbound)
	e0 := echo(false, Inbound, true, 0)
	expectV(t, "timestamp", trackCommit(z, &ts, now), New)
	if ts.Key != e0.Key {
		t.Fatal("keys differ")
	}
	expectV(t, "echo reply id 0", z.Track(&e0, now), New)
}

func TestICMPErrorRelated(t *testing.T) {
	forFamilies(t, func(t *testing.T, v6 bool) {
		z := newZone(t, Config{})
		now := 100 * sec
		g, r, rt := guest4, remote4, router4
		if v6 {
			g, r, rt = guest6, remote6, router6
		}
		// errIn: a router's error to the guest about the guest's UDP
		// packet from gp to rp; errOut: the guest's error to the remote
		// about the remote's packet from rp to the guest's gp.
		errIn := func(gp, rp uint16) Packet {
			if v6 {
				return parse6(ip6(rt, g, nil, protoICMPv6, icmpMsg(2, 0, 0, 1400, ip6(g, r, nil, protoUDP, udp(gp, rp, 1400)))), Inbound)
			}
			q := ip4(g, r, protoUDP, udp(gp, rp, 1400), ip4opts{df: true})
			return parse4(ip4(rt, g, protoICMP, icmpMsg(3, 4, 0, 1400, q[:28]), ip4opts{}), Inbound)
		}
		errOut := func(gp, rp uint16) Packet {
			if v6 {
				return parse6(ip6(g, r, nil, protoICMPv6, icmpMsg(1, 4, 0, 0, ip6(r, g, nil, protoUDP, udp(rp, gp, 10)))), Outbound)
			}
			return parse4(ip4(g, r, protoICMP, icmpMsg(3, 3, 0, 0, ip4(r, g, protoUDP, udp(rp, gp, 10), ip4opts{})), ip4opts{}), Outbound)
		}
		e := errIn(4000, 53)
		expectV(t, "error, no connection", z.Track(&e, now), Invalid)
		if z.Commit(&e, now) {
			t.Fatal("an error opened an entry")
		}
		out := udpOut(v6, 4000, 53)
		expectV(t, "udp", trackCommit(z, &out, now), New)
		expectV(t, "error about it", z.Track(&e, now+sec), Related)
		other := errIn(4001, 53)
		expectV(t, "error about another port", z.Track(&other, now+sec), Invalid)
		// The guest's error about a connection the remote opened.
		o := errOut(7000, 9999)
		expectV(t, "guest's error, no connection", z.Track(&o, now), Invalid)
		in := udpIn(v6, 7000, 9999)
		expectV(t, "inbound udp", trackCommit(z, &in, now), New)
		expectV(t, "guest's error about it", z.Track(&o, now+sec), Related)
		// Related does not refresh: when the connection times out, so
		// does the relation.
		expectV(t, "error after timeout", z.Track(&e, now+31*sec), Invalid)
		c := z.Counters()
		if c.Related != 2 || c.Invalid != 4 {
			t.Fatalf("counters %+v", c)
		}
	})
}

func TestICMPErrorAboutTCPAndEcho(t *testing.T) {
	z := newZone(t, Config{})
	c := newTCPTest(t, z, false, 1000, 2000)
	c.handshake()
	q := ip4(c.g, c.r, protoTCP, tcpseg{sport: c.gp, dport: c.rp, seq: 1001, flags: FlagACK, wscale: -1, paylen: 1400}.bytes(), ip4opts{df: true})
	e := parse4(ip4(router4, c.g, protoICMP, icmpMsg(3, 4, 0, 1280, q[:28]), ip4opts{}), Inbound)
	expectV(t, "frag needed for tcp", z.Track(&e, c.now), Related)
	req := echo(false, Outbound, false, 5)
	expectV(t, "ping", trackCommit(z, &req, c.now), New)
	qe := ip4(guest4, remote4, protoICMP, icmpMsg(8, 0, 5, 1, nil), ip4opts{})
	te := parse4(ip4(router4, guest4, protoICMP, icmpMsg(11, 0, 0, 0, qe), ip4opts{}), Inbound)
	expectV(t, "time exceeded for ping", z.Track(&te, c.now), Related)
}

func TestUntracked(t *testing.T) {
	z := newZone(t, Config{})
	ns := parse6(ip6("fe80::1", "ff02::1:ff00:10", nil, protoICMPv6, icmpMsg(135, 0, 0, 0, make([]byte, 16))), Inbound)
	expectV(t, "neighbour solicitation", z.Track(&ns, 0), Untracked)
	if !z.Commit(&ns, 0) || z.Len() != 0 {
		t.Fatal("untracked commit")
	}
	var arp Packet
	Parse(make([]byte, 42), 14, 0x0806, Outbound, &arp)
	expectV(t, "arp", z.Track(&arp, 0), Untracked)
	var bad Packet
	Parse(make([]byte, 20), 14, EtherTypeIPv4, Outbound, &bad)
	expectV(t, "malformed", z.Track(&bad, 0), Invalid)
	if z.Commit(&bad, 0) {
		t.Fatal("malformed commit")
	}
}
