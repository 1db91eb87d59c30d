package vmm

import (
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"hvnet/virtio"
	vnet "hvnet/virtio/net"
)

// NetConfig configures a virtio-net device (virtio 1.2 §5.1) on the
// machine's PCI bus.
type NetConfig struct {
	MAC        [6]byte   // zero: a random locally administered address
	QueuePairs int       // RX/TX pairs (max_virtqueue_pairs), default 1
	QueueSize  uint16    // largest queue the driver may use, default 1024
	MTU        uint16    // reported MTU, default 1500
	Sink       vnet.Sink // where the guest's frames go (required unless VhostUser)
	// VhostUser is a vhost-user backend's socket: when set, the backend
	// runs the data queues (vhostnet.go) and Sink is not used.
	VhostUser string
	Log       hclog.Logger
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

// netOffered is what the device offers: the features of issue 4.
var netOffered = virtio.Feature(virtio.FVersion1) | virtio.Feature(virtio.FEventIdx) |
	virtio.Feature(virtio.FIndirectDesc) | vnet.Features(vnet.FMAC, vnet.FStatus, vnet.FMTU,
	vnet.FMrgRxbuf, vnet.FCsum, vnet.FGuestCsum, vnet.FGuestTSO4, vnet.FGuestTSO6, vnet.FHostTSO4,
	vnet.FHostTSO6, vnet.FCtrlVQ, vnet.FCtrlRx, vnet.FCtrlVLAN, vnet.FGuestAnnounce)

// NetDevice is a virtio-net PCI function: the vnet dataplane behind the
// virtio-pci transport.
type NetDevice struct {
	cfg    NetConfig
	dev    *vnet.Device
	pci    *virtioPCI
	status atomic.Uint32 // virtio_net_config.status
	offer  uint64
	vu     *vhostNet // vhost-user mode, or nil

	// The control-queue re-poll (ctrlWatch).
	ctrlStop  chan struct{}
	stopOnce  sync.Once
	closeErr  error
	ctrlDone  sync.WaitGroup
	lostKicks atomic.Uint64
}

var _ virtioBackend = (*NetDevice)(nil)

// newNetDevice builds the device over guest memory mem (ram is the same
// memory as the machine holds it, for vhost-user mode; may be nil
// otherwise).
func newNetDevice(cfg NetConfig, mem *virtio.Memory, ram *Memory, plat platform, bar uint32) (_ *NetDevice, err error) {
	if cfg.Sink == nil && cfg.VhostUser != "" {
		cfg.Sink = vnet.SinkFunc(func([]vnet.Frame) {}) // the data queues are the backend's
	}
	if cfg.Sink == nil {
		return nil, errors.New("virtio-net: NetConfig.Sink is required")
	}
	if cfg.QueuePairs == 0 {
		cfg.QueuePairs = 1
	}
	if cfg.QueuePairs < 1 || cfg.QueuePairs > 64 {
		return nil, fmt.Errorf("virtio-net: %d queue pairs, want 1..64", cfg.QueuePairs)
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = 1024
	}
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	if cfg.MTU < 68 {
		return nil, fmt.Errorf("virtio-net: MTU %d below 68", cfg.MTU)
	}
	if cfg.MAC == ([6]byte{}) {
		if _, err := rand.Read(cfg.MAC[:]); err != nil {
			return nil, fmt.Errorf("virtio-net: random MAC: %w", err)
		}
	}
	cfg.MAC[0] = cfg.MAC[0]&^1 | 2 // unicast, locally administered
	if cfg.Log == nil {
		cfg.Log = hclog.NewNullLogger()
	}
	n := &NetDevice{cfg: cfg, offer: netOffered}
	if cfg.QueuePairs > 1 {
		n.offer |= vnet.Features(vnet.FMQ)
	}
	if cfg.VhostUser != "" {
		if n.vu, err = dialVhostNet(cfg.VhostUser, cfg.QueuePairs, ram, cfg.Log); err != nil {
			return nil, fmt.Errorf("virtio-net: %w", err)
		}
		defer func() {
			if err != nil {
				n.vu.close()
			}
		}()
		n.offer = n.vu.offer(n.offer)
	}
	n.status.Store(netStatusLinkUp)
	n.dev, err = vnet.New(vnet.Config{
		QueuePairs: cfg.QueuePairs, MaxQueueSize: cfg.QueueSize, Sink: cfg.Sink, Logger: cfg.Log,
		OnFault:   func(err error) { n.pci.failed(err) },
		OnControl: n.onControl,
	})
	if err != nil {
		return nil, err
	}
	n.dev.SetMemory(mem)
	if n.pci, err = newVirtioPCI(n, plat, bar, cfg.Log); err != nil {
		return nil, err
	}
	if n.vu != nil {
		n.vu.watch(n.backendLost)
	}
	n.ctrlStop = make(chan struct{})
	n.ctrlDone.Add(1)
	go n.ctrlWatch()
	return n, nil
}

// ctrlRepoll is how often ctrlWatch looks at the control queue.
const ctrlRepoll = 250 * time.Millisecond

// ctrlWatch looks at the control queue now and then. Linux's virtio-net
// kicks once per control command and then spins, with bottom halves off,
// until the device answers (virtnet_send_command): one lost notification
// would hang the guest's CPU for good. A command still waiting, untaken,
// at two looks in a row has lost its notification: it is processed here,
// counted (LostKicks) and logged.
func (n *NetDevice) ctrlWatch() {
	defer n.ctrlDone.Done()
	t := time.NewTicker(ctrlRepoll)
	defer t.Stop()
	var waiting bool
	var last uint16
	for {
		select {
		case <-n.ctrlStop:
			return
		case <-t.C:
		}
		avail, taken, ok := n.dev.CtrlPosition()
		if !ok || avail == taken || n.pci.status.Load()&virtio.StatusDriverOK == 0 {
			waiting = false
			continue
		}
		if !waiting || taken != last {
			waiting, last = true, taken
			continue
		}
		waiting = false
		if k := n.dev.ProcessCtrl(); k > 0 {
			c := n.lostKicks.Add(1)
			n.cfg.Log.Warn("control command waited without a notification; taken now",
				"commands", k, "avail_idx", avail, "taken", taken, "count", c)
		}
	}
}

// Device returns the dataplane (to join it to a switch port: it is the
// port's receive side).
func (n *NetDevice) Device() *vnet.Device { return n.dev }

// MAC returns the device's MAC address.
func (n *NetDevice) MAC() [6]byte { return n.cfg.MAC }

// Stats returns the transport's counters (per-queue kicks and interrupts,
// needs-reset events, bad accesses).
func (n *NetDevice) Stats() VirtioPCIStats {
	s := n.pci.stats()
	s.LostKicks = n.lostKicks.Load()
	return s
}

// SetLink sets the link state the driver sees and notifies it (§5.1.4).
func (n *NetDevice) SetLink(up bool) {
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
func (n *NetDevice) Announce() bool {
	if !virtio.HasFeature(n.dev.Features(), vnet.FGuestAnnounce) {
		return false
	}
	n.status.Or(netStatusAnnc)
	n.pci.configChanged()
	return true
}

func (n *NetDevice) onControl(class, cmd uint8) {
	if class == vnet.CtrlAnnounce && cmd == vnet.CtrlAnnounceAck {
		n.status.And(^uint32(netStatusAnnc))
	}
}

func (n *NetDevice) deviceType() uint16               { return virtioIDNet }
func (n *NetDevice) pciClass() (byte, byte)           { return 0x02, 0x00 } // network, Ethernet
func (n *NetDevice) offered() uint64                  { return n.offer }
func (n *NetDevice) numQueues() int                   { return n.dev.NumQueues() }
func (n *NetDevice) maxQueueSize() uint16             { return n.cfg.QueueSize }
func (n *NetDevice) setFeatures(f uint64) error       { return n.dev.SetFeatures(f) }
func (n *NetDevice) writeConfig(off uint64, b []byte) {} // read-only for modern drivers
func (n *NetDevice) reset() {
	if n.vu != nil {
		n.vu.stop()
	}
	n.dev.Reset()
}
func (n *NetDevice) configureQueue(i int, fn func(q *virtio.Queue) error) error {
	return n.dev.ConfigureQueue(i, fn)
}

func (n *NetDevice) readConfig(off uint64, data []byte) {
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
	if n.vu != nil {
		n.activateVhost()
		return
	}
	for i := 1; i < n.dev.CtrlQueue(); i += 2 {
		_ = n.pci.queues[i].kick.Signal() // the dataplane goroutine picks it up
	}
	_ = n.pci.queues[n.dev.CtrlQueue()].kick.Signal() // and commands queued before
}

// kick handles a notification on queue i until the queue is drained.
func (n *NetDevice) kick(i int) {
	for n.dev.HandleKick(i) {
	}
}

// close stops the device (once; later calls return the first result).
func (n *NetDevice) close() error {
	n.stopOnce.Do(func() {
		close(n.ctrlStop)
		n.ctrlDone.Wait()
		err := n.pci.close()
		// The device is stopped: its queues forget the rings, so a frame
		// that a switch port still hands it (Receive) is refused, not
		// written into guest memory that the machine is about to unmap.
		// Receive holds the queue's lock and Reset takes it, so one in
		// flight finishes first.
		n.dev.Reset()
		if n.vu != nil {
			err = errors.Join(err, n.vu.close())
		}
		n.closeErr = err
	})
	return n.closeErr
}
