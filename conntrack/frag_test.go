package conntrack

import (
	"testing"
)

// udpFrags returns the first and a later fragment of a UDP datagram with
// identification id from src to dst (IPv4 or IPv6), as seen in dir.
func udpFrags(v6 bool, src, dst string, sport, dport uint16, id uint32, dir Dir) (first, later Packet) {
	dgram := udp(sport, dport, 3000)
	if v6 {
		first = parse6(ip6(src, dst, []ext6hdr{frag6(0, true, id)}, protoUDP, dgram[:1448]), dir)
		later = parse6(ip6(src, dst, []ext6hdr{frag6(181, false, id)}, protoUDP, dgram[1448:]), dir)
		return first, later
	}
	first = parse4(ip4(src, dst, protoUDP, dgram[:1480], ip4opts{id: uint16(id), mf: true}), dir)
	later = parse4(ip4(src, dst, protoUDP, dgram[1480:], ip4opts{id: uint16(id), fragOff: 185}), dir)
	return first, later
}

func TestFragments(t *testing.T) {
	forFamilies(t, func(t *testing.T, v6 bool) {
		g, r := guest4, remote4
		if v6 {
			g, r = guest6, remote6
		}
		z := newZone(t, Config{})
		now := 10 * sec
		first, later := udpFrags(v6, g, r, 5000, 53, 0x1111, Outbound)
		if first.Kind != KindUDP || !first.FragFirst || later.Kind != KindFragment {
			t.Fatalf("kinds %v %v", first.Kind, later.Kind)
		}
		// A later fragment before its first: Invalid.
		expectV(t, "later before first", z.Track(&later, now), Invalid)
		// The first is New; the caller's rules deny it: not remembered.
		expectV(t, "first", z.Track(&first, now), New)
		expectV(t, "later after a denied first", z.Track(&later, now), Invalid)
		// Allowed and committed: the later fragments pass.
		if !z.Commit(&first, now) {
			t.Fatal("commit")
		}
		expectV(t, "later", z.Track(&later, now+sec), Established)
		expectV(t, "later again (duplicate)", z.Track(&later, now+2*sec), Established)
		// The reply, fragmented too: Reply, remembered by Track itself.
		rfirst, rlater := udpFrags(v6, r, g, 53, 5000, 0x2222, Inbound)
		expectV(t, "reply later first", z.Track(&rlater, now), Invalid)
		expectV(t, "reply first", z.Track(&rfirst, now), Reply)
		expectV(t, "reply later", z.Track(&rlater, now), Reply)
		// The same identification from another address is not the same
		// datagram; nor the same in the other direction.
		_, stranger := udpFrags(v6, r, g, 53, 5000, 0x1111, Inbound)
		expectV(t, "other direction", z.Track(&stranger, now), Invalid)
		// After FragLifetime, forgotten.
		expectV(t, "later after 30 s", z.Track(&later, now+int64(FragLifetime)), Invalid)
		c := z.Counters()
		if c.FragDropped != 5 || c.Invalid != 5 {
			t.Fatalf("counters %+v", c)
		}
	})
}

func TestFragmentsTinyAndOverlapping(t *testing.T) {
	z := newZone(t, Config{})
	// RFC 1858: a TCP fragment at offset 1 (8 bytes) could rewrite the
	// flags of the first. Invalid even when its first fragment passed.
	seg := tcpseg{sport: 40000, dport: 80, seq: 1, ack: 1, flags: FlagACK, win: 100, wscale: -1, paylen: 100}.bytes()
	full := parse4(ip4(guest4, remote4, protoTCP, seg[:40], ip4opts{id: 9, mf: true}), Outbound)
	expectV(t, "first", trackCommit(z, &full, 0), New)
	off1 := parse4(ip4(guest4, remote4, protoTCP, make([]byte, 16), ip4opts{id: 9, fragOff: 1, mf: true}), Outbound)
	expectV(t, "offset 1", z.Track(&off1, 0), Invalid)
	off5 := parse4(ip4(guest4, remote4, protoTCP, seg[40:], ip4opts{id: 9, fragOff: 5}), Outbound)
	expectV(t, "offset 5", z.Track(&off5, 0), Established)
	// A tiny first fragment (TCP header cut): Invalid, not remembered.
	tiny := parse4(ip4(guest4, remote4, protoTCP, seg[:16], ip4opts{id: 10, mf: true}), Outbound)
	expectV(t, "tiny first", z.Track(&tiny, 0), Invalid)
	rest := parse4(ip4(guest4, remote4, protoTCP, seg[16:], ip4opts{id: 10, fragOff: 2}), Outbound)
	expectV(t, "after tiny", z.Track(&rest, 0), Invalid)
	// IPv6: a first fragment without the TCP header (RFC 7112).
	p6 := parse6(ip6(guest6, remote6, []ext6hdr{frag6(0, true, 11)}, protoTCP, seg[:12]), Outbound)
	expectV(t, "v6 first without header", z.Track(&p6, 0), Invalid)
	if c := z.Counters(); c.FragDropped != 4 {
		t.Fatalf("FragDropped %d", c.FragDropped)
	}
}

func TestFragmentCacheBound(t *testing.T) {
	z := newZone(t, Config{})
	now := 5 * sec
	// The zone's own connection and its fragmented datagram.
	first, later := udpFrags(false, guest4, remote4, 5000, 53, 1, Outbound)
	expectV(t, "first", trackCommit(z, &first, now), New)
	// A flood of first fragments of one connection, all passing.
	for id := uint32(2); id < 8*FragCacheSize; id++ {
		f, _ := udpFrags(false, guest4, remote4, 5000, 53, id, Outbound)
		expectV(t, "flood", z.Track(&f, now), Established)
	}
	c := z.Counters()
	if c.FragCacheFull < 6*FragCacheSize || c.FragCacheFull > 8*FragCacheSize {
		t.Fatalf("FragCacheFull %d", c.FragCacheFull)
	}
	// The cache did not grow: the oldest were replaced.
	n := 0
	for _, s := range z.frags.slots {
		if s.expires != 0 {
			n++
		}
	}
	if n != FragCacheSize {
		t.Fatalf("%d slots used", n)
	}
	// The newest are remembered.
	_, l := udpFrags(false, guest4, remote4, 5000, 53, 8*FragCacheSize-1, Outbound)
	expectV(t, "newest", z.Track(&l, now), Established)
	expectV(t, "the oldest was replaced", z.Track(&later, now), Invalid)
	// Without the flood, nothing is counted full.
	z2 := newZone(t, Config{})
	for id := range uint32(FragCacheSize / 4) {
		f, _ := udpFrags(false, guest4, remote4, 5000, 53, id, Outbound)
		trackCommit(z2, &f, now)
	}
	if c := z2.Counters(); c.FragCacheFull > 8 {
		t.Fatalf("a quarter-full cache counted %d full", c.FragCacheFull)
	}
	// Flush forgets.
	z.Flush()
	expectV(t, "after flush", z.Track(&l, now), Invalid)
}

func TestFragmentNoAllocation(t *testing.T) {
	z := newZone(t, Config{})
	first, later := udpFrags(true, guest6, remote6, 5000, 53, 7, Outbound)
	trackCommit(z, &first, 0)
	if n := testing.AllocsPerRun(100, func() {
		z.Track(&first, 0)
		z.Track(&later, 0)
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
