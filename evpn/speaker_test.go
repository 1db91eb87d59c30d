package evpn

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// Timeouts of the loopback tests: sessions use a 3 s hold time and a 1 s
// connect retry, and GoBGP waits 5 s (its idle hold time) before it
// reconnects a session it reset. Waits end as soon as their condition
// holds: 30 s leaves room for a loaded machine under -race.
const (
	upTimeout    = 30 * time.Second
	routeTimeout = 30 * time.Second
)

// pair is two speakers peering over loopback addresses, each listening on
// its own address and port.
type pair struct {
	a, b       *Speaker
	ra, rb     *recorder
	addrA      netip.Addr
	addrB      netip.Addr
	vtepA      netip.Addr
	vtepB      netip.Addr
	cfgA, cfgB Config
}

// newPair configures (but does not start) two speakers A (127.0.0.1,
// router ID 10.0.0.1, VTEP 192.0.2.1) and B (127.0.0.2, 10.0.0.2,
// 192.0.2.2) in AS 65000.
func newPair(t *testing.T) *pair {
	t.Helper()
	loopbackUp(t)
	p := &pair{
		ra: newRecorder("A"), rb: newRecorder("B"),
		addrA: netip.MustParseAddr("127.0.0.1"), addrB: netip.MustParseAddr("127.0.0.2"),
		vtepA: netip.MustParseAddr("192.0.2.1"), vtepB: netip.MustParseAddr("192.0.2.2"),
	}
	portA, portB := freePort(t, p.addrA), freePort(t, p.addrB)
	common := Config{ASN: 65000, HoldTime: 3 * time.Second, ConnectRetry: time.Second}
	p.cfgA, p.cfgB = common, common
	p.cfgA.RouterID, p.cfgA.VTEP, p.cfgA.LocalAddr, p.cfgA.ListenPort = netip.MustParseAddr("10.0.0.1"), p.vtepA, p.addrA, int32(portA)
	p.cfgB.RouterID, p.cfgB.VTEP, p.cfgB.LocalAddr, p.cfgB.ListenPort = netip.MustParseAddr("10.0.0.2"), p.vtepB, p.addrB, int32(portB)
	p.cfgA.Neighbors = []Neighbor{{Addr: p.addrB, Port: portB}}
	p.cfgB.Neighbors = []Neighbor{{Addr: p.addrA, Port: portA}}
	p.cfgA.Logger, p.cfgB.Logger = testLogger(t, "A"), testLogger(t, "B")
	return p
}

// start starts both speakers (before any route flows: GoBGP's
// StartBgp writes package variables) and waits for the session.
func (p *pair) start(t *testing.T) {
	t.Helper()
	p.a = startSpeaker(t, p.cfgA, p.ra)
	p.b = startSpeaker(t, p.cfgB, p.rb)
	waitFor(t, upTimeout, "A-B session established", func() bool {
		return established(p.a, p.addrB)() && established(p.b, p.addrA)()
	})
	t.Cleanup(func() { p.ra.check(t); p.rb.check(t) })
}

func TestTwoSpeakers(t *testing.T) {
	p := newPair(t)
	p.start(t)
	a, b, ra, rb := p.a, p.b, p.ra, p.rb

	m1, m2 := [6]byte{0x02, 0, 0, 0, 0xa, 1}, [6]byte{0x02, 0, 0, 0, 0xa, 2}
	ip1, ip6 := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("2001:db8::1")
	noIP := netip.Addr{}
	if err := a.AddVNI(100); err != nil {
		t.Fatalf("A.AddVNI: %v", err)
	}
	for _, adv := range []struct {
		mac [6]byte
		ip  netip.Addr
		seq uint32
	}{{m1, ip1, 0}, {m1, ip6, 0}, {m2, noIP, 5}} {
		if err := a.AdvertiseMAC(100, adv.mac, adv.ip, adv.seq); err != nil {
			t.Fatalf("A.AdvertiseMAC(%x, %s, %d): %v", adv.mac, adv.ip, adv.seq, err)
		}
	}
	waitFor(t, routeTimeout, "B to learn A's VTEP in VNI 100", func() bool { return rb.hasVTEP(100, p.vtepA) }, rb)
	waitFor(t, routeTimeout, "B to learn A's MACs", func() bool {
		return rb.hasMAC(100, m1, ip1, p.vtepA, 0)() && rb.hasMAC(100, m1, ip6, p.vtepA, 0)() &&
			rb.hasMAC(100, m2, noIP, p.vtepA, 5)()
	}, rb)
	if n := neighbor(b, p.addrA); n.Received != 4 || n.Accepted != 4 || n.Uptime <= 0 || n.ASN != 65000 {
		t.Errorf("B's view of A = %+v; want 4 routes received and accepted, uptime > 0, AS 65000", n)
	}
	if n := ra.count(); n != 0 {
		t.Errorf("A's handler was called %d times for its own routes:\n%s", n, ra.history())
	}

	// Withdrawal of one MAC/IP.
	if err := a.WithdrawMAC(100, m1, ip6); err != nil {
		t.Fatalf("A.WithdrawMAC: %v", err)
	}
	waitFor(t, routeTimeout, "B to see m1/ip6 withdrawn", rb.noMAC(100, m1, ip6), rb)
	if !rb.hasMAC(100, m1, ip1, p.vtepA, 0)() {
		t.Errorf("withdrawing m1/%s took m1/%s with it:\n%s", ip6, ip1, rb.history())
	}

	// MAC mobility (RFC 7432 §15): m2 moves to B. Seq 0 picks A's 5 + 1;
	// A then withdraws its own route, and each side sees the other's.
	if err := b.AddVNI(100); err != nil {
		t.Fatalf("B.AddVNI: %v", err)
	}
	waitFor(t, routeTimeout, "A to learn B's VTEP", func() bool { return ra.hasVTEP(100, p.vtepB) }, ra)
	if err := b.AdvertiseMAC(100, m2, noIP, 0); err != nil {
		t.Fatalf("B.AdvertiseMAC(m2): %v", err)
	}
	waitFor(t, routeTimeout, "A to see m2 at B with seq 6", ra.hasMAC(100, m2, noIP, p.vtepB, 6), ra)
	waitFor(t, routeTimeout, "B to see A withdraw m2 (it moved)", rb.noMAC(100, m2, noIP), rb)

	// An older sequence number cannot take it back; a newer one can.
	if err := a.AdvertiseMAC(100, m2, noIP, 3); err == nil {
		t.Error("A.AdvertiseMAC(m2, seq 3) after B's seq 6 = nil error")
	}
	if err := a.AdvertiseMAC(100, m2, noIP, 7); err != nil {
		t.Fatalf("A.AdvertiseMAC(m2, seq 7): %v", err)
	}
	waitFor(t, routeTimeout, "B to see m2 back at A with seq 7", rb.hasMAC(100, m2, noIP, p.vtepA, 7), rb)
	waitFor(t, routeTimeout, "A to forget m2 at B", ra.noMAC(100, m2, noIP), ra)

	// Close: B's handler hears everything of A's withdrawn.
	if err := a.Close(); err != nil {
		t.Fatalf("A.Close: %v", err)
	}
	waitFor(t, routeTimeout, "B to see A's routes withdrawn after A.Close", func() bool {
		return !rb.hasVTEP(100, p.vtepA) && rb.noMAC(100, m1, ip1)() && rb.noMAC(100, m2, noIP)()
	}, rb)
	waitFor(t, upTimeout, "B to see the session down", func() bool { return !established(b, p.addrA)() })
}

func TestRouteLimit(t *testing.T) {
	p := newPair(t)
	p.cfgA.MaxRoutesPerPeer = 3
	p.cfgA.RouteLimitRestart = time.Second
	p.start(t)
	a, b := p.a, p.b

	if err := b.AddVNI(200); err != nil {
		t.Fatalf("B.AddVNI: %v", err)
	}
	macs := [][6]byte{{2, 0, 0, 0, 0xb, 1}, {2, 0, 0, 0, 0xb, 2}, {2, 0, 0, 0, 0xb, 3}}
	for _, m := range macs {
		if err := b.AdvertiseMAC(200, m, netip.Addr{}, 0); err != nil {
			t.Fatalf("B.AdvertiseMAC: %v", err)
		}
	}
	// 4 routes > 3: A cuts B and counts it.
	waitFor(t, routeTimeout, "A to cut B for sending too many routes", func() bool {
		return neighbor(a, p.addrB).LimitResets > 0
	})
	waitFor(t, routeTimeout, "A's session with B to go down and be held", func() bool {
		n := neighbor(a, p.addrB)
		return n.State != "established" && n.LimitHeld
	})
	// Back under the limit, B gets back in (after RouteLimitRestart and
	// GoBGP's 5 s idle hold) and its routes are accepted again.
	for _, m := range macs[1:] {
		if err := b.WithdrawMAC(200, m, netip.Addr{}); err != nil {
			t.Fatalf("B.WithdrawMAC: %v", err)
		}
	}
	waitFor(t, 3*upTimeout, "the session to come back with B's 2 routes", func() bool {
		n := neighbor(a, p.addrB)
		return n.State == "established" && n.Received == 2
	})
	waitFor(t, routeTimeout, "A's handler to hold B's VTEP and remaining MAC", func() bool {
		return p.ra.hasVTEP(200, p.vtepB) && p.ra.hasMAC(200, macs[0], netip.Addr{}, p.vtepB, 0)() &&
			p.ra.noMAC(200, macs[1], netip.Addr{})()
	}, p.ra)
	if n := neighbor(a, p.addrB).LimitResets; n == 0 {
		t.Errorf("LimitResets = 0 after the cut")
	}
}

func TestHostileNeighbors(t *testing.T) {
	p := newPair(t)
	fake, stranger := netip.MustParseAddr("127.0.0.3"), netip.MustParseAddr("127.0.0.4")
	// A dials the fake neighbor at a port nobody listens on; the test
	// connects from it instead.
	p.cfgA.Neighbors = append(p.cfgA.Neighbors, Neighbor{Addr: fake, Port: freePort(t, fake)})
	p.start(t)
	if err := p.b.AddVNI(100); err != nil {
		t.Fatalf("B.AddVNI: %v", err)
	}
	mb := [6]byte{2, 0, 0, 0, 0xc, 1}
	if err := p.b.AdvertiseMAC(100, mb, netip.Addr{}, 0); err != nil {
		t.Fatalf("B.AdvertiseMAC: %v", err)
	}
	waitFor(t, routeTimeout, "A to learn B's MAC", p.ra.hasMAC(100, mb, netip.Addr{}, p.vtepB, 0), p.ra)

	attack(t, p.a, p.ra, netip.AddrPortFrom(p.addrA, uint16(p.cfgA.ListenPort)), fake, stranger, p.addrB)

	// A local process cannot pose as GoBGP to the relay: the aliases'
	// listeners take only segments signed with the relay's TCP MD5 key.
	rel := p.a.rel
	if rel.key == "" {
		t.Log("kernel without TCP MD5: internal hop not signed, not checked")
	} else {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(rel.inner, 0)), Timeout: time.Second}
		if c, err := d.Dial("tcp", rel.peers[0].aliasLn.Addr().String()); err == nil {
			c.Close()
			t.Errorf("connected to the relay's listener for B (%s) without the key", rel.peers[0].aliasLn.Addr())
		}
	}

	if !p.ra.hasVTEP(100, p.vtepB) || !p.ra.hasMAC(100, mb, netip.Addr{}, p.vtepB, 0)() {
		t.Errorf("B's routes at A did not survive the attacks:\n%s", p.ra.history())
	}
}

// TestLeafDoesNotTransit: eBGP A-B and A-C. A hears B's MAC but passes
// it on to C neither with A's next hop nor with B's: a hypervisor VTEP is
// a leaf, it advertises only its own routes.
func TestLeafDoesNotTransit(t *testing.T) {
	loopbackUp(t)
	addr := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	type node struct {
		addr, vtep netip.Addr
		asn        uint32
		port       uint16
		rec        *recorder
		sp         *Speaker
	}
	a := &node{addr: addr("127.0.0.5"), vtep: addr("192.0.2.5"), asn: 65001, rec: newRecorder("A")}
	b := &node{addr: addr("127.0.0.6"), vtep: addr("192.0.2.6"), asn: 65002, rec: newRecorder("B")}
	c := &node{addr: addr("127.0.0.7"), vtep: addr("192.0.2.7"), asn: 65003, rec: newRecorder("C")}
	for _, n := range []*node{a, b, c} {
		n.port = freePort(t, n.addr)
	}
	nb := func(n *node) Neighbor { return Neighbor{Addr: n.addr, ASN: n.asn, Port: n.port} }
	for _, n := range []*node{a, b, c} {
		cfg := Config{ASN: n.asn, RouterID: n.vtep, VTEP: n.vtep, LocalAddr: n.addr, ListenPort: int32(n.port),
			HoldTime: 3 * time.Second, ConnectRetry: time.Second, Logger: testLogger(t, n.rec.name)}
		if n == a {
			cfg.Neighbors = []Neighbor{nb(b), nb(c)}
		} else {
			cfg.Neighbors = []Neighbor{nb(a)}
		}
		n.sp = startSpeaker(t, cfg, n.rec)
	}
	waitFor(t, upTimeout, "A's sessions with B and C", func() bool {
		return established(a.sp, b.addr)() && established(a.sp, c.addr)()
	})
	mac := [6]byte{2, 0, 0, 0, 0xd, 1}
	if err := b.sp.AddVNI(300); err != nil {
		t.Fatal(err)
	}
	if err := b.sp.AdvertiseMAC(300, mac, netip.Addr{}, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, routeTimeout, "A to learn B's MAC over eBGP", a.rec.hasMAC(300, mac, netip.Addr{}, b.vtep, 0), a.rec)
	// A's own route, advertised after, reaches C: everything A would
	// have sent C before it has been sent.
	if err := a.sp.AddVNI(300); err != nil {
		t.Fatal(err)
	}
	waitFor(t, routeTimeout, "C to learn A's VTEP (next hop kept over eBGP)", func() bool { return c.rec.hasVTEP(300, a.vtep) }, c.rec)
	if n := neighbor(c.sp, a.addr); n.Received != 1 {
		t.Errorf("C received %d routes from A; want 1 (A's own type-3 only)\n%s", n.Received, c.rec.history())
	}
	if _, ok := c.rec.mac(300, mac, netip.Addr{}); ok || c.rec.hasVTEP(300, b.vtep) {
		t.Errorf("A passed B's routes on to C:\n%s", c.rec.history())
	}
}
