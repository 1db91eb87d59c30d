package vswitch

import (
	"sync"

	"github.com/hvnet/hvnet/frame"
)

// Frames in two parts (frame.Frame.Tail): a virtio-net port's frames come
// with their first frame.HeadLen bytes in host memory and the payload
// behind them still in the sending tenant's buffer. The switch decides only
// from the head, which holds every byte it parses (HeaderNeed: the sender
// copies the whole frame otherwise). It reads a tail only to copy it
// (frame.ReadTail): into a destination that takes tails itself (CapTail),
// into a rewritten frame (a tag pushed or popped, a checksum completed),
// into a frame it segments, or into a copy for a port without CapTail, a
// shaped port or a mirror. A tail that faults is the sender's loss: that
// copy is dropped and counted (DropSourceFault on the ingress port).

// maxTCPHeader is the longest TCP header (RFC 9293 §3.1: data offset 15).
const maxTCPHeader = 60

// maxICMPQuote is how much of an ICMP or ICMPv6 message connection
// tracking reads: its header, the quoted packet's IP header (IPv4 with
// options, or IPv6 with a few extension headers) and 8 bytes of its
// transport header.
const maxICMPQuote = 8 + 128 + 8

// HeaderNeed is how many leading bytes of a frame the switch reads to
// decide about it: its tags, its IP header and IPv6 extension headers,
// the transport header behind them (ACLs, GSO), and the headers its
// offload covers. head is the frame's first bytes; the answer is more than
// len(head) when head does not hold them all, and then the switch must be
// given the whole frame in host memory.
func HeaderNeed(head []byte, off *frame.Offload) int {
	more := len(head) + 1
	l3, et := l3Offset(head)
	if l3 < 0 {
		return more
	}
	need := l3
	ip := head[l3:]
	switch et {
	case etherTypeIPv4:
		if len(ip) < 20 {
			return more
		}
		need = l3 + int(ip[0]&0xf)*4 + maxTCPHeader
		if ip[9] == 1 { // ICMP: an error quotes an IP header and 8 bytes (RFC 792), for connection tracking
			need = l3 + int(ip[0]&0xf)*4 + maxICMPQuote
		}
	case etherTypeIPv6:
		// The walk of parseFlow, which reads no further.
		if len(ip) < 40 {
			return more
		}
		nh, o := ip[6], 40
		for range maxExtHdrs {
			switch nh {
			case ip6HopByHop, ip6Routing, ip6DestOpts:
				if len(ip) < o+8 {
					return more
				}
				nh, o = ip[o], o+(int(ip[o+1])+1)*8
				continue
			case ip6Fragment:
				if len(ip) < o+8 {
					return more
				}
				nh, o = ip[o], o+8
				continue
			}
			break
		}
		need = l3 + o + maxTCPHeader
		if nh == 58 { // ICMPv6: an error quotes as much of the packet as fits (RFC 4443 §2.4)
			need = l3 + o + maxICMPQuote
		}
	}
	return max(need, int(off.HdrLen))
}

// wholeBuf is a buffer that two-part frames are made whole in for a
// mirror, which gets whole frames only.
type wholeBuf struct {
	frames []Frame
	buf    []byte
}

var wholeBufs = sync.Pool{New: func() any {
	return &wholeBuf{frames: make([]Frame, 0, maxOuts), buf: make([]byte, arenaSize)}
}}

// mirror hands frames to s, each whole: frames with a tail are copied
// with it (a tail that faults is left out: the frame is the sender's loss
// and counted where it is forwarded).
func mirror(s MirrorSink, port string, dir Direction, ts int64, frames []Frame) {
	tails := false
	for i := range frames {
		if frames[i].Tail != nil {
			tails = true
			break
		}
	}
	if !tails {
		s.Mirror(port, dir, ts, frames)
		return
	}
	w := wholeBufs.Get().(*wholeBuf)
	used := 0
	for i := range frames {
		f := &frames[i]
		n := 0
		if f.Tail != nil {
			n = f.Len()
		}
		if used+n > len(w.buf) || len(w.frames) == cap(w.frames) {
			s.Mirror(port, dir, ts, w.frames)
			clear(w.frames)
			w.frames, used = w.frames[:0], 0
		}
		if f.Tail == nil {
			w.frames = append(w.frames, *f)
			continue
		}
		b := w.buf[used : used+n : used+n]
		copy(b, f.Data)
		if !frame.ReadTail(b[len(f.Data):], f.Tail) {
			continue
		}
		used += n
		w.frames = append(w.frames, Frame{Data: b, Off: f.Off})
	}
	if len(w.frames) > 0 {
		s.Mirror(port, dir, ts, w.frames)
	}
	clear(w.frames)
	w.frames = w.frames[:0]
	wholeBufs.Put(w)
}
