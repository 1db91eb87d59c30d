package uplink

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/frame"
	vswitch "github.com/hvnet/hvnet/switch"
)

// Port is the switch port of one host interface. It implements vswitch.Port.
type Port struct {
	name string
	cfg  Config
	log  hclog.Logger

	handle atomic.Pointer[Receiver]

	// lifeMu serialises attach, detach, Start and Close.
	lifeMu  sync.Mutex
	started bool
	closed  bool
	watch   *watcher

	// txMu serialises Send (the switch may call it from several
	// goroutines) and guards att for it. att changes under both locks.
	txMu sync.Mutex
	att  *attachment

	st counters
}

var _ vswitch.Port = (*Port)(nil)

// attachment is the set of sockets bound to one ifindex.
type attachment struct {
	ifindex int
	rx      []*rxRing
	tx      txPath
	stopfd  int // eventfd that wakes the RX workers to stop
	stop    atomic.Bool
	wg      sync.WaitGroup
}

// Open opens the sockets of a port on the interface ifname (in the calling
// thread's network namespace). It does not receive until Start.
func Open(ifname string, cfg Config) (*Port, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	idx, err := ifindex(ifname)
	if err != nil {
		return nil, err
	}
	p := &Port{name: ifname, cfg: cfg, log: cfg.Logger.With("iface", ifname)}
	a, err := p.attach(idx)
	if err != nil {
		return nil, err
	}
	p.att = a
	return p, nil
}

func ifindex(name string) (int, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return 0, fmt.Errorf("uplink: interface %q: %w (%v)", name, ErrNoInterface, err)
	}
	return ifi.Index, nil
}

// Name returns the interface name.
func (p *Port) Name() string { return p.name }

// Receiver takes the frames a port receives: the switch port's handle
// (*vswitch.PortHandle), or a port made of several, such as a bond, that
// looks at them first. Input has PortHandle.Input's contract.
type Receiver interface {
	Input(frames []vswitch.Frame)
}

// Start begins receiving: frames from the interface enter the switch
// through h. It also starts the link watcher. Call it once.
func (p *Port) Start(h Receiver) error {
	p.lifeMu.Lock()
	defer p.lifeMu.Unlock()
	if p.closed {
		return errors.New("uplink: Start after Close")
	}
	if p.started {
		return errors.New("uplink: Start called twice")
	}
	p.started = true
	p.handle.Store(&h)
	if p.att != nil {
		p.run(p.att)
	}
	w, err := startWatcher(p)
	if err != nil {
		p.log.Warn("link watcher uses polling only", "error", err)
	}
	p.watch = w
	return nil
}

// Close stops the workers and the watcher and closes the sockets.
func (p *Port) Close() error {
	p.lifeMu.Lock()
	if p.closed {
		p.lifeMu.Unlock()
		return nil
	}
	p.closed = true
	w := p.watch
	err := p.detach()
	p.lifeMu.Unlock()
	if w != nil {
		w.stop() // after unlocking: the watcher may be waiting for lifeMu
	}
	return err
}

// Caps implements vswitch.Port: with PACKET_VNET_HDR the kernel takes
// partial checksums and TCP GSO frames and finishes them itself (in the NIC
// or in software GSO at the device), so the switch never segments for us.
func (p *Port) Caps() vswitch.Caps {
	return vswitch.CapCsum | vswitch.CapGSOTCPv4 | vswitch.CapGSOTCPv6 | vswitch.CapGSOECN
}

// Send implements vswitch.Port: frames go out of the interface. It returns
// how many the kernel accepted, n, with those in frames[:n] (frames of a
// size the interface cannot take are skipped and moved behind); with the
// link down or the interface gone, none. The others count as TxErrors.
func (p *Port) Send(frames []vswitch.Frame) int {
	if len(frames) == 0 {
		return 0
	}
	p.txMu.Lock()
	a := p.att
	if a == nil {
		p.txMu.Unlock()
		p.st.txErrors.Add(uint64(len(frames)))
		return 0
	}
	n, err := a.tx.send(frames)
	p.txMu.Unlock()
	var nb, gso uint64
	for i := range frames[:n] {
		nb += uint64(len(frames[i].Data))
		if frames[i].Off.GSOType != frame.GSONone {
			gso++
		}
	}
	p.st.txFrames.Add(uint64(n))
	p.st.txBytes.Add(nb)
	p.st.txGSO.Add(gso)
	if err != nil {
		p.st.txErrors.Add(uint64(len(frames) - n))
		if p.st.txErrLogged.CompareAndSwap(false, true) {
			p.log.Warn("transmit failed (logged once until the link is re-attached)", "error", err, "mode", a.tx.mode())
		}
	}
	return n
}

// attach opens the sockets on ifindex.
func (p *Port) attach(ifindex int) (*attachment, error) {
	a := &attachment{ifindex: ifindex, stopfd: -1}
	var err error
	fanout := 0
	if n := p.cfg.RXWorkers; n > 1 {
		id := p.cfg.FanoutID
		if id == 0 {
			id = uint16(os.Getpid()*31 + ifindex*7 + int(p.st.attaches.Load()))
		}
		fanout = int(id) | unix.PACKET_FANOUT_HASH<<16
	}
	for range p.cfg.RXWorkers {
		r, err := openRX(ifindex, &p.cfg, fanout)
		if err != nil {
			a.close()
			return nil, fmt.Errorf("uplink %s: RX socket: %w", p.name, err)
		}
		a.rx = append(a.rx, r)
	}
	if a.tx, err = openTX(ifindex, &p.cfg); err != nil {
		a.close()
		return nil, fmt.Errorf("uplink %s: TX socket: %w", p.name, err)
	}
	if a.stopfd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		a.close()
		return nil, fmt.Errorf("uplink %s: eventfd: %w", p.name, err)
	}
	p.st.attaches.Add(1)
	p.st.txErrLogged.Store(false)
	p.log.Info("attached", "ifindex", ifindex, "rx_workers", len(a.rx), "tx", p.cfg.TX)
	return a, nil
}

// run starts a's RX workers.
func (p *Port) run(a *attachment) {
	for _, r := range a.rx {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			p.rxLoop(a, r)
		}()
	}
}

// detach stops and closes the current attachment. Caller holds lifeMu.
func (p *Port) detach() error {
	a := p.att
	if a == nil {
		return nil
	}
	a.stop.Store(true)
	if a.stopfd >= 0 {
		var one [8]byte
		ne.PutUint64(one[:], 1)
		unix.Write(a.stopfd, one[:])
	}
	a.wg.Wait()
	p.txMu.Lock()
	p.att = nil
	p.txMu.Unlock()
	p.collectDrops(a)
	return a.close()
}

func (a *attachment) close() error {
	var errs []error
	for _, r := range a.rx {
		errs = append(errs, r.close())
	}
	if a.tx != nil {
		errs = append(errs, a.tx.close())
	}
	if a.stopfd >= 0 {
		errs = append(errs, unix.Close(a.stopfd))
	}
	return errors.Join(errs...)
}

// reconcile compares the interface's current ifindex with the attachment
// and re-attaches (or detaches) when it changed.
func (p *Port) reconcile() {
	idx, lookErr := ifindex(p.name)
	p.lifeMu.Lock()
	defer p.lifeMu.Unlock()
	if p.closed {
		return
	}
	cur := 0
	if p.att != nil {
		cur = p.att.ifindex
	}
	switch {
	case lookErr != nil && cur != 0:
		p.log.Warn("interface gone; detached until it returns", "ifindex", cur)
		if err := p.detach(); err != nil {
			p.log.Warn("closing sockets", "error", err)
		}
	case lookErr == nil && idx != cur:
		if cur != 0 {
			p.log.Info("interface re-created", "old_ifindex", cur, "ifindex", idx)
			if err := p.detach(); err != nil {
				p.log.Warn("closing sockets", "error", err)
			}
		}
		a, err := p.attach(idx)
		if err != nil {
			p.log.Error("re-attach failed", "ifindex", idx, "error", err)
			return
		}
		p.txMu.Lock()
		p.att = a
		p.txMu.Unlock()
		if p.started {
			p.run(a)
		}
	}
}
