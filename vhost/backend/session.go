package backend

import (
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/vhostuser/proto"
	"github.com/hvnet/hvnet/virtio"
	vnet "github.com/hvnet/hvnet/virtio/net"
)

// Conn is what a Session talks through: proto.Conn on a real socket, a fake
// in the fuzz tests.
type Conn interface {
	ReadMsg() (*proto.Msg, error)
	WriteMsg(req proto.Request, flags uint32, payload []byte, fds ...int) error
}

var _ Conn = (*proto.Conn)(nil)

// Config configures a Session.
type Config struct {
	// Name identifies the port in log lines.
	Name string
	// QueuePairs is the number of RX/TX pairs offered (GET_QUEUE_NUM's
	// answer); default 1.
	QueuePairs int
	// MaxQueueSize is the largest ring accepted; default 1024.
	MaxQueueSize uint16
	// MAC and MTU fill the virtio-net config space (GET_CONFIG); an MTU
	// also offers VIRTIO_NET_F_MTU.
	MAC [6]byte
	MTU uint16
	// Sink receives the frames the frontend transmits. Required.
	Sink vnet.Sink
	// OnStart is called with the session's device once it exists (attach
	// it to the switch); OnStop before the device's memory is unmapped
	// (detach it: no Receive may start after OnStop returns). May be nil.
	OnStart func(dev *vnet.Device)
	OnStop  func(dev *vnet.Device)
	// Logger; default hclog.NewNullLogger().
	Logger hclog.Logger
	// BusyPoll is how long a transmit ring's worker keeps polling the
	// ring, with kicks suppressed, after it last found work, before it
	// re-enables kicks and sleeps (like Linux vhost-net's busy_poll):
	// default DefaultBusyPoll; negative: never poll, sleep at once.
	BusyPoll time.Duration
	// Counters, if set, accumulates the session's notification-descriptor
	// counters (a port shares one across its sessions); otherwise the
	// session keeps its own. See Session.Counters.
	Counters *Counters
	// StopTimeout bounds how long ending the session (or stopping a ring)
	// waits for a ring worker or the notifier to stop before abandoning
	// it (counted, logged): default DefaultStopTimeout.
	StopTimeout time.Duration
	// MaxMapped is the most bytes of frontend memory the session maps at
	// once, its memory regions and dirty log together: default
	// DefaultMaxMapped (1 TiB). A region or log past it is refused
	// (Counters.RefusedMappings, a *MapLimitError).
	MaxMapped uint64
	// MapBudget bounds what the sessions sharing it map together
	// (limits.go); default DefaultMapBudget, the process's.
	MapBudget *MapBudget
}

// DefaultBusyPoll is Config.BusyPoll's default.
const DefaultBusyPoll = 50 * time.Microsecond

// DefaultStopTimeout is Config.StopTimeout's default.
const DefaultStopTimeout = 2 * time.Second

// Session is one frontend connection.
type Session struct {
	cfg Config
	log hclog.Logger
	dev *vnet.Device

	offered, features uint64 // virtio features offered / acked
	protocol          uint64 // protocol features acked
	owner             bool
	mtu               uint16

	regions []*region
	mem     *virtio.Memory
	dlog    *dirtyLog
	logFD   int

	vrings []*vring
	notify *notifier

	// conn is the connection Serve reads; abort closes it (if it is an
	// io.Closer) to end the session from a ring worker.
	conn      Conn
	abortOnce sync.Once
	abortErr  atomic.Pointer[error]
}

// offeredFeatures: vhost-user.rst "Feature bits" plus the virtio-net
// features the dataplane implements that frontends delegate to a backend
// (the control queue stays in the frontend: CTRL_VQ is not offered).
// IN_ORDER: the dataplane uses every queue's chains in the order they
// were made available (a dropped chain in its place, a receive chain it
// cannot use given back for the next frame); DPDK's virtio-user
// negotiates it (its in_order devarg is on by default) and then lays its
// rings out in order, which saves hvnet about a tenth of a frame's time
// with the generator's core far (vhost/BENCH_NOTES.md, session 20).
var offeredFeatures = virtio.Feature(virtio.FVersion1) | virtio.Feature(virtio.FIndirectDesc) |
	virtio.Feature(virtio.FEventIdx) | virtio.Feature(virtio.FInOrder) | 1<<proto.FProtocolFeatures | 1<<proto.FLogAll |
	vnet.Features(vnet.FCsum, vnet.FGuestCsum, vnet.FGuestTSO4, vnet.FGuestTSO6, vnet.FGuestECN,
		vnet.FGuestUFO, vnet.FHostTSO4, vnet.FHostTSO6, vnet.FHostECN, vnet.FHostUFO, vnet.FMrgRxbuf)

// OfferedProtocol are the protocol features offered (vhost-user.rst
// "Protocol features").
const OfferedProtocol = 1<<proto.PFMQ | 1<<proto.PFLogSHMFD | 1<<proto.PFReplyAck |
	1<<proto.PFNetMTU | 1<<proto.PFConfig | 1<<proto.PFConfigureMemSlots

// New returns a Session with its device; nothing is attached until Serve.
func New(cfg Config) (*Session, error) {
	if cfg.QueuePairs == 0 {
		cfg.QueuePairs = 1
	}
	if cfg.MaxQueueSize == 0 {
		cfg.MaxQueueSize = 1024
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Counters == nil {
		cfg.Counters = new(Counters)
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = DefaultStopTimeout
	}
	if cfg.MaxMapped == 0 {
		cfg.MaxMapped = DefaultMaxMapped
	}
	if cfg.MapBudget == nil {
		cfg.MapBudget = DefaultMapBudget
	}
	s := &Session{cfg: cfg, log: cfg.Logger, logFD: -1, offered: offeredFeatures}
	if cfg.QueuePairs > 1 {
		s.offered |= vnet.Features(vnet.FMQ)
	}
	if cfg.MTU != 0 {
		s.offered |= vnet.Features(vnet.FMTU)
	}
	for i := 0; i < 2*cfg.QueuePairs; i++ {
		s.vrings = append(s.vrings, newVring(i))
	}
	s.notify = newNotifier(cfg.Logger, cfg.Counters, len(s.vrings))
	dev, err := vnet.New(vnet.Config{QueuePairs: cfg.QueuePairs, MaxQueueSize: cfg.MaxQueueSize,
		Sink: cfg.Sink, Logger: cfg.Logger, OnFault: s.onFault})
	if err != nil {
		return nil, fmt.Errorf("vhost-user port %q: %w", cfg.Name, err)
	}
	s.dev = dev
	return s, nil
}

// Device returns the session's virtio-net device.
func (s *Session) Device() *vnet.Device { return s.dev }

// Counters returns the session's notification-descriptor counters
// (Config.Counters when given).
func (s *Session) Counters() *Counters { return s.cfg.Counters }

// onFault reports a malformed ring through its error eventfd
// (SET_VRING_ERR). Called with the queue's lock held: it only marks the
// signal for the notifier.
//
// A fault on the frontend's memory (it shrank the memfd under us) ends the
// whole session: the memory table can no longer be trusted, and every
// other queue would fault in turn.
func (s *Session) onFault(err error) {
	var fe *vnet.FaultError
	if errors.As(err, &fe) && fe.Queue >= 0 && fe.Queue < len(s.vrings) {
		s.notify.mark(errSlot(fe.Queue))
	}
	var mf *virtio.MemoryFaultError
	if errors.As(err, &mf) {
		s.abort(fmt.Errorf("frontend memory vanished: %w", err))
	}
}

// abort ends the session from a ring worker: Serve returns err once its
// read fails on the closed connection (the caller logs it). Only the first
// abort counts.
func (s *Session) abort(err error) {
	s.abortOnce.Do(func() {
		s.abortErr.Store(&err)
		if c, ok := s.conn.(io.Closer); ok {
			c.Close()
		}
	})
}

// aborted returns abort's error, if any.
func (s *Session) aborted() error {
	if e := s.abortErr.Load(); e != nil {
		return *e
	}
	return nil
}

// Serve handles messages until the frontend disconnects (nil) or breaks
// the protocol (the error says which message and why), then releases
// everything: ring goroutines, descriptors, mappings. A Session serves one
// connection.
//
// A ring whose kick descriptor hangs up or fails ends the session too: the
// connection is closed (when c is an io.Closer) and Serve returns an error
// naming the queue.
func (s *Session) Serve(c Conn) error {
	s.conn = c
	s.notify.start()
	if s.cfg.OnStart != nil {
		s.cfg.OnStart(s.dev)
	}
	defer s.release()
	for {
		m, err := c.ReadMsg()
		if aerr := s.aborted(); aerr != nil {
			if err == nil {
				proto.CloseFDs(m)
			}
			return aerr
		}
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, unix.ECONNRESET) {
				return nil
			}
			var me *proto.MsgError
			if errors.As(err, &me) { // a malformed header
				s.cfg.Counters.RejectedRequests.Add(1)
			}
			return err
		}
		if err := s.dispatch(c, m); err != nil {
			if aerr := s.aborted(); aerr != nil {
				return aerr
			}
			return err
		}
	}
}

// dispatch validates and handles one message and sends its reply (or its
// REPLY_ACK). Any descriptor the handler did not take is closed. Every
// request refused is counted (Counters.RejectedRequests); a frontend can
// send them as fast as it likes, so the failures it hears of through
// REPLY_ACK are logged sparsely (see sparse).
func (s *Session) dispatch(c Conn, m *proto.Msg) error {
	defer proto.CloseFDs(m)
	if err := proto.Validate(m); err != nil {
		s.cfg.Counters.RejectedRequests.Add(1)
		return err
	}
	if m.IsReply() {
		s.cfg.Counters.RejectedRequests.Add(1)
		return &proto.MsgError{Request: m.Request, Err: proto.ErrFlags, Detail: "reply bit set on a request"}
	}
	s.log.Trace("message", "request", m.Request.String(), "size", m.Size, "fds", len(m.FDs))
	reply, err := s.handleGuarded(m)
	var mf *virtio.MemoryFaultError
	if errors.As(err, &mf) {
		// The frontend's memory vanished under a handler: end the
		// session (no REPLY_ACK: nothing of the session can be trusted).
		s.dev.NoteMemoryFault()
		return fmt.Errorf("vhost-user %v: frontend memory vanished: %w", m.Request, err)
	}
	var rejected uint64
	if err != nil {
		rejected = s.cfg.Counters.RejectedRequests.Add(1)
		err = &requestError{MsgError: &proto.MsgError{Request: m.Request, Err: proto.ErrPayload, Detail: err.Error()}, cause: err}
	}
	if reply != nil {
		if err != nil {
			return err
		}
		return c.WriteMsg(m.Request, proto.Version|proto.FlagReply, reply)
	}
	if m.NeedReply() && s.protocol&(1<<proto.PFReplyAck) != 0 {
		var status uint64
		if err != nil {
			status = 1
			s.log.Log(sparse(rejected, hclog.Warn), "request failed, reported by REPLY_ACK", "error", err, "rejected", rejected)
		}
		if werr := c.WriteMsg(m.Request, proto.Version|proto.FlagReply, proto.PutU64(status)); werr != nil {
			return werr
		}
		return nil
	}
	return err
}

// requestError is a request its handler refused: proto.MsgError's text
// (the request's name, then the handler's error), and the handler's error
// kept for errors.As (a *MemFDError, a *MapLimitError).
type requestError struct {
	*proto.MsgError
	cause error
}

func (e *requestError) Unwrap() []error { return []error{e.MsgError, e.cause} }

// sparse is the level to log the n-th occurrence (from 1) of something a
// frontend can repeat at will: lvl for the 1st, 2nd, 4th, 8th, ... (the
// first ones, then ever fewer: O(log n) lines), Debug for the others, so
// the text of each stays available at debug level.
func sparse(n uint64, lvl hclog.Level) hclog.Level {
	if bits.OnesCount64(n) == 1 {
		return lvl
	}
	return hclog.Debug
}

// handleGuarded is handle with faults on the frontend's memory (a memfd it
// shrank after SET_MEM_TABLE) returned as *virtio.MemoryFaultError instead
// of killing the process: handlers read the rings (the used index when a
// ring starts) and write them (notification suppression).
func (s *Session) handleGuarded(m *proto.Msg) (reply []byte, err error) {
	defer virtio.CatchFault(virtio.TrapFaults(), &err)
	return s.handle(m)
}

// release stops every ring, detaches the device and unmaps memory.
func (s *Session) release() {
	if s.cfg.OnStop != nil {
		s.cfg.OnStop(s.dev)
	}
	for _, r := range s.vrings {
		s.stopRing(r)
		r.closeKick()
	}
	// The notifier owns (and closes) the call and error eventfds.
	s.notify.stop(s.cfg.StopTimeout)
	s.dev.Reset()
	s.dev.Release()
	s.dev.SetMemory(nil)
	s.mem = nil
	for _, r := range s.regions {
		r.unmap()
	}
	s.regions = nil
	if s.dlog != nil {
		s.dlog.unmap()
		s.dlog = nil
	}
	if s.logFD >= 0 {
		unix.Close(s.logFD)
		s.logFD = -1
	}
}

func (s *Session) hasProtocolFeatures() bool { return s.features&(1<<proto.FProtocolFeatures) != 0 }

func (s *Session) ring(index uint32) (*vring, error) {
	if index >= uint32(len(s.vrings)) {
		return nil, fmt.Errorf("queue index %d out of range (device has %d queues)", index, len(s.vrings))
	}
	return s.vrings[index], nil
}
