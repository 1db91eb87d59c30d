package backend

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/vhostuser/proto"
	"github.com/hvnet/hvnet/virtio"
)

// vring is the backend's state of one virtqueue (vhost-user.rst "Ring
// states": a ring is started when it has a kick descriptor and stopped by
// GET_VRING_BASE; it is enabled by SET_VRING_ENABLE, or from the start when
// VHOST_USER_F_PROTOCOL_FEATURES was not negotiated). The dataplane runs a
// ring that is started, enabled and fully configured.
type vring struct {
	index   int
	num     uint16
	addr    proto.VringAddr
	hasAddr bool
	base    uint16

	kick    int // -1: none
	started bool
	enabled bool
	// call is the queue's Signaler while the frontend gave a call eventfd
	// (the eventfd itself is the session's notifier's).
	call virtio.Signaler

	w *worker // non-nil while the dataplane runs the ring
}

func newVring(i int) *vring { return &vring{index: i, kick: -1} }

// closeKick closes the kick eventfd: the ring is no longer started.
func (r *vring) closeKick() {
	if r.kick >= 0 {
		unix.Close(r.kick)
		r.kick = -1
	}
	r.started = false
}

// closeFDs closes the ring's descriptors: kick here, call and error by
// the notifier (which may be writing them).
func (s *Session) closeFDs(r *vring) {
	r.closeKick()
	r.call = nil
	s.notify.set(callSlot(r.index), nil)
	s.notify.set(errSlot(r.index), nil)
}

// worker is the goroutine serving one ring's kicks.
type worker struct {
	stop     *virtio.EventFD
	stopping atomic.Bool // set before stop is signalled: ends busy polling
	done     chan struct{}
	// state hands the worker's descriptors (kick, stop) over: whoever
	// moves it from stateRunning owns them at the end. A worker that
	// exits first leaves them to stopRing; one stopRing gave up on
	// (stateAbandoned, counted in Counters.Stuck until then) closes them
	// itself when it finally returns.
	state atomic.Int32
}

// ringGPAs translates the ring addresses (frontend user virtual addresses)
// to guest-physical ones and checks each ring lies in mapped memory.
func (s *Session) ringGPAs(r *vring) (desc, avail, used uint64, err error) {
	n := uint64(r.num)
	type ring struct {
		name string
		uva  uint64
		len  uint64
		dst  *uint64
	}
	for _, x := range []ring{
		{"descriptor table", r.addr.Desc, 16 * n, &desc},
		{"available ring", r.addr.Avail, 6 + 2*n, &avail},
		{"used ring", r.addr.Used, 6 + 8*n, &used},
	} {
		gpa, ok := uvaToGPA(s.regions, x.uva, x.len)
		if !ok {
			return 0, 0, 0, fmt.Errorf("queue %d: %s at UVA %#x (+%#x) is outside mapped memory", r.index, x.name, x.uva, x.len)
		}
		*x.dst = gpa
	}
	return desc, avail, used, nil
}

// shouldRun says whether the dataplane should run ring r now.
func (s *Session) shouldRun(r *vring) bool {
	enabled := r.enabled || !s.hasProtocolFeatures()
	return r.started && enabled && r.hasAddr && r.num != 0 && s.mem != nil
}

// configure (re)programs a running ring's queue: size, translated
// addresses, signaler. With restore it also sets the indices from the
// saved base and the used ring (a fresh start). The queue keeps its
// indices otherwise (a remap or a new address while running).
func (s *Session) configure(r *vring, restore bool) error {
	desc, avail, used, err := s.ringGPAs(r)
	if err != nil {
		return err
	}
	usedIdx, err := s.mem.ReadU16(used + 2)
	if err != nil {
		return fmt.Errorf("queue %d: reading used index: %w", r.index, err)
	}
	base := r.base
	if restore && base != usedIdx {
		// A frontend reconnecting to a new backend (DPDK virtio-user
		// always sends base 0) leaves the used ring ahead of the base: the
		// backend completes chains in order, so the used index is where
		// to resume (DPDK's vhost library does the same). Chains made
		// available but never used are lost (TX) or refilled (RX).
		n := s.cfg.Counters.baseResumes.Add(1) // a frontend can make it happen at each SET_VRING_KICK
		s.log.Log(sparse(n, hclog.Warn), "vring base and used index differ, resuming from the used index",
			"queue", r.index, "base", base, "used_idx", usedIdx, "count", n)
		base = usedIdx
	}
	return s.dev.ConfigureQueue(r.index, func(q *virtio.Queue) error {
		q.Disable()
		if err := q.SetSize(r.num); err != nil {
			return err
		}
		if err := q.SetAddrs(desc, avail, used); err != nil {
			return err
		}
		if restore {
			if err := q.SetNextAvail(base); err != nil {
				return err
			}
			if err := q.SetNextUsed(usedIdx); err != nil {
				return err
			}
		}
		q.SetSignaler(r.call)
		if err := q.Enable(); err != nil {
			return err
		}
		if r.index%2 == 0 && r.index < s.dev.CtrlQueue() {
			// A receive queue is only pulled from (Device.Receive):
			// kicks for refilled buffers would wake nobody useful and
			// cost the frontend a syscall per refill (DPDK's
			// virtio-user kicks after each RX burst otherwise), so ask
			// for none (§2.7.10; with EVENT_IDX avail_event stays
			// behind).
			q.DisableNotification()
		}
		return nil
	})
}

// update starts or stops ring r's dataplane to match its state.
func (s *Session) update(r *vring) error {
	defer s.syncActivePairs()
	run := s.shouldRun(r)
	switch {
	case run && r.w == nil:
		if err := s.configure(r, true); err != nil {
			return fmt.Errorf("starting queue %d: %w", r.index, err)
		}
		return s.startWorker(r)
	case !run && r.w != nil:
		s.stopRing(r)
	case run:
		if err := s.configure(r, false); err != nil {
			return fmt.Errorf("reconfiguring queue %d: %w", r.index, err)
		}
	}
	return nil
}

// syncActivePairs sets the device's active queue pairs from the rings:
// the pairs from the first whose receive rings run, as the frontend
// enabled them (SET_VRING_ENABLE; QEMU enables the pairs its guest set
// with MQ_VQ_PAIRS_SET, DPDK's virtio-user those it was given). Frames to
// the port are spread over those (vnet.Device.Receive, ReceiveQueue).
func (s *Session) syncActivePairs() {
	n := 0
	for n < len(s.vrings)/2 && s.vrings[2*n].w != nil {
		n++
	}
	if err := s.dev.SetActivePairs(max(n, 1)); err != nil {
		s.log.Error("setting active queue pairs", "error", err) // cannot happen: n is within the device's pairs
	}
}

// stopRing stops r's worker and its queue, saving the next available
// index as the ring's base (what GET_VRING_BASE returns). It waits for the
// worker at most Config.StopTimeout: a worker still running then (stuck
// in a kick read, on a kernel where that can block) is abandoned, counted
// and logged, and takes the kick descriptor with it (it closes it when it
// returns; the ring no longer has one).
func (s *Session) stopRing(r *vring) {
	if w := r.w; w != nil {
		r.w = nil
		w.stopping.Store(true)
		w.stop.Signal()
		t := time.NewTimer(s.cfg.StopTimeout)
		select {
		case <-w.done:
		case <-t.C:
			s.cfg.Counters.Stuck.Add(1) // before the state: the worker's decrement follows it
			if w.state.CompareAndSwap(stateRunning, stateAbandoned) {
				n := s.cfg.Counters.WorkersAbandoned.Add(1)
				s.log.Error("ring worker did not stop: abandoned", "queue", r.index,
					"timeout", s.cfg.StopTimeout, "abandoned", n, "stuck", s.cfg.Counters.Stuck.Load())
				r.kick, r.started = -1, false
				w = nil
			} else {
				s.cfg.Counters.Stuck.Add(-1)
				<-w.done // it was exiting
			}
		}
		t.Stop()
		if w != nil {
			w.stop.Close()
		}
	}
	s.dev.ConfigureQueue(r.index, func(q *virtio.Queue) error {
		if q.Ready() {
			r.base = q.NextAvail()
		}
		q.Disable()
		return nil
	})
	s.syncActivePairs() // a stopped receive ring is no longer a target
}

func (s *Session) startWorker(r *vring) error {
	stop, err := virtio.NewEventFD(true)
	if err != nil {
		return err
	}
	w := &worker{stop: stop, done: make(chan struct{})}
	r.w = w
	index, kick := r.index, r.kick
	go func() {
		defer close(w.done)
		s.serveRing(index, kick, w)
		if !w.state.CompareAndSwap(stateRunning, stateExited) {
			// Abandoned by stopRing: the descriptors are ours.
			s.cfg.Counters.Stuck.Add(-1)
			if kick >= 0 {
				unix.Close(kick)
			}
			w.stop.Close()
		}
	}()
	return nil
}

// serveRing waits for kicks on one ring and runs the device on them. It
// processes the ring once at start: buffers may be waiting from before a
// reconnect.
//
// A transmit ring is busy-polled (Device.Poll, kicks suppressed) while it
// has work and for the BusyPoll budget after, measured with the monotonic
// clock only while idle; then kicks are re-enabled, the ring re-checked
// (EnableKick) and the worker sleeps in poll(2). Under load the frontend
// then sends no kicks at all and the worker makes no syscalls. Idle
// iterations yield (runtime.Gosched) so that workers sharing a core take
// turns.
//
// The kick eventfd is read without ever blocking (the frontend may drain
// it between the poll and the read: EAGAIN is ignored). A kick descriptor
// that hangs up or fails (kickEvents) ends the session: polling it again
// would return at once, forever.
func (s *Session) serveRing(index, kick int, w *worker) {
	fds := []unix.PollFd{{Fd: int32(w.stop.FD()), Events: unix.POLLIN}, {Fd: int32(kick), Events: unix.POLLIN}}
	if kick < 0 {
		fds = fds[:1] // VringNoFD: nothing to wait for but the stop signal
	}
	budget := s.cfg.BusyPoll
	if budget == 0 {
		budget = DefaultBusyPoll
	}
	pollable := budget > 0 && s.dev.Pollable(index)
	kfd := virtio.EventFDFrom(kick) // not closed here: the ring's
	for {
		if pollable {
			s.busyPoll(index, budget, w)
			if w.stopping.Load() {
				return
			}
		} else {
			// A frontend that keeps its ring full keeps HandleKick
			// asking for more: stopRing must still end the loop.
			for s.dev.HandleKick(index) && !w.stopping.Load() {
			}
			if w.stopping.Load() {
				return
			}
		}
		_, err := unix.Poll(fds, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			s.abort(fmt.Errorf("queue %d: polling the kick eventfd: %w", index, err))
			return
		}
		if fds[0].Revents != 0 {
			return
		}
		if len(fds) > 1 {
			read, err := kickEvents(fds[1].Revents)
			if err != nil {
				if w.stopping.Load() {
					return // the ring is being stopped anyway
				}
				n := s.cfg.Counters.KickHangups.Add(1) // once a session, but sessions come back
				s.log.Log(sparse(n, hclog.Error), "kick eventfd unusable, ending the session", "queue", index,
					"revents", fds[1].Revents, "error", err, "count", n)
				s.abort(fmt.Errorf("queue %d: kick eventfd: %w", index, err))
				return
			}
			if read {
				kickRead(kfd)
				if w.stopping.Load() { // stopRing may have given up on this read
					return
				}
			}
		}
	}
}

// kickRead consumes a kick; a test replaces it.
var kickRead = func(e *virtio.EventFD) { e.ReadNoWait() } // EAGAIN: the frontend drained it

// ErrKickHangup and ErrKickFailed say why a kick descriptor ended its
// session.
var (
	ErrKickHangup = errors.New("hung up (POLLHUP)")
	ErrKickFailed = errors.New("failed (POLLERR or POLLNVAL)")
)

// kickEvents interprets poll(2)'s revents for a kick descriptor: whether
// there is a kick to read, or an error if the descriptor can never be
// waited on again. POLLHUP (a pipe whose writer closed), POLLERR and
// POLLNVAL stay set once raised, so poll would return at once forever:
// the worker would spin a core.
func kickEvents(revents int16) (read bool, err error) {
	switch {
	case revents&(unix.POLLERR|unix.POLLNVAL) != 0:
		return false, ErrKickFailed
	case revents&unix.POLLHUP != 0:
		return false, ErrKickHangup
	}
	return revents&unix.POLLIN != 0, nil
}

// busyPoll polls transmit ring index until it has been idle for budget,
// then re-enables kicks; it returns once the ring is empty with kicks on
// (or the worker is stopping).
func (s *Session) busyPoll(index int, budget time.Duration, w *worker) {
	var idleSince time.Time
	idle := false
	// Busy time is summed here and added to the port's counter once a
	// millisecond's worth has gathered (and on return): one atomic add
	// per batch from every queue's worker would bounce its cache line
	// between their cores.
	var busy time.Duration
	defer func() { s.cfg.Counters.PollBusyNanos.Add(int64(busy)) }()
	for {
		// One clock read per poll, as before for idle ones; a poll that
		// finds work reads it again to count its time.
		now := time.Now()
		if s.dev.Poll(index) {
			idle = false
			if busy += time.Since(now); busy >= time.Millisecond {
				s.cfg.Counters.PollBusyNanos.Add(int64(busy))
				busy = 0
			}
		} else {
			if !idle {
				idle, idleSince = true, now
			}
			if now.Sub(idleSince) >= budget {
				if !s.dev.EnableKick(index) {
					return
				}
				idle = false // chains arrived while enabling: poll on
			}
		}
		if w.stopping.Load() { // checked after polling: a ring that starts runs once
			return
		}
		// Let the other rings' workers on this P run between batches, as
		// one DPDK lcore polls its ports in turn.
		runtime.Gosched()
	}
}
