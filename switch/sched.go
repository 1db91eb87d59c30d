package vswitch

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/hvnet/hvnet/units"
)

// Egress scheduling: where ports compete for a shaped egress (an uplink,
// a bond, a tunnel: any port with an egress rate, its capacity), frames of
// class 0 wait in one queue per sending port and are served by
// reservation, shares and limit, as VMware's Network I/O Control
// allocates a NIC (and OVS's linux-htb queues with min-rate, max-rate):
//
//   - a port with a reservation is served at that rate whenever it has
//     frames queued, ahead of the sharing below (the "R" tags of mClock,
//     Gulati et al., OSDI 2010: each served frame moves the port's tag on
//     by its length over the rate; a tag not after now is due);
//   - the capacity left over goes round the ports with frames queued by
//     deficit round robin (Shreedhar and Varghese, 1995) with a quantum
//     proportional to their shares, so it divides by shares;
//   - a port never exceeds its limit (an "L" tag, the same way): one that
//     reached it waits out of the round until its tag comes;
//   - classes 1 and 2 (by PCP, or DSCP where mapped) stay strict
//     priority above all of it (IEEE 802.1Q-2018 §8.6.8.1), one FIFO each.
//
// It is work-conserving: while the egress has capacity and any port has a
// frame it may send, a frame goes. Reservations, shares and limits belong
// to the sending port (PortConfig.Allocation) and hold at every shaped
// egress it sends through; the switch refuses reservations that add up to
// more than a shaped egress's capacity. Tags lag now by at most schedSlack,
// so a port that was served late (the scheduler runs when frames arrive
// and when the switch is polled) catches up that much, no more.

// Allocation is a port's claim on the shaped egresses it sends through.
// The zero value is no reservation, DefaultShares, no limit.
type Allocation struct {
	// Reservation is the rate (bytes per second) the port is given at a
	// congested egress while it has frames queued there; 0: none.
	Reservation int64
	// Shares is the port's weight in the capacity left over after the
	// reservations: 1..MaxShares, 0 means DefaultShares.
	Shares int
	// Limit is the most the port may send through a shaped egress, in
	// bytes per second, even when capacity is idle; 0: none.
	Limit int64
}

// Shares: NIOC's "normal" is 50 of 1..100; hvnet's scale is wider.
const (
	DefaultShares = 100
	MaxShares     = 10000
)

// ClassMap sorts a shaped egress's frames into its three classes: class 2
// and 1 are served in strict priority before class 0, where the sending
// ports share the capacity by their Allocation.
type ClassMap struct {
	// PCP is the class of each 802.1p priority; nil means IEEE 802.1Q
	// Table 8-5's three-class row (PCP 0-3: class 0, 4-5: 1, 6-7: 2).
	PCP []uint8
	// DSCP maps IP DSCP ranges to a class; an IPv4 or IPv6 frame whose
	// DSCP falls in one takes that class whatever its PCP. Empty: PCP
	// only. The marks are the tenant's: map only those you trust (a
	// tenant that may mark frames into a strict class can take the
	// capacity from class 0).
	DSCP []DSCPClass
}

// DSCPClass maps DSCP values From..To (0..63) to Class (0..2).
type DSCPClass struct {
	From, To, Class uint8
}

const (
	schedSlack           = 50_000_000 // ns a tag may lag now: the catch-up after the scheduler ran late (goroutines wait tens of ms on a busy host)
	schedQuantumPerShare = 64         // DRR quantum bytes per share (DefaultShares: 6400 B)
	flowRingMin          = 128 << 10  // a port's first ring at an egress; grows to EgressQueue.Bytes
)

func (a Allocation) shares() int {
	if a.Shares == 0 {
		return DefaultShares
	}
	return a.Shares
}

func (a Allocation) validate() error {
	switch {
	case a.Reservation < 0 || a.Limit < 0:
		return fmt.Errorf("%w: allocation: negative rate", errConfig)
	case a.Reservation > maxBucketRate || a.Limit > maxBucketRate:
		return fmt.Errorf("%w: allocation: rate above %d bytes/s", errConfig, int64(maxBucketRate))
	case a.Shares < 0 || a.Shares > MaxShares:
		return fmt.Errorf("%w: shares %d outside 1..%d", errConfig, a.Shares, MaxShares)
	case a.Limit != 0 && a.Reservation > a.Limit:
		return fmt.Errorf("%w: reservation %s above limit %s", errConfig,
			units.FormatBitRate(a.Reservation*8), units.FormatBitRate(a.Limit*8))
	}
	return nil
}

func (m ClassMap) validate() error {
	if m.PCP != nil && len(m.PCP) != 8 {
		return fmt.Errorf("%w: class map: %d PCP classes, want 8", errConfig, len(m.PCP))
	}
	for p, c := range m.PCP {
		if c >= numClasses {
			return fmt.Errorf("%w: class map: PCP %d to class %d, classes are 0..%d", errConfig, p, c, numClasses-1)
		}
	}
	for _, d := range m.DSCP {
		if d.From > 63 || d.To > 63 || d.From > d.To || d.Class >= numClasses {
			return fmt.Errorf("%w: class map: DSCP %d-%d to class %d: DSCP is 0..63, classes 0..%d", errConfig, d.From, d.To, d.Class, numClasses-1)
		}
	}
	return nil
}

// String writes the map for people: "pcp 0 0 0 0 1 1 2 2, dscp 46:2".
func (m ClassMap) String() string {
	var b strings.Builder
	if m.PCP != nil {
		b.WriteString("pcp")
		for _, c := range m.PCP {
			fmt.Fprintf(&b, " %d", c)
		}
	}
	for _, d := range m.DSCP {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		if d.From == d.To {
			fmt.Fprintf(&b, "dscp %d:%d", d.From, d.Class)
		} else {
			fmt.Fprintf(&b, "dscp %d-%d:%d", d.From, d.To, d.Class)
		}
	}
	return b.String()
}

// classifier is a ClassMap compiled for the data path.
type classifier struct {
	pcp     [8]uint8
	dscp    [64]int8 // -1: not mapped
	anyDSCP bool
}

func (c *classifier) compile(m ClassMap) {
	c.pcp = pcpClass
	if m.PCP != nil {
		copy(c.pcp[:], m.PCP)
	}
	for i := range c.dscp {
		c.dscp[i] = -1
	}
	c.anyDSCP = len(m.DSCP) > 0
	for _, d := range m.DSCP {
		for v := d.From; v <= d.To; v++ {
			c.dscp[v] = int8(d.Class)
		}
	}
}

// class returns the class of a frame in egress form. Each byte it looks
// at is read once (the frame may still be a tenant's memory).
func (c *classifier) class(data []byte, pcp uint8) uint8 {
	cl := c.pcp[pcp&7]
	if !c.anyDSCP || len(data) < 14 {
		return cl
	}
	et, l3 := binary.BigEndian.Uint16(data[12:14]), 14
	for i := 0; i < maxTags && (et == tpidCTag || et == tpidSTag) && len(data) >= l3+4; i++ {
		et = binary.BigEndian.Uint16(data[l3+2 : l3+4])
		l3 += 4
	}
	var dscp uint8
	switch {
	case et == etherTypeIPv4 && len(data) >= l3+2:
		dscp = data[l3+1] >> 2
	case et == etherTypeIPv6 && len(data) >= l3+2:
		hi, lo := data[l3], data[l3+1]
		dscp = (hi&0x0f)<<2 | lo>>6
	default:
		return cl
	}
	if d := c.dscp[dscp]; d >= 0 {
		return uint8(d)
	}
	return cl
}

// flowQueue is one sending port's class-0 queue at a shaped egress.
type flowQueue struct {
	src     *PortHandle
	q       classQueue
	alloc   Allocation
	quantum int64
	rTag    int64 // reservation: due when <= now
	lTag    int64 // limit: may send when <= now
	deficit int64
	inDRR   bool
	resIdx  int // index in the reservation heap, -1: not in it
	limIdx  int // index in the limit heap, -1: not in it
	stats   queueStats
}

// queueStats counts what a queue sent and dropped, and its rate over
// the last whole second it was busy.
type queueStats struct {
	sentPkts, sentBytes, drops uint64
	winStart, winBytes, rate   int64
}

func (st *queueStats) sent(n int, now int64) {
	st.sentPkts++
	st.sentBytes += uint64(n)
	if now-st.winStart >= nano {
		if now-st.winStart < 2*nano {
			st.rate = st.winBytes * nano / (now - st.winStart)
		} else {
			st.rate = 0 // idle in between: the old window says nothing
		}
		st.winStart, st.winBytes = now, 0
	}
	st.winBytes += int64(n)
}

// rateAt is the rate (bytes/s) the queue achieved, 0 when idle for long.
func (st *queueStats) rateAt(now int64) int64 {
	if now-st.winStart >= 2*nano {
		return 0
	}
	return st.rate
}

// QueueStats is one queue of a shaped egress.
type QueueStats struct {
	// Port is the sending port (a class-0 queue), "" for a class queue.
	Port string
	// Class is the traffic class (0..2).
	Class                     int
	QueuedFrames, QueuedBytes int
	SentPackets, SentBytes    uint64
	Drops                     uint64 // tail drops: the queue was full
	// Rate is the rate achieved over the last whole second it was busy,
	// in bytes per second.
	Rate int64
	// Allocation is the sending port's (class-0 queues).
	Allocation Allocation
}

// flowHeap is a binary min-heap of flows by a tag; idx says where each
// flow is, so a flow can leave from anywhere.
type flowHeap struct {
	fs  []*flowQueue
	key func(*flowQueue) int64
	idx func(*flowQueue) *int
}

func (h *flowHeap) less(i, j int) bool { return h.key(h.fs[i]) < h.key(h.fs[j]) }

func (h *flowHeap) swap(i, j int) {
	h.fs[i], h.fs[j] = h.fs[j], h.fs[i]
	*h.idx(h.fs[i]) = i
	*h.idx(h.fs[j]) = j
}

func (h *flowHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h *flowHeap) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(h.fs) {
			return
		}
		m := l
		if r := l + 1; r < len(h.fs) && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			return
		}
		h.swap(i, m)
		i = m
	}
}

func (h *flowHeap) push(f *flowQueue) {
	if *h.idx(f) >= 0 {
		return
	}
	h.fs = append(h.fs, f)
	*h.idx(f) = len(h.fs) - 1
	h.up(len(h.fs) - 1)
}

func (h *flowHeap) remove(f *flowQueue) {
	i := *h.idx(f)
	if i < 0 {
		return
	}
	last := len(h.fs) - 1
	if i != last {
		h.swap(i, last)
	}
	h.fs[last] = nil
	h.fs = h.fs[:last]
	*h.idx(f) = -1
	if i != last {
		h.down(i)
		h.up(i)
	}
}

// fix restores the heap after f's key changed.
func (h *flowHeap) fix(f *flowQueue) {
	if i := *h.idx(f); i >= 0 {
		h.down(i)
		h.up(i)
	}
}

func (h *flowHeap) top() *flowQueue {
	if len(h.fs) == 0 {
		return nil
	}
	return h.fs[0]
}

// flowRing is the deficit round robin's FIFO of flows.
type flowRing struct {
	buf        []*flowQueue
	head, size int
}

func (r *flowRing) push(f *flowQueue) {
	if r.size == len(r.buf) {
		nb := make([]*flowQueue, max(2*len(r.buf), 8))
		for i := range r.size {
			nb[i] = r.buf[(r.head+i)%len(r.buf)]
		}
		r.buf, r.head = nb, 0
	}
	r.buf[(r.head+r.size)%len(r.buf)] = f
	r.size++
}

func (r *flowRing) front() *flowQueue { return r.buf[r.head] }

func (r *flowRing) pop() *flowQueue {
	f := r.buf[r.head]
	r.buf[r.head] = nil
	r.head = (r.head + 1) % len(r.buf)
	r.size--
	return f
}

// sched is the class-0 part of a shaper: the sending ports' queues.
type sched struct {
	flows map[*PortHandle]*flowQueue
	drr   flowRing
	res   flowHeap // flows with a reservation and frames queued, by rTag
	lim   flowHeap // flows out of the round for their limit, by lTag
}

func (s *sched) init() {
	s.flows = make(map[*PortHandle]*flowQueue)
	s.res = flowHeap{key: func(f *flowQueue) int64 { return f.rTag }, idx: func(f *flowQueue) *int { return &f.resIdx }}
	s.lim = flowHeap{key: func(f *flowQueue) int64 { return f.lTag }, idx: func(f *flowQueue) *int { return &f.limIdx }}
}

// flow returns src's queue, made on its first frame. Its allocation is
// read from src's configuration on every batch, so a live change applies
// to the frames already queued.
func (s *sched) flow(src *PortHandle, qc QueueConfig) *flowQueue {
	f := s.flows[src]
	if f == nil {
		f = &flowQueue{src: src, resIdx: -1, limIdx: -1}
		f.q.grows, f.q.limFrames, f.q.limBytes = true, qc.Frames, qc.Bytes
		s.flows[src] = f
	}
	if a := src.state.Load().cfg.Allocation; a != f.alloc || f.quantum == 0 {
		f.alloc = a
		f.quantum = int64(a.shares()) * schedQuantumPerShare
		if a.Reservation == 0 {
			s.res.remove(f)
		} else if f.q.dn > 0 {
			s.res.push(f)
		}
		if a.Limit == 0 && f.limIdx >= 0 {
			s.lim.remove(f)
			s.enterRound(f)
		}
	}
	return f
}

func (s *sched) enterRound(f *flowQueue) {
	if !f.inDRR {
		f.inDRR = true
		s.drr.push(f)
	}
}

// push queues a frame of f; false: f's queue is full. f's ring starts
// small and doubles as its backlog needs, up to the egress's queue size.
func (s *sched) push(f *flowQueue, fr *Frame, now int64) bool {
	q, n := &f.q, len(fr.Data)
	if q.dn == 0 && len(q.descs) != q.limFrames {
		q.descs, q.dh = make([]qdesc, q.limFrames), 0
	}
	if q.dn < q.limFrames && q.bytes+n <= q.limBytes && len(q.buf) < q.limBytes && !q.fits(n) {
		q.grow(min(q.limBytes, max(flowRingMin, 2*len(q.buf), q.bytes+n)))
	}
	if !q.push(fr) {
		return false
	}
	if q.dn == 1 { // it was idle: back into the schedule
		if f.alloc.Reservation > 0 {
			f.rTag = max(f.rTag, now-schedSlack)
			s.res.push(f)
		}
		if f.alloc.Limit > 0 && f.lTag > now {
			s.lim.push(f)
		} else {
			s.enterRound(f)
		}
	}
	return true
}

// pick returns the flow whose head frame goes next at now, and whether
// it goes on its reservation; nil when no flow may send at now. It only
// moves flows between the round and the limit heap and gives quanta:
// nothing that a frame not sent after all would make wrong.
func (s *sched) pick(now int64) (*flowQueue, bool) {
	for f := s.lim.top(); f != nil && f.lTag <= now; f = s.lim.top() {
		s.lim.remove(f)
		if f.q.dn > 0 {
			s.enterRound(f)
		}
	}
	for f := s.res.top(); f != nil && f.rTag <= now; f = s.res.top() {
		if f.alloc.Limit > 0 && f.lTag > now {
			f.rTag = f.lTag // its limit binds before its reservation
			s.res.fix(f)
			continue
		}
		return f, true
	}
	for s.drr.size > 0 {
		f := s.drr.front()
		if f.q.dn == 0 {
			s.drr.pop()
			f.inDRR, f.deficit = false, 0
			continue
		}
		if f.alloc.Limit > 0 && f.lTag > now {
			s.drr.pop()
			f.inDRR = false
			s.lim.push(f)
			continue
		}
		if f.deficit >= int64(f.q.front().n) {
			return f, false
		}
		f.deficit += f.quantum
		s.drr.push(s.drr.pop())
	}
	return nil, false
}

// sent accounts f's head frame of n bytes, sent at now (on its
// reservation or in the round), and pops it.
func (s *sched) sent(f *flowQueue, n int, onRes bool, now int64) {
	if onRes {
		f.rTag = max(f.rTag, now-schedSlack) + int64(n)*nano/f.alloc.Reservation
	} else {
		f.deficit -= int64(n)
	}
	if f.alloc.Limit > 0 {
		f.lTag = max(f.lTag, now-schedSlack) + int64(n)*nano/f.alloc.Limit
	}
	f.q.pop()
	if f.q.dn == 0 {
		s.res.remove(f)
		s.lim.remove(f)
		f.deficit = 0 // DRR: an emptied queue keeps no credit
	} else if onRes {
		s.res.fix(f)
	}
}

// next is when a flow that may not send at now may (pick returned nil):
// the first reservation or limit tag; 0 if no flow waits for one.
func (s *sched) next(now int64) int64 {
	var t int64
	if f := s.lim.top(); f != nil && f.lTag > now {
		t = f.lTag
	}
	if f := s.res.top(); f != nil && f.rTag > now && (t == 0 || f.rTag < t) {
		t = f.rTag
	}
	return t
}

// drop forgets src's queue (src was removed); its frames go.
func (s *sched) drop(src *PortHandle) int {
	f := s.flows[src]
	if f == nil {
		return 0
	}
	n := f.q.dn
	s.res.remove(f)
	s.lim.remove(f)
	f.q = classQueue{}
	delete(s.flows, src)
	// A flow left in the round is skipped there: its queue is empty.
	return n
}

// stats lists the flows, by sending port's name.
func (s *sched) stats(now int64) []QueueStats {
	out := make([]QueueStats, 0, len(s.flows))
	for src, f := range s.flows {
		out = append(out, QueueStats{Port: src.name, QueuedFrames: f.q.dn, QueuedBytes: f.q.bytes,
			SentPackets: f.stats.sentPkts, SentBytes: f.stats.sentBytes, Drops: f.stats.drops,
			Rate: f.stats.rateAt(now), Allocation: f.alloc})
	}
	slices.SortFunc(out, func(a, b QueueStats) int { return strings.Compare(a.Port, b.Port) })
	return out
}

// admit checks cfg (a port being added or changed) against the others:
// at every shaped egress, the reservations of the other ports (any may
// send through it) must fit in its capacity. s.mu is held.
func (s *Switch) admit(cfg PortConfig) error {
	get := func(n string) PortConfig {
		if n == cfg.Name {
			return cfg
		}
		return s.ports[n].state.Load().cfg
	}
	names := make([]string, 0, len(s.ports)+1)
	for n := range s.ports {
		names = append(names, n)
	}
	if _, ok := s.ports[cfg.Name]; !ok {
		names = append(names, cfg.Name)
	}
	slices.Sort(names)
	var total int64
	for _, n := range names {
		total += get(n).Allocation.Reservation
	}
	for _, e := range names {
		ec := get(e)
		capacity, sum := ec.Egress.Bytes.Rate, total-ec.Allocation.Reservation
		if capacity == 0 || sum <= capacity {
			continue
		}
		var who []string
		for _, n := range names {
			if a := get(n).Allocation; n != e && a.Reservation > 0 {
				who = append(who, fmt.Sprintf("%s %s", n, units.FormatBitRate(a.Reservation*8)))
			}
		}
		return fmt.Errorf("%w: reservations add up to %s (%s), more than port %q's egress rate %s",
			ErrOverReserved, units.FormatBitRate(sum*8), strings.Join(who, ", "), e, units.FormatBitRate(capacity*8))
	}
	return nil
}

// Queues lists the queues of the port's egress shaper: its strict classes
// and the class-0 queue of each port that has sent through it.
func (h *PortHandle) Queues() []QueueStats { return h.shaper.queues(h.sw.clock.Now()) }
