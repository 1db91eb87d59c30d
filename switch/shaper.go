package vswitch

import (
	"sync"
	"sync/atomic"

	"hvnet/frame"
)

// Egress shaping: a token-bucket limiter in front of bounded per-class FIFO
// queues served in strict priority (IEEE 802.1Q-2018 §8.6.8.1, strict
// priority transmission selection). Classes come from the frame's PCP with
// the three-class row of Table 8-5: PCP 0-3 -> class 0, 4-5 -> 1, 6-7 -> 2.

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
	if q.dn == 0 && (len(q.buf) != q.limBytes || len(q.descs) != q.limFrames) {
		q.buf = make([]byte, q.limBytes)
		q.descs = make([]qdesc, q.limFrames)
		q.head, q.tail, q.dh = 0, 0, 0
	}
}

func (q *classQueue) alloc(n int) (int, bool) {
	if q.dn == 0 {
		q.head, q.tail = 0, 0
	}
	if q.tail >= q.head { // not wrapped: free [tail,len) and [0,head)
		if len(q.buf)-q.tail >= n {
			off := q.tail
			q.tail += n
			return off, true
		}
		if q.head > n {
			q.tail = n
			return 0, true
		}
		return 0, false
	}
	if q.head-q.tail > n {
		off := q.tail
		q.tail += n
		return off, true
	}
	return 0, false
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
	q      [numClasses]classQueue
	queued int
	batch  []Frame
	drops  uint64
}

const shaperBatch = 64

func (s *shaper) configure(r RateLimit, qc QueueConfig, now int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lim.configure(r, now)
	if r.enabled() || s.queued > 0 {
		for i := range s.q {
			s.q[i].setLimits(qc)
		}
		if s.batch == nil {
			s.batch = make([]Frame, 0, shaperBatch)
		}
	} else {
		for i := range s.q {
			s.q[i] = classQueue{limFrames: qc.Frames, limBytes: qc.Bytes}
		}
	}
	s.active.Store(r.enabled() || s.queued > 0)
}

// enqueue queues frames (tail drop per class) and sends what tokens allow.
func (s *shaper) enqueue(h *PortHandle, frames []Frame, pcps []uint8, now int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range frames {
		q := &s.q[pcpClass[pcps[i]&7]]
		q.resize()
		if q.push(&frames[i]) {
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

// drainLocked sends queued frames, highest class first, while the limiter
// has tokens. It returns the Clock time at which it should be called again,
// or 0 when the queues are empty.
func (s *shaper) drainLocked(h *PortHandle, now int64) int64 {
	s.lim.refill(now)
	for s.queued > 0 {
		s.batch = s.batch[:0]
		var next int64
		for len(s.batch) < cap(s.batch) && s.queued > 0 {
			var q *classQueue
			for c := numClasses - 1; c >= 0; c-- {
				if s.q[c].dn > 0 {
					q = &s.q[c]
					break
				}
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
			q.pop()
			s.queued--
		}
		if len(s.batch) > 0 {
			h.sendCounted(s.batch, now)
		}
		if next != 0 {
			return next
		}
	}
	if !s.lim.on {
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
