package vmm

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/vhostuser/frontend"
	"github.com/hvnet/hvnet/vhostuser/proto"
	"github.com/hvnet/hvnet/virtio"
	vnet "github.com/hvnet/hvnet/virtio/net"
)

// A vhost-user NIC (VhostNetDevice, AddVhostNet): the VMM is a vhost-user frontend
// (QEMU docs/interop/vhost-user.rst) and an external backend (hvnet switch,
// DPDK net_vhost) runs the receive and transmit queues directly in the
// guest's memfd RAM:
//
//   - at AddVhostNet the device connects, negotiates protocol features (MQ,
//     REPLY_ACK) and claims the backend (SET_OWNER); the features offered to
//     the guest are the backend's data-path features ∩ the VMM's own;
//   - at DRIVER_OK it sends SET_FEATURES, SET_MEM_TABLE (every RAM region
//     of the memfd, user addresses = the VMM's mapping) and, per enabled
//     data queue, SET_VRING_NUM/ADDR/BASE, SET_VRING_CALL = the MSI-X
//     vector's irqfd eventfd, SET_VRING_KICK = the queue's ioeventfd, then
//     SET_VRING_ENABLE. Kicks and interrupts then never pass through the
//     VMM: no goroutine of the VMM waits on a data queue's ioeventfd;
//   - a device reset stops each started ring with GET_VRING_BASE;
//   - when the backend goes away the device enters DEVICE_NEEDS_RESET, the
//     link goes down in the configuration status, a configuration interrupt
//     is raised and one line is logged; the VM runs on. There is no
//     reconnection: the NIC stays down until the VM is restarted.
//
// The control queue stays in the VMM (the in-process vnet.Device handles
// it), so CTRL_VQ, CTRL_RX, CTRL_VLAN, GUEST_ANNOUNCE and MQ are offered
// whatever the backend says; the backend receives only data-path features.
// VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET is acknowledged but every queue pair the
// driver enabled is started in the backend (Linux fills only the active
// pairs' receive queues, so the backend drops frames it would steer to the
// others).
//
// MSI-X masking: the backend writes the vector's eventfd itself, so a
// vector masked after DRIVER_OK still delivers through its last route
// (KVM keeps the route; the VMM does not see the signal and cannot set the
// pending bit). A spurious virtio interrupt is harmless (the driver reads
// the used ring); Linux masks vectors only briefly while moving them. The
// per-queue Kicks and Interrupts counters of VirtioPCIStats stay zero for
// the backend's queues.

// vhostDataFeatures are the features whose implementation is the
// backend's: offered only when the backend offers them too.
var vhostDataFeatures = virtio.Feature(virtio.FVersion1) | virtio.Feature(virtio.FEventIdx) |
	virtio.Feature(virtio.FIndirectDesc) | vnet.Features(vnet.FMrgRxbuf, vnet.FCsum, vnet.FGuestCsum,
	vnet.FGuestTSO4, vnet.FGuestTSO6, vnet.FHostTSO4, vnet.FHostTSO6)

// vhostCtrlFeatures are the control queue's: the VMM's, never sent to
// the backend.
var vhostCtrlFeatures = vnet.Features(vnet.FCtrlVQ, vnet.FCtrlRx, vnet.FCtrlVLAN, vnet.FCtrlRxExtra,
	vnet.FGuestAnnounce, vnet.FCtrlMACAddr, vnet.FCtrlGuestOffload)

// vhostNet is the connection to the backend of one NetDevice.
type vhostNet struct {
	path    string
	log     hclog.Logger
	ram     *Memory
	conn    *net.UnixConn
	offered uint64 // the backend's virtio features
	proto   bool   // VHOST_USER_F_PROTOCOL_FEATURES negotiated

	mu      sync.Mutex // the frontend (one request at a time) and started
	f       *frontend.Frontend
	started []uint32 // queues handed to the backend since the last reset

	lost   atomic.Bool
	onLost func(error)
	wake   *virtio.EventFD
	done   chan struct{}
}

// dialVhostNet connects to the backend at path and negotiates what can be
// before the guest runs. pairs is the number of queue pairs the device has.
func dialVhostNet(path string, pairs int, ram *Memory, log hclog.Logger) (_ *vhostNet, err error) {
	if ram == nil {
		return nil, errors.New("vhost-user: the machine's memory is required")
	}
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("vhost-user %s: %w", path, err)
	}
	v := &vhostNet{path: path, log: log.With("vhost_user", path), ram: ram, conn: c, f: frontend.New(c), done: make(chan struct{})}
	defer func() {
		if err != nil {
			c.Close()
			err = fmt.Errorf("vhost-user %s: %w", path, err)
		}
	}()
	if v.offered, err = v.f.GetFeatures(); err != nil {
		return nil, err
	}
	if !virtio.HasFeature(v.offered, virtio.FVersion1) {
		return nil, fmt.Errorf("backend features %#x lack VIRTIO_F_VERSION_1", v.offered)
	}
	v.proto = v.offered&(1<<proto.FProtocolFeatures) != 0
	mq := false
	if v.proto {
		pf, err := v.f.GetProtocolFeatures()
		if err != nil {
			return nil, err
		}
		want := pf & (1<<proto.PFMQ | 1<<proto.PFReplyAck)
		if err := v.f.SetProtocolFeatures(want); err != nil {
			return nil, err
		}
		mq = want&(1<<proto.PFMQ) != 0
	}
	if pairs > 1 {
		if !mq {
			return nil, fmt.Errorf("%d queue pairs need the backend's MQ protocol feature", pairs)
		}
		n, err := v.f.GetQueueNum()
		if err != nil {
			return nil, err
		}
		if n < uint64(2*pairs) {
			return nil, fmt.Errorf("backend supports %d queues, %d queue pairs need %d", n, pairs, 2*pairs)
		}
	}
	if err := v.f.SetOwner(); err != nil {
		return nil, err
	}
	if v.wake, err = virtio.NewEventFD(false); err != nil {
		return nil, err
	}
	return v, nil
}

// offer is what the device offers the guest: own, with the data-path
// features limited to the backend's.
func (v *vhostNet) offer(own uint64) uint64 {
	return own&^vhostDataFeatures | own&vhostDataFeatures&v.offered
}

// watch waits for the backend to hang up, then calls onLost once. It does
// not read the socket (replies are the frontend's): POLLRDHUP only.
func (v *vhostNet) watch(onLost func(error)) {
	v.onLost = onLost
	sc, err := v.conn.SyscallConn()
	if err != nil {
		close(v.done)
		return
	}
	var fd int
	_ = sc.Control(func(f uintptr) { fd = int(f) })
	go func() {
		defer close(v.done)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}, {Fd: int32(v.wake.FD()), Events: unix.POLLIN}}
		for {
			_, err := unix.Poll(fds, -1)
			if err == unix.EINTR {
				continue
			}
			if fds[1].Revents != 0 {
				return // closing
			}
			if err != nil || fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 {
				v.lose(errors.New("backend closed the connection"))
				return
			}
		}
	}()
}

// lose marks the backend gone, once.
func (v *vhostNet) lose(err error) {
	if v.lost.Swap(true) {
		return
	}
	v.log.Error("vhost-user backend lost; the NIC needs a reset and stays down", "error", err)
	if v.onLost != nil {
		v.onLost(err)
	}
}

// hostAddr is the VMM's address of guest range [gpa, gpa+n): what the
// backend is given for rings (vhost-user.rst, "SET_VRING_ADDR": user
// addresses in the frontend's address space).
func (v *vhostNet) hostAddr(gpa, n uint64) (uint64, error) {
	b, err := v.ram.Slice(gpa, n)
	if err != nil {
		return 0, err
	}
	return sliceAddr(b), nil
}

// vhostQueue is what start needs of one virtio-pci queue.
type vhostQueue struct {
	index                int
	size                 uint16
	desc, driver, device uint64
	kick, call           int // call < 0: no interrupt
}

// start hands the negotiated features, the memory and the queues to the
// backend (vhost-user.rst "Starting and stopping rings"). features are the
// guest's.
func (v *vhostNet) start(features uint64, qs []vhostQueue) error {
	if v.lost.Load() {
		return errors.New("vhost-user backend is gone")
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	f := features & v.offered &^ vhostCtrlFeatures
	if v.proto {
		f |= 1 << proto.FProtocolFeatures
	}
	if err := v.f.SetFeatures(f); err != nil {
		return err
	}
	var rs []frontend.Region
	for _, r := range v.ram.Regions() {
		rs = append(rs, frontend.Region{FD: v.ram.FD(), MemRegion: proto.MemRegion{
			GPA: r.GPA, Size: r.Size, UVA: sliceAddr(v.ram.Host(r)), MmapOffset: r.Offset}})
	}
	if err := v.f.SetMemTable(rs...); err != nil {
		return err
	}
	for _, q := range qs {
		if err := v.startQueue(q); err != nil {
			return fmt.Errorf("queue %d: %w", q.index, err)
		}
	}
	return nil
}

// startQueue: SET_VRING_NUM, ADDR, BASE, CALL, KICK and ENABLE (§2.7 for
// the ring sizes). Called with v.mu held.
func (v *vhostNet) startQueue(q vhostQueue) error {
	n := uint64(q.size)
	desc, err := v.hostAddr(q.desc, 16*n)
	if err != nil {
		return fmt.Errorf("descriptor table: %w", err)
	}
	avail, err := v.hostAddr(q.driver, 6+2*n)
	if err != nil {
		return fmt.Errorf("driver area: %w", err)
	}
	used, err := v.hostAddr(q.device, 6+8*n)
	if err != nil {
		return fmt.Errorf("device area: %w", err)
	}
	i := uint32(q.index)
	if err := v.f.SetVringNum(i, uint32(q.size)); err != nil {
		return err
	}
	if err := v.f.SetVringAddr(proto.VringAddr{Index: i, Desc: desc, Avail: avail, Used: used}); err != nil {
		return err
	}
	if err := v.f.SetVringBase(i, 0); err != nil {
		return err
	}
	if err := v.f.SetVringCall(i, q.call); err != nil {
		return err
	}
	if err := v.f.SetVringKick(i, q.kick); err != nil {
		return err
	}
	v.started = append(v.started, i)
	if v.proto {
		return v.f.SetVringEnable(i, true)
	}
	return nil
}

// stop stops every started ring (GET_VRING_BASE), at a device reset.
func (v *vhostNet) stop() {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, i := range v.started {
		if v.lost.Load() {
			break
		}
		if _, err := v.f.GetVringBase(i); err != nil {
			v.log.Warn("stopping ring", "queue", i, "error", err)
		}
	}
	v.started = v.started[:0]
}

// close ends the session: the backend stops every ring.
func (v *vhostNet) close() error {
	v.lost.Store(true) // no report for our own hang-up
	var err error
	if v.wake != nil {
		_ = v.wake.Signal()
		<-v.done
		err = v.wake.Close()
	}
	return errors.Join(err, v.conn.Close())
}

// VhostNetDevice is a virtio-net PCI function whose data queues a
// vhost-user backend runs (see above); the VMM keeps the configuration
// space and the control queue.
type VhostNetDevice struct {
	netFunc
	vu *vhostNet
}

var (
	_ virtioBackend = (*VhostNetDevice)(nil)
	_ externalKicks = (*VhostNetDevice)(nil)
)

// newVhostNetDevice connects to the backend at socket and builds the
// device over guest memory mem (ram: the same memory as the machine holds
// it, whose regions the backend maps).
func newVhostNetDevice(socket string, cfg NetConfig, mem *virtio.Memory, ram *Memory, plat platform, bar uint32) (_ *VhostNetDevice, err error) {
	if socket == "" {
		return nil, errors.New("virtio-net: a vhost-user NIC needs its backend's socket")
	}
	if cfg.Sink != nil {
		return nil, errors.New("virtio-net: a vhost-user NIC's frames are its backend's: NetConfig.Sink must be nil")
	}
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	n := &VhostNetDevice{}
	n.external = true
	if n.vu, err = dialVhostNet(socket, cfg.QueuePairs, ram, cfg.Log); err != nil {
		return nil, fmt.Errorf("virtio-net: %w", err)
	}
	defer func() {
		if err != nil {
			n.vu.close()
		}
	}()
	own := netOffered
	if cfg.QueuePairs > 1 {
		own |= vnet.Features(vnet.FMQ)
	}
	if err := n.init(n, cfg, mem, plat, bar, n.vu.offer(own)); err != nil {
		return nil, err
	}
	n.vu.watch(n.backendLost)
	return n, nil
}

// externalKick: the backend waits on the data queues' ioeventfds; the
// control queue stays with the VMM.
func (n *VhostNetDevice) externalKick(i int) bool { return i != n.dev.CtrlQueue() }

// reset stops the backend's rings (GET_VRING_BASE), then the control queue.
func (n *VhostNetDevice) reset() {
	n.vu.stop()
	n.dev.Reset()
}

// activate hands the enabled data queues to the backend at DRIVER_OK.
// Called with the transport's lock held.
func (n *VhostNetDevice) activate() {
	var qs []vhostQueue
	for i, q := range n.pci.queues {
		if i == n.dev.CtrlQueue() || !q.enabled {
			continue
		}
		call := n.pci.msix.callFD(q.vector.Load())
		qs = append(qs, vhostQueue{index: i, size: q.size, desc: q.desc, driver: q.driver, device: q.device,
			kick: q.kick.FD(), call: call})
	}
	if err := n.vu.start(n.dev.Features(), qs); err != nil {
		n.pci.failed(fmt.Errorf("starting the vhost-user backend: %w", err))
		return
	}
	// Buffers the driver queued before DRIVER_OK: let the backend look.
	for _, q := range qs {
		_ = n.pci.queues[q.index].kick.Signal()
	}
}

// close stops the device and hangs up on the backend (once).
func (n *VhostNetDevice) close() error { return n.stop(n.vu.close) }

// backendLost: the link goes down and the device needs a reset.
func (n *VhostNetDevice) backendLost(err error) {
	n.status.And(^uint32(netStatusLinkUp))
	n.pci.failed(fmt.Errorf("vhost-user backend: %w", err))
}
