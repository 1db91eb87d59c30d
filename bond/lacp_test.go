package bond

import (
	"errors"
	"testing"
	"time"
)

// wire connects member i of a to member i of b: LACPDUs cross as frames,
// encoded and decoded, unless the link is cut or a side is silenced.
type wire struct {
	a, b           *LACP
	cut            []bool
	muteA, muteB   []bool
	now            time.Time
	framesA2B, b2a int
}

func newWire(a, b *LACP, n int) *wire {
	return &wire{a: a, b: b, cut: make([]bool, n), muteA: make([]bool, n), muteB: make([]bool, n), now: time.Unix(1000, 0)}
}

func (w *wire) up() {
	for i := range w.cut {
		w.a.SetLink(i, true, w.now)
		w.b.SetLink(i, true, w.now)
	}
}

// run advances the clock by d in 50 ms steps.
func (w *wire) run(t *testing.T, d time.Duration) {
	t.Helper()
	var send []int
	for end := w.now.Add(d); w.now.Before(end); w.now = w.now.Add(50 * time.Millisecond) {
		for _, dir := range []struct {
			from, to *LACP
			mute     []bool
			count    *int
		}{{w.a, w.b, w.muteA, &w.framesA2B}, {w.b, w.a, w.muteB, &w.b2a}} {
			send = dir.from.Tick(w.now, send[:0])
			for _, i := range send {
				if w.cut[i] || dir.mute[i] {
					continue
				}
				pdu := dir.from.PDU(i)
				f := pdu.AppendFrame(nil, [6]byte{2, 0, 0, 0, 0, byte(i)})
				if len(f) != FrameLen || !IsSlowProtocols(f) {
					t.Fatalf("frame of %d bytes", len(f))
				}
				got, err := DecodeLACPDU(f[14:])
				if err != nil {
					t.Fatalf("decoding our own LACPDU: %v", err)
				}
				if got != pdu {
					t.Fatalf("round trip: %+v, want %+v", got, pdu)
				}
				*dir.count++
				dir.to.Receive(i, got, w.now)
			}
		}
	}
}

func sys(id byte, key uint16) System {
	return System{Priority: 65535, ID: [6]byte{2, 0, 0, 0, 0, id}, Key: key}
}

func distributing(l *LACP) []bool {
	var d []bool
	for i := range l.ports {
		d = append(d, l.Distributing(i))
	}
	return d
}

func want(t *testing.T, what string, l *LACP, w ...bool) {
	t.Helper()
	got := distributing(l)
	for i := range w {
		if got[i] != w[i] {
			t.Fatalf("%s: distributing %v, want %v (%+v)", what, got, w, l.Info(i))
		}
	}
}

func TestLACPNegotiates(t *testing.T) {
	for _, tc := range []struct {
		name         string
		rateA, rateB Rate
		passA, passB bool
		within       time.Duration
		aggregates   bool
		periodA2B    time.Duration // the period A sends at once settled
		periodB2A    time.Duration
	}{
		{"both fast", RateFast, RateFast, false, false, time.Second, true, FastPeriodic, FastPeriodic},
		{"both slow", RateSlow, RateSlow, false, false, time.Second, true, SlowPeriodic, SlowPeriodic},
		{"fast and slow", RateFast, RateSlow, false, false, time.Second, true, SlowPeriodic, FastPeriodic},
		{"active and passive", RateFast, RateFast, false, true, time.Second, true, FastPeriodic, FastPeriodic},
		{"both passive", RateFast, RateFast, true, true, 5 * time.Second, false, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := NewLACP(sys(1, 10), tc.rateA, tc.passA, 2)
			b := NewLACP(sys(2, 20), tc.rateB, tc.passB, 2)
			w := newWire(a, b, 2)
			w.up()
			w.run(t, tc.within)
			if !tc.aggregates {
				want(t, "passive", a, false, false)
				want(t, "passive", b, false, false)
				if w.framesA2B+w.b2a != 0 {
					t.Errorf("two passive sides sent %d LACPDUs", w.framesA2B+w.b2a)
				}
				return
			}
			want(t, "A", a, true, true)
			want(t, "B", b, true, true)
			ia := a.Info(0)
			if ia.Partner.System != b.sys.ID || ia.Partner.Key != 20 || ia.RxState != "current" || !ia.Selected {
				t.Errorf("A's view of member 0: %+v", ia)
			}
			// Settled: each side sends at the rate the other asked for.
			a2b, b2a := w.framesA2B, w.b2a
			w.run(t, 2*time.Minute)
			for _, d := range []struct {
				n      int
				period time.Duration
				what   string
			}{{w.framesA2B - a2b, tc.periodA2B, "A to B"}, {w.b2a - b2a, tc.periodB2A, "B to A"}} {
				wantN := int(2 * 2 * time.Minute / d.period) // 2 members
				if d.n < wantN-2 || d.n > wantN+2 {
					t.Errorf("%s: %d LACPDUs in 2 minutes on 2 members, want about %d (every %v)", d.what, d.n, wantN, d.period)
				}
			}
			want(t, "A settled", a, true, true)
		})
	}
}

// A partner that goes silent on one member takes only that member out,
// after the short timeout and no sooner; it comes back when the partner
// speaks again. The other member never stops distributing.
func TestLACPSilentPartner(t *testing.T) {
	a := NewLACP(sys(1, 10), RateFast, false, 2)
	b := NewLACP(sys(2, 20), RateFast, false, 2)
	w := newWire(a, b, 2)
	w.up()
	w.run(t, time.Second)
	want(t, "aggregated", a, true, true)
	w.muteB[0] = true
	// The standard's short timeout is 3 s, three fast periods: the last
	// LACPDU came 0..1 s before the mute.
	w.run(t, 1900*time.Millisecond)
	want(t, "before the timeout", a, true, true)
	w.run(t, 1200*time.Millisecond)
	want(t, "after the timeout", a, false, true)
	if i := a.Info(0); i.RxState != "expired" || i.Expiries != 1 || i.Actor.State&StateExpired == 0 {
		t.Errorf("after the timeout: %+v", i)
	}
	w.run(t, 3*time.Second)
	if i := a.Info(0); i.RxState != "defaulted" || i.Defaults != 1 || i.Actor.State&StateDefaulted == 0 || i.Selected {
		t.Errorf("after two timeouts: %+v", i)
	}
	want(t, "defaulted", a, false, true)
	if !a.Aggregated() {
		t.Error("member 1 still aggregates, Aggregated says no")
	}
	w.muteB[0] = false
	w.run(t, 2*time.Second)
	want(t, "partner back", a, true, true)
	want(t, "partner back (B)", b, true, true)
}

// Link down takes a member out at once; link up brings it back within
// a second at the fast rate.
func TestLACPLinkFlap(t *testing.T) {
	a := NewLACP(sys(1, 10), RateFast, false, 2)
	b := NewLACP(sys(2, 20), RateFast, false, 2)
	w := newWire(a, b, 2)
	w.up()
	w.run(t, time.Second)
	w.cut[1] = true
	a.SetLink(1, false, w.now)
	b.SetLink(1, false, w.now)
	want(t, "link down", a, true, false)
	w.run(t, 10*time.Second)
	want(t, "still down", a, true, false)
	want(t, "still down (B)", b, true, false)
	w.cut[1] = false
	a.SetLink(1, true, w.now)
	b.SetLink(1, true, w.now)
	w.run(t, time.Second)
	want(t, "link up", a, true, true)
	want(t, "link up (B)", b, true, true)
}

// Members whose partners are different systems or keys (two switches
// without MLAG) are not aggregated together: the larger group wins and
// the aggregator stays with its group while it has members.
func TestLACPSelection(t *testing.T) {
	a := NewLACP(sys(1, 10), RateFast, false, 3)
	b := NewLACP(sys(2, 20), RateFast, false, 3)
	c := NewLACP(sys(3, 30), RateFast, false, 3) // a second switch on member 2
	now := time.Unix(1000, 0)
	for i := range 3 {
		a.SetLink(i, true, now)
		b.SetLink(i, true, now)
		c.SetLink(i, true, now)
	}
	var send []int
	for range 40 {
		now = now.Add(50 * time.Millisecond)
		for _, i := range a.Tick(now, send[:0]) {
			if i < 2 {
				b.Receive(i, a.PDU(i), now)
			} else {
				c.Receive(i, a.PDU(i), now)
			}
		}
		for _, i := range b.Tick(now, send[:0]) {
			if i < 2 {
				a.Receive(i, b.PDU(i), now)
			}
		}
		for _, i := range c.Tick(now, send[:0]) {
			if i == 2 {
				a.Receive(i, c.PDU(i), now)
			}
		}
	}
	want(t, "two on B, one on C", a, true, true, false)
	if i := a.Info(2); i.Selected || i.Actor.State&StateSync != 0 || i.Partner.System != c.sys.ID {
		t.Errorf("the member toward C: %+v", i)
	}
}

// A stream of state changes never makes a member send more than three
// LACPDUs in a fast period.
func TestLACPTxLimit(t *testing.T) {
	a := NewLACP(sys(1, 10), RateFast, false, 1)
	now := time.Unix(1000, 0)
	a.SetLink(0, true, now)
	partner := LACPDU{Actor: PortInfo{System: [6]byte{2, 0, 0, 0, 0, 2}, Key: 1, Port: 1, State: StateActivity | StateAggregation | StateShortTimeout}}
	sent := 0
	var send []int
	for i := range 200 { // 10 s, the partner's key changing every 50 ms
		partner.Actor.Key = uint16(i%2 + 1)
		a.Receive(0, partner, now)
		sent += len(a.Tick(now, send[:0]))
		now = now.Add(50 * time.Millisecond)
	}
	if sent > 3*10+3 || sent < 10 {
		t.Errorf("%d LACPDUs in 10 s of churn: want at most 3 a second", sent)
	}
}

// Hostile LACPDUs: every malformed shape is refused with a reason, never
// a panic, at every length.
func TestDecodeLACPDUHostile(t *testing.T) {
	good := (&LACPDU{Actor: PortInfo{System: [6]byte{2, 0, 0, 0, 0, 1}, Port: 1, Key: 5, State: StateActivity}}).AppendFrame(nil, [6]byte{2, 0, 0, 0, 0, 9})[14:]
	if _, err := DecodeLACPDU(good); err != nil {
		t.Fatal(err)
	}
	mut := func(f func(b []byte)) []byte {
		b := append([]byte(nil), good...)
		f(b)
		return b
	}
	for _, tc := range []struct {
		name string
		b    []byte
		err  error
	}{
		{"empty", nil, ErrShort},
		{"cut in the collector", good[:50], ErrShort},
		{"marker protocol", mut(func(b []byte) { b[0] = 2 }), ErrSubtype},
		{"version 0", mut(func(b []byte) { b[1] = 0 }), ErrVersion},
		{"actor TLV type", mut(func(b []byte) { b[2] = 2 }), ErrTLV},
		{"actor TLV length", mut(func(b []byte) { b[3] = 19 }), ErrTLV},
		{"partner TLV length 255", mut(func(b []byte) { b[23] = 255 }), ErrTLV},
		{"collector TLV type", mut(func(b []byte) { b[42] = 9 }), ErrTLV},
		{"no terminator", mut(func(b []byte) { b[58] = 1 }), ErrTLV},
		{"terminator length", mut(func(b []byte) { b[59] = 4 }), ErrTLV},
		{"zero actor system", mut(func(b []byte) { clear(b[6:12]) }), ErrBadActor},
		{"group actor system", mut(func(b []byte) { b[6] = 1 }), ErrBadActor},
		{"actor port 0", mut(func(b []byte) { b[16], b[17] = 0, 0 }), ErrBadActor},
	} {
		if _, err := DecodeLACPDU(tc.b); !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
		}
	}
	// A later version with the same v1 fields is read as version 1.
	if _, err := DecodeLACPDU(mut(func(b []byte) { b[1] = 2 })); err != nil {
		t.Errorf("version 2: %v", err)
	}
	for n := range len(good) + 1 {
		DecodeLACPDU(good[:n]) // must not panic
	}
}

func FuzzDecodeLACPDU(f *testing.F) {
	f.Add((&LACPDU{Actor: PortInfo{System: [6]byte{2, 0, 0, 0, 0, 1}, Port: 1}}).AppendFrame(nil, [6]byte{})[14:])
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := DecodeLACPDU(b)
		if err != nil {
			return
		}
		// What decodes encodes to the same fields.
		got, err := DecodeLACPDU(d.AppendFrame(nil, [6]byte{2})[14:])
		if err != nil || got != d {
			t.Fatalf("re-encoded %+v: %+v, %v", d, got, err)
		}
	})
}

// A rate changed live (SetActivity) reaches the partner at once: it
// sends at the new rate from then on, and the aggregation stays.
func TestLACPRateChange(t *testing.T) {
	a := NewLACP(sys(1, 10), RateSlow, false, 2)
	b := NewLACP(sys(2, 20), RateSlow, false, 2)
	w := newWire(a, b, 2)
	w.up()
	w.run(t, 2*time.Second)
	want(t, "slow", a, true, true)
	b2a := w.b2a
	w.run(t, 10*time.Second)
	if n := w.b2a - b2a; n > 2 {
		t.Errorf("B sent %d LACPDUs in 10 s at the slow rate", n)
	}
	a.SetActivity(RateFast, false)
	w.run(t, time.Second)
	b2a = w.b2a
	w.run(t, 10*time.Second)
	if n := w.b2a - b2a; n < 18 || n > 22 {
		t.Errorf("B sent %d LACPDUs in 10 s on 2 members after A asked for the fast rate, want about 20", n)
	}
	want(t, "fast", a, true, true)
	want(t, "fast (B)", b, true, true)
}

// A partner that keeps changing its identity on one member (spoofed
// LACPDUs, a broken peer) holds that member out of the aggregation until
// the partner has been stable for FlapHold; the other members carry on,
// and a single change of partner (a cable moved) holds nothing.
func TestLACPPartnerFlapHold(t *testing.T) {
	a := NewLACP(sys(1, 10), RateFast, false, 2)
	b := NewLACP(sys(2, 20), RateFast, false, 2)
	w := newWire(a, b, 2)
	w.up()
	w.run(t, 2*time.Second)
	want(t, "negotiated", a, true, true)

	// One change of partner on member 0: another system speaks there
	// once, then B again. Not a flap.
	other := LACPDU{Actor: PortInfo{SystemPriority: 1, System: [6]byte{2, 0xee, 0, 0, 0, 1}, Key: 9, Port: 1,
		State: StateActivity | StateAggregation | StateShortTimeout | StateSync | StateCollecting | StateDistributing}}
	a.Receive(0, other, w.now)
	w.run(t, 2*time.Second)
	want(t, "after one foreign LACPDU", a, true, true)
	if i := a.Info(0); i.Held || i.FlapHolds != 0 || i.PartnerChanges != 2 {
		t.Errorf("one foreign LACPDU: %+v", i)
	}

	// A flapping system ID on member 0, interleaved with B's own
	// LACPDUs: member 0 is held out, member 1 goes on.
	for n := range 100 {
		other.Actor.System[5] = byte(n)
		a.Receive(0, other, w.now)
		w.run(t, 50*time.Millisecond)
		if n >= FlapLimit && !a.Info(0).Held {
			t.Fatalf("after %d flaps member 0 is not held: %+v", n, a.Info(0))
		}
		if !a.Distributing(1) {
			t.Fatalf("a flapping partner on member 0 took member 1 out (flap %d): %+v", n, a.Info(1))
		}
	}
	want(t, "while the partner flaps", a, false, true)
	if i := a.Info(0); !i.Held || i.FlapHolds != 1 || i.Selected || i.Actor.State&StateSync != 0 {
		t.Errorf("member 0 while its partner flaps: %+v", i)
	}
	// B is told member 0 is out, and does not distribute on it either.
	if b.Distributing(0) || !b.Distributing(1) {
		t.Errorf("B distributes on %v while A holds member 0 out", distributing(b))
	}

	// The flapping stops; B's LACPDUs alone for FlapHold bring it back.
	w.run(t, FlapHold-time.Second)
	if !a.Info(0).Held {
		t.Errorf("member 0 came back before FlapHold passed: %+v", a.Info(0))
	}
	w.run(t, 3*time.Second)
	want(t, "after the flapping stopped", a, true, true)
	if i := a.Info(0); i.Held || i.FlapHolds != 1 {
		t.Errorf("member 0 after the hold: %+v", i)
	}
}
