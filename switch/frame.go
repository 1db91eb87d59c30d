package vswitch

import (
	"fmt"

	"github.com/hvnet/hvnet/frame"
)

// Frame is one Ethernet frame and its offload metadata (the one frame type
// of every port: package frame). Data belongs to the caller of the call it
// is passed to.
type Frame = frame.Frame

// Caps are the offloads a Port accepts on frames the switch sends it.
type Caps uint32

const (
	// CapCsum: the port accepts frames with frame.NeedsCsum (partial checksum).
	CapCsum Caps = 1 << iota
	// CapGSOTCPv4: the port accepts unsegmented TCP over IPv4 (frame.GSOTCPv4).
	CapGSOTCPv4
	// CapGSOTCPv6: the port accepts unsegmented TCP over IPv6 (frame.GSOTCPv6).
	CapGSOTCPv6
	// CapGSOECN: the port accepts GSO frames with the ECN bit.
	CapGSOECN
	// CapTail: the port takes frames in two parts (frame.Frame.Tail, the
	// payload still in the sending tenant's memory) and reads the tail
	// only with frame.ReadTail, during Send. Other ports, shaped ones and
	// mirrors get whole frames: the switch copies the tail for them.
	CapTail
)

// Port is the destination side of a switch port: what the switch delivers to.
type Port interface {
	// Send delivers frames leaving the switch through this port. The frames
	// and their Data are owned by the caller and are reused as soon as Send
	// returns: Send copies what it keeps. It returns n, how many frames it
	// delivered, and leaves exactly those in frames[:n], in their order:
	// it may reorder the slice (not the bytes) to do so, moving frames it
	// skipped (too long, an offload the receiver lacks) behind them. The
	// switch counts and mirrors frames[:n] as sent and frames[n:] as its
	// "no_buffer" drops; a port's own counters (a device's rx_drop_*, an
	// uplink's tx_errors) may break those down by reason. Send may be called from several goroutines at once (one per
	// ingress port), except for shaped ports, whose sends are serialised.
	// Send must not call PortHandle.Input synchronously (it runs under the
	// ingress queue's input lock): hand frames to another goroutine instead.
	Send(frames []Frame) int
	// Caps says which offloads the port accepts. The switch segments GSO
	// frames and completes partial checksums in software for ports that
	// lack them. It is called on the forwarding path and must be cheap.
	Caps() Caps
}

// QueuePort is a Port with several receive queues that takes a hint of
// which to use. The switch calls SendQueue instead of Send for frames that
// came in by PortHandle.InputQueue(q, ...), with that q; the contract is
// Send's. A port with as many receive queues as the sender has input
// queues uses queue q (modulo its count), as Linux's XPS maps a transmit
// CPU to a queue: a sender's queue has one receive queue per destination,
// so a flow's order is kept and the workers of different input queues
// never write one receive queue.
type QueuePort interface {
	Port
	SendQueue(q int, frames []Frame) int
}

// MAC is an IEEE 802 MAC address.
type MAC [6]byte

// Broadcast is the all-ones MAC address.
var Broadcast = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func (m MAC) String() string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}

func macKey(b []byte) uint64 {
	return uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
}
