package vnet

import "hvnet/frame"

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
// buffers meanwhile), so a Sink may read it as often as it likes. Deliver
// is called with the TX queue's lock held: it must not call back into the
// same queue pair's TX path (Receive on any queue is fine).
type Sink interface {
	Deliver(frames []Frame)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(frames []Frame)

// Deliver calls f.
func (f SinkFunc) Deliver(frames []Frame) { f(frames) }
