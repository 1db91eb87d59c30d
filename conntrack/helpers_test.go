package conntrack

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
)

// Frame builders for the tests: every header is written field by field
// with encoding/binary, independently of the parser.

var bin = binary.BigEndian

const sec = int64(time.Second)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// key16 is an address as a Key stores it (IPv4-mapped for IPv4).
func key16(s string) [16]byte { return addr(s).As16() }

// eth prepends an Ethernet header (and optional 802.1Q tag) to l3; it
// returns the frame and the offset of l3.
func eth(etype uint16, l3 []byte, vlan bool) ([]byte, int) {
	h := make([]byte, 14, 18+len(l3))
	copy(h[0:6], []byte{2, 0, 0, 0, 0, 1})
	copy(h[6:12], []byte{2, 0, 0, 0, 0, 2})
	if vlan {
		bin.PutUint16(h[12:], 0x8100)
		h = append(h, 0, 10)
		h = bin.AppendUint16(h, etype)
	} else {
		bin.PutUint16(h[12:], etype)
	}
	return append(h, l3...), len(h)
}

// ip4opts describes an IPv4 header.
type ip4opts struct {
	id      uint16
	fragOff uint16 // in 8-byte units
	mf, df  bool
	options int // bytes of IP options (multiple of 4)
	ttl     uint8
}

func ip4(src, dst string, proto uint8, payload []byte, o ip4opts) []byte {
	ihl := 20 + o.options
	h := make([]byte, ihl, ihl+len(payload))
	h[0] = 0x40 | uint8(ihl/4)
	bin.PutUint16(h[2:], uint16(ihl+len(payload)))
	bin.PutUint16(h[4:], o.id)
	fo := o.fragOff
	if o.mf {
		fo |= 0x2000
	}
	if o.df {
		fo |= 0x4000
	}
	bin.PutUint16(h[6:], fo)
	h[8] = 64
	h[9] = proto
	s, d := addr(src).As4(), addr(dst).As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	for i := 20; i < ihl; i++ {
		h[i] = 1 // NOP options
	}
	return append(h, payload...)
}

// ext6hdr is one IPv6 extension header for ip6.
type ext6hdr struct {
	typ  uint8
	body []byte // for 0/43/60/51 the bytes after next-header/length; for 44 use frag6
}

// frag6 returns a Fragment header (RFC 8200 §4.5).
func frag6(off uint16, more bool, id uint32) ext6hdr {
	b := make([]byte, 6)
	fo := off << 3
	if more {
		fo |= 1
	}
	bin.PutUint16(b[0:], fo)
	bin.PutUint32(b[2:], id)
	return ext6hdr{typ: protoFragment, body: b}
}

// opts6 returns a Hop-by-Hop/Routing/Destination Options header of
// 8*n bytes.
func opts6(typ uint8, n int) ext6hdr {
	b := make([]byte, 8*n-2)
	if typ != protoRouting && len(b) > 0 {
		b[0] = 1 // PadN
		b[1] = uint8(len(b) - 2)
	}
	return ext6hdr{typ: typ, body: b}
}

func ip6(src, dst string, exts []ext6hdr, proto uint8, payload []byte) []byte {
	var chain []byte
	for i, x := range exts {
		nh := proto
		if i+1 < len(exts) {
			nh = exts[i+1].typ
		}
		hdr := []byte{nh, 0}
		switch x.typ {
		case protoFragment:
			hdr = append(hdr[:1], 0)
		case protoAH:
			hdr[1] = uint8((2+len(x.body))/4 - 2)
		default:
			hdr[1] = uint8((2+len(x.body))/8 - 1)
		}
		chain = append(chain, append(hdr, x.body...)...)
	}
	first := proto
	if len(exts) > 0 {
		first = exts[0].typ
	}
	h := make([]byte, 40, 40+len(chain)+len(payload))
	h[0] = 0x60
	bin.PutUint16(h[4:], uint16(len(chain)+len(payload)))
	h[6] = first
	h[7] = 64
	s, d := addr(src).As16(), addr(dst).As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	h = append(h, chain...)
	return append(h, payload...)
}

// tcpseg describes a TCP segment.
type tcpseg struct {
	sport, dport uint16
	seq, ack     uint32
	flags        uint8
	win          uint16
	wscale       int      // -1 none
	sack         []uint32 // pairs of left, right edges
	ts           bool     // timestamps option
	paylen       int
	doff         int // override the data offset (words), 0: computed
}

func (s tcpseg) bytes() []byte {
	var opt []byte
	if s.wscale >= 0 {
		opt = append(opt, 1, 3, 3, uint8(s.wscale))
	}
	if s.ts {
		opt = append(opt, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2)
	}
	if len(s.sack) > 0 {
		opt = append(opt, 1, 1, 5, uint8(2+4*len(s.sack)))
		for _, v := range s.sack {
			opt = bin.AppendUint32(opt, v)
		}
	}
	for len(opt)%4 != 0 {
		opt = append(opt, 0)
	}
	doff := 20 + len(opt)
	h := make([]byte, 20, doff+s.paylen)
	bin.PutUint16(h[0:], s.sport)
	bin.PutUint16(h[2:], s.dport)
	bin.PutUint32(h[4:], s.seq)
	bin.PutUint32(h[8:], s.ack)
	w := doff / 4
	if s.doff != 0 {
		w = s.doff
	}
	h[12] = uint8(w << 4)
	h[13] = s.flags
	bin.PutUint16(h[14:], s.win)
	h = append(h, opt...)
	return append(h, make([]byte, s.paylen)...)
}

func udp(sport, dport uint16, paylen int) []byte {
	h := make([]byte, 8+paylen)
	bin.PutUint16(h[0:], sport)
	bin.PutUint16(h[2:], dport)
	bin.PutUint16(h[4:], uint16(8+paylen))
	return h
}

// icmpMsg returns an ICMP/ICMPv6 message: type, code, checksum 0, the
// 4 bytes of rest (identifier and sequence for echo), body.
func icmpMsg(typ, code uint8, id, seqno uint16, body []byte) []byte {
	h := make([]byte, 8, 8+len(body))
	h[0], h[1] = typ, code
	bin.PutUint16(h[4:], id)
	bin.PutUint16(h[6:], seqno)
	return append(h, body...)
}

// parse4 / parse6 parse an L3 packet in an Ethernet frame.
func parse4(l3 []byte, dir Dir) Packet {
	f, off := eth(EtherTypeIPv4, l3, false)
	var p Packet
	Parse(f, off, EtherTypeIPv4, dir, &p)
	return p
}

func parse6(l3 []byte, dir Dir) Packet {
	f, off := eth(EtherTypeIPv6, l3, true)
	var p Packet
	Parse(f, off, EtherTypeIPv6, dir, &p)
	return p
}

// track parses and tracks; on New it commits (rules always allow) and
// reports New (or Invalid if the commit failed).
func trackCommit(z *Zone, p *Packet, now int64) Verdict {
	v := z.Track(p, now)
	if v == New && !z.Commit(p, now) {
		return Invalid
	}
	return v
}

// ---- a TCP connection between the guest (behind the zone's port) and
// a remote host, with endpoint models for realistic sequences.

type tcpEp struct {
	dir Dir    // the direction of what this end sends
	nxt uint32 // next sequence number to send
	rcv uint32 // next sequence number expected from the peer (what it ACKs)
	win uint16 // advertised window (unscaled value in the header)
	ws  int    // window scale it offers in its SYN, -1 none
}

type tcpConnTest struct {
	t      *testing.T
	z      *Zone
	now    int64
	v6     bool
	g, r   string // guest and remote addresses
	gp, rp uint16
	guest  *tcpEp
	remote *tcpEp
	sackOn bool

	// Frames are tracked as a switch tracks them (trackFrame: TrackFast,
	// else the general path) with hint; twin, when set (newTCPTest sets
	// it), is a zone of a table of its own that tracks the same frames
	// with the general path only (Parse, Track, Commit) and must agree:
	// the same verdicts, and the connection's entry the same in every
	// field.
	hint  Hint
	hints HintCache
	twin  *Zone
	// Segments TrackFast took, and how many of those it found Invalid.
	fast, fastInvalid int
}

func newTCPTest(t *testing.T, z *Zone, v6 bool, giss, riss uint32) *tcpConnTest {
	c := &tcpConnTest{t: t, z: z, now: 1000 * sec, v6: v6, gp: 40000, rp: 443,
		guest:  &tcpEp{dir: Outbound, nxt: giss, win: 64240, ws: -1},
		remote: &tcpEp{dir: Inbound, nxt: riss, win: 65160, ws: -1},
	}
	if v6 {
		c.g, c.r = "2001:db8::10", "2001:db8:1::20"
	} else {
		c.g, c.r = "10.0.0.10", "192.0.2.20"
	}
	if z != nil {
		c.twin = NewTable(z.t.cfg).NewZone()
	}
	return c
}

// frame builds the frame of a segment from end e.
func (c *tcpConnTest) frame(e *tcpEp, s tcpseg) (f []byte, l3 int, et uint16) {
	src, dst := c.g, c.r
	s.sport, s.dport = c.gp, c.rp
	if e.dir == Inbound {
		src, dst = c.r, c.g
		s.sport, s.dport = c.rp, c.gp
	}
	if c.v6 {
		f, l3 = eth(EtherTypeIPv6, ip6(src, dst, nil, protoTCP, s.bytes()), true)
		return f, l3, EtherTypeIPv6
	}
	f, l3 = eth(EtherTypeIPv4, ip4(src, dst, protoTCP, s.bytes(), ip4opts{df: true}), false)
	return f, l3, EtherTypeIPv4
}

// packet builds the frame of a segment from end e and parses it.
func (c *tcpConnTest) packet(e *tcpEp, s tcpseg) Packet {
	f, l3, et := c.frame(e, s)
	var p Packet
	Parse(f, l3, et, e.dir, &p)
	return p
}

// track tracks the segment s from e (trackFrame), and checks that the
// twin, tracking it with the general path, agrees.
func (c *tcpConnTest) track(e *tcpEp, s tcpseg) Verdict {
	f, l3, et := c.frame(e, s)
	var p Packet
	Parse(f, l3, et, e.dir, &p)
	if p.Kind != KindTCP {
		c.t.Fatalf("built segment parsed as %v", p.Kind)
	}
	v, fast := trackFrame(c.z, f, l3, et, e.dir, c.now, &c.hints, &c.hint)
	if fast {
		c.fast++
		if v == Invalid {
			c.fastInvalid++
		}
	}
	if c.twin != nil {
		c.twin.t.to.Store(c.z.t.to.Load())
		if tv := trackCommit(c.twin, &p, c.now); tv != v {
			c.t.Fatalf("verdict %v, the general path's %v (flags %#x seq %d ack %d)", v, tv, p.Flags, p.Seq, p.Ack)
		}
		a, aok := rawEntry(c.z, &p.Key)
		b, bok := rawEntry(c.twin, &p.Key)
		if aok != bok || a != b {
			c.t.Fatalf("entry %v %+v, the general path's %v %+v", aok, a, bok, b)
		}
	}
	return v
}

// trackFrame tracks a frame as a switch does: TrackFast, else Parse,
// TrackHint and, on New (rules always allow), Commit (Invalid if that
// fails). fast: TrackFast took it.
func trackFrame(z *Zone, f []byte, l3 int, et uint16, dir Dir, now int64, hc *HintCache, h *Hint) (v Verdict, fast bool) {
	if v, ok := z.TrackFast(f, len(f), l3, et, dir, now, hc); ok {
		return v, true
	}
	var p Packet
	Parse(f, l3, et, dir, &p)
	v = z.TrackHint(&p, now, h)
	if v == New && !z.Commit(&p, now) {
		return Invalid, false
	}
	return v, false
}

// rawEntry returns a copy of k's entry in z (every field), live or not.
func rawEntry(z *Zone, k *Key) (entry, bool) {
	s, tag := z.shardOf(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, _, e := s.lookup(k, tag); e != nil {
		return *e, true
	}
	return entry{}, false
}

// zoneEntries returns copies of every entry of z (every field), live or
// not, by key.
func zoneEntries(z *Zone) map[Key]entry {
	m := make(map[Key]entry)
	for i := range z.shards {
		s := &z.shards[i]
		s.mu.Lock()
		for _, ch := range s.chunks {
			for _, e := range ch {
				if e.flags&efUsed != 0 {
					m[e.key] = e
				}
			}
		}
		s.mu.Unlock()
	}
	return m
}

func (c *tcpConnTest) peer(e *tcpEp) *tcpEp {
	if e == c.guest {
		return c.remote
	}
	return c.guest
}

// send sends a segment of n bytes with flags from e at its nxt, ACKing
// e.rcv (when flags has ACK); deliver says whether the peer gets it (in
// order). It returns the verdict (a New is committed).
func (c *tcpConnTest) send(e *tcpEp, flags uint8, n int, deliver bool) Verdict {
	s := tcpseg{seq: e.nxt, flags: flags, win: e.win, paylen: n, wscale: -1, ts: true}
	if flags&FlagACK != 0 {
		s.ack = e.rcv
	}
	if flags&FlagSYN != 0 {
		s.wscale = e.ws
	}
	v := c.track(e, s)
	adv := uint32(n)
	if flags&FlagSYN != 0 {
		adv++
	}
	if flags&FlagFIN != 0 {
		adv++
	}
	e.nxt += adv
	if deliver {
		c.peer(e).rcv = e.nxt
	}
	return v
}

// raw sends an arbitrary segment from e (no model update).
func (c *tcpConnTest) raw(e *tcpEp, s tcpseg) Verdict {
	if s.wscale == 0 && s.flags&FlagSYN == 0 {
		s.wscale = -1
	}
	return c.track(e, s)
}

func (c *tcpConnTest) expect(what string, got, want Verdict) {
	c.t.Helper()
	if got != want {
		c.t.Fatalf("%s: verdict %v, want %v (state %s)", what, got, want, c.state())
	}
}

// state returns the connection's state as Entries shows it ("" if none).
func (c *tcpConnTest) state() string {
	p := c.packet(c.guest, tcpseg{flags: FlagACK, wscale: -1})
	st := ""
	c.z.Entries(c.now, func(e Entry) bool {
		if e.Key == p.Key {
			st = e.State
			return false
		}
		return true
	})
	return st
}

func (c *tcpConnTest) expectState(want string) {
	c.t.Helper()
	if got := c.state(); got != want {
		c.t.Fatalf("state %q, want %q", got, want)
	}
}

// handshake runs SYN, SYN/ACK, ACK from the guest to the remote.
func (c *tcpConnTest) handshake() {
	c.t.Helper()
	c.expect("SYN", c.send(c.guest, FlagSYN, 0, true), New)
	c.expectState("SYN_SENT")
	c.expect("SYN/ACK", c.send(c.remote, FlagSYN|FlagACK, 0, true), Reply)
	c.expectState("SYN_RECV")
	c.expect("ACK", c.send(c.guest, FlagACK, 0, true), Established)
	c.expectState("ESTABLISHED")
}
