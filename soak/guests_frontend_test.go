package soak

import (
	"context"
	"encoding/binary"
	"sync/atomic"
	"time"

	"github.com/hvnet/hvnet/virtio/virtiotest"
)

// gsFrontend is TestSoakGuests' vhost-user station: the package's
// in-process frontend (guest, guest_test.go) on a server-mode vhost.Port,
// with an IPv4 address the lab guests know by a permanent neighbour entry.
// It answers ICMP echo requests to its address (the guests ping it), and
// streams 60-byte 0x88b5 frames to one guest (whose kernel counts and
// drops them), paced. Its sessions end by kills (the frontend crashes with
// its rings as they are) and at the end (drained).
type gsFrontend struct {
	sock     string
	node     gsNode
	dst      [6]byte // the streamed frames' destination
	c        counts
	replies  atomic.Uint64 // echo replies queued
	kills    int
	sessions int

	rep  [qSize][frameSz]byte // replies waiting for room in the ring
	repN [qSize]int
	nrep int
}

// Stream pacing: gsBurst frames every gsPace.
const (
	gsBurst = 8
	gsPace  = 10 * time.Millisecond
)

// run drives sessions until ctx ends; kill ends the current one early.
func (f *gsFrontend) run(ctx context.Context, kill <-chan struct{}) {
	var seq uint32
	for ctx.Err() == nil {
		g, err := dial(f.sock)
		if err != nil {
			time.Sleep(10 * time.Millisecond) // the port is between sessions
			continue
		}
		f.sessions++
		f.nrep = 0
		last := time.Now()
	session:
		for {
			select {
			case <-ctx.Done():
				break session
			case <-kill:
				f.kills++
				f.poll(g)
				g.kill(&f.c)
				g = nil
				break session
			default:
			}
			if time.Since(last) >= gsPace {
				seq += uint32(g.send(f.dst, f.node.mac, gsBurst, seq))
				last = time.Now()
			}
			g.waitCall(1)
			f.poll(g)
			f.flushReplies(g)
		}
		if g != nil {
			// Drain as TestSoak's endpoints do: stop sending, read until
			// the backend has used every chain and nothing more arrives.
			for quiet, i := 0, 0; quiet < 20 && i < 400; i++ {
				before := f.c.received.Load() + f.c.sent.Load()
				g.waitCall(5)
				f.poll(g)
				if f.c.received.Load()+f.c.sent.Load() == before && g.tx.UsedIdx() == g.txPushed {
					quiet++
				} else {
					quiet = 0
				}
			}
			g.kill(&f.c)
		}
	}
}

// poll is guest.poll that also looks at each frame: echo requests to the
// frontend's address are answered (queued in rep).
func (f *gsFrontend) poll(g *guest) {
	n := 0
	for {
		u, ok := g.rx.PopUsed()
		if !ok {
			break
		}
		g.rxPopped++
		f.c.received.Add(1)
		if u.Len > hdrLen && u.Len <= bufLen {
			f.answer(g.rx.Bytes(g.rxBuf[u.ID]+hdrLen, uint64(u.Len-hdrLen)))
		}
		g.rx.Push(g.rx.AddChain(virtiotest.Buf{Addr: g.rxBuf[u.ID], Len: bufLen, Write: true}))
		n++
	}
	if n > 0 {
		g.kick[0].Signal()
	}
	if u := g.tx.UsedIdx(); u != g.txUsedSeen {
		f.c.sent.Add(uint64(u - g.txUsedSeen))
		g.txUsedSeen = u
	}
}

// answer queues the echo reply to fr if fr is an ICMP echo request (RFC
// 792) to the frontend's address, without IP options, small enough for a
// transmit buffer (the guests ping it with -s 16).
func (f *gsFrontend) answer(fr []byte) {
	const ip, icmp = 14, 34
	if len(fr) < icmp+8 || len(fr) > frameSz || f.nrep == len(f.rep) ||
		binary.BigEndian.Uint16(fr[12:]) != 0x0800 || fr[ip] != 0x45 || fr[ip+9] != 1 ||
		[4]byte(fr[ip+16:ip+20]) != f.node.ip.As4() || fr[icmp] != 8 {
		return
	}
	end := ip + int(binary.BigEndian.Uint16(fr[ip+2:]))
	if end > len(fr) || end < icmp+8 {
		return
	}
	r := f.rep[f.nrep][:end]
	copy(r, fr[:end])
	copy(r[0:6], fr[6:12])
	copy(r[6:12], f.node.mac[:])
	copy(r[ip+12:ip+16], fr[ip+16:ip+20]) // the IP header checksum is unchanged by the swap
	copy(r[ip+16:ip+20], fr[ip+12:ip+16])
	r[icmp] = 0 // echo reply
	r[icmp+2], r[icmp+3] = 0, 0
	binary.BigEndian.PutUint16(r[icmp+2:], gsChecksum(r[icmp:end]))
	f.repN[f.nrep] = end
	f.nrep++
}

// flushReplies transmits the queued replies that fit in the ring; the rest
// are dropped (the pinging guest sees a lost reply).
func (f *gsFrontend) flushReplies(g *guest) {
	if f.nrep == 0 {
		return
	}
	sent := 0
	for k := range f.nrep {
		if qSize-int(g.txPushed-g.tx.UsedIdx()) <= 0 {
			break
		}
		i := g.txPushed % qSize
		n := f.repN[k]
		b := g.tx.Bytes(g.txBuf[i], uint64(hdrLen+n))
		clear(b[:hdrLen])
		copy(b[hdrLen:], f.rep[k][:n])
		g.tx.Push(g.tx.AddChain(virtiotest.Buf{Addr: g.txBuf[i], Len: uint32(hdrLen + n)}))
		g.txPushed++
		sent++
	}
	f.replies.Add(uint64(sent))
	f.nrep = 0
	if sent > 0 {
		g.kick[1].Signal()
	}
}

// gsChecksum is the Internet checksum (RFC 1071) of b.
func gsChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
