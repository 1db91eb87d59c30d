package vswitch

import "sync"

// Direction says which way a mirrored frame was going.
type Direction uint8

const (
	Ingress Direction = iota // received by the switch from the port
	Egress                   // sent by the switch out of the port
)

func (d Direction) String() string {
	if d == Ingress {
		return "ingress"
	}
	return "egress"
}

// MirrorSink receives copies of the traffic of ports configured with
// MirrorIngress / MirrorEgress (port mirroring, as a SPAN session).
type MirrorSink interface {
	// Mirror is called with frames seen on port going dir at Clock time ts:
	// ingress frames as received (before any check), egress frames as sent.
	// The frames are owned by the caller and reused after Mirror returns;
	// the sink copies what it keeps. It is called from many goroutines at
	// once and on the forwarding path: it should be quick.
	Mirror(port string, dir Direction, ts int64, frames []Frame)
}

// PortSink mirrors into a Port (for instance an analyser VM's port that is
// not attached to the switch). Frames it does not accept are lost.
type PortSink struct{ Port Port }

// mirrorBatches are PortSink's copies of the frames slice: Port.Send may
// reorder the slice it is given, and an ingress mirror's is the one the
// switch forwards next.
var mirrorBatches = sync.Pool{New: func() any { return new([]Frame) }}

// Mirror implements MirrorSink.
func (s PortSink) Mirror(_ string, _ Direction, _ int64, frames []Frame) {
	b := mirrorBatches.Get().(*[]Frame)
	*b = append((*b)[:0], frames...)
	s.Port.Send(*b)
	clear(*b) // no references to the caller's bytes
	mirrorBatches.Put(b)
}

type mirrorRef struct{ s MirrorSink }

var _ MirrorSink = PortSink{}
