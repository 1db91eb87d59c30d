package vhost

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/internal/sockperm"
	"github.com/hvnet/hvnet/netport"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/vhost/backend"
	"github.com/hvnet/hvnet/vhostuser/proto"
	vnet "github.com/hvnet/hvnet/virtio/net"
)

// Mode says which side of the unix socket listens.
type Mode int

const (
	// Server: hvnet listens on Socket, the frontend connects.
	Server Mode = iota
	// Client: the frontend listens on Socket, hvnet connects (and
	// reconnects).
	Client
)

func (m Mode) String() string {
	if m == Client {
		return "client"
	}
	return "server"
}

// PortConfig configures a Port.
type PortConfig struct {
	// Port is the switch port's configuration (name, VLAN, limits).
	Port vswitch.PortConfig
	// Socket is the unix socket path.
	Socket string
	Mode   Mode
	// QueuePairs offered to the frontend (default 1).
	QueuePairs int
	// MaxQueueSize is the largest ring accepted (default 1024).
	MaxQueueSize uint16
	// SocketMode, if not 0, is a server socket's mode, and SocketOwner and
	// SocketGroup, if not nil, its owner and group: a QEMU that libvirt
	// runs as libvirt-qemu connects through a socket of that group and
	// mode 0660.
	SocketMode               os.FileMode
	SocketOwner, SocketGroup *int
	// MAC and MTU are reported in the device configuration space. A
	// port with a MAC accepts only that source MAC from its frontend
	// unless Port.PortSecurity is vswitch.PortSecurityOff.
	MAC [6]byte
	MTU uint16
	// RetryMin and RetryMax bound the client-mode reconnect backoff
	// (defaults 20 ms and 1 s).
	RetryMin, RetryMax time.Duration
	Logger             hclog.Logger
	// BusyPoll is how long a transmit ring is polled after its last work
	// before the worker sleeps on the kick eventfd (backend.Config.BusyPoll:
	// 0 means backend.DefaultBusyPoll, negative never polls).
	BusyPoll time.Duration
	// OnConnect and OnDisconnect are called as sessions start and end
	// (after the session released everything). May be nil.
	OnConnect, OnDisconnect func()
	// MaxStuck bounds what earlier frontends can leave behind: while
	// this many of the port's abandoned notifiers and ring workers are
	// still blocked in a system call the frontend holds up (each keeps a
	// goroutine, a thread and descriptors; backend.Counters.Stuck), the
	// port refuses new frontends, counted as SessionsRefused, with the
	// reconnect backoff between attempts. 0 means DefaultMaxStuck;
	// negative, no limit.
	MaxStuck int
	// MaxMapped is the most bytes of memory (regions and dirty log) one
	// session of the port may map (backend.Config.MaxMapped): 0 means
	// backend.DefaultMaxMapped (1 TiB).
	MaxMapped uint64
	// MapBudget bounds what the sessions of every port sharing it map
	// together (backend.Config.MapBudget): nil means
	// backend.DefaultMapBudget, the process's (64 TiB).
	MapBudget *backend.MapBudget
}

// DefaultMaxStuck is PortConfig.MaxStuck's default.
const DefaultMaxStuck = 4

// Port is a vhost-user port on a switch.
type Port struct {
	cfg    PortConfig
	log    hclog.Logger
	sw     *vswitch.Switch
	np     *netport.Port
	handle *vswitch.PortHandle
	ln     *net.UnixListener

	mu     sync.Mutex
	conn   *net.UnixConn // the current session's, to end it on Close
	closed bool

	sessions  atomic.Uint64
	connected atomic.Bool
	lastStats atomic.Pointer[vnet.Stats]
	notify    backend.Counters // across sessions
	failed    atomic.Uint64    // sessions that ended with an error
	// attachLines, detachLines, errorLines: a line a second of each
	attachLines, detachLines, errorLines lineGate

	// statsMu guards live and ended (DeviceStats).
	statsMu sync.Mutex
	live    *vnet.Device // the current session's device, until its session is over
	ended   vnet.Stats   // the sum of every finished session's device counters
}

// NewPort adds the switch port and, in Server mode, creates the listening
// socket (replacing a stale socket file at the path).
func NewPort(sw *vswitch.Switch, cfg PortConfig) (*Port, error) {
	p, err := NewPortAttached(cfg, func(vp vswitch.Port) (*vswitch.PortHandle, error) {
		return sw.AddPort(cfg.Port, vp)
	})
	if err != nil {
		return nil, err
	}
	p.sw = sw
	return p, nil
}

// NewPortAttached is NewPort for a caller that attaches the switch port
// itself (the control API, which adds it with its own checks): attach is
// called once with the port's vswitch.Port and returns its handle. Such a
// Port does not know the switch: Remove is the caller's (detach the port
// there), and flushing the port's FDB entries when a frontend leaves is
// left to cfg.OnDisconnect. If attach fails, the socket is closed and
// attach's error returned.
func NewPortAttached(cfg PortConfig, attach vswitch.AttachFunc) (*Port, error) {
	if cfg.Socket == "" {
		return nil, fmt.Errorf("vhost-user port %q: no socket path", cfg.Port.Name)
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 20 * time.Millisecond
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(time.Second, cfg.RetryMin)
	}
	if cfg.MaxStuck == 0 {
		cfg.MaxStuck = DefaultMaxStuck
	}
	p := &Port{cfg: cfg, np: netport.New(nil),
		log: cfg.Logger.With("port", cfg.Port.Name, "socket", cfg.Socket, "mode", cfg.Mode.String())}
	if cfg.Mode == Server {
		if fi, err := os.Lstat(cfg.Socket); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(cfg.Socket)
		}
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: cfg.Socket, Net: "unix"})
		if err != nil {
			return nil, fmt.Errorf("vhost-user port %q: %w", cfg.Port.Name, err)
		}
		ln.SetUnlinkOnClose(true)
		p.ln = ln
		// Until these apply the socket has the umask's mode, which lets
		// no one but its owner connect (connecting needs write access).
		if err := sockperm.Apply(cfg.Socket, cfg.SocketMode, cfg.SocketOwner, cfg.SocketGroup); err != nil {
			ln.Close()
			return nil, fmt.Errorf("vhost-user port %q: %w", cfg.Port.Name, err)
		}
	}
	p.np.SetMAC(cfg.MAC) // port security: the switch accepts only this source (vswitch.AddressedPort)
	h, err := attach(p.np)
	if err != nil {
		if p.ln != nil {
			p.ln.Close()
		}
		return nil, err
	}
	p.handle = h
	p.np.SetHandle(h)
	return p, nil
}

// Name is the switch port's name.
func (p *Port) Name() string { return p.cfg.Port.Name }

// Handle is the switch port.
func (p *Port) Handle() *vswitch.PortHandle { return p.handle }

// Connected reports whether a frontend is attached.
func (p *Port) Connected() bool { return p.connected.Load() }

// Sessions counts the sessions served so far (finished or not).
func (p *Port) Sessions() uint64 { return p.sessions.Load() }

// Run serves frontends until ctx ends or Close is called.
func (p *Port) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { p.Close() })
	defer stop()
	backoff := p.cfg.RetryMin
	for {
		c, err := p.next(ctx, &backoff)
		if err != nil {
			if p.isClosed() {
				return nil
			}
			return err
		}
		if p.refuse(c) {
			if err := p.wait(ctx, backoff); err != nil {
				return nil
			}
			backoff = min(2*backoff, p.cfg.RetryMax)
			continue
		}
		backoff = p.cfg.RetryMin
		p.serve(c)
		if p.isClosed() {
			return nil
		}
	}
}

// refuse closes c, counted and logged, if the port is at its limit of
// stuck goroutines (PortConfig.MaxStuck).
func (p *Port) refuse(c *net.UnixConn) bool {
	stuck := p.notify.Stuck.Load()
	if p.cfg.MaxStuck < 0 || stuck < int64(p.cfg.MaxStuck) {
		return false
	}
	n := p.notify.SessionsRefused.Add(1) // before the frontend sees its connection close
	c.Close()
	if bits.OnesCount64(n) == 1 { // 1, 2, 4, ...: a flood of reconnects is not a flood of lines
		p.log.Error("frontend refused: earlier frontends left goroutines blocked in their descriptors",
			"stuck", stuck, "max_stuck", p.cfg.MaxStuck, "refused", n)
	}
	return true
}

// wait sleeps d, or until ctx ends or the port is closed (an error).
func (p *Port) wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	if p.isClosed() {
		return net.ErrClosed
	}
	return nil
}

// next returns the next frontend connection: accepted (Server) or
// connected with backoff (Client).
func (p *Port) next(ctx context.Context, backoff *time.Duration) (*net.UnixConn, error) {
	if p.cfg.Mode == Server {
		c, err := p.ln.AcceptUnix()
		if err != nil {
			return nil, fmt.Errorf("vhost-user port %q: accept: %w", p.Name(), err)
		}
		return c, nil
	}
	for {
		if p.isClosed() {
			return nil, net.ErrClosed
		}
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: p.cfg.Socket, Net: "unix"})
		if err == nil {
			return c, nil
		}
		p.log.Debug("frontend not reachable, retrying", "error", err, "in", *backoff)
		if err := p.wait(ctx, *backoff); err != nil {
			return nil, err
		}
		*backoff = min(2**backoff, p.cfg.RetryMax)
	}
}

// lineGate passes a port's line of one kind (a frontend attached,
// detached, a session's error) at its level at most once a second: a
// frontend reconnecting in a loop gets a line a second into the log, not
// one a session, while an operator still sees every attach of a guest
// that reboots now and then. The lines between go at Debug, and the next
// one passed says how many were held back.
type lineGate struct {
	mu   sync.Mutex
	last time.Time
	held uint64
}

// level returns the level for a line now and, when it is lvl, the lines
// held back since the last one passed.
func (g *lineGate) level(lvl hclog.Level) (hclog.Level, uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	if !g.last.IsZero() && now.Sub(g.last) < time.Second {
		g.held++
		return hclog.Debug, 0
	}
	held := g.held
	g.last, g.held = now, 0
	return lvl, held
}

// logGated writes msg through g: at lvl with the held-back count, or at
// Debug.
func logGated(log hclog.Logger, g *lineGate, lvl hclog.Level, msg string, args ...any) {
	l, held := g.level(lvl)
	if l == lvl && held > 0 {
		args = append(args, "lines_held_back", held)
	}
	log.Log(l, msg, args...)
}

// serve runs one session on c.
func (p *Port) serve(c *net.UnixConn) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.conn = c
	p.mu.Unlock()
	n := p.sessions.Add(1)
	log := p.log.With("session", n)
	s, err := backend.New(backend.Config{
		Name: p.Name(), QueuePairs: p.cfg.QueuePairs, MaxQueueSize: p.cfg.MaxQueueSize,
		MAC: p.cfg.MAC, MTU: p.cfg.MTU, Sink: p.np, Logger: log, BusyPoll: p.cfg.BusyPoll,
		Counters: &p.notify, MaxMapped: p.cfg.MaxMapped, MapBudget: p.cfg.MapBudget,
		OnStart: func(dev *vnet.Device) {
			p.np.SetDevice(dev)
			p.statsMu.Lock()
			p.live = dev
			p.statsMu.Unlock()
		},
		OnStop: func(dev *vnet.Device) {
			p.np.SetDevice(nil)
			st := dev.Stats()
			p.lastStats.Store(&st)
		},
	})
	// A frontend may reconnect in a loop: a line a second of each kind
	// (lineGate).
	if err == nil {
		logGated(log, &p.attachLines, hclog.Info, "frontend attached")
		p.connected.Store(true)
		if p.cfg.OnConnect != nil {
			p.cfg.OnConnect()
		}
		err = s.Serve(proto.NewConn(c))
		p.endSession() // every ring has stopped (but one abandoned as stuck): its counters are final
		p.connected.Store(false)
		if p.sw != nil {
			p.sw.Flush(p.Name(), 0)
		}
	}
	c.Close()
	p.mu.Lock()
	p.conn = nil
	p.mu.Unlock()
	switch {
	case err != nil && !p.isClosed():
		f := p.failed.Add(1)
		logGated(log, &p.errorLines, hclog.Error, "closing vhost-user connection", "error", err, "failed_sessions", f)
	default:
		logGated(log, &p.detachLines, hclog.Info, "frontend detached")
	}
	if p.cfg.OnDisconnect != nil {
		p.cfg.OnDisconnect()
	}
}

func (p *Port) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// LastStats returns the device counters of the last finished session.
func (p *Port) LastStats() (vnet.Stats, bool) {
	if s := p.lastStats.Load(); s != nil {
		return *s, true
	}
	return vnet.Stats{}, false
}

// DeviceStats returns the port's virtio-net device counters over its whole
// life: the sum of every finished session's and the current session's so
// far (LastStats is the last finished session's alone). Cheap: it reads
// atomic counters and waits on no frontend.
func (p *Port) DeviceStats() vnet.Stats {
	p.statsMu.Lock()
	defer p.statsMu.Unlock()
	if p.live == nil {
		return p.ended
	}
	return addStats(p.ended, p.live.Stats())
}

// Negotiated returns the current session's negotiated features and its
// active queue pairs; ok is false without a session.
func (p *Port) Negotiated() (features uint64, pairs int, ok bool) {
	p.statsMu.Lock()
	defer p.statsMu.Unlock()
	if p.live == nil {
		return 0, 0, false
	}
	return p.live.Features(), p.live.ActivePairs(), true
}

// endSession adds the finished session's device counters to the port's.
func (p *Port) endSession() {
	p.statsMu.Lock()
	defer p.statsMu.Unlock()
	if p.live != nil {
		p.ended = addStats(p.ended, p.live.Stats())
		p.live = nil
	}
}

// addStats returns a+b, counter by counter.
func addStats(a, b vnet.Stats) vnet.Stats {
	return vnet.Stats{
		TxPackets: a.TxPackets + b.TxPackets, TxBytes: a.TxBytes + b.TxBytes,
		RxPackets: a.RxPackets + b.RxPackets, RxBytes: a.RxBytes + b.RxBytes,
		TxDropBadChain: a.TxDropBadChain + b.TxDropBadChain, TxDropBadHeader: a.TxDropBadHeader + b.TxDropBadHeader,
		TxDropRunt: a.TxDropRunt + b.TxDropRunt, TxDropOversize: a.TxDropOversize + b.TxDropOversize,
		RxDropNoBuffer: a.RxDropNoBuffer + b.RxDropNoBuffer, RxDropBadChain: a.RxDropBadChain + b.RxDropBadChain,
		RxDropOversize: a.RxDropOversize + b.RxDropOversize, RxDropOffload: a.RxDropOffload + b.RxDropOffload,
		RxDropSourceFault: a.RxDropSourceFault + b.RxDropSourceFault,
		CtrlOK:            a.CtrlOK + b.CtrlOK, CtrlErr: a.CtrlErr + b.CtrlErr,
		Faults: a.Faults + b.Faults, SignalErrors: a.SignalErrors + b.SignalErrors,
		MemoryFaults: a.MemoryFaults + b.MemoryFaults,
	}
}

// NotifyStats returns the port's notification-descriptor counters, over
// all its sessions: descriptors refused, blocked writes, hung-up kicks.
func (p *Port) NotifyStats() backend.CounterStats { return p.notify.Snapshot() }

// Close stops accepting and ends the current session; in Server mode the
// socket file goes with the listener. The switch port stays until Remove.
// Run returns once the session released everything.
func (p *Port) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	if p.conn != nil {
		p.conn.Close()
	}
	p.mu.Unlock()
	var errs []error
	if p.ln != nil {
		if err := p.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Remove detaches the switch port; call after Run returned. A port made
// by NewPortAttached is detached by its caller: Remove does nothing.
func (p *Port) Remove() error {
	if p.sw == nil {
		return nil
	}
	return p.sw.RemovePort(p.Name())
}
