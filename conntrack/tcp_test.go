package conntrack

import (
	"fmt"
	"testing"
	"time"
)

func newZone(t testing.TB, cfg Config) *Zone {
	t.Helper()
	return NewTable(cfg).NewZone()
}

// pass is the verdict for a frame from e of a connection the guest opened.
func (c *tcpConnTest) pass(e *tcpEp) Verdict {
	if e == c.guest {
		return Established
	}
	return Reply
}

// scaleOf is the window scale e's windows are shifted by.
func (c *tcpConnTest) scaleOf(e *tcpEp) uint {
	if c.guest.ws >= 0 && c.remote.ws >= 0 {
		return uint(e.ws)
	}
	return 0
}

// bulk sends total bytes from e in segments of mss, window-limited:
// it sends until the peer's advertised window is full, as a sender does
// before the first ACK of its flight comes back; then the peer ACKs
// every second segment of the flight (advertising a window that doubles,
// up to 65535, when grow). The tracker sees flights as large as the
// windows.
func (c *tcpConnTest) bulk(from *tcpEp, total, mss int, grow bool) {
	c.t.Helper()
	to := c.peer(from)
	c.expect("window update", c.send(to, FlagACK, 0, true), c.pass(to))
	lastAck := to.rcv
	var ends []uint32
	ackAt := func(a uint32) {
		c.t.Helper()
		c.expect("ack", c.raw(to, tcpseg{flags: FlagACK, seq: to.nxt, ack: a, win: to.win}), c.pass(to))
		lastAck = a
	}
	flush := func() {
		c.t.Helper()
		for i := 1; i < len(ends); i += 2 {
			ackAt(ends[i])
		}
		if len(ends)%2 == 1 {
			ackAt(ends[len(ends)-1])
		}
		ends = ends[:0]
		if grow {
			to.win = uint16(min(65535, int(to.win)*2))
		}
	}
	for sent := 0; sent < total; {
		n := min(mss, total-sent)
		wnd := uint32(to.win) << c.scaleOf(to)
		if from.nxt+uint32(n)-lastAck > wnd {
			if len(ends) == 0 {
				c.t.Fatalf("window %d below a segment", wnd)
			}
			flush()
			continue
		}
		c.expect(fmt.Sprintf("data at %d", sent), c.send(from, FlagACK|FlagPSH, n, true), c.pass(from))
		ends = append(ends, from.nxt)
		sent += n
	}
	flush()
}

func forFamilies(t *testing.T, f func(t *testing.T, v6 bool)) {
	t.Run("ipv4", func(t *testing.T) { f(t, false) })
	t.Run("ipv6", func(t *testing.T) { f(t, true) })
}

func TestTCPValidFlagsAll64(t *testing.T) {
	// Linux's tcp_valid_flags, written out: PSH is ignored.
	valid := map[uint8]bool{
		FlagSYN: true, FlagSYN | FlagURG: true, FlagSYN | FlagACK: true,
		FlagRST: true, FlagRST | FlagACK: true,
		FlagFIN | FlagACK: true, FlagFIN | FlagACK | FlagURG: true,
		FlagACK: true, FlagACK | FlagURG: true,
	}
	z := newZone(t, Config{})
	c := newTCPTest(t, z, false, 1000, 5000)
	c.handshake()
	for f := range 64 {
		flags := uint8(f)
		want := valid[flags&^FlagPSH]
		if got := tcpValidFlags(flags); got != want {
			t.Errorf("flags %#02x: valid %v, want %v", flags, got, want)
		}
		// Against no entry: an invalid combination is Invalid and
		// never creates an entry.
		other := newTCPTest(t, z, false, 1, 1)
		other.gp = 50000 + uint16(f)
		before := z.Len()
		p := other.packet(other.guest, tcpseg{flags: flags, seq: 1, ack: 1, win: 100, wscale: -1})
		v := z.Track(&p, c.now)
		if !want && v != Invalid {
			t.Errorf("flags %#02x on no entry: %v, want invalid", flags, v)
		}
		if !want && z.Commit(&p, c.now) {
			t.Errorf("flags %#02x: Commit succeeded", flags)
		}
		if !want && z.Len() != before {
			t.Errorf("flags %#02x created an entry", flags)
		}
		// Against an established connection, in window.
		if !want {
			p := c.packet(c.guest, tcpseg{flags: flags, seq: c.guest.nxt, ack: c.guest.rcv, win: 100, wscale: -1})
			if v := z.Track(&p, c.now); v != Invalid {
				t.Errorf("flags %#02x on established: %v", flags, v)
			}
		}
	}
	c.expectState("ESTABLISHED")
	if z.Counters().Invalid == 0 {
		t.Fatal("invalid frames not counted")
	}
}

func TestTCPOpenFromNothing(t *testing.T) {
	z := newZone(t, Config{})
	c := newTCPTest(t, z, false, 1000, 5000)
	// SYN/ACK and RST cannot open; FIN+ACK and ACK are picked up.
	c.expect("SYN/ACK", c.raw(c.remote, tcpseg{flags: FlagSYN | FlagACK, seq: 5, ack: 6, win: 10, wscale: -1}), Invalid)
	c.expect("RST", c.raw(c.remote, tcpseg{flags: FlagRST, seq: 5}), Invalid)
	c.expect("RST+ACK", c.raw(c.remote, tcpseg{flags: FlagRST | FlagACK, seq: 5, ack: 9}), Invalid)
	if z.Len() != 0 {
		t.Fatalf("%d entries", z.Len())
	}
	c.expect("FIN+ACK", c.raw(c.remote, tcpseg{flags: FlagFIN | FlagACK, seq: 5, ack: 9, win: 100}), New)
	c.expectState("FIN_WAIT")
	c.expect("ACK of FIN", c.raw(c.guest, tcpseg{flags: FlagACK, seq: 9, ack: 6, win: 100}), Reply)
	c.expectState("CLOSE_WAIT")
	c.expect("FIN", c.raw(c.guest, tcpseg{flags: FlagFIN | FlagACK, seq: 9, ack: 6, win: 100}), Reply)
	c.expectState("LAST_ACK")
	c.expect("last ACK", c.raw(c.remote, tcpseg{flags: FlagACK, seq: 6, ack: 10, win: 100}), Established)
	c.expectState("TIME_WAIT")
}

func TestTCPHandshakeDataTeardown(t *testing.T) {
	forFamilies(t, func(t *testing.T, v6 bool) {
		for _, ws := range []struct{ g, r int }{{-1, -1}, {7, 9}, {7, -1}, {-1, 7}, {0, 14}} {
			t.Run(fmt.Sprintf("ws=%d,%d", ws.g, ws.r), func(t *testing.T) {
				z := newZone(t, Config{})
				c := newTCPTest(t, z, v6, 0x12345678, 0x9abcdef0)
				c.guest.ws, c.remote.ws = ws.g, ws.r
				c.handshake()
				if ws.g >= 0 && ws.r >= 0 {
					// Scaled windows after the handshake: 256 KiB.
					c.guest.win = uint16(min(65535, 256<<10>>ws.g))
					c.remote.win = uint16(min(65535, 256<<10>>ws.r))
				}
				c.bulk(c.guest, 300_000, 1448, false)
				c.bulk(c.remote, 300_000, 1448, false)
				// The guest closes first.
				c.expect("FIN", c.send(c.guest, FlagFIN|FlagACK, 0, true), Established)
				c.expectState("FIN_WAIT")
				c.expect("ACK of FIN", c.send(c.remote, FlagACK, 0, true), Reply)
				c.expectState("CLOSE_WAIT")
				c.expect("data after half close", c.send(c.remote, FlagACK|FlagPSH, 1000, true), Reply)
				c.expect("ack it", c.send(c.guest, FlagACK, 0, true), Established)
				c.expect("remote FIN", c.send(c.remote, FlagFIN|FlagACK, 0, true), Reply)
				c.expectState("LAST_ACK")
				c.expect("last ACK", c.send(c.guest, FlagACK, 0, true), Established)
				c.expectState("TIME_WAIT")
				if n := z.Counters().Invalid; n != 0 {
					t.Fatalf("%d invalid", n)
				}
				// TIME_WAIT lasts 120 s.
				c.now += 119 * sec
				c.expectState("TIME_WAIT")
				c.now += 2 * sec
				c.expectState("")
			})
		}
	})
}

func TestTCPRemoteClosesFirstAndSimultaneousClose(t *testing.T) {
	forFamilies(t, func(t *testing.T, v6 bool) {
		z := newZone(t, Config{})
		c := newTCPTest(t, z, v6, 1, 2)
		c.handshake()
		c.expect("remote FIN", c.send(c.remote, FlagFIN|FlagACK, 0, true), Reply)
		c.expectState("FIN_WAIT")
		c.expect("ack", c.send(c.guest, FlagACK, 0, true), Established)
		c.expectState("CLOSE_WAIT")
		c.expect("guest FIN", c.send(c.guest, FlagFIN|FlagACK, 0, true), Established)
		c.expectState("LAST_ACK")
		c.expect("last ack", c.send(c.remote, FlagACK, 0, true), Reply)
		c.expectState("TIME_WAIT")

		// Simultaneous close: both FINs cross.
		z2 := newZone(t, Config{})
		c = newTCPTest(t, z2, v6, 0xfffffff0, 77)
		c.handshake()
		c.bulk(c.guest, 5000, 1000, false)
		c.expect("guest FIN", c.send(c.guest, FlagFIN|FlagACK, 0, false), Established)
		c.expect("remote FIN", c.send(c.remote, FlagFIN|FlagACK, 0, false), Reply)
		c.expectState("LAST_ACK")
		c.guest.rcv, c.remote.rcv = c.remote.nxt, c.guest.nxt
		c.expect("guest ACK", c.send(c.guest, FlagACK, 0, true), Established)
		c.expect("remote ACK", c.send(c.remote, FlagACK, 0, true), Reply)
		c.expectState("TIME_WAIT")
		if n := z.Counters().Invalid + z2.Counters().Invalid; n != 0 {
			t.Fatalf("%d invalid", n)
		}
	})
}

func TestTCPBulkGrowingWindowsAndWrap(t *testing.T) {
	forFamilies(t, func(t *testing.T, v6 bool) {
		z := newZone(t, Config{})
		// Both initial sequence numbers just below 2^32: the transfer
		// wraps around.
		c := newTCPTest(t, z, v6, 0xffff0000, 0xfffff000)
		c.guest.ws, c.remote.ws = 7, 10
		c.handshake()
		c.guest.win, c.remote.win = 16, 8 // tiny scaled windows to start
		c.bulk(c.guest, 8<<20, 1448, true)
		c.bulk(c.remote, 8<<20, 1448, true)
		// TSO-sized segments once the windows are large.
		c.bulk(c.guest, 4<<20, 65000, false)
		if n := z.Counters().Invalid; n != 0 {
			t.Fatalf("%d invalid", n)
		}
		if c.guest.nxt > 0x10000000 || c.remote.nxt > 0x10000000 {
			t.Fatalf("sequence numbers did not wrap: %#x %#x", c.guest.nxt, c.remote.nxt)
		}
	})
}

func TestTCPLossAndRetransmission(t *testing.T) {
	forFamilies(t, func(t *testing.T, v6 bool) {
		z := newZone(t, Config{})
		c := newTCPTest(t, z, v6, 100, 200)
		c.handshake()
		c.bulk(c.guest, 20000, 1448, false)
		// Segments 1..5; the second is lost, so the receiver's ACK
		// stays at its start (no SACK).
		c.expect("seg1", c.send(c.guest, FlagACK, 1448, true), Established)
		lost := c.guest.nxt
		c.expect("seg2 (lost)", c.send(c.guest, FlagACK, 1448, false), Established)
		for i := 3; i <= 5; i++ {
			c.expect(fmt.Sprintf("seg%d", i), c.send(c.guest, FlagACK, 1448, false), Established)
		}
		for i := range 4 { // duplicate ACKs
			c.expect(fmt.Sprintf("dupack %d", i), c.send(c.remote, FlagACK, 0, true), Reply)
		}
		// Fast retransmission of the lost segment, twice (spurious).
		for i := range 2 {
			c.expect(fmt.Sprintf("retransmission %d", i), c.raw(c.guest, tcpseg{flags: FlagACK, seq: lost,
				ack: c.guest.rcv, win: c.guest.win, paylen: 1448}), Established)
		}
		c.remote.rcv = c.guest.nxt
		c.expect("cumulative ack", c.send(c.remote, FlagACK, 0, true), Reply)
		// A retransmission of data acknowledged long ago still passes.
		c.expect("old retransmission", c.raw(c.guest, tcpseg{flags: FlagACK, seq: lost - 10000,
			ack: c.guest.rcv, win: c.guest.win, paylen: 1448}), Established)
		// With SACK: the receiver reports what it holds beyond a hole.
		hole := c.guest.nxt
		c.expect("lost", c.send(c.guest, FlagACK, 1000, false), Established)
		c.expect("after hole", c.send(c.guest, FlagACK, 1000, false), Established)
		c.expect("sack", c.raw(c.remote, tcpseg{flags: FlagACK, seq: c.remote.nxt, ack: hole, win: c.remote.win,
			sack: []uint32{hole + 1000, hole + 2000}}), Reply)
		c.expect("retransmit hole", c.raw(c.guest, tcpseg{flags: FlagACK, seq: hole, ack: c.guest.rcv, win: c.guest.win, paylen: 1000}), Established)
		c.remote.rcv = c.guest.nxt
		c.expect("ack all", c.send(c.remote, FlagACK, 0, true), Reply)
		// Keep-alive: one byte before nxt, and its answer.
		c.now += 7200 * sec
		c.expect("keep-alive", c.raw(c.guest, tcpseg{flags: FlagACK, seq: c.guest.nxt - 1, ack: c.guest.rcv, win: c.guest.win}), Established)
		c.expect("keep-alive answer", c.send(c.remote, FlagACK, 0, true), Reply)
		c.expect("keep-alive with a byte", c.raw(c.guest, tcpseg{flags: FlagACK, seq: c.guest.nxt - 1, ack: c.guest.rcv, win: c.guest.win, paylen: 1}), Established)
		if n := z.Counters().Invalid; n != 0 {
			t.Fatalf("%d invalid", n)
		}
	})
}

func TestTCPZeroWindowProbe(t *testing.T) {
	z := newZone(t, Config{})
	c := newTCPTest(t, z, false, 100, 200)
	c.handshake()
	c.bulk(c.guest, 10000, 1000, false)
	c.remote.win = 0
	c.expect("zero window", c.send(c.remote, FlagACK, 0, true), Reply)
	c.expect("probe", c.raw(c.guest, tcpseg{flags: FlagACK, seq: c.guest.nxt, ack: c.guest.rcv, win: c.guest.win, paylen: 1}), Established)
	c.expect("probe answer", c.send(c.remote, FlagACK, 0, true), Reply)
	c.remote.win = 65000
	c.expect("window opens", c.send(c.remote, FlagACK, 0, true), Reply)
	c.expect("data", c.send(c.guest, FlagACK, 1000, true), Established)
}

func TestTCPOutOfWindow(t *testing.T) {
	forFamilies(t, func(t *testing.T, v6 bool) {
		z := newZone(t, Config{})
		c := newTCPTest(t, z, v6, 1000, 9000)
		c.handshake()
		c.bulk(c.guest, 10000, 1000, false)
		inv := z.Counters().Invalid
		// Far past the receiver's window.
		c.expect("seq beyond window", c.raw(c.guest, tcpseg{flags: FlagACK, seq: c.guest.nxt + 10_000_000,
			ack: c.guest.rcv, win: 100, paylen: 100}), Invalid)
		// Acknowledging data never sent.
		c.expect("ack beyond data", c.raw(c.remote, tcpseg{flags: FlagACK, seq: c.remote.nxt,
			ack: c.remote.rcv + 500_000, win: 100}), Invalid)
		// A RST far outside too.
		c.expect("rst beyond window", c.raw(c.remote, tcpseg{flags: FlagRST, seq: c.remote.nxt + 0x40000000}), Invalid)
		// Half the sequence space away.
		c.expect("seq opposite", c.raw(c.guest, tcpseg{flags: FlagACK, seq: c.guest.nxt + 0x80000000,
			ack: c.guest.rcv, win: 100, paylen: 100}), Invalid)
		if got := z.Counters().Invalid - inv; got != 4 {
			t.Fatalf("%d counted, want 4", got)
		}
		// The connection is untouched.
		c.expectState("ESTABLISHED")
		c.bulk(c.guest, 10000, 1000, false)
		c.bulk(c.remote, 10000, 1000, false)
		if got := z.Counters().Invalid - inv; got != 4 {
			t.Fatalf("after: %d invalid", got)
		}
	})
}

func TestTCPReset(t *testing.T) {
	forFamilies(t, func(t *testing.T, v6 bool) {
		z := newZone(t, Config{})
		c := newTCPTest(t, z, v6, 1000, 9000)
		c.handshake()
		c.bulk(c.guest, 10000, 1000, false)
		// An in-window RST not exactly at the expected sequence number
		// keeps the state (RFC 5961 challenge ACK).
		c.expect("inexact rst", c.raw(c.remote, tcpseg{flags: FlagRST, seq: c.remote.nxt + 100}), Reply)
		c.expectState("ESTABLISHED")
		// One before what the guest acknowledged: Invalid.
		c.expect("old rst", c.raw(c.remote, tcpseg{flags: FlagRST, seq: c.remote.nxt - 100}), Invalid)
		c.expectState("ESTABLISHED")
		c.expect("challenge ack", c.send(c.guest, FlagACK, 0, true), Established)
		// The exact one closes, 10 s.
		c.expect("rst", c.raw(c.remote, tcpseg{flags: FlagRST, seq: c.remote.nxt}), Reply)
		c.expectState("CLOSE")
		c.now += 9 * sec
		c.expectState("CLOSE")
		c.now += 2 * sec
		c.expectState("")
		// A RST that is the only answer to a SYN removes the entry at once.
		c = newTCPTest(t, z, v6, 5000, 0)
		c.gp = 40001
		c.expect("SYN", c.send(c.guest, FlagSYN, 0, true), New)
		c.expect("RST+ACK", c.raw(c.remote, tcpseg{flags: FlagRST | FlagACK, seq: 0, ack: c.guest.nxt}), Reply)
		c.expectState("")
	})
}

func TestTCPReopen(t *testing.T) {
	z := newZone(t, Config{})
	c := newTCPTest(t, z, false, 1000, 9000)
	c.handshake()
	c.expect("FIN", c.send(c.guest, FlagFIN|FlagACK, 0, true), Established)
	c.expect("FIN", c.send(c.remote, FlagFIN|FlagACK, 0, true), Reply)
	c.expect("ACK", c.send(c.guest, FlagACK, 0, true), Established)
	c.expectState("TIME_WAIT")
	// A new SYN from the guest reuses the ports: a new connection.
	c.guest.nxt += 100000
	c.expect("new SYN", c.send(c.guest, FlagSYN, 0, true), New)
	c.expectState("SYN_SENT")
	c.expect("SYN/ACK", c.send(c.remote, FlagSYN|FlagACK, 0, true), Reply)
	c.expect("ACK", c.send(c.guest, FlagACK, 0, true), Established)
	c.expectState("ESTABLISHED")
	// From CLOSE, the remote opens (roles switch): New, origin inbound.
	c.expect("rst", c.raw(c.guest, tcpseg{flags: FlagRST, seq: c.guest.nxt}), Established)
	c.expectState("CLOSE")
	c.expect("remote SYN", c.send(c.remote, FlagSYN, 0, true), New)
	c.expect("guest SYN/ACK", c.send(c.guest, FlagSYN|FlagACK, 0, true), Reply)
	c.expect("remote ACK", c.send(c.remote, FlagACK, 0, true), Established)
	var origin Dir = 9
	z.Entries(c.now, func(e Entry) bool { origin = e.Origin; return true })
	if origin != Inbound {
		t.Fatalf("origin %v", origin)
	}
	if z.Len() != 1 {
		t.Fatalf("%d entries", z.Len())
	}
}

func TestTCPSynRetransmissionAndTimeouts(t *testing.T) {
	z := newZone(t, Config{})
	c := newTCPTest(t, z, false, 1000, 9000)
	c.expect("SYN", c.send(c.guest, FlagSYN, 0, true), New)
	c.now += 100 * sec
	c.guest.nxt--
	c.expect("SYN again", c.send(c.guest, FlagSYN, 0, true), Established)
	// A retransmitted SYN does not extend SYN_SENT's 120 s.
	c.now += 21 * sec
	c.expectState("")
	c.expect("late SYN/ACK", c.send(c.remote, FlagSYN|FlagACK, 0, true), Invalid)

	// The handshake with retransmitted SYN/ACK, and the server's data
	// arriving before the client's ACK.
	c = newTCPTest(t, z, false, 1000, 9000)
	c.gp = 40100
	c.expect("SYN", c.send(c.guest, FlagSYN, 0, true), New)
	c.expect("SYN/ACK", c.send(c.remote, FlagSYN|FlagACK, 0, true), Reply)
	c.remote.nxt--
	c.expect("SYN/ACK again", c.send(c.remote, FlagSYN|FlagACK, 0, true), Reply)
	c.expectState("SYN_RECV")
	c.expect("ACK", c.send(c.guest, FlagACK, 0, true), Established)
	c.expectState("ESTABLISHED")
	// Established for 5 days once assured; data outstanding caps at 300 s.
	c.expect("ACK", c.send(c.remote, FlagACK, 0, true), Reply)
	c.expect("ACK", c.send(c.guest, FlagACK, 0, true), Established)
	if e := c.entry(); e.Expires != 432000*time.Second {
		t.Fatalf("established expires in %v", e.Expires)
	}
	c.expect("data", c.send(c.guest, FlagACK, 100, false), Established)
	if e := c.entry(); e.Expires != 300*time.Second {
		t.Fatalf("with unacked data: expires in %v", e.Expires)
	}
	c.remote.rcv = c.guest.nxt
	c.expect("ack", c.send(c.remote, FlagACK, 0, true), Reply)
	if e := c.entry(); e.Expires != 432000*time.Second {
		t.Fatalf("acked: expires in %v", e.Expires)
	}
	// Idle past the timeout: gone; the next segment is a pickup.
	c.now += 432001 * sec
	c.expectState("")
	c.expect("after timeout", c.send(c.guest, FlagACK, 0, true), New)
}

// entry returns the connection's snapshot.
func (c *tcpConnTest) entry() Entry {
	c.t.Helper()
	p := c.packet(c.guest, tcpseg{flags: FlagACK, wscale: -1})
	var got *Entry
	c.z.Entries(c.now, func(e Entry) bool {
		if e.Key == p.Key {
			got = &e
		}
		return got == nil
	})
	if got == nil {
		c.t.Fatal("no entry")
	}
	return *got
}

func TestTCPPickup(t *testing.T) {
	forFamilies(t, func(t *testing.T, v6 bool) {
		z := newZone(t, Config{})
		// A connection in the middle of a transfer with window scaling
		// the tracker never saw: the remote's data comes first.
		c := newTCPTest(t, z, v6, 0x7ffffff0, 0x10)
		c.guest.ws, c.remote.ws = 8, 8
		c.guest.win, c.remote.win = 2000, 2000 // scaled by 256: large windows
		c.guest.rcv, c.remote.rcv = c.remote.nxt, c.guest.nxt
		c.expect("pickup", c.send(c.remote, FlagACK|FlagPSH, 1448, true), New)
		c.expectState("ESTABLISHED")
		if e := c.entry(); e.Expires != 300*time.Second || e.Origin != Inbound {
			t.Fatalf("unanswered pickup: %+v", e)
		}
		// The windows are large and unknown: flights far past what the
		// unscaled windows would allow must pass.
		for range 3 {
			for i := range 200 {
				c.expect(fmt.Sprintf("remote data %d", i), c.send(c.remote, FlagACK, 1448, true), Established)
			}
			c.expect("guest ack", c.send(c.guest, FlagACK, 0, true), Reply)
			for i := range 100 {
				c.expect(fmt.Sprintf("guest data %d", i), c.send(c.guest, FlagACK, 1448, true), Reply)
			}
			c.expect("remote ack", c.send(c.remote, FlagACK, 0, true), Established)
		}
		if e := c.entry(); e.Expires != 432000*time.Second {
			t.Fatalf("answered pickup: expires in %v", e.Expires)
		}
		c.expect("fin", c.send(c.guest, FlagFIN|FlagACK, 0, true), Reply)
		c.expect("fin", c.send(c.remote, FlagFIN|FlagACK, 0, true), Established)
		c.expect("ack", c.send(c.guest, FlagACK, 0, true), Reply)
		c.expectState("TIME_WAIT")
		if n := z.Counters().Invalid; n != 0 {
			t.Fatalf("%d invalid", n)
		}
	})
}

func TestTCPSimultaneousOpen(t *testing.T) {
	z := newZone(t, Config{})
	c := newTCPTest(t, z, false, 1000, 9000)
	c.guest.ws, c.remote.ws = 7, 7
	c.expect("guest SYN", c.send(c.guest, FlagSYN, 0, false), New)
	c.expect("remote SYN", c.send(c.remote, FlagSYN, 0, false), Reply)
	c.expectState("SYN_SENT2")
	c.guest.rcv, c.remote.rcv = c.remote.nxt, c.guest.nxt
	c.guest.nxt--
	c.remote.nxt--
	c.expect("guest SYN/ACK", c.send(c.guest, FlagSYN|FlagACK, 0, true), Established)
	c.expect("remote SYN/ACK", c.send(c.remote, FlagSYN|FlagACK, 0, true), Reply)
	c.expect("remote ACK", c.send(c.remote, FlagACK, 0, true), Reply)
	c.expectState("ESTABLISHED")
	c.bulk(c.guest, 100000, 1448, false)
	c.bulk(c.remote, 100000, 1448, false)
	if n := z.Counters().Invalid; n != 0 {
		t.Fatalf("%d invalid", n)
	}
}

// TestTCPResyncAfterLostClose: the endpoints closed and reopened the
// same ports while the entry still says ESTABLISHED (a lost FIN
// exchange): the SYN passes ignored, and the SYN/ACK answering it puts
// the entry back in sync (Linux's "ignored SYN" handling).
func TestTCPResyncAfterLostClose(t *testing.T) {
	z := newZone(t, Config{})
	c := newTCPTest(t, z, false, 1000, 9000)
	c.handshake()
	c.bulk(c.guest, 5000, 1000, false)
	c.guest.nxt += 1 << 30
	c.remote.nxt += 1 << 29
	c.expect("SYN in ESTABLISHED", c.send(c.guest, FlagSYN, 0, true), Established)
	c.expectState("ESTABLISHED")
	c.expect("SYN/ACK", c.send(c.remote, FlagSYN|FlagACK, 0, true), Reply)
	c.expectState("SYN_RECV")
	c.expect("ACK", c.send(c.guest, FlagACK, 0, true), Established)
	c.expectState("ESTABLISHED")
	c.bulk(c.guest, 50000, 1000, false)
	c.bulk(c.remote, 50000, 1000, false)
	if n := z.Counters().Invalid; n != 0 {
		t.Fatalf("%d invalid", n)
	}
}

func TestTCPFirstFragmentWindow(t *testing.T) {
	// A fragmented segment's length is unknown: the ACK for all of it
	// must not be "over the upper bound".
	z := newZone(t, Config{})
	c := newTCPTest(t, z, false, 1000, 9000)
	c.handshake()
	c.bulk(c.guest, 5000, 1000, false)
	seg := tcpseg{sport: c.gp, dport: c.rp, seq: c.guest.nxt, ack: c.guest.rcv, flags: FlagACK, win: c.guest.win, paylen: 1400}
	p := parse4(ip4(c.g, c.r, protoTCP, seg.bytes(), ip4opts{id: 77, mf: true}), Outbound)
	later := parse4(ip4(c.g, c.r, protoTCP, make([]byte, 1600), ip4opts{id: 77, fragOff: 178}), Outbound)
	for _, z := range []*Zone{z, c.twin} { // the twin sees every frame
		if v := z.Track(&p, c.now); v != Established {
			t.Fatalf("first fragment: %v", v)
		}
		if v := z.Track(&later, c.now); v != Established {
			t.Fatalf("second fragment: %v", v)
		}
	}
	c.guest.nxt += 3000
	c.remote.rcv = c.guest.nxt
	c.expect("ack of the datagram", c.send(c.remote, FlagACK, 0, true), Reply)
}

// TestTCPWindowScaleNeedsBothSides: RFC 7323 §2.2 — one side's option
// alone does not scale anything, so a flight within 128 times the
// advertised window, past it, is still out of window.
func TestTCPWindowScaleNeedsBothSides(t *testing.T) {
	for _, ws := range []struct{ g, r int }{{7, -1}, {-1, 7}} {
		z := newZone(t, Config{})
		c := newTCPTest(t, z, false, 1000, 9000)
		c.guest.ws, c.remote.ws = ws.g, ws.r
		c.handshake()
		c.bulk(c.guest, 200000, 1448, false)
		c.expect("window update", c.send(c.remote, FlagACK, 0, true), Reply)
		c.expect("1 MiB past the ack", c.raw(c.guest, tcpseg{flags: FlagACK, seq: c.guest.nxt + 1<<20,
			ack: c.guest.rcv, win: c.guest.win, paylen: 1000}), Invalid)
		c.bulk(c.remote, 200000, 1448, false)
		c.expect("window update", c.send(c.guest, FlagACK, 0, true), Established)
		c.expect("1 MiB past the ack", c.raw(c.remote, tcpseg{flags: FlagACK, seq: c.remote.nxt + 1<<20,
			ack: c.remote.rcv, win: c.remote.win, paylen: 1000}), Invalid)
	}
}
