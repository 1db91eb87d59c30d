package soak

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/vhostuser/frontend"
	"github.com/hvnet/hvnet/vhostuser/frontend/frontendtest"
	"github.com/hvnet/hvnet/virtio"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

const (
	memBase = 0x10_0000
	memSize = 1 << 20
	qSize   = 64
	hdrLen  = 12 // virtio_net_hdr_v1
	bufLen  = 2048
	frameSz = 60
)

// guest is one frontend session with one queue pair: fixed receive and
// transmit buffers in its memfd memory, reused round-robin.
type guest struct {
	fg     *frontendtest.Guest // the shared frontend these fields come from
	f      *frontend.Frontend
	mem    *frontend.Memory
	rx, tx *virtiotest.Driver
	kick   [2]*virtio.EventFD
	call   [2]*virtio.EventFD
	rxBuf  [qSize]uint64
	txBuf  [qSize]uint64

	rxPopped, txPushed uint16
	txUsedSeen         uint16
}

// usedFaults counts used indices that moved backwards or past what the
// driver made available: a backend bug (virtio 1.2 §2.7.8), reported by
// the soak; such a step is not counted as frames sent.
var usedFaults atomic.Uint64

// usedFault records the first few faulty used-index steps for the report.
var usedFaultLog struct {
	sync.Mutex
	lines []string
}

// counts are a traffic source's and sink's totals across sessions.
type counts struct {
	sent, received, lostInRing atomic.Uint64
	txInFlight                 atomic.Uint64 // chains queued, not yet used, at kills
}

func dial(sock string) (*guest, error) {
	f, err := frontend.Dial(sock)
	if err != nil {
		return nil, err
	}
	return newGuest(f)
}

// newGuest sets up a session on a connected frontend (closed on error).
func newGuest(f *frontend.Frontend) (*guest, error) {
	fg, err := frontendtest.New(f, frontendtest.Config{MemSize: memSize, MemBase: memBase, QueueSize: qSize, NonblockingCall: true})
	if err != nil {
		return nil, err
	}
	g := &guest{fg: fg, f: fg.F, mem: fg.Mem, rx: fg.RX, tx: fg.TX, kick: fg.Kick, call: fg.Call}
	for i := range qSize {
		g.rxBuf[i] = g.rx.Alloc(bufLen)
		g.txBuf[i] = g.tx.Alloc(hdrLen + frameSz)
	}
	if err := g.negotiate(); err != nil {
		g.close()
		return nil, err
	}
	return g, nil
}

func (g *guest) close() { g.fg.Close() }

// negotiate runs QEMU's start-up sequence, then posts every receive
// buffer once.
func (g *guest) negotiate() error {
	if err := g.fg.Negotiate(0); err != nil {
		return err
	}
	for i := range qSize {
		g.rx.Push(g.rx.AddChain(virtiotest.Buf{Addr: g.rxBuf[i], Len: bufLen, Write: true}))
	}
	return g.kick[0].Signal()
}

// poll receives what arrived (counting frames whose source is want) and
// re-posts the buffers, and counts transmitted chains the backend used.
func (g *guest) poll(c *counts) {
	if u := g.rx.UsedIdx(); u-g.rxPopped > qSize {
		g.usedFault("receive", g.rxPopped, u, g.rxPopped+qSize)
		return
	}
	n := 0
	for {
		u, ok := g.rx.PopUsed()
		if !ok {
			break
		}
		g.rxPopped++
		c.received.Add(1)
		g.rx.Push(g.rx.AddChain(virtiotest.Buf{Addr: g.rxBuf[u.ID], Len: bufLen, Write: true}))
		n++
	}
	if n > 0 {
		g.kick[0].Signal()
	}
	if u := g.tx.UsedIdx(); u != g.txUsedSeen {
		if d := u - g.txUsedSeen; d > g.txPushed-g.txUsedSeen {
			g.usedFault("transmit", g.txUsedSeen, u, g.txPushed)
			return
		}
		c.sent.Add(uint64(u - g.txUsedSeen))
		g.txUsedSeen = u
	}
}

func (g *guest) usedFault(ring string, seen, now, pushed uint16) {
	usedFaults.Add(1)
	usedFaultLog.Lock()
	defer usedFaultLog.Unlock()
	if len(usedFaultLog.lines) < 10 {
		d := g.tx
		if ring == "receive" {
			d = g.rx
		}
		// The whole flags+index word and where the ring is mapped here
		// tell a stray write (another ring's index) from a backend bug.
		var at any = "(no memfd)"
		if g.mem != nil {
			at = &g.mem.Data[0]
		}
		usedFaultLog.lines = append(usedFaultLog.lines, fmt.Sprintf("%s used index moved from %d to %d with %d made available (used ring word %#08x, memory at %v)",
			ring, seen, now, pushed, binary.LittleEndian.Uint32(d.Bytes(d.Used, 4)), at))
	}
}

// send queues up to n frames to dst (as many as the ring has room for).
func (g *guest) send(dst, src [6]byte, n int, seq uint32) int {
	room := qSize - int(g.txPushed-g.tx.UsedIdx())
	n = min(n, room)
	for range n {
		i := g.txPushed % qSize
		b := g.tx.Bytes(g.txBuf[i], hdrLen+frameSz)
		clear(b[:hdrLen])
		fr := b[hdrLen:]
		copy(fr, dst[:])
		copy(fr[6:], src[:])
		fr[12], fr[13] = 0x88, 0xb5
		fr[14], fr[15], fr[16], fr[17] = byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq)
		g.tx.Push(g.tx.AddChain(virtiotest.Buf{Addr: g.txBuf[i], Len: hdrLen + frameSz}))
		g.txPushed++
	}
	if n > 0 {
		g.kick[1].Signal()
	}
	return n
}

// kill ends the session the way a crashed frontend does, and returns the
// frames the backend had delivered into its receive ring that it never
// read: lost with the frontend, and counted as such.
func (g *guest) kill(c *counts) {
	g.poll(c) // what is already there was received: read it first...
	if u := g.rx.UsedIdx(); u-g.rxPopped <= qSize {
		c.lostInRing.Add(uint64(u - g.rxPopped)) // ...and whatever raced in after is lost
	} else {
		g.usedFault("receive", g.rxPopped, u, g.rxPopped+qSize)
	}
	if u := g.tx.UsedIdx(); g.txPushed-u <= qSize {
		c.txInFlight.Add(uint64(g.txPushed - u))
	} else {
		g.usedFault("transmit", g.txUsedSeen, u, g.txPushed)
	}
	g.close()
	// The backend may still be writing into the (now unmapped here, still
	// mapped there) ring until it notices the hang-up; those frames show
	// as delivered by the switch to a frontend that is gone: the switch
	// counted them TxPackets, so the accounting treats the difference
	// between the switch's and the frontend's count as lost in rings.
}

// waitCall waits up to ms for either call eventfd.
func (g *guest) waitCall(ms int) {
	fds := []unix.PollFd{{Fd: int32(g.call[0].FD()), Events: unix.POLLIN}, {Fd: int32(g.call[1].FD()), Events: unix.POLLIN}}
	if _, err := unix.Poll(fds, ms); err != nil && !errors.Is(err, unix.EINTR) {
		return
	}
	for i := range 2 {
		if fds[i].Revents != 0 {
			g.call[i].Read()
		}
	}
}
