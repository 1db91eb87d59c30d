package api

import (
	"sync"
	"sync/atomic"

	vswitch "github.com/hvnet/hvnet/switch"
)

// batch is one Mirror call's frames, copied: data holds them end to end,
// lens their lengths. Batches are pooled, so steady-state mirroring does
// not allocate.
type batch struct {
	ts   int64
	data []byte
	lens []int
}

var batchPool = sync.Pool{New: func() any { return new(batch) }}

// tap is one listener on a port: a live capture or a file mirror.
type tap struct {
	port    string
	in, out bool
	ch      chan *batch
	frames  atomic.Uint64 // frames written by the reader
	dropped atomic.Uint64 // frames lost because the queue was full
}

func newTap(port string, in, out bool, qlen int) *tap {
	return &tap{port: port, in: in, out: out, ch: make(chan *batch, qlen)}
}

// offer copies frames into a pooled batch and queues it without blocking:
// on the forwarding path, a full queue costs the listener the frames, not
// the switch its time.
func (t *tap) offer(ts int64, frames []vswitch.Frame) {
	b := batchPool.Get().(*batch)
	b.ts, b.data, b.lens = ts, b.data[:0], b.lens[:0]
	for i := range frames {
		b.data = append(b.data, frames[i].Data...)
		b.lens = append(b.lens, len(frames[i].Data))
	}
	select {
	case t.ch <- b:
	default:
		t.dropped.Add(uint64(len(frames)))
		batchPool.Put(b)
	}
}

// write writes up to limit frames of b (limit <= 0: all) to pw, returns
// the batch to the pool and says how many it wrote.
func (t *tap) write(pw *vswitch.PcapWriter, b *batch, limit int) (int, error) {
	defer batchPool.Put(b)
	off, n := 0, 0
	for _, l := range b.lens {
		if limit > 0 && n == limit {
			break
		}
		if err := pw.WriteFrame(b.ts, b.data[off:off+l]); err != nil {
			return n, err
		}
		off += l
		n++
	}
	t.frames.Add(uint64(n))
	return n, nil
}

// fanout is the switch's one MirrorSink: it hands each port's frames to
// the taps registered for that port and direction. The tap table is an
// immutable map swapped on change, so Mirror takes no lock.
type fanout struct {
	qlen int
	mu   sync.Mutex // serialises changes to taps
	taps atomic.Pointer[map[string][]*tap]
}

func newFanout(qlen int) *fanout {
	f := &fanout{qlen: qlen}
	f.taps.Store(&map[string][]*tap{})
	return f
}

// Mirror implements vswitch.MirrorSink.
func (f *fanout) Mirror(port string, dir vswitch.Direction, ts int64, frames []vswitch.Frame) {
	for _, t := range (*f.taps.Load())[port] {
		if (dir == vswitch.Ingress && t.in) || (dir == vswitch.Egress && t.out) {
			t.offer(ts, frames)
		}
	}
}

func (f *fanout) update(fn func(m map[string][]*tap)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := *f.taps.Load()
	m := make(map[string][]*tap, len(old)+1)
	for k, v := range old {
		m[k] = append([]*tap(nil), v...)
	}
	fn(m)
	f.taps.Store(&m)
}

func (f *fanout) add(t *tap) {
	f.update(func(m map[string][]*tap) { m[t.port] = append(m[t.port], t) })
}

func (f *fanout) remove(t *tap) {
	f.update(func(m map[string][]*tap) {
		ts := m[t.port]
		for i, x := range ts {
			if x == t {
				ts = append(ts[:i], ts[i+1:]...)
				break
			}
		}
		if len(ts) == 0 {
			delete(m, t.port)
		} else {
			m[t.port] = ts
		}
	})
}

// wants says whether any tap listens to port's ingress and egress.
func (f *fanout) wants(port string) (in, out bool) {
	for _, t := range (*f.taps.Load())[port] {
		in, out = in || t.in, out || t.out
	}
	return in, out
}

var _ vswitch.MirrorSink = (*fanout)(nil)
