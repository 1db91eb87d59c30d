package vnet

import (
	"errors"
	"fmt"
	"math/bits"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/virtio"
)

// Config configures a Device.
type Config struct {
	// QueuePairs is the number of RX/TX queue pairs (max_virtqueue_pairs),
	// at least 1.
	QueuePairs int
	// MaxQueueSize is the largest queue size the transport offers
	// (default 1024).
	MaxQueueSize uint16
	// Sink receives the frames the guest transmits. Required, unless
	// ControlOnly.
	Sink Sink
	// ControlOnly: the device serves only its control queue; its data
	// queues are run elsewhere (a vhost-user backend's, for the VMM's
	// vhost-user NIC). Transmit queues are then never processed (ProcessTX
	// returns at once) and Receive refuses every frame (counted as
	// RxDropNoBuffer).
	ControlOnly bool
	// OnFault is called (once per queue until reset) when a queue is
	// malformed; the transport should set DEVICE_NEEDS_RESET and notify
	// the driver of a configuration change (virtio 1.2 §2.1.2). Called
	// with the queue's lock held: it must not call back into the Device
	// except Stats. May be nil.
	OnFault func(err error)
	// OnControl is called after each control command acknowledged OK,
	// with its class and command (for example so the transport can clear
	// VIRTIO_NET_S_ANNOUNCE after ANNOUNCE_ACK). Same restriction as
	// OnFault. May be nil.
	OnControl func(class, cmd uint8)
	// Logger receives one line per dropped chain (rate-limited) and per
	// fault. Default: hclog.NewNullLogger().
	Logger hclog.Logger
}

// FaultError is the error given to OnFault: which queue, and what is wrong
// with it.
type FaultError struct {
	Queue int
	Err   error
}

func (e *FaultError) Error() string { return fmt.Sprintf("vnet: queue %d: %v", e.Queue, e.Err) }

func (e *FaultError) Unwrap() error { return e.Err }

// vq is one virtqueue with its lock.
type vq struct {
	mu      sync.Mutex
	q       *virtio.Queue
	index   int
	faulted bool
	// setup counts the transport's changes to the queue (ConfigureQueue,
	// SetMemory, Reset): what the receive path remembers of the
	// driver's buffers (rxShort) holds only within one.
	setup uint32
}

type pair struct {
	rx rxQueue
	tx txQueue
}

// Device is a virtio-net device's dataplane.
type Device struct {
	noBurst bool // tests: every received frame through the one-frame loop (no rxBurst)
	log     hclog.Logger
	sink    Sink
	tails   TailSink  // the sink, when it takes frames in two parts
	qsink   QueueSink // the sink, when it takes a batch's queue pair
	// controlOnly: no Sink, the data queues are served elsewhere.
	controlOnly bool
	onFault     func(error)
	onControl   func(class, cmd uint8)
	pairs       []*pair
	ctrl        ctrlQueue

	features    atomic.Uint64 // negotiated
	rxOffloads  atomic.Uint64 // guest offloads in effect (§5.1.6.5.6)
	activePairs atomic.Int32
	stats       counters
}

// New returns a Device with every queue disabled.
func New(cfg Config) (*Device, error) {
	if cfg.QueuePairs < 1 || cfg.QueuePairs > 0x8000 {
		return nil, fmt.Errorf("vnet: %d queue pairs, want 1 to 32768", cfg.QueuePairs)
	}
	if cfg.Sink == nil && !cfg.ControlOnly {
		return nil, errors.New("vnet: Config.Sink is required")
	}
	if cfg.ControlOnly {
		cfg.Sink = nil
	}
	if cfg.MaxQueueSize == 0 {
		cfg.MaxQueueSize = 1024
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	d := &Device{log: cfg.Logger, sink: cfg.Sink, onFault: cfg.OnFault, onControl: cfg.OnControl}
	d.tails, _ = cfg.Sink.(TailSink)
	d.qsink, _ = cfg.Sink.(QueueSink)
	d.controlOnly = cfg.ControlOnly
	newVQ := func(v *vq, index int) error {
		q, err := virtio.NewQueue(cfg.MaxQueueSize)
		if err != nil {
			return err
		}
		v.q, v.index = q, index
		return nil
	}
	for i := 0; i < cfg.QueuePairs; i++ {
		p := &pair{}
		if err := newVQ(&p.rx.vq, 2*i); err != nil {
			return nil, err
		}
		if err := newVQ(&p.tx.vq, 2*i+1); err != nil {
			return nil, err
		}
		d.pairs = append(d.pairs, p)
	}
	if err := newVQ(&d.ctrl.vq, 2*cfg.QueuePairs); err != nil {
		return nil, err
	}
	d.activePairs.Store(1)
	d.ctrl.filter = RXFilter{Promisc: true}
	return d, nil
}

// NumQueues is the number of virtqueues: two per pair and the control queue.
func (d *Device) NumQueues() int { return 2*len(d.pairs) + 1 }

// CtrlQueue is the control queue's index (§5.1.2).
func (d *Device) CtrlQueue() int { return 2 * len(d.pairs) }

func (d *Device) vqAt(i int) (*vq, error) {
	switch {
	case i < 0 || i > 2*len(d.pairs):
		return nil, fmt.Errorf("vnet: no queue %d (device has %d)", i, d.NumQueues())
	case i == 2*len(d.pairs):
		return &d.ctrl.vq, nil
	case i%2 == 0:
		return &d.pairs[i/2].rx.vq, nil
	default:
		return &d.pairs[i/2].tx.vq, nil
	}
}

func (d *Device) eachVQ(fn func(v *vq)) {
	for i := 0; i < d.NumQueues(); i++ {
		v, _ := d.vqAt(i)
		v.mu.Lock()
		fn(v)
		v.mu.Unlock()
	}
}

// SetFeatures records the features the driver accepted (at FEATURES_OK) and
// applies the ring features to every queue.
func (d *Device) SetFeatures(f uint64) error {
	if !virtio.HasFeature(f, virtio.FVersion1) {
		return errors.New("vnet: VIRTIO_F_VERSION_1 not negotiated; legacy devices are not supported")
	}
	var err error
	d.eachVQ(func(v *vq) {
		if e := v.q.SetFeatures(f); e != nil && err == nil {
			err = fmt.Errorf("vnet: queue %d: %w", v.index, e)
		}
	})
	if err != nil {
		return err
	}
	d.features.Store(f)
	d.rxOffloads.Store(f & guestOffloads)
	return nil
}

// Features returns the negotiated features.
func (d *Device) Features() uint64 { return d.features.Load() }

// SetMemory gives every queue guest memory m (call again after a remap). An
// enabled queue whose rings no longer fit faults.
func (d *Device) SetMemory(m *virtio.Memory) {
	d.eachVQ(func(v *vq) {
		v.setup++
		if err := v.q.SetMemory(m); err != nil {
			d.fault(v, err)
		}
	})
}

// ConfigureQueue runs fn on queue i with the queue's lock held: the transport
// sets size, addresses, signaler, indices, and enables or disables it there.
//
// A fault on guest memory inside fn (a frontend that shrank its memory)
// is returned as a *virtio.MemoryFaultError.
func (d *Device) ConfigureQueue(i int, fn func(q *virtio.Queue) error) (err error) {
	v, err := d.vqAt(i)
	if err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.setup++
	defer virtio.CatchFault(virtio.TrapFaults(), &err)
	err = fn(v.q)
	if v.q.Broken() == nil {
		v.faulted = false
	}
	return err
}

// HandleKick processes queue i after an available-buffer notification: TX
// frames go to the Sink, control commands are executed; a kick on an RX queue
// needs no work (Receive pulls buffers). It returns true when it stopped on
// its budget with work left: call it again (it leaves notifications off
// meanwhile).
func (d *Device) HandleKick(i int) bool {
	switch {
	case i == d.CtrlQueue():
		return d.ProcessCtrl() == ctrlBudget
	case i >= 0 && i < d.CtrlQueue() && i%2 == 1:
		return d.ProcessTX(i / 2)
	}
	return false
}

// Pollable reports whether queue i is a transmit queue, the kind Poll
// serves.
func (d *Device) Pollable(i int) bool { return i >= 0 && i < d.CtrlQueue() && i%2 == 1 }

// Poll is HandleKick for a busy-polling transport (like Linux vhost-net's
// busy_poll or DPDK's poll mode): it processes transmit queue i with
// available-buffer notifications left off, so the driver need not kick
// while the transport keeps polling, and reports whether it found chains.
// Before sleeping on the kick, call EnableKick. Other queues: false.
func (d *Device) Poll(i int) bool {
	if !d.Pollable(i) {
		return false
	}
	return d.pollTX(i / 2)
}

// EnableKick re-enables available-buffer notifications on transmit queue i
// after Poll and reports whether chains arrived meanwhile, in which case
// the caller must poll again instead of sleeping (§2.7.10: the re-check
// after enabling closes the race with a suppressed kick).
func (d *Device) EnableKick(i int) bool {
	if !d.Pollable(i) {
		return false
	}
	return d.armTX(i / 2)
}

// Reset returns every queue and the control state to their initial values
// (device reset, §2.4). Memory, signalers and counters are kept.
func (d *Device) Reset() {
	d.eachVQ(func(v *vq) {
		v.q.Reset()
		v.faulted = false
		v.setup++
	})
	d.features.Store(0)
	d.rxOffloads.Store(0)
	d.activePairs.Store(1)
	d.ctrl.mu.Lock()
	d.ctrl.filter = RXFilter{Promisc: true}
	d.ctrl.mu.Unlock()
}

// Stats returns a snapshot of the counters.
func (d *Device) Stats() Stats { return d.stats.snapshot() }

// ActivePairs returns the number of queue pairs the driver enabled
// (VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, or the transport: SetActivePairs; 1
// until then).
func (d *Device) ActivePairs() int { return int(d.activePairs.Load()) }

// SetActivePairs sets the number of active queue pairs for a transport
// that learns it outside the control queue: a vhost-user frontend
// enables pairs with SET_VRING_ENABLE (QEMU does so for the pairs its
// guest set with MQ_VQ_PAIRS_SET). Receive spreads over pairs [0, n).
func (d *Device) SetActivePairs(n int) error {
	if n < 1 || n > len(d.pairs) {
		return fmt.Errorf("vnet: %d active queue pairs, device has %d", n, len(d.pairs))
	}
	d.activePairs.Store(int32(n))
	return nil
}

// fault marks v as malformed: counted, logged, reported once.
func (d *Device) fault(v *vq, err error) {
	if v.faulted {
		return
	}
	v.faulted = true
	d.stats.faults.Add(1)
	fe := &FaultError{Queue: v.index, Err: err}
	d.log.Error("virtqueue malformed, device needs reset", "queue", v.index, "error", err)
	if d.onFault != nil {
		d.onFault(fe)
	}
}

// NoteMemoryFault counts a fault on guest memory the transport met outside
// the dataplane (a vhost-user handler reading a ring of a frontend that
// shrank its memory): Stats.MemoryFaults counts both kinds.
func (d *Device) NoteMemoryFault() { d.stats.memFaults.Add(1) }

// guard must be deferred directly, with the value of virtio.TrapFaults,
// by every method that touches v's guest memory, after v's lock is taken
// (so it runs while the lock is still held). A fault on guest memory (the
// frontend shrank its memfd) breaks v and reports it like any malformed
// ring; the process and every other queue go on. Other panics go on.
func (d *Device) guard(v *vq, prev bool) {
	debug.SetPanicOnFault(prev)
	r := recover()
	if r == nil {
		return
	}
	fe := virtio.FaultOf(r)
	if fe == nil {
		panic(r)
	}
	d.stats.memFaults.Add(1)
	v.q.Break(fe)
	d.fault(v, fe)
}

// drop logs a dropped chain or frame; n is the counter's new value, and only
// powers of two are logged so a hostile guest cannot flood the log.
func (d *Device) drop(v *vq, n uint64, what string, err error) {
	if bits.OnesCount64(n) == 1 {
		d.log.Warn("dropped", "queue", v.index, "what", what, "count", n, "error", err)
	}
}

// flush publishes v's used entries and signals the driver if needed.
func (d *Device) flush(v *vq) {
	if err := v.q.Flush(); err != nil {
		if n := d.stats.signalErrors.Add(1); bits.OnesCount64(n) == 1 {
			d.log.Warn("used-buffer notification failed", "queue", v.index, "count", n, "error", err)
		}
	}
}
