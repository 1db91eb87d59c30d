package vmm

import (
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/virtio"
	vnet "github.com/hvnet/hvnet/virtio/net"
)

// NetConfig configures a virtio-net device (virtio 1.2 §5.1) on the
// machine's PCI bus: one whose dataplane runs in the VMM (AddNet), or one
// whose data queues a vhost-user backend runs (AddVhostNet).
type NetConfig struct {
	MAC        [6]byte   // zero: a random locally administered address
	QueuePairs int       // RX/TX pairs (max_virtqueue_pairs), default 1
	QueueSize  uint16    // largest queue the driver may use, default 1024
	MTU        uint16    // reported MTU, default 1500
	Sink       vnet.Sink // where the guest's frames go: required by AddNet, refused by AddVhostNet
	Log        hclog.Logger
}

// Virtio-net device configuration (struct virtio_net_config, §5.1.4).
const (
	netCfgMAC       = 0
	netCfgStatus    = 6
	netCfgMaxPairs  = 8
	netCfgMTU       = 10
	netCfgLen       = 12
	netStatusLinkUp = 1
	netStatusAnnc   = 2
	virtioIDNet     = 1
)

// netOffered is what the device offers: version 1 rings with event index
// and indirect descriptors, MAC, status and MTU, mergeable receive
// buffers, checksum and TSO offload both ways, and the control queue (RX
// mode, VLAN filter, announce).
var netOffered = virtio.Feature(virtio.FVersion1) | virtio.Feature(virtio.FEventIdx) |
	virtio.Feature(virtio.FIndirectDesc) | vnet.Features(vnet.FMAC, vnet.FStatus, vnet.FMTU,
	vnet.FMrgRxbuf, vnet.FCsum, vnet.FGuestCsum, vnet.FGuestTSO4, vnet.FGuestTSO6, vnet.FHostTSO4,
	vnet.FHostTSO6, vnet.FCtrlVQ, vnet.FCtrlRx, vnet.FCtrlVLAN, vnet.FGuestAnnounce)

// netFunc is what both kinds of virtio-net PCI function share: the
// configuration space (MAC, link status, queue pairs, MTU), the control
// queue (a vnet.Device), the virtio-pci transport and the watchdog for
// lost notifications. NetDevice adds the in-process dataplane,
// VhostNetDevice a vhost-user backend's.
type netFunc struct {
	cfg    NetConfig
	dev    *vnet.Device
	pci    *virtioPCI
	status atomic.Uint32 // virtio_net_config.status
	offer  uint64
	// external: the data queues are a vhost-user backend's; only the
	// control queue is the VMM's (and watched).
	external bool

	// The watchdog for lost notifications (watch).
	watchStop chan struct{}
	stopOnce  sync.Once
	closeErr  error
	watchDone sync.WaitGroup
	lostKicks atomic.Uint64
	lostIRQs  atomic.Uint64
}

// NetDevice is a virtio-net PCI function whose dataplane runs in the VMM:
// the vnet device behind the virtio-pci transport.
type NetDevice struct{ netFunc }

var _ virtioBackend = (*NetDevice)(nil)

// newNetDevice builds the device over guest memory mem.
func newNetDevice(cfg NetConfig, mem *virtio.Memory, plat platform, bar uint32) (*NetDevice, error) {
	if cfg.Sink == nil {
		return nil, errors.New("virtio-net: NetConfig.Sink is required")
	}
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	n := &NetDevice{}
	if err := n.init(n, cfg, mem, plat, bar, netOffered); err != nil {
		return nil, err
	}
	return n, nil
}

// normalize checks cfg and fills in its defaults.
func (cfg *NetConfig) normalize() error {
	if cfg.QueuePairs == 0 {
		cfg.QueuePairs = 1
	}
	if cfg.QueuePairs < 1 || cfg.QueuePairs > 64 {
		return fmt.Errorf("virtio-net: %d queue pairs, want 1..64", cfg.QueuePairs)
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = 1024
	}
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	if cfg.MTU < 68 {
		return fmt.Errorf("virtio-net: MTU %d below 68", cfg.MTU)
	}
	if cfg.MAC == ([6]byte{}) {
		if _, err := rand.Read(cfg.MAC[:]); err != nil {
			return fmt.Errorf("virtio-net: random MAC: %w", err)
		}
	}
	cfg.MAC[0] = cfg.MAC[0]&^1 | 2 // unicast, locally administered
	if cfg.Log == nil {
		cfg.Log = hclog.NewNullLogger()
	}
	return nil
}

// init builds the shared part for be (the NetDevice or VhostNetDevice
// that embeds f), offering offer (and MQ with several queue pairs), and
// starts the watchdog.
func (f *netFunc) init(be virtioBackend, cfg NetConfig, mem *virtio.Memory, plat platform, bar uint32, offer uint64) (err error) {
	f.cfg, f.offer = cfg, offer
	if cfg.QueuePairs > 1 {
		f.offer |= vnet.Features(vnet.FMQ)
	}
	f.status.Store(netStatusLinkUp)
	f.dev, err = vnet.New(vnet.Config{
		QueuePairs: cfg.QueuePairs, MaxQueueSize: cfg.QueueSize, Sink: cfg.Sink, ControlOnly: f.external,
		Logger:    cfg.Log,
		OnFault:   func(err error) { f.pci.failed(err) },
		OnControl: f.onControl,
	})
	if err != nil {
		return err
	}
	f.dev.SetMemory(mem)
	if f.pci, err = newVirtioPCI(be, plat, bar, cfg.Log); err != nil {
		return err
	}
	f.watchStop = make(chan struct{})
	f.watchDone.Add(1)
	go f.watch()
	return nil
}

// watchEvery is how often watch looks at the queues.
const watchEvery = 250 * time.Millisecond

// watchState is what watch remembers of a queue from its last look.
type watchState struct {
	kickWait bool // chains waited, untaken, at the last look
	taken    uint16
	irqWait  bool // the driver wanted a notification at the last look
	ev, pub  uint16
}

// watch looks at the queues now and then for notifications lost on the
// way (vnet/watch.go). Linux's virtio-net kicks once per control command
// and then spins, with bottom halves off, until the device answers
// (virtnet_send_command); with EVENT_IDX it kicks a transmit queue only
// when its index passes avail_event, and the device signals only when the
// used index passes used_event: one lost notification would stop a guest
// CPU or a queue for good. So:
//
//   - chains waiting, untaken, on the control queue or a transmit queue at
//     two looks in a row lost their kick: they are processed here;
//   - a driver whose used_event stayed behind the published used index at
//     two looks in a row (the same indices) lost its interrupt: it is
//     sent again.
//
// Both are counted (LostKicks, LostIRQs) and logged. The data queues of a
// vhost-user device are the backend's: only the control queue is watched.
func (n *netFunc) watch() {
	defer n.watchDone.Done()
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	last := make([]watchState, n.dev.NumQueues())
	ctrl := n.dev.CtrlQueue()
	for {
		select {
		case <-n.watchStop:
			return
		case <-t.C:
		}
		driverOK := n.pci.status.Load()&virtio.StatusDriverOK != 0
		for i := range last {
			w := &last[i]
			if n.external && i != ctrl {
				continue
			}
			st := n.dev.Watch(i)
			if !st.OK || !driverOK {
				*w = watchState{}
				continue
			}
			if i == ctrl || n.dev.Pollable(i) {
				n.watchKick(i, w, st)
			}
			if i != ctrl {
				n.watchIRQ(i, w, st)
			}
		}
	}
}

// watchKick handles queue i's available side for watch.
func (n *netFunc) watchKick(i int, w *watchState, st vnet.QueueState) {
	if st.Avail == st.Taken {
		w.kickWait = false
		return
	}
	if !w.kickWait || st.Taken != w.taken {
		w.kickWait, w.taken = true, st.Taken
		return
	}
	w.kickWait = false
	var k int
	if i == n.dev.CtrlQueue() {
		k = n.dev.ProcessCtrl()
	} else {
		n.kick(i)
		if now := n.dev.Watch(i); now.OK {
			k = int(now.Taken - st.Taken)
		} else {
			k = 1 // the queue broke on what it took (a fault, counted as such)
		}
	}
	if k > 0 {
		c := n.lostKicks.Add(1)
		if logLost(c) {
			n.cfg.Log.Warn("chains waited without a notification; taken now",
				"queue", i, "chains", k, "avail_idx", st.Avail, "taken", st.Taken, "count", c)
		}
	}
}

// watchIRQ handles queue i's used side for watch.
func (n *netFunc) watchIRQ(i int, w *watchState, st vnet.QueueState) {
	if !st.IRQWanted {
		w.irqWait = false
		return
	}
	if !w.irqWait || st.UsedEvent != w.ev || st.Published != w.pub {
		w.irqWait, w.ev, w.pub = true, st.UsedEvent, st.Published
		return
	}
	w.irqWait = false
	if err := n.dev.Resignal(i); err != nil {
		n.cfg.Log.Warn("sending a used-buffer notification again failed", "queue", i, "error", err)
		return
	}
	c := n.lostIRQs.Add(1)
	if logLost(c) {
		n.cfg.Log.Warn("driver waited for a used-buffer notification; sent again",
			"queue", i, "used_event", st.UsedEvent, "used_idx", st.Published, "count", c)
	}
}

// logLost says whether the c-th lost notification is logged: the first
// ten, then every thousandth (all are counted).
func logLost(c uint64) bool { return c <= 10 || c%1000 == 0 }

// Device returns the dataplane (to join it to a switch port: it is the
// port's receive side).
func (n *NetDevice) Device() *vnet.Device { return n.dev }

// MAC returns the device's MAC address.
func (n *netFunc) MAC() [6]byte { return n.cfg.MAC }

// Stats returns the transport's counters (per-queue kicks and interrupts,
// needs-reset events, bad accesses).
func (n *netFunc) Stats() VirtioPCIStats {
	s := n.pci.stats()
	s.LostKicks = n.lostKicks.Load()
	s.LostIRQs = n.lostIRQs.Load()
	return s
}

// SetLink sets the link state the driver sees and notifies it (§5.1.4).
func (n *netFunc) SetLink(up bool) {
	if up {
		n.status.Or(netStatusLinkUp)
	} else {
		n.status.And(^uint32(netStatusLinkUp))
	}
	n.pci.configChanged()
}

// Announce asks a driver that negotiated GUEST_ANNOUNCE to send
// gratuitous packets (after a migration, say; §5.1.6.5.4); the driver
// acknowledges with VIRTIO_NET_CTRL_ANNOUNCE_ACK, which clears the bit.
func (n *netFunc) Announce() bool {
	if !virtio.HasFeature(n.dev.Features(), vnet.FGuestAnnounce) {
		return false
	}
	n.status.Or(netStatusAnnc)
	n.pci.configChanged()
	return true
}

func (n *netFunc) onControl(class, cmd uint8) {
	if class == vnet.CtrlAnnounce && cmd == vnet.CtrlAnnounceAck {
		n.status.And(^uint32(netStatusAnnc))
	}
}

func (n *netFunc) deviceType() uint16               { return virtioIDNet }
func (n *netFunc) pciClass() (byte, byte)           { return 0x02, 0x00 } // network, Ethernet
func (n *netFunc) offered() uint64                  { return n.offer }
func (n *netFunc) numQueues() int                   { return n.dev.NumQueues() }
func (n *netFunc) maxQueueSize() uint16             { return n.cfg.QueueSize }
func (n *netFunc) setFeatures(f uint64) error       { return n.dev.SetFeatures(f) }
func (n *netFunc) writeConfig(off uint64, b []byte) {} // read-only for modern drivers
func (n *NetDevice) reset()                         { n.dev.Reset() }
func (n *netFunc) configureQueue(i int, fn func(q *virtio.Queue) error) error {
	return n.dev.ConfigureQueue(i, fn)
}

func (n *netFunc) readConfig(off uint64, data []byte) {
	var b [netCfgLen]byte
	copy(b[netCfgMAC:], n.cfg.MAC[:])
	putU16(b[netCfgStatus:], uint16(n.status.Load()))
	putU16(b[netCfgMaxPairs:], uint16(n.cfg.QueuePairs))
	putU16(b[netCfgMTU:], n.cfg.MTU)
	clear(data)
	if off < netCfgLen {
		copy(data, b[off:])
	}
}

// activate runs at DRIVER_OK: transmit what the driver queued before.
func (n *NetDevice) activate() {
	for i := 1; i < n.dev.CtrlQueue(); i += 2 {
		_ = n.pci.queues[i].kick.Signal() // the dataplane goroutine picks it up
	}
	_ = n.pci.queues[n.dev.CtrlQueue()].kick.Signal() // and commands queued before
}

// kick handles a notification on queue i until the queue is drained.
func (n *netFunc) kick(i int) {
	for n.dev.HandleKick(i) {
	}
}

// close stops the device (once; later calls return the first result).
func (n *NetDevice) close() error { return n.stop(nil) }

// stop stops the shared part, then runs more (once; later calls return
// the first result).
func (n *netFunc) stop(more func() error) error {
	n.stopOnce.Do(func() {
		close(n.watchStop)
		n.watchDone.Wait()
		err := n.pci.close()
		// The device is stopped: its queues forget the rings, so a frame
		// that a switch port still hands it (Receive) is refused, not
		// written into guest memory that the machine is about to unmap.
		// Receive holds the queue's lock and Reset takes it, so one in
		// flight finishes first.
		n.dev.Reset()
		if more != nil {
			err = errors.Join(err, more())
		}
		n.closeErr = err
	})
	return n.closeErr
}
