// Package frontend is the driver side of the vhost-user protocol
// (QEMU docs/interop/vhost-user.rst): it connects to a backend, negotiates
// features, shares memfd-backed memory (SET_MEM_TABLE / ADD_MEM_REG) and
// hands over rings with their kick and call eventfds. hvnet's tests drive
// the backend with it; the VMM can use it to back its virtio-net device
// with an external vhost-user backend.
//
//	f, _ := frontend.Dial("/run/hvnet/a.sock")
//	feats, _ := f.GetFeatures()
//	f.SetFeatures(feats & wanted)           // after SET_PROTOCOL_FEATURES
//	mem, _ := frontend.NewMemory(64<<20, 0) // memfd guest memory
//	f.SetMemTable(mem.Region())
//	f.SetVringNum(0, 256); f.SetVringAddr(...); f.SetVringBase(0, 0)
//	f.SetVringCall(0, call.FD()); f.SetVringKick(0, kick.FD()); f.SetVringEnable(0, true)
//
// When REPLY_ACK is negotiated every request without its own reply asks for
// an acknowledgement, so a request the backend rejects fails here.
package frontend

import (
	"errors"
	"fmt"
	"net"

	"github.com/hvnet/hvnet/vhostuser/proto"
)

// Frontend is one connection to a backend. It is not safe for concurrent
// use.
type Frontend struct {
	c        *proto.Conn
	replyAck bool
}

// Dial connects to a backend listening on path.
func Dial(path string) (*Frontend, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("vhost-user frontend: %w", err)
	}
	return New(c), nil
}

// New uses an established connection (a backend in client mode connected
// to the frontend's listener).
func New(c *net.UnixConn) *Frontend { return &Frontend{c: proto.NewConn(c)} }

// Close closes the connection; the backend stops every ring.
func (f *Frontend) Close() error { return f.c.Close() }

// Conn returns the underlying message connection (tests send raw,
// malformed messages through it).
func (f *Frontend) Conn() *proto.Conn { return f.c }

// ErrRejected is wrapped by the error of a request the backend NACKed.
var ErrRejected = errors.New("rejected by the backend")

// send sends a request without a reply of its own, waiting for the
// REPLY_ACK when negotiated.
func (f *Frontend) send(req proto.Request, payload []byte, fds ...int) error {
	flags := uint32(proto.Version)
	if f.replyAck {
		flags |= proto.FlagNeedReply
	}
	if err := f.c.WriteMsg(req, flags, payload, fds...); err != nil {
		return err
	}
	if !f.replyAck {
		return nil
	}
	p, err := f.reply(req)
	if err != nil {
		return err
	}
	if len(p) != 8 {
		return fmt.Errorf("vhost-user %v: ack of %d bytes, want 8", req, len(p))
	}
	if v := proto.U64(p); v != 0 {
		return fmt.Errorf("vhost-user %v: %w (status %d)", req, ErrRejected, v)
	}
	return nil
}

// reply reads the reply to req.
func (f *Frontend) reply(req proto.Request) ([]byte, error) {
	m, err := f.c.ReadMsg()
	if err != nil {
		return nil, fmt.Errorf("vhost-user %v: reading reply: %w", req, err)
	}
	proto.CloseFDs(m)
	if m.Request != req || !m.IsReply() {
		return nil, fmt.Errorf("vhost-user %v: got %v (flags %#x) in reply", req, m.Request, m.Flags)
	}
	return m.Payload, nil
}

// get sends a request that has a reply and returns the reply's payload.
func (f *Frontend) get(req proto.Request, payload []byte) ([]byte, error) {
	if err := f.c.WriteMsg(req, proto.Version, payload); err != nil {
		return nil, err
	}
	return f.reply(req)
}

func (f *Frontend) getU64(req proto.Request) (uint64, error) {
	p, err := f.get(req, nil)
	if err != nil {
		return 0, err
	}
	if len(p) != 8 {
		return 0, fmt.Errorf("vhost-user %v: reply of %d bytes, want 8", req, len(p))
	}
	return proto.U64(p), nil
}

// GetFeatures returns the virtio features the backend offers.
func (f *Frontend) GetFeatures() (uint64, error) { return f.getU64(proto.GetFeatures) }

// SetFeatures acknowledges features.
func (f *Frontend) SetFeatures(v uint64) error { return f.send(proto.SetFeatures, proto.PutU64(v)) }

// SetOwner claims the backend.
func (f *Frontend) SetOwner() error { return f.send(proto.SetOwner, nil) }

// ResetOwner resets the device.
func (f *Frontend) ResetOwner() error { return f.send(proto.ResetOwner, nil) }

// GetProtocolFeatures returns the protocol features the backend offers.
func (f *Frontend) GetProtocolFeatures() (uint64, error) {
	return f.getU64(proto.GetProtocolFeatures)
}

// SetProtocolFeatures acknowledges protocol features; with REPLY_ACK
// later requests wait for their acknowledgement.
func (f *Frontend) SetProtocolFeatures(v uint64) error {
	if err := f.send(proto.SetProtocolFeatures, proto.PutU64(v)); err != nil {
		return err
	}
	f.replyAck = v&(1<<proto.PFReplyAck) != 0
	return nil
}

// GetQueueNum returns how many queues the backend supports.
func (f *Frontend) GetQueueNum() (uint64, error) { return f.getU64(proto.GetQueueNum) }

// GetMaxMemSlots returns how many regions ADD_MEM_REG may hold.
func (f *Frontend) GetMaxMemSlots() (uint64, error) { return f.getU64(proto.GetMaxMemSlots) }

// SetMemTable replaces the backend's memory table.
func (f *Frontend) SetMemTable(rs ...Region) error {
	mrs := make([]proto.MemRegion, len(rs))
	fds := make([]int, len(rs))
	for i, r := range rs {
		mrs[i], fds[i] = r.MemRegion, r.FD
	}
	return f.send(proto.SetMemTable, proto.EncodeMemTable(mrs), fds...)
}

// AddMemReg adds one region (CONFIGURE_MEM_SLOTS).
func (f *Frontend) AddMemReg(r Region) error {
	return f.send(proto.AddMemReg, proto.EncodeMemReg(r.MemRegion), r.FD)
}

// RemMemReg removes one region.
func (f *Frontend) RemMemReg(r Region) error {
	return f.send(proto.RemMemReg, proto.EncodeMemReg(r.MemRegion))
}

// SetLogBase shares the dirty log: size bytes at offset of fd (LOG_SHMFD).
func (f *Frontend) SetLogBase(size, offset uint64, fd int) error {
	if err := f.c.WriteMsg(proto.SetLogBase, proto.Version, proto.LogDesc{Size: size, Offset: offset}.Encode(), fd); err != nil {
		return err
	}
	_, err := f.reply(proto.SetLogBase)
	return err
}

// SetVringNum sets queue i's size.
func (f *Frontend) SetVringNum(i, num uint32) error {
	return f.send(proto.SetVringNum, proto.VringState{Index: i, Num: num}.Encode())
}

// SetVringAddr sets a queue's ring addresses (user virtual addresses).
func (f *Frontend) SetVringAddr(a proto.VringAddr) error {
	return f.send(proto.SetVringAddr, a.Encode())
}

// SetVringBase sets queue i's next available index.
func (f *Frontend) SetVringBase(i, base uint32) error {
	return f.send(proto.SetVringBase, proto.VringState{Index: i, Num: base}.Encode())
}

// GetVringBase stops queue i and returns its next available index.
func (f *Frontend) GetVringBase(i uint32) (uint32, error) {
	p, err := f.get(proto.GetVringBase, proto.VringState{Index: i}.Encode())
	if err != nil {
		return 0, err
	}
	if len(p) != 8 {
		return 0, fmt.Errorf("vhost-user GET_VRING_BASE: reply of %d bytes, want 8", len(p))
	}
	return proto.DecodeVringState(p).Num, nil
}

func (f *Frontend) vringFD(req proto.Request, i uint32, fd int) error {
	if fd < 0 {
		return f.send(req, proto.PutU64(uint64(i)|proto.VringNoFD))
	}
	return f.send(req, proto.PutU64(uint64(i)), fd)
}

// SetVringKick hands over queue i's kick eventfd (fd < 0: none) and
// starts the ring.
func (f *Frontend) SetVringKick(i uint32, fd int) error { return f.vringFD(proto.SetVringKick, i, fd) }

// SetVringCall hands over queue i's call eventfd (fd < 0: none).
func (f *Frontend) SetVringCall(i uint32, fd int) error { return f.vringFD(proto.SetVringCall, i, fd) }

// SetVringErr hands over queue i's error eventfd (fd < 0: none).
func (f *Frontend) SetVringErr(i uint32, fd int) error { return f.vringFD(proto.SetVringErr, i, fd) }

// SetVringEnable enables or disables queue i.
func (f *Frontend) SetVringEnable(i uint32, on bool) error {
	var v uint32
	if on {
		v = 1
	}
	return f.send(proto.SetVringEnable, proto.VringState{Index: i, Num: v}.Encode())
}

// GetConfig reads size bytes of the device configuration space at offset.
func (f *Frontend) GetConfig(offset, size uint32) ([]byte, error) {
	p, err := f.get(proto.GetConfig, proto.Config{Offset: offset, Data: make([]byte, size)}.Encode())
	if err != nil {
		return nil, err
	}
	c := proto.DecodeConfig(p)
	if c.Data == nil || c.Size != size {
		return nil, fmt.Errorf("vhost-user GET_CONFIG: malformed reply of %d bytes", len(p))
	}
	return c.Data, nil
}
