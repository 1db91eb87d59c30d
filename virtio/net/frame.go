package vnet

import "github.com/hvnet/hvnet/frame"

// Frame is an Ethernet frame and its offload metadata (the one frame type
// of every port: package frame). Data is owned by the caller of the method
// it is passed to.
type Frame = frame.Frame

// Sink receives frames transmitted by the guest, in batches; it must copy
// what it keeps.
//
// The frames slice and every Data in it belong to the Device and are valid
// only until Deliver returns. Data is the device's own copy of the guest's
// bytes (single fetch: the guest cannot change it, whatever it does to its
// buffers meanwhile), so a Sink may read it as often as it likes; a Sink
// that is a TailSink may also get a Tail, which is the guest's. Deliver
// is called with the TX queue's lock held: it must not call back into the
// same queue pair's TX path (Receive on any queue is fine).
type Sink interface {
	Deliver(frames []Frame)
}

// QueueSink is a Sink told which queue pair's transmit queue a batch came
// from: a device with more than one active pair calls DeliverQueue, and
// calls for different pairs run concurrently (each under its own queue's
// lock), so a sink can serve a device's queues in parallel
// (vswitch.PortHandle.InputQueue).
type QueueSink interface {
	Sink
	DeliverQueue(pair int, frames []Frame)
}

// TailSink is a Sink that takes frames in two parts (frame.Frame.Tail):
// a frame longer than frame.HeadLen may then reach Deliver with only its
// first HeadLen bytes copied (Data) and the rest still in the guest's
// buffer (Tail), which the guest can rewrite or, behind vhost-user, unmap
// at any moment; the sink reads it only with frame.ReadTail. HeadNeed
// says how many leading bytes of a frame the sink reads to decide about
// it, given its first bytes (head, HeadLen of them) and its offload: when
// that is more than the head, the device copies the whole frame. A Sink
// that does not implement TailSink gets whole frames.
type TailSink interface {
	Sink
	HeadNeed(head []byte, off frame.Offload) int
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(frames []Frame)

// Deliver calls f.
func (f SinkFunc) Deliver(frames []Frame) { f(frames) }
