package bond

import (
	"time"
)

// The LACP machines of IEEE 802.1AX-2014 §6.4 for one aggregation: the
// receive, periodic transmission, selection and mux machines of each
// member, driven by the caller's clock (Tick) and its received LACPDUs
// (Receive). The engine is single-threaded: its owner serialises calls.
//
// Simplifications, as Linux's bonding driver makes them: one aggregator
// per bond (members whose partner is another system or key are not
// aggregated, and the aggregator goes to the largest group of members
// that agree), no aggregate wait timer (members attach as soon as they
// are selected), and the mux is coupled control (collecting and
// distributing together).

// Rate is the LACPDU rate a bond asks its partner for.
type Rate uint8

const (
	// RateSlow asks for a LACPDU every 30 s (partner timeout 90 s).
	RateSlow Rate = iota
	// RateFast asks for a LACPDU every second (partner timeout 3 s).
	RateFast
)

// Timers (§6.4.4).
const (
	FastPeriodic   = time.Second
	SlowPeriodic   = 30 * time.Second
	ShortTimeout   = 3 * time.Second  // three fast periods
	LongTimeout    = 90 * time.Second // three slow periods
	maxTxPerPeriod = 3                // LACPDUs per FastPeriodic at most (§6.4.16)

	// Partner flap damping (not in 802.1AX; what switch vendors'
	// "link-flap" error-disable settings do for LACP partners): a member
	// whose partner changes identity (system, key or port) FlapLimit
	// times within FlapWindow is held out of the aggregation until its
	// partner has been the same for FlapHold. A spoofed or broken
	// partner then takes one member out for good instead of moving
	// traffic on and off it, and the honest partner, told so by our
	// LACPDUs, stops sending on it.
	FlapLimit  = 3
	FlapWindow = 10 * time.Second
	FlapHold   = 5 * time.Second
)

// System is the actor's system: its priority, ID (a MAC) and the key
// its members share.
type System struct {
	Priority uint16
	ID       [6]byte
	Key      uint16
}

// rxState is the receive machine's state.
type rxState uint8

const (
	rxDefaulted rxState = iota // no partner: its information is the defaults
	rxCurrent                  // a LACPDU within the timeout
	rxExpired                  // the timeout ran out once
)

func (s rxState) String() string {
	return [...]string{"defaulted", "current", "expired"}[s]
}

// lacpPort is one member's LACP machines.
type lacpPort struct {
	actor, partner PortInfo
	up             bool
	rx             rxState
	currentWhile   time.Time // when the partner's information times out
	nextPeriodic   time.Time
	ntt            bool // need to transmit
	txWindow       time.Time
	txInWindow     int
	selected       bool
	// Flap damping: when the partner's identity last changed (a ring of
	// the last FlapLimit changes) and until when the member is held out.
	flaps     [FlapLimit]time.Time
	flapNext  int
	heldUntil time.Time
	held      bool
	// Counters.
	rxPDUs, txPDUs, expiries, defaults, partnerChanges, holds uint64
}

// LACP is the engine of one bond's aggregation.
type LACP struct {
	sys     System
	rate    Rate
	passive bool
	ports   []*lacpPort
	// The aggregator's partner: the system and key the aggregated members
	// see (zero: none yet).
	agg       aggKey
	aggregate bool
}

type aggKey struct {
	prio uint16
	sys  [6]byte
	key  uint16
}

// NewLACP returns the engine for n members (ports 1..n) of system sys.
// A passive engine sends only to a partner that does.
func NewLACP(sys System, rate Rate, passive bool, n int) *LACP {
	l := &LACP{sys: sys, rate: rate, passive: passive}
	for i := range n {
		l.AddPort(uint16(i + 1))
	}
	return l
}

// AddPort adds a member with LACP port number num (1..65535, unique in
// the bond); it starts with its link down.
func (l *LACP) AddPort(num uint16) int {
	p := &lacpPort{}
	p.actor = PortInfo{SystemPriority: l.sys.Priority, System: l.sys.ID, Key: l.sys.Key, PortPriority: 255, Port: num,
		State: StateAggregation | StateDefaulted}
	if !l.passive {
		p.actor.State |= StateActivity
	}
	if l.rate == RateFast {
		p.actor.State |= StateShortTimeout
	}
	p.partner = defaultPartner()
	l.ports = append(l.ports, p)
	return len(l.ports) - 1
}

// RemovePort removes member i; the indexes above it shift down by one.
func (l *LACP) RemovePort(i int) {
	l.ports = append(l.ports[:i], l.ports[i+1:]...)
	l.selection()
}

// defaultPartner is the partner's administrative information (§6.4.2.2):
// nobody, long timeout, aggregatable, in sync: a member without a
// partner is not aggregated (its partner system is zero) but a fallback
// can use it.
func defaultPartner() PortInfo {
	return PortInfo{State: StateAggregation}
}

// SetLink tells the engine a member's link (carrier) went up or down. A
// member whose link goes down loses its partner at once (§6.4.12: the
// receive machine goes to PORT_DISABLED, then DEFAULTED when the link
// returns).
func (l *LACP) SetLink(i int, up bool, now time.Time) {
	p := l.ports[i]
	if p.up == up {
		return
	}
	p.up = up
	l.toDefaulted(p)
	if up {
		p.nextPeriodic = now // send at once
		p.ntt = true
	}
	l.selection()
}

func (l *LACP) toDefaulted(p *lacpPort) {
	p.rx = rxDefaulted
	p.partner = defaultPartner()
	p.actor.State = p.actor.State&^StateExpired | StateDefaulted
	p.selected = false
}

// Receive is a LACPDU received on member i.
func (l *LACP) Receive(i int, d LACPDU, now time.Time) {
	p := l.ports[i]
	if !p.up {
		return
	}
	p.rxPDUs++
	old := p.partner
	// recordPDU (§6.4.9): the partner's operational information is the
	// PDU's actor information; it is in sync with us when it holds our
	// actual information (or does not aggregate) and says so.
	p.partner = d.Actor
	seesUs := d.Partner.System == p.actor.System && d.Partner.SystemPriority == p.actor.SystemPriority &&
		d.Partner.Key == p.actor.Key && d.Partner.Port == p.actor.Port && d.Partner.PortPriority == p.actor.PortPriority &&
		d.Partner.State&StateAggregation == p.actor.State&StateAggregation
	if !(seesUs || d.Actor.State&StateAggregation == 0) {
		p.partner.State &^= StateSync
	}
	// The partner has our information wrong: tell it (update_NTT).
	if !seesUs || d.Partner.State&(StateActivity|StateShortTimeout|StateSync) != p.actor.State&(StateActivity|StateShortTimeout|StateSync) {
		p.ntt = true
	}
	identity := old.System != p.partner.System || old.SystemPriority != p.partner.SystemPriority || old.Key != p.partner.Key ||
		old.Port != p.partner.Port || old.PortPriority != p.partner.PortPriority
	if identity || old.State&stateSelectionBits != p.partner.State&stateSelectionBits {
		p.selected = false // update_Selected: select again
	}
	if identity && old.System != ([6]byte{}) {
		p.partnerChanged(now)
	}
	p.held = now.Before(p.heldUntil)
	// The partner now asks for the fast rate: the periodic machine leaves
	// SLOW_PERIODIC at once (§6.4.13), not at the slow timer's end.
	if old.State&StateShortTimeout == 0 && p.partner.State&StateShortTimeout != 0 && p.nextPeriodic.After(now.Add(FastPeriodic)) {
		p.nextPeriodic = now
	}
	p.rx = rxCurrent
	p.actor.State &^= StateExpired | StateDefaulted
	timeout := LongTimeout
	if p.actor.State&StateShortTimeout != 0 {
		timeout = ShortTimeout
	}
	p.currentWhile = now.Add(timeout)
	l.selection()
}

// partnerChanged records a change of the partner's identity and holds
// the member out of the aggregation when it is the FlapLimit-th within
// FlapWindow, or while it is held already (the hold runs FlapHold from
// the last change).
func (p *lacpPort) partnerChanged(now time.Time) {
	p.partnerChanges++
	oldest := p.flaps[p.flapNext]
	p.flaps[p.flapNext] = now
	p.flapNext = (p.flapNext + 1) % FlapLimit
	held := now.Before(p.heldUntil)
	if held || !oldest.IsZero() && now.Sub(oldest) < FlapWindow {
		if !held {
			p.holds++
		}
		p.heldUntil = now.Add(FlapHold)
	}
}

// Tick runs the timers up to now and returns the members that have a
// LACPDU to send now (PDU builds it); pass a reusable slice.
func (l *LACP) Tick(now time.Time, send []int) []int {
	changed := false
	for _, p := range l.ports {
		if !p.up {
			continue
		}
		if p.held && !now.Before(p.heldUntil) {
			p.held = false // the partner has been the same for FlapHold
			changed = true
		}
		switch {
		case p.rx == rxCurrent && !now.Before(p.currentWhile):
			// EXPIRED: the partner is given a short while to speak.
			p.rx = rxExpired
			p.expiries++
			p.partner.State = p.partner.State&^StateSync | StateShortTimeout
			p.actor.State |= StateExpired
			p.currentWhile = now.Add(ShortTimeout)
			p.ntt = true
			changed = true
		case p.rx == rxExpired && !now.Before(p.currentWhile):
			p.defaults++
			l.toDefaulted(p)
			p.ntt = true
			changed = true
		}
	}
	if changed {
		l.selection()
	}
	for i, p := range l.ports {
		if !p.up {
			continue
		}
		// Periodic transmission (§6.4.13): fast when the partner asks
		// for it, none when both sides are passive.
		active := p.actor.State&StateActivity != 0 || p.partner.State&StateActivity != 0
		if active && !now.Before(p.nextPeriodic) {
			p.ntt = true
		}
		if !p.ntt || !active {
			continue
		}
		if now.Sub(p.txWindow) >= FastPeriodic {
			p.txWindow, p.txInWindow = now, 0
		}
		if p.txInWindow >= maxTxPerPeriod {
			continue // at most three in a fast period; the rest waits
		}
		p.txInWindow++
		p.ntt = false
		p.txPDUs++
		period := SlowPeriodic
		if p.partner.State&StateShortTimeout != 0 {
			period = FastPeriodic
		}
		p.nextPeriodic = now.Add(period)
		send = append(send, i)
	}
	return send
}

// Next is when Tick next has timer work to do (the earliest of the
// members' timeouts and periodic transmissions, or a held-back LACPDU).
func (l *LACP) Next(now time.Time) time.Time {
	next := now.Add(time.Hour)
	early := func(t time.Time) {
		if t.Before(next) {
			next = t
		}
	}
	for _, p := range l.ports {
		if !p.up {
			continue
		}
		if p.rx != rxDefaulted {
			early(p.currentWhile)
		}
		if p.held {
			early(p.heldUntil)
		}
		early(p.nextPeriodic)
		if p.ntt {
			early(p.txWindow.Add(FastPeriodic))
		}
	}
	return next
}

// PDU is the LACPDU member i sends now.
func (l *LACP) PDU(i int) LACPDU {
	p := l.ports[i]
	return LACPDU{Actor: p.actor, Partner: p.partner}
}

// selection is the selection logic and the mux machines of every member
// (§6.4.14, §6.4.15, coupled control): the aggregator is the largest
// group of members with a current partner, aggregatable on both sides,
// that share the partner's system and key (the current aggregator's
// group while it has members); its members are selected, attached
// (actor sync) and, once their partner is in sync too, collecting and
// distributing; every other member is detached.
func (l *LACP) selection() {
	groups := map[aggKey]int{}
	for _, p := range l.ports {
		if k, ok := p.candidate(); ok {
			groups[k]++
		}
	}
	if groups[l.agg] == 0 {
		best, n := aggKey{}, 0
		for k, c := range groups {
			if c > n || c == n && less(k, best) {
				best, n = k, c
			}
		}
		l.agg = best
	}
	l.aggregate = groups[l.agg] > 0
	for _, p := range l.ports {
		k, ok := p.candidate()
		p.selected = ok && k == l.agg
		st := p.actor.State &^ (StateSync | StateCollecting | StateDistributing)
		if p.selected {
			st |= StateSync
			if p.partner.State&StateSync != 0 {
				st |= StateCollecting | StateDistributing
			}
		}
		if st != p.actor.State {
			p.actor.State = st
			p.ntt = true
		}
	}
}

func less(a, b aggKey) bool {
	if a.prio != b.prio {
		return a.prio < b.prio
	}
	for i := range a.sys {
		if a.sys[i] != b.sys[i] {
			return a.sys[i] < b.sys[i]
		}
	}
	return a.key < b.key
}

// candidate reports whether the member can join an aggregator, and whose.
func (p *lacpPort) candidate() (aggKey, bool) {
	if !p.up || p.held || p.rx != rxCurrent || p.partner.State&StateAggregation == 0 || p.partner.System == ([6]byte{}) {
		return aggKey{}, false
	}
	return aggKey{p.partner.SystemPriority, p.partner.System, p.partner.Key}, true
}

// Distributing reports whether member i carries the aggregation's
// frames: both sides collect and distribute on it.
func (l *LACP) Distributing(i int) bool {
	p := l.ports[i]
	return p.up && p.actor.State&StateDistributing != 0 && p.partner.State&StateCollecting != 0
}

// Aggregated reports whether any member has a partner to aggregate with
// (false: every partner is silent, the fallback's case).
func (l *LACP) Aggregated() bool { return l.aggregate }

// MemberInfo is one member's LACP view.
type MemberInfo struct {
	Actor, Partner PortInfo
	RxState        string // current, expired, defaulted
	Selected       bool
	RxPDUs, TxPDUs uint64
	Expiries       uint64 // partner timeouts (CURRENT -> EXPIRED)
	Defaults       uint64 // partner given up (EXPIRED -> DEFAULTED)
	PartnerChanges uint64 // times the partner's identity changed
	FlapHolds      uint64 // times the member was held out for a flapping partner
	Held           bool   // held out now: its partner flapped
}

// Info returns member i's view.
func (l *LACP) Info(i int) MemberInfo {
	p := l.ports[i]
	return MemberInfo{Actor: p.actor, Partner: p.partner, RxState: p.rx.String(), Selected: p.selected,
		RxPDUs: p.rxPDUs, TxPDUs: p.txPDUs, Expiries: p.expiries, Defaults: p.defaults,
		PartnerChanges: p.partnerChanges, FlapHolds: p.holds, Held: p.held}
}

// SetActivity changes the actor's LACP activity and the rate it asks the
// partner for, on every member; each tells its partner at once.
func (l *LACP) SetActivity(rate Rate, passive bool) {
	l.rate, l.passive = rate, passive
	for _, p := range l.ports {
		st := p.actor.State &^ (StateActivity | StateShortTimeout)
		if !passive {
			st |= StateActivity
		}
		if rate == RateFast {
			st |= StateShortTimeout
		}
		if st != p.actor.State {
			p.actor.State = st
			p.ntt = true
		}
	}
}
