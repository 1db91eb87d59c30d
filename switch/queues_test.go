package vswitch

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// queueSink is a sink that takes a queue hint (QueuePort), records the
// hints, and can hold a SendQueue for one queue until released.
type queueSink struct {
	*sink
	mu      sync.Mutex
	hints   map[int]int // queue hint -> frames
	sends   int         // frames by Send (no hint)
	holdQ   int         // SendQueue(holdQ, ...) waits for release; -1: none
	entered chan struct{}
	release chan struct{}
}

func newQueueSink() *queueSink {
	return &queueSink{sink: newSink(0), hints: map[int]int{}, holdQ: -1,
		entered: make(chan struct{}, 1), release: make(chan struct{})}
}

func (s *queueSink) Send(frames []Frame) int {
	s.mu.Lock()
	s.sends += len(frames)
	s.mu.Unlock()
	return s.sink.Send(frames)
}

func (s *queueSink) SendQueue(q int, frames []Frame) int {
	s.mu.Lock()
	s.hints[q] += len(frames)
	hold := q == s.holdQ
	s.mu.Unlock()
	if hold {
		s.entered <- struct{}{}
		<-s.release
	}
	return s.sink.Send(frames)
}

func (s *queueSink) counts() (map[int]int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[int]int{}
	for k, v := range s.hints {
		m[k] = v
	}
	return m, s.sends
}

var _ QueuePort = (*queueSink)(nil)

// start runs f in a goroutine; the channel closes when it returns.
func start(f func()) <-chan struct{} {
	c := make(chan struct{})
	go func() { defer close(c); f() }()
	return c
}

// The input queues of one port are forwarded without a lock they share:
// while a batch of queue 0 is held inside a destination's SendQueue (a
// slow receiver, or a worker descheduled mid-batch), queue 1 of the same
// port forwards, and a second batch for queue 0 waits its turn. Each
// destination is told the queue (SendQueue's hint); Input gives none.
// With one lock for the port's input (as before InputQueue) the queue-1
// batch waits for the release and the test fails.
func TestInputQueuesParallel(t *testing.T) {
	ts := newTestSwitch(t, access("a", 1))
	d0, d1 := newQueueSink(), newQueueSink()
	for _, d := range []struct {
		name string
		s    *queueSink
	}{{"d0", d0}, {"d1", d1}} {
		h, err := ts.sw.AddPort(access(d.name, 1), d.s)
		if err != nil {
			t.Fatal(err)
		}
		ts.h[d.name] = h
	}
	ts.in("d0", eth(Broadcast, mac(10), 0x0800, 60)) // learned: d0 is mac 10,
	ts.in("d1", eth(Broadcast, mac(11), 0x0800, 60)) // d1 is mac 11
	a := ts.h["a"]
	frameTo := func(dst byte) []Frame { return []Frame{{Data: eth(mac(dst), mac(1), 0x0800, 60)}} }

	d0.mu.Lock()
	d0.holdQ = 0
	d0.mu.Unlock()
	held := start(func() { a.InputQueue(0, frameTo(10)) })
	select {
	case <-d0.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("queue 0's batch never reached d0")
	}
	// Queue 1 forwards while queue 0 is held.
	select {
	case <-start(func() { a.InputQueue(1, frameTo(11)) }):
	case <-time.After(30 * time.Second):
		t.Fatal("queue 1 of port a waited for queue 0: the queues share a lock")
	}
	// So does queue 65 (context 1 again, as maxIngress is 64) ...
	select {
	case <-start(func() { a.InputQueue(1+maxIngress, frameTo(11)) }):
	case <-time.After(30 * time.Second):
		t.Fatal("queue 65 of port a waited for queue 0")
	}
	// A second batch of queue 0 waits for the first.
	second := start(func() { a.InputQueue(0, frameTo(11)) })
	select {
	case <-second:
		t.Fatal("two batches of queue 0 ran at once")
	case <-time.After(200 * time.Millisecond):
	}
	close(d0.release)
	for _, c := range []<-chan struct{}{held, second} {
		select {
		case <-c:
		case <-time.After(30 * time.Second):
			t.Fatal("queue 0 did not finish after the release")
		}
	}
	a.Input(frameTo(11)) // no hint: Send

	h0, s0 := d0.counts()
	h1, s1 := d1.counts()
	// By Send: the other's learning broadcast (Input), and on d1 a's
	// last frame.
	if h0[0] != 1 || len(h0) != 1 || s0 != 1 {
		t.Errorf("d0: hints %v, %d by Send; want 1 frame with hint 0, 1 by Send", h0, s0)
	}
	if h1[0] != 1 || h1[1] != 1 || h1[1+maxIngress] != 1 || len(h1) != 3 || s1 != 2 {
		t.Errorf("d1: hints %v, %d by Send; want 1 frame each with hints 0, 1 and %d, 2 by Send", h1, s1, 1+maxIngress)
	}
	if c := a.Counters(); c.RxPackets != 5 {
		t.Errorf("a received %d frames, want 5", c.RxPackets)
	}
}

// Many workers feed the queues of each port at once (two per queue on
// some) while the control plane adds, changes and removes ports and the
// flow cache is on: every frame is counted once at its ingress, whatever
// queue it took, and the ports that police their ingress (their queues
// share the policer) count what they drop. Run with -race.
func TestInputQueuesConcurrent(t *testing.T) {
	ts := newTestSwitch(t)
	if err := ts.sw.EnableFlows(FlowConfig{}); err != nil {
		t.Fatal(err)
	}
	const ports, queues, rounds = 4, 4, 300
	for i := range ports {
		c := access(fmt.Sprint("p", i), 1)
		if i == 1 {
			c.Ingress = RateLimit{Bytes: Bucket{Rate: 1_000_000, Burst: 20_000}}
		}
		ts.add(c, CapCsum)
	}
	var sent atomic.Uint64
	sentBy := make([]atomic.Uint64, ports)
	var wg sync.WaitGroup
	for i := range ports {
		for w := range queues + 2 { // workers queues and queues+1 double up on queues 0 and 1
			q := w % queues
			h := ts.h[fmt.Sprint("p", i)]
			wg.Add(1)
			go func() {
				defer wg.Done()
				batch := make([]Frame, 16)
				for k := range batch {
					batch[k].Data = eth(mac(byte(16*i+k%ports)), mac(byte(16*i+q)), 0x0800, 60)
					if k%4 == 0 {
						batch[k].Data = eth(Broadcast, mac(byte(16*i+q)), 0x0800, 60)
					}
				}
				for range rounds {
					h.InputQueue(q, batch)
					sent.Add(uint64(len(batch)))
					sentBy[i].Add(uint64(len(batch)))
				}
			}()
		}
	}
	p2 := ts.h["p2"]
	ctl := start(func() {
		for r := range 50 {
			if _, err := ts.sw.AddPort(access("extra", 1), newSink(0)); err != nil {
				t.Error(err)
			}
			ts.advance(time.Millisecond)
			if err := ts.sw.RemovePort("extra"); err != nil {
				t.Error(err)
			}
			pc := p2.Config()
			pc.MACLimit = 2 + r%3
			if err := ts.sw.UpdatePort(pc); err != nil {
				t.Error(err)
			}
			_ = ts.sw.ExpireFlows(time.Millisecond, time.Millisecond, nil)
			_, _, _ = ts.sw.Flows(10, FlowsByBytes)
		}
	})
	wg.Wait()
	<-ctl
	for i := range ports {
		h := ts.h[fmt.Sprint("p", i)]
		if got, want := h.Counters().RxPackets, sentBy[i].Load(); got != want {
			t.Errorf("p%d counted %d frames in, %d were sent", i, got, want)
		}
	}
	if d := ts.drops("p1", DropPolicer); d == 0 {
		t.Error("the policed port dropped nothing: its queues did not share its policer")
	}
	t.Logf("%d frames in; p1's policer dropped %d", sent.Load(), ts.drops("p1", DropPolicer))
}
