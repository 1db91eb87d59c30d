package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/netport"
	vswitch "github.com/hvnet/hvnet/switch"
	vnet "github.com/hvnet/hvnet/virtio/net"
	"github.com/hvnet/hvnet/vmm"
	"github.com/hvnet/hvnet/vmtest/event"
)

// BootConfig says how Boot starts one guest outside a lab run: the images,
// where its console goes, and how its NIC joins a switch.
type BootConfig struct {
	Kernel, Initrd string
	Console        io.Writer // console lines, prefixed "name| " (default: kept only)
	Log            hclog.Logger
	Index          int // the guest's position, for its default MAC
	// Attach joins the guest's NIC to a switch: it calls Switch.AddPort
	// with the port's configuration (PortConfig of the guest, or the
	// caller's own) and returns the handle. Nil: Switch.AddPort of Switch
	// with the guest's PortConfig and its ACLs (with Attach set, the
	// port's ACLs are the caller's).
	Attach vswitch.AttachFunc
	Switch *vswitch.Switch
	// Events, when set, gives the guest its event channel (COM2,
	// package vmtest/event) and is called with each event it sends, as
	// it arrives, from the guest's vCPU thread: keep it short.
	// Result.Events keeps them (bounded). Nil: no channel (the daemon's
	// lab ports: a tenant's guest has no way to the host but its NIC).
	Events func(guest string, e event.Event)
}

// State is where a guest is in its life.
type State string

// Guest states.
const (
	StateBooting State = "booting" // the VM runs, its agent has not started yet
	StateRunning State = "running" // the agent started (its START line)
	StateExited  State = "exited"  // the VM ended: see Info's Status and Err
)

// Info is a guest's state; Status and Err are set once it exited.
type Info struct {
	State  State
	Status int
	Err    error
}

// Guest is one running guest whose NIC is a switch port (Boot).
type Guest struct {
	cfg  GuestConfig
	m    *vmm.Machine
	nic  *vmm.NetDevice
	port *vswitch.PortHandle
	con  *console
	ev   *event.Collector

	cancel context.CancelFunc
	done   chan struct{} // closed when the VM's Run returned and res is set
	res    Result

	stopOnce sync.Once
	stopErr  error
}

// Boot validates gc, creates its VM, attaches its NIC with bc.Attach and
// starts it; it runs until its agent exits, ctx ends or Stop. On error
// nothing is left attached or allocated.
func Boot(ctx context.Context, gc GuestConfig, bc BootConfig) (*Guest, error) {
	if err := gc.check(bc.Index); err != nil {
		return nil, err
	}
	if bc.Console == nil {
		bc.Console = io.Discard
	}
	if bc.Log == nil {
		bc.Log = hclog.NewNullLogger()
	}
	attach := bc.Attach
	if attach == nil {
		if bc.Switch == nil {
			return nil, fmt.Errorf("lab: guest %s: no switch to attach to", gc.Name)
		}
		pc := gc.PortConfig()
		attach = func(p vswitch.Port) (*vswitch.PortHandle, error) { return bc.Switch.AddPort(pc, p) }
	}
	g, err := create(gc, bc.Kernel, bc.Initrd, bc.Log, &syncWriter{w: bc.Console}, bc.Events != nil, bc.Events, attach)
	if err != nil {
		return nil, err
	}
	if bc.Attach == nil {
		if err := setACLs(bc.Switch, gc); err != nil {
			g.m.Close()
			if rerr := bc.Switch.RemovePort(gc.Name); rerr != nil {
				err = errors.Join(err, rerr)
			}
			return nil, err
		}
	}
	g.start(ctx)
	return g, nil
}

// check fills gc's defaults and validates it (the guest at position i).
func (g *GuestConfig) check(i int) error {
	if err := g.validate(i); err != nil {
		return err
	}
	if err := g.agent().Validate(); err != nil {
		return fmt.Errorf("lab: guest %s: %w", g.Name, err)
	}
	return nil
}

// create makes one guest's VM and joins its NIC to a switch with attach;
// it does not run it yet.
func create(gc GuestConfig, kernel, initrd string, log hclog.Logger, out io.Writer,
	events bool, onEvent func(string, event.Event), attach vswitch.AttachFunc) (*Guest, error) {
	log = log.Named(gc.Name)
	con := newConsole(gc.Name+"| ", out)
	ev := &event.Collector{}
	if onEvent != nil {
		ev.On = func(e event.Event) { onEvent(gc.Name, e) }
	}
	cmdline := strings.TrimSpace(BaseCmdline + " " + gc.Cmdline + " " + gc.agent().String())
	vc := vmm.Config{Kernel: kernel, Initrd: initrd, Cmdline: cmdline,
		MemMiB: gc.MemMiB, CPUs: gc.CPUs, Console: con, Log: log}
	if events { // a test's guest: the channel to the host (COM2)
		vc.Events = ev
	}
	m, err := vmm.New(vc)
	if err != nil {
		return nil, fmt.Errorf("lab: guest %s: %w", gc.Name, err)
	}
	p := netport.New(nil)
	p.SetMAC(gc.MAC) // port security: the switch accepts only this source (vswitch.AddressedPort)
	nic, err := m.AddNet(vmm.NetConfig{MAC: gc.MAC, QueuePairs: gc.Queues, Sink: p, Log: log.Named("virtio-net")})
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("lab: guest %s: %w", gc.Name, err)
	}
	p.SetDevice(nic.Device())
	h, err := attach(p)
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("lab: guest %s: %w", gc.Name, err)
	}
	p.SetHandle(h)
	return &Guest{cfg: gc, m: m, nic: nic, port: h, con: con, ev: ev, done: make(chan struct{})}, nil
}

// start runs the VM in its own goroutine until it ends or ctx ends.
func (g *Guest) start(ctx context.Context) {
	ctx, g.cancel = context.WithCancel(ctx)
	go func() {
		defer close(g.done)
		status, err := g.m.Run(ctx)
		g.con.flush()
		g.res = Result{Name: g.cfg.Name, Status: status, Err: err, Agent: g.con.result(),
			Console: g.con.text(), Features: g.nic.Device().Features(), ActivePairs: g.nic.Device().ActivePairs(),
			Net: g.nic.Device().Stats(), PCI: g.nic.Stats(), Port: g.port.Counters(),
			Events: g.ev.Events(), BadEvents: g.ev.Malformed(), DroppedEvents: g.ev.Dropped()}
	}()
}

// Name returns the guest's name (its switch port's).
func (g *Guest) Name() string { return g.cfg.Name }

// Port returns the guest's switch port.
func (g *Guest) Port() *vswitch.PortHandle { return g.port }

// DeviceStats returns the guest NIC's virtio-net counters so far (among
// them what the guest's driver did wrong); atomic reads, safe at any time.
func (g *Guest) DeviceStats() vnet.Stats { return g.nic.Device().Stats() }

// PCIStats returns the guest NIC's virtio-pci transport counters (lost
// and recovered notifications, resets, bad accesses).
func (g *Guest) PCIStats() vmm.VirtioPCIStats { return g.nic.Stats() }

// Done is closed when the guest's VM has ended.
func (g *Guest) Done() <-chan struct{} { return g.done }

// Info returns the guest's state.
func (g *Guest) Info() Info {
	select {
	case <-g.done:
		return Info{State: StateExited, Status: g.res.Status, Err: g.res.Err}
	default:
	}
	if g.con.started() {
		return Info{State: StateRunning}
	}
	return Info{State: StateBooting}
}

// Wait waits for the guest to end and returns its result.
func (g *Guest) Wait() Result {
	<-g.done
	return g.res
}

// Stop ends the guest (if it has not ended), waits for its VM, stops its
// device and releases the VM; it returns the guest's result. Detach the
// guest's switch port first (Switch.RemovePort), so that nothing sends
// into memory that is going away. Stop may be called more than once.
func (g *Guest) Stop() (Result, error) {
	g.stopOnce.Do(func() {
		g.cancel()
		<-g.done
		g.m.StopDevices()
		if err := g.m.Close(); err != nil {
			g.stopErr = fmt.Errorf("lab: guest %s: close: %w", g.cfg.Name, err)
		}
	})
	return g.res, g.stopErr
}
