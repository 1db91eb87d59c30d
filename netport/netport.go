// Package netport joins a virtio-net device (virtio/net) to a port of the
// built-in switch (switch/): frames the guest transmits enter the switch,
// frames the switch sends go to the guest's receive queues. The VMM's
// device and the vhost-user backend both attach this way.
//
//	p := netport.New(nil)                    // before the device exists
//	dev, _ := vnet.New(vnet.Config{Sink: p, ...})
//	p.SetDevice(dev)
//	h, _ := sw.AddPort(cfg, p)               // p is the switch's vswitch.Port
//	p.SetHandle(h)                           // and the device's vnet.Sink
//
// Frames cross without copies or conversions: both sides use package
// frame's Frame. A guest's frames enter the switch in two parts (the
// headers copied, the payload still in the guest's buffer: frame.Frame's
// Tail), and reach another guest's buffer with one copy of the payload.
package netport

import (
	"sync/atomic"

	"github.com/hvnet/hvnet/frame"
	vswitch "github.com/hvnet/hvnet/switch"
	vnet "github.com/hvnet/hvnet/virtio/net"
)

// Port is both the device's vnet.Sink and the switch's vswitch.Port.
type Port struct {
	dev    atomic.Pointer[vnet.Device]
	handle atomic.Pointer[vswitch.PortHandle]
	mac    vswitch.MAC // the guest's MAC (SetMAC); zero: none
}

var (
	_ vnet.TailSink         = (*Port)(nil)
	_ vnet.QueueSink        = (*Port)(nil)
	_ vswitch.QueuePort     = (*Port)(nil)
	_ vswitch.Port          = (*Port)(nil)
	_ vswitch.AddressedPort = (*Port)(nil)
)

// SetMAC records the MAC the guest was given (a lab guest's NIC, a
// vhost-user port's mac=), before the port is attached: the switch's port
// security accepts only that source MAC from it (vswitch.AddressedPort).
func (p *Port) SetMAC(m [6]byte) { p.mac = m }

// MAC implements vswitch.AddressedPort.
func (p *Port) MAC() (vswitch.MAC, bool) { return p.mac, p.mac != vswitch.MAC{} }

// New returns a Port for dev (which may be set later with SetDevice).
func New(dev *vnet.Device) *Port {
	p := &Port{}
	if dev != nil {
		p.dev.Store(dev)
	}
	return p
}

// SetDevice sets (or, with nil, detaches) the virtio-net device.
func (p *Port) SetDevice(dev *vnet.Device) { p.dev.Store(dev) }

// SetHandle sets (or, with nil, detaches) the switch port frames enter by.
func (p *Port) SetHandle(h *vswitch.PortHandle) { p.handle.Store(h) }

// Deliver implements vnet.Sink: the guest's frames enter the switch. The
// frames are the device's and valid during the call only, which is the
// switch's Input contract too.
func (p *Port) Deliver(frames []vnet.Frame) {
	if h := p.handle.Load(); h != nil && len(frames) > 0 {
		h.Input(frames)
	}
}

// DeliverQueue implements vnet.QueueSink: frames from the device's queue
// pair enter the switch by the port's input queue of that number, so a
// device's queues are switched in parallel.
func (p *Port) DeliverQueue(pair int, frames []vnet.Frame) {
	if h := p.handle.Load(); h != nil && len(frames) > 0 {
		h.InputQueue(pair, frames)
	}
}

// SendQueue implements vswitch.QueuePort: frames from a sender's input
// queue q go to receive queue q modulo the active pairs
// (vnet.Device.ReceiveQueue).
func (p *Port) SendQueue(q int, frames []vswitch.Frame) int {
	dev := p.dev.Load()
	if dev == nil || len(frames) == 0 {
		return 0
	}
	return dev.ReceiveQueue(q, frames)
}

// HeadNeed implements vnet.TailSink: the switch decides from a frame's
// head (vswitch.HeaderNeed), and takes the rest as a tail.
func (p *Port) HeadNeed(head []byte, off frame.Offload) int { return vswitch.HeaderNeed(head, &off) }

// Send implements vswitch.Port: frames go into the guest's receive buffers
// (copied there). It returns how many were written, n, with those in
// frames[:n] (vnet.Device.Receive); the switch counts the rest.
func (p *Port) Send(frames []vswitch.Frame) int {
	dev := p.dev.Load()
	if dev == nil || len(frames) == 0 {
		return 0
	}
	return dev.Receive(frames)
}

// Caps implements vswitch.Port from the features the guest accepted: a
// guest that negotiated GUEST_CSUM takes partial checksums, GUEST_TSO4/6
// unsegmented TCP (virtio 1.2 §5.1.6.4). Every device takes frames in two
// parts (vnet.Device.Receive copies the tail into the guest's buffer).
func (p *Port) Caps() vswitch.Caps {
	dev := p.dev.Load()
	if dev == nil {
		return 0
	}
	return CapsFromFeatures(dev.Features()) | vswitch.CapTail
}

// CapsFromFeatures maps negotiated virtio-net features to switch caps.
func CapsFromFeatures(f uint64) vswitch.Caps {
	var c vswitch.Caps
	has := func(bit uint) bool { return f&(1<<bit) != 0 }
	if has(vnet.FGuestCsum) {
		c |= vswitch.CapCsum
		if has(vnet.FGuestTSO4) {
			c |= vswitch.CapGSOTCPv4
		}
		if has(vnet.FGuestTSO6) {
			c |= vswitch.CapGSOTCPv6
		}
		if has(vnet.FGuestECN) {
			c |= vswitch.CapGSOECN
		}
	}
	return c
}
