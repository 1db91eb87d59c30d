package vswitch

import (
	"sync"
	"sync/atomic"

	"github.com/hvnet/hvnet/frame"
)

// Egress shaping: a token-bucket limiter (the egress's capacity) in front
// of bounded queues: classes 2 and 1 in strict priority (IEEE 802.1Q-2018
// §8.6.8.1), then class 0, one queue per sending port, scheduled by the
// ports' reservations, shares and limits (sched.go). Classes come from the
// frame's PCP with the three-class row of Table 8-5 (PCP 0-3 -> class 0,
// 4-5 -> 1, 6-7 -> 2), or from the egress's ClassMap.

var pcpClass = [8]uint8{0, 0, 0, 0, 1, 1, 2, 2}

// qdesc is one queued frame: where its bytes are in the class ring.
type qdesc struct {
	off, n int
	o      frame.Offload
}

// classQueue is a FIFO of frames whose bytes live contiguously in a ring.
// Frames never wrap: one that does not fit before the end of the ring goes
// to its start.
type classQueue struct {
	grows      bool // a sending port's ring (sched.go): starts small, grows in push
	buf        []byte
	head, tail int // bytes in use: [head,tail) or, wrapped, [head,len) + [0,tail)
	descs      []qdesc
	dh, dn     int // first descriptor, number queued
	limFrames  int
	limBytes   int
	bytes      int
}

func (q *classQueue) setLimits(c QueueConfig) {
	q.limFrames, q.limBytes = c.Frames, c.Bytes
	q.resize()
}

// resize (re)allocates the ring when it is empty and its size is not the
// configured one, so shrinking or growing a queue never loses frames.
func (q *classQueue) resize() {
	if q.grows {
		if q.dn == 0 && (len(q.buf) > q.limBytes || len(q.descs) != q.limFrames) {
			q.buf, q.descs = nil, nil // made again, to the new sizes, by sched.push
			q.head, q.tail, q.dh = 0, 0, 0
		}
		return
	}
	if q.dn == 0 && (len(q.buf) != q.limBytes || len(q.descs) != q.limFrames) {
		q.buf = make([]byte, q.limBytes)
		q.descs = make([]qdesc, q.limFrames)
		q.head, q.tail, q.dh = 0, 0, 0
	}
}

// place says where n bytes would go (frames never wrap: one that does not
// fit before the end of the ring goes to its start), changing nothing.
func (q *classQueue) place(n int) (int, bool) {
	head, tail := q.head, q.tail
	if q.dn == 0 {
		head, tail = 0, 0
	}
	if tail >= head { // not wrapped: free [tail,len) and [0,head)
		if len(q.buf)-tail >= n {
			return tail, true
		}
		return 0, head > n
	}
	return tail, head-tail > n
}

func (q *classQueue) alloc(n int) (int, bool) {
	off, ok := q.place(n)
	if ok {
		if q.dn == 0 {
			q.head = 0
		}
		q.tail = off + n
	}
	return off, ok
}

// fits says whether alloc would find n bytes.
func (q *classQueue) fits(n int) bool {
	_, ok := q.place(n)
	return ok
}

// grow moves the queued frames, in order, to the start of a new ring of
// size bytes (at least the bytes queued).
func (q *classQueue) grow(size int) {
	nb := make([]byte, size)
	nd := make([]qdesc, len(q.descs))
	off := 0
	for i := range q.dn {
		d := q.descs[(q.dh+i)%len(q.descs)]
		copy(nb[off:], q.buf[d.off:d.off+d.n])
		nd[i] = qdesc{off: off, n: d.n, o: d.o}
		off += d.n
	}
	q.buf, q.descs, q.dh, q.head, q.tail = nb, nd, 0, 0, off
}

func (q *classQueue) push(f *Frame) bool {
	if f.Tail != nil {
		// The switch gives shaped ports whole frames; one that came
		// as the shaper was turned on is dropped (shaper_queue).
		return false
	}
	if q.dn >= q.limFrames || q.dn >= len(q.descs) || q.bytes+len(f.Data) > q.limBytes {
		return false
	}
	off, ok := q.alloc(len(f.Data))
	if !ok {
		return false
	}
	copy(q.buf[off:], f.Data)
	q.descs[(q.dh+q.dn)%len(q.descs)] = qdesc{off: off, n: len(f.Data), o: f.Off}
	q.dn++
	q.bytes += len(f.Data)
	return true
}

func (q *classQueue) front() *qdesc { return &q.descs[q.dh] }

// pop drops the first frame. Its bytes stay valid until the next push.
func (q *classQueue) pop() {
	d := &q.descs[q.dh]
	q.bytes -= d.n
	q.dh = (q.dh + 1) % len(q.descs)
	q.dn--
	if q.dn == 0 {
		q.head, q.tail, q.dh = 0, 0, 0
		q.resize()
		return
	}
	q.head = q.descs[q.dh].off
}

// shaper is a port's egress shaper. All its sends happen under mu.
type shaper struct {
	active atomic.Bool // limit configured or frames queued: sends go through mu
	mu     sync.Mutex
	lim    limiter
	cls    classifier
	q      [numClasses]classQueue // class 0's is unused: its frames queue by port in sched
	qst    [numClasses]queueStats
	sched  sched
	qc     QueueConfig
	queued int
	batch  []Frame
	who    []*flowQueue // the flow of each frame in batch; nil: a class queue's
	whoCls []uint8
	drops  uint64
}

const shaperBatch = 64

func (s *shaper) configure(r RateLimit, qc QueueConfig, cm ClassMap, now int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lim.configure(r, now)
	s.cls.compile(cm)
	s.qc = qc
	if s.sched.flows == nil {
		s.sched.init()
	}
	for _, f := range s.sched.flows {
		f.q.limFrames, f.q.limBytes = qc.Frames, qc.Bytes
		f.q.resize()
	}
	if r.enabled() || s.queued > 0 {
		for i := range s.q {
			s.q[i].setLimits(qc)
		}
		if s.batch == nil {
			s.batch = make([]Frame, 0, shaperBatch)
			s.who = make([]*flowQueue, 0, shaperBatch)
			s.whoCls = make([]uint8, 0, shaperBatch)
		}
	} else {
		for i := range s.q {
			s.q[i] = classQueue{limFrames: qc.Frames, limBytes: qc.Bytes}
		}
	}
	s.active.Store(r.enabled() || s.queued > 0)
}

// enqueue queues frames from port src (tail drop per queue) and sends
// what the schedule allows.
func (s *shaper) enqueue(h, src *PortHandle, frames []Frame, pcps []uint8, now int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var f *flowQueue
	for i := range frames {
		c := s.cls.class(frames[i].Data, pcps[i])
		ok := false
		if c == 0 {
			if f == nil {
				f = s.sched.flow(src, s.qc)
			}
			if frames[i].Tail == nil { // shaped ports get whole frames; see push
				ok = s.sched.push(f, &frames[i], now)
			}
			if !ok {
				f.stats.drops++
			}
		} else {
			q := &s.q[c]
			q.resize()
			if ok = q.push(&frames[i]); !ok {
				s.qst[c].drops++
			}
		}
		if ok {
			s.queued++
		} else {
			s.drops++
		}
	}
	if s.drops != 0 {
		h.ctr.drops[DropShaperQueue].Add(s.drops)
		s.drops = 0
	}
	s.drainLocked(h, now)
}

// drainLocked sends queued frames, strict classes first, then class 0 by
// the schedule, while the limiter has tokens. It returns the Clock time at
// which it should be called again, or 0 when the queues are empty.
func (s *shaper) drainLocked(h *PortHandle, now int64) int64 {
	s.lim.refill(now)
	for s.queued > 0 {
		s.batch, s.who, s.whoCls = s.batch[:0], s.who[:0], s.whoCls[:0]
		var next int64
		for len(s.batch) < cap(s.batch) && s.queued > 0 {
			var q *classQueue
			var f *flowQueue
			onRes := false
			c := numClasses - 1
			for ; c > 0; c-- {
				if s.q[c].dn > 0 {
					q = &s.q[c]
					break
				}
			}
			if q == nil {
				if f, onRes = s.sched.pick(now); f == nil {
					next = s.sched.next(now)
					break
				}
				q = &f.q
			}
			d := q.front()
			if s.lim.on {
				if !s.lim.bytes.can(int64(d.n)) || !s.lim.pkts.can(1) {
					next = now + max(s.lim.wait(d.n), 1)
					break
				}
				s.lim.bytes.take(int64(d.n))
				s.lim.pkts.take(1)
			}
			// The bytes stay valid: nothing is pushed before Send returns.
			s.batch = append(s.batch, Frame{Data: q.buf[d.off : d.off+d.n : d.off+d.n], Off: d.o})
			s.who = append(s.who, f)
			s.whoCls = append(s.whoCls, uint8(c))
			if f != nil {
				s.sched.sent(f, d.n, onRes, now)
			} else {
				q.pop()
			}
			s.queued--
		}
		if len(s.batch) > 0 {
			n := h.sendCounted(-1, s.batch, now)
			for i := range s.batch {
				st := &s.qst[s.whoCls[i]]
				if f := s.who[i]; f != nil {
					st = &f.stats
				}
				if i < n {
					st.sent(len(s.batch[i].Data), now)
				} else {
					st.drops++ // the port's no_buffer
				}
			}
			clear(s.who)
		}
		if next != 0 {
			return next
		}
		if len(s.batch) == 0 {
			break // only flows that wait with no time to wake at: cannot happen
		}
	}
	if !s.lim.on && s.queued == 0 {
		s.active.Store(false)
	}
	return 0
}

// poll drains the queues at now; see drainLocked.
func (s *shaper) poll(h *PortHandle, now int64) int64 {
	if !s.active.Load() {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if h.removed.Load() { // RemovePort returned or is returning: no more Send
		return 0
	}
	return s.drainLocked(h, now)
}

func (s *shaper) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queued
}

// forget drops the queue of src, a port being removed.
func (s *shaper) forget(src *PortHandle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sched.flows != nil {
		s.queued -= s.sched.drop(src)
	}
}

// queues lists the shaper's queues: the strict classes', then the
// sending ports' class-0 queues.
func (s *shaper) queues(now int64) []QueueStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []QueueStats
	for c := numClasses - 1; c > 0; c-- {
		q, st := &s.q[c], &s.qst[c]
		out = append(out, QueueStats{Class: c, QueuedFrames: q.dn, QueuedBytes: q.bytes,
			SentPackets: st.sentPkts, SentBytes: st.sentBytes, Drops: st.drops, Rate: st.rateAt(now)})
	}
	if s.sched.flows != nil {
		out = append(out, s.sched.stats(now)...)
	}
	return out
}
