package backend

import (
	"encoding/binary"
	"errors"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/virtio"
)

// The frontend's call and error eventfds (SET_VRING_CALL, SET_VRING_ERR)
// are the frontend's: it shares their file descriptions and can clear
// O_NONBLOCK and fill the counter (0xfffffffffffffffe), and a write to
// such an eventfd blocks until someone reads it. The dataplane signals a
// receive queue from other ports' goroutines (the switch delivers frames
// on the sender's) with the queue's lock held, and a fault under it: a
// write there could freeze other ports. So no dataplane goroutine writes
// them. A queue's Signaler only marks the queue pending and wakes the
// session's notifier, one goroutine that does every write of the session;
// if the frontend makes a write block, only its own notifications wait.

// Notification slots: queue q's call eventfd is slot 2q, its error eventfd
// 2q+1.
func callSlot(q int) int { return 2 * q }
func errSlot(q int) int  { return 2*q + 1 }

// notifier owns a session's call and error eventfds: it writes them and
// closes them (a descriptor is never closed while a write to it may be in
// progress, so its number cannot be reused under the write).
type notifier struct {
	log      hclog.Logger
	counters *Counters
	slots    []notifySlot
	wake     chan struct{} // cap 1: a pending mark since the last scan
	quit     chan struct{} // closed by stop
	done     chan struct{} // closed when run returns
	started  bool
	// state says who ends the notifier's life: run returning first
	// (stateExited), or stop giving up on it (stateAbandoned, counted in
	// Counters.Stuck until run returns).
	state atomic.Int32

	// mu guards cur, retired and closed, and orders the closing of a
	// descriptor after the last use of it (never held during a write).
	mu      sync.Mutex
	cur     *virtio.EventFD   // the descriptor being written, if any
	retired []*virtio.EventFD // replaced while being written: closed after
	closed  bool              // run has closed every descriptor
	unstuck atomic.Bool       // stop found a write in progress and drained it
	one     [8]byte           // the value written: 1
}

type notifySlot struct {
	fd      atomic.Pointer[virtio.EventFD]
	pending atomic.Bool
}

func newNotifier(log hclog.Logger, c *Counters, queues int) *notifier {
	n := &notifier{log: log, counters: c, slots: make([]notifySlot, 2*queues),
		wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	binary.NativeEndian.PutUint64(n.one[:], 1)
	return n
}

// mark makes slot i pending and wakes the notifier; it never blocks.
func (n *notifier) mark(i int) {
	if n.slots[i].pending.Load() || n.slots[i].pending.Swap(true) {
		return // already pending: the notifier was woken for it
	}
	select {
	case n.wake <- struct{}{}:
	default: // a wake is pending already
	}
}

// signaler returns queue q's used-buffer notification: a mark.
func (n *notifier) signaler(q int) virtio.Signaler {
	i := callSlot(q)
	return virtio.SignalFunc(func() error { n.mark(i); return nil })
}

// set installs e in slot i (nil: none). The notifier owns e from now on;
// the descriptor it replaces is closed now, or after the write in
// progress on it.
func (n *notifier) set(i int, e *virtio.EventFD) {
	old := n.slots[i].fd.Swap(e)
	if old == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if old == n.cur && !n.closed {
		n.retired = append(n.retired, old)
		return
	}
	old.Close()
}

// start runs the notifier's goroutine.
func (n *notifier) start() {
	n.started = true
	go n.run()
}

func (n *notifier) run() {
	defer close(n.done)
	defer func() {
		if !n.state.CompareAndSwap(stateRunning, stateExited) {
			n.counters.Stuck.Add(-1) // abandoned by stop: no longer stuck
		}
	}()
	defer n.closeAll()
	for {
		select {
		case <-n.quit:
			return
		case <-n.wake:
		}
		for i := range n.slots {
			if !n.slots[i].pending.Swap(false) {
				continue
			}
			if n.stopping() {
				return
			}
			n.write(i)
		}
	}
}

func (n *notifier) stopping() bool {
	select {
	case <-n.quit:
		return true
	default:
		return false
	}
}

// write signals slot i's eventfd. EAGAIN means the counter is full: a
// notification is pending already, which is all a signal asks for.
func (n *notifier) write(i int) {
	n.mu.Lock()
	e := n.slots[i].fd.Load()
	if n.stopping() {
		e = nil // stop's unstick may have looked already
	}
	n.cur = e
	n.mu.Unlock()
	if e == nil {
		return
	}
	start := time.Now()
	_, err := unix.Write(e.FD(), n.one[:])
	blocked := n.unstuck.Load() || time.Since(start) >= stallThreshold && !nonblocking(e)
	n.mu.Lock()
	n.cur = nil
	for _, r := range n.retired {
		r.Close()
	}
	n.retired = n.retired[:0]
	n.mu.Unlock()
	if blocked {
		c := n.counters.NotifyStalls.Add(1)
		n.log.Log(sparse(c, hclog.Warn), "notification eventfd write blocked (the frontend cleared O_NONBLOCK on a full eventfd)",
			"queue", i/2, "fd", slotName(i), "stalls", c)
	}
	if err != nil && !errors.Is(err, unix.EAGAIN) {
		if c := n.counters.NotifyErrors.Add(1); bits.OnesCount64(c) == 1 {
			n.log.Warn("notification eventfd write failed", "queue", i/2, "fd", slotName(i), "count", c, "error", err)
		}
	}
}

// nonblocking reports whether e's O_NONBLOCK is set: then a slow write
// was the thread waiting for a CPU, not the frontend making it block.
func nonblocking(e *virtio.EventFD) bool {
	fl, err := unix.FcntlInt(uintptr(e.FD()), unix.F_GETFL, 0)
	return err == nil && fl&unix.O_NONBLOCK != 0
}

func slotName(i int) string {
	if i%2 == 0 {
		return "call"
	}
	return "err"
}

// stallThreshold is how long a write may take before it counts as a stall.
const stallThreshold = 100 * time.Millisecond

// closeAll closes every descriptor the notifier owns (on its goroutine, as
// it exits).
func (n *notifier) closeAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := range n.slots {
		if e := n.slots[i].fd.Swap(nil); e != nil {
			e.Close()
		}
	}
	for _, r := range n.retired {
		r.Close()
	}
	n.retired = nil
	n.closed = true
}

// stop ends the notifier and waits for it, at most timeout. A write in
// progress (one the frontend made block) is unstuck: O_NONBLOCK set
// again and the eventfd drained, which lets the write complete. A notifier
// still stuck after timeout is abandoned (counted, logged): it closes its
// descriptors itself when the write returns. Without a goroutine (never
// started) the descriptors are closed here.
func (n *notifier) stop(timeout time.Duration) {
	if !n.started {
		n.closeAll()
		return
	}
	close(n.quit)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	retry := time.NewTicker(unstickEvery)
	defer retry.Stop()
	for {
		// Unstick on a goroutine of its own: see unstick. Again on each
		// tick: the frontend may refill the counter before the write
		// wakes.
		go n.unstick()
		select {
		case <-n.done:
			return
		case <-retry.C:
		case <-deadline.C:
			n.counters.Stuck.Add(1) // before the state: run's decrement follows it
			if !n.state.CompareAndSwap(stateRunning, stateAbandoned) {
				n.counters.Stuck.Add(-1) // it has just returned
				<-n.done
				return
			}
			c := n.counters.NotifiersAbandoned.Add(1)
			n.log.Error("notifier still blocked in an eventfd write at session end: abandoned",
				"timeout", timeout, "abandoned", c, "stuck", n.counters.Stuck.Load())
			return
		}
	}
}

// The life of an abandonable goroutine (notifier.state, worker.state).
const (
	stateRunning int32 = iota
	stateExited
	stateAbandoned
)

// unstickEvery is how often stop drains a blocked notifier's eventfd.
const unstickEvery = 10 * time.Millisecond

// unstick drains the eventfd the notifier is writing, if any: a read
// resets (or, EFD_SEMAPHORE, decrements) the counter, which wakes the
// blocked writer. Runs on a goroutine of its own: on a kernel without
// preadv2(RWF_NOWAIT) for eventfds the read itself could block if the
// frontend clears O_NONBLOCK again.
func (n *notifier) unstick() {
	if !n.mu.TryLock() {
		return // a previous unstick holds it (blocked: see above), or the notifier
	}
	defer n.mu.Unlock()
	e := n.cur
	if e == nil || n.closed {
		return
	}
	n.unstuck.Store(true)
	if err := e.SetNonblock(); err != nil {
		n.log.Warn("unsticking the notifier", "error", err)
	}
	if _, err := e.ReadNoWait(); err != nil && !errors.Is(err, unix.EAGAIN) {
		n.log.Warn("unsticking the notifier", "error", err)
	}
}

// Counters count what the backend refused or found wrong with a
// frontend's requests and descriptors. A port passes the same Counters to
// each of its sessions (Config.Counters); updated atomically.
type Counters struct {
	// RefusedFDs: SET_VRING_CALL, SET_VRING_ERR or SET_VRING_KICK
	// descriptors that were not eventfds.
	RefusedFDs atomic.Uint64
	// RefusedMemFDs: SET_MEM_TABLE, ADD_MEM_REG or SET_LOG_BASE
	// descriptors refused for what they are: not a regular file, or a
	// file on a filesystem other than tmpfs and hugetlbfs (a *MemFDError).
	RefusedMemFDs atomic.Uint64
	// RefusedMappings: memory regions and dirty logs refused for their
	// size: past Config.MaxMapped or the MapBudget, or a log larger than
	// the guest memory needs (a *MapLimitError).
	RefusedMappings atomic.Uint64
	// RejectedRequests: requests refused, NACKed through REPLY_ACK or
	// ending the session (malformed, invalid values, or their handler
	// failed: the refusals above included).
	RejectedRequests atomic.Uint64
	// NotifyStalls: call or error eventfd writes that blocked (the
	// frontend cleared O_NONBLOCK on a full eventfd).
	NotifyStalls atomic.Uint64
	// NotifyErrors: call or error eventfd writes that failed.
	NotifyErrors atomic.Uint64
	// NotifiersAbandoned: notifiers still blocked in a write
	// Config.StopTimeout after their session ended.
	NotifiersAbandoned atomic.Uint64
	// WorkersAbandoned: ring workers that had not stopped
	// Config.StopTimeout after they were told to.
	WorkersAbandoned atomic.Uint64
	// KickHangups: sessions ended by a kick descriptor that hung up or
	// failed (POLLHUP, POLLERR, POLLNVAL).
	KickHangups atomic.Uint64
	// Stuck is a gauge: the notifiers and ring workers abandoned that
	// are still blocked (each holds a goroutine, a thread and its
	// descriptors until the frontend lets its system call return). The
	// port refuses new sessions while it is at its limit
	// (vhost.PortConfig.MaxStuck).
	Stuck atomic.Int64
	// SessionsRefused: frontends refused because Stuck was at the limit.
	SessionsRefused atomic.Uint64
	// PollBusyNanos: wall-clock time the transmit rings' busy-polling
	// workers spent in polls that found chains (taking them, switching
	// and delivering the frames), in nanoseconds. Over the frames moved
	// it is the dataplane's cost per frame with idle polling left out,
	// what DPDK testpmd's --record-core-cycles and OVS's "processing
	// cycles" count; over elapsed time, how busy the workers are.
	PollBusyNanos atomic.Int64

	// Occurrences of events a frontend can repeat at will, to log them
	// sparsely (see sparse): MTUs set, rings resumed from the used index.
	mtuSets, baseResumes atomic.Uint64
}

// CounterStats is a snapshot of Counters.
type CounterStats struct {
	RefusedFDs, NotifyStalls, NotifyErrors            uint64
	NotifiersAbandoned, WorkersAbandoned, KickHangups uint64
	SessionsRefused                                   uint64
	RefusedMemFDs, RefusedMappings, RejectedRequests  uint64
	Stuck                                             int64 // a gauge: abandoned goroutines still blocked
	PollBusyNanos                                     int64
}

// Snapshot reads the counters.
func (c *Counters) Snapshot() CounterStats {
	return CounterStats{
		RefusedFDs: c.RefusedFDs.Load(), NotifyStalls: c.NotifyStalls.Load(), NotifyErrors: c.NotifyErrors.Load(),
		NotifiersAbandoned: c.NotifiersAbandoned.Load(), WorkersAbandoned: c.WorkersAbandoned.Load(),
		KickHangups: c.KickHangups.Load(), SessionsRefused: c.SessionsRefused.Load(), Stuck: c.Stuck.Load(),
		PollBusyNanos: c.PollBusyNanos.Load(), RefusedMemFDs: c.RefusedMemFDs.Load(),
		RefusedMappings: c.RefusedMappings.Load(), RejectedRequests: c.RejectedRequests.Load(),
	}
}
