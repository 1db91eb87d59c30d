package vswitch

import (
	"encoding/binary"
	"sync"
	"sync/atomic"

	"github.com/hvnet/hvnet/conntrack"
	"github.com/hvnet/hvnet/frame"
)

// portState is a port's configuration compiled for the forwarding path. It
// is immutable; UpdatePort swaps in a new one.
type portState struct {
	cfg        PortConfig
	mode       VLANMode
	pvid       uint16
	native     uint16
	defaultPCP uint8
	vlans      vlanSet // member set: VLANs the port receives and sends
	maxL3      int
	allowed    map[uint64]struct{} // source MACs accepted; nil: any
	own        uint64              // macKey of the port's own MAC under port security; 0: none
	macLimit   int64
	reserved   uint16 // reservedMask(mode)
	police     bool
	storm      bool
	mirrorIn   bool
	mirrorOut  bool
}

// newPortState compiles cfg for a port whose own MAC is own (zero: none).
func newPortState(cfg PortConfig, own MAC) *portState {
	st := &portState{
		cfg: cfg, mode: cfg.Mode, pvid: cfg.PVID, defaultPCP: cfg.DefaultPCP,
		maxL3: cfg.MTU, macLimit: int64(cfg.MACLimit), reserved: reservedMask(cfg.Mode),
		police:   cfg.Ingress.enabled(),
		storm:    cfg.Storm.Broadcast.enabled() || cfg.Storm.Multicast.enabled() || cfg.Storm.UnknownUnicast.enabled(),
		mirrorIn: cfg.MirrorIngress, mirrorOut: cfg.MirrorEgress,
	}
	if cfg.Mode == ModeTrunk {
		st.native = cfg.NativeVLAN
		for _, v := range cfg.AllowedVLANs {
			st.vlans.add(v)
		}
		if st.native != 0 {
			st.vlans.add(st.native)
		}
	} else {
		st.vlans.add(cfg.PVID)
	}
	if cfg.PortSecurity == PortSecurityOn {
		st.own = macKey(own[:])
	}
	if len(cfg.AllowedMACs) > 0 || st.own != 0 {
		st.allowed = make(map[uint64]struct{}, len(cfg.AllowedMACs)+1)
		for _, m := range cfg.AllowedMACs {
			st.allowed[macKey(m[:])] = struct{}{}
		}
		if st.own != 0 {
			st.allowed[st.own] = struct{}{}
		}
	}
	return st
}

// Storm-control limiter indexes.
const (
	stormBcast = iota
	stormMcast
	stormUnknown
)

// PortHandle is a port attached to a Switch. Its owner feeds it frames with
// Input; the switch delivers to the Port given to AddPort.
type PortHandle struct {
	sw      *Switch
	port    Port
	name    string
	ifIndex uint32 // its number in exported flows (IfIndex)
	mac     MAC    // the Port's own MAC (AddressedPort); zero: none
	state   atomic.Pointer[portState]
	removed atomic.Bool
	index   atomic.Int32 // position in the current topology
	learned atomic.Int64 // dynamic FDB entries on this port
	ctr     portCounters
	acl     atomic.Pointer[aclSet] // ingress ACL; nil: allow all
	sg      atomic.Pointer[sgSet]  // stateful security group (secgroup.go); nil: none
	eacl    atomic.Pointer[aclSet] // egress ACL (aclegress.go); nil: allow all

	// Input's state: one context per input queue (ingress), each
	// serialising the calls for its queue, so that the queues of one
	// port are forwarded in parallel without a shared lock. inMu guards
	// what all of a port's queues share: its policer and storm limiters
	// and its flow shard; Input takes it (after the queue's lock) only
	// for a batch that needs one of them.
	in        [maxIngress]atomic.Pointer[ingress]
	inMu      sync.Mutex
	police    limiter
	storm     [3]limiter
	flows     flowShard    // its flows (flowcache.go)
	lastSweep atomic.Int64 // when learn last swept the port's aged entries at its MAC limit
	qport     QueuePort    // port, when it takes a queue hint (SendQueue); nil: not

	shaper shaper
}

// Name returns the port's name.
func (h *PortHandle) Name() string { return h.name }

// Config returns the port's current configuration.
func (h *PortHandle) Config() PortConfig { return h.state.Load().cfg }

// MAC returns the port's own MAC (AddressedPort), and whether it has one.
func (h *PortHandle) MAC() (MAC, bool) { return h.mac, h.mac != MAC{} }

// Counters returns a snapshot of the port's counters.
func (h *PortHandle) Counters() PortCounters {
	c := PortCounters{
		Name:      h.name,
		RxPackets: h.ctr.rxPackets.Load(), RxBytes: h.ctr.rxBytes.Load(),
		TxPackets: h.ctr.txPackets.Load(), TxBytes: h.ctr.txBytes.Load(),
		LearnedMACs: h.learned.Load(),
	}
	for i := range c.Drops {
		c.Drops[i] = h.ctr.drops[i].Load()
	}
	c.ShaperQueued = h.shaper.len()
	return c
}

// Poll sends what the port's egress shaper may send at now and returns the
// Clock time at which it should be polled again (0: nothing queued).
func (h *PortHandle) Poll(now int64) int64 { return h.shaper.poll(h, now) }

// maxIngress is the most input contexts a port has: InputQueue's queue q
// uses context q % maxIngress.
const maxIngress = 64

// ingress is one input queue's context: the lock that serialises the
// queue's Input calls and the per-batch working memory they use.
type ingress struct {
	mu sync.Mutex
	sc scratch
}

// ingress returns the context of input queue q, made on its first use.
func (h *PortHandle) ingress(q int) *ingress {
	slot := &h.in[q%maxIngress]
	if in := slot.Load(); in != nil {
		return in
	}
	in := &ingress{sc: newScratch()}
	if slot.CompareAndSwap(nil, in) {
		return in
	}
	return slot.Load()
}

// waitInputs returns once every Input call on the port that began
// before it has returned: a barrier (RemovePort).
func (h *PortHandle) waitInputs() {
	for i := range h.in {
		if in := h.in[i].Load(); in != nil {
			in.mu.Lock()
			in.mu.Unlock() //nolint:staticcheck // an empty critical section: a barrier
		}
	}
}

// Input forwards frames received on this port; it is InputQueue for a
// port with one queue, whose frames go to a destination's receive queue
// of the destination's choice (Port.Send). It is called by the port's
// owner from its own goroutine; calls for different ports run
// concurrently, calls for one port are serialised. Forwarding is
// synchronous: when Input returns every frame has been delivered
// (Port.Send), queued in a shaper (copied) or dropped and counted. The
// frames are owned by the caller; Input keeps no reference to them after
// it returns. It does not allocate.
func (h *PortHandle) Input(frames []Frame) { h.input(h.ingress(0), -1, frames) }

// InputQueue is Input for frames received on the port's queue q (q >= 0)
// of several: calls for different queues of one port run concurrently,
// without a lock they share (unless the port polices its ingress, has
// storm control or the flow cache is on: those are the port's, and its
// queues take turns on them), calls for one queue are serialised. A
// destination that takes a queue hint (QueuePort) gets the frames by
// SendQueue(q, ...): with as many workers as queues, each destination
// receive queue is written by one worker of a port.
func (h *PortHandle) InputQueue(q int, frames []Frame) {
	q = max(q, 0)
	h.input(h.ingress(q), int32(q), frames)
}

func (h *PortHandle) input(in *ingress, steer int32, frames []Frame) {
	if len(frames) == 0 {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if h.removed.Load() {
		return
	}
	sw := h.sw
	st := h.state.Load()
	tp := sw.topo.Load()
	now := sw.clock.Now()
	sc := &in.sc
	sc.fc = sw.flows.Load()
	if st.police || st.storm || sc.fc != nil {
		h.inMu.Lock()
		defer h.inMu.Unlock()
	}
	sc.steer = steer
	sc.srcOK = false
	if sc.batch++; sc.batch == 0 { // wrapped: forget entries from 2^32 batches ago
		sc.dcache = [dcacheSize]dcacheEntry{}
		sc.batch = 1
	}
	sc.tp, sc.now = tp, now
	sc.useACL(h.acl.Load())
	sc.sg = h.sg.Load()
	// The last decision is reused only where it depends on nothing but
	// the header bytes it is keyed on, the port's state and the topology
	// (lastDecision).
	sc.last.n = 0
	sc.lastOK = !sw.decideEach && sc.acl == nil && sc.sg == nil && sc.fc == nil && !st.police && !st.storm
	if st.mirrorIn {
		if m := sw.mirror.Load(); m != nil {
			mirror(m.s, h.name, Ingress, now, frames)
		}
	}
	var nb uint64
	for i := range frames {
		nb += uint64(frames[i].Len())
		h.forward(sc, st, tp, now, &frames[i])
	}
	h.flush(sc)
	sc.flushACLHits()
	sc.flushEgressHits()
	sc.tp, sc.acl, sc.sg, sc.fc, sc.capsPort, sc.last.d = nil, nil, nil, nil, nil, nil
	h.ctr.rxPackets.Add(uint64(len(frames)))
	h.ctr.rxBytes.Add(nb)
	h.ctr.addDrops(&sc.drops)
}

func (h *PortHandle) forward(sc *scratch, st *portState, tp *topology, now int64, f *Frame) {
	if sc.last.match(f.Data) {
		h.forwardAgain(sc, st, tp, f)
		return
	}
	var p pkt
	if r := classify(st, f.Data, &p); r != dropNone {
		sc.drops[r]++
		return
	}
	// data is the frame's head: every byte the switch decides on
	// (HeaderNeed); total counts the tail too.
	data, total := f.Data, f.Len()
	// Size: the L3 part may be MTU bytes, or a GSO frame's 64 KiB. Every
	// VLAN tag (a customer's C-tag on a dot1q-tunnel port, a QinQ stack on
	// a trunk) is header, not L3 payload (IEEE 802.3 §3.2.7 envelope
	// frames): a full-size tagged customer frame must pass.
	l3, et := l3Offset(data)
	if l3 < 0 { // truncated inner tag or more than maxTags tags
		sc.drops[DropMalformed]++
		return
	}
	sc.l3, sc.et, sc.fkOK = l3, et, false // for egress ACLs (aclegress.go)
	if l3len := total - l3; l3len > st.maxL3 && (f.Off.GSOType == frame.GSONone || total > maxGSOFrame) {
		sc.drops[DropMalformed]++
		return
	}
	if !f.Off.None() && (!checkOffload(data, total, &f.Off, &p) || int(f.Off.GSOSize) > st.maxL3) {
		sc.drops[DropMalformed]++
		return
	}
	src := data[6:12]
	if badSource(src) {
		sc.drops[DropMalformed]++
		return
	}
	dst := data[0:6]
	if st.reservedDst(dst) {
		sc.drops[DropReserved]++
		return
	}
	if st.spoofed(src) {
		sc.drops[DropSpoofed]++
		return
	}
	// The ACL is checked before the policer and learning: a denied frame
	// takes no tokens and teaches the FDB nothing.
	if as := sc.acl; as != nil {
		var k flowKey
		parseFlow(data, l3, et, &k, as.anyL3)
		i, act := sc.aclVerdict(&k)
		sc.countACLHit(i)
		if act == ACLDeny {
			sc.drops[DropACL]++
			return
		}
	}
	if set := sc.sg; set != nil {
		// An established TCP connection's segment (conntrack.TrackFast),
		// else the general path (sgSet.verdict).
		if v, ok := set.zone.TrackFast(data, total, l3, et, conntrack.Outbound, now, &sc.ctOutC); ok {
			if v == conntrack.Invalid {
				sc.drops[DropCTInvalid]++
				return
			}
		} else if r, _ := set.verdict(data, total, l3, et, conntrack.Outbound, now, &sc.ctp, &sc.ctOut); r != dropNone {
			sc.drops[r]++
			return
		}
	}
	if st.police && !h.police.allow(total, now) {
		sc.drops[DropPolicer]++
		return
	}
	if key := fdbKey(p.vid, src); !sc.srcOK || sc.srcKey != key {
		if r := h.learn(st, key, now); r != dropNone {
			sc.drops[r]++
			return
		}
		sc.srcKey, sc.srcOK = key, true
		// The source may now be a destination of this batch on this port:
		// forget a lookup of it cached before it was learned.
		if c := &sc.dcache[dcacheSlot(key)]; c.key == key {
			c.batch = 0
		}
	}
	sc.untag, sc.tag = nil, nil
	if dst[0]&1 != 0 {
		s := stormClass(dst)
		if st.storm && !h.storm[s].allow(total, now) {
			sc.drops[DropStorm]++
			return
		}
		if sc.fc != nil {
			h.account(sc.fc, &p, data, l3, et, total, nil, now)
		}
		sc.remember(h, data, l3, et, &p, lastFlood, nil, 0)
		h.flood(sc, tp, &p, f)
		return
	}
	key := fdbKey(p.vid, dst)
	var d *PortHandle
	if c := &sc.dcache[dcacheSlot(key)]; c.batch == sc.batch && c.key == key {
		d = c.h
	} else {
		d = h.sw.fdb.lookup(key, now)
		*c = dcacheEntry{key: key, batch: sc.batch, h: d}
	}
	if d != nil {
		if i := d.idx(tp); i >= 0 {
			if d != h { // never back out of the ingress port
				if sc.fc != nil {
					h.account(sc.fc, &p, data, l3, et, total, d, now)
				}
				sc.remember(h, data, l3, et, &p, lastUnicast, d, i)
				h.emit(sc, d, i, &p, f)
			} else {
				sc.remember(h, data, l3, et, &p, lastNone, nil, 0)
			}
			return
		}
	}
	if st.storm && !h.storm[stormUnknown].allow(len(data), now) {
		sc.drops[DropStorm]++
		return
	}
	if sc.fc != nil {
		h.account(sc.fc, &p, data, l3, et, total, nil, now)
	}
	sc.remember(h, data, l3, et, &p, lastFlood, nil, 0)
	h.flood(sc, tp, &p, f)
}

// forwardAgain forwards f as the batch's last decided frame was (the
// frames' headers up to L3 are the same bytes: sc.last): what follows
// from those bytes, the port's state and the topology (classification,
// the source checks, learning, the FDB lookup, the destinations) is not
// decided again. What depends on the rest of the frame is checked as
// forward does: its length and its offloads, then each destination's
// egress checks (emit).
func (h *PortHandle) forwardAgain(sc *scratch, st *portState, tp *topology, f *Frame) {
	m := &sc.last
	total := f.Len()
	if total-m.l3 > st.maxL3 && (f.Off.GSOType == frame.GSONone || total > maxGSOFrame) {
		sc.drops[DropMalformed]++
		return
	}
	if m.plain && f.Off.None() && (f.Tail == nil || m.caps&CapTail != 0) {
		// emit's common case, its checks done once for the batch
		if !sc.room(1, 0) {
			h.flush(sc)
		}
		sc.out(m.i, m.p.pcp, f)
		return
	}
	p := m.p
	if !f.Off.None() && (!checkOffload(f.Data, total, &f.Off, &p) || int(f.Off.GSOSize) > st.maxL3) {
		sc.drops[DropMalformed]++
		return
	}
	sc.l3, sc.et, sc.fkOK = m.l3, m.et, false
	sc.untag, sc.tag = nil, nil
	switch m.out {
	case lastFlood:
		h.flood(sc, tp, &p, f)
	case lastUnicast:
		h.emit(sc, m.d, m.i, &p, f)
	}
}

// badSource: a group address is never a source (IEEE 802-2014 §8.2), nor
// is the all-zeros address (not assigned; Linux's bridge drops both too).
func badSource(src []byte) bool { return src[0]&1 != 0 || macKey(src) == 0 }

// reservedDst: the frame goes to a reserved group address that a port of
// this mode must not relay (see reservedMask).
func (st *portState) reservedDst(dst []byte) bool {
	return dst[0] == 0x01 && dst[1] == 0x80 && dst[2] == 0xc2 && dst[3]|dst[4]|dst[5]&0xf0 == 0 && st.reserved&(1<<(dst[5]&0xf)) != 0
}

// spoofed: the port has an allowed-MAC list (AllowedMACs, its own MAC
// under port security) and src is not on it.
func (st *portState) spoofed(src []byte) bool {
	if st.allowed == nil {
		return false
	}
	_, ok := st.allowed[macKey(src)]
	return !ok
}

// stormClass returns the storm-control limiter of a group destination.
func stormClass(dst []byte) int {
	if dst[0]&dst[1]&dst[2]&dst[3]&dst[4]&dst[5] == 0xff {
		return stormBcast
	}
	return stormMcast
}

// pins: key's source is the port's own MAC under port security, whose
// entry never moves while it lives.
func (st *portState) pins(key uint64) bool { return st.own != 0 && key&(1<<48-1) == st.own }

// learn records the source (fdb.learn); it returns why the frame is to be
// dropped instead, or dropNone.
func (h *PortHandle) learn(st *portState, key uint64, now int64) DropReason {
	t := h.sw.fdb
	pin := st.pins(key)
	op := t.learn(key, h, st.macLimit, pin, now)
	// At the limit: entries that aged out but were not yet swept should not
	// count. Sweep this port's, at most once a second (by one of its
	// queues).
	if last := h.lastSweep.Load(); op != learnLimit || now-last < nano || !h.lastSweep.CompareAndSwap(last, now) {
		return op.drop()
	}
	n := t.sweep(func(e *fdbView) bool { return !e.static && e.port == h && !t.live(e.static, e.seen, now) })
	t.aged.Add(uint64(n))
	if n > 0 {
		op = t.learn(key, h, st.macLimit, pin, now)
	}
	return op.drop()
}

// flood sends to every other port in the frame's VLAN (IEEE 802.1Q-2018
// §8.8.6: unknown, broadcast and multicast destinations go to all ports of
// the member set except the reception port).
func (h *PortHandle) flood(sc *scratch, tp *topology, p *pkt, f *Frame) {
	for _, i := range tp.members[p.vid] {
		if d := tp.ports[i]; d != h {
			h.emit(sc, d, i, p, f)
		}
	}
}

// idx returns d's index in tp, or -1 if it is not there (removed).
func (d *PortHandle) idx(tp *topology) int32 {
	i := d.index.Load()
	if int(i) < len(tp.ports) && tp.ports[i] == d {
		return i
	}
	return -1
}

func gsoOK(c Caps, t uint8) bool {
	if c&CapCsum == 0 || (t&frame.GSOECN != 0 && c&CapGSOECN == 0) {
		return false
	}
	switch t &^ frame.GSOECN {
	case frame.GSOTCPv4:
		return c&CapGSOTCPv4 != 0
	case frame.GSOTCPv6:
		return c&CapGSOTCPv6 != 0
	}
	return false
}

// emit queues f for destination d (index i), in the form d wants: tagged or
// not (IEEE 802.1Q-2018 §6.9.2 / 802.1ad: the tag is pushed with the frame's
// TPID, VID and PCP), segmented and checksummed when d lacks the offloads.
func (h *PortHandle) emit(sc *scratch, d *PortHandle, i int32, p *pkt, f *Frame) {
	ds := d.state.Load()
	ok, tagged := egressTagged(ds, p.vid)
	if !ok {
		return
	}
	if egressHop(ds, p, tagged) {
		sc.drops[DropVLAN]++
		return
	}
	if as := d.eacl.Load(); as != nil && h.egressDenied(sc, as, d, f) {
		return
	}
	if set := d.sg.Load(); set != nil {
		// As at ingress (forward).
		if v, ok := set.zone.TrackFast(f.Data, f.Len(), sc.l3, sc.et, conntrack.Inbound, sc.now, &sc.ctInC); ok {
			if v == conntrack.Invalid {
				d.ctr.drops[DropCTInvalid].Add(1)
				return
			}
		} else if r, _ := set.verdict(f.Data, f.Len(), sc.l3, sc.et, conntrack.Inbound, sc.now, &sc.ctp, &sc.ctIn); r != dropNone {
			d.ctr.drops[r].Add(1)
			return
		}
	}
	caps := sc.capsOf(d)
	if f.Off.GSOType != frame.GSONone && !gsoOK(caps, f.Off.GSOType) {
		h.segment(sc, i, p, f, tagged)
		return
	}
	delta := -int(p.strip)
	if tagged {
		delta += 4
	}
	n := f.Len() + delta
	needCsum := f.Off.Flags&frame.NeedsCsum != 0 && caps&CapCsum == 0
	// A tail goes on only to a port that takes tails, sends at once
	// (no shaper queue) and is not mirrored.
	whole := f.Tail != nil && (caps&CapTail == 0 || d.shaper.active.Load() || ds.mirrorOut)
	if !sc.room(1, n) {
		h.flush(sc)
	}
	if delta == 0 && !tagged && !needCsum && !whole { // as it came: the common case
		sc.out(i, p.pcp, f)
		return
	}
	// A new form of the frame, in the scratch arena: whole (no tail).
	var data []byte
	switch {
	case needCsum || whole && delta == 0 && !tagged:
		data = sc.alloc(n)
		if !rewrite(sc, data, p, f, tagged) {
			return
		}
	case tagged:
		if sc.tag == nil || sc.tagGen != sc.gen {
			sc.tag, sc.tagGen = sc.alloc(n), sc.gen
			if !rewrite(sc, sc.tag, p, f, true) {
				sc.tag = nil
				return
			}
		}
		data = sc.tag
	default:
		if sc.untag == nil || sc.untagGen != sc.gen {
			sc.untag, sc.untagGen = sc.alloc(n), sc.gen
			if !rewrite(sc, sc.untag, p, f, false) {
				sc.untag = nil
				return
			}
		}
		data = sc.untag
	}
	off := f.Off
	if delta != 0 {
		if off.Flags&frame.NeedsCsum != 0 || int(off.CsumStart)+delta >= 0 {
			off.CsumStart = uint16(int(off.CsumStart) + delta)
		}
		if off.HdrLen != 0 {
			off.HdrLen = uint16(max(int(off.HdrLen)+delta, 0))
		}
	}
	if needCsum {
		completeCsum(data, int(off.CsumStart), int(off.CsumOffset))
		off.Flags = off.Flags&^frame.NeedsCsum | frame.DataValid
	}
	sc.out(i, p.pcp, &Frame{Data: data, Off: off})
}

// rewrite writes the frame in egress form into buf: MACs, the tag if
// tagged, then the frame after its stripped outer tag, its tail included.
// False: the tail faulted (counted; buf is garbage).
func rewrite(sc *scratch, buf []byte, p *pkt, f *Frame, tagged bool) bool {
	data := f.Data
	copy(buf, data[:12])
	o := 12
	if tagged {
		binary.BigEndian.PutUint16(buf[12:], p.tpid)
		binary.BigEndian.PutUint16(buf[14:], p.tci())
		o = 16
	}
	o += copy(buf[o:], data[12+int(p.strip):])
	if f.Tail != nil && !frame.ReadTail(buf[o:], f.Tail) {
		sc.drops[DropSourceFault]++
		return false
	}
	return true
}

// flush hands the queued outputs to their destinations, one batch per
// destination, and frees the arena.
func (h *PortHandle) flush(sc *scratch) {
	tp, now := sc.tp, sc.now
	sc.gen++
	sc.used = 0
	if len(sc.outF) == 0 {
		return
	}
	if j := sc.one; j >= 0 {
		// One destination: the frames go as they were emitted.
		if d := tp.ports[j]; !d.removed.Load() {
			d.deliver(h, sc.steer, sc.outF, sc.outPCP, now)
		}
	} else {
		h.flushSorted(sc, tp, now)
	}
	// Keep no references to callers' frames.
	clear(sc.outF)
	sc.outF, sc.outIdx, sc.outPCP = sc.outF[:0], sc.outIdx[:0], sc.outPCP[:0]
}

// flushSorted hands outputs for several destinations on, one batch per
// destination, each in the order emitted (a counting sort by destination).
func (h *PortHandle) flushSorted(sc *scratch, tp *topology, now int64) {
	n := len(tp.ports)
	if len(sc.counts) < n {
		sc.counts = make([]int32, n) // only after the topology grew
	}
	counts := sc.counts
	sc.touch = sc.touch[:0]
	for _, j := range sc.outIdx {
		if counts[j] == 0 {
			sc.touch = append(sc.touch, j)
		}
		counts[j]++
	}
	pos := int32(0)
	for _, j := range sc.touch {
		c := counts[j]
		counts[j] = pos
		pos += c
	}
	for k, j := range sc.outIdx {
		at := counts[j]
		counts[j]++
		sc.sorted[at], sc.pcps[at] = sc.outF[k], sc.outPCP[k]
	}
	start := int32(0)
	for _, j := range sc.touch {
		end := counts[j]
		counts[j] = 0
		if d := tp.ports[j]; !d.removed.Load() {
			d.deliver(h, sc.steer, sc.sorted[start:end], sc.pcps[start:end], now)
		}
		start = end
	}
	clear(sc.sorted[:len(sc.outF)])
}

// deliver sends frames from port src (its input queue steer, -1: none
// named) out of port d, through d's shaper if it has one.
func (d *PortHandle) deliver(src *PortHandle, steer int32, frames []Frame, pcps []uint8, now int64) {
	if d.shaper.active.Load() {
		d.shaper.enqueue(d, src, frames, pcps, now)
		return
	}
	d.sendCounted(steer, frames, now)
}

// sendCounted calls Port.Send (QueuePort.SendQueue with queue hint steer
// >= 0), counts the result and returns how many frames the port took.
func (d *PortHandle) sendCounted(steer int32, frames []Frame, now int64) int {
	var n int
	if steer >= 0 && d.qport != nil {
		n = d.qport.SendQueue(int(steer), frames)
	} else {
		n = d.port.Send(frames)
	}
	n = min(max(n, 0), len(frames))
	var nb uint64
	for k := range frames[:n] {
		nb += uint64(frames[k].Len())
	}
	d.ctr.txPackets.Add(uint64(n))
	d.ctr.txBytes.Add(nb)
	if n < len(frames) {
		d.ctr.drops[DropNoBuffer].Add(uint64(len(frames) - n))
	}
	if n > 0 && d.state.Load().mirrorOut {
		if m := d.sw.mirror.Load(); m != nil {
			mirror(m.s, d.name, Egress, now, frames[:n])
		}
	}
	return n
}
