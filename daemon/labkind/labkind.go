// Package labkind is the daemon's lab guest port kind: a Linux guest
// booted with hvnet's VMM (package lab) whose virtio-net NIC is the port.
// Its agent configures eth0 and runs the port's script.
package labkind

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/daemon"
	"github.com/hvnet/hvnet/images/agentcfg"
	"github.com/hvnet/hvnet/internal/lines"
	"github.com/hvnet/hvnet/lab"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/vmm"
)

func init() { daemon.Register(kind{}) }

// MACBase offsets the default MACs of the daemon's guests from those of a
// lab run's own guests (lab derives both from a position).
const MACBase = 0x1000

// Probe says whether this host's KVM can boot the guests (a variable for
// tests on hosts whose KVM can).
var Probe = func() error { return vmm.Probe("") }

// booted counts the guests booted in this process: each gets its own
// default MAC.
var booted atomic.Int64

type kind struct{}

func (kind) Name() string    { return api.KindLab }
func (kind) Summary() string { return "a lab guest booted with hvnet's VMM; its NIC is the port" }

func (kind) Options() []daemon.Option {
	return []daemon.Option{
		{Key: "ip", Value: "ADDR/PREFIX", Help: "eth0's address (none: eth0 up without one)"},
		{Key: "guest-mtu", Value: "68..65535", Help: "eth0's MTU (default: the port's mtu, else 1500)"},
		{Key: "mac", Value: "MAC", Help: "the NIC's MAC (default: derived from the guest's number)"},
		{Key: "queues", Value: "1..16", Help: "the NIC's queue pairs (default 1)"},
		{Key: "mem", Value: "SIZE", Help: "RAM: 256M (default), 1G"},
		{Key: "cpus", Value: "1..16", Help: "vCPUs (default 1)"},
		{Key: "vif", Value: "PARENT.VID[:ADDR/PREFIX]", Help: "a VLAN subinterface (repeatable)", Repeat: true},
		{Key: "cmd", Value: "SCRIPT", Help: "the agent's script; its status is the guest's (last: takes the rest of the spec)", Rest: true},
	}
}

// spec is a parsed lab guest port; Prepare finds its images.
type spec struct {
	gc             lab.GuestConfig
	kernel, initrd string
}

func (kind) Parse(v daemon.Values, port vswitch.PortConfig) (daemon.Spec, error) {
	gc := lab.GuestConfig{Script: v.Get("cmd")}
	if _, ok := v["ip"]; ok {
		ip := v.Get("ip")
		p, err := netip.ParsePrefix(ip)
		if err != nil {
			return nil, daemon.Bad("ip", ip, "is not an address and prefix (10.0.0.1/24)")
		}
		gc.Addr = p
	}
	var err error
	if gc.MTU, err = v.Int("guest-mtu", 68, 65535); err != nil {
		return nil, err
	}
	if gc.MTU == 0 && port.MTU >= 68 && port.MTU <= 65535 {
		gc.MTU = port.MTU
	}
	if gc.Queues, err = v.Int("queues", 1, 16); err != nil {
		return nil, err
	}
	if gc.CPUs, err = v.Int("cpus", 1, 16); err != nil {
		return nil, err
	}
	if m := v.Get("mac"); m != "" {
		mac, err := vswitch.ParseStationMAC(m)
		if err != nil {
			return nil, fmt.Errorf("field \"mac\": %w", err)
		}
		gc.MAC = mac
	}
	if m := v.Get("mem"); m != "" {
		n, e := api.ParseMemMiB("mem", m)
		if e != nil {
			return nil, daemon.Bad("mem", m, e.Message)
		}
		gc.MemMiB = n
	}
	for _, f := range v["vif"] {
		iface, err := parseVIF(f)
		if err != nil {
			return nil, daemon.Bad("vif", f, err.Error())
		}
		gc.Ifaces = append(gc.Ifaces, iface)
	}
	return &spec{gc: gc}, nil
}

// parseVIF parses PARENT.VID[:ADDR/PREFIX].
func parseVIF(s string) (agentcfg.Iface, error) {
	name, addr, _ := strings.Cut(s, ":")
	parent, vid, ok := strings.Cut(name, ".")
	n, err := strconv.Atoi(vid)
	if !ok || parent == "" || err != nil || n < 1 || n > 4094 {
		return agentcfg.Iface{}, fmt.Errorf("is not PARENT.VID[:ADDR/PREFIX] with VID 1..4094")
	}
	f := agentcfg.Iface{Name: name}
	if addr != "" {
		if f.Addr, err = netip.ParsePrefix(addr); err != nil {
			return f, fmt.Errorf("has no address and prefix after the colon")
		}
	}
	return f, nil
}

func (s *spec) Claims() []string { return nil }

// GuestConfig is the guest a lab port spec (daemon.ParsePort with kind
// lab) describes, its switch port included: hvnet lab boots it on its
// own switch.
func GuestConfig(p daemon.PortSpec) (lab.GuestConfig, error) {
	s, ok := p.Spec().(*spec)
	if !ok {
		return lab.GuestConfig{}, fmt.Errorf("port %s: kind %s, not %s", p.Name(), p.Kind, api.KindLab)
	}
	gc := s.gc
	gc.Name = p.Name()
	port := p.Port
	gc.Port = &port
	return gc, nil
}

// Prepare checks that this host can boot the guest and finds its images,
// before the port is reserved (building the images may take minutes).
func (s *spec) Prepare(ctx context.Context, h *daemon.Host) error {
	if err := Probe(); err != nil {
		return fmt.Errorf("this daemon cannot boot lab guests: %w; run the daemon inside the nested test host "+
			"(hvnet up FILE does so by itself for a topology with lab guests)", err)
	}
	k, i, err := h.Images(ctx)
	if err != nil {
		return fmt.Errorf("lab guest ports: %w", err)
	}
	s.kernel, s.initrd = k, i
	return nil
}

// Start boots the guest; it runs until it ends by itself, the port is
// removed or the daemon stops.
func (s *spec) Start(_ context.Context, h *daemon.Host, name string, attach vswitch.AttachFunc) (daemon.Backend, error) {
	gc := s.gc
	gc.Name = name
	log := h.Log.Named("lab")
	g, err := lab.Boot(h.Ctx, gc, lab.BootConfig{Kernel: s.kernel, Initrd: s.initrd, Log: log,
		Console: lineLog(log.With("guest", name)), Index: MACBase + int(booted.Add(1)-1), Attach: attach})
	if err != nil {
		return nil, err
	}
	go func() {
		<-g.Done()
		info := g.Info()
		log.Info("guest ended", "guest", name, "status", info.Status, "error", info.Err)
	}()
	log.Info("port ready", "port", name, "kind", api.KindLab, "ip", gc.Addr.String(), "mem_mib", gc.MemMiB)
	return backend{g}, nil
}

type backend struct{ g *lab.Guest }

// Close stops the guest.
func (b backend) Close() error {
	_, err := b.g.Stop()
	return err
}

// DetachFirst: nothing may send into a guest whose memory goes away.
func (backend) DetachFirst() bool { return true }

// DeviceCounters are the guest NIC's.
func (b backend) DeviceCounters() *api.DeviceCounters {
	ps := b.g.PCIStats()
	return &api.DeviceCounters{Kind: api.KindLab, VirtioCounters: daemon.VirtioCounters(b.g.DeviceStats()),
		VMMCounters: &api.VMMCounters{LostKicks: ps.LostKicks, LostIRQs: ps.LostIRQs, NeedsReset: ps.NeedsReset, BadBARAccesses: ps.BadAccess,
			FeaturesRefused: ps.FeaturesRefused}}
}

// Guest reports the guest's state.
func (b backend) Guest() *api.GuestInfo { return GuestInfo(b.g.Info()) }

// GuestInfo is a lab guest's state as the API shows it.
func GuestInfo(in lab.Info) *api.GuestInfo {
	out := &api.GuestInfo{State: string(in.State)}
	if in.State == lab.StateExited {
		st := in.Status
		out.Status = &st
		if in.Err != nil {
			out.Error = in.Err.Error()
		}
	}
	return out
}

// lineLog logs a guest's console lines at debug level.
func lineLog(log hclog.Logger) *lines.Splitter {
	return &lines.Splitter{Line: func(l string) error { log.Debug("console", "line", l); return nil }}
}
