// Package frontendtest is a vhost-user frontend with one queue pair for
// tests and soak runs: memfd memory shared at SET_MEM_TABLE, receive and
// transmit rings driven by virtiotest drivers in it, a kick and a call
// eventfd per ring, and the start-up sequence QEMU runs. Tests build their
// traffic on top of it.
package frontendtest

import (
	"errors"

	"github.com/hvnet/hvnet/vhostuser/frontend"
	"github.com/hvnet/hvnet/vhostuser/proto"
	"github.com/hvnet/hvnet/virtio"
	"github.com/hvnet/hvnet/virtio/virtiotest"
)

// Config sizes a Guest. Zero values take the defaults.
type Config struct {
	MemSize   int    // guest memory, split between the two rings' areas (default 1 MiB)
	MemBase   uint64 // its guest-physical address (default 1 MiB)
	QueueSize uint16 // ring size (default 64)
	// NonblockingCall makes the call eventfds non-blocking (a reader that
	// polls them); by default they block, as a guest's would.
	NonblockingCall bool
}

// Guest is one frontend session with one queue pair (receive queue 0,
// transmit queue 1).
type Guest struct {
	F      *frontend.Frontend
	Mem    *frontend.Memory
	RX, TX *virtiotest.Driver
	Kick   [2]*virtio.EventFD
	Call   [2]*virtio.EventFD
	Size   uint16 // ring size
}

// New builds a Guest on the connected frontend f: memory, rings and
// eventfds. On error everything, f included, is closed.
func New(f *frontend.Frontend, c Config) (*Guest, error) {
	if c.MemSize == 0 {
		c.MemSize = 1 << 20
	}
	if c.MemBase == 0 {
		c.MemBase = 1 << 20
	}
	if c.QueueSize == 0 {
		c.QueueSize = 64
	}
	g := &Guest{F: f, Size: c.QueueSize}
	var err error
	if g.Mem, err = frontend.NewMemory(c.MemSize, c.MemBase); err != nil {
		g.Close()
		return nil, err
	}
	vm, err := g.Mem.Virtio()
	if err != nil {
		g.Close()
		return nil, err
	}
	half := c.MemSize / 2
	g.RX = virtiotest.NewIn(vm, g.Mem.Data[:half], c.MemBase, c.QueueSize)
	g.TX = virtiotest.NewIn(vm, g.Mem.Data[half:], c.MemBase+uint64(half), c.QueueSize)
	for i := range 2 {
		if g.Kick[i], err = virtio.NewEventFD(true); err != nil {
			g.Close()
			return nil, err
		}
		if g.Call[i], err = virtio.NewEventFD(c.NonblockingCall); err != nil {
			g.Close()
			return nil, err
		}
	}
	return g, nil
}

// Dial connects to a backend's socket and builds a Guest on it.
func Dial(sock string, c Config) (*Guest, error) {
	f, err := frontend.Dial(sock)
	if err != nil {
		return nil, err
	}
	return New(f, c)
}

// Close ends the session and releases the memory and eventfds; it may be
// called more than once.
func (g *Guest) Close() {
	if g.F != nil {
		g.F.Close()
		g.F = nil
	}
	for i := range 2 {
		for _, e := range []*virtio.EventFD{g.Kick[i], g.Call[i]} {
			if e != nil && e.FD() >= 0 {
				e.Close()
			}
		}
	}
	if g.Mem != nil {
		g.Mem.Close()
		g.Mem = nil
	}
}

// Negotiate runs the start-up sequence QEMU runs: features (VERSION_1,
// PROTOCOL_FEATURES and extra), the protocol features the backend offers
// of REPLY_ACK, MQ and LOG_SHMFD, owner, memory table, then for each ring
// its size, base, addresses, call and kick eventfds, and enable.
func (g *Guest) Negotiate(extra uint64) error {
	f := g.F
	feats, err := f.GetFeatures()
	if err != nil {
		return err
	}
	if feats&(1<<proto.FProtocolFeatures) == 0 {
		return errors.New("backend does not offer PROTOCOL_FEATURES")
	}
	pf, err := f.GetProtocolFeatures()
	if err != nil {
		return err
	}
	if err := f.SetProtocolFeatures(pf & (1<<proto.PFReplyAck | 1<<proto.PFMQ | 1<<proto.PFLogSHMFD)); err != nil {
		return err
	}
	steps := []func() error{
		f.SetOwner,
		func() error {
			return f.SetFeatures(virtio.Feature(virtio.FVersion1) | 1<<proto.FProtocolFeatures | extra)
		},
		func() error { return f.SetMemTable(g.Mem.Region()) },
	}
	for i, d := range []*virtiotest.Driver{g.RX, g.TX} {
		q := uint32(i)
		steps = append(steps,
			func() error { return f.SetVringNum(q, uint32(g.Size)) },
			func() error { return f.SetVringBase(q, 0) },
			func() error {
				return f.SetVringAddr(proto.VringAddr{Index: q, Desc: g.Mem.UVA(d.Desc), Avail: g.Mem.UVA(d.Avail), Used: g.Mem.UVA(d.Used)})
			},
			func() error { return f.SetVringCall(q, g.Call[i].FD()) },
			func() error { return f.SetVringKick(q, g.Kick[i].FD()) },
			func() error { return f.SetVringEnable(q, true) },
		)
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	return nil
}
