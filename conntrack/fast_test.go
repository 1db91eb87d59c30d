package conntrack

import (
	"maps"
	"testing"
	"unsafe"
)

// TestFastTransitions: what tcpFastAck leaves out of tcpPacket is
// a no-op for the segments TrackFast takes: their flags are valid ACKs,
// and the state table keeps ESTABLISHED in both directions.
func TestFastTransitions(t *testing.T) {
	n := 0
	for f := range 64 {
		flags := uint8(f)
		if flags&^(FlagPSH|FlagURG) != FlagACK {
			continue
		}
		n++
		if !tcpValidFlags(flags) || tcpIndex(flags) != tiAck {
			t.Errorf("flags %#x: valid %v, class %d", flags, tcpValidFlags(flags), tcpIndex(flags))
		}
	}
	if n != 4 {
		t.Fatalf("%d flag combinations", n)
	}
	for d := range 2 {
		if next := tcpTrans[d][tiAck][tcpEstablished]; next != tcpEstablished {
			t.Errorf("direction %d: ACK in ESTABLISHED goes to %s", d, tcpStateNames[next])
		}
	}
}

// fastConn is an established IPv4 connection (a handshake with window
// scaling and timestamps) in a zone, and frames of it to try.
func fastConn(t *testing.T, z *Zone) *tcpConnTest {
	t.Helper()
	c := newTCPTest(t, z, false, 1000, 9000)
	c.twin = nil // the tests below change the zone behind its back
	c.guest.ws, c.remote.ws = 7, 7
	c.handshake()
	c.expect("data", c.send(c.guest, FlagACK|FlagPSH, 100, true), Established)
	c.expect("ack", c.send(c.remote, FlagACK, 0, true), Reply)
	return c
}

// TestTrackFastDeclines: every frame the fast path does not take, it
// leaves alone: false, and the zone (entries in every field, counters)
// and the cache's verdicts as they were.
func TestTrackFastDeclines(t *testing.T) {
	z := newZone(t, Config{})
	c := fastConn(t, z)
	// Another connection, not yet established.
	syn := newTCPTest(t, z, false, 5, 6)
	syn.twin = nil
	syn.gp = 41000
	syn.expect("syn", syn.send(syn.guest, FlagSYN, 0, true), New)

	good := tcpseg{seq: c.guest.nxt, ack: c.guest.rcv, flags: FlagACK, win: c.guest.win, wscale: -1, ts: true, paylen: 10}
	frame := func(s tcpseg) ([]byte, int, uint16) { return c.frame(c.guest, s) }
	type tc struct {
		name string
		f    []byte
		l3   int
		et   uint16
		dir  Dir
	}
	var cases []tc
	add := func(name string, f []byte, l3 int, et uint16) {
		cases = append(cases, tc{name, f, l3, et, Outbound})
	}
	{
		f, l3, et := frame(good)
		// The frame itself is taken (checked below); its variants not.
		add("ipv6", f, l3, EtherTypeIPv6)
		cases = append(cases, tc{"no direction", f, l3, et, Inbound + 1})
		add("arp", f, l3, 0x0806)
		add("l3 past the frame", f, len(f)+1, et)
		add("l3 negative", f, -1, et)
		add("truncated to 39 bytes of l3", f[:l3+39], l3, et)
		add("truncated in the options", f[:l3+45], l3, et)
		for _, m := range []struct {
			name string
			off  int
			v    byte
		}{
			{"version 6", 0, 0x65}, {"ihl 6", 0, 0x46}, {"udp", 9, protoUDP},
			{"more fragments", 6, 0x20}, {"offset", 7, 1},
			{"total past the frame", 2, 0xff}, {"total below the tcp header", 3, 39},
			{"data offset 4", 32, 0x40}, {"data offset 6", 32, 0x60}, {"data offset 15", 32, 0xf0},
			{"timestamps laid out otherwise", 40, 8},
		} {
			g := append([]byte(nil), f...)
			g[l3+m.off] = m.v
			add(m.name, g, l3, et)
		}
		for _, fl := range []uint8{FlagSYN, FlagSYN | FlagACK, FlagFIN | FlagACK, FlagRST, FlagRST | FlagACK, 0, FlagPSH, FlagURG} {
			g := append([]byte(nil), f...)
			g[l3+33] = fl
			add("flags", g, l3, et)
		}
	}
	s := good
	s.ts, s.sack = false, []uint32{c.guest.rcv - 100, c.guest.rcv}
	f, l3, et := frame(s)
	add("sack", f, l3, et)
	s = good
	s.ts, s.wscale = false, 7
	f, l3, et = frame(s)
	add("window scale option", f, l3, et)
	f, l3, et = syn.frame(syn.guest, tcpseg{seq: syn.guest.nxt, flags: FlagACK, win: 1000, wscale: -1})
	add("not established", f, l3, et)
	g := append([]byte(nil), f...)
	g[l3+23]++ // another port: no entry
	add("no entry", g, l3, et)

	var hc HintCache
	for _, k := range cases {
		before, cb := zoneEntries(z), z.Counters()
		if v, ok := z.TrackFast(k.f, len(k.f), k.l3, k.et, k.dir, c.now, &hc); ok {
			t.Errorf("%s: taken (%v)", k.name, v)
		}
		if after, ca := zoneEntries(z), z.Counters(); !maps.Equal(before, after) || ca != cb {
			t.Errorf("%s: the zone changed", k.name)
		}
	}
	// The frame they were made of is taken.
	f, l3, et = frame(good)
	if v, ok := z.TrackFast(f, len(f), l3, et, Outbound, c.now, &hc); !ok || v != Established {
		t.Fatalf("the good frame: %v %v", v, ok)
	}
	// An expired entry is the general path's (which removes it).
	before := zoneEntries(z)
	if v, ok := z.TrackFast(f, len(f), l3, et, Outbound, c.now+600*sec, &hc); ok {
		t.Fatalf("expired: taken (%v)", v)
	}
	if !maps.Equal(before, zoneEntries(z)) {
		t.Fatal("expired: the zone changed")
	}
}

// TestTrackFastFrameLen: the IP total length is checked against the
// whole frame (a head and a tail), not the head alone; the payload
// length is the IP header's.
func TestTrackFastFrameLen(t *testing.T) {
	z := newZone(t, Config{})
	c := fastConn(t, z)
	f, l3, et := c.frame(c.guest, tcpseg{seq: c.guest.nxt, ack: c.guest.rcv, flags: FlagACK, win: c.guest.win, wscale: -1, ts: true, paylen: 1000})
	head := f[:128]
	var hc HintCache
	if v, ok := z.TrackFast(head, len(f)-1, l3, et, Outbound, c.now, &hc); ok {
		t.Fatalf("total past the frame: taken (%v)", v)
	}
	if v, ok := z.TrackFast(head, len(f), l3, et, Outbound, c.now, &hc); !ok || v != Established {
		t.Fatalf("head of a whole frame: %v %v", v, ok)
	}
	p := c.packet(c.guest, tcpseg{flags: FlagACK, wscale: -1})
	e, _ := rawEntry(z, &p.Key)
	if want := c.guest.nxt + 1000; e.tcp.seen[0].end != want {
		t.Fatalf("end %d, want %d", e.tcp.seen[0].end, want)
	}
}

// TestHintCacheStale: a cache slot whose connection was removed, swept,
// flushed, or whose slot another connection took, and slots shared by
// two connections or two zones: the verdicts are those of the general
// path every time.
func TestHintCacheStale(t *testing.T) {
	tb := NewTable(Config{Timeouts: Timeouts{TCPClose: 1}})
	z, z2 := tb.NewZone(), tb.NewZone()
	var hc HintCache
	mk := func(z *Zone, gp uint16) *tcpConnTest {
		c := newTCPTest(t, z, false, 1000, 9000)
		c.twin = nil
		c.gp = gp
		c.hint, c.hints = Hint{}, HintCache{}
		return c
	}
	// Two connections of one slot: ports found by search.
	a := mk(z, 40000)
	slotOf := func(c *tcpConnTest) *hintSet {
		f, l3, _ := c.frame(c.guest, tcpseg{flags: FlagACK, wscale: -1})
		b := f[l3:]
		return hc.set(uint64(le.Uint32(b[12:16]))|uint64(le.Uint32(b[16:20]))<<32, uint32(be.Uint16(b[20:22]))|uint32(be.Uint16(b[22:24]))<<16)
	}
	keyOf := func(c *tcpConnTest) *Key { p := c.packet(c.guest, tcpseg{flags: FlagACK, wscale: -1}); return &p.Key }
	// Three connections of one set of two slots.
	b := mk(z, 40001)
	for slotOf(b) != slotOf(a) {
		b.gp++
	}
	b3 := mk(z, b.gp+1)
	for slotOf(b3) != slotOf(a) {
		b3.gp++
	}
	track := func(c *tcpConnTest, e *tcpEp, want Verdict) {
		t.Helper()
		f, l3, et := c.frame(e, tcpseg{seq: e.nxt, ack: e.rcv, flags: FlagACK, win: e.win, wscale: -1})
		if v, _ := trackFrame(c.z, f, l3, et, e.dir, c.now, &hc, &c.hint); v != want {
			t.Fatalf("verdict %v, want %v", v, want)
		}
	}
	for _, c := range []*tcpConnTest{a, b, b3} {
		c.handshake()
	}
	for range 3 { // alternating in one set
		track(a, a.guest, Established)
		track(b, b.remote, Reply)
		track(b3, b3.guest, Established)
	}
	// The same connection in another zone, through the same cache.
	a2 := mk(z2, a.gp)
	a2.handshake()
	track(a2, a2.guest, Established)
	track(a, a.guest, Established)

	// Removed (a RST closes it, the close timeout passes, a sweep), then
	// another connection of its shard takes its slab slot: the slot is
	// stale, and the frame takes the general path (a loose pickup).
	sa0, tag0 := z.shardOf(keyOf(a))
	_, aSlab, _ := sa0.find(keyOf(a), tag0)
	a.expect("rst", a.send(a.guest, FlagRST|FlagACK, 0, true), Established)
	if n := z.Sweep(a.now + 10); n != 1 {
		t.Fatalf("swept %d", n)
	}
	c := mk(z, a.gp+1)
	for sa, _ := z.shardOf(keyOf(a)); ; c.gp++ {
		if s, _ := z.shardOf(keyOf(c)); s == sa {
			break
		}
	}
	c.handshake()
	if sc, tag := z.shardOf(keyOf(c)); sc != sa0 {
		t.Fatal("not the same shard")
	} else if _, ic, _ := sc.find(keyOf(c), tag); ic != aSlab {
		t.Fatalf("the new connection took slab slot %d, not the old one's (%d)", ic, aSlab)
	}
	track(a, a.guest, New)
	track(a, a.guest, Established)
	track(c, c.guest, Established)
	z.Flush()
	track(a, a.guest, New)
	track(a, a.guest, Established)
	track(b, b.guest, New)
}

// TestHintCacheLayout: a set of a HintCache is one cache line, and the
// sets are allocated together, 64-byte aligned.
func TestHintCacheLayout(t *testing.T) {
	if n := unsafe.Sizeof(hintSet{}); n != 64 {
		t.Fatalf("a set is %d bytes", n)
	}
	var c HintCache
	c.set(1, 2)
	if p := uintptr(unsafe.Pointer(c.sets)); p%64 != 0 {
		t.Fatalf("sets at %#x", p)
	}
}

// TestHintCacheSeeded: the set a key lands in depends on the cache's
// seed, so that no tenant can aim keys at another port's sets; and
// TrackFast works without a cache.
func TestHintCacheSeeded(t *testing.T) {
	var a, b HintCache
	a.set(0, 0)
	b.set(0, 0)
	for a.seed == b.seed { // 2^-64
		b = HintCache{}
		b.set(0, 0)
	}
	differ := 0
	for k := range 64 {
		addrs, ports := uint64(0x0100000a_0101000a)+uint64(k)<<56, uint32(40000+k)|80<<16
		sa := a.set(addrs, ports)
		sb := b.set(addrs, ports)
		if uintptr(unsafe.Pointer(sa))-uintptr(unsafe.Pointer(a.sets)) != uintptr(unsafe.Pointer(sb))-uintptr(unsafe.Pointer(b.sets)) {
			differ++
		}
	}
	if differ < 32 {
		t.Fatalf("%d of 64 keys in another set under another seed", differ)
	}
	z := newZone(t, Config{})
	c := fastConn(t, z)
	f, l3, et := c.frame(c.guest, tcpseg{seq: c.guest.nxt, ack: c.guest.rcv, flags: FlagACK, win: c.guest.win, wscale: -1})
	if v, ok := z.TrackFast(f, len(f), l3, et, Outbound, c.now, nil); !ok || v != Established {
		t.Fatalf("without a cache: %v %v", v, ok)
	}
}
